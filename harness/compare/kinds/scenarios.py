"""The comparator's "must I re-embed?" for one float bi-encoder: the exact scenarios (computed in the verdict's own
passes, ``kinds.retrieval``) and, with an ``[index]``, the one through a FAISS index. Reported, never gating.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from harness.compare import scenarios, streaming, vector_index
from harness.compare.kinds.source import EmbeddingPair, FilePair
from harness.compare.policy import Tolerance
from harness.compare.scenario_verdict import RetrievalScenarios, ScenarioShare
from harness.config.project import IndexSettings

__all__ = ["ScenarioRequest"]

#: why the scenario through an index did not run without an ``[index]`` table
NO_INDEX = "no [index] configured (harness.toml, or --index FILE --id-map FILE)"


def _through_index(pair: EmbeddingPair, k: int, tol: Tolerance, index: Optional[IndexSettings]) -> scenarios.Scenario:
    """Through the index: the documents and every query in memory, as the index holds them."""
    if index is None or not isinstance(pair, FilePair):
        return scenarios.Scenario("index", "keep the index, through a FAISS index", None, reason=NO_INDEX)
    base_q, cand_q = pair.query_vectors()
    at = np.flatnonzero(pair.documents)
    docs = streaming.read_rows(pair.base, pair.model_id, at)
    return vector_index.index_scenario(base_q, cand_q, docs, pair.ids_at(at), k, tol.tie_tolerance, index)


def _share(s: scenarios.Scenario) -> ScenarioShare:
    order, same = (s.share("same_order"), s.share("same_set")) if s.ran else (None, None)
    return ScenarioShare(s.key, s.title, order, same, s.reason, s.recall)


@dataclass(frozen=True)
class ScenarioRequest:
    """The comparator's ask for the scenarios beside a verdict: the ``[index]`` to search through (None: exact
    scenarios only) and whether the candidate came from a server (the keep-the-index line then asks about its
    queries). Skipped when the settings say so (``CompareSettings.scenarios``, HARNESS_SCENARIOS=0)."""

    index: Optional[IndexSettings] = None
    served: bool = False

    def share(self, pair: EmbeddingPair) -> Optional[float]:
        """The rolling re-embed's share of documents done, None when the scenarios are skipped."""
        if not pair.settings.scenarios:
            return None
        return self.index.rolling_share if self.index is not None else 0.5

    def judge(self, pair: EmbeddingPair, tol: Tolerance, k: int,
              exact: Tuple[scenarios.Scenario, ...]) -> RetrievalScenarios:
        """The exact scenarios (and the one through the index) judged by ``tol``'s top-k rules and limits."""
        found: List[scenarios.Scenario] = [*exact, _through_index(pair, k, tol, self.index)]
        decision = scenarios.decide(found, tol)
        return RetrievalScenarios(k=k, queries=len(pair.queries), min_order=tol.min_topk_order_agreement,
                                  min_set=tol.min_topk_set_agreement, advice=decision.advice,
                                  scenario=decision.scenario, order_margin=decision.order_margin,
                                  set_margin=decision.set_margin, served=self.served,
                                  items=[_share(s) for s in found])

