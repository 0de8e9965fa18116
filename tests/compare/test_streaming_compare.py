"""The streamed bi-encoder comparison gives the verdicts and metrics of a plain in-memory reference.

The reference below is the comparator as it was before streaming: whole matrices in numpy, float64 throughout.
The streamed one must agree on every check, count, offender and histogram bin, and on the floating-point
metrics to rounding (see ``harness.compare.stats.diff``: cosines of bit-identical rows are exactly 1.0 there). Inputs: real
runs of the tiny models and their perturbations, and synthetic files with several row groups, ids in another
order, row groups cut differently, queries in other row groups than documents, near-tied and duplicated
documents. No timings here: throughput lives in ``benchmarks/``.
"""

from __future__ import annotations

import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

import harness.results.schema as results_mod
from harness.compare import metrics as m
from harness.compare import stats, streaming
from harness.compare.comparator import compare_files
from harness.compare.kinds import retrieval
from harness.compare.kinds.common import WORST_N, share, significant
from harness.compare.stats import percentile as p99_module
from harness.config.environment import CompareSettings
from harness.config.policy import Tolerance, load_policy
from harness.errors import IncompatibleInputs, ResultsFileError
from harness.results import ModelRows, ResultsFile, ResultsWriter, normalize
from harness.testing import add_noise_to_one, bf16_round, perturb_results, tf32_round
from harness.verdict import Status

import oracles

BI = "tiny-bi-encoder"
SYN = "syn-bi-encoder"
EDGES = [10.0 ** e for e in range(-12, 2)]


# -- the reference: in memory, float64, exactly the pre-streaming comparator --------------------------------


_REFERENCE_CACHE: Dict[Any, Dict[str, Any]] = {}


def reference(base: Path, cand: Path, model_id: str, tol: Tolerance) -> Dict[str, Any]:
    key = (str(base), str(cand), model_id, tol)
    if key not in _REFERENCE_CACHE:
        _REFERENCE_CACHE[key] = _reference(base, cand, model_id, tol)
    return _REFERENCE_CACHE[key]


def _reference(base: Path, cand: Path, model_id: str, tol: Tolerance) -> Dict[str, Any]:
    b_ids, b_roles, b_vec = ResultsFile(base).embeddings(model_id)
    c_ids, _, c_vec = ResultsFile(cand).embeddings(model_id)
    bi, ci, only_b, only_c = m.align(b_ids, c_ids)
    assert not len(only_b) and not len(only_c)
    ids, roles, bv, cv = b_ids[bi], b_roles[bi], b_vec[bi].astype(np.float64), c_vec[ci].astype(np.float64)
    diff = np.abs(cv - bv)
    stats = oracles.element_stats(bv, cv)
    cosine = m.row_cosine(bv, cv)
    per_row = oracles.row_max_abs(bv, cv)
    n_bad = int((diff > tol.atol + tol.rtol * np.abs(bv)).sum())
    nonzero = diff[diff > 0].ravel()
    counts, _ = np.histogram(np.clip(nonzero, EDGES[0], EDGES[-1]), bins=EDGES)
    out: Dict[str, Any] = {
        "checks": {
            "max_abs_diff": (n_bad == 0, float(diff.max()),
                             f"{share(n_bad, diff.size)} elements exceed "
                             f"atol={significant(tol.atol, float(diff.max()))} + rtol={significant(tol.rtol)}*|baseline|"),
            "min_cosine": (bool((cosine >= tol.min_cosine).all()), float(cosine.min()),
                           f"{int((cosine < tol.min_cosine).sum())} / {len(cosine)} texts below cosine "
                           f"{significant(tol.min_cosine, float(cosine.min()))}"),
        },
        "metrics": {
            "texts": len(ids), "dim": bv.shape[1], "max_abs_diff": stats.max_abs, "mean_abs_diff": stats.mean_abs,
            "p99_abs_diff": stats.p99_abs, "max_rel_diff": stats.max_rel, "min_cosine": float(cosine.min()),
            "elements_beyond_tolerance": n_bad, "texts_beyond_tolerance": int((per_row > tol.atol).sum()),
            "abs_diff_histogram": {"edges": EDGES, "counts": [int(c) for c in counts],
                                   "zeros": [int((diff == 0).sum())]},
        },
        "offenders": [(str(ids[i]), float(per_row[i]), f"cosine {significant(cosine[i], tol.min_cosine)}")
                      for i in np.argsort(-per_row, kind="stable")[:WORST_N] if per_row[i] > 0],
    }
    q, d = roles == "query", roles == "document"
    if q.any() and d.any():
        agree = m.topk_agreement(oracles.cosine_matrix(bv[q], bv[d]), oracles.cosine_matrix(cv[q], cv[d]), tol.topk, tol.tie_tolerance)
        out["metrics"].update(topk=agree.k, topk_order_agreement=agree.share("same_order"),
                              topk_set_agreement=agree.share("same_set"),
                              topk_raw_order_agreement=agree.share("raw_same_order"),
                              topk_mean_overlap=agree.share("overlap"))
        n_q = int(q.sum())
        out["checks"][f"top{agree.k}_order_agreement"] = (
            agree.share("same_order") >= tol.min_topk_order_agreement, agree.share("same_order"),
            f"{n_q - int(agree.same_order.sum())} / {n_q} queries changed their top-{agree.k} order "
            f"(ties within {tol.tie_tolerance:g} ignored)")
        out["checks"][f"top{agree.k}_set_agreement"] = (
            agree.share("same_set") >= tol.min_topk_set_agreement, agree.share("same_set"),
            f"{n_q - int(agree.same_set.sum())} / {n_q} queries changed their top-{agree.k} set")
    return out


