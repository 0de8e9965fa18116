"""Matrix reports: Markdown, JUnit, JSON and HTML rendered from one dict, plus the history log.

Fast tests build small synthetic results files with ``write_results`` (realistic metadata, real comparator);
one ``slow`` test runs the tiny models for real. ``perturb_results`` is the helper to make a failing candidate
from any results file: it copies it and adds noise to one model's vectors or scores.
"""

from __future__ import annotations

import dataclasses
import html.parser
import json
import re
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from harness.compare.comparator import compare_files
from harness.fsio import append_line
from harness.matrix.publish import load_history, publish_matrix_report
from harness.matrix.spec import MatrixError
from harness.measured import Histogram
from harness.report.format import fmt, fmt_cosine
from harness.report.html import render_html
from harness.report.html_svg import histogram_svg
from harness.report.json_report import document, render_json
from harness.report.junit import render_junit
from harness.report.markdown import render_markdown
from harness.report.matrix_report import HistoryEntry, MatrixReport, build_matrix_report, published
from harness.verdict import CellStatus, Comparison

from synthetic_results import (
    BI,
    CROSS,
    perturb_results,
    synthetic_matrix,
    write_synthetic_baseline,
)


@pytest.fixture(scope="session")
def report(tmp_path_factory: pytest.TempPathFactory) -> MatrixReport:
    return synthetic_matrix(tmp_path_factory.mktemp("matrix"))


def _models(report: MatrixReport) -> List[Tuple[Dict[str, Any], Dict[str, Any]]]:
    return [(c, m) for c in document(report)["cells"] for m in (c["comparison"] or {}).get("models", [])]


# -- the matrix report dict -------------------------------------------------------------------------------------


def test_synthetic_matrix_has_the_intended_verdicts(report: MatrixReport) -> None:
    """Guards the fixture itself: the other tests rely on one passing and one doubly failing cell."""
    verdicts = {(c["cell_id"][:18], m["model_id"]): m["status"] for c, m in _models(report)}
    assert verdicts == {
        ("py3.11-torch2.13.0", BI): "pass", ("py3.11-torch2.13.0", CROSS): "pass",
        ("py3.11-torch2.14.0", BI): "fail", ("py3.11-torch2.14.0", CROSS): "fail",
    }


def test_build_computes_worst_status_and_counts(report: MatrixReport) -> None:
    assert document(report)["format_version"] == 1 and report.matrix == "smoke"
    assert report.status.value == "install-failed"
    assert report.counts == {"pass": 1, "incompatible": 1, "fail": 1, "run-failed": 1, "install-failed": 1, "error": 0}
    assert isinstance(report.cells[1].comparison, dict), "a live Comparison is serialized"


@pytest.mark.parametrize(
    "statuses, worst",
    [([], "pass"), (["pass"], "pass"), (["pass", "incompatible"], "incompatible"),
     (["incompatible", "fail", "pass"], "fail"), (["fail", "run-failed"], "run-failed"),
     (["run-failed", "install-failed"], "install-failed"), (["error", "fail"], "error")],
)
def test_worst_status_order(statuses: List[str], worst: str) -> None:
    assert CellStatus.worst(statuses) is CellStatus(worst)
    assert CellStatus.worst(CellStatus(s) for s in statuses).value == worst


def test_build_rejects_unknown_status_and_duplicate_ids() -> None:
    with pytest.raises(ValueError, match="unknown cell status"):
        build_matrix_report("m", "b", [{"cell_id": "a", "status": "passed"}])
    with pytest.raises(ValueError, match="duplicate cell id"):
        build_matrix_report("m", "b", [{"cell_id": "a", "status": "pass"}, {"cell_id": "a", "status": "fail"}])


def test_fmt_cosine_shows_the_distance_from_one() -> None:
    assert fmt_cosine(1.0) == "1"
    assert fmt_cosine(1 - 1.2e-7) == "1 - 1.2e-07"
    assert fmt_cosine(0.5) == "0.5"
    assert fmt_cosine(None) == "-"


# -- Markdown ---------------------------------------------------------------------------------------------------


