"""Properties of the comparator that must hold for every input (hypothesis), on small synthetic results files
written with ``write_results`` and on the pure metric functions of ``harness.compare.metrics``.

* identical inputs always pass, whatever the row order;
* the verdict is symmetric where the rules are: rtol = 0 and tie_tolerance = 0 (a relative check divides by
  the baseline, and a tie tolerance is measured on the baseline's scores, so those are not symmetric);
* one element moved by at least 2 * atol always fails; moves below atol / 2 never fail the element check;
* one judge: arrays (``harness.compare.kinds`` over an ``ArrayPair``, and the assertions) and results files
  (``compare_files``) get the same verdict, evidence included, whatever the inputs and the files' row order.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from harness.assertions import assert_embeddings_close, assert_rerank_stable
from harness.compare import kinds
from harness.compare import metrics as m
from harness.compare.comparator import compare_files
from harness.config.policy import Policy, load_policy
from harness.results import ModelRows, write_results
from harness.verdict import ModelVerdict, Status

import oracles

PROPERTY = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FAST = settings(max_examples=100, deadline=None)

ATOL = 1e-5  # the default fp32 class
# Values a model can emit (|x| <= 10): float32 spacing there is <= 9.5e-7, far below atol.
VALUE = st.floats(-10, 10, allow_nan=False, width=32)


def _policy(**overrides: float) -> Policy:
    """The default policy with one class, ``prop``: the fp32 limits with rtol 0 and the given overrides."""
    base = load_policy()
    values = base.classes["fp32"].model_copy(update={"rtol": 0.0, "score_rtol": 0.0, **overrides})
    return Policy(source="property test", default_class="prop", classes={**base.classes, "prop": values}, models={})


@st.composite
def runs(draw: st.DrawFn, queries: bool = True) -> dict:
    """One run's worth of arrays: a bi-encoder (documents, maybe queries) and a cross-encoder."""
    dim = draw(st.integers(1, 12))
    n_docs = draw(st.integers(1, 12))
    n_q = draw(st.integers(1, 3)) if queries else 0
    vectors = draw(hnp.arrays(np.float32, (n_docs + n_q, dim), elements=VALUE))
    vectors[~vectors.any(axis=1), 0] = 1.0  # a baseline row of zeros is bad input (tests/contracts/test_exit_contract.py)
    n_pairs = draw(st.integers(1, 10))
    scores = draw(hnp.arrays(np.float32, (n_pairs,), elements=VALUE))
    pair_queries = draw(st.lists(st.sampled_from(["qa", "qb"]), min_size=n_pairs, max_size=n_pairs))
    return {
        "ids": [f"d{i}" for i in range(n_docs)] + [f"q{i}" for i in range(n_q)],
        "roles": ["document"] * n_docs + ["query"] * n_q,
        "vectors": vectors,
        "pairs": [f"{q}|p{i}" for i, q in enumerate(pair_queries)],
        "pair_queries": pair_queries,
        "scores": scores,
    }


def _canonical(run: dict) -> dict:
    """The run in the order results files store it (texts by id, pairs by query then passage): the order the
    file judge reads the baseline in, so positions and ties among equals name the same rows as the arrays."""
    o = sorted(range(len(run["ids"])), key=lambda i: run["ids"][i])
    po = sorted(range(len(run["pairs"])), key=lambda i: (run["pair_queries"][i], run["pairs"][i].split("|")[1]))
    return {"ids": [run["ids"][i] for i in o], "roles": [run["roles"][i] for i in o], "vectors": run["vectors"][o],
            "pairs": [run["pairs"][i] for i in po], "pair_queries": [run["pair_queries"][i] for i in po],
            "scores": run["scores"][po]}


def _write(path: Path, run: dict, vectors: Optional[np.ndarray] = None, scores: Optional[np.ndarray] = None,
           order: Optional[np.ndarray] = None, pair_order: Optional[np.ndarray] = None) -> Path:
    vectors = run["vectors"] if vectors is None else vectors
    scores = run["scores"] if scores is None else scores
    o = np.arange(len(run["ids"])) if order is None else order
    po = np.arange(len(run["pairs"])) if pair_order is None else pair_order
    meta = {
        "corpus": {"name": "prop", "sha256": "p" * 64},
        "fingerprint": {"device_type": "cpu", "dtype": "float32"},
        "models": {
            "bi": {"kind": "bi-encoder", "status": "ok", "dim": int(vectors.shape[1]), "vector_dtype": "float32"},
            "ce": {"kind": "cross-encoder", "status": "ok"},
        },
    }
    ids, roles = np.array(run["ids"]), np.array(run["roles"])
    pairs, pq_ids = np.array(run["pairs"]), np.array(run["pair_queries"])
    rows = [
        ModelRows("bi", "embed", list(ids[o]), roles=list(roles[o]), vectors=vectors[o]),
        ModelRows("ce", "rerank", list(pairs[po]), query_ids=list(pq_ids[po]), passage_ids=[p.split("|")[1] for p in pairs[po]],
                  scores=scores[po], ranks=np.arange(1, len(po) + 1, dtype=np.int32)),
    ]
    return write_results(path, rows, meta)


