"""Self-contained HTML rendering of a matrix report: one file with inline CSS and inline SVG, no scripts.

It has to open from disk, a CI artifact or an air-gapped machine, so nothing is loaded from anywhere; every
piece of text from the data goes through ``html.escape``.
"""

from __future__ import annotations

import re
from typing import Any, List, Optional, Sequence, Tuple

from harness.report.format import fmt, fmt_cosine, fmt_pair, fmt_percent
from harness.report.html_style import CSS
from harness.report.html_style import badge as _badge
from harness.report.html_style import escape as _e
from harness.report.html_style import status_class as _status_class
from harness.report.html_svg import bucket_svg, histogram_svg, sparkline
from harness.report.matrix_report import MATRIX_FORMAT_VERSION, TREND_RUNS, MatrixReport, ModelWords, ReportCell, TrendRow
from harness.report.scenario_lines import COLUMNS, HEADING
from harness.report.text import ORDER_FIGURES_NOTE, fmt_drift, fmt_used, speed_cells, would_pass
from harness.verdict import CellStatus, ModelVerdict, Status

__all__ = ["render_html"]


def _anchor(index: int, cell_id: str) -> str:
    return f"cell-{index}-" + re.sub(r"[^A-Za-z0-9_.-]", "-", cell_id)


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


def _header(report: MatrixReport) -> str:
    counts = report.counts
    chips = "".join(
        f'<span class="badge {_status_class(s)}">{counts[s.value]} {_e(s.value)}</span>' for s in CellStatus if counts.get(s.value)
    )
    return (
        f"<header><h1>Drift report: {_e(report.matrix)} {_badge(report.status)}</h1>"
        f'<p class="meta">created {_e(report.created_at or "-")} · baseline <code>{_e(report.baseline)}</code>'
        f" · {len(report.cells)} cell(s) · policy <code class=\"policy\">{_e(report.policy)}</code></p>"
        f'<p class="meta scope">{_e(report.scope)}</p><div class="chips">{chips}</div></header>'
    )


def _param_keys(report: MatrixReport) -> List[str]:
    return list(dict.fromkeys(key for cell in report.cells for key in cell.params))


def _verdict_td(model: Optional[ModelVerdict]) -> str:
    if model is None:
        return '<td class="verdict">-</td>'
    return (
        f'<td class="verdict {_status_class(model.status)}"><span class="big">{_e(model.status.value)}</span>'
        f'<span class="small">max |Δ| {_e(fmt_drift(model))}</span></td>'
    )


def _overview_row(index: int, cell: ReportCell, params: List[str], models: List[str]) -> List[str]:
    row = [f'<td class="nowrap"><a href="#{_anchor(index, cell.cell_id)}"><code>{_e(cell.cell_id)}</code></a></td>']
    row += [_td(cell.params.get(k, "-"), "num") for k in params]
    row.append(f'<td>{_badge(cell.status)}</td>')
    if cell.comparison is None:
        reason = cell.reason or cell.status.value
        short = reason if len(reason) <= 160 else reason[:159] + "…"
        span = max(len(models), 1)
        row.append(f'<td class="reason {_status_class(cell.status)}" colspan="{span}">{_e(short)}</td>')
    else:
        by_id = {m.model_id: m for m in cell.models}
        row += [_verdict_td(by_id.get(model_id)) for model_id in models] or ['<td class="verdict">-</td>']
    row.append(_td(cell.times.total, "num"))
    return row


def _overview(report: MatrixReport) -> str:
    params, models = _param_keys(report), report.model_ids
    header = ["Cell", *params, "Status", *(models or ["Models"]), "Time (setup + run)"]
    rows = [_overview_row(i, c, params, models) for i, c in enumerate(report.cells)]
    return f'<section id="overview"><h2>Overview</h2>{_table(header, rows, "overview")}</section>'


