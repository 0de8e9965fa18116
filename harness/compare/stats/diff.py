"""Streaming statistics of ``cand - base`` over aligned blocks of rows: ``DiffStats``, the in-memory metrics of
``harness.compare.metrics`` for inputs larger than memory (blocks of aligned rows go in, one pass, bounded memory).

Exactness. Per-element work runs in float32 (the vectors' own precision): the difference of two float32
values is exact in float32 when they are within a factor 2 of each other (Sterbenz), which holds for nearly
every element of a comparison anywhere near passing; elsewhere (sign changes, large moves) |d| is the float64
difference rounded to float32 (relative error <= 2**-24). Cheap float32 row quantities (max, sums of squares,
min |baseline|) bound what a row can contribute; rows that could decide a metric (beyond the tolerance, the
worst texts, the lowest cosine, the largest relative difference) are recomputed in float64 with the in-memory
functions, so checks, counts, offenders, max and min metrics are the in-memory ones. Sums accumulate in float64
(mean_abs_diff agrees to ~1e-12 relative, ~1e-8 when elements were rounded). A cosine of bit-identical rows is
1.0 exactly, where the float64 formula may round it to 1 - 2e-16. The histogram and p99 use the float32 |d|.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from harness.compare.metrics import HISTOGRAM_EDGES, REL_FLOOR, ElementStats, row_cosine
from harness.compare.stats.percentile import P99
from harness.measured import Histogram

__all__ = ["BLOCK_VALUES", "DiffStats", "Worst"]

#: values per block of the element kernel (2 MiB of float32: the block's scratch arrays stay in cache)
BLOCK_VALUES = 1 << 19


@dataclass
class Worst:
    """One of the rows that moved most, with its exact (float64) largest element difference and cosine, and
    where that difference is: the dimension and both sides' values there (the evidence messages quote)."""

    value: float
    position: int
    cosine: float
    dim: int = -1
    base_value: float = 0.0
    cand_value: float = 0.0