def test_markdown_has_every_cell_model_status_and_number(report: MatrixReport) -> None:
    text = render_markdown(report)
    assert text.startswith("# Drift report: smoke — **INSTALL-FAILED** (2026-11-23)")
    for cell in document(report)["cells"]:
        assert f"`{cell['cell_id']}`" in text
    for cell, model in _models(report):
        metrics = model["metrics"]
        status = "**FAIL**" if model["status"] == "fail" else "pass"
        row = next(line for line in text.splitlines() if f"`{cell['cell_id']}` | `{model['model_id']}` | {status}" in line)
        assert fmt(metrics["max_abs_diff"]) in row
        if "min_cosine" in metrics:
            assert fmt_cosine(metrics["min_cosine"]) in row and "1 - " in row
        assert re.search(r"\d+\.\d% \((top-10|rerank) order\)", row)


def test_markdown_explains_failures_env_changes_and_non_run_cells(report: MatrixReport) -> None:
    text = render_markdown(report)
    failing = report.cells[1].comparison["models"]
    for model in failing:
        for check in (c for c in model["checks"] if not c["passed"]):
            assert f"`{check['name']}`" in text
    assert "queries reordered beyond score ties" in text
    assert "Worst items:" in text and r"`q000\|d" in text, "rerank offender ids keep their pipe, escaped"
    assert "| `packages.torch` | 2.13.0+cpu | 2.14.0+cpu |" in text
    assert "| `num_threads` | 2 | 4 |" in text
    assert "platform" not in text.split("## Environment changes")[1].split("## Failures")[0].replace("_1 other", "")
    assert "1 other fingerprint difference" in text
    assert "torch 1.13.1 has no wheel for python 3.13" in text
    assert "CUDA out of memory" in text
    assert r'pip: \<error\> &amp; "quotes" \| pipe \\x1b\[31mred' in text, "escaped, control codes made visible"
    assert "\x1b" not in text


def test_markdown_tables_have_consistent_columns(report: MatrixReport) -> None:
    """An unescaped pipe in an id or reason would shift a table's columns."""
    text = render_markdown(report)
    for block in re.split(r"\n(?!\|)", text):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        widths = {len(re.findall(r"(?<!\\)\|", line)) for line in rows}
        assert len(widths) <= 1, block


# -- JUnit ------------------------------------------------------------------------------------------------------


def test_junit_parses_with_right_counts(report: MatrixReport) -> None:
    root = ET.fromstring(render_junit(report).encode("utf-8"))
    assert root.tag == "testsuites"
    assert {k: root.get(k) for k in ("tests", "failures", "errors", "skipped")} == {
        "tests": "7", "failures": "2", "errors": "2", "skipped": "1"}
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert list(suites) == [c["cell_id"] for c in document(report)["cells"]]
    expected = {
        "py3.11-torch2.13.0-st6.2.0": ("2", "0", "0", "0"),
        "py3.11-torch2.14.0-st6.3.0": ("2", "2", "0", "0"),
        "py3.13-torch1.13.1-st2.7.0": ("1", "0", "0", "1"),
        "py3.12-torch2.4.0-st3.0.0": ("1", "0", "1", "0"),
        "py3.12-torch2.5.1-st3.3.0": ("1", "0", "1", "0"),
    }
    for name, counts in expected.items():
        suite = suites[name]
        assert tuple(suite.get(k) for k in ("tests", "failures", "errors", "skipped")) == counts, name
        assert len(suite.findall("testcase")) == int(counts[0])
        assert all(tc.get("classname") == "matrix." + name.replace(".", "_") for tc in suite.findall("testcase"))


def test_junit_content_of_failures_skips_errors_and_properties(report: MatrixReport) -> None:
    root = ET.fromstring(render_junit(report).encode("utf-8"))
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    failing = suites["py3.11-torch2.14.0-st6.3.0"]
    bi = failing.find(f"testcase[@name='{BI}']/failure")
    assert bi is not None and "max_abs_diff" in bi.get("message") and "elements" in bi.text and "worst items" in bi.text
    props = {p.get("name"): p.get("value") for p in failing.iter("property")}
    assert props["torch"] == "2.14.0" and props["cell.status"] == "fail"
    assert "packages.torch: 2.13.0+cpu -> 2.14.0+cpu" in failing.find("system-out").text
    skipped = suites["py3.13-torch1.13.1-st2.7.0"].find("testcase[@name='setup']/skipped")
    assert skipped.get("message") == "torch 1.13.1 has no wheel for python 3.13"
    error = suites["py3.12-torch2.4.0-st3.0.0"].find("testcase[@name='setup']/error")
    assert error.get("type") == "install-failed"
    assert "<error> & \"quotes\"" in error.get("message") and "\\x1b[31m" in error.text and "\x1b" not in error.text
    passing = suites["py3.11-torch2.13.0-st6.2.0"]
    # a pass: no failure, error or skipped element; only the checks with their limits and headroom
    assert [[child.tag for child in tc] for tc in passing.findall("testcase")] == [["system-out"], ["system-out"]]


