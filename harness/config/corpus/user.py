"""Users' corpora: JSONL / CSV / TSV / parquet files, alone or described by a ``[corpus]`` table in a TOML file.
Their hash covers each file's bytes and the columns read, not its name or location.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import AbstractSet, Any, Dict, List, Optional, Tuple

from harness.config.corpus import NO_KIND, Corpus, PathLike, RerankPair, Text, display, json_lines, read_bytes, shown, valid_text
from harness.config.tomlfile import read_toml
from harness.errors import CorpusError, first_line

__all__ = ["DATA_FORMATS", "DataFiles", "ROLE_COLUMN", "corpus_table", "load_corpus_config", "load_data_files", "load_user_corpus"]

#: the column of a lone documents file that marks rows as queries (``role = query``), so ad hoc corpora get
#: retrieval top-k checks; other values: ``document`` or empty
ROLE_COLUMN = "role"

#: data file suffixes and the format each means (``format = "..."`` in a file's table overrides the suffix)
DATA_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}
_CORPUS_KEYS = ("name", "version", "documents", "queries", "pairs", "id_column", "text_column", "kind_column",
                "allow_empty", "format")
_TEXT_FILE_KEYS = ("path", "id_column", "text_column", "kind_column", "allow_empty", "format")
_PAIR_FILE_KEYS = ("path", "query_id_column", "passage_id_column", "label_column", "format")
#: the longest CSV/TSV field read (the csv module's default, 128 KiB, refused long documents JSONL accepts)
_MAX_FIELD = 1 << 30
_LABEL = re.compile(r"-?[0-9]{1,19}")


def corpus_table(path: Path, data: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The ``[corpus]`` table of a parsed config (``[tool.harness.corpus]`` in a ``pyproject.toml``), if any."""
    if path.name == "pyproject.toml":
        data = (data.get("tool") or {}).get("harness") or {}
    table = data.get("corpus")
    if table is not None and not isinstance(table, dict):
        raise CorpusError(f"{display(path)}: 'corpus' must be a table")
    return table


def load_corpus_config(path: PathLike) -> Corpus:
    """Load the corpus that the ``[corpus]`` table of a TOML file (``harness.toml``, ``pyproject.toml``) describes."""
    path = Path(path)
    data = read_toml(path, CorpusError, "missing file", shown=display(path))
    table = corpus_table(path, data)
    if table is None:
        where = "[tool.harness.corpus]" if path.name == "pyproject.toml" else "[corpus]"
        raise CorpusError(f"{display(path)}: no {where} table naming the corpus files")
    return load_user_corpus(path.parent, table, path)


@dataclass
class _FileSpec:
    """How one data file is read: where, its format, its columns (``id_column`` -> name, ...), empty texts."""

    file: Path
    format: str
    columns: Dict[str, str]
    allow_empty: bool = False


def _file_spec(config: Path, base: Path, table: Dict[str, Any], role: str) -> Optional[_FileSpec]:
    """One file's reading settings: the corpus-wide defaults overlaid by the file's own inline table (paths
    relative to ``base``)."""
    where = f"{display(config)}: corpus {role}"
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
    defaults = (("query_id", "query_id"), ("passage_id", "passage_id"), ("label", "label")) if role == "pairs" else \
        tuple((k, table.get(f"{k}_column", k)) for k in ("id", "text", "kind"))
    settings = {f"{k}_column": d for k, d in defaults}
    settings.update({"format": table.get("format"), "allow_empty": table.get("allow_empty", False)}, **entry)
    file_path = Path(entry["path"])
    file = file_path if file_path.is_absolute() else base / file_path
    fmt = settings["format"] or DATA_FORMATS.get(file.suffix.lower())
    if fmt not in DATA_FORMATS.values():
        raise CorpusError(
            f"{display(file)}: unknown corpus file format (use one of "
            f"{', '.join(sorted(DATA_FORMATS))}, or set format = \"csv\" ...)"
        )
    columns = {k: v for k, v in settings.items() if k.endswith("_column")}
    for key, value in columns.items():
        if not isinstance(value, str) or not value:
            raise CorpusError(f"{where}: '{key}' must be a non-empty string")
    if role != "pairs" and not isinstance(settings["allow_empty"], bool):
        raise CorpusError(f"{where}: 'allow_empty' must be true or false")
    return _FileSpec(file, str(fmt), columns, settings["allow_empty"] is True)


@dataclass(frozen=True)
class DataFiles:
    """An ad hoc corpus from the command line: ``--corpus docs.csv`` and optionally ``--queries queries.csv``."""

    documents: Path
    queries: Optional[Path] = None

    def __str__(self) -> str:
        return f"{self.documents}" + (f" + {self.queries}" if self.queries else "")


def load_data_files(files: DataFiles) -> Corpus:
    """Documents (with queries marked in a ``role`` column, or given as a second file) as one corpus."""
    for path in (files.documents, files.queries):
        if path is not None and (path.is_dir() or path.suffix.lower() == ".toml"):
            raise CorpusError(f"{display(path)}: --queries needs --corpus to be a data file "
                              f"({', '.join(sorted(DATA_FORMATS))}), not a directory or a TOML config")
    table: Dict[str, str] = {"documents": str(files.documents.resolve())}
    if files.queries is not None:
        table["queries"] = str(files.queries.resolve())
    return load_user_corpus(files.documents.parent, table, files.documents)


def _split_roles(spec: _FileSpec, texts: Tuple[Any, ...], roles: List[Any]) -> Tuple[Tuple[Any, ...], Tuple[Any, ...]]:
    """A lone file's rows split into documents and queries by its ``role`` column (absent: all documents)."""
    if "query" not in roles:
        return texts, ()
    for text, role in zip(texts, roles):
        if role not in (None, "", "document", "query"):
            raise CorpusError(f"{display(spec.file)}: id {shown(text.id)}: {ROLE_COLUMN!r} must be 'document', 'query' "
                              f"or empty, got {shown(role)}")
    spec.columns["role_column"] = ROLE_COLUMN  # read this way: part of the corpus hash
    return (tuple(t for t, r in zip(texts, roles) if r != "query"), tuple(t for t, r in zip(texts, roles) if r == "query"))


def load_user_corpus(base: Path, table: Dict[str, Any], config: Path) -> Corpus:
    unknown = sorted(set(table) - set(_CORPUS_KEYS))
    if unknown:
        raise CorpusError(f"{display(config)}: corpus: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(_CORPUS_KEYS)})")
    docs, queries_file, pairs_file = (_file_spec(config, base, table, role) for role in ("documents", "queries", "pairs"))
    if docs is None:
        raise CorpusError(f"{display(config)}: corpus: 'documents' (a file path) is required")
    if pairs_file is not None and queries_file is None:
        raise CorpusError(f"{display(config)}: corpus: 'pairs' needs a 'queries' file (pairs name query ids)")
    specs = {role: spec for role, spec in (("documents", docs), ("queries", queries_file), ("pairs", pairs_file)) if spec}
    contents = {role: read_bytes(spec.file) for role, spec in specs.items()}
    seen: Dict[str, str] = {}
    roles: List[Any] = []
    documents = _user_texts(docs, contents["documents"], seen, roles)
    queries = _user_texts(queries_file, contents["queries"], seen) if queries_file else ()
    if queries_file is not None and not queries:  # a named queries file that holds none: no silent "no retrieval"
        raise CorpusError(f"{display(queries_file.file)}: empty queries file (no queries)")
    if queries_file is None and pairs_file is None:
        documents, queries = _split_roles(docs, documents, roles)
    if not documents:
        raise CorpusError(f"{display(docs.file)}: empty corpus (no documents)")
    pairs = _user_pairs(pairs_file, contents["pairs"], {q.id for q in queries}, {d.id for d in documents}) if pairs_file else ()
    name, version = table.get("name", docs.file.stem), table.get("version", "unversioned")
    for key, value in (("name", name), ("version", version)):
        if not isinstance(value, str) or not value:
            raise CorpusError(f"{display(config)}: corpus: '{key}' must be a non-empty string")
    return Corpus(name=name, version=version, documents=documents, queries=queries, pairs=pairs,
                  sha256=_user_hash(specs, contents), path=str(config))