def _scenarios(report: MatrixReport) -> str:
    """"Must I re-embed?": the overview (a column per scenario), each row's line as its last column."""
    rows = [[_td(text) for text in (cell.cell_id, row.model_id, row.advice, *row.shares, row.line)]
            for cell in report.cells for row in cell.scenarios]
    table = _table(["Cell", "Model", "Advice", *COLUMNS.values(), "Why"], rows, "scenarios")
    return f'<section id="scenarios"><h2>{_e(HEADING)}</h2>{table}</section>' if rows else ""


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


#: the rank-agreement bars per kind: (label, metric, the tolerance key judging it or None: reported, not judged);
#: a quantized bi-encoder's limits are its own (``min_quantized_topk_...``); Kendall tau shown as a number
_BARS = {
    "cross-encoder": (("rerank order", "rerank_order_agreement", "min_rerank_order_agreement"),
                      ("top-{k} order", "topk_order_agreement", None), ("Kendall τ (min)", "min_kendall_tau", None),
                      ("Kendall τ (mean)", "mean_kendall_tau", None)),
    "bi-encoder": (("top-{k} order", "topk_order_agreement", "min_{q}topk_order_agreement"),
                   ("top-{k} set", "topk_set_agreement", "min_{q}topk_set_agreement"),
                   ("top-{k} raw order", "topk_raw_order_agreement", None), ("top-{k} overlap", "topk_mean_overlap", None)),
}


def _agreement_bars(model: ModelVerdict, decided: str) -> str:
    """Rank agreement as horizontal bars; checked metrics are green/red with their limit marked."""
    metrics, tol, q = model.metrics, model.tolerance, "quantized_" if model.metrics.quantized else ""
    bars = _BARS["cross-encoder" if model.kind == "cross-encoder" else "bi-encoder"]
    values = [(label, getattr(metrics, key), getattr(tol, limit.format(q=q)) if limit and tol else None, "tau" in key)
              for label, key, limit in bars]
    rows = [_bar_row(label.format(k=metrics.topk or "k"), value, limit, _tau(value) if tau else fmt_percent(value))
            for label, value, limit, tau in values]
    body = "".join(rows)
    why = metrics.retrieval_note()
    if why and not body:  # said, not left out: a card without bars would read as "nothing to judge"
        return f'<h4>Rank agreement</h4><p class="note not-judged">{_e(why)}</p>'
    if not body:
        return ""
    if decided:
        body += f'<p class="note topk-decided">{_e(decided)}</p>'
    note = f'<p class="note order-note">Green/red bars are judged against their limit (the mark); blue ones are reported, not judged: {_e(ORDER_FIGURES_NOTE)}</p>'
    return f'<h4>Rank agreement</h4><div class="bars">{body}</div>{note}'



def _tau(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.4f}"


_METRIC_ROWS: Tuple[Tuple[str, str], ...] = (
    ("max_abs_diff", "max |Δ|"), ("mean_abs_diff", "mean |Δ|"), ("p99_abs_diff", "p99 |Δ|"),
    ("max_rel_diff", "max relative Δ"), ("min_cosine", "min cosine"),
    ("elements_beyond_tolerance", "elements beyond tolerance"), ("max_bit_flips", "max bits flipped per text"),
    ("mean_bit_flips", "mean bits flipped per text"), ("max_int_distance", "max buckets moved"),
    ("elements_changed", "elements changed"), ("rows_changed", "texts changed"),
    ("rows_changed_fraction", "share of texts changed"), ("texts_beyond_tolerance", "texts beyond tolerance"),
    ("texts", "texts"), ("dim", "dim"), ("pairs", "pairs"), ("queries", "queries"),
)


def _metrics_list(model: ModelVerdict) -> str:
    rows = []
    for key, label in _METRIC_ROWS:
        value = getattr(model.metrics, key)
        if value is not None:
            shown = fmt_cosine(value) if key == "min_cosine" else fmt(value)
            rows.append(f"<dt>{_e(label)}</dt><dd>{_e(shown)}</dd>")
    tolerance = model.diff_limit()
    if tolerance is not None:
        rows.append(f"<dt>tolerance (atol)</dt><dd>{_e(fmt(tolerance))}</dd>")
    if model.performance:
        device, rate, ratio, cuda, rss = speed_cells(model)
        rows += [f"<dt>device</dt><dd>{_e(device)}</dd>", f"<dt>texts/s</dt><dd>{_e(rate)} ({_e(ratio)} of baseline)</dd>"]
        rows += [f"<dt>CUDA peak</dt><dd>{_e(cuda)}</dd>"] if cuda != "-" else []
        rows += [f"<dt>run peak RSS</dt><dd>{_e(rss)}</dd>"] if rss != "-" else []
    return f'<dl class="metrics">{"".join(rows)}</dl>' if rows else ""


