"""Top-k agreement at scale: queries tiled in bounded memory, and the certified path (most queries proven by
the baseline's top-(k+1) instead of scored) giving exactly the brute-force in-memory ``topk_agreement``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from harness.compare import certify as certs
from harness.compare import metrics as m
from harness.compare import stats
from harness.compare.kinds.embedding import judge_embeddings
from harness.compare.kinds.source import ArrayPair
from harness.config.environment import CompareSettings
from harness.config.policy import Tolerance

import oracles


def _tolerance(k: int, tie: float) -> Tolerance:
    # only the retrieval limits matter here; everything else as loose as it gets
    return Tolerance(name="test", atol=1.0, rtol=0.0, min_cosine=-1.0, topk=k, tie_tolerance=tie)


def brute_certificate(base: np.ndarray, queries: np.ndarray, docs: np.ndarray, k: int) -> certs.Certificate:
    """The baseline's exact top-(k+1) by the in-memory scores (ties by position)."""
    scores = oracles.cosine_matrix(base[queries], base[docs])
    width = certs.width(k, len(docs))
    order = np.lexsort((np.broadcast_to(np.arange(len(docs)), scores.shape), -scores), axis=1)[:, :width]
    return certs.Certificate(positions=docs[order].astype(np.int64),
                             scores=np.take_along_axis(scores, order, axis=1))


def _case(seed: int, n_docs: int, nq: int, dim: int, move: float, far: float, dup: bool) -> Tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n_docs + nq, dim)).astype(np.float32)
    if dup and n_docs > 2:
        base[1 : n_docs : 3] = base[0]  # duplicate documents: exact ties
    cand = (base + rng.normal(0, move, base.shape)).astype(np.float32) if move else base.copy()
    if far:
        cand[rng.integers(0, n_docs + nq, 2)] += np.float32(far)  # a couple of rows that really moved
    roles = np.array(["document"] * n_docs + ["query"] * nq)
    return base, cand, roles


def _judge(base: np.ndarray, cand: np.ndarray, roles: np.ndarray, k: int, tie: float,
           cert: certs.Certificate | None, settings: CompareSettings | None = None) -> Dict[str, Any]:
    pair = ArrayPair([f"t{i:05d}" for i in range(len(base))], roles, base, cand, settings=settings)
    verdict = judge_embeddings("m", _tolerance(k, tie), pair, certificate=cert)
    return {"metrics": verdict.metrics.to_json(), "topk": verdict.evidence.to_json()["topk"]}


def _expected(base: np.ndarray, cand: np.ndarray, roles: np.ndarray, k: int, tie: float) -> m.TopKAgreement:
    q, d = np.flatnonzero(roles == "query"), np.flatnonzero(roles == "document")
    return m.topk_agreement(oracles.cosine_matrix(base[q], base[d]), oracles.cosine_matrix(cand[q], cand[d]), k, tie)


def _same(got: Dict[str, Any], expected: m.TopKAgreement) -> None:
    metrics = got["metrics"]
    assert metrics["topk"] == expected.k
    assert metrics["topk_order_agreement"] == expected.share("same_order")
    assert metrics["topk_set_agreement"] == expected.share("same_set")
    assert metrics["topk_raw_order_agreement"] == expected.share("raw_same_order")
    assert metrics["topk_mean_overlap"] == pytest.approx(expected.share("overlap"), abs=1e-12)
    assert got["topk"]["order_changed"]["count"] == int((~expected.same_order).sum())
    assert got["topk"]["set_changed"]["count"] == int((~expected.same_set).sum())


# Exact ties of duplicated documents (found by CI's random search): the brute force's matrix product broke them by
# an ulp, the certified path kept them; the reference now scores pair by pair (``oracles.cosine_matrix``).
@example(seed=0, n_docs=5, nq=5, dim=8, k=1, move=1e-7, far=0.0, dup=True, tie=0.0)
@example(seed=0, n_docs=5, nq=5, dim=8, k=1, move=1e-7, far=0.0, dup=True, tie=1e-7)
@example(seed=3487, n_docs=5, nq=7, dim=8, k=2, move=1e-7, far=0.0, dup=True, tie=0.0)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), n_docs=st.integers(1, 60), nq=st.integers(1, 12), dim=st.integers(2, 8),
       k=st.integers(1, 14), move=st.sampled_from([0.0, 1e-7, 1e-5, 1e-3, 0.3]),
       far=st.sampled_from([0.0, 0.0, 1e-2, 1.0]), dup=st.booleans(),
       tie=st.sampled_from([0.0, 1e-7, 1e-6, 1e-3, 0.1]))
def test_certified_path_is_the_brute_force_agreement(seed: int, n_docs: int, nq: int, dim: int, k: int, move: float,
                                                     far: float, dup: bool, tie: float) -> None:
    """Ties, tie tolerance, k > N, duplicate vectors, zero moves, large moves where nothing certifies."""
    base, cand, roles = _case(seed, n_docs, nq, dim, move, far, dup)
    docs, queries = np.flatnonzero(roles == "document"), np.flatnonzero(roles == "query")
    cert = brute_certificate(base, queries, docs, min(k, n_docs))
    got = _judge(base, cand, roles, k, tie, cert)
    _same(got, _expected(base, cand, roles, k, tie))
    assert got["topk"]["certified"] + got["topk"]["scored_exactly"] == nq


def test_small_moves_certify_nearly_every_query_and_large_ones_none() -> None:
    base, cand, roles = _case(1, 3000, 200, 16, 1e-7, 0.0, False)
    cert = brute_certificate(base, np.flatnonzero(roles == "query"), np.flatnonzero(roles == "document"), 10)
    small = _judge(base, cand, roles, 10, 1e-6, cert)
    _same(small, _expected(base, cand, roles, 10, 1e-6))
    assert small["topk"]["certified"] >= 190, small["topk"]
    base, cand, roles = _case(1, 3000, 200, 16, 3e-2, 0.0, False)
    large = _judge(base, cand, roles, 10, 1e-6, cert)
    _same(large, _expected(base, cand, roles, 10, 1e-6))
    assert large["topk"]["certified"] == 0 and large["topk"]["scored_exactly"] == 200


def test_documents_that_really_moved_are_scored_not_bounded() -> None:
    """fp32 noise everywhere, and two documents that really moved: one into query 0's top-k (only its exact
    candidate score shows it), one out of query 1's (it was in the baseline's top-k)."""
    base, cand, roles = _case(2, 3000, 200, 16, 1e-7, 0.0, False)
    docs, queries = np.flatnonzero(roles == "document"), np.flatnonzero(roles == "query")
    cert = brute_certificate(base, queries, docs, 10)
    cand[7] = base[queries[0]]  # now query 0's best match
    cand[cert.positions[1, 0]] *= -1  # query 1's best match turned away
    expected = _expected(base, cand, roles, 10, 1e-6)
    assert not expected.same_set[0] and not expected.same_set[1]
    got = _judge(base, cand, roles, 10, 1e-6, cert)
    _same(got, expected)
    assert got["topk"]["certified"] >= 180, got["topk"]


# -- bounded memory: the queries are tiled ---------------------------------------------------------------


