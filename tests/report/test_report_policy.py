"""The policy is part of the verdict (issue #13): every report names it and shows each check's limit and the
share of it the drift used; the HTML says what would pass and what its unjudged (blue) order figures mean."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.compare.comparator import compare_files
from harness.config.policy import load_policy
from harness.report.html import render_html
from harness.report.json_report import document, render_json
from harness.report.junit import render_junit
from harness.report.markdown import render_markdown
from harness.report.matrix_report import MatrixReport, build_matrix_report
from harness.report.text import render_comparison
from harness.verdict import BUILT_IN_POLICY, Check, Comparison, limit_used

from synthetic_results import BI, perturb_results, synthetic_matrix, write_synthetic_baseline


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> MatrixReport:
    return synthetic_matrix(tmp_path_factory.mktemp("policy"))


def test_limit_used_of_both_kinds_of_check() -> None:
    assert limit_used(2.5e-6, 1e-5, "<=") == pytest.approx(0.25)
    assert limit_used(1 - 2.5e-7, 0.999999, ">=") == pytest.approx(0.25, rel=1e-6)  # shortfall over allowance
    assert limit_used(1.0, 1.0, ">=") == 0.0 and limit_used(0.875, 1.0, ">=") is None  # nothing allowed
    check = Check(name="max_abs_diff", observed=3e-5, limit=1e-5, op="<=", passed=False)
    assert check.used == pytest.approx(3.0)
    assert Check(**json.loads(json.dumps(check.__dict__))).used == pytest.approx(3.0)  # survives a round trip


def test_every_format_names_the_policy_and_each_checks_headroom(report: MatrixReport) -> None:
    assert report.policy == BUILT_IN_POLICY
    markdown = render_markdown(report)
    assert f"- policy: `{BUILT_IN_POLICY}`" in markdown
    # the passing bi-encoder's max_abs_diff row, with its limit and the share used (observed / limit)
    passing = document(report)["cells"][0]["comparison"]["models"][0]
    check = next(c for c in passing["checks"] if c["name"] == "max_abs_diff")
    share = f"{check['observed'] / check['limit']:.0%}"
    assert f"| fp32 | `max_abs_diff` {share} |" in markdown  # the summary's closest check
    assert f"| `max_abs_diff` | {check['observed']:.2e} | \\<= 1.00e-05 | {share} | pass |" in markdown

    data = json.loads(render_json(report))
    assert data["policy"] == BUILT_IN_POLICY
    assert data["cells"][0]["comparison"]["models"][0]["checks"][0]["used"] == pytest.approx(
        check["observed"] / check["limit"])

    root = ET.fromstring(render_junit(report))
    suite = root.find("testsuite")
    assert suite is not None
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["policy"] == BUILT_IN_POLICY
    out = suite.find("testcase/system-out")
    assert out is not None and f"max_abs_diff: {check['observed']:.2e} (limit <= 1.00e-05, used {share})" in (out.text or "")

    page = render_html(report)
    assert f'policy <code class="policy">{BUILT_IN_POLICY}</code>' in page
    assert "<th>Limit used</th>" in page and f'<td class="num used">{share}</td>' in page
    assert page.count("would pass with:") == 2  # the two failing models, as in the Markdown
    assert markdown.count("would pass with:") == 2
    assert "blue ones are reported, not judged" in page and "Kendall tau" in page


def test_a_policy_file_is_named_and_its_limits_shown(tmp_path: Path) -> None:
    base = write_synthetic_baseline(tmp_path / "baseline.parquet")
    cand = perturb_results(base, tmp_path / "c.parquet", noise={BI: 2e-6}, seed=3)
    policy_file = tmp_path / "loose.toml"
    policy_file.write_text("[classes.fp32]\natol = 4e-5\n", encoding="utf-8")
    comparison = compare_files(base, cand, load_policy(policy_file))
    text = render_comparison(Comparison.from_dict(comparison.serialize()))
    assert f"policy:    {policy_file}" in text
    bi = next(m for m in comparison.models if m.model_id == BI)
    check = next(c for c in bi.checks if c.name == "max_abs_diff")
    assert check.limit == 4e-5  # the file's limit, not the built-in 1e-5
    row = next(line for line in text.splitlines() if line.split()[:2] == [BI, "max_abs_diff"])
    assert row.split()[2:] == [f"{check.observed:.2e}", "<=", "4.00e-05", f"{check.observed / 4e-5:.0%}", "pass"]
    report = build_matrix_report("m", base, [{"cell_id": "c", "status": "pass", "comparison": comparison}])
    assert report.policy == str(policy_file)
    assert f"policy <code class=\"policy\">{policy_file}</code>" in render_html(report)
    assert Comparison.from_dict(comparison.serialize()).policy == str(policy_file)