def assert_same(base: Path, cand: Path, model_id: str, tolerance_class: str = "fp32", **kwargs: Any) -> Dict[str, Any]:
    """The streamed verdict of one model equals the reference (exact where exact, rounding elsewhere)."""
    tol = load_policy().tolerance(model_id, tolerance_class)
    ref = reference(base, cand, model_id, tol)
    verdict = next(v for v in compare_files(base, cand, tolerance_class=tolerance_class, models=[model_id],
                                            **kwargs).models if v.model_id == model_id)
    got = verdict.metrics.to_json()
    exp = ref["metrics"]
    assert list(got) == list(exp)  # same keys, same order: reports depend on them
    for key in ("texts", "dim", "elements_beyond_tolerance", "texts_beyond_tolerance", "abs_diff_histogram",
                "max_abs_diff", "max_rel_diff", "p99_abs_diff", "topk", "topk_order_agreement",
                "topk_set_agreement", "topk_raw_order_agreement", "topk_mean_overlap"):
        if key in exp:
            assert got[key] == exp[key], key
    # sums in another order; |d| of elements far apart (a failing comparison) is rounded to float32
    assert got["mean_abs_diff"] == pytest.approx(exp["mean_abs_diff"], rel=1e-7, abs=1e-300)
    assert got["min_cosine"] == pytest.approx(exp["min_cosine"], rel=0, abs=1e-15)
    assert [c.name for c in verdict.checks] == list(ref["checks"])
    for check in verdict.checks:
        passed, observed, detail = ref["checks"][check.name]
        assert (check.passed, check.detail) == (passed, detail), check.name
        assert check.observed == pytest.approx(observed, rel=0, abs=1e-15), check.name
    assert [(o.item_id, o.value, o.detail) for o in verdict.offenders] == ref["offenders"]
    assert verdict.status is (Status.PASS if all(c[0] for c in ref["checks"].values()) else Status.FAIL)
    assert set(verdict.min_passing) >= {"atol", "min_cosine"}
    return got


# -- real runs of the tiny models ---------------------------------------------------------------------------


def test_real_runs_match_the_reference(tiny_results: Path, tiny_results_again: Path) -> None:
    assert_same(tiny_results, tiny_results, BI)
    got = assert_same(tiny_results, tiny_results_again, BI)
    assert got["topk_order_agreement"] == 1.0


@pytest.mark.parametrize("name, change, tolerance_class", [
    ("noise", add_noise_to_one(17, 1e-4), "fp32"),
    ("tf32", tf32_round, "fp32"),
    ("tf32-loose", tf32_round, "tf32"),
    ("bf16", bf16_round, "fp32"),
    ("bf16-class", bf16_round, "bf16"),
])
def test_real_perturbations_match_the_reference(tiny_results: Path, tmp_path: Path, name: str, change: Any,
                                                 tolerance_class: str) -> None:
    cand = perturb_results(tiny_results, tmp_path / f"{name}.parquet", BI, vectors=change)
    assert_same(tiny_results, cand, BI, tolerance_class)


