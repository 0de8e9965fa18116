"""Cross-encoder scores: every score within ``score_atol + score_rtol * |baseline|``, and no query reranked
beyond score ties. One judge for arrays (``judge_rerank``) and files (``judge_rerank_files``, streamed through
``kinds.rerank_source``): the verdict is built from ``stats.rerank.RerankStats`` alone.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from harness.compare.kinds import rerank_source as source
from harness.compare.kinds.common import NAMED, WORST_N, build_verdict, ratio_check, share, significant
from harness.compare.policy import Tolerance
from harness.compare.stats.rerank import RerankStats
from harness.compare.verdict import Check, ModelVerdict, Offender
from harness.compare.workers import Segment
from harness.results import ResultsFile

__all__ = ["judge_rerank", "judge_rerank_files", "queries_in_memory"]


def queries_in_memory(query_ids: np.ndarray) -> Iterator[Tuple[str, np.ndarray]]:
    """``(query id, its rows in increasing order)`` per query of an in-memory column, in first-seen order."""
    if not len(query_ids):
        return
    unique, first, inverse = np.unique(query_ids, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first, kind="stable"), kind="stable")[inverse.ravel()]
    rows = np.argsort(rank, kind="stable")
    cuts = np.flatnonzero(np.diff(rank[rows])) + 1
    for part in np.split(rows, cuts):
        yield str(query_ids[part[0]]), part


def judge_rerank(model_id: str, tol: Tolerance, pair_ids: Sequence[str] | np.ndarray, query_ids: Sequence[str] | np.ndarray | None,
                 base_scores: np.ndarray, cand_scores: np.ndarray) -> ModelVerdict:
    """The verdict on aligned scores (row i of each side is pair ``pair_ids[i]``). Without ``query_ids`` only the
    scores are judged; with them, each query's order too (a query's rows need not be contiguous)."""
    ids = np.asarray(pair_ids, dtype=str)
    bs = np.asarray(base_scores, dtype=np.float64)
    cs = np.asarray(cand_scores, dtype=np.float64)
    stats = RerankStats(len(bs), tol, with_queries=query_ids is not None, worst_n=WORST_N, examples=max(NAMED, WORST_N))
    stats.add_scores(0, bs, cs)
    if query_ids is not None:
        for query, rows in queries_in_memory(np.asarray(query_ids, dtype=str)):
            stats.add_query(query, rows, bs[rows], cs[rows])
    return _verdict(stats, model_id, lambda positions: {p: str(ids[p]) for p in positions})


def judge_rerank_files(base: ResultsFile, cand: ResultsFile, model_id: str, tol: Tolerance,
                       tap: Optional[Callable[[Segment], None]] = None) -> ModelVerdict:
    """One cross-encoder of two results files, streamed: refuse broken input, align by pair id, judge (``tap``: fed
    the scores too, in order)."""
    pairs = source.RerankPair(base, cand, model_id)
    stats = RerankStats(pairs.rows, tol, with_queries=True, worst_n=WORST_N, examples=max(NAMED, WORST_N))
    pairs.feed(stats, tap)
    return _verdict(stats, model_id, pairs.pair_ids)


def _verdict(stats: RerankStats, model_id: str, pair_id: Callable[[Sequence[int]], Dict[int, str]]) -> ModelVerdict:
    """The verdict from the statistics alone; ``pair_id`` maps baseline positions to pair ids."""
    tol, n = stats.tol, stats.pairs
    ids = pair_id(sorted(set(stats.named_positions())))
    max_abs = stats.max_abs[0] if stats.max_abs else 0.0
    checks: List[Check] = [Check(
        name="max_score_diff", observed=max_abs, limit=tol.score_atol, op="<=", passed=stats.beyond == 0,
        detail=f"{share(stats.beyond, n)} elements exceed "
               f"atol={significant(tol.score_atol, max_abs)} + rtol={significant(tol.score_rtol)}*|baseline|",
    )]
    queries = len(stats.first_pos)
    metrics: Dict[str, Any] = {"pairs": n, **({"queries": queries} if stats.with_queries else {}),
                               "max_abs_diff": max_abs, "mean_abs_diff": stats.mean(),
                               "p99_abs_diff": stats.p99(), "max_rel_diff": stats.max_rel[0] if stats.max_rel else 0.0,
                               "elements_beyond_tolerance": stats.beyond}
    evidence: Dict[str, Any] = {"kind": "rerank", "pairs": n}
    if stats.max_abs and stats.max_rel:
        value, at, base, cand = stats.max_abs
        evidence["max_abs"] = {"id": ids[at], "row": at, "value": value, "actual": cand, "baseline": base}
        evidence["max_rel"] = {"id": ids[stats.max_rel[1]], "row": stats.max_rel[1], "value": stats.max_rel[0]}
    offenders = [Offender(item_id=ids[at], value=value, metric="score_abs_diff",
                          detail=f"baseline {significant(base, cand)}, candidate {significant(cand, base)}")
                 for value, at, base, cand in stats.worst]
    min_passing: Dict[str, float] = {"score_atol": max_abs}
    if stats.with_queries:
        order = np.argsort(np.array(stats.first_pos, dtype=np.int64), kind="stable")
        taus = np.array(stats.taus, dtype=np.float64)[order]
        reordered = int(np.count_nonzero(np.array(stats.swaps, dtype=np.int64)))
        agreement = 1.0 - reordered / max(queries, 1)
        checks.append(ratio_check(
            "rerank_order_agreement", agreement, tol.min_rerank_order_agreement,
            f"{reordered} / {queries} queries reordered beyond score ties of {significant(tol.tie_tolerance)}",
        ))
        same = np.array(stats.topk_same, dtype=bool)[order]
        metrics.update({
            "rerank_order_agreement": agreement,
            "min_kendall_tau": float(stats.min_tau[0]) if stats.min_tau else 1.0,
            "mean_kendall_tau": float(np.mean(taus)) if queries else 1.0,
            "topk": tol.topk,
            "topk_order_agreement": float(np.mean(same)) if queries else 1.0,
        })
        examples = [{"query": str(e.query), "swaps": -e.key[0], "above": ids[e.above_row], "above_row": e.above_row,
                     "below": ids[e.below_row], "below_row": e.below_row, "baseline": e.baseline, "actual": e.actual}
                    for e in stats.examples]
        evidence.update(queries=queries, reordered_count=reordered, reordered=examples[:NAMED])
        if stats.min_tau:
            evidence["min_kendall_tau"] = {"query": str(stats.min_tau[1]), "value": float(stats.min_tau[0])}
        offenders += [Offender(item_id=e.query, value=float(-e.key[0]), metric="significant_swaps",
                               detail="candidate pairs swapped") for e in stats.examples[:WORST_N]]
        min_passing["min_rerank_order_agreement"] = agreement
    metrics["abs_diff_histogram"] = stats.histogram()
    return build_verdict(model_id, "cross-encoder", tol, checks, metrics, offenders, min_passing, evidence)
