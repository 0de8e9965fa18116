"""The comparator's "must I re-embed?" for one float bi-encoder of two results files: the exact retrieval
scenarios (``harness.compare.scenarios``) over the files' documents, row group by row group (memory: one row
group pair and the query batches the budget allows, whatever the corpus), and, with an ``[index]`` configured
(or ``--index``), the scenario through a FAISS index (``harness.compare.vector_index``: it holds the baseline's
documents in memory, as the user's index does). The advice is reported beside the verdict, never gating it."""

from __future__ import annotations

import dataclasses
from typing import Iterator, List, Optional, Tuple

import numpy as np

from harness.compare import scenarios, streaming, vector_index
from harness.compare.kinds.embedding import retrieval_k
from harness.compare.kinds.source import FilePair
from harness.compare.policy import Tolerance
from harness.compare.scenario_verdict import RetrievalScenarios, ScenarioShare
from harness.config.project import IndexSettings

__all__ = ["judge_scenarios"]

#: why the scenario through an index did not run without an ``[index]`` table
NO_INDEX = "no [index] configured (harness.toml, or --index FILE --id-map FILE)"


def _blocks(pair: FilePair) -> Iterator[scenarios.Block]:
    """The documents of both files in baseline order, ``BLOCK_ROWS`` at a time, with their positions and ids
    (views of the row groups where the documents are contiguous; neither side holds a row group while the next is
    read: one row group pair is in memory at a time)."""
    docs = pair.documents
    for position, base, cand in streaming._same_order_segments(pair.base, pair.cand, pair.model_id):
        rows = np.flatnonzero(docs[position : position + len(base)])
        for s in range(0, len(rows), scenarios.BLOCK_ROWS):
            at = rows[s : s + scenarios.BLOCK_ROWS]
            ids = pair.plan.base_ids.slice(position + int(at[0]), int(at[-1] - at[0]) + 1).to_pylist()
            take = slice(int(at[0]), int(at[-1]) + 1) if at[-1] - at[0] + 1 == len(at) else at  # a view if it can
            yield position + at, [str(ids[i - at[0]]) for i in at], base[take], cand[take]
        del base, cand  # before the next row group pair is read


def _through_index(pair: FilePair, k: int, tol: Tolerance, index: Optional[IndexSettings]) -> scenarios.Scenario:
    """Through the index: the documents and every query in memory, as the index holds them."""
    if index is None:
        return scenarios.Scenario("index", "keep the index, through a FAISS index", None, reason=NO_INDEX)
    base_q, cand_q = pair.query_vectors()
    at = np.flatnonzero(pair.documents)
    docs = streaming.read_rows(pair.base, pair.model_id, at)
    ids: List[str] = [str(i) for i in pair.plan.base_ids.take(at).to_pylist()]
    return vector_index.index_scenario(base_q, cand_q, docs, ids, k, tol.tie_tolerance, index)


def _share(s: scenarios.Scenario) -> ScenarioShare:
    order, same = (s.share("same_order"), s.share("same_set")) if s.ran else (None, None)
    return ScenarioShare(s.key, s.title, order, same, s.reason, s.recall)


def judge_scenarios(pair: FilePair, tol: Tolerance, index: Optional[IndexSettings] = None,
                    served: bool = False) -> Optional[RetrievalScenarios]:
    """The scenarios of ``pair`` judged by ``tol``'s top-k rules and limits; None without queries or documents
    or when the settings skip them (``CompareSettings.scenarios``).
    ``served``: the candidate came from a server (the keep-the-index line then asks about its queries)."""
    k = retrieval_k(pair, tol.topk)
    if k is None or not pair.settings.scenarios:  # HARNESS_SCENARIOS=0: skipped on purpose
        return None
    share = index.rolling_share if index is not None else 0.5
    nq, settings = len(pair.queries), pair.settings
    size = scenarios.batch_size(pair.dim, 8, k, settings)  # one of scenarios_over's batches per read (float64)
    parts: List[Tuple[scenarios.Scenario, ...]] = []
    for start in range(0, nq, size):
        base_q, cand_q = pair.query_vectors(start, min(nq, start + size))
        parts.append(scenarios.scenarios_over(lambda: _blocks(pair), base_q, cand_q, k, tol.tie_tolerance, share,
                                              settings))
    found = [dataclasses.replace(first, agreement=scenarios._joined([a for p in parts if (a := p[i].agreement)], k))
             for i, first in enumerate(parts[0])]
    found.append(_through_index(pair, k, tol, index))
    decision = scenarios.decide(found, tol)
    return RetrievalScenarios(k=k, queries=nq, min_order=tol.min_topk_order_agreement,
                              min_set=tol.min_topk_set_agreement, advice=decision.advice, scenario=decision.scenario,
                              order_margin=decision.order_margin, set_margin=decision.set_margin, served=served,
                              items=[_share(s) for s in found])
