"""The fp64 reference in the verdict (``harness.compare.accuracy``): perturbations of the shipped tiny baseline
judged against its shipped reference, per kind (bi-encoder vectors, cross-encoder scores).

Noise at the baseline's own error level passes the ratio check; a planted loss that atol 1e-5 lets through fails
it; a change on long texts only (as a candidate that truncates elsewhere) shows in the long-text buckets only,
and a truncation flag that differs from the reference's is named; ``judge_by = "accuracy"`` makes the ratio the
gate; a reference of another corpus is refused (exit 2); no reference: no accuracy, one note.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.compare.comparator import compare_files
from harness.compare.reference import NO_REFERENCE, reference_path
from harness.config.policy import load_policy
from harness.errors import IncompatibleInputs
from harness.report.accuracy_lines import lines
from harness.results import ResultsFile
from harness.testing import perturb_results

from conftest import ROOT

TINY = ROOT / "fixtures" / "baselines" / "tiny-cpu-float32.parquet"
REF = reference_path(TINY)
BI, CE = "tiny-bi-encoder", "tiny-cross-encoder"


def _base_rmse(model: str) -> float:
    """The baseline's own RMSE against the reference, measured (the noise level of a fresh fp32 run)."""
    verdict = compare_files(TINY, TINY, models=[model]).models[0]
    assert verdict.accuracy is not None
    return verdict.accuracy.measured.baseline.rmse


