"""The cross-encoder judge as it was before it streamed (whole columns in memory, aligned with ``metrics.align``),
kept verbatim as the reference the streamed judge must reproduce: ``tests/compare/test_rerank_stream.py``."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from harness.compare import metrics as m
from harness.compare import streaming
from harness.compare.kinds.common import NAMED, WORST_N, build_verdict, ratio_check, share, significant
from harness.config.policy import Tolerance
from harness.errors import ResultsFileError
from harness.measured import adapter
from harness.results import ResultsFile
from harness.verdict import Check, Evidence, Metrics, ModelVerdict, Offender

import oracles

__all__ = ["judge_rerank", "judge_rerank_files"]  # the reference names


def _require_clean(results: ResultsFile, model_id: str, ids: np.ndarray, values: np.ndarray) -> None:
    """Duplicate ids or NaN/Inf make every statistic meaningless: refuse with the first offender named."""
    unique, counts = np.unique(ids, return_counts=True)
    if len(unique) != len(ids):
        dup = unique[counts > 1]
        raise ResultsFileError(f"{results.path}: model '{model_id}' has duplicate id(s) {', '.join(dup[:3])}")
    bad = ~np.isfinite(values) if len(values) else np.array([], bool)
    if bad.any():
        raise ResultsFileError(
            f"{results.path}: model '{model_id}' has non-finite scores in {int(bad.sum())} row(s) "
            f"(first: '{ids[np.argmax(bad)]}')"
        )


def judge_rerank_files(base: ResultsFile, cand: ResultsFile, model_id: str, tol: Tolerance) -> ModelVerdict:
    """One cross-encoder of two results files: read, refuse broken input, align by pair id, judge."""
    b, c = base.rerank(model_id), cand.rerank(model_id)
    _require_clean(base, model_id, b["item_id"], b["score"])
    _require_clean(cand, model_id, c["item_id"], c["score"])
    bi, ci, only_b, only_c = m.align(b["item_id"], c["item_id"])
    streaming.refuse_id_mismatch(model_id, only_b, only_c, cand.path)
    return judge_rerank(model_id, tol, b["item_id"][bi], b["query_id"][bi], b["score"][bi], c["score"][ci])


def _reordered(pair_ids: np.ndarray, groups: Dict[str, List[int]], swaps: Dict[str, int], bs: np.ndarray,
               cs: np.ndarray, tie: float) -> List[Dict[str, Any]]:
    """The queries with most significant swaps (first seen first among equals), each with its example: the
    swapped pair of the largest baseline gap."""
    out = []
    for qid in sorted((q for q, s in swaps.items() if s), key=lambda q: -swaps[q])[:NAMED]:
        idx = np.asarray(groups[qid])
        hi, lo = m.rank_changes(bs[idx], cs[idx], tie)[2] or (0, 0)
        hi, lo = int(idx[hi]), int(idx[lo])
        out.append({"query": str(qid), "swaps": int(swaps[qid]), "above": str(pair_ids[hi]), "above_row": hi,
                    "below": str(pair_ids[lo]), "below_row": lo,
                    "baseline": [float(bs[hi]), float(bs[lo])], "actual": [float(cs[hi]), float(cs[lo])]})
    return out


def _query_order(tol: Tolerance, groups: Dict[str, List[int]], bs: np.ndarray, cs: np.ndarray) -> Dict[str, Any]:
    """Per query: Kendall tau, significant swaps, whether its top-k order held."""
    taus, swaps, topk_same = [], {}, []
    for qid, rows in groups.items():
        idx = np.asarray(rows)
        tau, swaps[qid], _ = m.rank_changes(bs[idx], cs[idx], tol.tie_tolerance)
        taus.append((tau, qid))
        topk_same.append(bool(m.topk_agreement(bs[idx][None, :], cs[idx][None, :], tol.topk,
                                               tol.tie_tolerance).same_order[0]))
    return {"taus": taus, "swaps": swaps, "topk_same": topk_same}


def judge_rerank(model_id: str, tol: Tolerance, pair_ids: Sequence[str], query_ids: Optional[Sequence[str]],
                 base_scores: np.ndarray, cand_scores: np.ndarray) -> ModelVerdict:
    """The verdict on aligned scores (row i of each side is pair ``pair_ids[i]``). Without ``query_ids`` only the
    scores are judged; with them, each query's order too."""
    ids = np.asarray(pair_ids, dtype=str)
    bs = np.asarray(base_scores, dtype=np.float64)
    cs = np.asarray(cand_scores, dtype=np.float64)
    diff = np.abs(cs - bs)
    rel = diff / np.maximum(np.abs(bs), m.REL_FLOOR)
    stats = oracles.element_stats(bs, cs)
    n_bad = int((diff > tol.score_atol + tol.score_rtol * np.abs(bs)).sum())
    checks: List[Check] = [Check(
        name="max_score_diff", observed=stats.max_abs, limit=tol.score_atol, op="<=", passed=n_bad == 0,
        detail=f"{share(n_bad, len(diff))} elements exceed "
               f"atol={significant(tol.score_atol, stats.max_abs)} + rtol={significant(tol.score_rtol)}*|baseline|",
    )]
    groups = oracles.group_rows(np.asarray(query_ids, dtype=str)) if query_ids is not None else None
    metrics: Dict[str, Any] = {"pairs": len(bs), **({"queries": len(groups)} if groups is not None else {}),
                               "max_abs_diff": stats.max_abs, "mean_abs_diff": stats.mean_abs,
                               "p99_abs_diff": stats.p99_abs, "max_rel_diff": stats.max_rel,
                               "elements_beyond_tolerance": n_bad}
    evidence: Dict[str, Any] = {"kind": "rerank", "pairs": len(bs)}
    if len(diff):
        i_abs, i_rel = int(np.argmax(diff)), int(np.argmax(rel))
        evidence["max_abs"] = {"id": str(ids[i_abs]), "row": i_abs, "value": float(diff[i_abs]),
                               "actual": float(cs[i_abs]), "baseline": float(bs[i_abs])}
        evidence["max_rel"] = {"id": str(ids[i_rel]), "row": i_rel, "value": float(rel[i_rel])}
    offenders = [
        Offender(item_id=str(ids[i]), value=float(diff[i]), metric="score_abs_diff",
                 detail=f"baseline {significant(bs[i], cs[i])}, candidate {significant(cs[i], bs[i])}")
        for i in np.argsort(-diff, kind="stable")[:WORST_N]
        if diff[i] > 0
    ]
    min_passing: Dict[str, float] = {"score_atol": stats.max_abs}
    if groups is not None:
        order = _query_order(tol, groups, bs, cs)
        taus, swaps = order["taus"], order["swaps"]
        reordered = [q for q, s in swaps.items() if s]
        agreement = 1.0 - len(reordered) / max(len(groups), 1)
        checks.append(ratio_check(
            "rerank_order_agreement", agreement, tol.min_rerank_order_agreement,
            f"{len(reordered)} / {len(groups)} queries reordered beyond score ties of {significant(tol.tie_tolerance)}",
        ))
        metrics.update({
            "rerank_order_agreement": agreement,
            "min_kendall_tau": float(min(taus)[0]) if taus else 1.0,
            "mean_kendall_tau": float(np.mean([t for t, _ in taus])) if taus else 1.0,
            "topk": tol.topk,
            "topk_order_agreement": float(np.mean(order["topk_same"])) if order["topk_same"] else 1.0,
        })
        evidence.update(queries=len(groups), reordered_count=len(reordered),
                        reordered=_reordered(ids, groups, swaps, bs, cs, tol.tie_tolerance))
        if taus:
            low, qid = min(taus)
            evidence["min_kendall_tau"] = {"query": str(qid), "value": float(low)}
        offenders += [
            Offender(item_id=q, value=float(swaps[q]), metric="significant_swaps", detail="candidate pairs swapped")
            for q in sorted(reordered, key=lambda q: -swaps[q])[:WORST_N]
        ]
        min_passing["min_rerank_order_agreement"] = agreement
    metrics["abs_diff_histogram"] = m.log_histogram(diff)
    return build_verdict(model_id, "cross-encoder", tol, checks, Metrics(**metrics), offenders, min_passing,
                         adapter(Evidence).validate_python(evidence))
