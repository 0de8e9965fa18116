"""The corpus: documents, queries and rerank pairs, loaded and validated.

The corpus is the input every environment embeds and reranks, so two results files are only comparable
when they were produced from byte-identical corpus files. ``corpus_sha256`` pins those bytes, and
``load_corpus`` refuses anything malformed with a one-line ``CorpusError`` (``file:line: problem``) rather
than letting a bad row surface later as a confusing numeric difference.

``load_corpus`` takes one of:

* a directory holding ``documents.jsonl``, ``queries.jsonl`` and ``rerank.jsonl`` (the shipped fixture corpus,
  strict keys, optional ``MANIFEST.json``);
* one data file (``.jsonl``, ``.csv``, ``.tsv`` or ``.parquet``) with ``id`` and ``text`` columns: documents only;
* a TOML file with a ``[corpus]`` table (``harness.toml``; ``[tool.harness.corpus]`` in ``pyproject.toml``) naming
  a documents file and optionally a queries file and a rerank pairs file, with configurable column names::

      [corpus]
      name = "faq"                       # default: the documents file's stem
      version = "2024-06"                # default: "unversioned"
      documents = "faq.csv"              # relative to the TOML file
      queries = { path = "questions.jsonl", id_column = "qid", text_column = "question" }
      pairs = "judgements.csv"           # query_id, passage_id[, label]
      id_column = "id"                   # defaults for every file
      text_column = "text"
      allow_empty = false                # empty texts are errors unless declared

User files may have extra columns (ignored); ids may be strings or integers; a ``kind`` column is used when
present. Their hash covers each file's bytes and the columns read from it, not its name or location.

Stdlib only (``pyarrow`` is imported for parquet files alone): this module is imported by the comparator, which
must run in any matrix cell.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import AbstractSet, Any, Dict, List, Optional, Tuple, Union

from harness import paths
from harness.config.tomlfile import read_toml
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
#: The corpus shipped with the repository (``<repo>/fixtures/corpus``).
DEFAULT_CORPUS_DIR = paths.default_corpus_dir()

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
    shown = _display(path)  # once per file: per line it cost 0.12 s of a default run
    for number, obj in _json_lines(path, data):
        where = f"{shown}:{number}"
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
    shown = _display(path)
    for number, obj in _json_lines(path, data):
        where = f"{shown}:{number}"
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


def load_corpus(source: PathLike) -> Corpus:
    """Load and validate a corpus (a directory, a data file, or a TOML file with a ``[corpus]`` table).

    Raises ``CorpusError`` on the first problem, naming the file and line (or row).
    """
    path = Path(source)
    if path.is_dir():
        return _load_directory(path)
    if not path.exists():
        raise CorpusError(f"{_display(path)}: no such corpus file or directory")
    if path.suffix.lower() == ".toml":
        return load_corpus_config(path)
    return _load_user_corpus(path.parent, {"documents": str(path.name)}, path)


def _load_directory(directory: Path) -> Corpus:
    """Load and validate the fixture-style corpus in ``directory``.

    Rows are validated before the manifest hash is checked, so an edited file reports its actual
    problem (with a line number) rather than only "hash mismatch".
    """
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


# -- user corpora: JSONL / CSV / TSV / parquet files described by a [corpus] table ------------------------------

#: data file suffixes and the format each means (``format = "..."`` in a file's table overrides the suffix)
DATA_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}
_CORPUS_KEYS = ("name", "version", "documents", "queries", "pairs", "id_column", "text_column", "kind_column",
                "allow_empty", "format")
_TEXT_FILE_KEYS = ("path", "id_column", "text_column", "kind_column", "allow_empty", "format")
_PAIR_FILE_KEYS = ("path", "query_id_column", "passage_id_column", "label_column", "format")


def corpus_table(path: Path, data: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The ``[corpus]`` table of a parsed config (``[tool.harness.corpus]`` in a ``pyproject.toml``), if any."""
    if path.name == "pyproject.toml":
        data = (data.get("tool") or {}).get("harness") or {}
    table = data.get("corpus")
    if table is not None and not isinstance(table, dict):
        raise CorpusError(f"{_display(path)}: 'corpus' must be a table")
    return table


def load_corpus_config(path: PathLike) -> Corpus:
    """Load the corpus that the ``[corpus]`` table of a TOML file (``harness.toml``, ``pyproject.toml``) describes."""
    path = Path(path)
    data = read_toml(path, CorpusError, "missing file", shown=_display(path))
    table = corpus_table(path, data)
    if table is None:
        where = "[tool.harness.corpus]" if path.name == "pyproject.toml" else "[corpus]"
        raise CorpusError(f"{_display(path)}: no {where} table naming the corpus files")
    return _load_user_corpus(path.parent, table, path)


