"""Pure numpy drift metrics between aligned baseline and candidate arrays (no I/O, no policy, no logging).

Rank metrics are tie-aware: two items whose baseline scores differ by no more than ``tie_tolerance`` may swap
without counting as a reorder, because fp32 noise (~1e-7) legitimately flips exact near-ties. Raw Kendall tau
is reported alongside so nothing is hidden.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "ElementStats",
    "element_stats",
    "row_cosine",
    "cosine_matrix",
    "row_max_abs",
    "kendall_tau",
    "significant_swaps",
    "topk_agreement",
    "topk_agreement_from_lists",
    "TopKAgreement",
    "DiffStats",
    "TopKStream",
    "percentile_from_top",
    "HISTOGRAM_EDGES",
    "group_rows",
    "align",
]

_REL_FLOOR = 1e-12


@dataclass(frozen=True)
class ElementStats:
    """Statistics of ``|candidate - baseline|`` over all elements."""

    count: int
    max_abs: float
    mean_abs: float
    p99_abs: float
    max_rel: float
    argmax_row: int


def element_stats(baseline: np.ndarray, candidate: np.ndarray) -> ElementStats:
    """Absolute and relative differences; relative is ``|d| / |baseline|`` (floored to avoid 0-division)."""
    base = np.asarray(baseline, dtype=np.float64)
    diff = np.abs(np.asarray(candidate, dtype=np.float64) - base)
    if diff.size == 0:
        return ElementStats(0, 0.0, 0.0, 0.0, 0.0, -1)
    flat = diff.reshape(len(diff), -1) if diff.ndim > 1 else diff.reshape(-1, 1)
    rel = diff / np.maximum(np.abs(base), _REL_FLOOR)
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


def row_cosine(baseline: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Cosine similarity of each baseline row with the same candidate row.

    Two zero rows are identical (1.0); a zero row against a non-zero one has nothing in common (0.0), so a
    vector that collapsed to zeros can never pass a cosine limit.
    """
    a = baseline.astype(np.float64)
    b = candidate.astype(np.float64)
    dot = np.einsum("ij,ij->i", a, b)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na == 0) & (nb == 0)
    one_zero = (na == 0) ^ (nb == 0)
    out = np.divide(dot, na * nb, out=np.ones_like(dot), where=~(both_zero | one_zero))
    out[one_zero] = 0.0
    return np.clip(out, -1.0, 1.0)


