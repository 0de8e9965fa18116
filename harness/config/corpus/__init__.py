"""The corpus: documents, queries and rerank pairs, loaded and validated.

Two results files are only comparable when made from byte-identical corpus files: ``corpus_sha256`` pins those
bytes, and ``load_corpus`` refuses anything malformed with a one-line ``CorpusError`` (``file:line: problem``)
rather than letting a bad row surface later as numeric drift. Formats: docs/how-to/own-models.md.

Stdlib only (``pyarrow`` for parquet files alone): the comparator imports this package in any matrix cell.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from harness import paths
from harness.errors import CorpusError, first_line

__all__ = [
    "Text",
    "RerankPair",
    "Corpus",
    "DOCUMENTS_FILE",
    "QUERIES_FILE",
    "RERANK_FILE",
    "MANIFEST_FILE",
    "CORPUS_FILES",
    "DEFAULT_CORPUS_DIR",
    "DATA_FORMATS",
    "corpus_sha256",
    "corpus_table",
    "load_corpus",
    "load_corpus_config",
]

DOCUMENTS_FILE = "documents.jsonl"
QUERIES_FILE = "queries.jsonl"
RERANK_FILE = "rerank.jsonl"
MANIFEST_FILE = "MANIFEST.json"
#: The files the corpus hash covers, in the fixed order they are hashed.
CORPUS_FILES = (DOCUMENTS_FILE, QUERIES_FILE, RERANK_FILE)
#: The shipped corpus when this module was imported (``paths.default_corpus_dir()`` is the current one).
DEFAULT_CORPUS_DIR = paths.default_corpus_dir()

#: The kind of a text whose file names none.
NO_KIND = "unspecified"

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Text:
    """One document or query; ``kind`` names the edge case it exercises (``"long"``, ``"cjk"``, ...)."""

    id: str
    text: str
    kind: str


@dataclass(frozen=True)
class RerankPair:
    """One (query, candidate passage) pair for the cross-encoder, with a 0/1 relevance label."""

    query_id: str
    passage_id: str
    label: int


@dataclass(frozen=True)
class Corpus:
    """A loaded, validated corpus; ``sha256`` identifies its exact bytes (see ``corpus_sha256``)."""

    name: str
    version: str
    documents: Tuple[Text, ...]
    queries: Tuple[Text, ...]
    pairs: Tuple[RerankPair, ...]
    sha256: str
    path: str

    def texts(self) -> Tuple[Text, ...]:
        """Every text to embed: documents first, then queries (ids are unique across both)."""
        return self.documents + self.queries


def display(path: Path) -> str:
    """The path as it should appear in an error: relative to the cwd when under it, else as given."""
    try:
        return Path(os.path.abspath(path)).relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (JSON's words for None and booleans, a container's type name):
    an id or value quoted in a one-line error, however long or deeply nested it is."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int) and value.bit_length() > 256:
        return f"an integer of {value.bit_length()} bits"  # repr() refuses more than 4300 digits (Python 3.11+)
    text = repr(value) if isinstance(value, (str, int, float)) else type(value).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def valid_text(where: str, what: str, value: str, text_id: Optional[str] = None) -> str:
    """``value`` unless it holds a lone surrogate (``"\\ud800"`` from a JSON escape): such a string is no Unicode
    text, so no tokenizer and no parquet file can take it; refused here, before any model runs. ``what`` names
    the field, ``text_id`` the id whose text it is (the message is built only on failure: this runs per line)."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            owner = f" of id {shown(text_id)}" if text_id is not None else ""
            raise CorpusError(f"{where}: {what}{owner} holds a lone surrogate (U+{ord(value[exc.start]):04X} at "
                              f"character {exc.start + 1}): not valid Unicode text") from None
    return value


def read_bytes(path: Path) -> bytes:
    """A corpus file's bytes; a missing or unreadable one is a ``CorpusError`` naming it."""
    if not path.is_file():
        raise CorpusError(f"{display(path)}: missing file")
    try:
        return path.read_bytes()
    except OSError as err:
        raise CorpusError(f"{display(path)}: cannot read ({err.strerror or type(err).__name__})") from None


def _unique_keys(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    """A JSON object whose keys are unique: ``{"id": "a", "id": "b"}`` would silently keep the last one."""
    obj: Dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKey(key)
        obj[key] = value
    return obj


class _DuplicateKey(ValueError):
    """A key twice in one JSON object (raised from inside ``json.loads``, turned into a ``CorpusError``)."""


def json_lines(path: Path, data: bytes) -> List[Tuple[int, Dict[str, Any]]]:
    """Parse a JSONL file into (line number, object) pairs; blank lines are errors, a UTF-8 BOM is skipped, and
    whatever a line holds ends as a ``CorpusError`` naming the line, never another exception."""
    where = display(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line_no = data[: exc.start].count(b"\n") + 1
        raise CorpusError(f"{where}:{line_no}: not valid UTF-8") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line, it does not start a new one
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise CorpusError(f"{where}:{number}: blank line")
        try:
            obj = json.loads(line, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{where}:{number}: invalid JSON: {exc.msg} (column {exc.colno})") from None
        except _DuplicateKey as exc:
            raise CorpusError(f"{where}:{number}: key {shown(exc.args[0])} appears twice in one object") from None
        except RecursionError:
            raise CorpusError(f"{where}:{number}: JSON nested too deeply") from None
        except ValueError as exc:  # an integer of more digits than Python converts (3.11+)
            raise CorpusError(f"{where}:{number}: invalid JSON: {first_line(exc)}") from None
        if not isinstance(obj, dict):
            raise CorpusError(f"{where}:{number}: expected a JSON object, got {type(obj).__name__}")
        rows.append((number, obj))
    return rows


# The loaders need the types and helpers above, and import them from this module: so they are imported last.
from harness.config.corpus.directory import corpus_sha256, load_directory  # noqa: E402
from harness.config.corpus.user import (  # noqa: E402
    DATA_FORMATS,
    DataFiles,
    corpus_table,
    load_corpus_config,
    load_data_files,
    load_user_corpus,
)


def load_corpus(source: PathLike) -> Corpus:
    """Load and validate a corpus (a directory, a data file, or a TOML file with a ``[corpus]`` table)."""
    if isinstance(source, DataFiles):  # --corpus FILE --queries FILE
        return load_data_files(source)
    path = Path(source)
    if path.is_dir():
        return load_directory(path)
    if not path.exists():
        raise CorpusError(f"{display(path)}: no such corpus file or directory")
    if path.suffix.lower() == ".toml":
        return load_corpus_config(path)
    return load_user_corpus(path.parent, {"documents": str(path.name)}, path)


