"""Test oracles: the whole-array metrics the streamed accumulators (``harness.compare.stats``) must reproduce.

They lived in ``harness.compare.metrics`` with no caller in the package; the tests are their only users.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from harness.compare.metrics import REL_FLOOR, ElementStats

__all__ = ["element_stats", "group_rows", "row_max_abs"]


def element_stats(baseline: np.ndarray, candidate: np.ndarray) -> ElementStats:
    """Absolute and relative differences; relative is ``|d| / |baseline|`` (floored to avoid 0-division)."""
    base = np.asarray(baseline, dtype=np.float64)
    diff = np.abs(np.asarray(candidate, dtype=np.float64) - base)
    if diff.size == 0:
        return ElementStats(0, 0.0, 0.0, 0.0, 0.0, -1)
    flat = diff.reshape(len(diff), -1) if diff.ndim > 1 else diff.reshape(-1, 1)
    rel = diff / np.maximum(np.abs(base), REL_FLOOR)
    return ElementStats(
        count=int(diff.size),
        max_abs=float(diff.max()),
        mean_abs=float(diff.mean()),
        p99_abs=float(np.percentile(diff, 99)),
        max_rel=float(rel.max()),
        argmax_row=int(np.argmax(flat.max(axis=1))),
    )


def row_max_abs(baseline: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Largest absolute element difference per row (per text), to name the worst texts."""
    return np.abs(candidate.astype(np.float64) - baseline.astype(np.float64)).max(axis=1)


def group_rows(keys: Sequence[str]) -> Dict[str, List[int]]:
    """Row indices per key, in first-seen order."""
    groups: Dict[str, List[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return groups
