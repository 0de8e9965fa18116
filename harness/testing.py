"""Helpers for testing the harness itself and for users' own checks: make controlled perturbations of a
results file, so that a tolerance can be shown to fail on a real, known change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from harness.results.reader import METADATA_KEY, ResultsFile, atomic_output

__all__ = ["perturb_results", "tf32_round", "bf16_round", "add_noise_to_one"]

ArrayFn = Callable[[np.ndarray], np.ndarray]


def tf32_round(values: np.ndarray) -> np.ndarray:
    """Round float32 values to TF32's 10-bit mantissa (round to nearest), the precision TF32 matmuls keep."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)
    return rounded.view(np.float32)


def bf16_round(values: np.ndarray) -> np.ndarray:
    """Round float32 values to bfloat16's 7-bit mantissa (round to nearest)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x8000)) & np.uint32(0xFFFF0000)
    return rounded.view(np.float32)


def add_noise_to_one(row: int, scale: float, seed: int = 0) -> ArrayFn:
    """A perturbation that adds Gaussian noise of ``scale`` to one row (one text's vector or one score)."""

    def apply(values: np.ndarray) -> np.ndarray:
        out = np.array(values, dtype=np.float32, copy=True)
        rng = np.random.default_rng(seed)
        out[row] = out[row] + rng.normal(0.0, scale, size=out[row].shape).astype(np.float32)
        return out

    return apply


def perturb_results(
    source: "str | Path",
    target: "str | Path",
    model_id: str,
    *,
    vectors: Optional[ArrayFn] = None,
    scores: Optional[ArrayFn] = None,
    meta_update: Optional[Callable[[dict], dict]] = None,
) -> Path:
    """Copy a results file, applying ``vectors`` (n, dim) or ``scores`` (n,) functions to one model's rows."""
    results = ResultsFile(source)
    table = pq.read_table(str(source))
    mask = np.asarray(table.column("model_id").to_pylist()) == model_id
    rows = np.flatnonzero(mask)
    if vectors is not None:
        dim, dtype = results.vector_spec(model_id)
        col = table.column("vector").combine_chunks()
        width = col.type.byte_width
        raw = np.frombuffer(col.buffers()[1], dtype=np.uint8)[col.offset * width : (col.offset + len(col)) * width]
        raw = raw.reshape(len(col), width).copy()
        current = raw[rows, : dim * dtype.itemsize].copy().view(dtype).reshape(len(rows), dim)
        raw[rows, : dim * dtype.itemsize] = np.ascontiguousarray(vectors(current), dtype=dtype).view(np.uint8).reshape(len(rows), -1)
        validity = col.buffers()[0]
        new = pa.FixedSizeBinaryArray.from_buffers(col.type, len(col), [validity, pa.py_buffer(raw.tobytes())], offset=0)
        table = table.set_column(table.schema.get_field_index("vector"), table.schema.field("vector"), new)
    if scores is not None:
        col = np.asarray(table.column("score").to_numpy(zero_copy_only=False), dtype=np.float32)
        col[rows] = scores(col[rows])
        arr = pa.array(col, mask=~np.asarray(table.column("score").is_valid()), type=pa.float32())
        table = table.set_column(table.schema.get_field_index("score"), table.schema.field("score"), arr)
    meta = dict(results.meta)
    if meta_update is not None:
        meta = meta_update(meta)
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(meta, sort_keys=True).encode()})
    with atomic_output(target) as tmp:
        pq.write_table(table, str(tmp), compression="none")
    return Path(target)
