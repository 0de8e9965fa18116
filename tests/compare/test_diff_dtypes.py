"""``DiffStats`` on every row dtype it computes in (float16 and float32 rows in float32, float64 in float64): the
row maxima and the smallest baseline magnitude are taken on the floats' bit patterns (non-negative floats order
as their bits), so a sign, a zero of either sign or a subnormal must not change what the in-memory oracle gives."""

from __future__ import annotations

import numpy as np
import pytest

from harness.compare.stats.diff import DiffStats
from tests import oracles


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("seed", range(3))
def test_streamed_statistics_equal_the_oracle_for_every_dtype(dtype: type, seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = (rng.standard_normal((700, 24)) * 0.05).astype(dtype)
    base[3, 5], base[4, 0], base[5, :] = -0.0, np.finfo(dtype).smallest_subnormal, -base[5, :]  # signs, zeros, tiny
    cand = (base.astype(np.float64) + rng.normal(0, 1e-3, base.shape)).astype(dtype)
    cand[rng.choice(700, 3, replace=False)] *= -1  # rows that flip sign: the largest differences are negative moves
    stats = DiffStats(24, dtype, 700, atol=1e-3, rtol=0.0, min_cosine=0.9, worst_n=5)
    for s in range(0, 700, 160):
        stats.add(s, base[s : s + 160], cand[s : s + 160])
    got, want = stats.summary(), oracles.element_stats(base, cand)
    assert (got.count, got.max_abs, got.max_rel, got.argmax_row) == (want.count, want.max_abs, want.max_rel,
                                                                     want.argmax_row)
    assert got.mean_abs == pytest.approx(want.mean_abs, rel=1e-9)
    rows = oracles.row_max_abs(base, cand)
    assert [w.position for w in stats.worst] == np.lexsort((np.arange(700), -rows))[:5].tolist()
    assert stats.texts_beyond == int((rows > 1e-3).sum()) > 0
