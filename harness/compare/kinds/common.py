"""What every kind of output shares: ratio checks, the top-k checks with their evidence, the verdict. Evidence
stays small (``NAMED`` ids per list) and JSON-serializable: it travels in every report.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from harness.compare.kinds.source import EmbeddingPair
from harness.compare.metrics import TopKAgreement
from harness.config.policy import Tolerance
from harness.measured import Named, NotJudged, TopKEvidence
from harness.verdict import Check, Evidence, Metrics, ModelVerdict, Offender, Status, not_judged_note

__all__ = ["NAMED", "WORST_N", "Checked", "build_verdict", "ratio_check", "share", "significant", "topk_checks", "with_topk"]

#: offenders kept per verdict (texts, pairs or queries that moved most)
WORST_N = 5
#: ids named per evidence list (changed queries, texts beyond atol, reordered queries)
NAMED = 5


class Checked(NamedTuple):
    """A kind's own checks of what its pass measured, before the top-k checks join them and the verdict is built:
    the checks, the metrics, the evidence, the loosest passing limits, the worst items."""

    checks: List[Check]
    metrics: Metrics
    evidence: Evidence
    min_passing: Dict[str, float]
    offenders: List[Offender]


def significant(value: Any, against: Optional[float] = None, digits: int = 3) -> str:
    """A number for a reason or message, with as many significant digits as it takes to stay true: at least
    ``digits`` (near 1, of the distance from 1), more while it would read as an integer it is not ("1" for
    0.99999719) or, next to ``against`` (its limit), in the other order. Every report's numbers use it."""
    if value is None:
        return "-"
    if isinstance(value, (bool, int)):
        return str(value)
    value = float(value)
    if not math.isfinite(value) or value == 0:
        return "0" if value == 0 else str(value)

    start = digits
    if 0.5 < abs(value) < 2 and abs(value) != 1:  # near 1 what drifts is the distance from 1: keep its digits
        start += max(0, math.ceil(-math.log10(abs(abs(value) - 1))))
    for width in range(min(start, 17), 18):
        shown = f"{value:.{width}g}"
        if float(shown).is_integer() and not value.is_integer():
            continue
        if against is not None and math.isfinite(against):
            other = f"{float(against):.{width}g}"
            if np.sign(float(shown) - float(other)) != np.sign(value - float(against)):
                continue
        return shown
    return repr(value)


def share(count: int, total: int) -> str:
    """``count`` of ``total`` with its percentage by ``significant``: "3 of 150000 (0.002%)", never a "0.00%"
    that hides a nonzero count nor a "100%" that hides a missing one."""
    if not total:
        return f"{count} of {total}"
    percent = 100.0 * count / total
    limit = 0.0 if count and percent < 50 else 100.0
    return f"{count} of {total} ({significant(percent, limit)}%)"


def ratio_check(name: str, observed: float, limit: float, detail: str) -> Check:
    """A share that must reach ``limit`` (agreements: 1.0 = every query unchanged)."""
    return Check(name=name, observed=observed, limit=limit, op=">=", passed=observed >= limit, detail=detail)


def topk_checks(tol: Tolerance, agree: TopKAgreement, pair: Any, metrics: Metrics, min_passing: Dict[str, float],
                quantized_scores: bool = False) -> Tuple[List[Check], Metrics, TopKEvidence]:
    """The top-k order and set checks, ``metrics`` with the agreement's, its evidence (the changed queries named
    through ``pair.item_id``); the loosest passing limits are added to ``min_passing``."""
    prefix = "min_quantized_topk" if quantized_scores else "min_topk"
    limits = {f"{prefix}_{what}_agreement": getattr(tol, f"{prefix}_{what}_agreement") for what in ("order", "set")}
    k, n_q = agree.k, len(agree.same_order)
    order, same_set = agree.share("same_order"), agree.share("same_set")
    metrics = dataclasses.replace(metrics, topk=k, topk_order_agreement=order, topk_set_agreement=same_set,
                                  topk_raw_order_agreement=agree.share("raw_same_order"),
                                  topk_mean_overlap=agree.share("overlap"))
    min_passing.update(zip(limits, (order, same_set)))
    changed = {what: np.flatnonzero(~getattr(agree, f"same_{what}")) for what in ("order", "set")}
    named = {what: Named(len(rows), [pair.item_id(int(pair.queries[i])) for i in rows[:NAMED]])
             for what, rows in changed.items()}
    order_limit, set_limit = limits.values()
    checks = [ratio_check(f"top{k}_order_agreement", order, order_limit,
                          f"{len(changed['order'])} / {n_q} queries changed their top-{k} order "
                          f"(ties within {significant(tol.tie_tolerance)} ignored)"),
              ratio_check(f"top{k}_set_agreement", same_set, set_limit,
                          f"{len(changed['set'])} / {n_q} queries changed their top-{k} set")]
    return checks, metrics, TopKEvidence(k, n_q, named["order"], named["set"])


def build_verdict(model_id: str, kind: str, tol: Tolerance, checks: List[Check], metrics: Metrics,
                  offenders: List[Offender], min_passing: Dict[str, float], evidence: Evidence) -> ModelVerdict:
    """The verdict: fail when any check failed, with those checks spelled out as the reason."""
    failed = [c for c in checks if not c.passed]
    notes = [not_judged_note(metrics.topk_not_judged)] if failed and metrics.topk_not_judged else []
    reason = "; ".join(
        [f"{c.name} {significant(c.observed, c.limit)} (limit {c.op} {significant(c.limit, c.observed)}): {c.detail}"
         for c in failed] + notes)
    return ModelVerdict(model_id, kind, Status.FAIL if failed else Status.PASS, tol.name, checks, metrics,
                        offenders, reason, tol, min_passing, evidence=evidence)


def with_topk(tol: Tolerance, pair: EmbeddingPair, metrics: Metrics, evidence: Evidence, checks: List[Check],
              min_passing: Dict[str, float], agreement: Optional[TopKAgreement], quantized_scores: bool = False,
              certified: Optional[Tuple[int, int]] = None) -> Tuple[Metrics, Evidence]:
    """The top-k checks added to ``checks`` with their metrics and evidence (``certified``: how many queries the
    certificate proved and how many were scored); without an agreement, why no top-k check ran."""
    if agreement is None:  # say why instead of leaving the retrieval columns silently empty
        why = "no queries" if not len(pair.queries) else "no documents"
        return (dataclasses.replace(metrics, topk_not_judged=why),
                dataclasses.replace(evidence, topk_not_judged=NotJudged(why, len(pair.queries), int(pair.documents.sum()))))
    more, metrics, topk = topk_checks(tol, agreement, pair, metrics, min_passing, quantized_scores)
    checks += more
    if certified is not None:  # how the agreement was decided
        topk = dataclasses.replace(topk, certified=certified[0], scored_exactly=certified[1])
    return metrics, dataclasses.replace(evidence, topk=topk)
