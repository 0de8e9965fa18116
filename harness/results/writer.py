"""The only code that writes results files: whole runs, chunked runs, and rewrites of existing files.

Every write is atomic (``harness.fsio.atomic_output``) and bounded in memory (row group by row group);
callers that may race for one path hold ``harness.fsio.output_lock``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from harness.errors import ResultsFileError
from harness.results import schema
from harness.results.normalize import parquet_writer
from harness.results.reader import ResultsFile, single_chunk
from harness.results.schema import METADATA_KEY, ModelRows, arrow_schema, canonical_order, is_unicode_text, metadata_bytes

__all__ = ["ResultsWriter", "write_results", "rewrite_metadata", "rewrite_model"]

Source = Union[ResultsFile, str, "os.PathLike[str]"]


def _vector_bytes(vectors: np.ndarray, width: int) -> pa.Array:
    """Pack an (n, dim) matrix as fixed-size binary of ``width`` bytes per row (zero padded)."""
    raw = np.ascontiguousarray(vectors)
    little = raw.dtype.newbyteorder("<")
    raw = raw.astype(little, copy=False).view(np.uint8).reshape(len(raw), -1)
    if raw.shape[1] < width:
        raw = np.hstack([raw, np.zeros((len(raw), width - raw.shape[1]), dtype=np.uint8)])
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(raw), [None, pa.py_buffer(raw.tobytes())])


def _short(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class _SeenIds:
    """The item ids one model has written, as sorted runs of 64-bit hashes (8 bytes a row, not the strings: a
    chunked file may be larger than memory). Exact inside one ``write`` call (the runner writes a model in
    one); across calls two distinct ids collide with odds of about rows**2 / 2**65 (1e-8 at a million rows)."""

    def __init__(self) -> None:
        self._runs: List[np.ndarray] = []

    def add(self, ids: Sequence[str]) -> Optional[str]:
        """Record ``ids``; the first of them that was already there (or is there twice), else None."""
        seen: set = set()
        for item_id in ids:
            if item_id in seen:
                return item_id
            seen.add(item_id)
        hashes = np.fromiter((hash(i) for i in ids), dtype=np.int64, count=len(ids))
        for run in self._runs:
            at = np.minimum(np.searchsorted(run, hashes), len(run) - 1)
            hits = np.flatnonzero(run[at] == hashes)
            if len(hits):
                return ids[int(hits[0])]
        self._runs.append(np.sort(hashes))
        while len(self._runs) > 1 and len(self._runs[-1]) >= len(self._runs[-2]):  # merged like a binary counter
            last = self._runs.pop()
            self._runs[-1] = np.sort(np.concatenate([self._runs[-1], last]), kind="mergesort")
        return None


def _strings(values: Sequence[Any], model_id: str, column: str) -> pa.Array:
    """A string column; a value that is no Unicode text (a lone surrogate) is named, not a UnicodeEncodeError."""
    try:
        return pa.array(list(values), pa.string())
    except UnicodeEncodeError:
        bad = next(v for v in values if isinstance(v, str) and not is_unicode_text(v))
        raise ResultsFileError(f"model '{model_id}': {column} {_short(bad)} is not valid Unicode text (a lone "
                               "surrogate): it cannot be written") from None


def _optional(rows: ModelRows, file_schema: pa.Schema, n: int) -> Dict[str, pa.Array]:
    """The ``OPTIONAL_COLUMNS`` the file has: the rows' values, or nulls (a model without them: served)."""
    out = {}
    for name, kind in schema.OPTIONAL_COLUMNS.items():
        if name in file_schema.names:
            values = getattr(rows, name)
            out[name] = pa.nulls(n, kind) if values is None else pa.array(np.asarray(values), kind)
    return out


def score_dtype(score: pa.DataType) -> type:
    """numpy's dtype of a score column (float32, or float64 for an fp64 reference), without pyarrow's
    ``to_pandas_dtype``: that imports pandas, which a matrix cell's environment need not have."""
    return np.float64 if pa.types.is_float64(score) else np.float32


def _model_table(rows: ModelRows, file_schema: pa.Schema, width: int) -> pa.Table:
    n = len(rows.item_ids)
    score = file_schema.field("score").type
    item_ids = _strings(rows.item_ids, rows.model_id, "item_id")  # the id named first when a string is bad
    nulls_str = pa.nulls(n, pa.string())
    if rows.task == "embed":
        assert rows.vectors is not None and len(rows.vectors) == n
        columns = {
            "query_id": nulls_str,
            "passage_id": nulls_str,
            "vector": _vector_bytes(rows.vectors, width),
            "score": pa.nulls(n, score),
            "rank": pa.nulls(n, pa.int32()),
        }
    else:
        assert rows.scores is not None and rows.ranks is not None
        columns = {
            "query_id": _strings(rows.query_ids or (), rows.model_id, "query_id"),
            "passage_id": _strings(rows.passage_ids or (), rows.model_id, "passage_id"),
            "vector": pa.nulls(n, pa.binary(width)),
            "score": pa.array(np.asarray(rows.scores, dtype=score_dtype(score))),
            "rank": pa.array(np.asarray(rows.ranks, dtype=np.int32)),
        }
    return pa.table(
        {
            "model_id": pa.array([rows.model_id] * n, pa.string()),
            "task": pa.array([rows.task] * n, pa.string()),
            "role": pa.array(list(rows.roles) if rows.task == "embed" else ["pair"] * n, pa.string()),
            "item_id": item_ids,
            **columns,
            **_optional(rows, file_schema, n),
        },
        schema=file_schema,
    )


