"""Markdown rendering of a matrix report: for PR comments and CI job summaries, where there is no HTML or JS.

Renders only from ``MatrixReport``, so it cannot disagree with the JSON, JUnit or HTML rendering of the run.
"""

from __future__ import annotations

import re
from typing import Any, List, Sequence

from harness.report import accuracy_lines
from harness.report.format import fmt, fmt_cosine
from harness.report.matrix_report import TREND_RUNS, MatrixReport, ReportCell, TrendRow
from harness.report.scenario_lines import COLUMNS, HEADING
from harness.report.text import (
    ORDER_FIGURES_NOTE,
    check_line,
    fmt_drift,
    fmt_used,
    order_shown,
    speed_cells,
    would_pass,
)
from harness.verdict import CellStatus, ModelVerdict, Status

__all__ = ["render_markdown", "md_escape"]
_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def md_escape(text: Any) -> str:
    """Prose in a table cell: one line, Markdown and HTML specials escaped (ids like ``q1|d2`` contain pipes)."""
    flat = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", " ".join(str(text).split()))
    return _SPECIAL.sub(r"\\\1", flat.replace("&", "&amp;"))


def _code(text: Any) -> str:
    """An identifier as inline code; pipes still need escaping inside GFM tables."""
    flat = _CONTROL.sub("?", " ".join(str(text).split())).replace("|", "\\|")
    fence = "``" if "`" in flat else "`"
    return f"{fence} {flat} {fence}" if fence == "``" else f"`{flat}`"