def _checks_table(model: ModelVerdict) -> str:
    rows = [[f"<td><code>{_e(c.name)}</code></td>",
             _td(fmt(c.observed) if "cosine" not in c.name else fmt_cosine(c.observed), "num"),
             _td(f"{c.op} {fmt(c.limit)}", "num"), _td(fmt_used(c), "num used"),
             _td("pass" if c.passed else "FAIL", "res-pass" if c.passed else "res-fail"), _td(c.detail)]
            for c in model.checks]
    if not rows:
        return ""
    table = _table(["Check", "Observed", "Limit", "Limit used", "Result", "Detail"], rows, "checks")
    failed = bool(model.failed_checks)
    need = would_pass(model)
    would = f'<p class="would-pass">would pass with: <code>{_e(need)}</code></p>' if failed and need else ""
    return f"<h4>Checks</h4>{table}{would}"


def _offenders_table(model: ModelVerdict) -> str:
    rows = [[f"<td><code>{_e(o.item_id)}</code></td>", _td(o.metric), _td(fmt(o.value), "num"), _td(o.detail)]
            for o in model.offenders]
    return f"<h4>Worst items</h4>{_table(['Item', 'Metric', 'Value', 'Detail'], rows)}" if rows else ""


def _model_card(model: ModelVerdict, words: ModelWords) -> str:
    status = model.status
    head = (
        f'<h3><code>{_e(model.model_id)}</code> {_badge(status)}'
        f'<small>{_e(model.kind)} · tolerance class {_e(model.tolerance_class)}</small></h3>'
    )
    reason = ""
    if status is not Status.PASS and model.reason and not model.failed_checks:
        reason = f'<div class="callout {_status_class(status)}"><pre>{_e(model.reason)}</pre></div>'
    if not model.metrics.to_json():
        return f'<div class="card {_status_class(status)}">{head}{reason}</div>'
    svg = histogram_svg(model.metrics.abs_diff_histogram, model.diff_limit(), f"{model.model_id} differences")
    figure = "" if model.metrics.quantized else f"<figure>{svg}<figcaption>{_e(_hist_caption(model))}</figcaption></figure>"
    side = f"<div>{_metrics_list(model)}{_agreement_bars(model, words.decided)}</div>"
    return (
        f'<div class="card {_status_class(status)}">{head}{reason}<div class="grid">{figure}{side}</div>'
        f"{_checks_table(model)}{_offenders_table(model)}{_accuracy(model, words.accuracy)}</div>"
    )


def _accuracy(model: ModelVerdict, text: List[str]) -> str:
    """Each side's error against the fp64 reference (``text``: its lines), and the chart of it by token count."""
    return f"<h4>Accuracy against fp64</h4><pre class='wrap'>{_e(chr(10).join(text))}</pre>{bucket_svg(model)}" if text else ""


def _hist_caption(model: ModelVerdict) -> str:
    hist = model.metrics.abs_diff_histogram
    equal = hist.equal if hist is not None else 0
    total = equal + (sum(hist.counts) if hist is not None else 0)
    beyond = model.metrics.elements_beyond_tolerance
    return f"{total} values, {equal} exactly equal" + ("" if beyond is None else f", {beyond} beyond tolerance")


# -- per cell ---------------------------------------------------------------------------------------------------