def test_a_model_incompatible_inside_a_run_cell(tmp_path: Path) -> None:
    """The cell ran, one model could not load: a skipped testcase for it, no extra setup testcase, reason shown."""
    base = write_synthetic_baseline(tmp_path / "base.parquet")
    cand = perturb_results(base, tmp_path / "cand.parquet", incompatible={CROSS: "needs sentence-transformers >= 3"})
    cell = {"cell_id": "py3.10-torch2.2.0-st2.7.0", "status": "incompatible", "reason": "1 model incompatible",
            "comparison": compare_files(base, cand)}
    single = build_matrix_report("m", base, [cell])
    suite = ET.fromstring(render_junit(single)).find("testsuite")
    assert [tc.get("name") for tc in suite.findall("testcase")] == [BI, CROSS]
    assert suite.find(f"testcase[@name='{CROSS}']/skipped").get("message") == "candidate: needs sentence-transformers >= 3"
    assert (suite.get("tests"), suite.get("skipped"), suite.get("failures"), suite.get("errors")) == ("2", "1", "0", "0")
    assert r"candidate: needs sentence-transformers \>= 3" in render_markdown(single)
    page = render_html(single)
    assert "candidate: needs sentence-transformers &gt;= 3" in page and page.count('<svg class="histogram"') == 1


# -- JSON -------------------------------------------------------------------------------------------------------


def test_json_round_trips(report: MatrixReport) -> None:
    text = render_json(report)
    loaded = json.loads(text)
    assert loaded == json.loads(json.dumps(document(report), default=str))
    assert text == render_json(MatrixReport.from_dict(loaded)), "read and rendered again: unchanged"
    for cell in loaded["cells"]:
        if cell["comparison"]:
            again = Comparison.from_dict(cell["comparison"]).serialize()
            assert json.loads(json.dumps(again, default=str)) == cell["comparison"]


# -- HTML -------------------------------------------------------------------------------------------------------


class _TagChecker(html.parser.HTMLParser):
    """Fails on unbalanced non-void tags: a cheap well-formedness check without a browser."""

    VOID = {"meta", "br", "hr", "img", "input", "link", "line", "rect", "circle", "polyline", "path"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: List[str] = []
        self.tags: Dict[str, int] = {}

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: Any) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()


def test_html_is_self_contained_with_plots(report: MatrixReport) -> None:
    page = render_html(report)
    checker = _TagChecker()
    checker.feed(page)
    checker.close()
    assert checker.stack == ["html"] or checker.stack == [], checker.stack
    assert page.count('<svg class="histogram"') == len(_models(report)) == 4
    assert page.count("tolerance 1.00e-05") == 4
    lowered = page.lower()
    for forbidden in ("<script", "<link", "url(", "@import", "http://", "https://", "<iframe", "<img"):
        assert forbidden not in lowered, forbidden
    for cell in document(report)["cells"]:
        assert cell["cell_id"] in page
    assert "&lt;error&gt; &amp; &quot;quotes&quot;" in page and "<error>" not in page
    assert "torch 1.13.1 has no wheel for python 3.13" in page
    assert "Kendall τ (min)" in page and "top-10 order" in page
    assert "packages.torch" in page and "2.14.0+cpu" in page


def test_histogram_svg_marks_bins_beyond_tolerance() -> None:
    hist = Histogram([10.0 ** e for e in range(-12, 2)], [0] * 6 + [5, 0, 2] + [0] * 4, [9])
    svg = histogram_svg(hist, 1e-5)
    assert svg.startswith("<svg") and "exactly equal: 9" in svg and "tolerance 1.00e-05" in svg
    assert len(re.findall(r'<rect[^>]*fill="#cf222e"', svg)) == 1, "only the bin at 1e-4 lies beyond the tolerance"
    assert "exactly equal: 9" in histogram_svg(hist, None)
    assert "no difference histogram" in histogram_svg(None, 1e-5)
    assert "no difference histogram" in histogram_svg(Histogram([1e-3], [], [0]), 1e-5)


