"""Cross-encoder scores: every score within ``score_atol + score_rtol * |baseline|``, and no query reranked
beyond score ties. One judge for arrays (``judge_rerank``) and files (``judge_rerank_files``): the verdict is built
from ``stats.rerank.RerankStats`` alone. Files are in canonical order (by query, then passage), so the same pairs
are the same rows; anything else is broken input, refused with its cause.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa

from harness.compare import streaming
from harness.compare.kinds.common import NAMED, WORST_N, build_verdict, ratio_check, share, significant
from harness.compare.stats.rerank import RerankStats
from harness.compare.workers import Segment
from harness.config.policy import Tolerance
from harness.errors import ResultsFileError
from harness.measured import At, Swap, TauAt
from harness.results import ResultsFile, arrow_to_numpy, single_chunk
from harness.results.schema import in_canonical_order
from harness.verdict import Check, Evidence, Metrics, ModelVerdict, Offender

__all__ = ["judge_rerank", "judge_rerank_files", "queries_in_memory"]


def _scores(table: pa.Table) -> np.ndarray:
    return arrow_to_numpy(table.column("score")).astype(np.float64)


class _QueryRuns:
    """Queries as runs of equal query ids in baseline order; the last run of a chunk is carried to the next."""

    def __init__(self, stats: RerankStats) -> None:
        self.stats = stats
        self.open: Optional[Tuple[str, int, List[np.ndarray], List[np.ndarray]]] = None

    def add(self, position: int, queries: pa.Array, bs: np.ndarray, cs: np.ndarray) -> None:
        if not len(bs):
            return
        encoded = single_chunk(queries).dictionary_encode()
        codes, names = arrow_to_numpy(encoded.indices), encoded.dictionary.to_pylist()
        starts = np.concatenate([[0], np.flatnonzero(codes[1:] != codes[:-1]) + 1, [len(codes)]]).tolist()
        for s, e in zip(starts, starts[1:]):
            query = str(names[codes[s]])
            if self.open is not None and self.open[0] == query:
                self.open[2].append(bs[s:e])
                self.open[3].append(cs[s:e])
                continue
            self.close()
            self.open = (query, position + s, [bs[s:e]], [cs[s:e]])

    def close(self) -> None:
        if self.open is None:
            return
        query, first, bs, cs = self.open
        self.open = None
        b, c = (np.concatenate(bs), np.concatenate(cs)) if len(bs) > 1 else (bs[0], cs[0])
        self.stats.add_query(query, np.arange(first, first + len(b)), b, c)


class RerankPair:
    """One cross-encoder of two results files, fed to ``RerankStats`` (see the module's docstring)."""

    def __init__(self, base: ResultsFile, cand: ResultsFile, model_id: str) -> None:
        self.base, self.cand, self.model_id = base, cand, model_id
        self.groups = base.model_row_groups(model_id)
        self.starts = np.cumsum([0] + [count for _, count in self.groups])
        self.rows = int(self.starts[-1])

    def feed(self, stats: RerankStats, tap: Optional[Callable[[Segment], None]] = None) -> None:
        """Every pair's scores once, every query whole once (``tap``: each chunk's, in order); refuses broken
        input (one line, file named)."""
        runs = _QueryRuns(stats)
        try:
            for position, queries, bs, cs in self._chunks():
                stats.add_scores(position, bs, cs)
                if tap is not None:
                    tap((position, bs, cs))
                runs.add(position, queries, bs, cs)
        except streaming.Misaligned:  # a duplicate or an id on one side only
            self._refuse()
            raise ResultsFileError(f"{self.cand.path}: model '{self.model_id}' pairs are not in canonical order") from None
        runs.close()

    def _chunks(self) -> Iterator[Tuple[int, pa.Array, np.ndarray, np.ndarray]]:
        """Both files side by side in equal-length slices (row groups may be cut differently on each side):
        (baseline position of the first pair, query ids, baseline scores, candidate scores)."""
        sides = [self.base.model_table(self.model_id, ["item_id", "query_id", "passage_id", "score"]),
                 self.cand.model_table(self.model_id, ["item_id", "score"])]
        last, nonfinite = None, False
        for position, b, c in streaming.aligned([partial(next, side, None) for side in sides]):
            keys = b.select(["query_id", "passage_id"])
            if not single_chunk(b.column("item_id")).equals(single_chunk(c.column("item_id"))) or \
                    not in_canonical_order(keys, "rerank"):
                raise streaming.Misaligned()
            first = (keys.column(0)[0].as_py(), keys.column(1)[0].as_py())
            if last is not None and not first > last:
                raise streaming.Misaligned()
            last = (keys.column(0)[len(b) - 1].as_py(), keys.column(1)[len(b) - 1].as_py())
            bs, cs = _scores(b), _scores(c)
            for values in (bs, cs):
                wrong = ~np.isfinite(values)
                nonfinite |= bool(wrong.any())
                values[wrong] = 0.0  # refused at the end (``_refuse`` counts them): the statistics stay finite
            yield position, b.column("query_id"), bs, cs
        if nonfinite:
            self._refuse()

    def _refuse(self) -> None:
        """Broken input, each side in turn (duplicates, then non-finite scores), then ids on one side only."""
        ids: List[pa.Array] = []
        for results in (self.base, self.cand):
            table = pa.concat_tables(list(results.model_table(self.model_id, ["item_id", "score"])))
            side_ids = single_chunk(table.column("item_id")).cast(pa.string())
            streaming.refuse_duplicates(results, self.model_id, side_ids)
            wrong = ~np.isfinite(_scores(table))
            first = side_ids[int(np.argmax(wrong))].as_py() if wrong.any() else None
            streaming.refuse_nonfinite(results, self.model_id, int(wrong.sum()), first, "non-finite scores")
            ids.append(side_ids)
        streaming.refuse_id_mismatch(self.model_id, *streaming.one_sided(*ids), self.cand.path)

    def pair_ids(self, positions: Sequence[int]) -> Dict[int, str]:
        """The baseline's pair ids at these positions, reading only the row groups that hold them."""
        out: Dict[int, str] = {}
        where = np.searchsorted(self.starts, np.asarray(positions, dtype=np.int64), side="right") - 1
        for g in sorted(set(where.tolist())):
            ids = self.base.read_model_group(self.model_id, self.groups[g][0], ["item_id"]).column("item_id")
            for p, at in zip(positions, where.tolist()):
                if at == g:
                    out[p] = str(ids[p - int(self.starts[g])].as_py())
        return out


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
    bs, cs = np.asarray(base_scores, dtype=np.float64), np.asarray(cand_scores, dtype=np.float64)
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
    pairs = RerankPair(base, cand, model_id)
    stats = RerankStats(pairs.rows, tol, with_queries=True, worst_n=WORST_N, examples=max(NAMED, WORST_N))
    pairs.feed(stats, tap)
    return _verdict(stats, model_id, pairs.pair_ids)


def _verdict(stats: RerankStats, model_id: str, pair_id: Callable[[Sequence[int]], Dict[int, str]]) -> ModelVerdict:
    """The verdict from the statistics alone; ``pair_id`` maps baseline positions to pair ids."""
    tol, n = stats.tol, stats.pairs
    ids = pair_id(sorted(set(stats.named_positions())))
    max_abs = stats.max_abs[0] if stats.max_abs else 0.0
    checks: List[Check] = [Check("max_score_diff", max_abs, tol.score_atol, "<=", stats.beyond == 0,
                                 f"{share(stats.beyond, n)} elements exceed atol={significant(tol.score_atol, max_abs)}"
                                 f" + rtol={significant(tol.score_rtol)}*|baseline|")]
    queries = len(stats.first_pos)
    metrics = Metrics(pairs=n, queries=queries if stats.with_queries else None, max_abs_diff=max_abs,
                      mean_abs_diff=stats.mean(), p99_abs_diff=stats.p99(),
                      max_rel_diff=stats.max_rel[0] if stats.max_rel else 0.0, elements_beyond_tolerance=stats.beyond,
                      abs_diff_histogram=stats.histogram())
    evidence = Evidence("rerank", pairs=n)
    if stats.max_abs and stats.max_rel:
        value, at, base, cand = stats.max_abs
        evidence = dataclasses.replace(evidence, max_abs=At(ids[at], at, value=value, actual=cand, baseline=base),
                                       max_rel=At(ids[stats.max_rel[1]], stats.max_rel[1], value=stats.max_rel[0]))
    offenders = [Offender(ids[at], value, "score_abs_diff", f"baseline {significant(base, cand)}, candidate "
                          f"{significant(cand, base)}") for value, at, base, cand in stats.worst]
    min_passing: Dict[str, float] = {"score_atol": max_abs}
    if stats.with_queries:
        order = np.argsort(np.array(stats.first_pos, dtype=np.int64), kind="stable")
        taus = np.array(stats.taus, dtype=np.float64)[order]
        reordered = int(np.count_nonzero(np.array(stats.swaps, dtype=np.int64)))
        agreement = 1.0 - reordered / max(queries, 1)
        checks.append(ratio_check("rerank_order_agreement", agreement, tol.min_rerank_order_agreement,
                                  f"{reordered} / {queries} queries reordered beyond score ties of "
                                  f"{significant(tol.tie_tolerance)}"))
        same = np.array(stats.topk_same, dtype=bool)[order]
        metrics = dataclasses.replace(metrics, rerank_order_agreement=agreement,
                                      min_kendall_tau=float(stats.min_tau[0]) if stats.min_tau else 1.0,
                                      mean_kendall_tau=float(np.mean(taus)) if queries else 1.0, topk=tol.topk,
                                      topk_order_agreement=float(np.mean(same)) if queries else 1.0)
        examples = [Swap(str(e.query), -e.key[0], ids[e.above_row], e.above_row, ids[e.below_row], e.below_row,
                         e.baseline, e.actual) for e in stats.examples]
        evidence = dataclasses.replace(
            evidence, queries=queries, reordered_count=reordered, reordered=examples[:NAMED],
            min_kendall_tau=TauAt(str(stats.min_tau[1]), float(stats.min_tau[0])) if stats.min_tau else None)
        offenders += [Offender(item_id=e.query, value=float(-e.key[0]), metric="significant_swaps",
                               detail="candidate pairs swapped") for e in stats.examples[:WORST_N]]
        min_passing["min_rerank_order_agreement"] = agreement
    return build_verdict(model_id, "cross-encoder", tol, checks, metrics, offenders, min_passing, evidence)
