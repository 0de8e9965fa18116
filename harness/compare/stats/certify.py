"""Deciding top-k agreement without scoring every query against every document.

The baseline's certificate (``Certificate``, filed by ``harness.compare.certify``) holds each query's best W
documents (W = k + 11) with their exact scores ``s_1 >= ... >= s_W``. While the files stream, both sides' exact
scores of just those W documents are gathered, and a bound proves that no other document can enter the
candidate's top-k. With unit vectors (``unit_rows``), for a query q and a document d:

    |cos_c(q, d) - cos_b(q, d)| <= |ĉ_q - b̂_q| + |ĉ_d - b̂_d| =: e_q + D_d

``e_q`` is computed from the query vectors; ``D_d`` is bounded per document (``move_bounds``). Documents that
moved far more than the rest of their block (``far``) are scored exactly against every query instead, so that a
handful of real changes does not loosen the bound for all. With ``delta_q = e_q + max D over the other documents`` (plus
rounding): the candidate scores each of the baseline's top k at least ``s_k - delta_q``, and any document
outside the W at most ``s_W + delta_q`` (or, if far, its exact score). So when

    s_k - delta_q > s_W + delta_q   and   s_k - delta_q > every far document's exact score (outside the W)

the candidate's top-k lies within the W, and ``topk_agreement`` over the W documents' exact scores (in position
order) is the in-memory one over all documents, ties included. Such a query is *certified*; any other is scored
exactly (``TopKStream``): a loose bound costs time, never a wrong verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, Tuple

import numpy as np

from harness.compare.metrics import AGREEMENT_FIELDS, TopKAgreement, topk_agreement, unit_rows
from harness.compare.stats.topk import TILE_BYTES, Mask, by_chunk, far_cut, move_bounds, moved_sq, served

__all__ = ["EXTRA", "ROUNDING", "Certificate", "CertifyStream", "Source", "add_proofs", "certifiable", "combine",
           "query_moves", "width"]

#: documents kept per query beyond k + 1: a query whose k-th and (k+1)-th scores are too close for the bound is
#: still decided when its k-th clears the last of these
EXTRA = 10

#: slack for the float64 rounding of the cosines compared (a dot product of unit rows is off by at most
#: ~dim * 2**-53; this covers dim up to ~10^4 with a wide margin)
ROUNDING = 1e-11

#: a baseline score gathered in the stream and the certificate's for it differ by float64 rounding at most (the
#: same cosine computed in another order); more means the certificate describes another baseline
SAME_SCORE = 1e-9

#: queries whose float64 unit rows are made at a time (memory: QUERY_CHUNK x dim x 8 bytes per side)
QUERY_CHUNK = 4096

#: gathered (query, document) pairs scored at a time (each chunk's float64 rows, ~1.5 MB per side, stay in cache)
PAIR_CHUNK = 512


def width(k: int, documents: int) -> int:
    """Documents a certificate keeps per query: the best k + 1 + ``EXTRA``, or all there are."""
    return min(int(k) + 1 + EXTRA, int(documents))


@dataclass(frozen=True)
class Certificate:
    """Per query (in the order of the baseline's query rows), the baseline's best ``width(k, documents)``
    documents, best first with ties by position: baseline positions and exact cosines."""

    positions: np.ndarray
    scores: np.ndarray

    @property
    def width(self) -> int:
        return int(self.scores.shape[1]) if self.scores.ndim == 2 else 0

    def rows(self, start: int, stop: int) -> Certificate:
        """The queries ``start:stop`` (a query batch)."""
        return Certificate(positions=self.positions[start:stop], scores=self.scores[start:stop])


class Source(Protocol):
    """A certificate in memory, or a filed one read a query batch at a time."""

    def rows(self, start: int, stop: int) -> Certificate: ...


def _norms(rows: np.ndarray) -> np.ndarray:
    """Float64 row norms, floored as ``unit_rows`` floors them."""
    norms = by_chunk(lambda r: np.linalg.norm(np.asarray(r, np.float64), axis=1), rows, chunk=QUERY_CHUNK)
    return np.maximum(norms, 1e-30)


def query_moves(base_queries: np.ndarray, cand_queries: np.ndarray) -> np.ndarray:
    """``e_q = |ĉ_q - b̂_q|`` per query (computed unit rows, rounded up), as ``TopKStream`` computes it."""
    moves = by_chunk(lambda b, c: np.linalg.norm(unit_rows(c) - unit_rows(b), axis=1), base_queries, cand_queries,
                     chunk=QUERY_CHUNK)
    return moves * (1 + 1e-9) + 1e-12


def certifiable(scores: np.ndarray, k: int, delta: np.ndarray, far_best: np.ndarray | float = -np.inf,
                every_document: bool = False) -> np.ndarray:
    """Per query, from the baseline's top scores ``scores`` (queries x W, best first; ``every_document``: the W
    are all the documents there are): whether the bound proves the candidate's top-k lies within these W
    (``far_best``: per query, the best exact candidate score of far documents outside its W)."""
    s, d = np.asarray(scores, dtype=np.float64), np.asarray(delta, dtype=np.float64)
    if s.ndim != 2 or not len(s):
        return np.zeros(0, dtype=bool)
    kth = s[:, k - 1] - d  # -inf and NaN beat no far document: never certified
    return (np.isfinite(kth) if every_document else kth > s[:, -1] + d) & (kth > far_best)


class CertifyStream:
    """What the proof needs from the streamed documents: both sides' exact scores of each query's W documents
    (``top``), the largest move ``D`` of the others, and the best exact candidate score of the ``far`` ones. Fed
    like ``TopKStream``, mergeable; memory: 2 x W floats per query and one tile of far documents' scores."""

    def __init__(self, base_queries: np.ndarray, cand_queries: np.ndarray, top: np.ndarray,
                 shared: Tuple[np.ndarray, ...], baseline: bool = True) -> None:
        self.baseline = baseline  # gather the baseline's scores (False: another stream over the same pairs does)
        self.base_queries, self.cand_queries = base_queries, cand_queries  # raw rows, unit rows made per chunk
        work = np.float32 if cand_queries.dtype.itemsize <= 4 else np.float64
        self.kappa = (cand_queries.shape[1] + 4) * (float(np.finfo(work).eps) / 2)  # as ``_Tile``'s
        self.tile_rows = max(1, TILE_BYTES // (8 * min(QUERY_CHUNK, max(1, len(cand_queries)))))
        self.near_move, self.far_best = 0.0, np.full(len(cand_queries), -np.inf)
        self.pos = np.asarray(top, dtype=np.int64)
        self.req_pos, self.req_row, self.req_col, self.norm_b, self.norm_c = shared
        self.sb, self.sc = np.full(self.pos.shape, np.nan), np.full(self.pos.shape, np.nan)

    @staticmethod
    def shared(base_queries: np.ndarray, cand_queries: np.ndarray, top: np.ndarray) -> Tuple[np.ndarray, ...]:
        """What every worker's instance reads and none writes (``shared``: one copy, ~0.1 GB at 80k queries): the
        certificate's (query, document) pairs sorted by document position, the query norms."""
        width = top.shape[1] if top.ndim == 2 else 0
        flat = np.asarray(top, dtype=np.int64).ravel()
        order = np.argsort(flat, kind="stable")
        rows, cols = np.divmod(order, max(width, 1))
        return flat[order], rows, cols, _norms(base_queries), _norms(cand_queries)

    def _moves(self, positions: np.ndarray, base: np.ndarray, cand: np.ndarray, base_sq: np.ndarray,
               diff_sq: np.ndarray, mask: Mask) -> None:
        """The largest move of the documents not singled out (``far_cut``), and the exact scores of those that were."""
        moved = move_bounds(base_sq, moved_sq(diff_sq, mask), self.kappa)
        far = np.flatnonzero(~(moved <= far_cut(moved)))  # NaN rows too (refused afterwards)
        near = np.delete(moved, far) if len(far) else moved
        self.near_move = max(self.near_move, float(near.max(initial=0.0)))
        if len(far):
            self._score_far(positions[far], served(base, cand, mask, far))

    def _score_far(self, far_pos: np.ndarray, far_rows: np.ndarray) -> None:
        """Exact candidate scores of far documents against every query; a far document in a query's own W is
        left out of that query's best (its exact scores are gathered)."""
        lo, hi = np.searchsorted(self.req_pos, far_pos[0]), np.searchsorted(self.req_pos, far_pos[-1], "right")
        span = self.req_pos[lo:hi]  # the pairs in the far documents' range (far_pos ascending), then theirs
        inside_far = np.isin(span, far_pos)
        owners = self.req_row[lo:hi][inside_far]
        which = np.asarray(np.searchsorted(far_pos, span[inside_far]))
        units = unit_rows(far_rows)
        for s in range(0, len(self.cand_queries), QUERY_CHUNK):
            qc: np.ndarray = self.cand_queries[s : s + QUERY_CHUNK].astype(np.float64)  # raw rows: the best / |q|
            norms = self.norm_c[s : s + len(qc)]
            inside = (owners >= s) & (owners < s + len(qc))
            for f in range(0, len(far_pos), self.tile_rows):
                scores = qc @ units[f : f + self.tile_rows].T
                mine = inside & (which >= f) & (which < f + self.tile_rows)
                scores[owners[mine] - s, which[mine] - f] = -np.inf
                self.far_best[s : s + len(qc)] = np.fmax(self.far_best[s : s + len(qc)], scores.max(axis=1) / norms)

    def merge(self, other: CertifyStream) -> None:
        self.near_move = max(self.near_move, other.near_move)
        self.far_best = np.fmax(self.far_best, other.far_best)
        self.sb = np.where(np.isnan(self.sb), other.sb, self.sb)
        self.sc = np.where(np.isnan(self.sc), other.sc, self.sc)

    def certified(self, top_scores: np.ndarray, k: int, moves: np.ndarray, every_document: bool) -> np.ndarray:
        """Per query, whether the bound (module docstring) proves its candidate top-k within its W, all W scores
        were gathered and the baseline's are the certificate's (else it describes another baseline)."""
        delta = (np.asarray(moves) + self.near_move) * (1 + 1e-6) + ROUNDING
        within = certifiable(top_scores, k, delta, self.far_best, every_document)
        gathered = ~(np.isnan(self.sb).any(axis=1) | np.isnan(self.sc).any(axis=1))
        with np.errstate(invalid="ignore"):
            same = (np.abs(self.sb - np.asarray(top_scores, dtype=np.float64)) <= SAME_SCORE).all(axis=1)
        return within & gathered & same & np.isfinite(delta)

    def agreement(self, rows: np.ndarray, k: int, tie_tolerance: float) -> TopKAgreement:
        """``topk_agreement`` of the queries ``rows`` over their W documents' exact scores, in position order."""
        by_pos = np.argsort(self.pos[rows], axis=1, kind="stable")
        idx = np.asarray(rows)[:, None]
        return topk_agreement(self.sb[idx, by_pos], self.sc[idx, by_pos], k, tie_tolerance)


def add_proofs(fed: Sequence[Tuple[CertifyStream, Mask]], positions: np.ndarray, base: np.ndarray,
               cand: np.ndarray, base_sq: np.ndarray, diff_sq: np.ndarray) -> None:
    """Feed one segment (``positions`` ascending, as the segments hand them) to proofs over the same certificate
    pairs (a batch's tracks, built with one ``shared``), each with the mask of the rows its candidate side serves.
    The pairs' exact scores are computed once for all of them, pair by pair (the same bits in any batch): the
    baseline's, the candidate's queries against the candidate's documents and against the baseline's; a track
    serving a pair's baseline row takes the latter (the same bits as scoring the served row)."""
    if not len(base):
        return
    first = fed[0][0]
    assert all(proof.req_pos is first.req_pos for proof, _ in fed), "add_proofs: proofs of other pairs"
    positions = np.asarray(positions, dtype=np.int64)
    for proof, mask in fed:
        proof._moves(positions, base, cand, base_sq, diff_sq, mask)
    lo, hi = np.searchsorted(first.req_pos, positions[0]), np.searchsorted(first.req_pos, positions[-1], "right")
    want = first.req_pos[lo:hi]  # the pairs among these documents
    at = np.minimum(np.searchsorted(positions, want), len(positions) - 1)
    hit = positions[at] == want
    rows, cols, at = first.req_row[lo:hi][hit], first.req_col[lo:hi][hit], at[hit]
    baseline = any(proof.baseline for proof, _ in fed)
    for s in range(0, len(rows), PAIR_CHUNK):  # q . d / |q|: no per-pair norm of the query row
        r, c, a = rows[s : s + PAIR_CHUNK], cols[s : s + PAIR_CHUNK], at[s : s + PAIR_CHUNK]
        docs, which = np.unique(a, return_inverse=True)  # each document once per chunk
        # per proof and pair: whether its candidate side serves the candidate's row
        served = [np.ones(len(r), bool) if mask is None else np.asarray(mask.take(docs))[which] for _, mask in fed]
        from_base = not all(take.all() for take in served)
        cand_q = first.cand_queries[r].astype(np.float64)
        of_cand = of_base = base_scores = None
        if any(take.any() for take in served):
            of_cand = np.einsum("ij,ij->i", cand_q, unit_rows(cand[docs])[which]) / first.norm_c[r]
        if baseline or from_base:
            unit_b = unit_rows(base[docs])[which]
            if from_base:
                of_base = np.einsum("ij,ij->i", cand_q, unit_b) / first.norm_c[r]
            if baseline:
                base_scores = np.einsum("ij,ij->i", first.base_queries[r].astype(np.float64), unit_b) / first.norm_b[r]
        for (proof, _), take in zip(fed, served):
            if proof.baseline:
                proof.sb[r, c] = base_scores
            proof.sc[r, c] = of_cand if take.all() else of_base if not take.any() else np.where(take, of_cand, of_base)


def combine(nq: int, k: int, parts: Sequence[tuple[np.ndarray, TopKAgreement]]) -> TopKAgreement:
    """One ``TopKAgreement`` over the queries ``0:nq`` from parts (the query indices each covers and its
    agreement over them) that cover every query once."""
    rows = np.concatenate([np.zeros(0, np.intp), *(r for r, _ in parts)])
    if not np.array_equal(np.sort(rows), np.arange(nq)):
        raise ValueError(f"combine: parts cover {len(np.unique(rows))} of {nq} queries, or some twice")
    joined, order = TopKAgreement.concat(k, [a for _, a in parts]), np.argsort(rows)
    return TopKAgreement(k, *(getattr(joined, f)[order] for f in AGREEMENT_FIELDS))