def _file_spec(config: Path, base: Path, table: Dict[str, Any], role: str) -> Optional[Dict[str, Any]]:
    """One file's reading settings: the corpus-wide defaults overlaid by the file's own inline table.

    ``config`` is named in errors; relative paths are relative to ``base`` (the config file's directory).
    """
    where = f"{_display(config)}: corpus {role}"
    entry = table.get(role)
    if entry is None:
        return None
    if isinstance(entry, str):
        entry = {"path": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or not entry["path"]:
        raise CorpusError(f"{where}: must be a file path or a table with 'path'")
    allowed = _PAIR_FILE_KEYS if role == "pairs" else _TEXT_FILE_KEYS
    unknown = sorted(set(entry) - set(allowed))
    if unknown:
        raise CorpusError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(allowed)})")
    if role == "pairs":
        spec = {"query_id_column": "query_id", "passage_id_column": "passage_id", "label_column": "label"}
    else:
        spec = {k: table.get(k, d) for k, d in (("id_column", "id"), ("text_column", "text"),
                                                 ("kind_column", "kind"), ("allow_empty", False))}
    spec.update({"format": table.get("format")}, **entry)
    file_path = Path(spec["path"])
    spec["file"] = file_path if file_path.is_absolute() else base / file_path
    fmt = spec.get("format") or DATA_FORMATS.get(spec["file"].suffix.lower())
    if fmt not in DATA_FORMATS.values():
        raise CorpusError(
            f"{_display(spec['file'])}: unknown corpus file format (use one of "
            f"{', '.join(sorted(DATA_FORMATS))}, or set format = \"csv\" ...)"
        )
    spec["format"] = fmt
    for key, value in spec.items():
        if key.endswith("_column") and (not isinstance(value, str) or not value):
            raise CorpusError(f"{where}: '{key}' must be a non-empty string")
    if role != "pairs" and not isinstance(spec["allow_empty"], bool):
        raise CorpusError(f"{where}: 'allow_empty' must be true or false")
    return spec


def _load_user_corpus(base: Path, table: Dict[str, Any], config: Path) -> Corpus:
    unknown = sorted(set(table) - set(_CORPUS_KEYS))
    if unknown:
        raise CorpusError(f"{_display(config)}: corpus: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(_CORPUS_KEYS)})")
    specs = {role: _file_spec(config, base, table, role) for role in ("documents", "queries", "pairs")}
    if specs["documents"] is None:
        raise CorpusError(f"{_display(config)}: corpus: 'documents' (a file path) is required")
    if specs["pairs"] is not None and specs["queries"] is None:
        raise CorpusError(f"{_display(config)}: corpus: 'pairs' needs a 'queries' file (pairs name query ids)")
    contents = {role: _read_bytes(spec["file"]) for role, spec in specs.items() if spec is not None}
    seen: Dict[str, str] = {}
    documents = _user_texts(specs["documents"], contents["documents"], seen)
    if not documents:
        raise CorpusError(f"{_display(specs['documents']['file'])}: empty corpus (no documents)")
    queries = _user_texts(specs["queries"], contents["queries"], seen) if specs["queries"] else ()
    pairs = (
        _user_pairs(specs["pairs"], contents["pairs"], {q.id for q in queries}, {d.id for d in documents})
        if specs["pairs"] else ()
    )
    name = table.get("name", specs["documents"]["file"].stem)
    version = table.get("version", "unversioned")
    for key, value in (("name", name), ("version", version)):
        if not isinstance(value, str) or not value:
            raise CorpusError(f"{_display(config)}: corpus: '{key}' must be a non-empty string")
    return Corpus(
        name=name,
        version=version,
        documents=documents,
        queries=queries,
        pairs=pairs,
        sha256=_user_hash(specs, contents),
        path=str(config),
    )


def _user_hash(specs: Dict[str, Optional[Dict[str, Any]]], contents: Dict[str, bytes]) -> str:
    """SHA-256 over each file's bytes plus how it is read (format, columns): not its name or location."""
    outer = hashlib.sha256(b"embedding-harness user corpus v1\n")
    for role in ("documents", "queries", "pairs"):
        spec = specs[role]
        if spec is None:
            continue
        reading = {k: v for k, v in sorted(spec.items()) if k.endswith("_column") or k == "format"}
        outer.update(
            role.encode("ascii") + b"\0" + hashlib.sha256(contents[role]).hexdigest().encode("ascii") + b"\0"
            + json.dumps(reading, sort_keys=True).encode("utf-8") + b"\n"
        )
    return outer.hexdigest()


