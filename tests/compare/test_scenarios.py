"""The retrieval scenarios (harness.compare.scenarios, computed in the verdict's pass by kinds.retrieval)
against a numpy brute-force oracle and against their former separate passes (tests/oracles.scenarios_apart),
with ties, duplicate vectors and query batches, and the advice they give."""

from __future__ import annotations

from typing import Tuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.compare.kinds import ArrayPair, judge_embeddings
from harness.compare.kinds.embedding import ScenarioRequest
from harness.compare.metrics import TopKAgreement
from harness.compare.scenarios import Scenario, decide, rolled
from harness.config.environment import CompareSettings
from harness.config.policy import Tolerance
from tests.compare.test_scale_topk import brute_certificate
from tests.oracles import retrieval_scenarios, scenarios_apart

PROPERTY = settings(max_examples=60, deadline=None)


def oracle(base_q: np.ndarray, serve_q: np.ndarray, base_d: np.ndarray, serve_d: np.ndarray, k: int,
           tie: float) -> Tuple[np.ndarray, np.ndarray]:
    """Every query scored against every document in float64: the baseline's top-k by (score desc, position),
    the served one likewise; same set: nothing served that the baseline scored below its k-th (minus tie);
    same order: that, and the served list never rising (beyond tie) under the baseline's scores."""
    def unit(a: np.ndarray) -> np.ndarray:
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-30)

    sb = np.einsum("ik,jk->ij", unit(base_q), unit(base_d))
    sc = np.einsum("ik,jk->ij", unit(serve_q), unit(serve_d))
    same_order, same_set = [], []
    for q in range(len(sb)):
        pos = np.arange(sb.shape[1])
        top_b = np.lexsort((pos, -sb[q]))[:k]
        top_c = np.lexsort((pos, -sc[q]))[:k]
        walked = sb[q][top_c]
        in_set = bool((walked >= sb[q][top_b[-1]] - tie).all())
        same_set.append(in_set)
        same_order.append(in_set and bool((np.diff(walked) <= tie).all()))
    return np.array(same_order, dtype=bool), np.array(same_set, dtype=bool)


@st.composite
def corpora(draw: st.DrawFn) -> dict:
    """Small integer vectors (exact ties), some documents duplicated, candidates moved on some rows only."""
    dim = draw(st.integers(2, 4))
    n_docs, n_q = draw(st.integers(1, 14)), draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    docs = rng.integers(-2, 3, size=(n_docs, dim)).astype(np.float64)
    dup = rng.random(n_docs) < 0.3
    docs[dup] = docs[rng.integers(0, n_docs, size=int(dup.sum()))]
    queries = rng.integers(-2, 3, size=(n_q, dim)).astype(np.float64)
    for rows in (docs, queries):
        rows[~rows.any(axis=1), 0] = 1.0
    scale = draw(st.sampled_from([0.0, 1e-7, 0.05, 0.5]))
    moved_d = docs + scale * rng.standard_normal(docs.shape) * (rng.random((n_docs, 1)) < 0.5)
    moved_q = queries + scale * rng.standard_normal(queries.shape)
    return {"bq": queries, "cq": moved_q, "bd": docs, "cd": moved_d, "ids": [f"d{i}" for i in range(n_docs)],
            "k": draw(st.integers(1, n_docs)), "tie": draw(st.sampled_from([0.0, 1e-6, 0.1])),
            "share": draw(st.sampled_from([0.0, 0.3, 0.5, 1.0]))}


def _check(c: dict, scenarios: Tuple[Scenario, ...]) -> None:
    done = rolled(c["ids"], c["share"])
    served = {"reembed": c["cd"], "keep_index": c["bd"], "rolling": np.where(done[:, None], c["cd"], c["bd"])}
    assert [s.key for s in scenarios] == ["reembed", "keep_index", "rolling"]
    for s in scenarios:
        assert s.agreement is not None
        order, same = oracle(c["bq"], c["cq"], c["bd"], served[s.key], c["k"], c["tie"])
        assert s.agreement.same_set.tolist() == same.tolist(), s.key
        assert s.agreement.same_order.tolist() == order.tolist(), s.key


@PROPERTY
@given(c=corpora())
def test_scenarios_equal_the_brute_force_oracle(c: dict) -> None:
    _check(c, retrieval_scenarios(c["bq"], c["cq"], c["bd"], c["cd"], c["ids"], c["k"], c["tie"], c["share"]))


def _lists(scenarios: Tuple[Scenario, ...]) -> list:
    return [(s.key, *(getattr(s.agreement, f).tolist() for f in ("same_order", "same_set", "overlap",
                                                                  "raw_same_order"))) for s in scenarios]


@PROPERTY
@given(c=corpora(), block=st.integers(1, 5), batch=st.integers(1, 4), budget=st.sampled_from([0, 512]))
def test_one_pass_equals_the_former_separate_passes(c: dict, block: int, batch: int, budget: int) -> None:
    """Any query batches (a budget of 0 MB: ``batch`` queries a pass), any blocks: the shared screening product
    gives every list the separate streams gave."""
    settings = CompareSettings(memory_mb=budget, min_queries_per_pass=batch)
    one = retrieval_scenarios(c["bq"], c["cq"], c["bd"], c["cd"], c["ids"], c["k"], c["tie"], c["share"], settings)
    apart = scenarios_apart(c["bq"], c["cq"], c["bd"], c["cd"], c["ids"], c["k"], c["tie"], c["share"], block, batch)
    assert _lists(one) == _lists(apart)


@pytest.mark.parametrize("seed, n_docs, nq, dim, dtype", [(0, 300, 23, 8, np.float32), (1, 1000, 40, 16, np.float64),
                                                          (2, 50, 7, 4, np.float16)])