def _status(status: CellStatus) -> str:
    """A cell's or model's status word (one vocabulary); bold and upper case where someone needs to act."""
    return f"**{status.value.upper()}**" if status.failing else status.value


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _section(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    """A ``##`` section holding one table; nothing at all without rows."""
    return ["", f"## {title}", ""] + _table(header, rows) if rows else []


# -- sections ---------------------------------------------------------------------------------------------------


def _header(report: MatrixReport) -> List[str]:
    counts = report.counts
    summary = ", ".join(f"{counts[s.value]} {s.value}" for s in CellStatus if counts.get(s.value))
    return [
        f"# Drift report: {md_escape(report.matrix)} — {_status(report.status).upper()} ({report.created_at[:10]})",
        "",
        f"- created: {md_escape(report.created_at or '-')}",
        f"- baseline: {_code(report.baseline)}",
        f"- policy: {_code(report.policy)}",
        f"- cells: {len(report.cells)} ({summary or 'none'})",
        f"- scope: {md_escape(report.scope)}",
    ]


def _summary_row(cell: ReportCell, model: ModelVerdict) -> List[str]:
    return [_code(cell.cell_id), _code(model.model_id), _status(model.status), fmt_drift(model),
            fmt_cosine(model.metrics.min_cosine), md_escape(order_shown(model)), md_escape(model.tolerance_class),
            _worst_check(model),
            md_escape(accuracy_lines.ratio_text(model.accuracy.measured.ratio)) if model.accuracy else "-"]


def _worst_check(model: ModelVerdict) -> str:
    """The check closest to (or furthest over) its limit, with the share of the allowance it used."""
    if not model.checks:
        return "-"
    worst = max(model.checks, key=lambda c: float("inf") if c.used is None else c.used)
    return f"{_code(worst.name)} {md_escape(fmt_used(worst))}"


def _run_time(cell: ReportCell) -> str:
    """The cell's run seconds and the model compute part of them (the rest is imports and model loading)."""
    times = cell.times
    return times.run + (f" ({times.compute})" if cell.run_s is not None and times.compute is not None else "")


def _summary(report: MatrixReport) -> List[str]:
    rows: List[List[str]] = []
    for cell in report.cells:
        rows += [[*_summary_row(cell, m), _run_time(cell) if i == 0 else ""] for i, m in enumerate(cell.models)]
        if not cell.models:
            rows.append([_code(cell.cell_id), "(not run)", _status(cell.status), "-", "-", "-", "-", "-", "-",
                         _run_time(cell)])
    header = ["Cell", "Model", "Verdict", "Max drift", "Min cosine", "Order agreement", "Class", "Closest check (limit used)",
              "Error vs fp64 (of the baseline's)", "Run (compute)"]
    decided = [f"- {_code(cell.cell_id)} / {_code(m.model_id)}: {md_escape(cell.words[m.model_id].decided)}"
               for cell, m in report.verdicts if cell.words[m.model_id].decided]
    return ["", "## Summary", ""] + _table(header, rows) + (["", *decided] if decided else [])


def _scenarios(report: MatrixReport) -> List[str]:
    """"Must I re-embed?": the overview (a column per scenario), then the line per cell and model."""
    found = [(cell.cell_id, row) for cell in report.cells for row in cell.scenarios]
    rows = [[md_escape(text) for text in (cell_id, row.model_id, row.advice, *row.shares)] for cell_id, row in found]
    lines = [f"- {_code(cell_id)} / {_code(row.model_id)}: {md_escape(row.line)}" for cell_id, row in found]
    return ["", f"## {HEADING}", "", *_table(["Cell", "Model", "Advice", *COLUMNS.values()], rows), "", *lines] if found else []


def _notes(report: MatrixReport) -> List[str]:
    """What the comparisons say beyond their verdicts (a file compared with itself passes by construction)."""
    lines = [f"- {_code(cell.cell_id)}: {md_escape(note)}" for cell in report.cells for note in cell.notes]
    return ["", "## Notes", ""] + lines if lines else []


def _checks(report: MatrixReport) -> List[str]:
    """Every check with its limit and the share of the allowance used (100% = at the limit; headroom is the rest)."""
    rows = [
        [_code(cell.cell_id), _code(model.model_id), _code(c.name), fmt(c.observed),
         f"{md_escape(c.op)} {fmt(c.limit)}", md_escape(fmt_used(c)), "pass" if c.passed else "**FAIL**"]
        for cell, model in report.verdicts
        for c in model.checks
    ]
    if not rows:
        return []
    table = _table(["Cell", "Model", "Check", "Observed", "Limit", "Used", "Result"], rows)
    return (["", "## Checks", "", f"Judged by {_code(report.policy)}. Used: the share of each limit's allowance "
             "the drift used (`<=` checks: observed / limit; `>=` checks: (1 - observed) / (1 - limit)).", "",
             "<details><summary>every check</summary>", ""] + table
            + ["", "</details>", "", f"_Order figures: {md_escape(ORDER_FIGURES_NOTE)}_"])


def _short(value: Any) -> str:
    """Hashes cut to 12 characters: enough to tell two apart, short enough for a table."""
    text = fmt(value)
    return text[:12] + "…" if re.fullmatch(r"[0-9a-f]{40,}", text) else text


def _env_section(report: MatrixReport) -> List[str]:
    lines = ["", "## Environment changes vs baseline"]
    for cell in report.cells:
        if cell.comparison is None:
            continue
        lines += ["", f"### {md_escape(cell.cell_id)}", ""]
        if cell.env_shown:
            rows = [[md_escape(group), _code(c.key), md_escape(_short(c.baseline)), md_escape(_short(c.candidate))]
                    for group, c in cell.env_shown]
            lines += _table(["Group", "Key", "Baseline", "Candidate"], rows)
        else:
            lines.append("No package, device, precision, hardware, kernel or run-setting changes.")
        if cell.env_hidden:
            lines += ["", f"_{cell.env_hidden} other fingerprint difference(s) not shown (see report.json)._"]
    return lines


def _failed_model(cell: ReportCell, model: ModelVerdict) -> List[str]:
    lines = [
        "",
        f"### {md_escape(cell.cell_id)} / {md_escape(model.model_id)}: {_status(model.status)} "
        f"(class {md_escape(model.tolerance_class)})",
        "",
    ]
    failed = model.failed_checks
    lines += [f"- {md_escape(check_line(check))} — {md_escape(check.detail)}" for check in failed]
    if not failed and model.reason:
        lines.append(f"- {md_escape(model.reason)}")
    if failed and model.min_passing:
        lines.append(f"- would pass with: {would_pass(model, md_escape)}")
    lines += [f"- {md_escape(line.strip())}" for line in cell.words[model.model_id].accuracy]
    if model.offenders:
        rows = [[_code(o.item_id), md_escape(o.metric), fmt(o.value), md_escape(o.detail)] for o in model.offenders]
        lines += ["", "Worst items:", ""] + _table(["Item", "Metric", "Value", "Detail"], rows)
    return lines


def _failures(report: MatrixReport) -> List[str]:
    lines = [line for cell, model in report.verdicts if model.status is not Status.PASS
             for line in _failed_model(cell, model)]
    return ["", "## Failures explained"] + lines if lines else []


def _not_run(report: MatrixReport) -> List[str]:
    """Cells without a comparison, or whose status says setup, install or the run itself went wrong."""
    rows = [[_code(c.cell_id), _status(c.status), md_escape(c.reason or "-"), c.times.setup]
            for c in report.cells if c.incomplete]
    return _section("Cells that did not run (or not completely)", ["Cell", "Status", "Reason", "Setup"], rows)


def _trend(trend: Sequence[TrendRow]) -> List[str]:
    rows = [[_code(row.cell_id), _code(row.model_id), str(len(row.points)),
             " → ".join(f"**{fmt(v)}**" if s is CellStatus.FAIL else fmt(v) for _, s, v in row.points)] for row in trend]
    return _section(f"Trend (max abs diff, last {TREND_RUNS} runs, oldest → newest; failing runs in bold)",
                    ["Cell", "Model", "Runs", "Max abs diff"], rows)


def _speed(report: MatrixReport) -> List[str]:
    """Throughput and memory per cell and model: how each environment (CPU, GPU type) runs the models."""
    rows = [[_code(cell.cell_id), _code(model.model_id), *(md_escape(c) for c in speed_cells(model))]
            for cell, model in report.verdicts if model.performance]
    header = ["Cell", "Model", "Device", "Texts/s", "vs baseline", "CUDA peak", "Run peak RSS"]
    return _section("Speed and memory (reported, not judged)", header, rows)


def render_markdown(report: MatrixReport) -> str:
    """The whole matrix as GitHub-flavoured Markdown: summary, env changes, failures, not-run cells, trend (the
    history log's, read when the report was built)."""
    lines = _header(report) + _summary(report) + _scenarios(report) + _notes(report) + _checks(report)
    lines += _env_section(report) + _failures(report) + _not_run(report) + _speed(report) + _trend(report.trend)
    return "\n".join(lines) + "\n"
