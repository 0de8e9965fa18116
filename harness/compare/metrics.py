"""Pure numpy drift metrics between aligned baseline and candidate arrays (no I/O, no policy).

Rank metrics are tie-aware: items whose baseline scores differ by at most ``tie_tolerance`` may swap without
counting as a reorder (fp32 noise flips near-ties); raw figures are reported alongside.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from harness.measured import Histogram

__all__ = ["ElementStats", "row_cosine", "unit_rows", "rank_changes", "topk_agreement",
           "topk_agreement_from_lists", "TopKAgreement", "HISTOGRAM_EDGES", "log_histogram", "align", "REL_FLOOR",
           "PAIR_BLOCK"]

#: relative differences divide by |baseline| floored to this (no division by zero)
REL_FLOOR = 1e-12


@dataclass(frozen=True)
class ElementStats:
    """Statistics of ``|candidate - baseline|`` over all elements."""

    count: int
    max_abs: float
    mean_abs: float
    p99_abs: float
    max_rel: float
    argmax_row: int


def row_cosine(baseline: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Cosine of each baseline row with the same candidate row; a zero row against a non-zero one is 0, so a
    vector that collapsed to zeros never passes a cosine limit."""
    a: np.ndarray = baseline.astype(np.float64)
    b: np.ndarray = candidate.astype(np.float64)
    dot = np.einsum("ij,ij->i", a, b)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    out = np.divide(dot, na * nb, out=np.where((na == 0) & (nb == 0), 1.0, 0.0), where=(na != 0) & (nb != 0))
    return np.clip(out, -1.0, 1.0)


#: pairwise rank metrics hold at most this many (i, j) pairs at a time (a few float64/bool arrays of it: ~40 MB),
#: so one query with many passages costs time, not memory
PAIR_BLOCK = 1 << 22


def rank_changes(baseline: np.ndarray, candidate: np.ndarray,
                 tie_tolerance: float) -> Tuple[float, int, Optional[Tuple[int, int]]]:
    """How the candidate reorders one query's items (``PAIR_BLOCK`` pairs at a time): Kendall tau-a, the swaps
    whose baseline gap is beyond ``tie_tolerance``, and the one of the largest gap as ``(higher, lower)``."""
    n = len(baseline)
    if n < 2:
        return 1.0, 0, None
    total, count, best, where, step = 0.0, 0, -1.0, None, max(1, PAIR_BLOCK // n)
    for i0 in range(0, n, step):  # the worst: the first largest in row-major order, as argmax over the whole matrix
        i1 = min(n, i0 + step)
        gap = baseline[i0:i1, None] - baseline[None, :]
        sign = np.sign(gap) * np.sign(candidate[i0:i1, None] - candidate[None, :])
        upper = np.arange(n)[None, :] > np.arange(i0, i1)[:, None]
        total += float(sign[upper].sum())
        gap = np.where((sign < 0) & (np.abs(gap) > tie_tolerance), np.abs(gap), -1.0)  # the swaps' gaps
        count += int(np.count_nonzero((gap >= 0) & upper))
        flat = int(np.argmax(gap))
        if gap.flat[flat] > best:
            best, where = float(gap.flat[flat]), (i0 + flat // n, flat % n)
    tau = float(total / (n * (n - 1) // 2))
    if where is None:
        return tau, count, None
    i, j = where
    return tau, count, ((int(i), int(j)) if baseline[i] > baseline[j] else (int(j), int(i)))


#: the per-query fields of ``TopKAgreement``
AGREEMENT_FIELDS = ("same_order", "same_set", "overlap", "raw_same_order")


@dataclass(frozen=True)
class TopKAgreement:
    """Per-query top-k agreement between baseline and candidate scores."""

    k: int
    same_order: np.ndarray  # bool per query, tie-aware
    same_set: np.ndarray  # bool per query, tie-aware
    overlap: np.ndarray  # |top-k(base) & top-k(cand)| / k, raw
    raw_same_order: np.ndarray  # bool per query, exact

    def share(self, field: str) -> float:
        values = getattr(self, field)
        return float(values.mean()) if len(values) else 1.0

    @staticmethod
    def concat(k: int, parts: Sequence[TopKAgreement]) -> TopKAgreement:
        """One agreement over the queries of ``parts``, in their order."""
        return TopKAgreement(k, *(np.concatenate([getattr(p, f) for p in parts]) for f in AGREEMENT_FIELDS))


def _topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores per row, best first; ties broken by index for determinism."""
    return np.lexsort((np.broadcast_to(np.arange(scores.shape[1]), scores.shape), -scores), axis=1)[:, :k]


def topk_agreement(base_scores: np.ndarray, cand_scores: np.ndarray, k: int, tie_tolerance: float) -> TopKAgreement:
    """Each row's top-k lists (rows = queries): order held when the candidate's top-k, scored by the baseline,
    never rises beyond ``tie_tolerance``; set held when no item below the baseline's k-th score (less the tie
    tolerance) entered."""
    k = min(k, base_scores.shape[1])
    top_b, top_c = _topk(base_scores, k), _topk(cand_scores, k)
    rows = np.arange(len(base_scores))[:, None]
    kth = base_scores[rows[:, 0], top_b[:, -1]] if k else np.zeros(len(base_scores))
    return topk_agreement_from_lists(top_b, top_c, base_scores[rows, top_c], kth, k, tie_tolerance)


def topk_agreement_from_lists(top_b: np.ndarray, top_c: np.ndarray, base_of_cand: np.ndarray, kth: np.ndarray,
                              k: int, tie_tolerance: float) -> TopKAgreement:
    """``topk_agreement`` from what it needs of the score matrices: per query, the baseline's and the
    candidate's top-k item ids (best first), the baseline scores of the candidate's top-k, and the baseline's
    k-th best score. The streaming comparator keeps only these."""
    # Order: walk the candidate's list with baseline scores; an increase beyond the tolerance is a reorder.
    rises = np.diff(base_of_cand, axis=1) > tie_tolerance
    entered = base_of_cand < (kth[:, None] - tie_tolerance)  # a candidate item the baseline ranked well below k
    same_set = ~entered.any(axis=1)
    # ids are distinct within a list: the overlap is the number of equal (baseline, candidate) entries per row
    overlap = (np.asarray(top_b)[:, :, None] == np.asarray(top_c)[:, None, :]).sum(axis=(1, 2)).astype(np.float64) \
        / max(k, 1)
    return TopKAgreement(k=k, same_order=same_set & ~rises.any(axis=1), same_set=same_set, overlap=overlap,
                         raw_same_order=(top_b == top_c).all(axis=1))


def align(base_ids: np.ndarray, cand_ids: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Index arrays putting both sides in the baseline's order, plus ids only in baseline / only in candidate."""
    if len(base_ids) == len(cand_ids) and np.array_equal(base_ids, cand_ids):
        idx = np.arange(len(base_ids))
        return idx, idx, np.array([], dtype=base_ids.dtype), np.array([], dtype=base_ids.dtype)
    common, bi, ci = np.intersect1d(base_ids, cand_ids, assume_unique=True, return_indices=True)
    order = np.argsort(bi, kind="stable")
    return bi[order], ci[order], np.setdiff1d(base_ids, common), np.setdiff1d(cand_ids, common)


#: decade edges of ``abs_diff_histogram`` (values outside are clipped into the first and last bins)
HISTOGRAM_EDGES: Tuple[float, ...] = tuple(10.0 ** e for e in range(-12, 2))


def log_histogram(diff: np.ndarray) -> Histogram:
    """Counts of absolute differences per decade (``HISTOGRAM_EDGES``, clipped at both ends), zeros apart: the
    reports' distribution plot."""
    flat = np.asarray(diff).ravel()
    nonzero = flat[flat > 0]
    edges = list(HISTOGRAM_EDGES)
    counts, _ = np.histogram(np.clip(nonzero, edges[0], edges[-1]), bins=edges)
    return Histogram(edges, [int(c) for c in counts], [int((flat == 0).sum())])


def unit_rows(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length in float64 (a zero row stays zero): cosines are dot products of these."""
    a = np.asarray(rows, dtype=np.float64)
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-30)

