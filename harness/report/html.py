"""Self-contained HTML rendering of a matrix report: one file with inline CSS and inline SVG, no scripts.

It has to open from disk, from a CI artifact or an air-gapped machine, so nothing is loaded from anywhere: no
JS, no web fonts, no plotting library. Plots are SVG built from the numbers already in the report. Every piece
of text from the data goes through ``html.escape``.
"""

from __future__ import annotations

import html
import math
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from harness.report.matrix import (
    CELL_STATUSES,
    NOT_RUN_STATUSES,
    diff_tolerance,
    fmt_cosine,
    fmt_percent,
    history_series,
    meaningful_env_changes,
    report_models,
)
from harness.report.text import fmt, fmt_drift, speed_cells

__all__ = ["render_html", "histogram_svg", "TREND_RUNS"]

TREND_RUNS = 10
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")

_CSS = """
:root { --pass:#1a7f37; --pass-bg:#dafbe1; --fail:#cf222e; --fail-bg:#ffebe9; --incompatible:#7d5b00;
  --incompatible-bg:#fff5c2; --error:#8250df; --error-bg:#fbefff; --ink:#1f2328; --muted:#59636e;
  --line:#d1d9e0; --panel:#f6f8fa; --bar:#3b6fd8; }
* { box-sizing: border-box; }
body { margin: 0; background: #fff; color: var(--ink); font: 14px/1.5 system-ui, -apple-system, "Segoe UI",
  Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1320px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { font-size: 26px; margin: 0 0 6px; display: flex; gap: 12px; align-items: center; flex-wrap: wrap; }
h2 { font-size: 20px; margin: 36px 0 12px; padding-bottom: 6px; border-bottom: 1px solid var(--line);
  display: flex; gap: 10px; align-items: center; flex-wrap: wrap; }
h3 { font-size: 16px; margin: 0; display: flex; gap: 10px; align-items: center; flex-wrap: wrap; }
h4 { font-size: 13px; margin: 16px 0 6px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
h2 code, h3 code { font-size: 0.92em; }
.nowrap { white-space: nowrap; }
.meta { color: var(--muted); margin: 2px 0; }
.meta code { color: var(--ink); }
.chips { display: flex; gap: 8px; margin: 12px 0 0; flex-wrap: wrap; }
.badge { display: inline-block; padding: 1px 9px; border-radius: 999px; font-size: 12px; font-weight: 600;
  letter-spacing: .03em; text-transform: uppercase; border: 1px solid currentColor; white-space: nowrap; }
.s-pass { color: var(--pass); background: var(--pass-bg); }
.s-fail { color: var(--fail); background: var(--fail-bg); }
.s-incompatible { color: var(--incompatible); background: var(--incompatible-bg); }
.s-run-failed, .s-install-failed, .s-error { color: var(--error); background: var(--error-bg); }
table { border-collapse: collapse; width: 100%; margin: 6px 0 4px; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--panel); font-size: 12px; color: var(--muted); font-weight: 600; white-space: nowrap; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; font-family: ui-monospace, SFMono-Regular,
  Menlo, Consolas, monospace; font-size: 12.5px; }
table.overview td.verdict { text-align: center; min-width: 150px; }
table.overview td.verdict .big { display: block; font-weight: 700; text-transform: uppercase; font-size: 12px; }
table.overview td.verdict .small { display: block; font-size: 12px; font-variant-numeric: tabular-nums; }
table.overview td.reason { font-size: 12.5px; }
a { color: #0969da; text-decoration: none; }
a:hover { text-decoration: underline; }
section.cell { margin-top: 28px; }
.callout { border-left: 4px solid currentColor; padding: 8px 14px; margin: 10px 0; border-radius: 4px; }
.callout pre { margin: 0; white-space: pre-wrap; word-break: break-word; color: var(--ink);
  font: 12.5px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 14px 18px 12px; margin: 14px 0; }
.card.s-pass, .card.s-fail, .card.s-incompatible, .card.s-error { background: #fff; color: var(--ink);
  border-left-width: 5px; }
.card.s-pass { border-left-color: var(--pass); }
.card.s-fail { border-left-color: var(--fail); }
.card.s-incompatible { border-left-color: var(--incompatible); }
.card.s-error { border-left-color: var(--error); }
.card h3 small { color: var(--muted); font-weight: 400; font-size: 13px; }
.grid { display: grid; grid-template-columns: 540px minmax(0, 1fr); gap: 24px; margin-top: 10px; }
@media (max-width: 1000px) { .grid { grid-template-columns: minmax(0, 1fr); } }
figure { margin: 0; }
svg.sparkline { display: block; }
figcaption { color: var(--muted); font-size: 12px; margin-top: 2px; }
svg text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; }
dl.metrics { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
dl.metrics dt { color: var(--muted); }
dl.metrics dd { margin: 0; font-variant-numeric: tabular-nums; font-family: ui-monospace, SFMono-Regular, Menlo,
  Consolas, monospace; font-size: 12.5px; }
.bars { margin-top: 4px; }
.bar-row { display: grid; grid-template-columns: 150px minmax(0, 1fr) 74px; gap: 10px; align-items: center;
  margin: 5px 0; }
.bar-label { color: var(--muted); font-size: 12.5px; }
.bar-track { position: relative; height: 12px; background: #eaeef2; border-radius: 6px; }
.bar-fill { position: absolute; left: 0; top: 0; bottom: 0; border-radius: 6px; background: var(--bar); }
.bar-fill.ok { background: var(--pass); }
.bar-fill.bad { background: var(--fail); }
.bar-limit { position: absolute; top: -3px; bottom: -3px; width: 2px; background: var(--ink); }
.bar-value { font-variant-numeric: tabular-nums; text-align: right; font-size: 12.5px; }
.checks td.res-pass { color: var(--pass); font-weight: 600; }
.checks td.res-fail { color: var(--fail); font-weight: 600; }
.note { color: var(--muted); font-size: 12.5px; margin: 4px 0; }
details { margin: 10px 0; }
details summary { cursor: pointer; color: var(--muted); font-weight: 600; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--line); padding-top: 10px; }
"""