def test_tiled_queries_give_the_untiled_agreement() -> None:
    rng = np.random.default_rng(7)
    docs = rng.standard_normal((5000, 8)).astype(np.float32)
    docs[::9] = docs[1]
    cand = (docs + rng.normal(0, 1e-3, docs.shape)).astype(np.float32)
    queries = rng.standard_normal((300, 8)).astype(np.float32)
    cand_q = (queries + rng.normal(0, 1e-4, queries.shape)).astype(np.float32)
    expected = m.topk_agreement(oracles.cosine_matrix(queries, docs), oracles.cosine_matrix(cand_q, cand), 10, 1e-6)
    tile_bytes = 16 * stats.topk.TILE_DOC_ROWS * 4  # 16 queries per tile: 19 tiles
    stream = stats.TopKStream(queries, cand_q, 10, 1e-6, tile_bytes=tile_bytes)
    assert len(stream.tiles) == 19
    d = cand - docs
    for s in range(0, 5000, 700):
        rows = np.arange(s, min(5000, s + 700))
        stream.add(rows, docs[rows], cand[rows], np.einsum("ij,ij->i", docs[rows], docs[rows]),
                   np.einsum("ij,ij->i", d[rows], d[rows]))
    got = stream.agreement()
    for field in ("same_order", "same_set", "overlap", "raw_same_order"):
        np.testing.assert_array_equal(getattr(got, field), getattr(expected, field), err_msg=field)
    positions, scores = stream.baseline_top()
    assert positions.shape == (300, 10)
    np.testing.assert_allclose(scores, np.sort(oracles.cosine_matrix(queries, docs), axis=1)[:, ::-1][:, :10], rtol=0, atol=1e-15)


# -- certificates: filed by an explicit step, read by the comparator, never trusted over the data ------------


MODEL = "scale-bi-encoder"


def _write(path: Path, vectors: np.ndarray, nq: int) -> Path:
    from harness.results import ModelRows, ResultsWriter

    n, dim = vectors.shape
    meta = {"corpus": {"name": "scale", "sha256": "d" * 64}, "fingerprint": {},
            "models": {MODEL: {"kind": "bi-encoder", "status": "ok", "dim": dim, "vector_dtype": "float32"}}}
    roles = ["document"] * (n - nq) + ["query"] * nq
    with ResultsWriter(path, meta, vector_width=dim * 4) as writer:
        writer.write(ModelRows(MODEL, "embed", [f"t{i:06d}" for i in range(n)], roles=roles, vectors=vectors))
    return path


def _compare(base: Path, cand: Path, settings: CompareSettings | None = None) -> Dict[str, Any]:
    from harness.compare.comparator import compare_files

    (model,) = [v for v in compare_files(base, cand, settings=settings).serialize()["models"]
                  if v["model_id"] == MODEL]
    return model


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HARNESS_TOPK_CERTIFY_MIN_PAIRS", "1")
    return tmp_path / "cache"


@pytest.mark.parametrize("bad, problem", [(np.nan, "non-finite vector values"), (0.0, "all-zero vectors")])
def test_certifying_a_baseline_with_rows_without_a_direction_is_refused_and_files_nothing(
        tmp_path: Path, cache: Path, bad: float, problem: str) -> None:
    from harness.certificates import file_certificates
    from harness.errors import HarnessError

    vectors = np.random.default_rng(5).standard_normal((3000, 8)).astype(np.float32)
    vectors[[17, 2500]] = bad  # a document and a query
    with pytest.raises(HarnessError, match=f"{problem}.*2 row.*t000017"):
        file_certificates(_write(tmp_path / "base.parquet", vectors, 40))
    assert not list(cache.glob("topk-certificates/*/*.npy"))