# -- files and history ------------------------------------------------------------------------------------------


def test_publish_writes_four_formats_and_the_verdict_table(report: MatrixReport, tmp_path: Path) -> None:
    paths = publish_matrix_report(report, tmp_path / "out")
    files = ["junit.xml", "report.html", "report.json", "summary.md", "verdicts.csv", "verdicts.parquet"]
    assert sorted(p.name for p in paths.values()) == files  # four formats plus the flat verdict table
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == files
    assert paths["markdown"].read_text(encoding="utf-8") == render_markdown(report)
    assert json.loads(paths["json"].read_text(encoding="utf-8"))["status"] == report.status.value
    ET.parse(paths["junit"])


def test_history_appends_two_runs_and_renders_a_trend(report: MatrixReport, tmp_path: Path) -> None:
    path = tmp_path / "deep" / "history.jsonl"
    later = dataclasses.replace(report, created_at="2026-11-24T15:00:00+00:00")
    append_line(path, report.history_line.to_json())
    append_line(path, later.history_line.to_json())
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    history = load_history(path)
    assert [h.created_at for h in history] == [report.created_at, later.created_at]
    first = history[0]
    assert first.matrix == "smoke" and first.status == "install-failed"
    failing = first.cells["py3.11-torch2.14.0-st6.3.0"]
    assert failing.status == "fail"
    assert failing.max_abs_diff[BI] == report.cells[1].comparison["models"][0]["metrics"]["max_abs_diff"]
    assert set(failing.min_cosine) == {BI}, "cross-encoders have no cosine"
    assert json.loads(lines[0])["cells"]["py3.13-torch1.13.1-st2.7.0"] == {"status": "incompatible", "max_abs_diff": {},
                                                                          "min_cosine": {}}
    assert [HistoryEntry.from_json(line).to_json() for line in lines] == lines, "a log line reads back and writes as it was"
    markdown = render_markdown(published(later, None, history))
    assert "## Trend" in markdown and " → " in markdown
    page = render_html(published(later, None, history))
    assert 'id="trend"' in page and page.count('<svg class="sparkline"') == 4


