"""The results file format: columns, the arrow schema, the metadata key and the rows one model contributes.

One parquet file per run, long format, rows in one canonical order (docs/reference/results-file.md) so two files
of one corpus line up row for row and the comparator streams them side by side. Vectors are raw little-endian
``fixed_size_binary``: a ``fixed_size_list<float32>`` decodes 3-7x slower (``benchmarks/``). Everything else is
JSON under the schema metadata key ``harness`` (``harness.results.meta``). numpy and pyarrow only: imported in
old matrix environments too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness.errors import ResultsFileError

__all__ = [
    "SCHEMA_VERSION",
    "check_column_types",
    "is_unicode_text",
    "METADATA_KEY",
    "ROW_GROUP_ROWS",
    "COLUMNS",
    "OPTIONAL_COLUMNS",
    "ROLES",
    "SCORE_TYPES",
    "ModelRows",
    "arrow_schema",
    "canonical_order",
    "in_canonical_order",
    "metadata_bytes",
    "pair_item_id",
    "rank_within_queries",
    "split_pair_item_id",
]

#: Bump when a change makes old readers misread new files; readers accept every version up to this one.
SCHEMA_VERSION = 1
METADATA_KEY = b"harness"
#: Rows per row group: the unit the comparator streams (the writer reads it at write time, so tests can shrink it).
ROW_GROUP_ROWS = 65_536

COLUMNS = ("model_id", "task", "role", "item_id", "query_id", "passage_id", "vector", "score", "rank")
#: columns a file may have (files since the fp64 reference): per text or pair, its token count without truncation
#: and whether the model cut it at its max_seq_length; absent in older files and for served models (null)
OPTIONAL_COLUMNS = {"tokens": pa.int32(), "truncated": pa.bool_()}
#: the ``score`` column's types: float32, or float64 in a ``--dtype float64`` run (an fp64 reference)
SCORE_TYPES = {"float32": pa.float32(), "float64": pa.float64()}
ROLES = ("document", "query", "pair")


def _escape(text_id: str) -> str:
    return text_id.replace("\\", "\\\\").replace("|", "\\|") if "\\" in text_id or "|" in text_id else text_id


def pair_item_id(query_id: str, passage_id: str) -> str:
    """The ``item_id`` of a rerank pair: both ids joined by ``|``, with ``\\`` and ``|`` inside each id escaped
    by a backslash. Injective (``a|b`` + ``c`` and ``a`` + ``b|c`` stay apart), and ``q|p`` exactly as before
    for ids without either character, so results files written before the escaping still compare."""
    return f"{_escape(query_id)}|{_escape(passage_id)}"


def split_pair_item_id(item_id: str) -> Tuple[str, str]:
    """``(query_id, passage_id)`` of a ``pair_item_id``; ``ValueError`` for a string it cannot have made."""
    parts: List[str] = []
    current: List[str] = []
    chars = iter(item_id)
    for char in chars:
        if char == "\\":
            escaped = next(chars, "")
            if escaped not in ("\\", "|"):
                raise ValueError(f"not a rerank pair id (a backslash escapes only '\\' and '|'): {item_id!r}")
            current.append(escaped)
        elif char == "|":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    if len(parts) != 2:
        raise ValueError(f"not a rerank pair id (one unescaped '|' expected): {item_id!r}")
    return parts[0], parts[1]


def arrow_schema(vector_width: int, *, score: str = "float32", tokens: bool = False) -> pa.Schema:
    """The columns of a results file whose vector column holds ``vector_width`` bytes per row, its scores as
    ``score`` (``SCORE_TYPES``), with the ``OPTIONAL_COLUMNS`` when ``tokens``."""
    vector_field = pa.field(
        "vector",
        pa.binary(max(vector_width, 1)),
        nullable=True,
        metadata={b"harness.encoding": b"raw little-endian; dim and vector_dtype per model in file metadata"},
    )
    return pa.schema(
        [
            pa.field("model_id", pa.string(), nullable=False),
            pa.field("task", pa.string(), nullable=False),
            pa.field("role", pa.string(), nullable=False),
            pa.field("item_id", pa.string(), nullable=False),
            pa.field("query_id", pa.string()),
            pa.field("passage_id", pa.string()),
            vector_field,
            pa.field("score", SCORE_TYPES[score]),
            pa.field("rank", pa.int32()),
            *(pa.field(name, kind) for name, kind in OPTIONAL_COLUMNS.items() if tokens),
        ]
    )


def _sort_keys(task: str) -> List[Tuple[str, str]]:
    keys = ["item_id"] if task == "embed" else ["query_id", "passage_id"]
    return [(k, "ascending") for k in keys]


def canonical_order(table: pa.Table, task: str) -> Optional[pa.Array]:
    """Indices that put one model's rows of ``table`` in canonical order (stable), or None when they already are
    (non-strictly: duplicates stay where they are, next to each other)."""
    if _ordered(table, task, strict=False):
        return None
    return pc.sort_indices(table, sort_keys=_sort_keys(task))


def _ordered(table: pa.Table, task: str, strict: bool) -> bool:
    n = table.num_rows
    if n < 2:
        return True
    later = {k: table.column(k).slice(1) for k, _ in _sort_keys(task)}
    earlier = {k: table.column(k).slice(0, n - 1) for k, _ in _sort_keys(task)}
    compare = pc.greater if strict else pc.greater_equal
    if task == "embed":
        ok = compare(later["item_id"], earlier["item_id"])
    else:
        q1, q0, p1, p0 = later["query_id"], earlier["query_id"], later["passage_id"], earlier["passage_id"]
        ok = pc.or_(pc.greater(q1, q0), pc.and_(pc.equal(q1, q0), compare(p1, p0)))
    return pc.all(ok, skip_nulls=False).as_py() is True  # a null id is out of order (fill_null imports pandas)


def in_canonical_order(table: pa.Table, task: str) -> bool:
    """Whether one model's rows (the key columns of ``table``: ``item_id``, or ``query_id`` and ``passage_id``) are
    strictly in canonical order: sorted and no key twice. One vectorized comparison of neighbours."""
    return _ordered(table, task, strict=True)


def metadata_bytes(metadata: Mapping[str, Any], *, rewrite: bool = False) -> bytes:
    """The ``harness`` schema metadata for ``metadata``: sorted JSON with a ``schema_version`` (a rewrite keeps
    the version its metadata names: its rows are still laid out that way)."""
    payload = {"schema_version": SCHEMA_VERSION, **metadata} if rewrite else {**metadata, "schema_version": SCHEMA_VERSION}
    return json.dumps(payload, sort_keys=True).encode()


@dataclass(frozen=True)
class ModelRows:
    """The rows one model contributes to a results file."""

    model_id: str
    task: str  # "embed" or "rerank"
    item_ids: Sequence[str]
    roles: Sequence[str] = ()  # "document"/"query" per embed row; rerank rows are all "pair"
    vectors: Optional[np.ndarray] = None  # (n, dim), embed only
    query_ids: Optional[Sequence[str]] = None  # rerank only
    passage_ids: Optional[Sequence[str]] = None
    scores: Optional[np.ndarray] = None  # float32, or float64 (stored as such: an fp64 reference)
    ranks: Optional[np.ndarray] = None
    tokens: Optional[np.ndarray] = None  # (n,) token counts without truncation (``OPTIONAL_COLUMNS``)
    truncated: Optional[np.ndarray] = None  # (n,) whether the model cut the text

    @classmethod
    def embedded(cls, model_id: str, documents: Sequence[Any], queries: Sequence[Any], vectors: np.ndarray,
                 **counts: Any) -> ModelRows:
        """An embed entry: ``documents`` then ``queries`` (corpus texts), one vector each, as every runner lays them out."""
        ids = [t.id for t in documents] + [t.id for t in queries]
        roles = ["document"] * len(documents) + ["query"] * len(queries)
        return cls(model_id=model_id, task="embed", item_ids=ids, roles=roles, vectors=vectors, **counts)

    @classmethod
    def reranked(cls, model_id: str, pairs: Sequence[Any], scores: np.ndarray, **counts: Any) -> ModelRows:
        """A rerank entry: one score per corpus pair (``query_id``, ``passage_id``), ranked within its query."""
        query_ids = [p.query_id for p in pairs]
        return cls(model_id=model_id, task="rerank", item_ids=[pair_item_id(p.query_id, p.passage_id) for p in pairs],
                   query_ids=query_ids, passage_ids=[p.passage_id for p in pairs], scores=scores,
                   ranks=rank_within_queries(query_ids, scores), **counts)


def rank_within_queries(query_ids: Sequence[str], scores: np.ndarray) -> np.ndarray:
    """1-based rank of each candidate within its query by descending score; ties keep file order."""
    ranks: np.ndarray = np.zeros(len(scores), dtype=np.int32)
    groups: Dict[str, List[int]] = {}
    for i, qid in enumerate(query_ids):
        groups.setdefault(qid, []).append(i)
    for rows in groups.values():
        idx = np.asarray(rows)
        order = idx[np.argsort(-scores[idx], kind="stable")]
        ranks[order] = np.arange(1, len(idx) + 1, dtype=np.int32)
    return ranks


def is_unicode_text(text: str) -> bool:
    """Whether ``text`` can be stored as UTF-8 (parquet strings, JSON): Python strings may hold lone surrogates."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _same_type(found: pa.DataType, expected: pa.DataType) -> bool:
    """A column's type as the schema has it (strings may also be ``large_string``: the same values)."""
    if pa.types.is_string(expected):
        return pa.types.is_string(found) or pa.types.is_large_string(found)
    if pa.types.is_fixed_size_binary(expected):
        return pa.types.is_fixed_size_binary(found)
    if expected == pa.float32():  # the score column: float32, or float64 in an fp64 reference
        return found in SCORE_TYPES.values()
    return found == expected


def check_column_types(schema: pa.Schema, source: str) -> None:
    """Refuse a file whose columns do not have the types of ``harness.results.schema`` (named, one line)."""
    expected = arrow_schema(1, tokens=True)
    for name in (*COLUMNS, *(c for c in OPTIONAL_COLUMNS if c in schema.names)):
        found, want = schema.field(name).type, expected.field(name).type
        if not _same_type(found, want):
            shown = ("fixed_size_binary (one width: raw vectors)" if pa.types.is_fixed_size_binary(want)
                     else "float or double" if name == "score" else str(want))
            raise ResultsFileError(f"{source}: column '{name}' must be {shown}, got {found}")
