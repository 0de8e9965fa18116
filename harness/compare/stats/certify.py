"""Proving top-k agreement without scoring every query against every document.

When every vector moved by little (fp32 drift), a query's candidate top-k is the baseline's, in the same order,
whenever the baseline's own top-(k+1) scores are spaced wider than any score can move. With unit vectors (all
cosines are computed on ``unit_rows``), for a query q and a document d:

    |cos_c(q, d) - cos_b(q, d)| <= |ĉ_q - b̂_q| + |ĉ_d - b̂_d| =: e_q + D_d

``e_q`` is computed exactly from the query vectors (read first); ``D_d`` is bounded per document from the
``|b|^2`` and ``|c - b|^2`` the streaming pass already computes (``move_bounds``). Documents that moved far
more than the rest of their block (``far``) are scored exactly against every query instead, so that a handful
of real changes does not loosen the bound for all. With ``delta_q = e_q + max D over the other documents``
(plus rounding), and the baseline's exact top-(k+1) ``s_1 >= ... >= s_{k+1}`` (``harness.compare.certificate``):

* no far document among the query's baseline top-(k+1), and every far document's exact candidate score
  below ``s_k - delta_q``;
* ``s_k - delta_q > s_{k+1} + delta_q``: no document outside the baseline's top-k can enter the candidate's;
* ``s_i - delta_q > s_{i+1} + delta_q`` for i < k: the candidate's scores of the top-k strictly decrease in
  the baseline's order, so its order (ties by position included) is the baseline's.

Then ``topk_agreement`` would find this query's order and set unchanged, overlap 1 and the raw order equal:
the query is *certified*. Any other query is scored exactly (``TopKStream``). The bound only decides which
queries need scoring; a bound too loose costs time, never a wrong verdict.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from harness.compare.metrics import TopKAgreement, topk_agreement, unit_rows
from harness.compare.stats.topk import TILE_BYTES, move_bounds

__all__ = ["ROUNDING", "CertifyStream", "certifiable", "query_moves", "combine"]

#: slack for the float64 rounding of the cosines compared (a dot product of unit rows is off by at most
#: ~dim * 2**-53; this covers dim up to ~10^4 with a wide margin)
ROUNDING = 1e-11


#: queries whose float64 unit rows are made at a time (memory: QUERY_CHUNK x dim x 8 bytes per side)
QUERY_CHUNK = 4096


def query_moves(base_queries: np.ndarray, cand_queries: np.ndarray) -> np.ndarray:
    """``e_q = |ĉ_q - b̂_q|`` per query (computed unit rows, rounded up), as ``TopKStream`` computes it."""
    out = np.zeros(len(base_queries))
    for s in range(0, len(base_queries), QUERY_CHUNK):
        e = s + QUERY_CHUNK
        out[s:e] = np.linalg.norm(unit_rows(cand_queries[s:e]) - unit_rows(base_queries[s:e]), axis=1)
    return out * (1 + 1e-9) + 1e-12


def certifiable(scores: np.ndarray, k: int, delta: np.ndarray, far_best: Optional[np.ndarray] = None,
                every_document: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """Per query, from the baseline's top scores ``scores`` (queries x W, best first, W > k unless
    ``every_document``: the W are all there are): whether the bound alone proves the top-k set and order
    (``proven``), and whether it proves that the candidate's top-k lies within these W documents (``within``),
    so that both sides' exact scores of just those W decide it. ``far_best``: per query, the best exact
    candidate score of the far documents."""
    s = np.asarray(scores, dtype=np.float64)
    nq, width = s.shape if s.ndim == 2 else (0, 0)
    if not nq:
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)
    d = np.asarray(delta, dtype=np.float64)
    kth = s[:, k - 1] - d
    clear = kth > far_best if far_best is not None else np.ones(nq, dtype=bool)
    proven = clear.copy()
    if width > k:
        proven &= kth > s[:, k] + d
    if k > 1:
        proven &= ((s[:, : k - 1] - d[:, None]) > (s[:, 1:k] + d[:, None])).all(axis=1)
    within = clear if every_document else clear & (kth > s[:, width - 1] + d)
    return proven, within


class CertifyStream:
    """What the bound needs from the streamed documents: the largest move ``D`` of the documents that were
    not singled out, and for those that were (``far``) their positions and exact candidate scores (the best per
    query). Fed like ``TopKStream`` (same ``add`` arguments), mergeable across threads; memory: a few floats per
    query and one tile of far documents' scores.

    ``ordered``/``top``: queries whose top-k set will likely be proven but not its order (near-tied neighbours
    within the top-k), with their baseline top-k positions: both sides' exact scores of just those k documents
    are gathered as they stream by, and give the candidate's order (``ordered_agreement``)."""

    def __init__(self, base_queries: np.ndarray, cand_queries: np.ndarray, ordered: np.ndarray, top: np.ndarray,
                 tile_bytes: int = TILE_BYTES) -> None:
        self.base_queries, self.cand_queries = base_queries, cand_queries  # raw rows, unit rows made per chunk
        dim = cand_queries.shape[1]
        unit = float(np.finfo(np.float32 if cand_queries.dtype.itemsize <= 4 else np.float64).eps) / 2
        self.kappa = (dim + 4) * unit
        self.tile_rows = max(1, int(tile_bytes) // (8 * min(QUERY_CHUNK, max(1, len(cand_queries)))))
        self.near_move = 0.0
        self.far_best = np.full(len(cand_queries), -np.inf)
        self.far_positions: List[np.ndarray] = []
        # the gathered pairs, sorted by document position: query row (into ``ordered``), column, position
        self.ordered = np.asarray(ordered, dtype=np.intp)
        k = top.shape[1] if top.ndim == 2 else 0
        flat_pos = np.asarray(top, dtype=np.int64).ravel()
        order = np.argsort(flat_pos, kind="stable")
        self.req_pos = flat_pos[order]
        self.req_row, self.req_col = np.divmod(order, max(k, 1))
        self.pos = np.asarray(top, dtype=np.int64)
        self.sb = np.full((len(self.ordered), k), np.nan)
        self.sc = np.full((len(self.ordered), k), np.nan)

    def add(self, positions: np.ndarray, base: np.ndarray, cand: np.ndarray, base_sq: np.ndarray,
            diff_sq: np.ndarray) -> None:
        m = len(base)
        if not m:
            return
        positions = np.asarray(positions, dtype=np.int64)
        self._gather(positions, base, cand)
        moved = move_bounds(base_sq, diff_sq, self.kappa)
        # the same rule as TopKStream's screen: a few documents far beyond the block's 99th percentile
        cut = 4 * float(np.partition(moved, (m - 1) * 99 // 100)[(m - 1) * 99 // 100]) + 1e-9
        far = np.flatnonzero(~(moved <= cut))  # NaN rows too (refused afterwards)
        near = np.delete(moved, far) if len(far) else moved
        self.near_move = max(self.near_move, float(near.max(initial=0.0)))
        if not len(far):
            return
        self.far_positions.append(positions[far])
        for s in range(0, len(self.cand_queries), QUERY_CHUNK):
            qc = unit_rows(self.cand_queries[s : s + QUERY_CHUNK])
            for f in range(0, len(far), self.tile_rows):
                scores = qc @ unit_rows(np.asarray(cand)[far[f : f + self.tile_rows]]).T
                self.far_best[s : s + len(qc)] = np.fmax(self.far_best[s : s + len(qc)], scores.max(axis=1))

    def _gather(self, positions: np.ndarray, base: np.ndarray, cand: np.ndarray) -> None:
        """Both sides' exact scores of the requested (query, document) pairs among these documents
        (``positions`` ascending, as the segments hand them)."""
        lo, hi = np.searchsorted(self.req_pos, [positions[0], positions[-1] + 1])
        if hi <= lo:
            return
        want = self.req_pos[lo:hi]
        at = np.minimum(np.searchsorted(positions, want), len(positions) - 1)
        hit = positions[at] == want
        rows, cols, at = self.req_row[lo:hi][hit], self.req_col[lo:hi][hit], at[hit]
        if not len(rows):
            return
        queries = self.ordered[rows]
        self.sb[rows, cols] = np.einsum("ij,ij->i", unit_rows(self.base_queries[queries]), unit_rows(base[at]))
        self.sc[rows, cols] = np.einsum("ij,ij->i", unit_rows(self.cand_queries[queries]), unit_rows(cand[at]))

    def merge(self, other: "CertifyStream") -> None:
        self.near_move = max(self.near_move, other.near_move)
        self.far_best = np.fmax(self.far_best, other.far_best)
        self.far_positions += other.far_positions
        self.sb = np.where(np.isnan(self.sb), other.sb, self.sb)
        self.sc = np.where(np.isnan(self.sc), other.sc, self.sc)

    def certified(self, top_positions: np.ndarray, top_scores: np.ndarray, k: int, moves: np.ndarray,
                  every_document: bool) -> Tuple[np.ndarray, np.ndarray]:
        """``certifiable`` with the real bound (module docstring) for the baseline's top documents
        ``top_positions``/``top_scores`` (queries x W) and the query moves; a query with a far document among its
        top W is proven by neither."""
        delta = (np.asarray(moves) + self.near_move) * (1 + 1e-6) + ROUNDING
        proven, within = certifiable(top_scores, k, delta, self.far_best, every_document)
        finite = np.isfinite(delta)
        if self.far_positions:
            far = np.unique(np.concatenate(self.far_positions))
            finite &= ~np.isin(top_positions, far).any(axis=1)
        return proven & finite, within & finite

    def gathered_agreement(self, k: int, tie_tolerance: float) -> Tuple[np.ndarray, TopKAgreement]:
        """For the ``ordered`` queries whose W documents were all gathered: (their indices, ``topk_agreement``
        over just those W documents, in position order as the in-memory one breaks ties by position)."""
        done = np.flatnonzero(~(np.isnan(self.sb).any(axis=1) | np.isnan(self.sc).any(axis=1)))
        by_pos = np.argsort(self.pos[done], axis=1, kind="stable")
        rows = np.arange(len(done))[:, None]
        agree = topk_agreement(self.sb[done][rows, by_pos], self.sc[done][rows, by_pos], k, tie_tolerance)
        return self.ordered[done], agree


def combine(nq: int, k: int, certified: np.ndarray, exact: Sequence["tuple[np.ndarray, TopKAgreement]"]) -> TopKAgreement:
    """One ``TopKAgreement`` for all queries: certified ones unchanged, the others from exact parts (each the
    query indices it covers and its agreement over them)."""
    same_order = np.ones(nq, dtype=bool)
    same_set = np.ones(nq, dtype=bool)
    overlap = np.ones(nq, dtype=np.float64)
    raw = np.ones(nq, dtype=bool)
    covered = np.asarray(certified, dtype=bool).copy()
    for rows, agree in exact:
        same_order[rows], same_set[rows] = agree.same_order, agree.same_set
        overlap[rows], raw[rows] = agree.overlap, agree.raw_same_order
        covered[rows] = True
    if not covered.all():
        raise ValueError(f"combine: {int((~covered).sum())} queries neither certified nor scored")
    return TopKAgreement(k=k, same_order=same_order, same_set=same_set, overlap=overlap, raw_same_order=raw)