def _env_block(cell: ReportCell) -> str:
    kept, hidden = cell.env_shown, cell.env_hidden
    note = f'<p class="note">{hidden} other fingerprint difference(s) not shown (see report.json).</p>' if hidden else ""
    if not kept:
        return f'<h4>Environment changes vs baseline</h4><p class="note">No package, device, precision, hardware, kernel or run-setting changes.</p>{note}'
    rows = [[_td(group), f"<td><code>{_e(c.key)}</code></td>", *_value_tds(c.baseline, c.candidate)] for group, c in kept]
    return f"<h4>Environment changes vs baseline ({len(kept)})</h4>{_table(['Group', 'Key', 'Baseline', 'Candidate'], rows)}{note}"


#: longer values (a ``blas_runtime`` list of libraries and paths) are cut, whole in the cell's tooltip
_LONG = 240


def _value_td(shown: str, numeric: bool) -> str:
    """A value cell: numbers stay on one line; text wraps anywhere and is ellipsized past ``_LONG`` characters."""
    if numeric:
        return _td(shown, "num")
    if len(shown) <= _LONG:
        return _td(shown, "val")
    return f'<td class="val" title="{_e(shown)}">{_e(shown[:_LONG - 1])}…</td>'


def _value_tds(baseline: Any, candidate: Any) -> List[str]:
    """Baseline and candidate through one formatter (``fmt_pair``: the same digits for both)."""
    shown = fmt_pair(baseline, candidate)
    return [_value_td(text, isinstance(value, (int, float)) and not isinstance(value, bool))
            for text, value in zip(shown, (baseline, candidate))]


def _cell_meta(cell: ReportCell) -> str:
    params = " · ".join(f"{_e(k)} <code>{_e(v)}</code>" for k, v in cell.params.items())
    timing = f"setup {cell.times.setup} · run {cell.times.run}"
    results = f" · results <code>{_e(cell.results)}</code>" if cell.results else ""
    return f'<p class="meta">{params}</p><p class="meta">{timing}{results}</p>'


def _cell_section(index: int, cell: ReportCell) -> str:
    status = cell.status
    parts = [
        f'<section class="cell" id="{_anchor(index, cell.cell_id)}">',
        f'<h2><code>{_e(cell.cell_id)}</code> {_badge(status)}</h2>',
        _cell_meta(cell),
    ]
    parts += [f'<p class="note verdict-note">note: {_e(note)}</p>' for note in cell.notes]
    if cell.reason and cell.incomplete:
        what = "did not run" if cell.comparison is None else "did not complete"
        parts.append(f'<div class="callout {_status_class(status)}"><strong>{_e(what)}: {_e(status.value)}</strong><pre>{_e(cell.reason)}</pre></div>')
    if cell.comparison is not None:
        parts += [_model_card(m, cell.words[m.model_id]) for m in cell.models]
        parts.append(_env_block(cell))
    parts.append("</section>")
    return "".join(parts)


# -- trend ------------------------------------------------------------------------------------------------------


def _trend(trend: Sequence[TrendRow]) -> str:
    rows = [[f"<td><code>{_e(row.cell_id)}</code></td>", f"<td><code>{_e(row.model_id)}</code></td>",
             f"<td>{sparkline(row.points)}</td>", _td(" → ".join(fmt(v) for _, _, v in row.points[-4:]), "num"),
             _td(len(row.points), "num")] for row in trend]
    if not rows:
        return ""
    table = _table(["Cell", "Model", f"Max |Δ| (last {TREND_RUNS} runs, log scale)", "Latest values", "Runs"], rows)
    return f'<section id="trend"><h2>Trend</h2>{table}</section>'


def render_html(report: MatrixReport) -> str:
    """The whole matrix as one self-contained page: overview, trend, then every cell in detail."""
    body = [_header(report), _overview(report), _scenarios(report), _trend(report.trend)]
    body += [_cell_section(i, c) for i, c in enumerate(report.cells)]
    body.append(
        f"<footer>Rendered from the matrix report (format_version {MATRIX_FORMAT_VERSION}); "
        "the same data as report.json, summary.md and junit.xml.</footer>"
    )
    title = f"Drift report: {report.matrix} — {report.status.value.upper()}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )
