"""Reading results files: validated on open, then read lazily, one model and row group at a time.

``ResultsFile`` opens local paths and ``scheme://`` URIs (``s3://``, ``gs://``, ``file://``, ...) through
``pyarrow.fs.FileSystem.from_uri``, so a merge job can read cells' results straight from object storage. The
layout it reads is ``harness.results.schema``; ``embeddings()`` turns the raw vector bytes back into numpy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from harness.errors import ResultsFileError, SchemaMismatch, StorageError, first_line
from harness.results import storage
from harness.results.meta import CorpusMeta, ModelRecord, Provenance, ResultsMeta, RunMeta, SideSettings
from harness.results.metadata_json import parse_metadata
from harness.results.schema import COLUMNS, METADATA_KEY, OPTIONAL_COLUMNS, SCHEMA_VERSION, check_column_types

__all__ = ["ResultsFile", "arrow_to_numpy", "single_chunk"]


class ResultsFile:
    """A validated, lazily read results (or baseline) file.

    Opening checks only the footer: that it is parquet, carries harness metadata of a readable schema version,
    and has the expected columns. Data is read per model and row group, so large files stay out of memory.

    ``path`` is a local path, or a URI with a scheme (``s3://bucket/run.parquet``, ``gs://...``,
    ``file:///abs/path``) opened with ``pyarrow.fs.FileSystem.from_uri``; a ``file://`` URI becomes a local
    ``Path``, any other stays the URI string in ``self.path``. Object stores need pyarrow built with them and
    the usual credentials in the environment.
    """

    def __init__(self, path: str | os.PathLike[str], *, shown: Optional[Union[Path, str]] = None) -> None:
        self.path: Union[Path, str]
        try:
            self.path, self._fs, inner = storage.locate(path)
        except StorageError as err:
            raise ResultsFileError(str(err)) from None
        if shown is not None:  # a normalized copy (``harness.results.normalize``) names the file it was made from
            self.path = shown
        if self._fs is None:
            if not Path(inner).is_file():
                what = "not a regular file" if Path(inner).exists() else "no such file"  # a directory, a device node
                raise ResultsFileError(f"{self.path}: {what}")
        else:
            import pyarrow.fs as pafs

            try:
                info = self._fs.get_file_info(inner)
            except (pa.ArrowException, OSError) as err:
                raise ResultsFileError(f"{self.path}: cannot open ({first_line(err)})") from None
            if info.type != pafs.FileType.File:
                what = "no such file" if info.type == pafs.FileType.NotFound else "not a regular file"
                raise ResultsFileError(f"{self.path}: {what}")
        try:
            # Local files: no pre-buffering (it holds a second copy of each column chunk while decoding), read
            # through a 4 MiB buffer instead; remote ones keep pre-buffering, which coalesces small requests.
            # One open file under two readers: every page's checksum verified, and one that skips the checks
            # for the bulk of a comparison's vectors (``read_vectors(verified=False)``, ``verify_vectors``).
            remote = self._fs is not None
            source = self._fs.open_input_file(inner) if remote else pa.OSFile(inner)
            options = dict(pre_buffer=remote, buffer_size=0 if remote else 1 << 22)
            self._file = pq.ParquetFile(source, page_checksum_verification=True, **options)
            self._unchecked = pq.ParquetFile(source, metadata=self._file.metadata, **options)
        except (pa.ArrowException, OSError) as err:
            raise ResultsFileError(f"{self.path}: not a readable parquet file ({first_line(err)})") from None
        raw = (self._file.schema_arrow.metadata or {}).get(METADATA_KEY)
        if raw is None:
            raise ResultsFileError(f"{self.path}: not a harness results file (no '{METADATA_KEY.decode()}' metadata)")
        self.meta: Dict[str, Any] = parse_metadata(raw, str(self.path))
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
        check_column_types(self._file.schema_arrow, str(self.path))
        # every typed field checked once, on open: a wrong type is bad input in either position, never a traceback
        self.typed = ResultsMeta.from_dict(self.meta, str(self.path))
        baseline = self.meta.get("baseline")
        self._provenance = None if baseline is None else Provenance.from_dict(baseline, str(self.path), "baseline")
        self._pure: Dict[int, str] = {}
        self._indexed = self._index_row_groups()
        self._checked_order = False  # normalized (``harness.results.normalize``) on the first read of rows
        self._kept: Dict[Tuple[str, str], pa.ChunkedArray] = {}  # (model, column) -> string column, read once

    # -- metadata -------------------------------------------------------------------------------------------

    @property
    def fingerprint(self) -> Dict[str, Any]:
        return dict(self.meta.get("fingerprint") or {})  # JSON null: empty, as in the typed views

    # typed views (``harness.results.meta``), checked on open

    @property
    def run(self) -> RunMeta:
        """How the run was made: device, dtype, batch size, TF32/threads/attention requested, peak memory."""
        return self.typed.run

    def side(self, model_id: str) -> SideSettings:
        """What ``policy.choose_class`` reads of this file for one model: device type, dtype, TF32, served."""
        return SideSettings.of(self.fingerprint, self.records.get(model_id))

    @property
    def records(self) -> Dict[str, ModelRecord]:
        """Per-model records (kind, status, source, weights hash, dim, speed, ...), by model id."""
        return self.typed.models

    @property
    def provenance(self) -> Optional[Provenance]:
        """Why this baseline exists (who, when, why, from which file); None for a plain run's results."""
        return self._provenance

    @property
    def corpus_meta(self) -> CorpusMeta:
        """Which corpus the run embedded (name, version, sha256, sizes)."""
        return self.typed.corpus

    @property
    def created_at(self) -> Optional[str]:
        return self.typed.created_at

    @property
    def harness_version(self) -> Optional[str]:
        return self.typed.harness_version

    @property
    def cell_id(self) -> Optional[str]:
        return self.typed.cell_id

    @property
    def stored_models(self) -> List[str]:
        """The models that have rows, in the order their rows are stored."""
        return list(self._groups)

    @property
    def num_rows(self) -> int:
        return int(self._file.metadata.num_rows)

    @property
    def arrow_schema(self) -> pa.Schema:
        """The file's arrow schema, its ``harness`` metadata included."""
        return self._file.schema_arrow

    @property
    def _groups(self) -> Dict[str, List[int]]:
        """Model id -> its row groups; on first use, a file not in canonical order (older versions, other tools)
        is replaced by its canonical copy (``harness.results.normalize``), read from then on."""
        if not self._checked_order:
            from harness.results.normalize import canonical_copy  # it reads through this module

            self._checked_order = True  # the check itself reads rows through here
            copy = canonical_copy(self)
            if copy is not None:
                self._file, self._unchecked, self._pure, self._kept = copy, copy, {}, {}
                self._indexed = self._index_row_groups()
        return self._indexed

    def iter_row_groups(self) -> Iterator[pa.Table]:
        """Every row group whole (all columns), in file order: what a rewrite copies."""
        self._groups  # noqa: B018 - in canonical order first
        for i in range(self._file.num_row_groups):
            yield self._read_group(i, list(self._file.schema_arrow.names))

    def _index_row_groups(self) -> Dict[str, List[int]]:
        """Map model id -> row groups holding its rows (the writer never mixes models inside a row group)."""
        index: Dict[str, List[int]] = {}
        col = self._file.schema_arrow.get_field_index("model_id")
        for i in range(self._file.num_row_groups):
            stats = self._file.metadata.row_group(i).column(col).statistics
            if stats is not None and stats.has_min_max and stats.min == stats.max:
                index.setdefault(stats.min, []).append(i)
                self._pure[i] = stats.min
            else:  # a file written by another tool: fall back to reading the column
                ids = self._read_group(i, ["model_id"]).column(0).unique().to_pylist()
                for model_id in ids:
                    index.setdefault(model_id, []).append(i)
                if len(ids) == 1:
                    self._pure[i] = ids[0]
        return index

    def _read_group(self, index: int, columns: List[str], verified: bool = True) -> pa.Table:
        try:
            # one column at a time in practice: pyarrow's decoding threads would only add contention
            source = self._file if verified else self._unchecked
            return source.read_row_group(index, columns=columns, use_threads=len(columns) > 1)
        except (pa.ArrowException, OSError) as err:
            raise ResultsFileError(f"{self.path}: row group {index} is unreadable ({first_line(err)})") from None

    def _model_group(self, model_id: str, index: int, columns: Sequence[str], verified: bool = True) -> pa.Table:
        """One row group's rows of one model (rows of other models filtered out in files that mix them)."""
        if self._pure.get(index) == model_id:
            return self._read_group(index, list(columns), verified)
        table = self._read_group(index, list({"model_id", *columns}), verified)
        if table.column("model_id").unique().to_pylist() != [model_id]:
            import pyarrow.compute as pc

            table = table.filter(pc.equal(table.column("model_id"), model_id))
        return table.select(list(columns))

    def model_table(self, model_id: str, columns: Sequence[str]) -> Iterator[pa.Table]:
        """Yield this model's rows row group by row group (bounded memory)."""
        for i in self._groups.get(model_id, []):
            yield self._model_group(model_id, i, columns)

    def read_model_group(self, model_id: str, group: int, columns: Sequence[str]) -> pa.Table:
        """Some columns of one row group's rows of one model (a row group of ``model_row_groups``): what a
        streamed comparison reads of a cross-encoder, one row group at a time."""
        return self._model_group(model_id, group, columns)

    def model_row_groups(self, model_id: str) -> List[Tuple[int, int]]:
        """``(row group index, number of this model's rows in it)`` in file order (from the footer when it can)."""
        out = []
        for i in self._groups.get(model_id, []):
            if self._pure.get(i) == model_id:
                out.append((i, int(self._file.metadata.row_group(i).num_rows)))
            else:
                out.append((i, len(self._model_group(model_id, i, ["model_id"]))))
        return out

    def model_columns(self, model_id: str, columns: Sequence[str]) -> Dict[str, pa.ChunkedArray]:
        """Whole columns of one model's rows (ids, roles: small next to the vectors), one chunk per row group.
        String columns are kept once read: the order check, the ids pass and the accuracy pass all need them."""
        self._groups  # noqa: B018 - in canonical order first (the check reads ids through here)
        schema = self._file.schema_arrow
        missing = [c for c in columns if (model_id, c) not in self._kept]
        tables = list(self.model_table(model_id, missing)) if missing else []
        read = {c: pa.chunked_array([single_chunk(t.column(c)) for t in tables], type=schema.field(c).type)
                for c in missing}
        self._kept.update({(model_id, c): col for c, col in read.items() if pa.types.is_string(col.type)})
        return {c: read[c] if c in read else self._kept[(model_id, c)] for c in columns}

    # -- data -----------------------------------------------------------------------------------------------

    def vector_spec(self, model_id: str) -> Tuple[int, np.dtype]:
        """``(dim, dtype)`` of one model's vectors, checked against the vector column's width."""
        record = self.records.get(model_id) or ModelRecord()
        dim, dtype = record.dim, _vector_dtype(record.vector_dtype)
        if dtype is None:
            raise ResultsFileError(f"{self.path}: model '{model_id}' has an invalid vector_dtype "
                                   f"{_short(record.vector_dtype)} (a numeric dtype such as float32 is required)")
        if dim is None or dim < 1:
            raise ResultsFileError(f"{self.path}: model '{model_id}' has an invalid dim {_short(dim)} (a positive integer is required)")
        width = self._file.schema_arrow.field("vector").type.byte_width
        sizes = [(r.dim, _vector_dtype(r.vector_dtype)) for r in self.records.values()]
        widest = max((d * t.itemsize for d, t in sizes if d is not None and d >= 1 and t is not None), default=0)
        if dim * dtype.itemsize > width or (widest and widest != width):
            raise ResultsFileError(
                f"{self.path}: model '{model_id}' dim {dim} does not match the vector column ({width} bytes per row)"
            )
        return dim, dtype

    def _vectors(self, model_id: str, column: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """The vector column's raw bytes as an (n, dim) array: a read-only view of the arrow buffer when the
        column is exactly as wide as this model's vectors, else a copy of the leading bytes of each value."""
        dim, dtype = self.vector_spec(model_id)
        need = dim * dtype.itemsize
        vec = single_chunk(column)
        if vec.null_count:
            raise ResultsFileError(f"{self.path}: model '{model_id}' has embed rows without a vector")
        width = vec.type.byte_width
        if width < need:
            raise ResultsFileError(
                f"{self.path}: model '{model_id}' vectors are {width} bytes wide, metadata says dim {dim}"
            )
        if not len(vec):
            return np.zeros((0, dim), dtype=dtype)
        buf = np.frombuffer(vec.buffers()[1], dtype=np.uint8, count=(vec.offset + len(vec)) * width)
        rows = buf.reshape(-1, width)[vec.offset :, :need]
        return np.ascontiguousarray(rows).view(dtype).reshape(len(vec), dim)

    def read_vectors(self, model_id: str, group: int, verified: bool = True) -> np.ndarray:
        """One row group's vectors of one bi-encoder, (n, dim) in the model's vector dtype (may be read-only);
        ``verified=False`` skips the page checksums (as much CPU as the read itself: ``verify_vectors`` later)."""
        return self._vectors(model_id, self._model_group(model_id, group, ["vector"], verified).column("vector"))

    def verify_vectors(self, model_id: str, ids: Optional[Sequence[str]] = None) -> None:
        """Check the page checksums of one model's vectors (``ResultsFileError`` naming the row group): of the row
        groups holding ``ids``, or every one. What a comparison that read them unverified does before it calls a
        difference drift."""
        groups = self._groups.get(model_id, [])
        if ids is not None:
            import pyarrow.compute as pc

            chunks = self.model_columns(model_id, ["item_id"])["item_id"].chunks  # one per row group
            wanted = pa.array(list(ids), pa.string())
            if len(chunks) == len(groups):
                groups = [g for g, chunk in zip(groups, chunks) if pc.any(pc.is_in(chunk, value_set=wanted)).as_py()]
        for group in groups:
            self._model_group(model_id, group, ["vector"])

    def iter_embeddings(self, model_id: str) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield ``(item_ids, roles, vectors)`` per row group for one bi-encoder; vectors are (n, dim)."""
        self.vector_spec(model_id)
        for table in self.model_table(model_id, ["item_id", "role", "vector"]):
            vectors = self._vectors(model_id, table.column("vector"))
            yield (
                arrow_to_numpy(table.column("item_id")),
                arrow_to_numpy(table.column("role")),
                vectors,
            )

    def embeddings(self, model_id: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All ``(item_ids, roles, vectors)`` of one bi-encoder (corpus-sized files; large ones: iterate)."""
        parts = list(self.iter_embeddings(model_id))
        if not parts:
            dim, dtype = self.vector_spec(model_id)
            return np.array([], dtype=str), np.array([], dtype=str), np.zeros((0, dim), dtype=dtype)
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))

    def to_pandas(self, models: Optional[Sequence[str]] = None) -> Any:
        """A tidy ``pandas.DataFrame`` of these models' rows (default: all), vectors decoded to numpy arrays and
        ranks as integers (``harness.results.frame``; pandas is imported only here)."""
        from harness.results.frame import to_frame

        return to_frame(self, models)

    def token_columns(self, model_id: str) -> Optional[Dict[str, np.ndarray]]:
        """``item_id``, ``tokens`` and ``truncated`` of one model's rows, in row order; None where the file
        (older than these columns) or the model (served over HTTP) has none."""
        if not all(c in self._file.schema_arrow.names for c in OPTIONAL_COLUMNS):
            return None
        columns = self.model_columns(model_id, ["item_id", *OPTIONAL_COLUMNS])
        if any(columns[c].null_count for c in OPTIONAL_COLUMNS):
            return None
        return {name: arrow_to_numpy(values) for name, values in columns.items()}

    def rerank(self, model_id: str) -> Dict[str, np.ndarray]:
        """``query_id``, ``passage_id``, ``item_id``, ``score`` and ``rank`` arrays of one cross-encoder."""
        cols = ["item_id", "query_id", "passage_id", "score", "rank"]
        tables = list(self.model_table(model_id, cols))
        if not tables:
            return {c: np.array([]) for c in cols}
        table = pa.concat_tables(tables)
        return {c: arrow_to_numpy(table.column(c)) for c in cols}


