"""The plots of the HTML matrix report, as inline SVG built from the numbers already in the report (no plotting
library, no scripts: the page opens from disk).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

from harness.measured import Histogram
from harness.report.format import fmt
from harness.report.html_style import escape as _e
from harness.verdict import CellStatus, ModelVerdict

__all__ = ["bucket_svg", "histogram_svg", "sparkline"]

_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _power(value: float) -> str:
    exponent = round(math.log10(value))
    if math.isclose(value, 10.0 ** exponent, rel_tol=1e-9):
        return "10" + str(exponent).translate(_SUPERSCRIPT)
    return fmt(value)


def _bar_class(low: float, high: float, tolerance: Optional[float]) -> str:
    if tolerance is None or high <= tolerance:
        return "#3b6fd8"
    return "#cf222e" if low >= tolerance else "#d4a72c"


def histogram_svg(hist: Optional[Histogram], tolerance: Optional[float], title: str = "") -> str:
    """Decade histogram of |candidate - baseline| (log x, log y) with the tolerance as a dashed vertical line."""
    edges, counts = ([float(e) for e in hist.edges], [int(c) for c in hist.counts]) if hist is not None else ([], [])
    if hist is None or len(edges) < 2 or len(counts) != len(edges) - 1 or min(edges) <= 0:
        return '<p class="note">no difference histogram in this comparison</p>'
    zeros = hist.equal
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


#: dot colour per cell status in a run; any other status is drawn in the "not judged" purple
_DOT: Dict[Optional[CellStatus], str] = {CellStatus.PASS: "#1a7f37", CellStatus.FAIL: "#cf222e", CellStatus.INCOMPATIBLE: "#9a6700"}


def sparkline(points: Sequence[Tuple[str, Optional[CellStatus], Optional[float]]]) -> str:
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
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{_DOT.get(s, "#8250df")}"><title>{_e(w)}: {_e(s.value if s else "?")}, {_e(fmt(v))}</title></circle>'
        for x, y, w, s, v in coords
    )
    return (
        f'<svg class="sparkline" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="max abs diff trend"><polyline points="{line}" fill="none" stroke="#8c959f" stroke-width="1.5"/>{dots}</svg>'
    )


def bucket_svg(model: ModelVerdict) -> str:
    """Each side's RMSE against fp64 per token-count bucket, two bars each, log scale (empty without buckets)."""
    acc = model.accuracy
    buckets = [b for b in (acc.measured.buckets if acc else ()) if b.texts]
    values = [v for b in buckets for v in (b.baseline_rmse, b.candidate_rmse) if v > 0 and math.isfinite(v)]
    if acc is None or not values:
        return ""
    low, high = math.floor(math.log10(min(values))), math.ceil(math.log10(max(values))) + (min(values) == max(values))
    width, height, left, top, bottom = 60 + 56 * len(buckets), 200, 50, 20, 40
    plot = height - top - bottom

    def bar_h(value: float) -> float:
        return 0.0 if value <= 0 else plot * (math.log10(min(value, 10.0 ** high)) - low + 0.05) / (high - low + 0.05)

    parts = [f'<svg class="accuracy" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{_e(model.model_id)} error against fp64 by token count">',
             f'<text x="4" y="{top - 6}" font-size="10" fill="#59636e">RMSE vs fp64 (1e{low} to 1e{high})</text>']
    for i, b in enumerate(buckets):
        x = left + 56 * i
        for j, (value, color, side) in enumerate(((b.baseline_rmse, "#8c959f", acc.sides[0]),
                                                  (b.candidate_rmse, "#3b6fd8", acc.sides[1]))):
            h = bar_h(value)
            parts.append(f'<rect x="{x + 20 * j}" y="{top + plot - h:.1f}" width="18" height="{h:.1f}" fill="{color}">'
                         f'<title>{_e(side)}: {fmt(value)} ({b.texts} texts)</title></rect>')
        label = f"{b.low}-{b.high}" if b.high is not None else f"{b.low}+"
        parts.append(f'<text x="{x + 19}" y="{top + plot + 14}" font-size="10" text-anchor="middle">{label}</text>')
    parts.append(f'<text x="{left}" y="{height - 6}" font-size="10" fill="#59636e">tokens; grey {_e(acc.sides[0])}, '
                 f'blue {_e(acc.sides[1])}</text></svg>')
    return "".join(parts)