def kendall_tau(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall tau-a between two score vectors over the same items (1.0 = same order)."""
    n = len(x)
    if n < 2:
        return 1.0
    sx = np.sign(x[:, None] - x[None, :])
    sy = np.sign(y[:, None] - y[None, :])
    upper = np.triu_indices(n, 1)
    return float((sx[upper] * sy[upper]).sum() / len(upper[0]))


def significant_swaps(baseline: np.ndarray, candidate: np.ndarray, tie_tolerance: float) -> int:
    """Pairs ordered one way by the baseline and the other way by the candidate, where the baseline gap
    exceeds ``tie_tolerance`` (a swap of near-tied items is noise, not a reorder)."""
    if len(baseline) < 2:
        return 0
    gap = baseline[:, None] - baseline[None, :]
    flipped = (np.sign(gap) * np.sign(candidate[:, None] - candidate[None, :])) < 0
    return int(np.triu(flipped & (np.abs(gap) > tie_tolerance), 1).sum())


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


def _topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores per row, best first; ties broken by index for determinism."""
    order = np.lexsort((np.broadcast_to(np.arange(scores.shape[1]), scores.shape), -scores), axis=1)
    return order[:, :k]


def topk_agreement(base_scores: np.ndarray, cand_scores: np.ndarray, k: int, tie_tolerance: float) -> TopKAgreement:
    """Compare each row's top-k lists (rows = queries, columns = candidates).

    Order: the candidate's top-k, scored by the baseline, must be non-increasing up to ``tie_tolerance``.
    Set: any item that left the top-k must score within ``tie_tolerance`` of the baseline's k-th score.
    """
    k = min(k, base_scores.shape[1])
    top_b = _topk(base_scores, k)
    top_c = _topk(cand_scores, k)
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
    overlap = np.array([len(np.intersect1d(b, c)) for b, c in zip(top_b, top_c)], dtype=np.float64) / max(k, 1)
    return TopKAgreement(
        k=k,
        same_order=same_set & ~rises.any(axis=1),
        same_set=same_set,
        overlap=overlap,
        raw_same_order=(top_b == top_c).all(axis=1),
    )


def group_rows(keys: Sequence[str]) -> Dict[str, List[int]]:
    """Row indices per key, in first-seen order."""
    groups: Dict[str, List[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return groups


def align(base_ids: np.ndarray, cand_ids: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Index arrays putting both sides in the baseline's order, plus ids only in baseline / only in candidate."""
    if len(base_ids) == len(cand_ids) and np.array_equal(base_ids, cand_ids):
        idx = np.arange(len(base_ids))
        return idx, idx, np.array([], dtype=base_ids.dtype), np.array([], dtype=base_ids.dtype)
    common, bi, ci = np.intersect1d(base_ids, cand_ids, assume_unique=True, return_indices=True)
    order = np.argsort(bi, kind="stable")
    return bi[order], ci[order], np.setdiff1d(base_ids, common), np.setdiff1d(cand_ids, common)


# -- streaming --------------------------------------------------------------------------------------------------
#
# The same metrics over files larger than memory: blocks of aligned rows go in, one pass, bounded memory.
#
# Exactness. Per-element work runs in float32 (the vectors' own precision): the difference of two float32
# values is exact in float32 when they are within a factor 2 of each other (Sterbenz), which holds for nearly
# every element of a comparison anywhere near passing; elsewhere (sign changes, large moves) |d| is the float64
# difference rounded to float32 (relative error <= 2**-24). Cheap float32 row quantities (max, sums of squares,
# min |baseline|) bound what a row can contribute; rows that could decide a metric (beyond the tolerance, the
# worst texts, the lowest cosine, the largest relative difference) are recomputed in float64 with the functions
# above, so checks, counts, offenders, max and min metrics are the in-memory ones. Sums accumulate in float64
# (mean_abs_diff agrees to ~1e-12 relative, ~1e-8 when elements were rounded). A cosine of bit-identical rows is
# 1.0 exactly, where the float64 formula may round it to 1 - 2e-16. The histogram and p99 use the float32 |d|.

#: decade edges of ``abs_diff_histogram`` (values outside are clipped into the first and last bins)
HISTOGRAM_EDGES: Tuple[float, ...] = tuple(10.0 ** e for e in range(-12, 2))
#: values per block of the element kernel (2 MiB of float32: the block's scratch arrays stay in cache)
BLOCK_VALUES = 1 << 19
#: p99 is exact (the largest 1% of |d| are kept) while that is at most this many values: up to ~26M elements,
#: 68k texts at 384 dims. Beyond, it is the exact p99 of the rows at positions 0, s, 2s, ... (s chosen to keep
#: this many, i.e. >= 26M sampled elements): a sample that large puts it within a fraction of a percent of the
#: exact value (binomial rank error ~0.03% for Gaussian noise), and costs ~0.1 ns per element instead of ~2 (selecting the top 1%
#: of every block while the running threshold is still low dominated the whole comparison).
P99_MAX_KEPT = 1 << 18


def _ceil_value(dtype: np.dtype, value: float) -> np.generic:
    """The smallest ``dtype`` value >= ``value``: for x of that dtype, ``x >= value`` iff ``x >= result``."""
    out = dtype.type(value)
    if float(out) < value:
        out = np.nextafter(out, dtype.type(np.inf))
    return out


def percentile_from_top(top: np.ndarray, count: int, q: float = 99.0) -> float:
    """``np.percentile(values, q)`` (linear method, same arithmetic) from only the largest values.

    ``top`` must hold the ``count - floor((count - 1) * q / 100)`` largest of ``count`` values, in any order.
    """
    if count == 0:
        return 0.0
    h = (count - 1) * (q / 100.0)
    lo = int(np.floor(h))
    need = count - lo
    if len(top) < need:
        raise ValueError(f"percentile_from_top needs the {need} largest values, got {len(top)}")
    top = np.asarray(top, dtype=np.float64)
    first = len(top) - need
    picks = [first, first + 1] if need > 1 else [first]
    part = np.partition(top, picks)
    a = part[first]
    if h >= count - 1 or need == 1:
        return float(part[-1] if need == 1 else a)
    b = part[first + 1]
    gamma = h - lo
    diff = b - a
    return float(b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma)


class _TopValues:
    """The ``keep`` largest values seen (in any order), in memory proportional to ``keep``."""

    def __init__(self, keep: int) -> None:
        self.keep = max(int(keep), 1)
        self.parts: List[np.ndarray] = []
        self.size = 0
        self.floor: Optional[float] = None  # values <= floor can no longer be among the kept ones

    def add(self, values: np.ndarray) -> None:
        if self.floor is not None:
            values = values[values > values.dtype.type(self.floor)]
        elif values.base is not None or not values.flags.owndata:
            values = values.copy()
        if len(values):
            self.parts.append(values)
            self.size += len(values)
            if self.size > 2 * self.keep + (1 << 16):
                self._compact()

    def _compact(self) -> None:
        data = np.concatenate(self.parts) if len(self.parts) > 1 else self.parts[0]
        if len(data) > self.keep:
            data = np.partition(data, len(data) - self.keep)[len(data) - self.keep :]
            self.floor = float(data.min())
        self.parts, self.size = [data], len(data)

    def merge(self, other: "_TopValues") -> None:
        self.parts += other.parts
        self.size += other.size
        if other.floor is not None:
            self.floor = other.floor if self.floor is None else max(self.floor, other.floor)
        if self.parts:
            self._compact()

    def values(self) -> np.ndarray:
        if not self.parts:
            return np.zeros(0)
        self._compact()
        return self.parts[0]


@dataclass
class _Worst:
    """One of the rows that moved most, with its exact (float64) largest element difference and cosine."""

    value: float
    position: int
    cosine: float


class DiffStats:
    """Streaming statistics of ``cand - base`` over aligned blocks of rows (one pass, bounded memory).

    Feed ``add(position, base, cand)`` blocks in any order (``position`` = index of the block's first row in
    the baseline), from one or several threads each with its own instance, then ``merge`` the instances.
    Produces what the in-memory ``element_stats``/``row_cosine``/``row_max_abs`` give: see ``summary``.

    Args:
        dim: values per row.
        dtype: the rows' dtype (float16/float32 computed in float32, float64 in float64).
        total_rows: rows that will be added in all (all instances together), for the exact p99.
        atol, rtol: element tolerance ``|d| <= atol + rtol * |base|`` (``rtol >= 0``).
        min_cosine: per-row cosine limit.
        worst_n: how many worst rows to keep.
    """

    def __init__(self, dim: int, dtype: "np.dtype | type", total_rows: int, *, atol: float, rtol: float,
                 min_cosine: float, worst_n: int = 5) -> None:
        self.dim = int(dim)
        self.ft = np.dtype(np.float64 if np.dtype(dtype).itemsize > 4 else np.float32)
        self.atol, self.rtol, self.min_cosine, self.worst_n = float(atol), float(rtol), float(min_cosine), int(worst_n)
        ft = self.ft
        eps = float(np.finfo(ft).eps) / 2  # unit roundoff
        self._kappa = (self.dim + 4) * eps  # bound on the relative error of a row's sum of squares
        self._unit = eps
        # x >= T[e]  <=>  x >= HISTOGRAM_EDGES[e] for x of dtype ft (edges 1e-11 .. 1; 1e-12 and 10 are clip ends)
        self._edges = [_ceil_value(ft, e) for e in HISTOGRAM_EDGES[1:-1]]
        self._tiny = np.finfo(ft).smallest_subnormal
        # rows whose largest |d| reaches this may have elements beyond atol: they get the exact check
        self._atol_screen = ft.type(self.atol * (1 - 8 * eps))
        self._cos_gap = (1.0 - self.min_cosine) - 1e-12  # rows with 1 - cos provably <= this pass the limit
        # exact p99 from the largest 1% (every s-th row beyond P99_MAX_KEPT kept values)
        total = int(total_rows) * self.dim
        need = total - int(np.floor((total - 1) * 0.99)) if total else 1
        self.p99_every = max(1, -(-need // P99_MAX_KEPT))
        sampled_rows = -(-int(total_rows) // self.p99_every)
        self.p99_count = sampled_rows * self.dim
        self._top = _TopValues(self.p99_count - int(np.floor((self.p99_count - 1) * 0.99)) if self.p99_count else 1)
        # accumulators
        self.rows = 0
        self.count = 0
        self.sum_abs = 0.0
        self.nonzero = 0
        self.at_least = np.zeros(len(self._edges), dtype=np.int64)
        self.bad_elements = 0
        self.texts_beyond = 0
        self.max_rel = 0.0
        self.min_cos = 1.0
        self.min_cos_position = -1
        self.below_cosine = 0
        self.worst: List[_Worst] = []
        self.nonfinite_base: List[int] = []  # baseline positions of rows with NaN/Inf
        self.nonfinite_cand: List[int] = []
        self._block_rows = max(1, BLOCK_VALUES // max(self.dim, 1))
        self._d = np.empty((self._block_rows, self.dim), dtype=ft)
        self._a = np.empty((self._block_rows, self.dim), dtype=ft)
        self._mask = np.empty((self._block_rows, self.dim), dtype=bool)

    # -- feeding ------------------------------------------------------------------------------------------

    def add(self, position: int, base: np.ndarray, cand: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Add aligned rows ``position ..``; returns per-row ``(|base|^2, |cand - base|^2)`` in the work dtype
        (relative error <= ``(dim + 4) * unit roundoff``), which the streaming top-k uses to bound scores."""
        base = np.asarray(base)
        cand = np.asarray(cand)
        if base.dtype != self.ft:
            base = base.astype(self.ft)
        if cand.dtype != self.ft:
            cand = cand.astype(self.ft)
        n = len(base)
        bsq = np.empty(n, dtype=self.ft)
        dsq = np.empty(n, dtype=self.ft)
        for s in range(0, n, self._block_rows):
            e = min(n, s + self._block_rows)
            self._block(position + s, base[s:e], cand[s:e], bsq[s:e], dsq[s:e])
        return bsq, dsq

    def _block(self, position: int, b: np.ndarray, c: np.ndarray, bsq: np.ndarray, dsq: np.ndarray) -> None:
        m = len(b)
        d = np.subtract(c, b, out=self._d[:m])
        np.einsum("ij,ij->i", d, d, out=dsq)
        np.einsum("ij,ij->i", b, b, out=bsq)
        if not (np.isfinite(dsq).all() and np.isfinite(bsq).all()):
            self._drop_nonfinite(position, b, c, d, bsq, dsq)
        self.rows += m
        self.count += d.size
        ad = np.abs(d, out=d)
        rmax = ad.max(axis=1)
        top = float(rmax.max()) if m else 0.0
        if top == 0.0:  # bit-identical rows: nothing moved, every statistic stays as it is
            self._worst_candidates(position, b, c, rmax)
            return
        self.sum_abs += float(ad.sum(axis=1, dtype=np.float64).sum())
        mask = self._mask[:m]
        # highest edge first: once every nonzero value reaches an edge, it reaches all lower ones too
        nonzero = int(np.count_nonzero(np.greater_equal(ad, self._tiny, out=mask)))
        self.nonzero += nonzero
        for i in range(len(self._edges) - 1, -1, -1):
            if self._edges[i] > top:
                continue
            count = int(np.count_nonzero(np.greater_equal(ad, self._edges[i], out=mask)))
            self.at_least[i] += count
            if count == nonzero:
                self.at_least[:i] += nonzero
                break
        if self.p99_every == 1:
            self._top.add(ad.ravel())
        else:
            first = (-position) % self.p99_every
            self._top.add(ad[first :: self.p99_every].ravel())
        # rows that may decide a metric, screened with float32 bounds, then recomputed exactly
        exact_rows: Dict[int, Tuple[float, float, float]] = {}

        def exact(rows: np.ndarray) -> None:
            rows = np.asarray([r for r in rows.tolist() if r not in exact_rows], dtype=np.intp)
            if len(rows):
                for r, values in zip(rows.tolist(), zip(*_exact_rows(b[rows], c[rows]))):
                    exact_rows[r] = values
                    if values[2] < self.min_cos:
                        self.min_cos, self.min_cos_position = values[2], position + r
                    self.max_rel = max(self.max_rel, values[1])

        beyond = np.flatnonzero(rmax >= self._atol_screen)
        if len(beyond):
            self._beyond(b[beyond], c[beyond])
        # cosine: 1 - cos <= |d|^2 / (2 |b| (|b| - |d|)) (exact arithmetic; inflated for float32 row sums)
        dd = dsq.astype(np.float64) * (1 + self._kappa)
        nb = np.sqrt(bsq.astype(np.float64) * (1 - self._kappa))
        denom = 2 * nb * (nb - np.sqrt(dd))
        with np.errstate(divide="ignore", invalid="ignore"):
            dev = np.where(denom > 0, dd / np.where(denom > 0, denom, 1.0), 2.0) * (1 + 1e-9)
        dev[dd == 0] = 0.0
        # relative: |d_i| / max(|b_i|, 1e-12) <= max|d| / max(min|b|, 1e-12)
        bmin = np.abs(b, out=self._a[:m]).min(axis=1).astype(np.float64)
        rel = rmax.astype(np.float64) * (1 + 4 * self._unit) / np.maximum(bmin, _REL_FLOOR)
        below = np.flatnonzero(dev > self._cos_gap)  # may be below min_cosine: count exactly
        first = np.union1d(below, _top_rows(dev, 4, above=1.0 - self.min_cos))
        first = np.union1d(first, _top_rows(rel, 4, above=self.max_rel))
        exact(first)
        for r in below.tolist():
            if exact_rows[r][2] < self.min_cosine:
                self.below_cosine += 1
        # every other row that could still lower the minimum cosine or raise the maximum relative difference
        exact(np.flatnonzero((dev > 1.0 - self.min_cos) | (rel > self.max_rel)))
        self._worst_candidates(position, b, c, rmax, exact_rows)

    def _beyond(self, b: np.ndarray, c: np.ndarray) -> None:
        """Rows whose largest difference reaches atol: exact element count and text count (float64)."""
        for s in range(0, len(b), 256):
            b64 = b[s : s + 256].astype(np.float64)
            diff = np.abs(c[s : s + 256].astype(np.float64) - b64)
            allowed = self.atol + self.rtol * np.abs(b64) if self.rtol else self.atol
            self.bad_elements += int(np.count_nonzero(diff > allowed))
            self.texts_beyond += int(np.count_nonzero(diff.max(axis=1) > self.atol))

    def _worst_candidates(self, position: int, b: np.ndarray, c: np.ndarray, rmax: np.ndarray,
                          exact_rows: Optional[Dict[int, Tuple[float, float, float]]] = None) -> None:
        n = self.worst_n
        if not n or not len(rmax):
            return
        if len(self.worst) >= n:
            bound = float(rmax.max()) * (1 + 4 * self._unit)
            if bound < self.worst[-1].value or bound == self.worst[-1].value == 0.0:
                return
        rows = _top_rows(rmax.astype(np.float64), n, above=-1.0, ties=True)
        exact_rows = exact_rows or {}
        missing = [r for r in rows.tolist() if r not in exact_rows]
        if missing:
            idx = np.asarray(missing, dtype=np.intp)
            for r, values in zip(missing, zip(*_exact_rows(b[idx], c[idx]))):
                exact_rows[r] = values
        self.worst += [_Worst(exact_rows[r][0], position + r, exact_rows[r][2]) for r in rows.tolist()]
        self.worst = sorted(self.worst, key=lambda w: (-w.value, w.position))[:n]

    def _drop_nonfinite(self, position: int, b: np.ndarray, c: np.ndarray, d: np.ndarray,
                        bsq: np.ndarray, dsq: np.ndarray) -> None:
        """Record rows with NaN/Inf (the caller refuses the input) and zero them so the statistics stay finite."""
        rows = np.flatnonzero(~(np.isfinite(dsq) & np.isfinite(bsq)))
        bad_b = ~np.isfinite(b[rows]).all(axis=1)
        bad_c = ~np.isfinite(c[rows]).all(axis=1)
        self.nonfinite_base += (position + rows[bad_b]).tolist()
        self.nonfinite_cand += (position + rows[bad_c]).tolist()
        bad = rows[bad_b | bad_c]  # finite rows that overflowed a sum of squares stay
        d[bad] = 0
        dsq[bad] = 0
        bsq[bad] = 0

    # -- results ------------------------------------------------------------------------------------------

    def merge(self, other: "DiffStats") -> None:
        """Fold in the statistics of another instance that saw other rows."""
        for name in ("rows", "count", "sum_abs", "nonzero", "bad_elements", "texts_beyond", "below_cosine"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.at_least += other.at_least
        self.max_rel = max(self.max_rel, other.max_rel)
        if (other.min_cos, other.min_cos_position) < (self.min_cos, self.min_cos_position) and other.min_cos_position >= 0:
            self.min_cos, self.min_cos_position = other.min_cos, other.min_cos_position
        self.worst = sorted(self.worst + other.worst, key=lambda w: (-w.value, w.position))[: self.worst_n]
        self.nonfinite_base += other.nonfinite_base
        self.nonfinite_cand += other.nonfinite_cand
        self._top.merge(other._top)

    @property
    def p99_exact(self) -> bool:
        """False when p99 was estimated from a row sample (more than ``P99_MAX_KEPT`` values to keep)."""
        return self.p99_every == 1

    def p99(self) -> float:
        if not self.count:
            return 0.0
        top = self._top.values()
        if len(top) < self.p99_count - int(np.floor((self.p99_count - 1) * 0.99)):  # zeros were never kept
            top = np.concatenate([np.zeros(self.p99_count - len(top)), top])
        return percentile_from_top(top, self.p99_count)

    def histogram(self) -> Dict[str, List[float]]:
        """Counts of |d| per decade (``HISTOGRAM_EDGES``, clipped at both ends), zeros apart."""
        ge = [int(x) for x in self.at_least]
        counts = [self.nonzero - ge[0]] + [ge[i] - ge[i + 1] for i in range(len(ge) - 1)] + [ge[-1]]
        return {"edges": list(HISTOGRAM_EDGES), "counts": counts, "zeros": [self.count - self.nonzero]}

    def summary(self) -> ElementStats:
        """The ``element_stats`` of everything added (``argmax_row`` = baseline position of the worst row)."""
        if not self.count:
            return ElementStats(0, 0.0, 0.0, 0.0, 0.0, -1)
        worst = self.worst[0] if self.worst else _Worst(0.0, -1, 1.0)
        return ElementStats(
            count=self.count,
            max_abs=worst.value,
            mean_abs=self.sum_abs / self.count,
            p99_abs=self.p99(),
            max_rel=self.max_rel,
            argmax_row=worst.position,
        )


def _top_rows(values: np.ndarray, n: int, above: float, ties: bool = False) -> np.ndarray:
    """Indices of the ``n`` largest values that exceed ``above`` (with ``ties``: lowest index first among equal
    values, as a stable descending sort would pick)."""
    if not len(values) or n <= 0:
        return np.zeros(0, dtype=np.intp)
    if len(values) > n:
        cut = np.partition(values, len(values) - n)[len(values) - n]
        idx = np.flatnonzero(values > cut)
        if ties:
            idx = np.concatenate([idx, np.flatnonzero(values == cut)[: n - len(idx)]])
        else:
            idx = np.concatenate([idx, np.flatnonzero(values == cut)])[:n]
    else:
        idx = np.arange(len(values))
    return idx[values[idx] > above]


def _exact_rows(base: np.ndarray, cand: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row, in float64 exactly as the in-memory metrics: largest |d|, largest relative |d|, cosine."""
    b64 = base.astype(np.float64)
    c64 = cand.astype(np.float64)
    diff = np.abs(c64 - b64)
    rel = diff / np.maximum(np.abs(b64), _REL_FLOOR)
    return diff.max(axis=1), rel.max(axis=1), row_cosine(b64, c64)


class TopKStream:
    """Exact top-k retrieval agreement with documents streamed in blocks (``topk_agreement`` semantics).

    Queries are few and given first; documents arrive in blocks, in any order, from one or several instances
    (``merge`` them). Per query a pool keeps every document that could still be in the baseline's or the
    candidate's top-k, with both exact scores: cosines computed in float64 as ``cosine_matrix`` does, so ties, tie tolerance and tie-breaking by document position are the in-memory ones.

    Screening costs one product per block, against the baseline only: with ``s`` the exact cosine and ``S``
    the float32 estimate (raw float32 vectors, scaled by float32 norms), ``|S - s| <= eps`` with
    ``eps = (2 dim + 16) u`` (``u = 2**-24``; a dot product's rounding is at most ``dim u |q||b|``); and the
    candidate's cosine of the same pair is within ``|ĉ_q - b̂_q| + |ĉ_d - b̂_d|`` of the baseline's (unit
    vectors), with ``|ĉ - b̂| <= 2 |c - b| / |b|``. A document is dropped when neither side can reach the
    best k-th score known so far (``kth_b``/``kth_c``: exact k-th scores of the pool, or from the block's own
    top-k estimates before the pool has k documents). Memory: about ``k`` + a few documents per query.
    """

    def __init__(self, base_queries: np.ndarray, cand_queries: np.ndarray, k: int, tie_tolerance: float) -> None:
        dim = base_queries.shape[1]
        self.work = np.dtype(np.float64 if base_queries.dtype.itemsize > 4 else np.float32)
        unit = float(np.finfo(self.work).eps) / 2
        self.eps = (2 * dim + 16) * unit + 1e-12
        self.kappa = (dim + 4) * unit
        self.k = int(k)
        self.tie_tolerance = float(tie_tolerance)
        self.qb = _unit_rows(base_queries)
        self.qc = _unit_rows(cand_queries)
        self.qb_work_t = np.ascontiguousarray(self.qb.T, dtype=self.work)
        self.dq = np.linalg.norm(self.qc - self.qb, axis=1) * (1 + 1e-9) + 1e-12
        nq = len(self.qb)
        self.pool_q = np.zeros(0, dtype=np.intp)
        self.pool_pos = np.zeros(0, dtype=np.int64)
        self.pool_sb = np.zeros(0)
        self.pool_sc = np.zeros(0)
        self.counts = np.zeros(nq, dtype=np.int64)
        self.kth_b = np.full(nq, -np.inf)
        self.kth_c = np.full(nq, -np.inf)

    def add(self, positions: np.ndarray, base: np.ndarray, cand: np.ndarray, base_sq: np.ndarray,
            diff_sq: np.ndarray) -> None:
        """Documents at baseline ``positions``, with ``DiffStats.add``'s ``|base|^2`` and ``|cand - base|^2``."""
        m = len(base)
        if not m or not len(self.qb):
            return
        base = np.asarray(base, dtype=self.work)
        bsq = base_sq.astype(np.float64)
        norm_b = np.sqrt(bsq)
        scores = base @ self.qb_work_t  # (documents, queries): streams the block once, faster than Q @ B.T
        # Normalized embeddings (|b| = 1 up to rounding) skip scaling the scores: the bound widens instead.
        off_unit = float(np.abs(norm_b - 1.0).max(initial=0.0)) + self.kappa
        if off_unit <= 1e-3:
            eps = self.eps + off_unit * (1 + 1e-6)
        else:
            eps = self.eps
            scores *= (1.0 / np.maximum(norm_b, 1e-30)).astype(self.work)[:, None]
        low_b = np.sqrt(bsq * (1 - self.kappa))
        with np.errstate(divide="ignore", invalid="ignore"):
            moved = np.where(low_b > 0, 2 * np.sqrt(diff_sq.astype(np.float64) * (1 + self.kappa)) / low_b, 2.0)
        moved = np.minimum(moved, 2.0) * (1 + 1e-6) + 1e-12
        # A few documents that moved far more than the rest (a real change, or NaN rows about to be refused)
        # would loosen the screen for the whole block: they skip it and go straight to the per-document check.
        cut = 4 * float(np.partition(moved, (m - 1) * 99 // 100)[(m - 1) * 99 // 100]) + 1e-9
        far = np.flatnonzero(moved > cut)
        near_most = float(moved.max()) if not len(far) else float(moved[moved <= cut].max(initial=0.0))
        lb_b, lb_c = self.kth_b.copy(), self.kth_c.copy()
        short = np.flatnonzero(self.counts < self.k)
        near = m - len(far)
        if len(short) and near >= self.k:  # k near documents score at least the k-th estimate, minus eps
            pool = scores[:, short] if not len(far) else np.delete(scores, far, axis=0)[:, short]
            kth = np.partition(pool, near - self.k, axis=0)[near - self.k].astype(np.float64)
            lb_b[short] = np.maximum(lb_b[short], kth - eps)
            lb_c[short] = np.maximum(lb_c[short], kth - eps - self.dq[short] - near_most)
        limit = np.minimum(lb_b, lb_c - self.dq - near_most) - eps
        limit_work = limit.astype(self.work)
        limit_work = np.where(limit_work.astype(np.float64) > limit, np.nextafter(limit_work, self.work.type(-np.inf)),
                              limit_work)
        hits = np.flatnonzero(scores >= limit_work[None, :])  # 1-d: much faster than a 2-d nonzero
        nq = len(self.qb)
        dj, qi = np.divmod(hits, nq)
        if len(far):
            keep_near = moved[dj] <= cut
            dj = np.concatenate([dj[keep_near], np.repeat(far, nq)])
            qi = np.concatenate([qi[keep_near], np.tile(np.arange(nq), len(far))])
        if not len(qi):
            return
        est = scores[dj, qi].astype(np.float64)
        keep = (est + eps >= lb_b[qi]) | (est + eps + self.dq[qi] + moved[dj] >= lb_c[qi])
        qi, dj = qi[keep], dj[keep]
        if not len(qi):
            return
        cols, col_of = np.unique(dj, return_inverse=True)
        sb = (self.qb @ _unit_rows(base[cols]).T)[qi, col_of]
        sc = (self.qc @ _unit_rows(np.asarray(cand)[cols]).T)[qi, col_of]
        self._extend(qi, np.asarray(positions, dtype=np.int64)[cols][col_of], sb, sc)

    def _extend(self, q: np.ndarray, pos: np.ndarray, sb: np.ndarray, sc: np.ndarray) -> None:
        self.pool_q = np.concatenate([self.pool_q, q])
        self.pool_pos = np.concatenate([self.pool_pos, pos])
        self.pool_sb = np.concatenate([self.pool_sb, sb])
        self.pool_sc = np.concatenate([self.pool_sc, sc])
        self._prune()

    def _kth(self, scores: np.ndarray) -> np.ndarray:
        """Per query, the k-th best exact score in the pool (-inf while a query has fewer than k)."""
        out = np.full(len(self.counts), -np.inf)
        order = np.lexsort((-scores, self.pool_q))
        starts = np.cumsum(self.counts) - self.counts
        full = np.flatnonzero(self.counts >= self.k)
        out[full] = scores[order[starts[full] + self.k - 1]]
        return out

    def _prune(self) -> None:
        self.counts = np.bincount(self.pool_q, minlength=len(self.counts)).astype(np.int64)
        self.kth_b = np.maximum(self.kth_b, self._kth(self.pool_sb))
        self.kth_c = np.maximum(self.kth_c, self._kth(self.pool_sc))
        keep = (self.pool_sb >= self.kth_b[self.pool_q]) | (self.pool_sc >= self.kth_c[self.pool_q])
        if not keep.all():
            self.pool_q, self.pool_pos = self.pool_q[keep], self.pool_pos[keep]
            self.pool_sb, self.pool_sc = self.pool_sb[keep], self.pool_sc[keep]
            self.counts = np.bincount(self.pool_q, minlength=len(self.counts)).astype(np.int64)

    def merge(self, other: "TopKStream") -> None:
        """Fold in another instance's pools (same queries, other documents)."""
        self.kth_b = np.maximum(self.kth_b, other.kth_b)
        self.kth_c = np.maximum(self.kth_c, other.kth_c)
        self._extend(other.pool_q, other.pool_pos, other.pool_sb, other.pool_sc)

    def agreement(self) -> TopKAgreement:
        """``topk_agreement`` over every document added (needs at least k documents)."""
        k, nq = self.k, len(self.counts)
        if nq and self.counts.min() < k:
            raise ValueError(f"TopKStream: a query has {self.counts.min()} documents in its pool, fewer than k={k}")
        starts = (np.cumsum(self.counts) - self.counts)[:, None] + np.arange(k)[None, :]
        by_b = np.lexsort((self.pool_pos, -self.pool_sb, self.pool_q))[starts]
        by_c = np.lexsort((self.pool_pos, -self.pool_sc, self.pool_q))[starts]
        return topk_agreement_from_lists(
            self.pool_pos[by_b], self.pool_pos[by_c], self.pool_sb[by_c], self.pool_sb[by_b[:, -1]], k,
            self.tie_tolerance,
        )


def _unit_rows(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length in float64 (a zero row stays zero), as ``cosine_matrix`` scales them."""
    a = np.asarray(rows, dtype=np.float64)
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-30)


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of every row of ``a`` with every row of ``b``, in float64: the in-memory retrieval scores that
    ``topk_agreement`` ranks and ``TopKStream`` reproduces streamed."""
    return _unit_rows(a) @ _unit_rows(b).T
