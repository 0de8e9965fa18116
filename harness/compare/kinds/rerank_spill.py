"""Temporary storage of the streamed rerank comparison (``kinds.rerank_source``): pairs cut into hash buckets that
each fit half of ``HARNESS_COMPARE_MEMORY_MB`` (one bucket in memory, more in temporary files), and the
candidate's scores put back in baseline order (in memory up to half the budget, else regions of a temporary
file, one per baseline row group, each read back whole).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator, List, Optional

import numpy as np
import pyarrow as pa

from harness.compare import workers
from harness.results import arrow_to_numpy

__all__ = ["PAIR_BYTES", "AlignedScores", "Buckets", "as_arrow", "bucket_rows", "hash_buckets"]

#: bytes a bucketed pair costs in memory while its bucket is joined: the row (id of ~20 characters, position,
#: score) and arrow's hash tables over the ids (duplicates, ``index_in``, ``is_in``). Measured: the shuffled
#: ``bench_rerank.py`` at 1M pairs (one bucket) peaked ~300 MB above its bare read for 2M rows, ~150 bytes each
PAIR_BYTES = 160


def as_arrow(values: np.ndarray) -> pa.Array:
    """An int64 or float64 numpy array as arrow, over the same bytes: ``pa.array`` would import pandas (~50 MB
    of RSS, 0.4 s), which the comparator never does."""
    kinds = {np.dtype(np.int64): pa.int64(), np.dtype(np.float64): pa.float64()}
    data = np.ascontiguousarray(values)
    return pa.Array.from_buffers(kinds[data.dtype], len(data), [None, pa.py_buffer(data)])


#: at most this many buckets (one temporary file open per bucket while writing: within the usual limit of 1024
#: open files); past MAX_BUCKETS x half the budget of pairs (64 GB at the default 512 MB) a bucket holds more
MAX_BUCKETS = 256


def bucket_rows(rows: int, memory_mb: Optional[int] = None) -> int:
    """How many buckets spread ``rows`` pairs so that one bucket fits in half the comparison's memory."""
    budget = ((workers.MEMORY_MB if memory_mb is None else memory_mb) << 20) // 2
    return min(MAX_BUCKETS, max(1, math.ceil(rows * PAIR_BYTES / max(budget, 1))))


class Buckets:
    """Tables cut into ``count`` buckets: in memory for one bucket, else one arrow stream file per bucket."""

    def __init__(self, count: int, schema: pa.Schema, directory: Optional[Path]) -> None:
        self.count, self.schema = count, schema
        self.parts: List[pa.RecordBatch] = []
        self.writers: List[pa.ipc.RecordBatchStreamWriter] = []
        self.paths: List[Path] = []
        if count > 1:
            assert directory is not None
            self.paths = [directory / f"bucket-{i}.arrows" for i in range(count)]
            self.writers = [pa.ipc.new_stream(str(p), schema) for p in self.paths]

    def add(self, batch: pa.RecordBatch, bucket: Optional[np.ndarray]) -> None:
        if self.count == 1 or bucket is None:
            self.parts.append(batch)
            return
        order = np.argsort(bucket, kind="stable")
        cuts = np.searchsorted(bucket[order], np.arange(self.count + 1))
        taken = batch.take(as_arrow(order.astype(np.int64)))
        for b in np.flatnonzero(np.diff(cuts)).tolist():
            self.writers[b].write_batch(taken.slice(int(cuts[b]), int(cuts[b + 1] - cuts[b])))

    def tables(self) -> Iterator[pa.Table]:
        if self.count == 1:
            yield pa.Table.from_batches(self.parts, schema=self.schema)
            self.parts = []
            return
        for writer in self.writers:
            writer.close()
        for path in self.paths:
            with pa.memory_map(str(path)) as source:
                table = pa.ipc.open_stream(source).read_all()
            yield table
            del table
            path.unlink()


def hash_buckets(values: pa.Array, count: int) -> Optional[np.ndarray]:
    """Bucket of each string, by its hash (one process: Python's string hash is stable within it)."""
    if count == 1:
        return None
    encoded = values.dictionary_encode()
    names = np.fromiter((hash(v) % count for v in encoded.dictionary.to_pylist()), dtype=np.int64)
    return names[arrow_to_numpy(encoded.indices).astype(np.intp)]


class AlignedScores:
    """The candidate's scores in baseline order, written as the buckets are joined: in memory up to half the
    budget, else appended as (position, score) records to the region of their baseline row group of a
    temporary file, each region read back whole (one row group) and put in order."""

    RECORD = np.dtype([("position", "<i8"), ("score", "<f8")])

    def __init__(self, rows: int, starts: np.ndarray, directory: Path) -> None:
        self.starts = starts
        self.memory: Optional[np.ndarray] = None
        self.file: Any = None
        if rows * 8 <= (workers.MEMORY_MB << 20) // 2:
            self.memory = np.zeros(rows, dtype=np.float64)
        else:
            self.file = open(directory / "aligned.bin", "w+b")  # noqa: SIM115 (closed with the directory)
            self.filled = starts[:-1].copy()

    def add(self, positions: np.ndarray, scores: np.ndarray) -> None:
        if self.memory is not None:
            self.memory[positions] = scores
            return
        order = np.argsort(positions, kind="stable")
        positions, scores = positions[order], scores[order]
        cuts = np.searchsorted(positions, self.starts)
        for g in np.flatnonzero(np.diff(cuts)).tolist():
            records = np.empty(int(cuts[g + 1] - cuts[g]), dtype=self.RECORD)
            records["position"], records["score"] = positions[cuts[g] : cuts[g + 1]], scores[cuts[g] : cuts[g + 1]]
            self.file.seek(int(self.filled[g]) * self.RECORD.itemsize)
            self.file.write(records.tobytes())
            self.filled[g] += len(records)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()

    def region(self, g: int) -> np.ndarray:
        start, stop = int(self.starts[g]), int(self.starts[g + 1])
        if self.memory is not None:
            return self.memory[start:stop]
        self.file.seek(start * self.RECORD.itemsize)
        records = np.frombuffer(self.file.read((stop - start) * self.RECORD.itemsize), dtype=self.RECORD)
        out = np.empty(stop - start, dtype=np.float64)
        out[records["position"] - start] = records["score"]
        return out
