"""Cross-encoder scores: every score within ``score_atol + score_rtol * |baseline|``, and no query reranked
beyond score ties (a swap of two pairs whose baseline scores differ by more than ``tie_tolerance``).

One judge for arrays and files, as for bi-encoders: the statistics accumulate in ``stats.rerank.RerankStats``
(scores in baseline order, then whole queries) and the verdict is built from it alone. ``judge_rerank`` feeds
aligned arrays in one chunk; ``judge_rerank_files`` feeds two results files row group by row group through
``kinds.rerank_source`` (alignment, refusals, queries cut by row groups or interleaved), in memory bounded by
``HARNESS_COMPARE_MEMORY_MB`` plus a few numbers per query.
"""

from __future__ import annotations

from typing import Dict, Iterator, Optional, Sequence, Tuple

import numpy as np

from harness.compare.kinds import rerank_source as source
from harness.compare.policy import Tolerance
from harness.compare.stats.rerank import RerankStats
from harness.compare.verdict import ModelVerdict
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


def judge_rerank(model_id: str, tol: Tolerance, pair_ids: Sequence[str], query_ids: Optional[Sequence[str]],
                 base_scores: np.ndarray, cand_scores: np.ndarray) -> ModelVerdict:
    """The verdict on aligned scores (row i of each side is pair ``pair_ids[i]``). Without ``query_ids`` only the
    scores are judged; with them, each query's order too (a query's rows need not be contiguous)."""
    ids = np.asarray(pair_ids, dtype=str)
    bs = np.asarray(base_scores, dtype=np.float64)
    cs = np.asarray(cand_scores, dtype=np.float64)
    stats = RerankStats(len(bs), tol, with_queries=query_ids is not None)
    stats.add_scores(0, bs, cs)
    if query_ids is not None:
        for query, rows in queries_in_memory(np.asarray(query_ids, dtype=str)):
            stats.add_query(query, rows, bs[rows], cs[rows])

    def pair_id(positions: Sequence[int]) -> Dict[int, str]:
        return {p: str(ids[p]) for p in positions}

    return stats.verdict(model_id, pair_id)


def judge_rerank_files(base: ResultsFile, cand: ResultsFile, model_id: str, tol: Tolerance) -> ModelVerdict:
    """One cross-encoder of two results files, streamed: refuse broken input, align by pair id, judge."""
    pairs = source.RerankPair(base, cand, model_id)
    stats = RerankStats(pairs.rows, tol, with_queries=True)
    pairs.feed(stats)
    return stats.verdict(model_id, pairs.pair_ids)