@contextmanager
def _tmp() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="harness-prop-") as name:
        yield Path(name)


def _check(comparison, model: str, name: str) -> bool:  # noqa: ANN001
    verdict = next(v for v in comparison.models if v.model_id == model)
    return next(c.passed for c in verdict.checks if c.name == name)


# -- results files through the comparator ---------------------------------------------------------------------


@PROPERTY
@given(run=runs(), data=st.data())
def test_identical_inputs_always_pass_in_any_row_order(run: dict, data: st.DataObject) -> None:
    order = np.array(data.draw(st.permutations(range(len(run["ids"])))))
    pair_order = np.array(data.draw(st.permutations(range(len(run["pairs"])))))
    with _tmp() as tmp:
        a = _write(tmp / "a.parquet", run)
        b = _write(tmp / "b.parquet", run, order=order, pair_order=pair_order)
        for x, y in ((a, a), (a, b), (b, a)):
            comparison = compare_files(x, y)
            assert comparison.status is Status.PASS, comparison.serialize()
            assert all(v.metrics.max_abs_diff == 0 for v in comparison.models)


@PROPERTY
@given(run=runs(), data=st.data())
def test_verdict_is_symmetric_with_rtol_0_and_no_tie_tolerance(run: dict, data: st.DataObject) -> None:
    n, dim = run["vectors"].shape
    deltas = data.draw(hnp.arrays(np.float32, (n, dim), elements=st.sampled_from([0.0, 3e-6, -3e-6, 4e-5, -4e-5, 0.5])))
    score_deltas = data.draw(hnp.arrays(np.float32, run["scores"].shape, elements=st.sampled_from([0.0, 3e-6, -4e-5, 0.5])))
    policy = _policy(tie_tolerance=0.0)
    with _tmp() as tmp:
        a = _write(tmp / "a.parquet", run)
        b = _write(tmp / "b.parquet", run, vectors=run["vectors"] + deltas, scores=run["scores"] + score_deltas)
        forward, backward = compare_files(a, b, policy), compare_files(b, a, policy)
    for f, r in zip(forward.models, backward.models):
        checks_f = {c.name: c.passed for c in f.checks if "topk" not in c.name and not c.name.startswith("top")}
        checks_r = {c.name: c.passed for c in r.checks if "topk" not in c.name and not c.name.startswith("top")}
        assert checks_f == checks_r, (f.model_id, checks_f, checks_r)
    if all(r == "document" for r in run["roles"]):  # no retrieval check: the whole verdict is symmetric
        assert forward.status is backward.status


@PROPERTY
@given(run=runs(), data=st.data())
def test_one_element_moved_by_2_atol_or_more_always_fails(run: dict, data: st.DataObject) -> None:
    n, dim = run["vectors"].shape
    row, col = data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, dim - 1))
    delta = data.draw(st.floats(2 * ATOL, 1.0)) * data.draw(st.sampled_from([1.0, -1.0]))
    moved = run["vectors"].copy()
    moved[row, col] = np.float32(float(moved[row, col]) + delta)
    assert abs(float(moved[row, col]) - float(run["vectors"][row, col])) > ATOL  # representable as float32
    k = data.draw(st.integers(0, len(run["scores"]) - 1))
    scores = run["scores"].copy()
    scores[k] = np.float32(float(scores[k]) + delta)
    with _tmp() as tmp:
        a = _write(tmp / "a.parquet", run)
        b = _write(tmp / "b.parquet", run, vectors=moved, scores=scores)
        comparison = compare_files(a, b)
    assert comparison.status is Status.FAIL
    assert not _check(comparison, "bi", "max_abs_diff")
    assert not _check(comparison, "ce", "max_score_diff")
    bi = next(v for v in comparison.models if v.model_id == "bi")
    assert bi.metrics.elements_beyond_tolerance == 1 and bi.offenders[0].item_id == run["ids"][row]


