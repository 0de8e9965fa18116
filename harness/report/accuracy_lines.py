"""How every report shows a verdict's accuracy against the fp64 reference (``ModelVerdict.accuracy``): one wording
for all renderers, and none of it for a verdict without a reference.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

from harness.report.format import fmt
from harness.report.html_style import escape as _e
from harness.verdict import AccuracyVerdict, Bucket, ModelVerdict, Status

__all__ = ["bucket_svg", "error_columns", "error_columns_none", "headline", "lines", "ratio_text"]


def ratio_text(ratio: float) -> str:
    """``14,698x``, ``1.09x``, ``inf``: the accuracy ratio as every report prints it."""
    if not math.isfinite(ratio):
        return "inf"
    return f"{ratio:,.0f}x" if ratio >= 100 else f"{ratio:.3g}x"


def headline(models: Sequence[ModelVerdict]) -> str:
    """The status line's addition: each measured model's error relative to the baseline's against fp64."""
    measured = [m for m in models if m.accuracy is not None]
    parts = [f"{ratio_text(m.accuracy.measured.ratio)} the baseline's error against fp64"  # type: ignore[union-attr]
             + (f" ({m.model_id})" if len(measured) > 1 else "") for m in measured]
    return "; " + ", ".join(parts) if parts else ""


def _bucket(b: Bucket) -> str:
    tokens = f"{b.low}-{b.high}" if b.high is not None else f"{b.low}+"
    ratio = b.candidate_rmse / b.baseline_rmse if b.baseline_rmse else (1.0 if not b.candidate_rmse else math.inf)
    return f"{tokens} tokens ({b.texts}): {ratio_text(ratio)}"


def _judgement(model: ModelVerdict, acc: AccuracyVerdict) -> str:
    ratio = acc.measured.ratio
    if ratio > acc.limit:
        return "less accurate than the baseline"
    if model.status is Status.FAIL:
        return "other rounding, equally accurate (the tolerance checks failed)"
    if model.status is Status.PASS and acc.gate and any(not c.passed for c in model.checks):
        return "other rounding, equally accurate (the tolerance checks are reported, not judged)"
    return "as accurate as the baseline" if ratio >= 0.5 else "more accurate than the baseline"


def lines(model: ModelVerdict) -> List[str]:
    """The accuracy of one model in a few plain lines (empty without a reference)."""
    acc = model.accuracy
    if acc is None:
        return []
    m, (base, cand) = acc.measured, acc.sides
    scaled = f" = {fmt(acc.limit / acc.scale)} x {acc.scale:,.0f} (judged at its own class)" if acc.scale != 1 else ""
    out = [
        f"accuracy against fp64: {ratio_text(m.ratio)} the baseline's error (limit {fmt(acc.limit)}{scaled}"
        f"{', the gate' if acc.gate else ''}): {_judgement(model, acc)}",
        f"  {base}: RMSE {fmt(m.baseline.rmse)}, max abs {fmt(m.baseline.max_abs)}; "
        f"{cand}: RMSE {fmt(m.candidate.rmse)}, max abs {fmt(m.candidate.max_abs)}",
        f"  further from fp64: {cand} on {m.candidate_worse:,} of {m.rows:,} texts, {base} on {m.baseline_worse:,}",
    ]
    worst = ", ".join(f"{i} {fmt(e)}" for i, e in m.candidate.worst[:3])
    if worst:
        out.append(f"  worst texts ({cand}): {worst}")
    if m.buckets:
        out.append("  by token count (candidate/baseline error): " + "; ".join(_bucket(b) for b in m.buckets))
    if m.truncation_mismatches:
        named = ", ".join(f"{i} ({dict(zip(('baseline', 'candidate'), acc.sides)).get(s, s)})" for i, s in m.truncated)
        out.append(f"  cause: {m.truncation_mismatches:,} text(s) truncated on one side only, not in the reference: "
                   f"{named}")
    return out


#: ``error_columns`` of a row without a model (a cell that did not run)
error_columns_none: Dict[str, Optional[float]] = {"baseline_rmse_fp64": None, "candidate_rmse_fp64": None}


def error_columns(model: ModelVerdict) -> Dict[str, Optional[float]]:
    """verdicts.parquet's columns for one model: each side's RMSE against fp64 (None without a reference)."""
    acc = model.accuracy
    return {"baseline_rmse_fp64": acc.measured.baseline.rmse if acc else None,
            "candidate_rmse_fp64": acc.measured.candidate.rmse if acc else None}


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