def _rows(spec: Dict[str, Any], data: bytes, needed: Tuple[str, ...]) -> List[Tuple[str, Dict[str, Any]]]:
    """``(location, row)`` pairs of one data file; ``needed`` columns must exist (checked on the header)."""
    path, fmt = spec["file"], spec["format"]
    where = _display(path)
    if fmt == "parquet":
        return _parquet_rows(path, data, needed)
    if fmt == "jsonl":
        rows = [(f"{where}:{number}", obj) for number, obj in _json_lines(path, data)]
        for location, obj in rows:
            for column in needed:
                if column not in obj:
                    raise CorpusError(f"{location}: missing column {column!r} (has: {', '.join(obj) or 'none'})")
        return rows
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CorpusError(f"{where}:{line}: not valid UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if fmt == "tsv" else ",", strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise CorpusError(f"{where}: empty file (no header row)")
        for column in needed:
            if column not in header:
                raise CorpusError(f"{where}:1: missing column {column!r} (header: {', '.join(header)})")
        duplicated = sorted({c for c in header if header.count(c) > 1})
        if duplicated:
            raise CorpusError(f"{where}:1: duplicate column(s) {', '.join(duplicated)} in the header")
        rows = []
        start = reader.line_num + 1
        for record in reader:
            location = f"{where}:{start}"
            start = reader.line_num + 1
            if not record or record == [""]:
                raise CorpusError(f"{location}: blank line")
            if len(record) != len(header):
                raise CorpusError(f"{location}: {len(record)} field(s), the header has {len(header)}")
            rows.append((location, dict(zip(header, record))))
    except csv.Error as err:
        raise CorpusError(f"{where}:{reader.line_num}: malformed {fmt.upper()} ({err})") from None
    return rows


def _parquet_rows(path: Path, data: bytes, needed: Tuple[str, ...]) -> List[Tuple[str, Dict[str, Any]]]:
    where = _display(path)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a core dependency
        raise CorpusError(f"{where}: reading parquet corpora needs pyarrow") from None
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CorpusError(f"{where}: not a readable parquet file ({first})") from None
    for column in needed:
        if column not in table.column_names:
            raise CorpusError(f"{where}: missing column {column!r} (columns: {', '.join(table.column_names)})")
    columns = {c: table.column(c).to_pylist() for c in table.column_names}
    return [(f"{where}: row {i + 1}", {c: v[i] for c, v in columns.items()}) for i in range(table.num_rows)]


def _id_value(location: str, row: Dict[str, Any], column: str) -> str:
    value = row.get(column)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        problem = "null" if value is None else f"non-string ({type(value).__name__})"
        raise CorpusError(f"{location}: {problem} {column!r}")
    value = str(value)
    if not value.strip():
        raise CorpusError(f"{location}: empty {column!r}")
    return value


def _user_texts(spec: Dict[str, Any], data: bytes, seen: Dict[str, str]) -> Tuple[Text, ...]:
    id_col, text_col, kind_col = spec["id_column"], spec["text_column"], spec["kind_column"]
    texts = []
    for location, row in _rows(spec, data, (id_col, text_col)):
        text_id = _id_value(location, row, id_col)
        text = row.get(text_col)
        if not isinstance(text, str):
            problem = "null" if text is None else f"non-string ({type(text).__name__})"
            raise CorpusError(f"{location}: {problem} {text_col!r} for id {text_id!r}")
        if not text.strip() and not spec["allow_empty"]:
            raise CorpusError(f"{location}: empty text for id {text_id!r} (set allow_empty = true to embed empty texts)")
        if text_id in seen:
            raise CorpusError(f"{location}: duplicate id {text_id!r} (first at {seen[text_id]})")
        seen[text_id] = location.rsplit("/", 1)[-1]
        kind = row.get(kind_col)
        texts.append(Text(id=text_id, text=text, kind=kind if isinstance(kind, str) and kind else _NO_KIND))
    return tuple(texts)


def _user_pairs(spec: Dict[str, Any], data: bytes, query_ids: AbstractSet[str], document_ids: AbstractSet[str]) -> Tuple[RerankPair, ...]:
    q_col, p_col, l_col = spec["query_id_column"], spec["passage_id_column"], spec["label_column"]
    pairs = []
    seen: Dict[Tuple[str, str], str] = {}
    for location, row in _rows(spec, data, (q_col, p_col)):
        query_id, passage_id = _id_value(location, row, q_col), _id_value(location, row, p_col)
        if query_id not in query_ids:
            raise CorpusError(f"{location}: unknown {q_col} {query_id!r} (not in the queries file)")
        if passage_id not in document_ids:
            raise CorpusError(f"{location}: unknown {p_col} {passage_id!r} (not in the documents file)")
        raw = row.get(l_col, 0)
        label = _label(raw)
        if label is None:
            raise CorpusError(f"{location}: {l_col} must be an integer, got {json.dumps(raw)}")
        key = (query_id, passage_id)
        if key in seen:
            raise CorpusError(f"{location}: duplicate pair ({query_id!r}, {passage_id!r}) (first at {seen[key]})")
        seen[key] = location.rsplit("/", 1)[-1]
        pairs.append(RerankPair(query_id=query_id, passage_id=passage_id, label=label))
    return tuple(pairs)


def _label(value: Any) -> Optional[int]:
    """An integer relevance label from JSON/parquet (int) or CSV (digits); absent or empty means 0."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None
