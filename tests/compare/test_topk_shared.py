"""The retrieval tracks fed together (``stats.topk.add_shared``: one comparison with the screen's scores, the move
bounds, k-th estimates and exact baseline scores computed once per block) keep, bit for bit, the pools each track
keeps when it is fed alone: sharing is an optimisation only."""

from __future__ import annotations

from typing import List

import numpy as np
import pytest

from harness.compare.stats.topk import TILE_DOC_ROWS, Fed, LazyMask, Mask, TopKStream, add_shared


def _streams(qb: np.ndarray, qc: np.ndarray) -> List[TopKStream]:
    """The verdict keeping k + 1 (as when it collects a certificate), the kept index and the rolling re-embed at k;
    tiles of 4 queries, so a block is screened per tile."""
    tile = 4 * TILE_DOC_ROWS * qb.dtype.itemsize
    return [TopKStream(qb, qc, 3, 1e-6, keep=4, tile_bytes=tile), TopKStream(qb, qc, 3, 1e-6, tile_bytes=tile),
            TopKStream(qb, qc, 3, 1e-6, tile_bytes=tile)]


@pytest.mark.parametrize("seed", range(4))
def test_shared_tracks_keep_the_pools_each_keeps_alone(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, nq, dim = 2500, 10, 24
    base = rng.standard_normal((n, dim)).astype(np.float32)
    base[rng.choice(n, 3, replace=False)] = 0  # zero rows: bounded by 2 even where nothing moves
    cand = base + rng.normal(0, 1e-3, base.shape).astype(np.float32)
    cand[rng.choice(n, 6, replace=False)] += 0.4  # a few documents that moved far: they skip the screen
    qb = rng.standard_normal((nq, dim)).astype(np.float32)
    qc = qb + rng.normal(0, 1e-3, qb.shape).astype(np.float32)
    rolled = rng.random(n) < 0.5
    bsq, dsq = np.einsum("ij,ij->i", base, base), np.einsum("ij,ij->i", cand - base, cand - base)
    together, alone = _streams(qb, qc), _streams(qb, qc)
    for s in range(0, n, 600):  # blocks of several calls: the first fills the pools from the block's own estimates
        e, positions = min(n, s + 600), np.arange(s, min(n, s + 600))
        masks: List[Mask] = [None, np.zeros(e - s, dtype=bool), LazyMask(lambda p: rolled[p], positions)]
        fed: List[Fed] = list(zip(together, masks))
        add_shared(fed, positions, base[s:e], cand[s:e], bsq[s:e], dsq[s:e])
        for stream, mask in zip(alone, masks):
            add_shared([(stream, mask)], positions, base[s:e], cand[s:e], bsq[s:e], dsq[s:e])
    for shared, single in zip(together, alone):
        assert len(shared.tiles) == 3
        for a, b in zip(shared.tiles, single.tiles):
            for field in ("pool_q", "pool_pos", "pool_sb", "pool_sc", "kth_b", "kth_c"):
                assert getattr(a, field).tobytes() == getattr(b, field).tobytes(), field
    # the tracks do differ: the kept index serves the baseline's rows, the rolling re-embed half the candidate's
    assert together[1].tiles[0].pool_sc.tobytes() != together[2].tiles[0].pool_sc.tobytes()
