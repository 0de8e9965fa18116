"""Unit tests of the pure metric functions, on hand-made arrays whose answers are known."""

from __future__ import annotations

import numpy as np

from harness.compare import metrics as m

import oracles


def test_element_stats_known_values() -> None:
    base = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    cand = base + np.array([[0.0, 0.5], [0.0, -1.0]], dtype=np.float32)
    stats = oracles.element_stats(base, cand)
    assert stats.max_abs == 1.0
    assert stats.mean_abs == 0.375
    assert stats.max_rel == 0.25
    assert stats.argmax_row == 1


def test_row_cosine_identical_orthogonal_and_zero() -> None:
    a = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    b = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    np.testing.assert_allclose(m.row_cosine(a, b), [1.0, 0.0, 1.0])


def test_kendall_tau_and_swaps() -> None:
    x = np.array([0.9, 0.5, 0.1])
    assert m.rank_changes(x, x, 1e-6) == (1.0, 0, None)
    assert m.rank_changes(x, -x, 1e-6)[0] == -1.0
    # a near-tie that swaps is noise; a real swap is counted, and named (the higher item first)
    near = np.array([0.5, 0.5000001, 0.1])
    assert m.rank_changes(np.array([0.5000001, 0.5, 0.1]), near, tie_tolerance=1e-6)[1:] == (0, None)
    assert m.rank_changes(x, np.array([0.4, 0.5, 0.1]), tie_tolerance=1e-6)[1:] == (1, (0, 1))


def test_topk_agreement_order_set_and_ties() -> None:
    base = np.array([[0.9, 0.8, 0.7, 0.1], [0.9, 0.8, 0.7, 0.1]])
    swapped = np.array([[0.8, 0.9, 0.7, 0.1], [0.9, 0.8, 0.1, 0.7]])
    agree = m.topk_agreement(base, swapped, k=3, tie_tolerance=1e-6)
    assert agree.same_order.tolist() == [False, False]
    assert agree.same_set.tolist() == [True, False]
    assert agree.overlap.tolist() == [1.0, 2 / 3]
    tied = np.array([[0.9, 0.8, 0.7, 0.7 - 1e-8]])
    moved = np.array([[0.9, 0.8, 0.7 - 1e-8, 0.7]])
    near = m.topk_agreement(tied, moved, k=3, tie_tolerance=1e-6)
    assert near.same_order.tolist() == [True] and near.same_set.tolist() == [True]
    assert near.raw_same_order.tolist() == [False]


def test_align_reorders_and_reports_missing() -> None:
    base = np.array(["a", "b", "c"])
    cand = np.array(["c", "a", "x"])
    bi, ci, only_b, only_c = m.align(base, cand)
    assert base[bi].tolist() == ["a", "c"] and cand[ci].tolist() == ["a", "c"]
    assert only_b.tolist() == ["b"] and only_c.tolist() == ["x"]


def test_worst_texts_are_decided_by_exact_values_where_float32_maxima_tie() -> None:
    """|d| rounded to float32 ties at 0.5 for every row; the exact ones differ (0.5 + 7.45e-9 for the last row).
    Found by the arrays-vs-files property test: the worst texts must be the exact worst, whatever the row order."""
    from harness.compare import kinds
    from harness.config.policy import load_policy

    # tiny rows, not zeros (a baseline row of zeros is bad input): their |d| still rounds to 0.5 in float32
    base = np.array([[0.999], [1e-9], [2e-9], [3e-9], [4e-9], [-0.05116857]], dtype=np.float32)
    cand = base + np.float32(0.5)
    tol = load_policy().tolerance("x", "fp32")
    verdict = kinds.judge_embeddings("x", tol, kinds.ArrayPair([f"t{i}" for i in range(6)], None, base, cand))
    exact = np.abs(cand.astype(np.float64) - base.astype(np.float64))[:, 0]
    expected = [f"t{i}" for i in sorted(range(6), key=lambda i: (-exact[i], i))[:5]]
    assert [o.item_id for o in verdict.offenders] == expected
    assert "t5" in expected
