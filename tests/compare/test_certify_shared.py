"""The certificate's proofs of the retrieval tracks fed together (``stats.certify.add_proofs``: each certificate
pair's exact scores computed once per segment for every track) hold, bit for bit, what each proof holds when it
is fed alone (where its candidate side's served rows are scored as rows of their own): sharing is an
optimisation only."""

from __future__ import annotations

from typing import List, Tuple

import numpy as np
import pytest

from harness.compare.stats.certify import CertifyStream, add_proofs
from harness.compare.stats.topk import LazyMask, Mask
from tests.compare.test_scale_topk import brute_certificate


def _proofs(qb: np.ndarray, qc: np.ndarray, top: np.ndarray) -> List[CertifyStream]:
    """The verdict's proof (which gathers the baseline's scores), the kept index's and the rolling re-embed's,
    over the same certificate pairs (one ``shared``, as a batch builds them)."""
    shared = CertifyStream.shared(qb, qc, top)
    return [CertifyStream(qb, qc, top, shared=shared, baseline=key == 0) for key in range(3)]


@pytest.mark.parametrize("seed", range(4))
def test_proofs_fed_together_hold_what_each_holds_alone(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, nq, dim = 1800, 12, 16
    base = rng.standard_normal((n + nq, dim)).astype(np.float32)
    cand = base + rng.normal(0, 1e-3, base.shape).astype(np.float32)
    cand[rng.choice(n, 4, replace=False)] += 0.5  # documents that moved far: scored against every query
    docs, queries = np.arange(n), np.arange(n, n + nq)
    top = brute_certificate(base, queries, docs, 5).positions
    rolled = rng.random(n) < 0.5
    bsq, dsq = np.einsum("ij,ij->i", base, base), np.einsum("ij,ij->i", cand - base, cand - base)
    together = _proofs(base[queries], cand[queries], top)
    alone = [_proofs(base[queries], cand[queries], top)[key] for key in range(3)]
    served = _proofs(base[queries], cand[queries], top)  # fed the served rows themselves, as rows of their own
    for s in range(0, n, 500):
        e, positions = min(n, s + 500), np.arange(s, min(n, s + 500))
        masks: List[Mask] = [None, np.zeros(e - s, dtype=bool), LazyMask(lambda p: rolled[p], positions)]
        fed: List[Tuple[CertifyStream, Mask]] = list(zip(together, masks))
        add_proofs(fed, positions, base[s:e], cand[s:e], bsq[s:e], dsq[s:e])
        for proof, mask in zip(alone, masks):
            add_proofs([(proof, mask)], positions, base[s:e], cand[s:e], bsq[s:e], dsq[s:e])
        for proof, take in zip(served, [np.ones(e - s, bool), np.zeros(e - s, bool), rolled[s:e]]):
            rows = np.where(take[:, None], cand[s:e], base[s:e])
            add_proofs([(proof, None)], positions, base[s:e], rows, bsq[s:e], np.where(take, dsq[s:e], 0))
    for shared, single, own in zip(together, alone, served):
        for field in ("sb", "sc", "far_best"):
            assert getattr(shared, field).tobytes() == getattr(single, field).tobytes(), field
        assert shared.near_move == single.near_move
        assert shared.sc.tobytes() == own.sc.tobytes()
    assert together[0].sb.tobytes() == served[0].sb.tobytes()
    assert not np.isnan(together[0].sb).any() and not np.isnan(together[2].sc).any()  # every pair was gathered
    # the tracks do differ: the kept index scores the baseline's documents, the rolling re-embed half the candidate's
    assert together[0].sc.tobytes() != together[1].sc.tobytes() != together[2].sc.tobytes()
    assert np.isfinite(together[0].far_best).all() and np.isneginf(together[1].far_best).all()
