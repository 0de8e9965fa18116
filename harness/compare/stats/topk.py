"""Exact top-k retrieval agreement over documents streamed in blocks: ``harness.compare.metrics.topk_agreement``
for a corpus that does not fit in memory (only the documents that could still be in some query's top-k are kept).
"""

from __future__ import annotations

from typing import Callable, Dict, List, Sequence, Tuple, Union

import numpy as np

from harness.compare.metrics import TopKAgreement, topk_agreement_from_lists, unit_rows

__all__ = ["TILE_BYTES", "TILE_DOC_ROWS", "Fed", "LazyMask", "Mask", "TopKStream", "add_shared", "far_cut", "moved_sq",
           "move_bounds", "pair_dots", "served", "by_chunk"]

#: bytes of the (documents x queries) score tile held at a time, whatever the number of queries or documents
TILE_BYTES = 16 << 20
#: documents per score tile (a block is cut into pieces of this many rows)
TILE_DOC_ROWS = 16384


def move_bounds(base_sq: np.ndarray, diff_sq: np.ndarray, kappa: float) -> np.ndarray:
    """Per document, a bound on ``|ĉ - b̂|`` (how far its unit vector moved) from ``DiffStats.add``'s ``|b|^2``
    and ``|c - b|^2`` (each within relative ``kappa``): ``|ĉ - b̂| <= 2 |c - b| / |b|``, and 2 at most."""
    bsq: np.ndarray = base_sq.astype(np.float64)
    low_b = np.sqrt(bsq * (1 - kappa))
    with np.errstate(divide="ignore", invalid="ignore"):
        moved = np.where(low_b > 0, 2 * np.sqrt(diff_sq.astype(np.float64) * (1 + kappa)) / low_b, 2.0)
    return np.minimum(moved, 2.0) * (1 + 1e-6) + 1e-12


def far_cut(moved: np.ndarray) -> float:
    """The move beyond which a document is ``far``: a few documents that moved far more than the rest of their
    block (4x its 99th percentile) would loosen the bound for all, so they are scored against every query."""
    at = (len(moved) - 1) * 99 // 100
    return 4 * float(np.partition(moved, at)[at]) + 1e-9


def by_chunk(per_row: Callable[..., np.ndarray], *rows: np.ndarray, chunk: int) -> np.ndarray:
    """``per_row(*rows)`` computed ``chunk`` rows at a time (its temporaries stay small)."""
    parts = [per_row(*(r[s : s + chunk] for r in rows)) for s in range(0, len(rows[0]), chunk)]
    return np.concatenate(parts or [np.zeros(0)])


def pair_dots(a: np.ndarray, a_rows: np.ndarray, b: np.ndarray, b_rows: np.ndarray) -> np.ndarray:
    """``a[a_rows[i]] . b[b_rows[i]]`` for each i, one pair at a time: the same two rows give the same bits in
    any batch (a matrix product's rounding depends on where a column falls in its tiles, so duplicated documents
    scored in different blocks could differ by an ulp and break their tie differently)."""
    return by_chunk(lambda i, j: np.einsum("ij,ij->i", a[i], b[j]), a_rows, b_rows, chunk=8192)