def test_query_batches_give_the_same_scenarios_as_one_pass(seed: int, n_docs: int, nq: int, dim: int,
                                                           dtype: type) -> None:
    """More queries than one pass holds (a tiny budget, a batch floor of 5): several passes, the same answer,
    as the former separate passes gave it."""
    rng = np.random.default_rng(seed)
    bd = rng.standard_normal((n_docs, dim)).astype(dtype)
    bd[1::7] = bd[0]  # duplicate documents: exact ties
    cd = (bd + 0.003 * rng.standard_normal(bd.shape)).astype(dtype)
    bq = rng.standard_normal((nq, dim)).astype(dtype)
    cq = (bq + 0.003 * rng.standard_normal(bq.shape)).astype(dtype)
    ids = [str(i) for i in range(n_docs)]
    whole = retrieval_scenarios(bq, cq, bd, cd, ids, 10, 1e-6)
    cut = retrieval_scenarios(bq, cq, bd, cd, ids, 10, 1e-6, settings=CompareSettings(memory_mb=0, min_queries_per_pass=5))
    assert _lists(whole) == _lists(cut) == _lists(scenarios_apart(bq, cq, bd, cd, ids, 10, 1e-6, block=64))
    assert 0 < whole[0].share("same_order") < 1  # the perturbation really reorders some queries
    assert whole[1].share("same_order") != whole[0].share("same_order") or whole[2].share("same_set") < 1


@pytest.mark.parametrize("certified, far", [(False, False), (True, False), (True, True)])
def test_the_reembed_scenario_is_the_verdicts_topk_agreement(certified: bool, far: bool) -> None:
    """Re-embedding everything is what the verdict judges: the same lists, with or without the certificate
    (which decides most queries of every scenario without scoring them), with documents that moved far (scored
    against every query: only where the rolling re-embed serves them)."""
    rng = np.random.default_rng(5)
    base = rng.standard_normal((530, 12)).astype(np.float32)
    cand = base + np.float32(0.003) * rng.standard_normal(base.shape).astype(np.float32)
    if far:
        cand[[3, 77, 200]] += np.float32(0.5)
    roles = np.array(["document"] * 500 + ["query"] * 30)
    ids = [f"t{i:04d}" for i in range(530)]
    tol = Tolerance(name="t", atol=1.0, rtol=0.0, min_cosine=-1.0, topk=10, tie_tolerance=1e-6)
    cert = brute_certificate(base, np.arange(500, 530), np.arange(500), 10) if certified else None
    settings = CompareSettings(memory_mb=0, min_queries_per_pass=8)  # four query batches
    verdict = judge_embeddings("m", tol, ArrayPair(ids, roles, base, cand, settings=settings), certificate=cert,
                               scenarios=ScenarioRequest())
    assert verdict.scenarios is not None and ((verdict.evidence.topk.certified or 0) > 0) == certified
    reembed = {s.key: s for s in verdict.scenarios.items}["reembed"]
    assert (reembed.same_order, reembed.same_set) == (verdict.metrics.topk_order_agreement,
                                                      verdict.metrics.topk_set_agreement)
    expected = retrieval_scenarios(base[500:], cand[500:], base[:500], cand[:500], ids[:500], 10, 1e-6)
    assert [(s.key, s.same_order, s.same_set) for s in verdict.scenarios.items[:3]] == \
        [(s.key, s.share("same_order"), s.share("same_set")) for s in expected]
    assert 0 < reembed.same_order < 1  # the move really reorders some queries


def test_rolled_is_a_stable_hash_share() -> None:
    ids = [f"doc-{i}" for i in range(20000)]
    half = rolled(ids, 0.5)
    assert abs(half.mean() - 0.5) < 0.02
    assert (rolled(ids[::-1], 0.5) == half[::-1]).all()  # by id, not by position
    assert (rolled(ids, 0.7) >= half).all()  # a larger share re-embeds a superset
    assert not rolled(ids, 0.0).any() and rolled(ids, 1.0).all()


def _scenario(key: str, order: float, same: float) -> Scenario:
    n = 100
    agree = TopKAgreement(k=10, same_order=np.arange(n) < order * n, same_set=np.arange(n) < same * n,
                          overlap=np.ones(n), raw_same_order=np.arange(n) < order * n)
    return Scenario(key, key, agree)


@pytest.mark.parametrize("keep, reembed, advice, on", [
    ((0.95, 0.99), (0.97, 1.0), "keep your index", "keep_index"),
    ((0.80, 0.99), (0.97, 1.0), "re-embed", "reembed"),
    ((0.80, 0.99), (0.85, 0.90), "neither is within the policy", "reembed"),
])
def test_decide_prefers_keeping_the_index_within_the_policy(keep: tuple, reembed: tuple, advice: str,
                                                            on: str) -> None:
    tol = Tolerance(name="t", min_topk_order_agreement=0.9, min_topk_set_agreement=0.95)
    decision = decide([_scenario("reembed", *reembed), _scenario("keep_index", *keep)], tol)
    assert (decision.advice, decision.scenario) == (advice, on)
    chosen = reembed if on == "reembed" else keep
    assert decision.order_margin == pytest.approx(chosen[0] - 0.9)
    assert decision.set_margin == pytest.approx(chosen[1] - 0.95)


def test_a_scenario_not_run_is_never_within_the_policy() -> None:
    tol = Tolerance(name="t", min_topk_order_agreement=0.0, min_topk_set_agreement=0.0)
    skipped = Scenario("index", "index", None, reason="faiss is not installed")
    assert not skipped.ran and not skipped.within(tol) and np.isnan(skipped.share("same_order"))