class DiffStats:
    """``add(position, base, cand)`` blocks in any order (``position``: the block's first baseline row), one
    instance per thread, then ``merge``. ``total_rows``: rows added by all instances together (the exact p99);
    ``|d| <= atol + rtol * |base|`` per element, ``min_cosine`` per row; the ``worst_n`` rows are kept."""

    def __init__(self, dim: int, dtype: np.dtype | type, total_rows: int, *, atol: float, rtol: float,
                 min_cosine: float, worst_n: int = 5) -> None:
        self.dim = int(dim)
        ft = self.ft = np.dtype(np.float64 if np.dtype(dtype).itemsize > 4 else np.float32)
        self.atol, self.rtol, self.min_cosine, self.worst_n = float(atol), float(rtol), float(min_cosine), int(worst_n)
        self._unit = eps = float(np.finfo(ft).eps) / 2  # unit roundoff
        self._kappa = (self.dim + 4) * eps  # bound on the relative error of a row's sum of squares
        # each edge rounded up to ft: x >= T[e] <=> x >= HISTOGRAM_EDGES[e] (edges 1e-11 .. 1; 1e-12, 10: clip ends)
        self._edges = [np.nextafter(ft.type(e), ft.type(np.inf)) if float(ft.type(e)) < e else ft.type(e)
                       for e in HISTOGRAM_EDGES[1:-1]]
        self._tiny = np.finfo(ft).smallest_subnormal
        # rows whose largest |d| reaches this may have elements beyond atol: they get the exact check
        self._atol_screen = ft.type(self.atol * (1 - 8 * eps))
        self._cos_gap = (1.0 - self.min_cosine) - 1e-12  # rows with 1 - cos provably <= this pass the limit
        self._p99 = P99(total_rows, self.dim)
        self.rows, self.count, self.nonzero, self.bad_elements, self.texts_beyond, self.below_cosine = 0, 0, 0, 0, 0, 0
        self.sum_abs = 0.0
        self.at_least: np.ndarray = np.zeros(len(self._edges), dtype=np.int64)
        self.max_rel, self.max_rel_position, self.max_rel_dim = 0.0, -1, -1  # where: baseline row and dimension
        self.min_cos, self.min_cos_position = 1.0, -1
        self.worst: List[Worst] = []
        self.nonfinite_base: List[int] = []  # baseline positions of rows with NaN/Inf
        self.nonfinite_cand: List[int] = []
        self.zero_base: List[int] = []  # baseline positions of all-zero rows (no direction: cosine undefined)
        self._block_rows = max(1, BLOCK_VALUES // max(self.dim, 1))
        # a float's bits without the sign bit, as an integer of its width: ordered as the magnitudes are
        self._bits: np.dtype = np.dtype(np.int32 if ft.itemsize == 4 else np.int64)
        self._magnitude = self._bits.type(np.iinfo(self._bits).max)
        self._d: np.ndarray = np.empty((self._block_rows, self.dim), dtype=ft)
        self._a: np.ndarray = np.empty((self._block_rows, self.dim), dtype=ft)
        self._mask: np.ndarray = np.empty((self._block_rows, self.dim), dtype=bool)

    # -- feeding ------------------------------------------------------------------------------------------

    def add(self, position: int, base: np.ndarray, cand: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Add aligned rows ``position ..``; returns per-row ``(|base|^2, |cand - base|^2)`` in the work dtype
        (relative error <= ``(dim + 4) * unit roundoff``), which the streaming top-k uses to bound scores."""
        base, cand = np.asarray(base, dtype=self.ft), np.asarray(cand, dtype=self.ft)
        n = len(base)
        bsq: np.ndarray = np.empty(n, dtype=self.ft)
        dsq: np.ndarray = np.empty(n, dtype=self.ft)
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
        if not bsq.all():  # |b|^2 underflows for tiny rows: only rows of exact zeros count
            zero = np.flatnonzero(bsq == 0)
            self.zero_base += (position + zero[~b[zero].any(axis=1)]).tolist()
        self.rows += m
        self.count += d.size
        ad = np.abs(d, out=d)
        rmax = ad.view(self._bits).max(axis=1).view(self.ft)  # non-negative floats order as their bits: 2x faster
        top = float(rmax.max()) if m else 0.0
        if top == 0.0:  # bit-identical rows: nothing moved, every statistic stays as it is
            self._worst_candidates(position, b, c, rmax)
            return
        self.sum_abs += float(np.einsum("ij->", ad, dtype=np.float64))
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
        self._p99.add(position, ad)
        # rows that may decide a metric, screened with float32 bounds, then recomputed exactly
        exact_rows: Dict[int, Tuple[float, ...]] = {}

        def exact(rows: np.ndarray) -> None:
            for r in _fill_exact(exact_rows, b, c, rows):
                values = exact_rows[r]
                self._extremes(values[2], position + r, values[1], position + r, int(values[4]))

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
        magnitudes = np.bitwise_and(b.view(self._bits), self._magnitude, out=self._a[:m].view(self._bits))  # |b|
        bmin = magnitudes.min(axis=1).view(self.ft).astype(np.float64)
        rel = rmax.astype(np.float64) * (1 + 4 * self._unit) / np.maximum(bmin, REL_FLOOR)
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

    def _extremes(self, cos: float, cos_at: int, rel: float, rel_at: int, rel_dim: int) -> None:
        """Keep the lowest cosine and the largest relative difference seen (equal values: the first position, as
        np.argmin / np.argmax would name)."""
        if (cos, cos_at) < (self.min_cos, self.min_cos_position) and cos_at >= 0:
            self.min_cos, self.min_cos_position = cos, cos_at
        if rel > self.max_rel or (rel == self.max_rel > 0 and rel_at < self.max_rel_position):
            self.max_rel, self.max_rel_position, self.max_rel_dim = rel, rel_at, rel_dim

    def _beyond(self, b: np.ndarray, c: np.ndarray) -> None:
        """Rows whose largest difference reaches atol: exact element count and text count (float64)."""
        for s in range(0, len(b), 256):
            b64: np.ndarray = b[s : s + 256].astype(np.float64)
            diff = np.abs(c[s : s + 256].astype(np.float64) - b64)
            allowed = self.atol + self.rtol * np.abs(b64) if self.rtol else self.atol
            self.bad_elements += int(np.count_nonzero(diff > allowed))
            self.texts_beyond += int(np.count_nonzero(diff.max(axis=1) > self.atol))

    def _worst_candidates(self, position: int, b: np.ndarray, c: np.ndarray, rmax: np.ndarray,
                          exact_rows: Optional[Dict[int, Tuple[float, ...]]] = None) -> None:
        n = self.worst_n
        if not n or not len(rmax):
            return
        if len(self.worst) >= n:
            bound = float(rmax.max()) * (1 + 4 * self._unit)
            if bound < self.worst[-1].value or bound == self.worst[-1].value == 0.0:
                return
        r64: np.ndarray = rmax.astype(np.float64)
        cut = float(np.partition(r64, len(r64) - n)[len(r64) - n]) if len(r64) > n else 0.0
        if cut > 0:
            # float32 row maxima can tie or swap where the exact ones differ (|d| rounded): every row within
            # rounding of the n-th largest is a candidate, decided by its exact value below
            rows = np.flatnonzero(r64 >= cut * (1 - 8 * self._unit))
        else:
            rows = _top_rows(r64, n, above=-1.0)
        exact_rows = exact_rows or {}
        _fill_exact(exact_rows, b, c, rows)
        self.worst += [Worst(exact_rows[r][0], position + r, exact_rows[r][2], int(exact_rows[r][3]),
                             float(exact_rows[r][5]), float(exact_rows[r][6])) for r in rows.tolist()]
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
        for zeroed in (d, dsq, bsq):
            zeroed[bad] = 0

    # -- results ------------------------------------------------------------------------------------------

    def merge(self, other: DiffStats) -> None:
        """Fold in the statistics of another instance that saw other rows."""
        for name in ("rows", "count", "sum_abs", "nonzero", "bad_elements", "texts_beyond", "below_cosine"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.at_least += other.at_least
        self._extremes(other.min_cos, other.min_cos_position, other.max_rel, other.max_rel_position, other.max_rel_dim)
        self.worst = sorted(self.worst + other.worst, key=lambda w: (-w.value, w.position))[: self.worst_n]
        self.nonfinite_base += other.nonfinite_base
        self.nonfinite_cand += other.nonfinite_cand
        self.zero_base += other.zero_base
        self._p99.merge(other._p99)

    def histogram(self) -> Histogram:
        """Counts of |d| per decade (``HISTOGRAM_EDGES``, clipped at both ends), zeros apart."""
        counts = (-np.diff([self.nonzero, *self.at_least.tolist(), 0])).tolist()  # at least edge i -> per bin
        return Histogram(list(HISTOGRAM_EDGES), counts, [self.count - self.nonzero])

    def summary(self) -> ElementStats:
        """The ``element_stats`` of everything added (``argmax_row`` = baseline position of the worst row)."""
        if not self.count:
            return ElementStats(0, 0.0, 0.0, 0.0, 0.0, -1)
        worst = self.worst[0] if self.worst else Worst(0.0, -1, 1.0)
        return ElementStats(count=self.count, max_abs=worst.value, mean_abs=self.sum_abs / self.count,
                            p99_abs=self._p99.value(), max_rel=self.max_rel, argmax_row=worst.position)


def _top_rows(values: np.ndarray, n: int, above: float) -> np.ndarray:
    """Indices of the ``n`` largest values that exceed ``above`` (lowest index first among values equal to the
    n-th largest, as a stable descending sort would pick)."""
    if not len(values) or n <= 0:
        return np.zeros(0, dtype=np.intp)
    if len(values) > n:
        cut = np.partition(values, len(values) - n)[len(values) - n]
        idx = np.flatnonzero(values > cut)  # fewer than n: ``cut`` is the n-th largest
        idx = np.concatenate([idx, np.flatnonzero(values == cut)[: n - len(idx)]])
    else:
        idx = np.arange(len(values))
    return idx[values[idx] > above]


def _fill_exact(known: Dict[int, Tuple[float, ...]], b: np.ndarray, c: np.ndarray, rows: np.ndarray) -> List[int]:
    """``_exact_rows`` of the ``rows`` not yet in ``known``, into it; returns those rows."""
    new = [r for r in rows.tolist() if r not in known]
    if new:
        known.update(zip(new, zip(*_exact_rows(b[new], c[new]))))
    return new


def _exact_rows(base: np.ndarray, cand: np.ndarray) -> Tuple[np.ndarray, ...]:
    """Per row, in float64 exactly as the in-memory metrics: largest |d|, largest relative |d|, cosine, then
    where: the dimension of the largest |d| and of the largest relative |d|, and both sides' values at the first."""
    b64: np.ndarray = base.astype(np.float64)
    c64: np.ndarray = cand.astype(np.float64)
    diff = np.abs(c64 - b64)
    rel = diff / np.maximum(np.abs(b64), REL_FLOOR)
    rows, dim_abs = np.arange(len(diff)), diff.argmax(axis=1)  # dim >= 1: ``_block`` has taken a row maximum
    return (diff.max(axis=1, initial=0.0), rel.max(axis=1, initial=0.0), row_cosine(b64, c64), dim_abs,
            rel.argmax(axis=1), b64[rows, dim_abs], c64[rows, dim_abs])
