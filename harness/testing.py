"""Helpers for testing the harness itself and for users' own checks: make controlled perturbations of a
results file, so that a tolerance can be shown to fail on a real, known change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np

from harness.results import ResultsFile
from harness.results.writer import rewrite_model

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
    source: str | Path,
    target: str | Path,
    model_id: str,
    *,
    vectors: Optional[ArrayFn] = None,
    scores: Optional[ArrayFn] = None,
    meta_update: Optional[Callable[[dict], dict]] = None,
) -> Path:
    """Copy a results file, applying ``vectors`` (n, dim) or ``scores`` (n,) functions to one model's rows."""
    results = ResultsFile(source)
    new_vectors = vectors(results.embeddings(model_id)[2].copy()) if vectors is not None else None
    new_scores = scores(np.asarray(results.rerank(model_id)["score"], dtype=np.float32).copy()) if scores is not None else None
    meta = dict(results.meta)
    if meta_update is not None:
        meta = meta_update(meta)
    return rewrite_model(results, target, model_id, vectors=new_vectors, scores=new_scores, metadata=meta)