def test_certificate_is_filed_by_the_certify_step_then_used_and_a_stale_or_corrupt_one_ignored(
        tmp_path: Path, cache: Path) -> None:
    from harness.certificates import file_certificates

    rng = np.random.default_rng(3)
    nq = 60
    vectors = rng.standard_normal((20_000, 8)).astype(np.float32)
    base = _write(tmp_path / "base.parquet", vectors, nq)
    cand = _write(tmp_path / "cand.parquet", (vectors + rng.normal(0, 1e-7, vectors.shape)).astype(np.float32), nq)
    first = _compare(base, cand)
    assert (first["evidence"]["topk"]["certified"], first["evidence"]["topk"]["scored_exactly"]) == (0, nq)
    assert not cache.exists()  # the judge files nothing
    assert file_certificates(base) == [(MODEL, nq)]
    (filed,) = list((cache / "topk-certificates").glob("*/*.npy"))
    second = _compare(base, cand)
    assert second["evidence"]["topk"]["certified"] >= nq - 3
    assert second["metrics"] == first["metrics"] and second["status"] == first["status"]
    filed.write_bytes(filed.read_bytes()[:100])  # corrupt: ignored, every query scored
    third = _compare(base, cand)
    assert third["evidence"]["topk"]["certified"] == 0 and third["metrics"] == first["metrics"]
    file_certificates(base)
    assert _compare(base, cand)["evidence"]["topk"]["certified"] >= nq - 3
    # the baseline replaced by another (same path and size, documents a hair apart): the old certificate would
    # still certify nearly every query; wherever it is found, its scores are not the baseline's and it is not used
    old = filed.read_bytes()
    moved = vectors.copy()
    moved[:-nq] += rng.normal(0, 1e-7, moved[:-nq].shape).astype(np.float32)
    _write(base, moved, nq)
    for where in {filed, *cache.glob("topk-certificates/*/*.npy")}:
        where.write_bytes(old)  # even filed under the new file's key
    changed = _compare(base, cand)
    assert changed["evidence"]["topk"]["certified"] == 0
    q, d = slice(len(moved) - nq, None), slice(0, len(moved) - nq)
    cv = np.asarray(ResultsFileVectors(cand))
    expected = m.topk_agreement(oracles.cosine_matrix(moved[q], moved[d]), oracles.cosine_matrix(cv[q], cv[d]), 10, 1e-6)
    assert changed["metrics"]["topk_order_agreement"] == expected.share("same_order")
    assert changed["metrics"]["topk_set_agreement"] == expected.share("same_set")


def ResultsFileVectors(path: Path) -> np.ndarray:
    from harness.results import ResultsFile

    return ResultsFile(path).embeddings(MODEL)[2]


# -- rerank: pairwise rank metrics in bounded memory -----------------------------------------------------


def _pairwise_reference(x: np.ndarray, y: np.ndarray, tie: float) -> Tuple[float, int, Any]:
    """The whole n x n matrices at once (the metrics before they were cut into row blocks)."""
    n = len(x)
    sx, sy = np.sign(x[:, None] - x[None, :]), np.sign(y[:, None] - y[None, :])
    upper = np.triu_indices(n, 1)
    tau = float((sx[upper] * sy[upper]).sum() / len(upper[0])) if n > 1 else 1.0
    gap = x[:, None] - x[None, :]
    flipped = (sx * sy < 0) & (np.abs(gap) > tie)
    swaps = int(np.triu(flipped, 1).sum())
    if not flipped.any():
        return tau, swaps, None
    i, j = np.unravel_index(int(np.argmax(np.where(flipped, np.abs(gap), -1.0))), gap.shape)
    return tau, swaps, ((int(i), int(j)) if x[i] > x[j] else (int(j), int(i)))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(0, 90), block=st.sampled_from([1, 7, 64, 1 << 22]),
       noise=st.sampled_from([0.0, 1e-3, 1.0]), tie=st.sampled_from([0.0, 1e-2]))
def test_pairwise_rank_metrics_in_row_blocks_are_the_whole_matrix_ones(seed: int, n: int, block: int, noise: float,
                                                                       tie: float) -> None:
    rng = np.random.default_rng(seed)
    x = np.round(rng.standard_normal(n), 1)  # rounded: ties
    y = x + rng.standard_normal(n) * noise
    old = m.PAIR_BLOCK
    m.PAIR_BLOCK = block
    try:
        got = m.rank_changes(x, y, tie)
    finally:
        m.PAIR_BLOCK = old
    tau, swaps, worst = _pairwise_reference(x, y, tie)
    assert got[0] == pytest.approx(tau, abs=1e-12) and got[1] == swaps and got[2] == worst
