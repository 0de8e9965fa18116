"""The ``AssertionError`` text of ``harness.assertions``, rendered from a verdict's evidence (numpy.testing style).

Nothing is computed here, so the same verdict renders the same message whether the sides were arrays or files.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

from harness.measured import At, Evidence, Named
from harness.report import accuracy_lines
from harness.verdict import Comparison, ModelVerdict, Tolerance

__all__ = ["render_failure"]

_EMBEDDING_KEYS = ("atol", "rtol", "min_cosine", "min_topk_order_agreement", "min_topk_set_agreement")
_QUANTIZED_KEYS = ("max_changed_fraction", "min_quantized_topk_order_agreement", "min_quantized_topk_set_agreement")
_RERANK_KEYS = ("score_atol", "score_rtol", "tie_tolerance", "min_rerank_order_agreement")
#: environment changes listed before "... N more"
_ENV_SHOWN = 8


def _g(value: float) -> str:
    """Numbers as drift is read: scientific when small (1.22e-04), plain otherwise (numpy.testing's style)."""
    value = float(value)
    if value == 0 or value != value or value in (float("inf"), float("-inf")):
        return "0" if value == 0 else str(value)
    if abs(value) < 1e-3 or abs(value) >= 1e5:
        return f"{value:.2e}"
    return f"{value:.6g}"


def _limit(value: float) -> str:
    return f"{float(value):g}"


def _pct(count: int, total: int) -> str:
    return f"{count} / {total} ({100.0 * count / max(total, 1):.{2 if total >= 1000 else 1}f}%)"


def _limits(verdict: ModelVerdict) -> Tolerance:
    """The limits it was judged by (a verdict with evidence always has them; defaults for one read without)."""
    return verdict.tolerance or Tolerance("")


def _names(named: Named) -> str:
    """``'a', 'b' and 3 more`` from evidence ``Named(count=5, ids=["a", "b"])``."""
    shown = ", ".join(f"'{i}'" for i in named.ids)
    more = named.count - len(named.ids)
    return (shown + (f" and {more} more" if more > 0 else "")) or "-"


class _Where:
    """How a row is named: by id (``text 'd0012'``), or by position for two bare arrays (numpy's ``index``)."""

    def __init__(self, unit: str, positional: bool) -> None:
        self.unit, self.positional = unit, positional

    def row(self, at: At) -> str:
        return f"row {at.row}" if self.positional else f"{self.unit} '{at.id}'"

    def element(self, at: At) -> str:
        if at.dim is None:
            return f"index ({at.row},)" if self.positional else self.row(at)
        return f"index ({at.row}, {at.dim})" if self.positional else f"{self.row(at)} dim {at.dim}"


def _element_lines(evidence: Evidence, mismatched: int, total: int, noun: str, atol: float, rtol: float,
                   where: _Where) -> List[str]:
    lines = [f"Mismatched {noun}: {_pct(mismatched, total)}"]
    worst, rel = evidence.max_abs, evidence.max_rel
    if worst and rel:
        lines += [
            f"Greatest absolute difference: {_g(worst.value)} at {where.element(worst)} (up to {_limit(atol)} allowed)",
            f"Greatest relative difference: {_g(rel.value)} at {where.element(rel)} (up to {_limit(rtol)} allowed)",
            f"actual value {worst.actual:.9g}, baseline value {worst.baseline:.9g}",
        ]
    return lines


def _topk_lines(verdict: ModelVerdict, order_key: str, set_key: str) -> List[str]:
    topk = verdict.evidence.topk
    if not topk:
        return []
    tol, metrics = _limits(verdict), verdict.metrics
    lines = []
    for label, changed, share, limit in (
        ("order", topk.order_changed, metrics.topk_order_agreement or 0.0, getattr(tol, order_key)),
        ("set", topk.set_changed, metrics.topk_set_agreement or 0.0, getattr(tol, set_key)),
    ):
        lines.append(
            f"Top-{topk.k} retrieval {label} agreement: {100 * share:.1f}% ({changed.count} / {topk.queries} "
            "queries changed" + (f": {_names(changed)}" if changed.count else "")
            + f"; at least {100 * limit:g}% required, ties within {tol.tie_tolerance:g} ignored)"
        )
    return lines


def _embedding_lines(verdict: ModelVerdict, positional: bool) -> List[str]:
    evidence, metrics, tol = verdict.evidence, verdict.metrics, _limits(verdict)
    where, texts = _Where("text", positional), metrics.texts or 0
    lines = _element_lines(evidence, metrics.elements_beyond_tolerance or 0, evidence.elements or 0, "elements",
                           tol.atol, tol.rtol, where)
    low = evidence.min_cosine
    if low:
        lines.append(f"Lowest cosine similarity: {low.value:.9f} at {where.row(low)} (at least {tol.min_cosine:g} "
                     f"required; {_pct(low.below or 0, texts)} texts below)")
    if evidence.texts_beyond:
        named = ", ".join(f"{where.row(t)} ({_g(t.value)})" for t in evidence.texts_beyond)
        lines.append(f"Texts beyond atol: {_pct(metrics.texts_beyond_tolerance or 0, texts)}: {named}")
    return lines + _topk_lines(verdict, "min_topk_order_agreement", "min_topk_set_agreement")


def _quantized_lines(verdict: ModelVerdict, positional: bool) -> List[str]:
    evidence, metrics, tol = verdict.evidence, verdict.metrics, _limits(verdict)
    key, where = evidence.limit_key or "max_int_distance", _Where("text", positional)
    unit, dims = ("bit(s) flipped", "bits") if key == "max_bit_flips" else ("bucket(s) moved", "dims")
    lines = [
        f"Texts changed ({evidence.precision}): {_pct(metrics.rows_changed or 0, metrics.rows or 0)} "
        f"(at most {100 * tol.max_changed_fraction:g}% may change)",
        f"Most {unit} in one text: {getattr(metrics, key)} (up to {getattr(tol, key)} allowed)",
    ]
    lines += [f"  {where.row(w)}: {w.value} {unit}, {dims} {', '.join(map(str, w.dims or []))}" for w in evidence.worst or []]
    return lines + _topk_lines(verdict, "min_quantized_topk_order_agreement", "min_quantized_topk_set_agreement")


def _rerank_lines(verdict: ModelVerdict, positional: bool) -> List[str]:
    evidence, tol = verdict.evidence, _limits(verdict)
    where = _Where("pair", positional)
    lines = _element_lines(evidence, verdict.metrics.elements_beyond_tolerance or 0, evidence.pairs or 0, "scores",
                           tol.score_atol, tol.score_rtol, where)
    if evidence.queries is None:
        return lines
    lines.append(f"Queries reordered: {_pct(evidence.reordered_count or 0, evidence.queries)} beyond score ties of "
                 f"{tol.tie_tolerance:g} (at least {100 * tol.min_rerank_order_agreement:g}% must keep their order)")
    for q in evidence.reordered or []:
        above, below = where.row(At(q.above, q.above_row)), where.row(At(q.below, q.below_row))
        (b_hi, b_lo), (a_hi, a_lo) = q.baseline, q.actual
        lines.append(f"  query '{q.query}': {q.swaps} pair(s) swapped, e.g. {above} above {below} in baseline "
                     f"({b_hi:.7g} > {b_lo:.7g}), below it in actual ({a_hi:.7g} < {a_lo:.7g})")
    if evidence.min_kendall_tau:
        low = evidence.min_kendall_tau
        lines.append(f"Lowest Kendall tau: {low.value:.6g} at query '{low.query}'")
    return lines


def _tolerance_line(verdict: ModelVerdict, keys: Sequence[str], policy: str) -> str:
    tol = verdict.tolerance
    limits = ", ".join(f"{k}={_limit(getattr(tol, k))}" for k in keys) if tol else ""
    model = f" for model '{verdict.model_id}'" if verdict.model_id else ""
    return f"Tolerance: class {verdict.tolerance_class}{model} ({policy}): {limits}"


def _env_lines(comparison: Comparison) -> List[str]:
    from harness.report.text import format_env

    lines = [
        f"actual:   {comparison.candidate} [{format_env(comparison.candidate_env)}]",
        f"baseline: {comparison.baseline} [{format_env(comparison.baseline_env)}]",
    ]
    changes = comparison.env_changes
    if changes:
        shown = "; ".join(f"{c.key}: {c.baseline} -> {c.candidate}" for c in changes[:_ENV_SHOWN])
        more = f"; ... {len(changes) - _ENV_SHOWN} more" if len(changes) > _ENV_SHOWN else ""
        lines.append(f"Environment changes ({len(changes)}): {shown}{more}")
    lines.append("If this change is intended, accept it: harness baseline update "
                 f"{comparison.baseline} --from {comparison.candidate} --reason \"...\"")
    return lines


def render_failure(title: str, verdict: ModelVerdict, *, policy: str, positional: bool = False,
                   comparison: Optional[Comparison] = None) -> str:
    """The message for a verdict that did not pass; ``positional``: two bare arrays, rows named by position as
    numpy does; ``comparison``: two results files, for the environment lines and the update hint."""
    evidence = verdict.evidence
    kind = evidence.kind or ("embedding" if verdict.kind == "bi-encoder" else "rerank")
    lines: List[str] = []
    if verdict.reason and not verdict.checks:  # not compared at all (did not run): say why
        lines.append(verdict.reason)
    if evidence.to_json():
        lines += {"embedding": _embedding_lines, "quantized": _quantized_lines,
                  "rerank": _rerank_lines}[kind](verdict, positional)
    would = ", ".join(f"{k} {v:.9g}" if k.startswith("min_") else f"{k} {_g(v)}"
                      for k, v in verdict.min_passing.items())
    if would:
        lines.append(f"Would pass with: {would}")
    keys = {"embedding": _EMBEDDING_KEYS, "rerank": _RERANK_KEYS,
            "quantized": (evidence.limit_key or "max_int_distance", *_QUANTIZED_KEYS)}[kind]
    lines.append(_tolerance_line(verdict, keys, policy))
    if verdict.precision_change:
        lines.append(f"Precision: {verdict.precision_change}")
    lines += [line.replace("accuracy", "Accuracy", 1) for line in accuracy_lines.lines(verdict)]
    if comparison is not None:
        lines += _env_lines(comparison)
    return f"{title}\n\n" + "\n".join(lines)
