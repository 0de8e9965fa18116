"""The accuracy against the fp64 reference in every renderer (``harness.report.accuracy_lines``): terminal text,
JSON round trip, Markdown (summary column and failure), HTML (lines and the token-count chart), JUnit,
verdicts.parquet and the assertion message; the status line of a candidate judged at its own class; the
``--reference`` option (a wrong one is bad input, exit 2)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.compare.comparator import compare_files
from harness.report.assertion import render_failure
from harness.report.html import render_html
from harness.report.junit import render_junit
from harness.report.markdown import render_markdown
from harness.report.matrix_report import build_matrix_report
from harness.report.tables import verdicts_table
from harness.report.text import render_comparison
from harness.testing import bf16_round, perturb_results
from harness.verdict import Comparison

from conftest import ROOT

TINY = ROOT / "fixtures" / "baselines" / "tiny-cpu-float32.parquet"
BI = "tiny-bi-encoder"


@pytest.fixture(scope="module")
def lost(tmp_path_factory: pytest.TempPathFactory) -> Comparison:
    """The tiny baseline against a copy whose vectors moved 3e-6 (within atol): less accurate, it fails."""
    path = tmp_path_factory.mktemp("accuracy") / "lost.parquet"
    perturb_results(TINY, path, BI, vectors=lambda v: v + np.float32(3e-6))
    return compare_files(TINY, path)


def _ratio(comparison: Comparison) -> str:
    acc = comparison.models[0].accuracy
    assert acc is not None and acc.measured.ratio > 100
    return f"{acc.measured.ratio:,.0f}x"


def test_text_json_and_assertion_show_the_ratio(lost: Comparison) -> None:
    ratio = _ratio(lost)
    text = render_comparison(lost)
    assert text.splitlines()[0].endswith(f"{ratio} the baseline's error against fp64 ({BI}), "
                                         "1x the baseline's error against fp64 (tiny-cross-encoder)")
    assert f"{BI} accuracy against fp64: {ratio} the baseline's error (limit 2): less accurate" in text
    assert "further from fp64: the candidate on 747 of 747 texts" in text
    data = json.loads(json.dumps(lost.serialize()))
    assert data["models"][0]["accuracy"]["measured"]["buckets"], "the error by token count is in the JSON"
    assert Comparison.from_dict(data) == lost
    assert render_comparison(Comparison.from_dict(data)) == text
    message = render_failure("Embeddings are not close!", lost.models[0], policy="p", comparison=lost)
    assert f"Accuracy against fp64: {ratio} the baseline's error" in message
    assert re.search(r"^Would pass with: .*max_accuracy_ratio \d", message, re.M)


def test_matrix_renderers_show_the_ratio(lost: Comparison, tmp_path: Path) -> None:
    ratio = _ratio(lost)
    report = build_matrix_report("m", TINY, [{"cell_id": "c", "status": "fail", "comparison": lost.serialize()}])
    markdown = render_markdown(report)
    assert f"| {ratio} |" in markdown and "Error vs fp64 (of the baseline's)" in markdown
    assert f"- accuracy against fp64: {ratio} the baseline's error" in markdown
    html = render_html(report)
    assert f"{ratio} the baseline&#x27;s error" in html or f"{ratio} the baseline's error" in html
    assert '<svg class="accuracy"' in html and "129-256" in html
    junit = render_junit(report)
    assert f"accuracy against fp64: {ratio} the baseline" in junit and "accuracy_ratio" in junit
    table = verdicts_table(report).to_pylist()
    row = next(r for r in table if r["model_id"] == BI and r["check"] == "accuracy_ratio")
    assert row["passed"] is False and row["observed"] > 100
    assert row["candidate_rmse_fp64"] > 100 * row["baseline_rmse_fp64"] > 0


def test_judged_at_its_own_class_the_limit_scales_and_the_status_line_says_so(tmp_path: Path) -> None:
    """A bf16 candidate of an fp32 baseline, judged at bf16 (``--class bf16``): its expected loss (bf16's measured
    error ratio) scales the limit; at the baseline's class the same candidate fails the ratio check."""
    def downgrade(meta: dict) -> dict:
        models = {**meta["models"], BI: {**meta["models"][BI], "loaded_dtype": "bfloat16"}}
        return {**meta, "fingerprint": {**meta["fingerprint"], "dtype": "bfloat16"}, "models": models,
                "run": {**meta.get("run", {}), "dtype": "bfloat16"}}

    cand = perturb_results(TINY, tmp_path / "bf16.parquet", BI, vectors=bf16_round, meta_update=downgrade)
    own = compare_files(TINY, cand, tolerance_class="bf16", models=[BI])
    verdict = own.models[0]
    assert verdict.accuracy is not None and verdict.accuracy.scale == 65_536 and verdict.accuracy.limit == 3 * 65_536
    ratio = verdict.accuracy.measured.ratio
    assert 100 < ratio < 3 * 65_536 and verdict.status.value == "pass", verdict.reason
    line = render_comparison(own).splitlines()[0]
    assert line.startswith("harness compare: PASS at bf16") and f"{ratio:,.0f}x the baseline's error against fp64" in line
    assert "= 3 x 65,536 (judged at its own class)" in render_comparison(own)
    at_baseline = compare_files(TINY, cand, models=[BI]).models[0]
    assert at_baseline.accuracy is not None and at_baseline.accuracy.limit == 2
    assert "accuracy_ratio" in [c.name for c in at_baseline.failed_checks]


def test_reference_option(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    copy = tmp_path / "tiny.parquet"
    shutil.copy(TINY, copy)
    assert main(["compare", str(copy), str(TINY), "--json", str(tmp_path / "none.json")]) == 0
    assert "note: no fp64 reference" in capsys.readouterr().out
    assert json.loads((tmp_path / "none.json").read_text())["models"][0]["accuracy"] is None
    given = ["compare", str(copy), str(TINY), "--reference", str(TINY.with_name("tiny-cpu-float32.reference.parquet"))]
    assert main([*given, "--json", str(tmp_path / "given.json")]) == 0
    assert json.loads((tmp_path / "given.json").read_text())["models"][0]["accuracy"]["measured"]["ratio"] == 1.0
    wrong = ROOT / "fixtures" / "baselines" / "example-cpu-float32.reference.parquet"
    assert main(["compare", str(copy), str(TINY), "--reference", str(wrong)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "example-cpu-float32.reference.parquet" in err and "corpus differs" in err