class TopKStream:
    """Exact top-k agreement over many queries, cut into ``_Tile``s of ``tile_bytes`` worth of scores (peak
    memory: one tile's, not queries x documents); ``keep`` (>= k) documents per query are kept exactly, the
    baseline's of which file a certificate (``baseline_top``)."""

    def __init__(self, base_queries: np.ndarray, cand_queries: np.ndarray, k: int, tie_tolerance: float,
                 keep: int = 0, tile_bytes: int = TILE_BYTES) -> None:
        self.k, nq = int(k), len(base_queries)
        per_tile = max(1, int(tile_bytes) // (TILE_DOC_ROWS * max(1, base_queries.dtype.itemsize)))
        self.tiles = [_Tile(base_queries[s : s + per_tile], cand_queries[s : s + per_tile], max(self.k, keep),
                            tie_tolerance) for s in range(0, nq, per_tile) or [0]]

    def add(self, positions: np.ndarray, base: np.ndarray, cand: np.ndarray, base_sq: np.ndarray,
            diff_sq: np.ndarray) -> None:
        add_shared([(self, None)], positions, base, cand, base_sq, diff_sq)

    def merge(self, other: TopKStream) -> None:
        """Fold in another instance's pools (same queries, other documents)."""
        for mine, theirs in zip(self.tiles, other.tiles):
            mine.merge(theirs)

    def agreement(self) -> TopKAgreement:
        """``topk_agreement`` over every document added (needs at least k documents)."""
        parts = [tile.agreement(self.k) for tile in self.tiles]
        return TopKAgreement.concat(parts[0].k, parts)

    def baseline_top(self) -> tuple[np.ndarray, np.ndarray]:
        """Per query, the baseline's best ``keep`` documents (or all there are), best first, ties by position:
        (positions, exact scores), shape (queries, keep)."""
        positions, scores = zip(*(tile.baseline_top() for tile in self.tiles))
        return np.concatenate(positions), np.concatenate(scores)


class LazyMask:
    """A bool per document, decided only for the documents asked for (``decide(positions)``: the rolling
    re-embed's hash of their ids is needed only for the few documents kept or gathered). Where it is lazy the
    move bounds take every document's own move, an upper bound: the screen keeps more, the result is exact."""

    def __init__(self, decide: Callable[[np.ndarray], np.ndarray], positions: np.ndarray) -> None:
        self.decide, self.positions = decide, positions

    def __getitem__(self, rows: slice) -> LazyMask:
        return LazyMask(self.decide, self.positions[rows])

    def take(self, rows: np.ndarray) -> np.ndarray:
        return self.decide(self.positions[rows])


#: which documents a stream's candidate side takes from the candidate (True) or serves the baseline's row
#: (False: a kept index); None: every one from the candidate
Mask = Union[np.ndarray, LazyMask, None]
#: a stream fed by ``add_shared`` and its mask
Fed = Tuple[TopKStream, Mask]


def moved_sq(diff_sq: np.ndarray, mask: Mask) -> np.ndarray:
    """The squared moves the bounds use: none where the baseline's row is served, each one's own elsewhere."""
    return np.where(mask, diff_sq, 0) if isinstance(mask, np.ndarray) else diff_sq


def served(base: np.ndarray, cand: np.ndarray, mask: Mask, rows: np.ndarray) -> np.ndarray:
    """The candidate side's ``rows``: ``cand``'s where ``mask``, else ``base``'s."""
    if mask is None:
        return np.asarray(cand)[rows]
    return np.where(mask.take(rows)[:, None], np.asarray(cand)[rows], np.asarray(base)[rows])


def add_shared(streams: Sequence[Fed], positions: np.ndarray, base: np.ndarray, cand: np.ndarray,
               base_sq: np.ndarray, diff_sq: np.ndarray) -> None:
    """Documents at baseline ``positions``, with ``DiffStats.add``'s ``|base|^2`` and ``|cand - base|^2``, into
    streams over the same baseline queries (the scenarios beside the verdict's top-k): one screening product, move
    bounds and exact baseline scores per block serve them all; each stream's candidate rows are ``served``."""
    if not len(base) or not streams or not len(streams[0][0].tiles[0].base_queries):
        return
    bsq: np.ndarray = base_sq.astype(np.float64)
    # every document's own move: the verdict's bounds and a lazy mask's
    own = move_bounds(bsq, diff_sq, kappa := streams[0][0].tiles[0].kappa)
    moves = [move_bounds(bsq, moved_sq(diff_sq, m), kappa) if isinstance(m, np.ndarray) else own for _, m in streams]
    for tiles in zip(*(stream.tiles for stream, _ in streams)):
        qb = unit_rows(tiles[0].base_queries)
        qb_work_t = np.ascontiguousarray(qb.T, dtype=tiles[0].work)
        qcs: List[list] = [[] for _ in tiles]  # each tile's candidate unit queries, computed when first needed
        for s in range(0, len(base), TILE_DOC_ROWS):
            e, nq = s + TILE_DOC_ROWS, len(qb)
            block = np.asarray(base[s:e], dtype=tiles[0].work)
            scores, eps = tiles[0].screen(qb_work_t, block, base_sq[s:e])
            spreads = {id(moved): _spread(moved[s:e]) for moved in {id(mv): mv for mv in moves}.values()}
            limits = [tile.limit(scores, eps, spreads[id(moved)]) for tile, moved in zip(tiles, moves)]
            dj, qi = np.divmod(np.flatnonzero(scores >= np.minimum.reduce([lim[0] for lim in limits])[None, :]), nq)
            est = scores[dj, qi]  # one comparison for every stream (1-d: much faster than a 2-d nonzero)
            picks = [tile.pick(scores, eps, spreads[id(moved)], lim, dj[est >= lim[0][qi]], qi[est >= lim[0][qi]])
                     for tile, moved, lim in zip(tiles, moves, limits)]
            keys = np.unique(np.concatenate([d * nq + q for d, q in picks]))  # one exact baseline score per pair
            cols, col_of = np.unique(keys // nq, return_inverse=True)
            sb = pair_dots(qb, keys % nq, unit_rows(block[cols]), col_of)
            for tile, qc, (_, mask), (d, q) in zip(tiles, qcs, streams, picks):
                if len(q):
                    tile.store(qc, q, d, sb[np.searchsorted(keys, d * nq + q)], positions[s:e], base[s:e], cand[s:e],
                               None if mask is None else mask[s:e])


Spread = Tuple[np.ndarray, float, np.ndarray, float, Dict[int, np.ndarray]]


def _spread(moved: np.ndarray) -> Spread:
    """A block's move bounds, the cut and the documents beyond it (``far``), the largest other move and the k-th
    estimates per k (filled by ``_Tile.limit``)."""
    cut = far_cut(moved)
    far = np.flatnonzero(moved > cut)
    return moved, cut, far, float(moved.max()) if not len(far) else float(moved[moved <= cut].max(initial=0.0)), {}


class _Tile:
    """Exact top-k retrieval agreement with documents streamed in blocks, in any order (``topk_agreement``
    semantics). Per query a pool keeps every document that could still be in either side's top-k, with both exact
    float64 cosines, so ties and tie-breaking by position are the in-memory ones.

    Screening costs one product per block, against the baseline only: with ``s`` the exact cosine and ``S``
    the float32 estimate (raw float32 vectors, scaled by float32 norms), ``|S - s| <= eps = (2 dim + 16) u``
    (``u = 2**-24``; a dot product's rounding is at most ``dim u |q||b|``); the candidate's cosine of the same pair
    is within ``|ĉ_q - b̂_q| + |ĉ_d - b̂_d|`` of the baseline's (``move_bounds``). A document is dropped when
    neither side can reach the best k-th score known so far (``kth_b``/``kth_c``: the pool's exact k-th scores,
    or the block's own top-k estimates before the pool has k). Memory: about ``k`` + a few documents per query.
    """

    def __init__(self, base_queries: np.ndarray, cand_queries: np.ndarray, k: int, tie_tolerance: float) -> None:
        self.work = np.dtype(np.float64 if base_queries.dtype.itemsize > 4 else np.float32)
        unit = float(np.finfo(self.work).eps) / 2
        self.eps, self.kappa = (2 * base_queries.shape[1] + 16) * unit + 1e-12, (base_queries.shape[1] + 4) * unit
        self.k, self.tie_tolerance = int(k), float(tie_tolerance)  # k: documents kept per query (>= the agreement's)
        # the raw query rows (views): their float64 unit rows, remade per ``add``, would be 0.5 GB per 80k queries
        self.base_queries, self.cand_queries = base_queries, cand_queries
        self.dq = np.linalg.norm(unit_rows(cand_queries) - unit_rows(base_queries), axis=1) * (1 + 1e-9) + 1e-12
        nq = len(base_queries)
        self.pool_q, self.pool_pos = np.zeros(0).astype(np.intp), np.zeros(0).astype(np.int64)
        self.pool_sb, self.pool_sc, self.counts = np.zeros(0), np.zeros(0), np.zeros(nq).astype(np.int64)
        self.kth_b, self.kth_c = np.full(nq, -np.inf), np.full(nq, -np.inf)

    def screen(self, qb_work_t: np.ndarray, base: np.ndarray, base_sq: np.ndarray) -> Tuple[np.ndarray, float]:
        """The block's baseline documents x baseline queries estimates (float32 for float32 rows) and their
        error bound ``eps``: the costly step, shared by every stream over these queries (``add_shared``)."""
        norm_b = np.sqrt(base_sq.astype(np.float64))
        scores = base @ qb_work_t  # (documents, queries): streams the block once, faster than Q @ B.T
        # Normalized embeddings (|b| = 1 up to rounding) skip scaling the scores: the bound widens instead.
        off_unit = float(np.abs(norm_b - 1.0).max(initial=0.0)) + self.kappa
        if off_unit <= 1e-3:
            return scores, self.eps + off_unit * (1 + 1e-6)
        scores *= (1.0 / np.maximum(norm_b, 1e-30)).astype(self.work)[:, None]
        return scores, self.eps

    def limit(self, scores: np.ndarray, eps: float, spread: Spread) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per query, the lowest estimate (work dtype) a document of the block (``screen``'s ``scores``) needs to be
        looked at, and the bounds on each side's k-th score."""
        moved, _, far, near_most, kths = spread
        lb_b, lb_c = self.kth_b.copy(), self.kth_c.copy()
        short, near = np.flatnonzero(self.counts < self.k), len(moved) - len(far)
        if len(short) and near >= self.k:  # k near documents score at least the k-th estimate, minus eps
            if self.k not in kths:
                pool = scores if not len(far) else np.delete(scores, far, axis=0)
                kths[self.k] = np.partition(pool, near - self.k, axis=0)[near - self.k].astype(np.float64)
            kth = kths[self.k][short]
            lb_b[short] = np.maximum(lb_b[short], kth - eps)
            lb_c[short] = np.maximum(lb_c[short], kth - eps - self.dq[short] - near_most)
        limit = np.minimum(lb_b, lb_c - self.dq - near_most) - eps
        work = limit.astype(self.work)  # rounded down: a score at the limit in float64 is still at it in ``work``
        return np.where(work.astype(np.float64) > limit, np.nextafter(work, self.work.type(-np.inf)), work), lb_b, lb_c

    def pick(self, scores: np.ndarray, eps: float, spread: Spread, limits: Tuple[np.ndarray, ...], dj: np.ndarray,
             qi: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """The pairs that could still be in a top-k: the near documents' screen hits and the far ones' every query."""
        (moved, cut, far, _, _), (_, lb_b, lb_c) = spread, limits
        if len(far):
            keep_near = moved[dj] <= cut
            dj = np.concatenate([dj[keep_near], np.repeat(far, len(self.dq))])
            qi = np.concatenate([qi[keep_near], np.tile(np.arange(len(self.dq)), len(far))])
        est = scores[dj, qi].astype(np.float64)
        keep = (est + eps >= lb_b[qi]) | (est + eps + self.dq[qi] + moved[dj] >= lb_c[qi])
        return dj[keep], qi[keep]

    def store(self, qc: list, qi: np.ndarray, dj: np.ndarray, sb: np.ndarray, positions: np.ndarray,
              raw_base: np.ndarray, cand: np.ndarray, mask: Mask) -> None:
        """Keep the picked pairs with both exact scores (``sb``: the baseline's; candidate rows: ``cand`` where
        ``mask``, else ``raw_base``)."""
        cols, col_of = np.unique(dj, return_inverse=True)
        qc[:] = qc or [unit_rows(self.cand_queries)]
        sc = pair_dots(qc[0], qi, unit_rows(served(raw_base, cand, mask, cols)), col_of)
        self._extend(qi, np.asarray(positions, dtype=np.int64)[cols][col_of], sb, sc)

    def _extend(self, q: np.ndarray, pos: np.ndarray, sb: np.ndarray, sc: np.ndarray) -> None:
        self.pool_q, self.pool_pos = np.concatenate([self.pool_q, q]), np.concatenate([self.pool_pos, pos])
        self.pool_sb, self.pool_sc = np.concatenate([self.pool_sb, sb]), np.concatenate([self.pool_sc, sc])
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
            self.pool_q, self.pool_pos, self.pool_sb, self.pool_sc = (
                a[keep] for a in (self.pool_q, self.pool_pos, self.pool_sb, self.pool_sc))
            self.counts = np.bincount(self.pool_q, minlength=len(self.counts)).astype(np.int64)

    def merge(self, other: _Tile) -> None:
        """Fold in another instance's pools (same queries, other documents)."""
        self.kth_b, self.kth_c = np.maximum(self.kth_b, other.kth_b), np.maximum(self.kth_c, other.kth_c)
        self._extend(other.pool_q, other.pool_pos, other.pool_sb, other.pool_sc)

    def _sorted(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Pool indices of each query's best ``k`` by the baseline and by the candidate (ties by position)."""
        starts = (np.cumsum(self.counts) - self.counts)[:, None] + np.arange(k)[None, :]
        by_b, by_c = (np.lexsort((self.pool_pos, -side, self.pool_q))[starts] for side in (self.pool_sb, self.pool_sc))
        return by_b, by_c

    def baseline_top(self) -> tuple[np.ndarray, np.ndarray]:
        by_b = self._sorted(int(min(self.k, self.counts.min(initial=self.k))))[0]
        return self.pool_pos[by_b], self.pool_sb[by_b]

    def agreement(self, k: int) -> TopKAgreement:
        """``topk_agreement`` over every document added (needs at least k documents)."""
        if len(self.counts) and self.counts.min() < k:
            raise ValueError(f"TopKStream: a query has {self.counts.min()} documents in its pool, fewer than k={k}")
        by_b, by_c = self._sorted(k)
        return topk_agreement_from_lists(self.pool_pos[by_b], self.pool_pos[by_c], self.pool_sb[by_c],
                                         self.pool_sb[by_b[:, -1]], k, self.tie_tolerance)
