"""The results file format: the one contract between the runner and the comparator.

A results file is one parquet file per run, long format:

* one ``task="embed"`` row per text per bi-encoder, the vector in ``vector``;
* one ``task="rerank"`` row per (query, candidate) pair per cross-encoder, with ``score`` and ``rank``.

The vector column is ``fixed_size_binary`` holding raw little-endian values (float32 unless the model's
metadata says otherwise). A ``fixed_size_list<float32>`` column decodes 3-7x slower in pyarrow because parquet
stores a repetition level per element (measured, see ``benchmarks/``), so the raw layout is what lets the
comparator stream large files. The column width is the widest model's vector; each model's ``dim`` and
``vector_dtype`` live in the file metadata, and ``embeddings()`` turns the bytes back into a numpy matrix.

Everything else about a run (environment fingerprint, corpus hash, per-model weight hashes and status) is JSON
in the parquet schema metadata under the key ``harness``. This module needs only numpy and pyarrow, because it
is imported both inside old matrix environments (runner) and in the controlling one (comparator).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from harness.errors import ResultsFileError, SchemaMismatch

__all__ = [
    "SCHEMA_VERSION",
    "METADATA_KEY",
    "COLUMNS",
    "ModelRows",
    "ResultsFile",
    "atomic_output",
    "write_results",
]

#: Bump when a change makes old readers misread new files; readers accept every version up to this one.
SCHEMA_VERSION = 1
METADATA_KEY = b"harness"
ROW_GROUP_ROWS = 65_536

COLUMNS = ("model_id", "task", "role", "item_id", "query_id", "passage_id", "vector", "score", "rank")
ROLES = ("document", "query", "pair")


def _schema(vector_width: int) -> pa.Schema:
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
            pa.field("score", pa.float32()),
            pa.field("rank", pa.int32()),
        ]
    )


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
    scores: Optional[np.ndarray] = None
    ranks: Optional[np.ndarray] = None


@contextlib.contextmanager
def atomic_output(path: "str | os.PathLike[str]") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on any error remove it.

    The rename is atomic on POSIX, so readers (and a later run after Ctrl-C or kill) see either the old file or
    the complete new one, never a partial file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=str(target.parent))
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a results file should be as readable as any other
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _vector_bytes(vectors: np.ndarray, width: int) -> pa.Array:
    """Pack an (n, dim) matrix as fixed-size binary of ``width`` bytes per row (zero padded)."""
    raw = np.ascontiguousarray(vectors)
    little = raw.dtype.newbyteorder("<")
    raw = raw.astype(little, copy=False).view(np.uint8).reshape(len(raw), -1)
    if raw.shape[1] < width:
        raw = np.hstack([raw, np.zeros((len(raw), width - raw.shape[1]), dtype=np.uint8)])
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(raw), [None, pa.py_buffer(raw.tobytes())])


def _model_table(rows: ModelRows, schema: pa.Schema, width: int) -> pa.Table:
    n = len(rows.item_ids)
    nulls_str = pa.nulls(n, pa.string())
    if rows.task == "embed":
        assert rows.vectors is not None and len(rows.vectors) == n
        columns = {
            "query_id": nulls_str,
            "passage_id": nulls_str,
            "vector": _vector_bytes(rows.vectors, width),
            "score": pa.nulls(n, pa.float32()),
            "rank": pa.nulls(n, pa.int32()),
        }
    else:
        assert rows.scores is not None and rows.ranks is not None
        columns = {
            "query_id": pa.array(list(rows.query_ids or ()), pa.string()),
            "passage_id": pa.array(list(rows.passage_ids or ()), pa.string()),
            "vector": pa.nulls(n, pa.binary(width)),
            "score": pa.array(np.asarray(rows.scores, dtype=np.float32)),
            "rank": pa.array(np.asarray(rows.ranks, dtype=np.int32)),
        }
    return pa.table(
        {
            "model_id": pa.array([rows.model_id] * n, pa.string()),
            "task": pa.array([rows.task] * n, pa.string()),
            "role": pa.array(list(rows.roles) if rows.task == "embed" else ["pair"] * n, pa.string()),
            "item_id": pa.array(list(rows.item_ids), pa.string()),
            **columns,
        },
        schema=schema,
    )


def write_results(path: "str | os.PathLike[str]", rows: Sequence[ModelRows], metadata: Dict[str, Any]) -> Path:
    """Write one results file atomically; ``metadata`` becomes the ``harness`` JSON in the schema metadata."""
    widths = [r.vectors.shape[1] * r.vectors.dtype.itemsize for r in rows if r.vectors is not None]
    width = max(widths, default=4)
    meta = dict(metadata)
    meta["schema_version"] = SCHEMA_VERSION
    schema = _schema(width).with_metadata({METADATA_KEY: json.dumps(meta, sort_keys=True).encode()})
    with atomic_output(path) as tmp:
        with pq.ParquetWriter(
            str(tmp),
            schema,
            compression="none",  # float32 noise does not compress; snappy only costs decode time
            use_dictionary=["model_id", "task", "role"],
        ) as writer:
            for model_rows in rows:
                if len(model_rows.item_ids):
                    writer.write_table(_model_table(model_rows, schema, width), row_group_size=ROW_GROUP_ROWS)
    return Path(path)


class ResultsFile:
    """A validated, lazily read results (or baseline) file.

    Opening checks only the footer: that it is parquet, carries harness metadata of a readable schema version,
    and has the expected columns. Data is read per model and row group, so large files stay out of memory.
    """

    def __init__(self, path: "str | os.PathLike[str]") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ResultsFileError(f"{self.path}: no such file")
        try:
            self._file = pq.ParquetFile(str(self.path))
        except (pa.ArrowException, OSError) as err:
            raise ResultsFileError(f"{self.path}: not a readable parquet file ({_first_line(err)})") from None
        raw = (self._file.schema_arrow.metadata or {}).get(METADATA_KEY)
        if raw is None:
            raise ResultsFileError(f"{self.path}: not a harness results file (no '{METADATA_KEY.decode()}' metadata)")
        try:
            self.meta: Dict[str, Any] = json.loads(raw)
        except ValueError as err:
            raise ResultsFileError(f"{self.path}: harness metadata is not valid JSON ({err})") from None
        version = self.meta.get("schema_version")
        if not isinstance(version, int) or version < 1:
            raise ResultsFileError(f"{self.path}: harness metadata has no valid schema_version")
        if version > SCHEMA_VERSION:
            raise SchemaMismatch(
                f"{self.path}: schema version {version} is newer than this harness reads ({SCHEMA_VERSION}); "
                "upgrade embedding-harness"
            )
        missing = [c for c in COLUMNS if c not in self._file.schema_arrow.names]
        if missing:
            raise ResultsFileError(f"{self.path}: missing column(s) {', '.join(missing)}")
        self._groups = self._index_row_groups()

    # -- metadata -------------------------------------------------------------------------------------------

    @property
    def models(self) -> Dict[str, Dict[str, Any]]:
        """Per-model metadata (kind, status, weights hash, dim, ...), by model id."""
        return dict(self.meta.get("models", {}))

    @property
    def corpus(self) -> Dict[str, Any]:
        return dict(self.meta.get("corpus", {}))

    @property
    def fingerprint(self) -> Dict[str, Any]:
        return dict(self.meta.get("fingerprint", {}))

    @property
    def num_rows(self) -> int:
        return int(self._file.metadata.num_rows)

    def _index_row_groups(self) -> Dict[str, List[int]]:
        """Map model id -> row groups holding its rows (the writer never mixes models inside a row group)."""
        index: Dict[str, List[int]] = {}
        col = self._file.schema_arrow.get_field_index("model_id")
        for i in range(self._file.num_row_groups):
            stats = self._file.metadata.row_group(i).column(col).statistics
            if stats is not None and stats.has_min_max and stats.min == stats.max:
                index.setdefault(stats.min, []).append(i)
            else:  # a file written by another tool: fall back to reading the column
                ids = self._read_group(i, ["model_id"]).column(0).unique().to_pylist()
                for model_id in ids:
                    index.setdefault(model_id, []).append(i)
        return index

    def _read_group(self, index: int, columns: List[str]) -> pa.Table:
        try:
            return self._file.read_row_group(index, columns=columns)
        except (pa.ArrowException, OSError) as err:
            raise ResultsFileError(f"{self.path}: row group {index} is unreadable ({_first_line(err)})") from None

    def model_table(self, model_id: str, columns: Sequence[str]) -> Iterator[pa.Table]:
        """Yield this model's rows row group by row group (bounded memory)."""
        for i in self._groups.get(model_id, []):
            table = self._read_group(i, list({"model_id", *columns}))
            if table.column("model_id").unique().to_pylist() != [model_id]:
                import pyarrow.compute as pc

                table = table.filter(pc.equal(table.column("model_id"), model_id))
            yield table.select(list(columns))

    # -- data -----------------------------------------------------------------------------------------------

    def vector_spec(self, model_id: str) -> Tuple[int, np.dtype]:
        info = self.models.get(model_id, {})
        try:
            return int(info["dim"]), np.dtype(info.get("vector_dtype", "float32")).newbyteorder("<")
        except (KeyError, TypeError, ValueError):
            raise ResultsFileError(f"{self.path}: model '{model_id}' has no valid dim/vector_dtype metadata") from None

    def iter_embeddings(self, model_id: str) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield ``(item_ids, roles, vectors)`` per row group for one bi-encoder; vectors are (n, dim)."""
        dim, dtype = self.vector_spec(model_id)
        need = dim * dtype.itemsize
        for table in self.model_table(model_id, ["item_id", "role", "vector"]):
            vec = table.column("vector").combine_chunks()
            if vec.null_count:
                raise ResultsFileError(f"{self.path}: model '{model_id}' has embed rows without a vector")
            width = vec.type.byte_width
            if width < need:
                raise ResultsFileError(
                    f"{self.path}: model '{model_id}' vectors are {width} bytes wide, metadata says dim {dim}"
                )
            buf = np.frombuffer(vec.buffers()[1], dtype=np.uint8, count=(vec.offset + len(vec)) * width)
            rows = buf.reshape(-1, width)[vec.offset :, :need]
            vectors = np.ascontiguousarray(rows).view(dtype).reshape(len(vec), dim)
            yield (
                table.column("item_id").to_numpy(zero_copy_only=False).astype(str),
                table.column("role").to_numpy(zero_copy_only=False).astype(str),
                vectors,
            )

    def embeddings(self, model_id: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All ``(item_ids, roles, vectors)`` of one bi-encoder (corpus-sized files; large ones: iterate)."""
        parts = list(self.iter_embeddings(model_id))
        if not parts:
            dim, dtype = self.vector_spec(model_id)
            return np.array([], dtype=str), np.array([], dtype=str), np.zeros((0, dim), dtype=dtype)
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))  # type: ignore[return-value]

    def rerank(self, model_id: str) -> Dict[str, np.ndarray]:
        """``query_id``, ``passage_id``, ``item_id``, ``score`` and ``rank`` arrays of one cross-encoder."""
        cols = ["item_id", "query_id", "passage_id", "score", "rank"]
        tables = list(self.model_table(model_id, cols))
        if not tables:
            return {c: np.array([]) for c in cols}
        table = pa.concat_tables(tables)
        out = {c: table.column(c).to_numpy(zero_copy_only=False) for c in cols}
        for c in ("item_id", "query_id", "passage_id"):
            out[c] = out[c].astype(str)
        return out


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