def _e(value: Any) -> str:
    """Escaped text; control characters (terminal colour codes in a pip log) shown as ``\\xNN``."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", "" if value is None else str(value))
    return html.escape(text, quote=True)


def _status_class(status: str) -> str:
    """A CSS class from a status word; anything unexpected still maps to a safe class name."""
    return "s-" + re.sub(r"[^a-z-]", "", str(status).lower())


def _badge(status: str) -> str:
    return f'<span class="badge {_status_class(status)}">{_e(status)}</span>'


def _anchor(index: int, cell_id: str) -> str:
    return f"cell-{index}-" + re.sub(r"[^A-Za-z0-9_.-]", "-", cell_id)


def _seconds(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], css: str = "") -> str:
    """Rows are already-escaped HTML cells (``<td>`` included) so callers can set classes per cell."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(f"<tr>{''.join(r)}</tr>" for r in rows)
    cls = f' class="{css}"' if css else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _td(text: Any, css: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    return f"<td{cls}>{_e(text)}</td>"


# -- header and overview ----------------------------------------------------------------------------------------


def _header(report: Dict[str, Any]) -> str:
    counts = report.get("counts", {})
    chips = "".join(
        f'<span class="badge {_status_class(s)}">{counts[s]} {_e(s)}</span>' for s in CELL_STATUSES if counts.get(s)
    )
    return (
        f"<header><h1>Drift report: {_e(report['matrix'])} {_badge(report['status'])}</h1>"
        f'<p class="meta">created {_e(report.get("created_at", "-"))} · baseline <code>{_e(report.get("baseline", "-"))}</code>'
        f" · {len(report['cells'])} cell(s)</p>"
        f'<div class="chips">{chips}</div></header>'
    )


def _param_keys(report: Dict[str, Any]) -> List[str]:
    seen: Dict[str, None] = {}
    for cell in report["cells"]:
        for key in cell.get("params", {}):
            seen.setdefault(key, None)
    return list(seen)


def _verdict_td(model: Optional[Dict[str, Any]]) -> str:
    if model is None:
        return '<td class="verdict">-</td>'
    return (
        f'<td class="verdict {_status_class(model["status"])}"><span class="big">{_e(model["status"])}</span>'
        f'<span class="small">max |Δ| {_e(fmt_drift(model.get("metrics", {})))}</span></td>'
    )


def _overview_row(index: int, cell: Dict[str, Any], params: List[str], models: List[str]) -> List[str]:
    row = [f'<td class="nowrap"><a href="#{_anchor(index, cell["cell_id"])}"><code>{_e(cell["cell_id"])}</code></a></td>']
    row += [_td(cell.get("params", {}).get(k, "-"), "num") for k in params]
    row.append(f'<td>{_badge(cell["status"])}</td>')
    comparison = cell.get("comparison")
    if comparison is None:
        reason = cell.get("reason") or cell["status"]
        short = reason if len(reason) <= 160 else reason[:159] + "…"
        span = max(len(models), 1)
        row.append(f'<td class="reason {_status_class(cell["status"])}" colspan="{span}">{_e(short)}</td>')
    else:
        by_id = {m["model_id"]: m for m in comparison.get("models", [])}
        row += [_verdict_td(by_id.get(model_id)) for model_id in models] or ['<td class="verdict">-</td>']
    total = sum(float(cell[k]) for k in ("setup_s", "run_s") if cell.get(k) is not None)
    has_time = any(cell.get(k) is not None for k in ("setup_s", "run_s"))
    row.append(_td(_seconds(total) if has_time else "-", "num"))
    return row


def _overview(report: Dict[str, Any]) -> str:
    params, models = _param_keys(report), report_models(report)
    header = ["Cell", *params, "Status", *(models or ["Models"]), "Time"]
    rows = [_overview_row(i, c, params, models) for i, c in enumerate(report["cells"])]
    return f'<section id="overview"><h2>Overview</h2>{_table(header, rows, "overview")}</section>'


# -- histogram --------------------------------------------------------------------------------------------------


def _power(value: float) -> str:
    exponent = round(math.log10(value))
    if math.isclose(value, 10.0 ** exponent, rel_tol=1e-9):
        return "10" + str(exponent).translate(_SUPERSCRIPT)
    return fmt(value)


def _zeros(hist: Dict[str, Any]) -> int:
    """The comparator stores ``zeros`` as a one-element list; accept a plain int too."""
    zeros = hist.get("zeros", 0)
    return int(sum(zeros)) if isinstance(zeros, (list, tuple)) else int(zeros or 0)


def _bar_class(low: float, high: float, tolerance: Optional[float]) -> str:
    if tolerance is None or high <= tolerance:
        return "#3b6fd8"
    return "#cf222e" if low >= tolerance else "#d4a72c"


def histogram_svg(hist: Dict[str, Any], tolerance: Optional[float], title: str = "") -> str:
    """Decade histogram of |candidate - baseline| (log x, log y) with the tolerance as a dashed vertical line."""
    edges = [float(e) for e in hist.get("edges", [])]
    counts = [int(c) for c in hist.get("counts", [])]
    if len(edges) < 2 or len(counts) != len(edges) - 1 or min(edges) <= 0:
        return '<p class="note">no difference histogram in this comparison</p>'
    zeros = _zeros(hist)
    width, height, left, right, top, bottom = 520, 230, 50, 14, 36, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    slot = plot_w / (len(counts) + 1.6)
    start = left + 1.6 * slot
    lo, hi = math.log10(edges[0]), math.log10(edges[-1])

    def x_of(value: float) -> float:
        clamped = min(max(value, edges[0]), edges[-1])
        return start + (math.log10(clamped) - lo) / (hi - lo) * (plot_w - 1.6 * slot)

    peak = max([zeros, *counts, 1])
    scale = math.log10(peak + 1)

    def h_of(count: int) -> float:
        return 0.0 if count <= 0 else max(2.0, math.log10(count + 1) / scale * plot_h)

    base_y = top + plot_h
    parts = [
        f'<svg class="histogram" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title or "absolute difference histogram")}">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    parts += _y_grid(peak, scale, left, width - right, base_y, plot_h)
    parts += _bar(left + 0.2 * slot, 1.0 * slot, h_of(zeros), base_y, "#8c959f", f"exactly equal: {zeros}", zeros)
    parts.append(f'<text x="{left + 0.7 * slot:.1f}" y="{base_y + 14}" font-size="10" text-anchor="middle" fill="#59636e">0</text>')
    for low, high, count in zip(edges, edges[1:], counts):
        x0, x1 = x_of(low), x_of(high)
        label = f"{fmt(low)} – {fmt(high)}: {count}"
        parts += _bar(x0 + 1, x1 - x0 - 2, h_of(count), base_y, _bar_class(low, high, tolerance), label, count)
    parts += _x_axis(edges, x_of, start, left, width - right, base_y)
    if tolerance is not None and tolerance > 0:
        tx = x_of(tolerance)
        parts.append(f'<line x1="{tx:.1f}" y1="{top - 20}" x2="{tx:.1f}" y2="{base_y}" stroke="#cf222e" stroke-width="1.5" stroke-dasharray="5 3"/>')
        anchor = "end" if tx > width - 110 else "start"
        offset = -4 if anchor == "end" else 4
        parts.append(f'<text x="{tx + offset:.1f}" y="{top - 22}" font-size="11" fill="#cf222e" text-anchor="{anchor}">tolerance {_e(fmt(tolerance))}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" font-size="11" text-anchor="middle" fill="#59636e">|candidate − baseline| per element (log scale)</text>')
    parts.append("</svg>")
    return "".join(parts)


def _bar(x: float, w: float, h: float, base_y: float, color: str, label: str, count: int) -> List[str]:
    if h <= 0:
        return []
    out = [f'<rect x="{x:.1f}" y="{base_y - h:.1f}" width="{max(w, 1):.1f}" height="{h:.1f}" fill="{color}" rx="1.5"><title>{_e(label)}</title></rect>']
    out.append(f'<text x="{x + w / 2:.1f}" y="{base_y - h - 3:.1f}" font-size="9.5" text-anchor="middle" fill="#1f2328">{count}</text>')
    return out


def _y_grid(peak: int, scale: float, x0: float, x1: float, base_y: float, plot_h: float) -> List[str]:
    out = [f'<text x="12" y="{base_y - plot_h / 2:.1f}" font-size="10" fill="#59636e" text-anchor="middle" transform="rotate(-90 12 {base_y - plot_h / 2:.1f})">elements (log)</text>']
    tick = 1
    while tick <= peak:
        y = base_y - math.log10(tick + 1) / scale * plot_h
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#eaeef2"/>')
        out.append(f'<text x="{x0 - 4}" y="{y + 3:.1f}" font-size="9.5" text-anchor="end" fill="#59636e">{_power(tick) if tick >= 10 else "1"}</text>')
        tick *= 10
    return out


def _x_axis(edges: List[float], x_of: Any, start: float, x0: float, x1: float, base_y: float) -> List[str]:
    out = [f'<line x1="{x0}" y1="{base_y}" x2="{x1}" y2="{base_y}" stroke="#8c959f"/>']
    for i, edge in enumerate(edges):
        x = x_of(edge)
        out.append(f'<line x1="{x:.1f}" y1="{base_y}" x2="{x:.1f}" y2="{base_y + 4}" stroke="#8c959f"/>')
        if i % 2 == 0:
            out.append(f'<text x="{x:.1f}" y="{base_y + 15}" font-size="10" text-anchor="middle" fill="#59636e">{_e(_power(edge))}</text>')
    return out


# -- per model --------------------------------------------------------------------------------------------------


def _bar_row(label: str, value: Optional[float], limit: Optional[float], shown: str) -> str:
    if value is None:
        return ""
    width = min(max(value, 0.0), 1.0) * 100
    css = "" if limit is None else ("ok" if value >= limit else "bad")
    marker = "" if limit is None else f'<span class="bar-limit" style="left:calc({limit * 100:.1f}% - 1px)" title="limit {limit:g}"></span>'
    return (
        f'<div class="bar-row"><span class="bar-label">{_e(label)}</span><span class="bar-track">'
        f'<span class="bar-fill {css}" style="width:{width:.1f}%"></span>{marker}</span>'
        f'<span class="bar-value">{_e(shown)}</span></div>'
    )


def _agreement_bars(model: Dict[str, Any]) -> str:
    """Rank agreement as horizontal bars; checked metrics are green/red with their limit marked."""
    metrics, tol = model.get("metrics", {}), model.get("tolerance", {})
    if model.get("kind") == "cross-encoder":
        k = tol.get("topk", "k")
        rows = [
            _bar_row("rerank order", metrics.get("rerank_order_agreement"), tol.get("min_rerank_order_agreement"), fmt_percent(metrics.get("rerank_order_agreement"))),
            _bar_row(f"top-{k} order", metrics.get(f"top{k}_order_agreement"), None, fmt_percent(metrics.get(f"top{k}_order_agreement"))),
            _bar_row("Kendall τ (min)", metrics.get("min_kendall_tau"), None, _tau(metrics.get("min_kendall_tau"))),
            _bar_row("Kendall τ (mean)", metrics.get("mean_kendall_tau"), None, _tau(metrics.get("mean_kendall_tau"))),
        ]
    else:
        k = metrics.get("topk", "k")
        limit = "min_quantized_topk_" if _quantized(model) else "min_topk_"  # quantized scores have their own limits
        rows = [
            _bar_row(f"top-{k} order", metrics.get("topk_order_agreement"), tol.get(limit + "order_agreement"), fmt_percent(metrics.get("topk_order_agreement"))),
            _bar_row(f"top-{k} set", metrics.get("topk_set_agreement"), tol.get(limit + "set_agreement"), fmt_percent(metrics.get("topk_set_agreement"))),
            _bar_row(f"top-{k} raw order", metrics.get("topk_raw_order_agreement"), None, fmt_percent(metrics.get("topk_raw_order_agreement"))),
            _bar_row(f"top-{k} overlap", metrics.get("topk_mean_overlap"), None, fmt_percent(metrics.get("topk_mean_overlap"))),
        ]
    body = "".join(rows)
    return f'<h4>Rank agreement</h4><div class="bars">{body}</div>' if body else ""


def _tau(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.4f}"


_METRIC_ROWS: Tuple[Tuple[str, str], ...] = (
    ("max_abs_diff", "max |Δ|"),
    ("mean_abs_diff", "mean |Δ|"),
    ("p99_abs_diff", "p99 |Δ|"),
    ("max_rel_diff", "max relative Δ"),
    ("min_cosine", "min cosine"),
    ("elements_beyond_tolerance", "elements beyond tolerance"),
    ("max_bit_flips", "max bits flipped per text"),
    ("mean_bit_flips", "mean bits flipped per text"),
    ("max_int_distance", "max buckets moved"),
    ("elements_changed", "elements changed"),
    ("rows_changed", "texts changed"),
    ("rows_changed_fraction", "share of texts changed"),
    ("texts_beyond_tolerance", "texts beyond tolerance"),
    ("texts", "texts"),
    ("dim", "dim"),
    ("pairs", "pairs"),
    ("queries", "queries"),
)


def _metrics_list(model: Dict[str, Any]) -> str:
    metrics = model.get("metrics", {})
    rows = []
    for key, label in _METRIC_ROWS:
        if key in metrics:
            shown = fmt_cosine(metrics[key]) if key == "min_cosine" else fmt(metrics[key])
            rows.append(f"<dt>{_e(label)}</dt><dd>{_e(shown)}</dd>")
    tolerance = diff_tolerance(model)
    if tolerance is not None:
        rows.append(f"<dt>tolerance (atol)</dt><dd>{_e(fmt(tolerance))}</dd>")
    if model.get("performance"):
        device, rate, ratio, cuda, rss = speed_cells(model)
        rows += [f"<dt>device</dt><dd>{_e(device)}</dd>", f"<dt>texts/s</dt><dd>{_e(rate)} ({_e(ratio)} of baseline)</dd>"]
        rows += [f"<dt>CUDA peak</dt><dd>{_e(cuda)}</dd>"] if cuda != "-" else []
        rows += [f"<dt>run peak RSS</dt><dd>{_e(rss)}</dd>"] if rss != "-" else []
    return f'<dl class="metrics">{"".join(rows)}</dl>' if rows else ""


def _checks_table(model: Dict[str, Any]) -> str:
    rows = [
        [
            f"<td><code>{_e(c['name'])}</code></td>",
            _td(fmt(c["observed"]) if "cosine" not in c["name"] else fmt_cosine(c["observed"]), "num"),
            _td(f"{c['op']} {fmt(c['limit'])}", "num"),
            _td("pass" if c.get("passed") else "FAIL", "res-pass" if c.get("passed") else "res-fail"),
            _td(c.get("detail", "")),
        ]
        for c in model.get("checks", [])
    ]
    return f"<h4>Checks</h4>{_table(['Check', 'Observed', 'Limit', 'Result', 'Detail'], rows, 'checks')}" if rows else ""


def _offenders_table(model: Dict[str, Any]) -> str:
    rows = [
        [f"<td><code>{_e(o['item_id'])}</code></td>", _td(o["metric"]), _td(fmt(o["value"]), "num"), _td(o.get("detail", ""))]
        for o in model.get("offenders", [])
    ]
    return f"<h4>Worst items</h4>{_table(['Item', 'Metric', 'Value', 'Detail'], rows)}" if rows else ""


def _quantized(model: Dict[str, Any]) -> bool:
    """Quantized embeddings are judged in bits / buckets: no float difference histogram for them."""
    metrics = model.get("metrics", {})
    return "max_bit_flips" in metrics or "max_int_distance" in metrics


def _model_card(model: Dict[str, Any]) -> str:
    status = model["status"]
    head = (
        f'<h3><code>{_e(model["model_id"])}</code> {_badge(status)}'
        f'<small>{_e(model.get("kind", "?"))} · tolerance class {_e(model.get("tolerance_class", "-"))}</small></h3>'
    )
    reason = ""
    if status != "pass" and model.get("reason") and not any(not c.get("passed") for c in model.get("checks", [])):
        reason = f'<div class="callout {_status_class(status)}"><pre>{_e(model["reason"])}</pre></div>'
    hist = model.get("metrics", {}).get("abs_diff_histogram")
    if not model.get("metrics"):
        return f'<div class="card {_status_class(status)}">{head}{reason}</div>'
    svg = histogram_svg(hist or {}, diff_tolerance(model), f"{model['model_id']} differences")
    figure = "" if _quantized(model) else f"<figure>{svg}<figcaption>{_e(_hist_caption(model))}</figcaption></figure>"
    side = f"<div>{_metrics_list(model)}{_agreement_bars(model)}</div>"
    return (
        f'<div class="card {_status_class(status)}">{head}{reason}<div class="grid">{figure}{side}</div>'
        f"{_checks_table(model)}{_offenders_table(model)}</div>"
    )


def _hist_caption(model: Dict[str, Any]) -> str:
    metrics = model.get("metrics", {})
    hist = metrics.get("abs_diff_histogram") or {}
    total = _zeros(hist) + sum(int(c) for c in hist.get("counts", []))
    beyond = metrics.get("elements_beyond_tolerance")
    return f"{total} values, {_zeros(hist)} exactly equal" + ("" if beyond is None else f", {beyond} beyond tolerance")


# -- per cell ---------------------------------------------------------------------------------------------------


def _env_block(comparison: Dict[str, Any]) -> str:
    kept, hidden = meaningful_env_changes(comparison.get("env_changes", []))
    note = f'<p class="note">{hidden} other fingerprint difference(s) not shown (see report.json).</p>' if hidden else ""
    if not kept:
        return f'<h4>Environment changes vs baseline</h4><p class="note">No package, device, dtype or flag changes.</p>{note}'
    rows = [[f"<td><code>{_e(c['key'])}</code></td>", _td(fmt(c["baseline"]), "num"), _td(fmt(c["candidate"]), "num")] for c in kept]
    return f"<h4>Environment changes vs baseline ({len(kept)})</h4>{_table(['Key', 'Baseline', 'Candidate'], rows)}{note}"


def _cell_meta(cell: Dict[str, Any]) -> str:
    params = " · ".join(f"{_e(k)} <code>{_e(v)}</code>" for k, v in cell.get("params", {}).items())
    timing = f"setup {_seconds(cell.get('setup_s'))} · run {_seconds(cell.get('run_s'))}"
    results = f" · results <code>{_e(cell['results'])}</code>" if cell.get("results") else ""
    return f'<p class="meta">{params}</p><p class="meta">{timing}{results}</p>'


def _cell_section(index: int, cell: Dict[str, Any]) -> str:
    status = cell["status"]
    parts = [
        f'<section class="cell" id="{_anchor(index, cell["cell_id"])}">',
        f'<h2><code>{_e(cell["cell_id"])}</code> {_badge(status)}</h2>',
        _cell_meta(cell),
    ]
    comparison = cell.get("comparison")
    if cell.get("reason") and (comparison is None or status in NOT_RUN_STATUSES):
        what = "did not run" if comparison is None else "did not complete"
        parts.append(f'<div class="callout {_status_class(status)}"><strong>{_e(what)}: {_e(status)}</strong><pre>{_e(cell["reason"])}</pre></div>')
    if comparison is not None:
        parts += [_model_card(m) for m in comparison.get("models", [])]
        parts.append(_env_block(comparison))
    parts.append("</section>")
    return "".join(parts)


# -- trend ------------------------------------------------------------------------------------------------------


_DOT = {"pass": "#1a7f37", "fail": "#cf222e", "incompatible": "#9a6700"}


def _sparkline(points: Sequence[Tuple[str, str, Optional[float]]]) -> str:
    """Max abs diff per run on a log scale; dots colored by the cell's status in that run."""
    width, height, pad = 200, 40, 6
    values = [v for _, _, v in points if v is not None]
    if not values:
        return ""
    logs = [math.log10(max(v, 1e-12)) for v in values]
    lo, hi = min(logs), max(logs)
    span = hi - lo or 1.0
    step = (width - 2 * pad) / max(len(points) - 1, 1)
    coords = []
    for i, (when, status, value) in enumerate(points):
        if value is None:
            continue
        y = height - pad - (math.log10(max(value, 1e-12)) - lo) / span * (height - 2 * pad) if hi > lo else height / 2
        coords.append((pad + i * step, y, when, status, value))
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y, *_ in coords)
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{_DOT.get(s, "#8250df")}"><title>{_e(w)}: {_e(s)}, {_e(fmt(v))}</title></circle>'
        for x, y, w, s, v in coords
    )
    return (
        f'<svg class="sparkline" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="max abs diff trend"><polyline points="{line}" fill="none" stroke="#8c959f" stroke-width="1.5"/>{dots}</svg>'
    )