# -- synthetic files with several row groups ----------------------------------------------------------------


def _meta(dim: int) -> Dict[str, Any]:
    return {
        "corpus": {"name": "syn", "sha256": "c" * 64},
        "fingerprint": {},
        "models": {SYN: {"kind": "bi-encoder", "status": "ok", "dim": dim, "vector_dtype": "float32"}},
    }


def _write(path: Path, ids: np.ndarray, roles: np.ndarray, vectors: np.ndarray, chunk: int = 30_000,
           canonical: bool = True) -> Path:
    """Written in chunks through ResultsWriter, which cuts full row groups of ROW_GROUP_ROWS (``canonical=False``:
    rows in the order given, as older versions and other tools wrote them)."""
    with ResultsWriter(path, _meta(vectors.shape[1]), vector_width=vectors.shape[1] * 4, unique_ids=False,
                       canonical=canonical) as writer:
        for s in range(0, len(ids), chunk):
            writer.write(ModelRows(SYN, "embed", list(ids[s : s + chunk]), roles=list(roles[s : s + chunk]),
                                   vectors=vectors[s : s + chunk]))
    return path


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """200k x 8: documents, queries in row groups 0 and 2 only, duplicated documents (exact score ties),
    fp32-like noise everywhere, a few texts moved a lot, a few bit-identical."""
    rng = np.random.default_rng(7)
    n, dim = 200_000, 8
    base = rng.standard_normal((n, dim)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    base[1000:1010] = base[2000:2010]  # duplicated documents: exact ties broken by position
    cand = (base + rng.normal(0, 2e-7, base.shape)).astype(np.float32)
    cand[5:50] = base[5:50]  # bit-identical rows
    cand[[77, 150_001, 199_998]] += rng.normal(0, 3e-3, (3, dim)).astype(np.float32)  # texts that really moved
    roles = np.array(["document"] * n, dtype=object)
    queries = np.r_[100:110, 140_000:140_020]  # row groups 0 and 2; documents are everywhere
    roles[queries] = "query"
    ids = np.array([f"id-{i:06d}" for i in range(n)], dtype=object)
    directory = tmp_path_factory.mktemp("synthetic")
    return {"dir": directory, "ids": ids, "roles": roles, "base": base, "cand": cand,
            "base_path": _write(directory / "base.parquet", ids, roles, base),
            "cand_path": _write(directory / "cand.parquet", ids, roles, cand)}


def test_synthetic_file_has_several_row_groups(synthetic: Dict[str, Any]) -> None:
    meta = pq.ParquetFile(synthetic["base_path"]).metadata
    assert meta.num_row_groups == 4
    assert [meta.row_group(i).num_rows for i in range(4)] == [65_536, 65_536, 65_536, 3_392]


def test_synthetic_same_order_matches_the_reference(synthetic: Dict[str, Any]) -> None:
    got = assert_same(synthetic["base_path"], synthetic["cand_path"], SYN)
    assert got["texts_beyond_tolerance"] == 3 and got["topk"] == 10
    assert got["abs_diff_histogram"]["zeros"][0] >= 45 * 8


@pytest.mark.parametrize("threads", [1, 3])
def test_thread_count_does_not_change_anything(synthetic: Dict[str, Any], threads: int) -> None:
    assert_same(synthetic["base_path"], synthetic["cand_path"], SYN, settings=CompareSettings(threads=threads))


def test_ids_in_another_order_match_the_reference(synthetic: Dict[str, Any], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    order = np.random.default_rng(1).permutation(len(synthetic["ids"]))
    s = synthetic
    shuffled = _write(tmp_path / "shuffled.parquet", s["ids"][order], s["roles"][order], s["cand"][order],
                      canonical=False)
    assert_same(s["base_path"], shuffled, SYN)  # normalized on open, the model read whole
    monkeypatch.setattr(normalize, "IN_MEMORY_BYTES", 0)
    assert_same(s["base_path"], shuffled, SYN)  # normalized a row group at a time
    # and the other way round: the baseline is the shuffled one
    assert_same(shuffled, s["cand_path"], SYN)


def test_row_groups_cut_differently_match_the_reference(synthetic: Dict[str, Any], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(results_mod, "ROW_GROUP_ROWS", 50_000)
    s = synthetic
    recut = _write(tmp_path / "recut.parquet", s["ids"], s["roles"], s["cand"], chunk=77_777)
    monkeypatch.undo()
    assert pq.ParquetFile(recut).metadata.num_row_groups == 4
    assert_same(s["base_path"], recut, SYN)


@given(st.lists(st.integers(0, 9), max_size=8), st.lists(st.integers(0, 9), max_size=8))
def test_aligned_slices_cover_both_sides_row_for_row(cuts_b: List[int], cuts_c: List[int]) -> None:
    """``streaming.aligned`` against concatenation: however each side is cut (empty blocks too), the slices
    cover both sides once, in order, each pair of equal length; a side with more rows is refused."""
    blocks = [[np.arange(sum(cuts[:i]), sum(cuts[: i + 1])) for i in range(len(cuts))] for cuts in (cuts_b, cuts_c)]
    reads = [partial(next, iter(side), None) for side in blocks]
    if sum(cuts_b) != sum(cuts_c):
        with pytest.raises(streaming.Misaligned):
            list(streaming.aligned(reads))
        return
    slices = list(streaming.aligned(reads))
    assert [p for p, _, _ in slices] == list(np.cumsum([0] + [len(b) for _, b, _ in slices])[:-1])
    assert all(len(b) == len(c) and len(b) for _, b, c in slices)
    for side in (1, 2):
        got = np.concatenate([s[side] for s in slices]) if slices else np.zeros(0, int)
        assert got.tolist() == list(range(sum(cuts_b)))


def test_retrieval_changes_are_found_like_the_reference(synthetic: Dict[str, Any], tmp_path: Path) -> None:
    """Move documents into some queries' top-10 (and one query itself): agreement below 1, same as in memory."""
    s = synthetic
    cand = s["cand"].copy()
    for k, q in enumerate((100, 101, 140_000, 140_010)):
        cand[50_000 + k] = cand[q] * np.float32(0.99) + np.float32(0.01)
    cand[120] = -cand[120]  # a query flips: its whole top-10 changes
    moved = _write(tmp_path / "moved.parquet", s["ids"], s["roles"], cand)
    got = assert_same(s["base_path"], moved, SYN, "bf16")
    assert got["topk_set_agreement"] < 1.0 and got["topk_order_agreement"] < 1.0


def test_p99_is_exact_below_the_cap_and_sampled_above(synthetic: Dict[str, Any],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    s = synthetic
    exact = compare_files(s["base_path"], s["cand_path"]).models[0].metrics.p99_abs_diff
    diff = np.abs(s["cand"].astype(np.float64) - s["base"].astype(np.float64))
    assert exact == float(np.percentile(diff, 99))
    monkeypatch.setattr(p99_module, "P99_MAX_KEPT", 4_000)  # keeps every 5th row
    sampled = compare_files(s["base_path"], s["cand_path"]).models[0].metrics.p99_abs_diff
    assert sampled != exact and sampled == pytest.approx(exact, rel=0.03)


def test_nan_is_refused_naming_the_first_text_in_file_order(synthetic: Dict[str, Any], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    s = synthetic
    cand = s["cand"].copy()
    cand[[150_000, 3, 70_000], 1] = np.nan
    bad = _write(tmp_path / "nan.parquet", s["ids"], s["roles"], cand)
    for threads in (1, 2):
        with pytest.raises(ResultsFileError, match=r"non-finite vector values in 3 row\(s\) \(first: 'id-000003'\)"):
            compare_files(s["base_path"], bad, settings=CompareSettings(threads=threads))
    # a candidate in reverse order (an old-style file) is normalized when opened: its first bad row in the
    # canonical order it is read in is id-000003 (before canonical order the realigned file named id-150000)
    order = np.arange(len(cand))[::-1]
    reversed_bad = _write(tmp_path / "nan-rev.parquet", s["ids"][order], s["roles"][order], cand[order], canonical=False)
    with pytest.raises(ResultsFileError, match=f"{reversed_bad}: .* in 3 row\\(s\\) \\(first: 'id-000003'\\)"):
        compare_files(s["base_path"], reversed_bad)
    # the baseline's NaN is reported before anything about the candidate
    with pytest.raises(ResultsFileError, match=f"{bad}.*non-finite"):
        compare_files(bad, reversed_bad)


def test_a_failing_worker_stops_the_comparison(synthetic: Dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """An error in one worker is raised, and neither the other worker nor the read-ahead thread hangs."""
    import threading

    calls = []

    def broken(*args: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("boom in a worker")

    monkeypatch.setattr(retrieval, "add_shared", broken)  # the top-k streams' one entry in a worker
    outcome: Dict[str, Any] = {}

    def run() -> None:
        try:
            compare_files(synthetic["base_path"], synthetic["cand_path"], settings=CompareSettings(threads=2))
        except ValueError as err:
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "the comparison hung after a worker failed"
    assert "boom in a worker" in str(outcome.get("error"))
    assert not [t for t in threading.enumerate() if t.name.startswith("harness-compare")]


def test_duplicates_and_missing_ids(synthetic: Dict[str, Any], tmp_path: Path) -> None:
    s = synthetic
    ids = s["ids"].copy()
    ids[10] = ids[11]
    dup = _write(tmp_path / "dup.parquet", ids, s["roles"], s["cand"])
    with pytest.raises(ResultsFileError, match=f"{dup}: model '{SYN}' has duplicate id\\(s\\) id-000011"):
        compare_files(s["base_path"], dup)
    ids = s["ids"].copy()
    ids[[5, 199_999]] = ["zz-new", "aa-new"]
    other = _write(tmp_path / "other.parquet", ids, s["roles"], s["cand"], canonical=False)  # another tool's file
    with pytest.raises(IncompatibleInputs, match=r"ids differ from the baseline's.*2 missing \(e\.g\. id-000005, "
                                                  r"id-199999\), 2 extra \(e\.g\. aa-new, zz-new\)"):
        compare_files(s["base_path"], other)


# -- the streaming top-k on its own: ties, near-ties, more queries than documents ---------------------------


@pytest.mark.parametrize("seed", range(4))
def test_topk_stream_equals_topk_agreement(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, dim, nq = 3_000, 6, 25
    docs = rng.standard_normal((n, dim)).astype(np.float32)
    docs[::7] = docs[0]  # many exact ties
    cand = (docs + rng.normal(0, [1e-7, 1e-3, 1e-7, 3e-2][seed], docs.shape)).astype(np.float32)
    queries = rng.standard_normal((nq, dim)).astype(np.float32)
    cand_q = (queries + rng.normal(0, 1e-6, queries.shape)).astype(np.float32)
    tie = [1e-6, 2e-4, 0.0, 1e-2][seed]
    expected = m.topk_agreement(oracles.cosine_matrix(queries, docs), oracles.cosine_matrix(cand_q, cand), 10, tie)
    streams = [stats.TopKStream(queries, cand_q, 10, tie) for _ in range(2)]
    order = rng.permutation(n // 100)
    for i, block in enumerate(order):  # blocks out of order, split between two instances
        rows = np.arange(block * 100, block * 100 + 100)
        d = cand[rows] - docs[rows]
        streams[i % 2].add(rows, docs[rows], cand[rows], np.einsum("ij,ij->i", docs[rows], docs[rows]),
                           np.einsum("ij,ij->i", d, d))
    streams[0].merge(streams[1])
    got = streams[0].agreement()
    for field in ("same_order", "same_set", "overlap", "raw_same_order"):
        np.testing.assert_array_equal(getattr(got, field), getattr(expected, field), err_msg=field)
    assert sum(len(tile.pool_q) for tile in streams[0].tiles) < 10 * n  # the pools stay small


def test_percentile_from_top_is_numpys_percentile() -> None:
    rng = np.random.default_rng(3)
    for count in (1, 2, 3, 99, 100, 101, 1234, 100_001):
        values = np.abs(rng.standard_normal(count)) * 1e-7
        values[: count // 3] = 0.0
        need = count - int(np.floor((count - 1) * 0.99))
        top = np.sort(values)[count - need :]
        assert stats.percentile_from_top(rng.permutation(top), count) == float(np.percentile(values, 99)), count



def test_p99_of_mostly_zeros_holds_its_kept_values_not_every_zero() -> None:
    """Zeros are never kept: the value pads the kept largest values to the ``keep`` it needs, not to every value
    (a near bit-identical run of 20M elements would otherwise allocate 160 MB of zeros at the end)."""
    import tracemalloc

    count = 20_000_000
    values = np.zeros(20_000, dtype=np.float32)
    values[::50] = np.arange(1, 401, dtype=np.float32)  # 2%: the p99 of these rows alone is not a zero
    p99 = p99_module.P99(count)
    for s in range(0, len(values), 5000):
        p99.add(s, values[s : s + 5000])
    tracemalloc.start()
    try:
        got = p99.value()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == 0.0 and peak < 16 * p99.keep + (1 << 20)
    small = p99_module.P99(len(values))  # the same rule where the p99 is not a zero
    small.add(0, values)
    assert small.value() == float(np.percentile(values.astype(np.float64), 99)) > 0

# -- results files: chunked writing, URIs ---------------------------------------------------------------------


def test_writer_cuts_full_row_groups_and_never_mixes_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(results_mod, "ROW_GROUP_ROWS", 100)
    rng = np.random.default_rng(0)
    meta = {"models": {"a": {"kind": "bi-encoder", "status": "ok", "dim": 3, "vector_dtype": "float32"},
                       "b": {"kind": "bi-encoder", "status": "ok", "dim": 2, "vector_dtype": "float32"}}}
    va, vb = rng.standard_normal((250, 3)).astype(np.float32), rng.standard_normal((130, 2)).astype(np.float32)
    path = tmp_path / "chunked.parquet"
    with ResultsWriter(path, meta, vector_width=12) as writer:
        for s in range(0, 250, 37):
            writer.write(ModelRows("a", "embed", [f"a{i:03d}" for i in range(s, min(250, s + 37))],
                                   roles=["document"] * len(range(s, min(250, s + 37))), vectors=va[s : s + 37]))
        writer.write(ModelRows("b", "embed", [f"b{i:03d}" for i in range(130)], roles=["query"] * 130, vectors=vb))
    file = pq.ParquetFile(path)
    sizes = [file.metadata.row_group(i).num_rows for i in range(file.num_row_groups)]
    assert sizes == [100, 100, 50, 100, 30]
    results = ResultsFile(path)
    np.testing.assert_array_equal(results.embeddings("a")[2], va)
    np.testing.assert_array_equal(results.embeddings("b")[2], vb)
    assert results.model_row_groups("b") == [(3, 100), (4, 30)]


def test_writer_error_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "never.parquet"
    with pytest.raises(RuntimeError, match="boom"):
        with ResultsWriter(path, _meta(2), vector_width=8) as writer:
            writer.write(ModelRows(SYN, "embed", ["x"], roles=["document"], vectors=np.zeros((1, 2), np.float32)))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_results_file_opens_file_uris(tiny_results: Path, tiny_results_again: Path) -> None:
    uri = tiny_results.resolve().as_uri()
    assert uri.startswith("file://")
    results = ResultsFile(uri)
    assert results.path == tiny_results.resolve()
    np.testing.assert_array_equal(results.embeddings(BI)[2], ResultsFile(tiny_results).embeddings(BI)[2])
    by_uri = compare_files(uri, tiny_results_again.resolve().as_uri()).serialize()
    by_path = compare_files(tiny_results.resolve(), tiny_results_again.resolve()).serialize()
    assert by_uri["models"] == by_path["models"]
    with pytest.raises(ResultsFileError, match="no such file"):
        ResultsFile(uri + ".missing")


def test_compare_does_not_import_pandas(tiny_results: Path, tiny_results_again: Path) -> None:
    """pyarrow's ``to_numpy`` and ``pa.array`` import pandas (~50 MB RSS, 0.4 s): the comparator avoids them."""
    code = (
        "import sys; from harness.compare.comparator import compare_files; "
        f"compare_files({str(tiny_results)!r}, {str(tiny_results_again)!r}); print('pandas' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_runs_record_their_peak_memory(tiny_results: Path) -> None:
    run = ResultsFile(tiny_results).meta["run"]
    assert run["peak_rss_bytes"] > 10 << 20