@PROPERTY
@given(run=runs(), data=st.data())
def test_moves_below_half_atol_never_fail_the_element_checks(run: dict, data: st.DataObject) -> None:
    n, dim = run["vectors"].shape
    half = st.floats(-ATOL / 2, ATOL / 2)
    # added in float64, rounded once to float32: at most half a float32 spacing (<= 4.8e-7 here) more than atol/2
    moved = (run["vectors"] + data.draw(hnp.arrays(np.float64, (n, dim), elements=half))).astype(np.float32)
    scores = (run["scores"] + data.draw(hnp.arrays(np.float64, run["scores"].shape, elements=half))).astype(np.float32)
    with _tmp() as tmp:
        a = _write(tmp / "a.parquet", run)
        b = _write(tmp / "b.parquet", run, vectors=moved, scores=scores)
        comparison = compare_files(a, b)
    assert _check(comparison, "bi", "max_abs_diff")
    assert _check(comparison, "ce", "max_score_diff")


# -- one judge: the array path and the file path ---------------------------------------------------------------


def _same_verdict(by_file: ModelVerdict, by_arrays: ModelVerdict) -> None:
    """Equal in everything but speed (files only) and sums taken in another order (two streaming threads)."""
    assert by_file.status is by_arrays.status
    assert by_file.checks == by_arrays.checks
    assert by_file.offenders == by_arrays.offenders
    assert by_file.min_passing == by_arrays.min_passing
    assert by_file.evidence == by_arrays.evidence
    assert by_file.tolerance_class == by_arrays.tolerance_class and by_file.reason == by_arrays.reason
    got, want = by_file.metrics.to_json(), by_arrays.metrics.to_json()
    assert set(got) == set(want)
    for key, value in got.items():
        if key == "mean_abs_diff":
            assert value == pytest.approx(want[key], rel=1e-9, abs=1e-300)
        else:
            assert value == want[key], key


def _raises(check: Callable[[], None]) -> bool:
    try:
        check()
    except AssertionError:
        return True
    return False


@PROPERTY
@given(run=runs(), data=st.data())
def test_arrays_and_files_get_one_verdict(run: dict, data: st.DataObject) -> None:
    run = _canonical(run)
    n, dim = run["vectors"].shape
    deltas = data.draw(hnp.arrays(np.float32, (n, dim), elements=st.sampled_from([0.0, 3e-6, -3e-6, 4e-5, -4e-5, 0.5])))
    score_deltas = data.draw(hnp.arrays(np.float32, run["scores"].shape, elements=st.sampled_from([0.0, 3e-6, -4e-5, 0.5])))
    order = np.array(data.draw(st.permutations(range(n))))
    pair_order = np.array(data.draw(st.permutations(range(len(run["pairs"])))))
    vectors, scores = run["vectors"] + deltas, run["scores"] + score_deltas
    policy = _policy()
    with _tmp() as tmp:
        a = _write(tmp / "a.parquet", run)
        b = _write(tmp / "b.parquet", run, vectors=vectors, scores=scores, order=order, pair_order=pair_order)
        by_file = {v.model_id: v for v in compare_files(a, b, policy).models}
    tol = policy.tolerance("bi", "prop")
    bi = kinds.judge_embeddings("bi", tol, kinds.ArrayPair(run["ids"], run["roles"], run["vectors"], vectors))
    ce = kinds.judge_rerank("ce", tol, run["pairs"], run["pair_queries"], run["scores"], scores)
    _same_verdict(by_file["bi"], bi)
    _same_verdict(by_file["ce"], ce)
    # and the assertions on the same arrays decide alike
    assert _raises(lambda: assert_embeddings_close(vectors, run["vectors"], policy, model_id="bi", ids=run["ids"],
                                                   roles=run["roles"])) is (bi.status is Status.FAIL)
    assert _raises(lambda: assert_rerank_stable(scores, run["scores"], run["pair_queries"], policy, model_id="ce",
                                                ids=run["pairs"])) is (ce.status is Status.FAIL)


@PROPERTY
@given(precision=st.sampled_from(["binary", "int8"]), n_docs=st.integers(1, 15), n_q=st.integers(0, 3),
       width=st.integers(1, 6), data=st.data())
def test_quantized_arrays_and_files_get_one_verdict(precision: str, n_docs: int, n_q: int, width: int,
                                                     data: st.DataObject) -> None:
    n = n_docs + n_q
    base = data.draw(hnp.arrays(np.int8, (n, width)))
    moves = data.draw(hnp.arrays(np.int8, (n, width), elements=st.sampled_from([0, 0, 0, 1, -1, 4])))
    cand = (base ^ moves) if precision == "binary" else np.clip(base.astype(np.int16) + moves, -128, 127).astype(np.int8)
    ids, roles = [f"t{i:02d}" for i in range(n)], ["document"] * n_docs + ["query"] * n_q  # in canonical order
    order = np.array(data.draw(st.permutations(range(n))))
    meta = {"corpus": {"name": "prop", "sha256": "p" * 64}, "fingerprint": {"device_type": "cpu"},
            "models": {"q": {"kind": "bi-encoder", "status": "ok", "dim": width, "vector_dtype": "int8",
                             "precision": precision}}}
    policy = _policy()
    with _tmp() as tmp:
        a = write_results(tmp / "a.parquet", [ModelRows("q", "embed", ids, roles=roles, vectors=base)], meta)
        b = write_results(tmp / "b.parquet", [ModelRows("q", "embed", list(np.array(ids)[order]),
                                                        roles=list(np.array(roles)[order]), vectors=cand[order])], meta)
        by_file = compare_files(a, b, policy).models[0]
    by_arrays = kinds.judge_embeddings("q", policy.tolerance("q", "prop"), kinds.ArrayPair(ids, roles, base, cand), precision)
    _same_verdict(by_file, by_arrays)
    assert _raises(lambda: assert_embeddings_close(cand, base, policy, model_id="q", ids=ids, roles=roles,
                                                   precision=precision)) is (by_arrays.status is Status.FAIL)