def test_load_history_skips_a_torn_last_line_but_not_corruption(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    assert load_history(path) == []
    path.write_text('{"matrix": "m", "cells": {}}\n{"matrix": "m", "cel', encoding="utf-8")
    assert len(load_history(path)) == 1
    path.write_text('{"matrix": "m"}\nnot json\n{"matrix": "m"}\n', encoding="utf-8")
    with pytest.raises(MatrixError, match=r"history.jsonl:2"):
        load_history(path)
    for wrong in ('[1]', '{"cells": [1]}', '{"cells": {"c": "pass"}}'):
        path.write_text(f'{{"matrix": "m"}}\n{wrong}\n', encoding="utf-8")
        with pytest.raises(MatrixError, match=r"history.jsonl:2: not a history record"):
            load_history(path)
    path.write_text('{"cells": {"c": {"status": 1, "max_abs_diff": {"x": "big", "y": 0.5}}}}\n', encoding="utf-8")
    assert load_history(path)[0].cells["c"] == ("1", {"x": None, "y": 0.5}, {}), "a hand-edited number reads as none"


def test_append_after_a_torn_last_line_keeps_the_log_readable(report: MatrixReport, tmp_path: Path) -> None:
    """A run killed mid-append by an older harness left half a line; the next append must not glue onto it."""
    path = tmp_path / "history.jsonl"
    path.write_text('{"matrix": "m", "cells": {}}\n{"matrix": "m", "cel', encoding="utf-8")
    append_line(path, report.history_line.to_json())
    assert [h.matrix for h in load_history(path)] == ["m", "smoke"]
    assert path.read_text(encoding="utf-8").endswith("\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.jsonl"], "no temp or lock file left behind"


def test_publish_refuses_a_corrupt_history_before_writing_anything(report: MatrixReport, tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    corrupt = '{"matrix": "m"}\nnot json\n{"matrix": "m"}\n'
    path.write_text(corrupt, encoding="utf-8")
    with pytest.raises(MatrixError, match=r"history.jsonl:2: not a JSON history line"):
        publish_matrix_report(report, tmp_path / "out", path)
    assert not (tmp_path / "out").exists()
    assert path.read_text(encoding="utf-8") == corrupt
    written = publish_matrix_report(report, tmp_path / "out", tmp_path / "fresh.jsonl")
    assert "## Trend" in written["markdown"].read_text(encoding="utf-8"), "the run just appended is in the trend"
    assert len(load_history(tmp_path / "fresh.jsonl")) == 1


def test_a_report_that_cannot_be_written_adds_no_history_line(report: MatrixReport, tmp_path: Path) -> None:
    """The run's line is added after the report's files: a run that published nothing is not in the trend."""
    path, blocked = tmp_path / "history.jsonl", tmp_path / "out"
    publish_matrix_report(report, tmp_path / "first", path)
    blocked.write_text("a file where the report's folder should be", encoding="utf-8")
    with pytest.raises(OSError):
        publish_matrix_report(dataclasses.replace(report, created_at="2026-11-25T09:00:00+00:00"), blocked, path)
    assert [h.created_at for h in load_history(path)] == [report.created_at]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first", "history.jsonl", "history.parquet", "out"]


def test_concurrent_appends_never_interleave(report: MatrixReport, tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    threads = [threading.Thread(target=append_line, args=(path, report.history_line.to_json())) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(load_history(path)) == 16


# -- one real run -----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_tiny_runs_render_in_every_format(tiny_results: Path, tiny_results_again: Path, tmp_path: Path) -> None:
    """The tiny models at batch 32 vs batch 1 (real fp32 noise) and vs a 1e-4-perturbed copy (drift).

    ``tiny_results`` / ``tiny_results_again`` are conftest's session runs (one real run each per session).
    """
    base, batch1 = tiny_results, tiny_results_again
    drifted = perturb_results(base, tmp_path / "c.parquet", noise={BI: 1e-4}, seed=3)
    cells = [
        {"cell_id": "batch1", "status": "pass", "params": {"batch_size": "1"}, "comparison": compare_files(base, batch1)},
        {"cell_id": "perturbed", "status": "fail", "params": {"noise": "1e-4"}, "comparison": compare_files(base, drifted)},
    ]
    assert [c["comparison"].status.value for c in cells] == ["pass", "fail"]
    report = build_matrix_report("tiny-real", base, cells)
    paths = publish_matrix_report(report, tmp_path / "out")
    root = ET.parse(paths["junit"]).getroot()
    assert (root.get("tests"), root.get("failures")) == ("4", "1")
    page = paths["html"].read_text(encoding="utf-8")
    assert page.count('<svg class="histogram"') == 4
    summary = paths["markdown"].read_text(encoding="utf-8")
    assert "`perturbed` | `tiny-bi-encoder` | **FAIL**" in summary and "`batch1` | `tiny-cross-encoder` | pass" in summary


def test_html_pairs_share_one_formatter_and_time_says_setup_plus_run(report: MatrixReport) -> None:
    """Issue 26: baseline and candidate numbers were printed with different digits (``3e+03`` next to ``3500``);
    "Time" did not say it is setup + run; a long value was one unbreakable line."""
    from harness.report.format import fmt_pair

    assert fmt_pair(2999.998, 3500.0) == ("3000", "3500")
    assert fmt_pair(0.5, 0.123456) == ("0.500", "0.123")
    assert fmt_pair(1e-4, 0.5) == ("1.00e-04", "5.00e-01")
    assert fmt_pair(1.0, 1.0000001) == ("1.0000000", "1.0000001")  # digits until two values read differently
    assert fmt_pair(8, 16) == ("8", "16") and fmt_pair("a", 1.5) == ("a", "1.5")
    cell = next(c for c in document(report)["cells"] if c["status"] == "fail")
    changes = [*cell["comparison"]["env_changes"], {"key": "num_threads", "baseline": 2999.998, "candidate": 3500.0},
               {"key": "blas_runtime", "baseline": "x" * 1000, "candidate": "y" * 10}]
    page = render_html(MatrixReport.from_dict({**document(report), "cells": [{**cell, "comparison": {**cell["comparison"], "env_changes": changes}}]}))
    assert "<th>Time (setup + run)</th>" in page
    assert '<td class="num">3000</td><td class="num">3500</td>' in page
    assert f'<td class="val" title="{"x" * 1000}">{"x" * 239}…</td><td class="val">{"y" * 10}</td>' in page
