"""Terminal rendering of one comparison: a table per model, then every failure explained."""

from __future__ import annotations

from typing import Any, Callable, Dict, List

from harness.explain import group_changes
from harness.report import accuracy_lines, scenario_lines
from harness.report.format import fmt, fmt_cosine, fmt_percent
from harness.verdict import Check, Comparison, ModelVerdict, Status

__all__ = ["render_comparison", "render_explanation", "format_env", "fmt_drift", "speed_cells", "fmt_used", "check_line",
           "explained", "would_pass", "order_shown", "ORDER_FIGURES_NOTE"]

#: what the unjudged rank figures beside a passing order check mean (HTML bars, Markdown, terminal)
ORDER_FIGURES_NOTE = (
    "raw order counts every changed top-k order, near-ties included (the judged order agreement ignores swaps "
    "between items whose baseline scores differ by no more than tie_tolerance: fp32 noise flips those); Kendall "
    "tau is the rank correlation of each query's reranked order with the baseline's (1 = same order, min over "
    "queries and mean). Both are reported, not judged."
)


def fmt_drift(model: ModelVerdict) -> str:
    """A model's largest drift in its own unit: max |diff| for floats, bits or buckets for quantized vectors."""
    return model.metrics.moved or fmt(model.metrics.max_abs_diff)


def fmt_used(check: Check) -> str:
    """A check's share of its allowance used (``limit_used``): ``37%``, ``31x`` far over; ``none allowed`` when the
    limit allows no drift and there was some."""
    used = check.used
    if used is None:
        return "none allowed"
    if used >= 10:
        return f"{used:,.0f}x"
    return "<1%" if 0 < used < 0.01 else f"{used:.0%}"


def explained(model: ModelVerdict) -> List[str]:
    """Why a model did not pass, as every plain-text report says it: each failed check with its detail, else
    the model's reason."""
    return [f"{check_line(c)}; {c.detail}" for c in model.failed_checks] or ([model.reason] if model.reason else [])


def would_pass(model: ModelVerdict, name: Callable[[str], str] = str) -> str:
    """The loosest limits it would pass with (``atol 3.00e-05, min_cosine 0.999``); "" when there are none."""
    return ", ".join(f"{name(k)} {fmt(v)}" for k, v in model.min_passing.items())


def check_line(check: Check) -> str:
    """``name: observed (limit op L, used 37%)``: the one wording every report gives a check."""
    used = fmt_used(check)
    shown = used if used == "none allowed" else f"used {used}"
    return f"{check.name}: {fmt(check.observed)} (limit {check.op} {fmt(check.limit)}, {shown})"


def _mb(value: Any) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value / 2**20:,.0f} MB"


def speed_cells(model: ModelVerdict) -> List[str]:
    """``[device, texts/s, vs baseline, CUDA peak, run peak RSS]`` of a verdict's candidate, as shown in every
    report (never judged: speed depends on the machine, not on correctness)."""
    cand, base = model.performance.get("candidate"), model.performance.get("baseline")
    if cand is None:
        return ["-"] * 5
    device = cand.device + (f" ({cand.hardware})" if cand.hardware else "")
    rate, base_rate = cand.items_per_s, base.items_per_s if base else None
    ratio = f"{rate / base_rate:.2f}x" if rate and base_rate else "-"
    shown = "-" if not rate else f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}"
    return [device, shown, ratio, _mb(cand.cuda_peak_memory_bytes), _mb(cand.peak_rss_bytes)]


def format_env(env: Dict[str, Any]) -> str:
    """One-line environment summary: python, torch, ST, transformers, device, dtype."""
    pkgs = env.get("packages", {}) or {}
    device = env.get("gpu_name") or env.get("device") or "?"
    return (
        f"python {env.get('python', '?')}, torch {pkgs.get('torch') or env.get('torch_version', '?')}, "
        f"sentence-transformers {pkgs.get('sentence-transformers', '?')}, transformers {pkgs.get('transformers', '?')}, "
        f"{device} {env.get('dtype', '?')}"
    )