# -- the pure metric functions --------------------------------------------------------------------------------

MATRIX = hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=16), elements=VALUE)
SCORES = hnp.arrays(np.float64, st.integers(1, 20), elements=st.floats(-10, 10, allow_nan=False))


@FAST
@given(a=MATRIX, data=st.data())
def test_element_stats_zero_on_identity_and_symmetric_in_abs(a: np.ndarray, data: st.DataObject) -> None:
    same = oracles.element_stats(a, a.copy())
    assert same.max_abs == same.mean_abs == same.p99_abs == same.max_rel == 0.0
    b = data.draw(hnp.arrays(np.float32, a.shape, elements=VALUE))
    assert oracles.element_stats(a, b).max_abs == oracles.element_stats(b, a).max_abs
    assert oracles.element_stats(a, b).mean_abs == pytest.approx(oracles.element_stats(b, a).mean_abs, rel=1e-12)


@FAST
@given(a=MATRIX)
def test_row_cosine_of_a_row_with_itself_is_one(a: np.ndarray) -> None:
    np.testing.assert_allclose(m.row_cosine(a, a.copy()), 1.0, atol=1e-12)
    assert (oracles.row_max_abs(a, a.copy()) == 0).all()


def test_row_cosine_with_one_zero_row_is_zero() -> None:
    base = np.array([[0.6, 0.8]], dtype=np.float32)
    zero = np.zeros((1, 2), dtype=np.float32)
    assert m.row_cosine(base, zero)[0] == 0.0 and m.row_cosine(zero, base)[0] == 0.0


@FAST
@given(x=SCORES, data=st.data())
def test_rank_metrics_identity_and_symmetry(x: np.ndarray, data: st.DataObject) -> None:
    y = data.draw(hnp.arrays(np.float64, x.shape, elements=st.floats(-10, 10, allow_nan=False)))
    assert m.rank_changes(x, y, 0.0)[0] == pytest.approx(m.rank_changes(y, x, 0.0)[0])
    assume(len(x) >= 2 and len(np.unique(x)) == len(x))
    assert m.rank_changes(x, x, 0.0)[0] == 1.0 and m.rank_changes(x, -x, 0.0)[0] == -1.0
    assert m.rank_changes(x, x.copy(), 0.0)[1] == 0
    assert m.rank_changes(x, y, 0.0)[1] == m.rank_changes(y, x, 0.0)[1]


@FAST
@given(s=hnp.arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 15)), elements=st.floats(-1, 1, allow_nan=False)),
       k=st.integers(1, 12))
def test_topk_agreement_of_scores_with_themselves(s: np.ndarray, k: int) -> None:
    agree = m.topk_agreement(s, s.copy(), k, tie_tolerance=0.0)
    assert agree.same_order.all() and agree.same_set.all() and agree.raw_same_order.all()
    assert (agree.overlap == 1.0).all()


@FAST
# no NUL: numpy's fixed-width strings drop trailing NULs ("a\x00" == "a"), ids in results files are numpy strings
@given(ids=st.lists(st.text(st.characters(blacklist_characters="\x00"), min_size=1, max_size=6), min_size=1, max_size=30,
                    unique=True), data=st.data())
def test_align_puts_both_sides_in_baseline_order(ids: List[str], data: st.DataObject) -> None:
    base = np.array(ids)
    cand = np.array(data.draw(st.permutations(ids)))
    bi, ci, only_b, only_c = m.align(base, cand)
    assert base[bi].tolist() == ids and cand[ci].tolist() == ids
    assert len(only_b) == len(only_c) == 0
    dropped = data.draw(st.integers(0, len(ids) - 1))
    bi, ci, only_b, _ = m.align(base, np.delete(cand, dropped))
    assert only_b.tolist() == [cand[dropped]] and base[bi].tolist() == np.delete(cand, dropped)[ci].tolist()
