"""The fixed, versioned test corpus: documents, queries and rerank pairs, loaded and validated.

The corpus is the input every environment embeds and reranks, so two results files are only comparable
when they were produced from byte-identical corpus files. ``corpus_sha256`` pins those bytes, and
``load_corpus`` refuses anything malformed with a one-line ``CorpusError`` (``file:line: problem``) rather
than letting a bad row surface later as a confusing numeric difference.

Stdlib only: this module is imported by the comparator, which must run in any matrix cell.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import AbstractSet, Any, Dict, List, Tuple, Union

from harness.errors import CorpusError

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
    "corpus_sha256",
    "load_corpus",
]

DOCUMENTS_FILE = "documents.jsonl"
QUERIES_FILE = "queries.jsonl"
RERANK_FILE = "rerank.jsonl"
MANIFEST_FILE = "MANIFEST.json"
#: The files the corpus hash covers, in the fixed order they are hashed.
CORPUS_FILES = (DOCUMENTS_FILE, QUERIES_FILE, RERANK_FILE)
#: The corpus shipped with the repository (``<repo>/fixtures/corpus``).
DEFAULT_CORPUS_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "corpus"

_TEXT_KEYS = ("id", "text", "kind")
_PAIR_KEYS = ("query_id", "passage_id", "label")
_NO_KIND = "unspecified"

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

    def text_by_id(self) -> Dict[str, Text]:
        """Documents and queries keyed by id, for resolving rerank pairs to their texts."""
        return {t.id: t for t in self.texts()}

    def pairs_by_query(self) -> Dict[str, List[RerankPair]]:
        """Rerank pairs grouped by query id, queries and pairs both in file order."""
        grouped: Dict[str, List[RerankPair]] = {}
        for pair in self.pairs:
            grouped.setdefault(pair.query_id, []).append(pair)
        return grouped


def _display(path: Path) -> str:
    """The path as it should appear in an error: relative to the cwd when under it, else as given."""
    try:
        return Path(os.path.abspath(path)).relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise CorpusError(f"{_display(path)}: missing file")
    return path.read_bytes()


def _hash_files(contents: Dict[str, bytes]) -> str:
    """Combine the per-file SHA-256s; names are included so swapping two files changes the hash."""
    outer = hashlib.sha256()
    for name in CORPUS_FILES:
        outer.update(name.encode("ascii") + b"\0" + hashlib.sha256(contents[name]).hexdigest().encode("ascii") + b"\n")
    return outer.hexdigest()


def corpus_sha256(directory: PathLike) -> str:
    """SHA-256 identifying the corpus in ``directory``: any byte change in any corpus file changes it."""
    directory = Path(directory)
    return _hash_files({name: _read_bytes(directory / name) for name in CORPUS_FILES})


def _json_lines(path: Path, data: bytes) -> List[Tuple[int, Dict[str, Any]]]:
    """Parse a JSONL file into (line number, object) pairs; blank lines are errors, not skipped."""
    where = _display(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CorpusError(f"{where}:{line}: not valid UTF-8") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line, it does not start a new one
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise CorpusError(f"{where}:{number}: blank line")
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{where}:{number}: invalid JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise CorpusError(f"{where}:{number}: expected a JSON object, got {type(obj).__name__}")
        rows.append((number, obj))
    return rows


def _check_keys(where: str, obj: Dict[str, Any], allowed: Tuple[str, ...]) -> None:
    for key in obj:
        if key not in allowed:
            raise CorpusError(f"{where}: unknown key {key!r} (allowed: {', '.join(allowed)})")


def _string_field(where: str, obj: Dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        problem = "missing" if key not in obj else f"non-string ({type(value).__name__})"
        raise CorpusError(f"{where}: {problem} {key!r}")
    return value


def _parse_texts(path: Path, data: bytes, seen: Dict[str, str]) -> Tuple[Text, ...]:
    """Documents or queries; ``seen`` maps id -> location and is shared so ids are unique across files."""
    texts = []
    for number, obj in _json_lines(path, data):
        where = f"{_display(path)}:{number}"
        _check_keys(where, obj, _TEXT_KEYS)
        text_id = _string_field(where, obj, "id")
        text = _string_field(where, obj, "text")
        kind = _string_field(where, obj, "kind") if "kind" in obj else _NO_KIND
        if not text_id:
            raise CorpusError(f"{where}: empty id")
        if not text.strip():
            raise CorpusError(f"{where}: empty text for id {text_id!r}")
        if text_id in seen:
            raise CorpusError(f"{where}: duplicate id {text_id!r} (first at {seen[text_id]})")
        seen[text_id] = f"{path.name}:{number}"
        texts.append(Text(id=text_id, text=text, kind=kind))
    return tuple(texts)


def _parse_pairs(path: Path, data: bytes, query_ids: AbstractSet[str], document_ids: AbstractSet[str]) -> Tuple[RerankPair, ...]:
    pairs = []
    seen: Dict[Tuple[str, str], int] = {}
    for number, obj in _json_lines(path, data):
        where = f"{_display(path)}:{number}"
        _check_keys(where, obj, _PAIR_KEYS)
        query_id = _string_field(where, obj, "query_id")
        passage_id = _string_field(where, obj, "passage_id")
        if query_id not in query_ids:
            raise CorpusError(f"{where}: unknown query_id {query_id!r}")
        if passage_id not in document_ids:
            raise CorpusError(f"{where}: unknown passage_id {passage_id!r}")
        label = obj.get("label")
        if type(label) is not int or label not in (0, 1):  # bool is an int subclass: reject true/false too
            raise CorpusError(f"{where}: label must be 0 or 1, got {json.dumps(label)}")
        key = (query_id, passage_id)
        if key in seen:
            raise CorpusError(f"{where}: duplicate pair ({query_id!r}, {passage_id!r}) (first at line {seen[key]})")
        seen[key] = number
        pairs.append(RerankPair(query_id=query_id, passage_id=passage_id, label=label))
    return tuple(pairs)


def _read_manifest(path: Path) -> Dict[str, Any]:
    where = _display(path)
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorpusError(f"{where}: invalid JSON: {exc}".replace("\n", " ")) from None
    if not isinstance(manifest, dict):
        raise CorpusError(f"{where}: expected a JSON object")
    for key in ("name", "version", "sha256"):
        if not isinstance(manifest.get(key), str):
            raise CorpusError(f"{where}: missing or non-string {key!r}")
    files = manifest.get("files", {})
    if not isinstance(files, dict):
        raise CorpusError(f"{where}: 'files' must be an object of file name -> sha256")
    return manifest


def _verify_manifest(path: Path, manifest: Dict[str, Any], contents: Dict[str, bytes], actual: str) -> None:
    """Name the changed file when the manifest lists per-file hashes, else report the corpus hash."""
    where = _display(path)
    for name, expected in sorted(manifest.get("files", {}).items()):
        if name in contents and hashlib.sha256(contents[name]).hexdigest() != expected:
            raise CorpusError(f"{where}: sha256 mismatch for {name}: the file changed since the manifest was written")
    if manifest["sha256"] != actual:
        raise CorpusError(f"{where}: sha256 mismatch: manifest says {manifest['sha256']}, files hash to {actual}")


def load_corpus(directory: PathLike) -> Corpus:
    """Load and validate the corpus in ``directory``; raise ``CorpusError`` on the first problem.

    Rows are validated before the manifest hash is checked, so an edited file reports its actual
    problem (with a line number) rather than only "hash mismatch".
    """
    directory = Path(directory)
    contents = {name: _read_bytes(directory / name) for name in CORPUS_FILES}
    seen: Dict[str, str] = {}
    documents = _parse_texts(directory / DOCUMENTS_FILE, contents[DOCUMENTS_FILE], seen)
    if not documents:
        raise CorpusError(f"{_display(directory / DOCUMENTS_FILE)}: empty corpus (no documents)")
    queries = _parse_texts(directory / QUERIES_FILE, contents[QUERIES_FILE], seen)
    pairs = _parse_pairs(
        directory / RERANK_FILE,
        contents[RERANK_FILE],
        query_ids={q.id for q in queries},
        document_ids={d.id for d in documents},
    )
    sha = _hash_files(contents)

    manifest_path = directory / MANIFEST_FILE
    if manifest_path.is_file():
        manifest = _read_manifest(manifest_path)
        _verify_manifest(manifest_path, manifest, contents, sha)
        name, version = manifest["name"], manifest["version"]
    else:
        name, version = directory.resolve().name, "unversioned"
    return Corpus(
        name=name,
        version=version,
        documents=documents,
        queries=queries,
        pairs=pairs,
        sha256=sha,
        path=str(directory),
    )
