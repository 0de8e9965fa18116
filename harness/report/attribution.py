"""Render an attribution waterfall (a ``harness.matrix.attribution.Waterfall``) as Markdown, JSON and HTML: each
row the drift that step alone caused, and the drift accumulated so far.
"""

from __future__ import annotations

import html
import json
import math
from typing import TYPE_CHECKING, Dict, List, Optional

from harness.report.format import fmt, fmt_cosine, fmt_percent

if TYPE_CHECKING:
    from harness.matrix.attribution import Drift, StepDrift, Waterfall

__all__ = ["render_attribution_markdown", "render_attribution_json", "render_attribution_html"]


def _change(row: StepDrift, previous: Optional[StepDrift]) -> str:
    params, runtime = row.planned.params, row.planned.runtime
    if previous is None:
        return ", ".join(f"{k} {v}" for k, v in params.items() if k != "extra") + f", {runtime.dtype}"
    before = previous.planned
    return "; ".join(f"{f} {before.params.get(f, '-')} -> {params[f]}" if f in params
                     else f"{f} {getattr(before.runtime, f, None)} -> {getattr(runtime, f, None)}"
                     for f in row.planned.factors)


def _rows(data: Waterfall) -> List[List[str]]:
    out = []
    for i, row in enumerate(data.steps):
        change = _change(row, data.steps[i - 1] if i else None)
        if row.error:
            out.append([row.name, change, "-", "-", "-", "-", "-", f"did not run: {row.error}"])
            continue
        if not row.models:
            out.append([row.name, change, "-", "-", "-", "-", "-", row.note])
        out += [[row.name, change, model_id, fmt(step.max_abs_diff), fmt_cosine(step.min_cosine),
                 fmt_percent(step.order_agreement), fmt(total.max_abs_diff if total else None), row.note]
                for model_id, (step, total) in row.models.items()]
    return out


def render_attribution_markdown(data: Waterfall) -> str:
    header = ["step", "change", "model", "step max abs diff", "step min cosine", "step order agreement",
              "cumulative max abs diff", "note"]
    lines = ["# Drift attribution", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in _rows(data)]
    causes = data.main_cause
    if causes:
        lines += ["", "Main cause per model (the step that alone moved the numbers most):", ""]
        lines += [f"- **{m}**: `{c.step}` (max abs diff {fmt(c.max_abs_diff)})" for m, c in causes.items()]
    orders = (data.plan.orders if data.plan is not None else None) or ()
    if len(orders) > 1:  # a step installed but did not run, and the walk was planned again around it
        lines += ["", "Orders tried (a step that installs but does not run has the rest planned again around it):", ""]
        lines += [f"{i}. {', '.join(o.order)}: " + ("run" if not o.rejected else
                  f"given up, {o.rejected}" if i < len(orders) else f"run, but {o.rejected}")
                  for i, o in enumerate(orders, start=1)]
    return "\n".join(lines) + "\n"


def render_attribution_json(data: Waterfall) -> str:
    return json.dumps(data.to_dict(), indent=2, sort_keys=True, default=str)


def _bar(value: Optional[float], width: int = 360) -> str:
    """A log-scale bar from 1e-9 to 1e-1 for one step's max abs diff."""
    if not value:
        return '<svg width="%d" height="14"></svg>' % width
    frac = min(max((math.log10(value) + 9) / 8, 0.0), 1.0)
    colour = "#c0392b" if value > 1e-5 else "#2e86c1"
    return (f'<svg width="{width}" height="14" role="img" aria-label="{fmt(value)}">'
            f'<rect x="0" y="2" width="{frac * width:.1f}" height="10" fill="{colour}"/></svg>')


def render_attribution_html(data: Waterfall) -> str:
    """A self-contained page: the waterfall as a table with log-scale bars (no scripts, no external files)."""
    body = []
    for row in data.steps:
        shown: Dict[str, Optional[Drift]] = {m: s for m, (s, _) in row.models.items()} or {"-": None}
        for model_id, step in shown.items():
            value = step.max_abs_diff if step else None
            body.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in (
                html.escape(row.name), html.escape(model_id), html.escape(fmt(value)), _bar(value),
                html.escape(fmt_cosine(step.min_cosine if step else None)), html.escape(row.note or row.error or ""))) + "</tr>")
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Drift attribution</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;font-size:14px}th{background:#f4f4f4}</style></head><body>"
        "<h1>Drift attribution</h1><p>Each bar: max abs difference caused by that step alone, log scale 1e-9 .. 1e-1;"
        " red above 1e-5.</p><table><tr><th>step</th><th>model</th><th>max abs diff</th><th>(log scale)</th>"
        "<th>min cosine</th><th>note</th></tr>" + "".join(body) + "</table></body></html>"
    )