def _vector_dtype(value: Optional[str]) -> Optional[np.dtype]:
    """The little-endian numeric dtype a ``vector_dtype`` names (float32, int8, ...; absent: float32), or None for anything else
    (an object, string or void dtype cannot be viewed from raw bytes)."""
    try:
        dtype: np.dtype = np.dtype("float32" if value is None else value)  # JSON null: the default, as for every typed field
    except (TypeError, ValueError, SyntaxError):
        return None
    return dtype.newbyteorder("<") if dtype.kind in "fiu" and 1 <= dtype.itemsize <= 16 else None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def single_chunk(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One array; a single chunk as is (``combine_chunks`` copies even then)."""
    if isinstance(column, pa.ChunkedArray):
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return column


def arrow_to_numpy(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A column as numpy: strings as ``str``, numbers and booleans without nulls straight from the buffers.

    Avoids ``Array.to_numpy``, which imports pandas (about 0.4 s and 50 MB of RSS in a fresh process) even
    where no pandas object is involved; the comparator stays lean in memory.
    """
    array = single_chunk(column)
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return np.array(array.to_pylist(), dtype=str) if len(array) else np.array([], dtype=str)
    if array.null_count or not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
        return array.to_numpy(zero_copy_only=False)
    if not len(array):
        return np.zeros(0, dtype=bool if pa.types.is_boolean(kind) else None)
    end = array.offset + len(array)
    if pa.types.is_boolean(kind):
        bits = np.frombuffer(array.buffers()[1], dtype=np.uint8, count=(end + 7) // 8)
        return np.unpackbits(bits, bitorder="little")[array.offset : end].astype(bool)
    code = "f" if pa.types.is_floating(kind) else "i" if pa.types.is_signed_integer(kind) else "u"
    data = np.frombuffer(array.buffers()[1], dtype=np.dtype(f"<{code}{kind.bit_width // 8}"), count=end)
    return data[array.offset :].copy()

