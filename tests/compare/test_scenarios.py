"""The retrieval scenarios (harness.compare.scenarios) against a numpy brute-force oracle, with ties and
duplicate vectors, and the advice they give."""

from __future__ import annotations

from typing import Tuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.compare.metrics import TopKAgreement
from harness.compare.policy import Tolerance
from harness.compare.scenarios import Scenario, decide, retrieval_scenarios, rolled, scenarios_over
from harness.compare.stats import TopKStream
from harness.config.environment import CompareSettings

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


@PROPERTY
@given(c=corpora(), block=st.integers(1, 5), order=st.randoms(use_true_random=False))
def test_any_blocks_in_any_order_give_the_same_scenarios(c: dict, block: int, order: object) -> None:
    n = len(c["bd"])
    starts = list(range(0, n, block))
    order.shuffle(starts)  # type: ignore[attr-defined]

    def blocks():  # type: ignore[no-untyped-def]
        for s in starts:
            e = min(n, s + block)
            yield np.arange(s, e), c["ids"][s:e], c["bd"][s:e], c["cd"][s:e]

    _check(c, scenarios_over(blocks, c["bq"], c["cq"], c["k"], c["tie"], c["share"]))


def test_query_batches_give_the_same_scenarios_as_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """More queries than one pass holds (a tiny budget, a batch floor of 5): several passes, the same answer."""
    rng = np.random.default_rng(3)
    bd = rng.standard_normal((300, 8)).astype(np.float32)
    cd = bd + 0.003 * rng.standard_normal(bd.shape).astype(np.float32)
    bq = rng.standard_normal((23, 8)).astype(np.float32)
    cq = bq + 0.003 * rng.standard_normal(bq.shape).astype(np.float32)
    ids = [str(i) for i in range(300)]
    whole = retrieval_scenarios(bq, cq, bd, cd, ids, 10, 1e-6)
    import harness.compare.scenarios as scenarios

    passes = []
    monkeypatch.setattr(scenarios, "TopKStream", lambda *a, **kw: passes.append(a) or TopKStream(*a, **kw))
    cut = retrieval_scenarios(bq, cq, bd, cd, ids, 10, 1e-6, settings=CompareSettings(memory_mb=0, min_queries_per_pass=5))
    assert len(passes) == 3 * 5  # 23 queries in batches of 5, three scenarios each
    for a, b in zip(whole, cut):
        assert a.agreement is not None and b.agreement is not None
        assert a.agreement.same_order.tolist() == b.agreement.same_order.tolist()
        assert a.agreement.same_set.tolist() == b.agreement.same_set.tolist()
    assert 0 < whole[0].share("same_order") < 1  # the perturbation really reorders some queries


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
    assert advice in decision.text


def test_a_scenario_not_run_is_never_within_the_policy() -> None:
    tol = Tolerance(name="t", min_topk_order_agreement=0.0, min_topk_set_agreement=0.0)
    skipped = Scenario("index", "index", None, reason="faiss is not installed")
    assert not skipped.ran and not skipped.within(tol) and np.isnan(skipped.share("same_order"))
