"""How every report shows a verdict's accuracy against the fp64 reference (``ModelVerdict.accuracy``): one wording
for all renderers, and none of it for a verdict without a reference.
"""

from __future__ import annotations

import math
from typing import List, Sequence

from harness.report.format import fmt
from harness.verdict import AccuracyVerdict, Bucket, ModelVerdict, Status

__all__ = ["headline", "lines", "ratio_text"]


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