class ResultsWriter:
    """Write one results file in chunks, atomically, holding at most about one row group in memory.

    ``metadata`` must be complete when the writer opens (parquet stores it in the schema). A row group never
    mixes models; a model's chunks must come in canonical order (a file larger than memory is not sorted here),
    and a duplicate item id is a ``ResultsFileError`` (the comparator aligns rows by id). ``canonical=False`` and
    ``unique_ids=False`` are for tests that make old-style or broken files on purpose.
    """

    def __init__(self, path: str | os.PathLike[str], metadata: Mapping[str, Any], vector_width: int, *,
                 unique_ids: bool = True, canonical: bool = True, score: str = "float32", tokens: bool = False) -> None:
        self.path = Path(path)
        self.canonical = canonical
        self._last_key: Dict[str, Tuple[Any, ...]] = {}
        self.width = max(int(vector_width), 1)
        self.schema = arrow_schema(self.width, score=score, tokens=tokens).with_metadata({METADATA_KEY: metadata_bytes(metadata)})
        self._stack: Optional[contextlib.ExitStack] = None
        self._writer: Optional[pq.ParquetWriter] = None
        self._pending: List[pa.Table] = []
        self._pending_rows = 0
        self._pending_model: Optional[str] = None
        self._seen: Optional[Dict[str, _SeenIds]] = {} if unique_ids else None

    def __enter__(self) -> ResultsWriter:
        with contextlib.ExitStack() as stack:
            self._writer = stack.enter_context(parquet_writer(self.path, self.schema))
            self._stack = stack.pop_all()
        return self

    def write(self, rows: ModelRows) -> None:
        """Append one model's rows (a whole model or one chunk of it)."""
        if self._writer is None:
            raise RuntimeError("ResultsWriter.write outside its 'with' block")
        if not len(rows.item_ids):
            return
        if rows.vectors is not None and rows.vectors.shape[1] * rows.vectors.dtype.itemsize > self.width:
            raise ValueError(
                f"model '{rows.model_id}': vectors are {rows.vectors.shape[1] * rows.vectors.dtype.itemsize} bytes "
                f"wide, the file's vector column holds {self.width}"
            )
        duplicate = None if self._seen is None else self._seen.setdefault(rows.model_id, _SeenIds()).add(rows.item_ids)
        if duplicate is not None:  # the comparator aligns rows by item id: a second one would make the file unusable
            raise ResultsFileError(f"{self.path}: model '{rows.model_id}': duplicate item id {_short(duplicate)} "
                                   "(item ids are unique per model; nothing was written)")
        try:
            table = _model_table(rows, self.schema, self.width)
        except ResultsFileError as err:
            raise ResultsFileError(f"{self.path}: {err} (nothing was written)") from None
        if self.canonical:
            table = self._in_order(rows, table)
        if rows.model_id != self._pending_model:
            self._flush(everything=True)
            self._pending_model = rows.model_id
        self._pending.append(table)
        self._pending_rows += len(rows.item_ids)
        self._flush(everything=False)

    def _in_order(self, rows: ModelRows, table: pa.Table) -> pa.Table:
        """``table`` sorted in canonical order, after the model's previous chunk (else a ``ValueError``)."""
        order = canonical_order(table, rows.task)
        if order is not None:
            table = table.take(order)
        names = ["item_id"] if rows.task == "embed" else ["query_id", "passage_id"]
        first = tuple(table.column(n)[0].as_py() for n in names)
        last = self._last_key.get(rows.model_id)
        if last is not None and first < last:
            raise ValueError(f"{self.path}: model '{rows.model_id}': a chunk starts at {_short(str(first))}, before the "
                             f"previous chunk's end {_short(str(last))}: write a model's chunks in canonical order")
        self._last_key[rows.model_id] = tuple(table.column(n)[len(table) - 1].as_py() for n in names)
        return table

    def _flush(self, everything: bool) -> None:
        """Write the buffered rows as full row groups (all of them, the last one short, when ``everything``)."""
        assert self._writer is not None
        group = schema.ROW_GROUP_ROWS
        if not self._pending_rows or (not everything and self._pending_rows < group):
            return
        table = pa.concat_tables(self._pending) if len(self._pending) > 1 else self._pending[0]
        full = self._pending_rows if everything else self._pending_rows - self._pending_rows % group
        self._writer.write_table(table.slice(0, full), row_group_size=group)
        rest = table.slice(full)
        self._pending = [rest] if len(rest) else []
        self._pending_rows = len(rest)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Optional[bool]:
        stack, self._stack = self._stack, None
        assert stack is not None, "ResultsWriter exited without being entered"
        try:
            if exc_type is None:
                self._flush(everything=True)
        except BaseException:
            exc_type, exc, tb = sys.exc_info()
            raise
        finally:
            self._writer, self._pending, self._pending_rows = None, [], 0
            # closes the parquet writer, then renames the file into place (or removes it after an error)
            stack.__exit__(exc_type, exc, tb)
        return None


def write_results(path: str | os.PathLike[str], rows: Sequence[ModelRows], metadata: Mapping[str, Any], *,
                  unique_ids: bool = True, canonical: bool = True) -> Path:
    """Write one results file atomically, in canonical order; ``metadata`` becomes the ``harness`` JSON in the
    schema metadata; float64 scores are stored as such, token columns when a model has them. ``unique_ids=False`` lets duplicate item ids through and ``canonical=False`` keeps the rows'
    order: only for tests that make broken or old-style files on purpose."""
    widths = [r.vectors.shape[1] * r.vectors.dtype.itemsize for r in rows if r.vectors is not None]
    score = "float64" if any(r.scores is not None and np.asarray(r.scores).dtype == np.float64 for r in rows) else "float32"
    with ResultsWriter(path, metadata, vector_width=max(widths, default=4), unique_ids=unique_ids, canonical=canonical,
                       score=score, tokens=any(r.tokens is not None for r in rows)) as writer:
        for model_rows in rows:
            writer.write(model_rows)
    return Path(path)


# -- rewrites of existing files: same rows (or one model's values replaced), row group by row group -------------


def _open(source: Source) -> ResultsFile:
    return source if isinstance(source, ResultsFile) else ResultsFile(source)


def rewrite_metadata(source: Source, target: str | os.PathLike[str], metadata: Mapping[str, Any]) -> Path:
    """Copy a results file to ``target`` under new ``harness`` metadata, atomically, its rows in canonical order
    (how a baseline is normalized once: ``harness.results.normalize``).

    Page checksums are written: a baseline lives for years, and bit rot must read as a broken file, not drift.
    """
    from harness.results.normalize import write_canonical

    return write_canonical(_open(source), target, metadata)


def _replace_vectors(column: pa.Array, rows: np.ndarray, values: np.ndarray, dtype: np.dtype) -> pa.Array:
    """The fixed-size binary ``column`` with the leading bytes of ``rows`` replaced by ``values`` (n, dim)."""
    width = column.type.byte_width
    raw = np.frombuffer(column.buffers()[1], dtype=np.uint8, count=(column.offset + len(column)) * width)
    raw = raw.reshape(-1, width)[column.offset :].copy()
    packed = np.ascontiguousarray(values, dtype=dtype.newbyteorder("<")).view(np.uint8).reshape(len(rows), -1)
    raw[rows, : packed.shape[1]] = packed
    validity = column.buffers()[0] if column.null_count else None
    return pa.FixedSizeBinaryArray.from_buffers(column.type, len(column), [validity, pa.py_buffer(raw.tobytes())],
                                                null_count=column.null_count)


def _replace_scores(column: pa.Array, rows: np.ndarray, values: np.ndarray) -> pa.Array:
    valid = np.asarray(column.is_valid())
    scores = np.asarray(column.fill_null(0).to_numpy(zero_copy_only=False), dtype=score_dtype(column.type)).copy()
    scores[rows] = values
    return pa.array(scores, mask=~valid, type=column.type)


def rewrite_model(
    source: Source,
    target: str | os.PathLike[str],
    model_id: str,
    *,
    vectors: Optional[np.ndarray] = None,
    scores: Optional[np.ndarray] = None,
    metadata: Optional[Mapping[str, Any]] = None,
) -> Path:
    """Copy a results file with one model's ``vectors`` (n, dim) or ``scores`` (n,) replaced, atomically.

    The new values are in the model's row order in the file; other models' rows are copied as they are.
    """
    results = _open(source)
    meta: Dict[str, Any] = dict(results.meta if metadata is None else metadata)
    file_schema = results.arrow_schema.with_metadata({METADATA_KEY: metadata_bytes(meta, rewrite=True)})
    dtype = results.vector_spec(model_id)[1] if vectors is not None else np.dtype("<f4")
    done = 0
    with parquet_writer(Path(target), file_schema) as writer:
        for table in results.iter_row_groups():
            rows = np.flatnonzero(np.asarray(table.column("model_id").to_pylist(), dtype=object) == model_id)
            end = done + len(rows)
            if len(rows) and vectors is not None:
                column = _replace_vectors(single_chunk(table.column("vector")), rows, vectors[done:end], dtype)
                table = table.set_column(table.schema.get_field_index("vector"), file_schema.field("vector"), column)
            if len(rows) and scores is not None:
                column = _replace_scores(single_chunk(table.column("score")), rows, np.asarray(scores[done:end]))
                table = table.set_column(table.schema.get_field_index("score"), file_schema.field("score"), column)
            done = end
            writer.write_table(table.cast(file_schema))
        for name, values in (("vectors", vectors), ("scores", scores)):
            if values is not None and len(values) != done:
                raise ValueError(f"{results.path}: model '{model_id}' has {done} rows, got {len(values)} {name}")
    return Path(target)
