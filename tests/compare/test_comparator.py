"""The comparator on real runs of the tiny models: identical and batch-size runs pass, real perturbations fail,
incomparable inputs are refused with one clear line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.compare.comparator import compare_files
from harness.errors import IncompatibleInputs, ResultsFileError
from harness.results import ResultsFile
from harness.testing import add_noise_to_one, bf16_round, perturb_results, tf32_round
from harness.verdict import Comparison, Evidence, Status

BI, CE = "tiny-bi-encoder", "tiny-cross-encoder"


def _by_model(comparison: Comparison) -> dict:
    return {v.model_id: v for v in comparison.models}


def test_identical_runs_pass(tiny_results: Path) -> None:
    comparison = compare_files(tiny_results, tiny_results)
    assert comparison.status is Status.PASS
    for verdict in comparison.models:
        assert verdict.metrics.max_abs_diff == 0.0
        assert all(c.passed for c in verdict.checks)


def test_batch_size_change_is_within_fp32_tolerance(tiny_results: Path, tiny_results_again: Path) -> None:
    comparison = compare_files(tiny_results, tiny_results_again)
    assert comparison.status is Status.PASS, comparison.serialize()
    assert any(c.key == "models.tiny-bi-encoder.loaded_dtype" for c in comparison.env_changes) is False


def test_noise_of_1e4_on_one_vector_fails_and_names_the_text(tiny_results: Path, tmp_path: Path) -> None:
    ids, _, _ = ResultsFile(tiny_results).embeddings(BI)
    row = 17
    noisy = perturb_results(tiny_results, tmp_path / "noisy.parquet", BI, vectors=add_noise_to_one(row, 1e-4))
    verdict = _by_model(compare_files(tiny_results, noisy))[BI]
    assert verdict.status is Status.FAIL
    failed = {c.name for c in verdict.failed_checks}
    assert "max_abs_diff" in failed
    assert verdict.offenders[0].item_id == ids[row]
    assert verdict.metrics.texts_beyond_tolerance == 1
    assert "elements" in verdict.failed_checks[0].detail
    # the other model is untouched and still passes
    assert _by_model(compare_files(tiny_results, noisy))[CE].status is Status.PASS


def test_noise_just_inside_tolerance_passes(tiny_results: Path, tmp_path: Path) -> None:
    """The same kind of change, 100x smaller (about fp32 device drift), must not alarm."""
    slight = perturb_results(tiny_results, tmp_path / "slight.parquet", BI, vectors=add_noise_to_one(3, 1e-7))
    assert compare_files(tiny_results, slight).status is Status.PASS


def test_tf32_like_rounding_fails_fp32_but_passes_tf32_class(tiny_results: Path, tmp_path: Path) -> None:
    rounded = perturb_results(tiny_results, tmp_path / "tf32.parquet", BI, vectors=tf32_round)
    strict = _by_model(compare_files(tiny_results, rounded))[BI]
    assert strict.status is Status.FAIL and strict.tolerance_class == "fp32"
    assert 1e-5 < strict.metrics.max_abs_diff < 5e-4
    loose = _by_model(compare_files(tiny_results, rounded, tolerance_class="tf32"))[BI]
    assert loose.status is Status.PASS


def test_bf16_like_rounding_fails_and_reorders(tiny_results: Path, tmp_path: Path) -> None:
    rounded = perturb_results(tiny_results, tmp_path / "bf16.parquet", BI, vectors=bf16_round)
    verdict = _by_model(compare_files(tiny_results, rounded))[BI]
    assert verdict.status is Status.FAIL
    assert verdict.metrics.max_abs_diff > 1e-4


def test_rerank_score_shift_fails_and_reorder_is_explained(tiny_results: Path, tmp_path: Path) -> None:
    def swap_first_two(scores: np.ndarray) -> np.ndarray:
        out = scores.copy()
        out[0], out[1] = scores[1], scores[0]
        return out

    moved = perturb_results(tiny_results, tmp_path / "swap.parquet", CE, scores=swap_first_two)
    verdict = _by_model(compare_files(tiny_results, moved))[CE]
    assert verdict.status is Status.FAIL
    names = {c.name for c in verdict.failed_checks}
    assert "max_score_diff" in names and "rerank_order_agreement" in names
    assert any(o.metric == "significant_swaps" for o in verdict.offenders)


def test_real_bf16_run_is_judged_at_fp32_unless_asked(tiny_results: Path, tmp_path: Path) -> None:
    """Not a simulation: the runner really loads the tiny models in bfloat16 on CPU. Against an fp32 baseline it
    is judged at fp32 (a precision downgrade never passes silently), at bf16 only when forced."""
    from conftest import run_tiny

    bf16 = run_tiny(tmp_path / "bf16-run.parquet", dtype="bfloat16")
    meta = ResultsFile(bf16).meta["models"][BI]
    assert meta["loaded_dtype"] == "bfloat16"
    auto = _by_model(compare_files(tiny_results, bf16))
    assert auto[BI].tolerance_class == "fp32" and auto[BI].status is Status.FAIL
    assert auto[BI].metrics.max_abs_diff > 1e-3 and "candidate ran at bf16" in auto[BI].precision_change
    forced = _by_model(compare_files(tiny_results, bf16, tolerance_class="bf16"))
    assert forced[BI].tolerance_class == "bf16" and "forced by --class" in forced[BI].precision_change


def test_nan_in_candidate_is_bad_input(tiny_results: Path, tmp_path: Path) -> None:
    def poison(v: np.ndarray) -> np.ndarray:
        out = v.copy()
        out[2, 0] = np.nan
        return out

    bad = perturb_results(tiny_results, tmp_path / "nan.parquet", BI, vectors=poison)
    with pytest.raises(ResultsFileError, match="non-finite"):
        compare_files(tiny_results, bad)


def test_other_corpus_is_refused(tiny_results: Path, tmp_path: Path) -> None:
    def other_corpus(meta: dict) -> dict:
        return {**meta, "corpus": {**meta["corpus"], "sha256": "0" * 64, "name": "other"}}

    other = perturb_results(tiny_results, tmp_path / "other.parquet", BI, meta_update=other_corpus)
    with pytest.raises(IncompatibleInputs, match="corpus differs"):
        compare_files(tiny_results, other)


def test_changed_weights_are_refused_unless_allowed(tiny_results: Path, tmp_path: Path) -> None:
    def new_weights(meta: dict) -> dict:
        models = {**meta["models"], BI: {**meta["models"][BI], "weights_sha256": "f" * 64}}
        return {**meta, "models": models}

    changed = perturb_results(tiny_results, tmp_path / "weights.parquet", BI, meta_update=new_weights)
    with pytest.raises(IncompatibleInputs, match="weights differ"):
        compare_files(tiny_results, changed)
    allowed = compare_files(tiny_results, changed, allow_model_change=True)
    assert any(c.key.endswith("weights_sha256") for c in allowed.env_changes)


def test_different_model_sets_are_refused(tiny_results: Path, tmp_path: Path) -> None:
    def drop_model(meta: dict) -> dict:
        return {**meta, "models": {BI: meta["models"][BI]}}

    fewer = perturb_results(tiny_results, tmp_path / "fewer.parquet", BI, meta_update=drop_model)
    with pytest.raises(IncompatibleInputs, match="only in baseline: tiny-cross-encoder"):
        compare_files(tiny_results, fewer)
    assert compare_files(tiny_results, fewer, models=[BI]).status is Status.PASS


def test_incompatible_model_is_reported_not_compared(tiny_results: Path, tmp_path: Path) -> None:
    def incompatible(meta: dict) -> dict:
        models = {**meta["models"], CE: {"kind": "cross-encoder", "status": "incompatible", "reason": "saved by 9.0"}}
        return {**meta, "models": models}

    cell = perturb_results(tiny_results, tmp_path / "inc.parquet", CE, meta_update=incompatible)
    comparison = compare_files(tiny_results, cell)
    assert _by_model(comparison)[CE].status is Status.INCOMPATIBLE
    assert "saved by 9.0" in _by_model(comparison)[CE].reason


def test_serialization_round_trips(tiny_results: Path, tmp_path: Path) -> None:
    noisy = perturb_results(tiny_results, tmp_path / "n.parquet", BI, vectors=add_noise_to_one(0, 1e-3))
    comparison = compare_files(tiny_results, noisy)
    again = Comparison.from_dict(comparison.serialize())
    assert again.serialize() == comparison.serialize()


def test_verdicts_carry_each_sides_speed_and_memory(tiny_results: Path, tiny_results_again: Path) -> None:
    """Throughput and memory per device go into every report (never into the verdict): a matrix over GPU types
    shows how each runs the models."""
    from harness.report.markdown import render_markdown
    from harness.report.matrix_report import build_matrix_report
    from harness.report.text import render_comparison

    comparison = compare_files(tiny_results, tiny_results_again)
    for verdict in comparison.models:
        base, cand = verdict.performance["baseline"], verdict.performance["candidate"]
        recorded = ResultsFile(tiny_results_again).meta["models"][verdict.model_id]
        assert cand.items_per_s == recorded["items_per_s"] > 0 and cand.device == "cpu"
        assert base.items_per_s == ResultsFile(tiny_results).meta["models"][verdict.model_id]["items_per_s"]
        assert (cand.peak_rss_bytes or 0) > 0 and cand.cuda_peak_memory_bytes is None  # a CPU run
    data = comparison.serialize()
    text = render_comparison(Comparison.from_dict(data))
    assert "Speed and memory of the candidate run" in text
    rate = data["models"][0]["performance"]["candidate"]["items_per_s"]
    assert "cuda_peak_memory_bytes" not in data["models"][0]["performance"]["candidate"]  # None: left out, as ever
    assert f"{rate:,.0f}" in text or f"{rate:.3g}" in text
    cell = {"cell_id": "c", "status": data["status"], "setup_s": 1.0, "run_s": 1.0, "reason": "", "results": "r",
            "comparison": data, "params": {}}
    assert "## Speed and memory (reported, not judged)" in render_markdown(build_matrix_report("m", "b", [cell]))


def test_evidence_is_small_json_and_old_reports_still_load(tiny_results: Path, tmp_path: Path) -> None:
    """Every verdict carries the evidence messages quote: a few entries per list whatever the drift, plain JSON
    values; a report written before evidence existed loads with none."""
    import json

    rounded = perturb_results(tiny_results, tmp_path / "bf16.parquet", BI, vectors=bf16_round)
    swapped = perturb_results(rounded, tmp_path / "both.parquet", CE, scores=lambda s: s[::-1].copy())
    data = compare_files(tiny_results, swapped).serialize()
    bi, ce = (m["evidence"] for m in data["models"])
    assert bi["kind"] == "embedding" and ce["kind"] == "rerank"
    assert data["models"][0]["metrics"]["texts_beyond_tolerance"] > 5 and len(bi["texts_beyond"]) == 5
    assert bi["topk"]["order_changed"]["count"] > 5 and len(bi["topk"]["order_changed"]["ids"]) == 5
    assert ce["reordered_count"] > 5 and len(ce["reordered"]) == 5
    assert bi["max_abs"]["value"] == data["models"][0]["metrics"]["max_abs_diff"]
    assert json.loads(json.dumps(data)) == data  # no default=str needed: plain JSON values only
    old = json.loads(json.dumps(data))
    for model in old["models"]:
        del model["evidence"]
    assert all(v.evidence == Evidence() for v in Comparison.from_dict(old).models)