def _noisy(scale: float, every: int = 1, planted: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """Gaussian noise of ``scale`` (rounding of that size), or ``planted``: +-``scale`` exactly on every
    ``every``-th dimension, +``scale`` on every score (a bias: no reorder), a loss an atol above it lets through."""
    def apply(values: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(0)
        noise = rng.normal(0.0, scale, values.shape)
        if planted:
            noise = rng.choice([-scale, scale], values.shape) if values.ndim == 2 else np.full(values.shape, scale)
        mask = (np.arange(values.shape[-1]) % every == 0) if values.ndim == 2 else np.ones(values.shape, bool)
        return (values.astype(np.float64) + noise * mask).astype(values.dtype)
    return apply


@pytest.mark.parametrize("model", [BI, CE])
def test_noise_at_the_baselines_level_passes_and_a_planted_loss_within_atol_fails(tmp_path: Path, model: str) -> None:
    key = "vectors" if model == BI else "scores"
    own = perturb_results(TINY, tmp_path / "own.parquet", model, **{key: _noisy(_base_rmse(model))})
    verdict = compare_files(TINY, own, models=[model]).models[0]
    assert verdict.accuracy is not None and verdict.accuracy.measured.ratio < 2, verdict.accuracy
    assert verdict.status.value == "pass", verdict.reason

    lost = perturb_results(TINY, tmp_path / "lost.parquet", model, **{key: _noisy(3e-6, every=7, planted=True)})
    verdict = compare_files(TINY, lost, models=[model]).models[0]
    tolerance_checks = [c for c in verdict.checks if c.name != "accuracy_ratio"]
    assert all(c.passed for c in tolerance_checks), verdict.reason  # atol 1e-5 lets it through ...
    assert verdict.status.value == "fail" and [c.name for c in verdict.failed_checks] == ["accuracy_ratio"]
    assert "less accurate than the baseline" in verdict.reason and verdict.min_passing["max_accuracy_ratio"] > 2
    assert verdict.accuracy is not None and verdict.accuracy.measured.candidate_worse > verdict.accuracy.measured.rows / 2


def _with_flags(source: Path, target: Path, truncated: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Path:
    """A copy of ``source`` with the reference's token counts and ``truncated(tokens, flags)`` as its flags."""
    table, ref = pq.read_table(source), pq.read_table(REF)
    table = table.drop_columns([c for c in ("tokens", "truncated") if c in table.column_names])
    keys = lambda t: list(zip(t.column("model_id").to_pylist(), t.column("item_id").to_pylist()))  # noqa: E731
    where = {key: i for i, key in enumerate(keys(ref))}
    rows = np.array([where[key] for key in keys(table)])
    tokens, flags = ref.column("tokens").to_numpy()[rows], ref.column("truncated").to_numpy()[rows]
    table = table.append_column("tokens", pa.array(tokens, pa.int32()))
    table = table.append_column("truncated", pa.array(truncated(tokens, flags), pa.bool_()))
    pq.write_table(table, target, row_group_size=1 << 16)
    return target


def test_a_truncation_change_is_attributed_to_long_texts_only(tmp_path: Path) -> None:
    base = _with_flags(TINY, tmp_path / "base.parquet", lambda tokens, flags: flags)
    shutil.copy(REF, reference_path(base))
    rows = ResultsFile(base).token_columns(BI)
    assert rows is not None
    long = rows["truncated"]
    assert 0 < long.sum() < len(long)

    def cut_elsewhere(values: np.ndarray) -> np.ndarray:  # the long texts' vectors move (within atol)
        values = values.copy()
        values[long] += np.float32(4e-6)
        return values

    moved = perturb_results(base, tmp_path / "moved.parquet", BI, vectors=cut_elsewhere)
    cand = _with_flags(moved, tmp_path / "cand.parquet", lambda tokens, flags: np.zeros_like(flags))
    verdict = compare_files(base, cand, models=[BI]).models[0]
    acc = verdict.accuracy
    assert acc is not None and verdict.status.value == "fail"
    limit = ResultsFile(base).records[BI].max_seq_length
    for bucket in acc.measured.buckets:
        if bucket.high is not None and bucket.high <= limit:  # short texts: as accurate as the baseline
            assert bucket.candidate_rmse == pytest.approx(bucket.baseline_rmse), bucket
        elif bucket.low > limit:
            assert bucket.candidate_rmse > 100 * bucket.baseline_rmse, bucket
    assert acc.measured.truncation_mismatches == int(long.sum())
    assert {side for _, side in acc.measured.truncated} == {"candidate"}


def test_judge_by_accuracy_makes_the_ratio_the_gate(tmp_path: Path) -> None:
    """A tight atol (1e-9) fails a candidate rounded at the baseline's own error level: by the tolerances it fails
    and its failure says "other rounding, equally accurate"; with ``judge_by = "accuracy"`` it passes, and a
    planted loss still fails."""
    tight = '[classes.fp32]\natol = 1e-9\nscore_atol = 1e-9\n'
    (tmp_path / "tolerances.toml").write_text(tight, encoding="utf-8")
    (tmp_path / "accuracy.toml").write_text('[policy]\njudge_by = "accuracy"\n' + tight, encoding="utf-8")
    by_tolerances, by_accuracy = (load_policy(tmp_path / f"{name}.toml") for name in ("tolerances", "accuracy"))
    other = perturb_results(TINY, tmp_path / "other.parquet", BI, vectors=_noisy(_base_rmse(BI)))
    failed = compare_files(TINY, other, by_tolerances, models=[BI]).models[0]
    assert failed.status.value == "fail" and "other rounding, equally accurate" in failed.reason, failed.reason
    gated = compare_files(TINY, other, by_accuracy, models=[BI]).models[0]
    assert gated.status.value == "pass" and gated.accuracy is not None and gated.accuracy.gate
    assert any(not c.passed for c in gated.checks)  # the tolerance checks are still reported
    lost = perturb_results(TINY, tmp_path / "lost.parquet", BI, vectors=_noisy(3e-6, every=7, planted=True))
    assert compare_files(TINY, lost, by_accuracy, models=[BI]).models[0].status.value == "fail"


def test_a_wrong_reference_is_refused_and_none_changes_nothing(tmp_path: Path) -> None:
    other = ROOT / "fixtures" / "baselines" / "example-cpu-float32.reference.parquet"
    with pytest.raises(IncompatibleInputs, match="reference"):
        compare_files(TINY, TINY, reference=other)
    copy = tmp_path / "tiny.parquet"
    shutil.copy(TINY, copy)
    comparison = compare_files(copy, TINY)
    assert all(m.accuracy is None for m in comparison.models)
    assert comparison.notes.count(NO_REFERENCE) == 1
    assert [c.name for m in comparison.models for c in m.checks if c.name == "accuracy_ratio"] == []


def test_a_served_side_is_named_the_server(tmp_path: Path) -> None:
    """Served vs library: the sides are "the library" (baseline) and "the server" (candidate), the server's the
    texts it is further from fp64 on."""
    def served(meta: dict) -> dict:
        return {**meta, "models": {**meta["models"], BI: {**meta["models"][BI], "backend": "http"}}}

    cand = perturb_results(TINY, tmp_path / "served.parquet", BI, vectors=_noisy(3e-6, every=7, planted=True),
                           meta_update=served)
    verdict = compare_files(TINY, cand, models=[BI]).models[0]
    assert verdict.accuracy is not None and verdict.accuracy.sides == ("the library", "the server")
    assert any(line.strip().startswith("further from fp64: the server on ") for line in lines(verdict))


@pytest.mark.parametrize("model", [BI, CE])
def test_a_reference_whose_rows_differ_is_refused_naming_where(tmp_path: Path, model: str) -> None:
    """The verdict's pass reads the reference alongside: a reference missing a row, or with another id in a row,
    is refused (exit 2) naming the reference, the model and where, never measured against the wrong rows."""
    table = pq.read_table(REF)
    rows = np.flatnonzero(np.asarray(table.column("model_id").to_pylist()) == model)
    copy = tmp_path / "base.parquet"
    shutil.copy(TINY, copy)
    pq.write_table(table.filter(pa.array(np.arange(len(table)) != rows[-1])), reference_path(copy))
    with pytest.raises(IncompatibleInputs, match=rf"{model}.*rows differ from .*\({len(rows) - 1} rows, the baseline {len(rows)}\)"):
        compare_files(copy, TINY, models=[model])
    ids = table.column("item_id").to_pylist()
    renamed = ids[rows[-1]] + "~"  # still the last row in canonical order
    ids[rows[-1]] = renamed
    pq.write_table(table.set_column(table.column_names.index("item_id"), "item_id", pa.array(ids)), reference_path(copy))
    with pytest.raises(IncompatibleInputs, match=rf"rows differ from .*at '{renamed}'"):
        compare_files(copy, TINY, models=[model])
    assert compare_files(copy, TINY, models=[BI if model == CE else CE]).models[0].accuracy is not None
