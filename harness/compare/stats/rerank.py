"""Streaming statistics of one cross-encoder: what the verdict (``kinds.rerank``) needs, a few numbers per query
(each arriving whole, in any order) and never the pairs: files and arrays give one verdict by construction.
"""

from __future__ import annotations

from array import array
from typing import List, NamedTuple, Optional, Tuple

import numpy as np

from harness.compare import metrics as m
from harness.compare.stats.percentile import P99
from harness.config.policy import Tolerance
from harness.measured import Histogram

__all__ = ["RerankStats"]

#: (value, baseline position, baseline score, candidate score) of one pair
_Pair = Tuple[float, int, float, float]


class Example(NamedTuple):
    """A reordered query's worst swap: the rows the baseline ranked above and below, both sides' scores of the
    two; ``key`` (-swaps, first position) orders the examples kept (most reordered first)."""

    key: Tuple[int, int]
    query: str
    above_row: int
    below_row: int
    baseline: List[float]
    actual: List[float]


class RerankStats:
    """The rerank verdict's statistics: ``add_scores`` over every pair once (``total_pairs`` in all, for the
    exact p99), ``add_query`` over every query once (``with_queries``); the ``worst_n`` largest |d| and the
    ``examples`` most reordered queries' worst swaps are kept."""

    def __init__(self, total_pairs: int, tol: Tolerance, with_queries: bool, worst_n: int, examples: int) -> None:
        self.tol, self.with_queries, self.total = tol, with_queries, int(total_pairs)
        self.worst_n, self.keep_examples = int(worst_n), int(examples)
        self._p99, self.pairs, self._sum, self.beyond, self.zeros = P99(self.total), 0, 0.0, 0, 0
        self.counts: np.ndarray = np.zeros(len(m.HISTOGRAM_EDGES) - 1, dtype=np.int64)
        self.max_abs: Optional[_Pair] = None
        self.max_rel: Optional[Tuple[float, int]] = None
        self.worst: List[_Pair] = []
        self.first_pos, self.taus, self.topk_same, self.swaps = array("q"), array("d"), array("b"), array("q")
        self.min_tau: Optional[Tuple[float, str]] = None
        self.examples: List[Example] = []

    def add_scores(self, position: int, base: np.ndarray, cand: np.ndarray) -> None:
        """Aligned scores of the pairs at baseline positions ``position ..``, in float64."""
        bs, cs = np.asarray(base, dtype=np.float64), np.asarray(cand, dtype=np.float64)
        if not len(bs):
            return
        diff = np.abs(cs - bs)
        rel = diff / np.maximum(np.abs(bs), m.REL_FLOOR)
        self.pairs += len(diff)
        self._sum += float(np.sum(diff, where=np.isfinite(diff)))  # non-finite: refused by the caller
        self.beyond += int((diff > self.tol.score_atol + self.tol.score_rtol * np.abs(bs)).sum())
        hist = m.log_histogram(diff)
        self.counts += np.asarray(hist.counts, dtype=np.int64)
        self.zeros += hist.equal
        self._p99.add(position, diff)
        i_abs, i_rel = int(np.argmax(diff)), int(np.argmax(rel))
        if self.max_abs is None or diff[i_abs] > self.max_abs[0]:  # equal values: the first position stays
            self.max_abs = (float(diff[i_abs]), position + i_abs, float(bs[i_abs]), float(cs[i_abs]))
        if self.max_rel is None or rel[i_rel] > self.max_rel[0]:
            self.max_rel = (float(rel[i_rel]), position + i_rel)
        top = np.argsort(-diff, kind="stable")[: self.worst_n]
        self.worst = sorted(self.worst + [(float(diff[i]), position + int(i), float(bs[i]), float(cs[i]))
                                          for i in top.tolist() if diff[i] > 0], key=lambda w: (-w[0], w[1]))
        del self.worst[self.worst_n :]

    def add_query(self, query: str, positions: np.ndarray, base: np.ndarray, cand: np.ndarray) -> None:
        """One whole query: its pairs' baseline positions (increasing) and both sides' scores, in float64."""
        bs, cs = np.asarray(base, dtype=np.float64), np.asarray(cand, dtype=np.float64)
        tau, swaps, worst = m.rank_changes(bs, cs, self.tol.tie_tolerance)
        same = bool(m.topk_agreement(bs[None, :], cs[None, :], self.tol.topk, self.tol.tie_tolerance).same_order[0])
        first = int(positions[0])
        self.first_pos.append(first)
        self.taus.append(tau)
        self.topk_same.append(same)
        self.swaps.append(swaps)
        if self.min_tau is None or (tau, query) < self.min_tau:
            self.min_tau = (tau, query)
        if swaps and (len(self.examples) < self.keep_examples or (-swaps, first) < self.examples[-1].key):
            hi, lo = worst or (0, 0)
            example = Example((-swaps, first), query, int(positions[hi]), int(positions[lo]),
                              [float(bs[hi]), float(bs[lo])], [float(cs[hi]), float(cs[lo])])
            self.examples = sorted(self.examples + [example], key=lambda e: e.key)[: self.keep_examples]

    def named_positions(self) -> List[int]:
        """Baseline positions of the pairs the verdict names (their ids are looked up once, at the end)."""
        out = [w[1] for w in self.worst] + [row for e in self.examples for row in (e.above_row, e.below_row)]
        return out + ([self.max_abs[1]] if self.max_abs else []) + ([self.max_rel[1]] if self.max_rel else [])

    def histogram(self) -> Histogram:
        """Counts of |d| per decade (``HISTOGRAM_EDGES``, clipped at both ends), zeros apart."""
        return Histogram(list(m.HISTOGRAM_EDGES), self.counts.tolist(), [self.zeros])

    def p99(self) -> float:
        return self._p99.value() if self.pairs else 0.0

    def mean(self) -> float:  # a float64 sum: reported, never judged
        return self._sum / self.pairs if self.pairs else 0.0