def _table(rows: List[List[str]]) -> List[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def order_shown(model: ModelVerdict, labelled: bool = True) -> str:
    """What every report's order-agreement column shows: the headline agreement (with its label), or why retrieval
    was not judged (never a bare "-" that reads as "nothing to say"); "-" only for a model without either."""
    label, value = model.metrics.order_agreement()
    shown = (f"{fmt_percent(value)} ({label})" if labelled else fmt_percent(value)) if label else "-"
    return model.metrics.retrieval_note() or shown


def topk_decided(model: ModelVerdict) -> str:
    """How the top-k agreement was decided, when a certificate proved some of it (``harness.compare.certify``):
    "top-10: 10,000 queries, 9,990 certified by the bound, 10 scored exactly"; "" otherwise."""
    topk = model.evidence.topk
    certified, exact = (topk.certified, topk.scored_exactly) if topk else (None, None)
    if not certified or exact is None:
        return ""
    return (f"top-{model.metrics.topk or 'k'}: {certified + exact:,} queries, {certified:,} certified by the bound, "
            f"{exact:,} scored exactly")


def render_comparison(data: Comparison, regen_hint: str = "") -> str:
    """The verdict as text: summary table, failure explanations with worst offenders, environment changes (a JSON
    verdict as read: ``Comparison.from_dict`` first)."""
    models = data.models
    failing = [m for m in models if m.status is not Status.PASS]
    lowered = sorted({m.tolerance_class for m in models if m.precision_change})
    at = f" at {', '.join(lowered)}" if lowered else ""  # a precision change: the class it was judged at, first
    lines = [
        f"harness compare: {data.status.value.upper()}{at} ({len(failing)} of {len(models)} model(s) not passing)"
        f"{accuracy_lines.headline(models)}",
        f"  baseline:  {data.baseline}  [{format_env(data.baseline_env)}]",
        f"  candidate: {data.candidate}  [{format_env(data.candidate_env)}]",
        f"  policy:    {data.policy}",
        "",
    ]
    rows = [["MODEL", "KIND", "CLASS", "STATUS", "MAX DRIFT", "MIN COSINE", "ORDER AGREEMENT"]]
    rows += [[model.model_id, model.kind, model.tolerance_class, model.status.value.upper(), fmt_drift(model),
              fmt_cosine(model.metrics.min_cosine), order_shown(model, labelled=False)] for model in models]
    lines += _table(rows)
    lines += [f"  {model.model_id} {topk_decided(model)}" for model in models if topk_decided(model)]
    lines += scenario_lines.text_lines(models)
    checks = [["MODEL", "CHECK", "OBSERVED", "LIMIT", "USED", "RESULT"]]
    checks += [[model.model_id, c.name, fmt(c.observed), f"{c.op} {fmt(c.limit)}", fmt_used(c),
                "pass" if c.passed else "FAIL"] for model in models for c in model.checks]
    if len(checks) > 1:
        lines += ["", "Checks (USED: share of the limit's allowance the drift used; 100% is at the limit):"] + _table(checks)
    measured = [f"  {model.model_id} {line}" for model in models for line in accuracy_lines.lines(model)]
    lines += ["", "Accuracy against the fp64 reference:", *measured] if measured else []
    speed = [["MODEL", "DEVICE", "TEXTS/S", "VS BASELINE", "CUDA PEAK", "RUN PEAK RSS"]]
    speed += [[model.model_id, *speed_cells(model)] for model in models if model.performance]
    if len(speed) > 1:
        lines += ["", "Speed and memory of the candidate run (reported, not judged):"] + _table(speed)
    for model in failing:
        lines += ["", f"{model.status.value.upper()} {model.model_id} (tolerance class {model.tolerance_class}):"]
        lines += [f"  {line}" for line in explained(model)]
        if model.offenders:
            lines.append("  worst items:")
            lines += [f"    {o.item_id:<24} {o.metric:<18} {fmt(o.value):>10}  {o.detail}" for o in model.offenders]
        if model.failed_checks and model.min_passing:
            lines.append(f"  would pass with: {would_pass(model)}")
    changes = data.env_changes
    if changes:
        groups, unclassified = group_changes(changes)
        lines += ["", f"Environment changes vs baseline ({len(changes)}):"]
        for group, items in groups:
            lines.append(f"  {group}:")
            lines += [f"    {c.key}: {_short(c.baseline, 40)} -> {_short(c.candidate, 40)}" for c in items[:20]]
            if len(items) > 20:
                lines.append(f"    ... {len(items) - 20} more (see the JSON report)")
        if unclassified:
            lines.append(f"  {unclassified} other difference(s) (platform strings, paths) in the JSON report")
    if failing and regen_hint:
        lines += ["", regen_hint]
    return "\n".join(lines)


def render_explanation(factors: List[Any], comparison: Comparison) -> str:
    """Factors that differ, each with its known drift, under the drift actually observed per model."""
    lines = ["Observed drift:"]
    observed = 0.0
    for model in comparison.models:
        value = model.metrics.max_abs_diff
        observed = max(observed, value or 0.0)
        lines.append(f"  {model.model_id:<24} {model.status.value.upper():<12} max abs diff {fmt(value)}")
    if not factors:
        lines += ["", "No environment factor differs: any drift comes from the model files or nondeterminism."]
        return "\n".join(lines)
    lines += ["", "Factors that differ (largest known drift first):"]
    rows = [["FACTOR", "GROUP", "BASELINE -> CANDIDATE", "KNOWN MAX ABS", "EXPLAINS OBSERVED?", "MEASURED BY"]]
    for factor in factors:
        change = factor.changes[0]
        more = f" (+{len(factor.changes) - 1} more)" if len(factor.changes) > 1 else ""
        verdict = factor.can_explain(observed)
        rows.append([
            factor.name,
            factor.group,
            f"{_short(change.baseline)} -> {_short(change.candidate)}{more}",
            fmt(factor.known.max_abs) if factor.known.max_abs is not None else "unbounded",
            {True: "yes", False: "no (too small)", None: "possibly"}[verdict],
            factor.known.source or "not measured yet",
        ])
    lines += _table(rows)
    names = {f.name for f in factors}
    if "cpu" in names:
        lines += ["", "The CPU differs. How much of the drift is kernel dispatch can be measured on this machine: rerun with",
                  "`harness check --cpu-isa avx2` (or the baseline's instruction set) and compare; what remains with every",
                  "library pinned to the same instruction set is the other microarchitecture, which no setting reproduces",
                  "on one machine (docs/drift-magnitudes.md, CPU table)."]
    return "\n".join(lines)


def _short(value: Any, width: int = 28) -> str:
    text = fmt(value)
    return text if len(text) <= width else text[: width - 3] + "..."