def _user_hash(specs: Dict[str, _FileSpec], contents: Dict[str, bytes]) -> str:
    """SHA-256 over each file's bytes plus how it is read (format, columns): not its name or location."""
    outer = hashlib.sha256(b"embedding-harness user corpus v1\n")
    for role, spec in specs.items():
        reading = {**spec.columns, "format": spec.format}
        outer.update(
            role.encode("ascii") + b"\0" + hashlib.sha256(contents[role]).hexdigest().encode("ascii") + b"\0"
            + json.dumps(reading, sort_keys=True).encode("utf-8") + b"\n"
        )
    return outer.hexdigest()


def _rows(spec: _FileSpec, data: bytes, needed: Tuple[str, ...],
          optional: Tuple[str, ...] = ()) -> List[Tuple[str, Dict[str, Any]]]:
    """``(location, row)`` pairs of one data file; ``needed`` columns must exist (checked on the header), the
    ``optional`` ones are read when present. A parquet file's other columns are never read: their contents
    (out-of-range timestamps, types Python cannot hold) cannot matter."""
    path, fmt = spec.file, spec.format
    where = display(path)
    if fmt == "parquet":
        return _parquet_rows(path, data, needed, optional)
    if fmt == "jsonl":
        rows = [(f"{where}:{number}", obj) for number, obj in json_lines(path, data)]
        for location, obj in rows:
            for column in needed:
                if column not in obj:
                    raise CorpusError(f"{location}: missing column {shown(column)} (has: {_names(obj)})")
        return rows
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CorpusError(f"{where}:{line}: not valid UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if fmt == "tsv" else ",", strict=True)
    limit = csv.field_size_limit()
    try:
        csv.field_size_limit(_MAX_FIELD)  # a long document is a document: JSONL takes it, so CSV does too
        header = next(reader, None)
        if header is None:
            raise CorpusError(f"{where}: empty file (no header row)")
        for column in needed:
            if column not in header:
                raise CorpusError(f"{where}:1: missing column {shown(column)} (header: {_names(header)})")
        duplicated = sorted({c for c in header if header.count(c) > 1})
        if duplicated:
            raise CorpusError(f"{where}:1: duplicate column(s) {_names(duplicated)} in the header")
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
    finally:
        csv.field_size_limit(limit)
    return rows


def _names(columns: Any) -> str:
    """Column names for a one-line message: as plain text when they are, quoted when not (a newline in a name)."""
    names = [c if c.isprintable() and len(c) <= 40 else shown(c, 40) for c in map(str, columns)]
    text = ", ".join(names) or "none"
    return text if len(text) <= 200 else text[:197] + "..."


def _parquet_rows(path: Path, data: bytes, needed: Tuple[str, ...],
                  optional: Tuple[str, ...]) -> List[Tuple[str, Dict[str, Any]]]:
    """The rows of a parquet file, of the ``needed`` and present ``optional`` columns only."""
    where = display(path)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a core dependency
        raise CorpusError(f"{where}: reading parquet corpora needs pyarrow") from None
    try:
        names = pq.ParquetFile(pa.BufferReader(data)).schema_arrow.names
    except (pa.ArrowException, OSError, ValueError) as err:
        raise CorpusError(f"{where}: not a readable parquet file ({first_line(err)})") from None
    for column in needed:
        if column not in names:
            raise CorpusError(f"{where}: missing column {shown(column)} (columns: {_names(names)})")
    wanted = list(dict.fromkeys(c for c in needed + optional if c in names))
    duplicated = [c for c in wanted if names.count(c) > 1]
    if duplicated:
        raise CorpusError(f"{where}: duplicate column(s) {', '.join(map(shown, duplicated))}")
    try:
        table = pq.read_table(pa.BufferReader(data), columns=wanted)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise CorpusError(f"{where}: not a readable parquet file ({first_line(err)})") from None
    columns = {}
    for c in wanted:
        try:
            columns[c] = table.column(c).to_pylist()
        except (pa.ArrowException, ValueError, OverflowError, TypeError) as err:  # e.g. a timestamp past year 9999
            raise CorpusError(f"{where}: column {shown(c)}: values Python cannot read ({first_line(err)})") from None
    return [(f"{where}: row {i + 1}", {c: v[i] for c, v in columns.items()}) for i in range(table.num_rows)]


def _id_value(location: str, row: Dict[str, Any], column: str) -> str:
    """An id (a string, or an integer written as one), refused when empty or not valid Unicode text."""
    value = row.get(column)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        problem = "null" if value is None else f"non-string ({type(value).__name__})"
        raise CorpusError(f"{location}: {problem} {shown(column)}")
    if isinstance(value, int) and value.bit_length() > 256:
        raise CorpusError(f"{location}: {shown(column)} is {shown(value)}: too long for an id")
    value = valid_text(location, shown(column), str(value))
    if not value.strip():
        raise CorpusError(f"{location}: empty {shown(column)}")
    return value


def _user_texts(spec: _FileSpec, data: bytes, seen: Dict[str, str], roles: Optional[List[Any]] = None) -> Tuple[Text, ...]:
    """The texts of one file; ``roles`` (when given) collects each row's ``role`` column value, or None."""
    id_col, text_col, kind_col = (spec.columns[f"{k}_column"] for k in ("id", "text", "kind"))
    texts = []
    for location, row in _rows(spec, data, (id_col, text_col), (kind_col, ROLE_COLUMN) if roles is not None else (kind_col,)):
        if roles is not None:
            roles.append(row.get(ROLE_COLUMN))
        text_id = _id_value(location, row, id_col)
        text = row.get(text_col)
        if not isinstance(text, str):
            problem = "null" if text is None else f"non-string ({type(text).__name__})"
            raise CorpusError(f"{location}: {problem} {shown(text_col)} for id {shown(text_id)}")
        valid_text(location, "the text", text, text_id)
        if not text.strip() and not spec.allow_empty:
            raise CorpusError(f"{location}: empty text for id {shown(text_id)} (set allow_empty = true to embed empty texts)")
        if text_id in seen:
            raise CorpusError(f"{location}: duplicate id {shown(text_id)} (first at {seen[text_id]})")
        seen[text_id] = location.rsplit("/", 1)[-1]
        kind = row.get(kind_col)
        kind = valid_text(location, shown(kind_col), kind) if isinstance(kind, str) and kind else NO_KIND
        texts.append(Text(id=text_id, text=text, kind=kind))
    return tuple(texts)


def _user_pairs(spec: _FileSpec, data: bytes, query_ids: AbstractSet[str], document_ids: AbstractSet[str]) -> Tuple[RerankPair, ...]:
    q_col, p_col, l_col = (spec.columns[f"{k}_column"] for k in ("query_id", "passage_id", "label"))
    pairs = []
    seen: Dict[Tuple[str, str], str] = {}
    for location, row in _rows(spec, data, (q_col, p_col), (l_col,)):
        query_id, passage_id = _id_value(location, row, q_col), _id_value(location, row, p_col)
        if query_id not in query_ids:
            raise CorpusError(f"{location}: unknown {q_col} {shown(query_id)} (not in the queries file)")
        if passage_id not in document_ids:
            raise CorpusError(f"{location}: unknown {p_col} {shown(passage_id)} (not in the documents file)")
        raw = row.get(l_col, 0)
        label = _label(raw)
        if label is None:
            got = json.dumps(raw) if isinstance(raw, str) and len(raw) <= 60 else shown(raw)
            raise CorpusError(f"{location}: {l_col} must be an integer, got {got}")
        key = (query_id, passage_id)
        if key in seen:
            raise CorpusError(f"{location}: duplicate pair ({shown(query_id)}, {shown(passage_id)}) (first at {seen[key]})")
        seen[key] = location.rsplit("/", 1)[-1]
        pairs.append(RerankPair(query_id=query_id, passage_id=passage_id, label=label))
    return tuple(pairs)


def _label(value: Any) -> Optional[int]:
    """An integer relevance label from JSON/parquet (int) or CSV (ASCII digits); absent or empty means 0.
    Labels beyond 64 bits are refused (no relevance scale needs them, and Python 3.11 will not print them)."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and _LABEL.fullmatch(value.strip()):
        value = int(value.strip())
    if isinstance(value, int) and -(1 << 63) <= value < (1 << 63):
        return value
    return None