def _trend(report: Dict[str, Any], history: Sequence[Dict[str, Any]]) -> str:
    rows = []
    for cell in report["cells"]:
        for model in (cell.get("comparison") or {}).get("models", []):
            points = history_series(history, report["matrix"], cell["cell_id"], model["model_id"], TREND_RUNS)
            if not points:
                continue
            rows.append([
                f"<td><code>{_e(cell['cell_id'])}</code></td>",
                f"<td><code>{_e(model['model_id'])}</code></td>",
                f"<td>{_sparkline(points)}</td>",
                _td(" → ".join(fmt(v) for _, _, v in points[-4:]), "num"),
                _td(len(points), "num"),
            ])
    if not rows:
        return ""
    table = _table(["Cell", "Model", f"Max |Δ| (last {TREND_RUNS} runs, log scale)", "Latest values", "Runs"], rows)
    return f'<section id="trend"><h2>Trend</h2>{table}</section>'


def render_html(report: Dict[str, Any], history: Optional[Sequence[Dict[str, Any]]] = None) -> str:
    """The whole matrix as one self-contained page: overview, trend, then every cell in detail."""
    body = [_header(report), _overview(report)]
    if history:
        body.append(_trend(report, history))
    body += [_cell_section(i, c) for i, c in enumerate(report["cells"])]
    body.append(
        f"<footer>Rendered from the matrix report (format_version {_e(report.get('format_version', '?'))}); "
        "the same data as report.json, summary.md and junit.xml.</footer>"
    )
    title = f"Drift report: {report['matrix']} — {str(report['status']).upper()}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )
