""""Must I re-embed?": the retrieval scenarios of an upgrade for one bi-encoder, judged by the exact top-k rules.

Against the old ranking, the queries are served by: ``reembed`` (everything re-embedded: what the verdict
judges), ``keep_index`` (new queries against the old index) or ``rolling`` (a re-embed caught half-way: a share
of documents, chosen by a hash of their id, re-embedded). ``decide`` turns them into advice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from harness.compare.metrics import TopKAgreement
from harness.config.policy import Tolerance
from harness.config.project import IndexSettings
from harness.verdict import RetrievalScenarios, ScenarioShare

if TYPE_CHECKING:
    from harness.compare.kinds.source import EmbeddingPair

__all__ = ["SCENARIOS", "Decision", "Scenario", "ScenarioRequest", "decide", "rolled"]

#: scenario key -> how reports name it
SCENARIOS = {"reembed": "re-embed everything", "keep_index": "keep the index, re-embed queries only",
             "rolling": "rolling re-embed"}


@dataclass(frozen=True)
class Scenario:
    """One way of serving queries after the upgrade and its top-k agreement with the old ranking; ``agreement``
    None when it did not run (``reason`` says why). ``recall``: an approximate index's own recall@k against
    exact search (baseline queries), beside the upgrade's effect."""

    key: str
    title: str
    agreement: Optional[TopKAgreement]
    reason: str = ""
    recall: Optional[float] = None

    @property
    def ran(self) -> bool:
        return self.agreement is not None

    def share(self, field: str) -> float:
        """Share of queries with ``field`` (``same_order`` / ``same_set``); NaN when not run."""
        return self.agreement.share(field) if self.agreement is not None else float("nan")

    def margins(self, tolerance: Tolerance) -> Tuple[float, float]:
        """By how much it clears the policy's top-k limits (negative: falls short), order and set."""
        return (self.share("same_order") - tolerance.min_topk_order_agreement,
                self.share("same_set") - tolerance.min_topk_set_agreement)

    def within(self, tolerance: Tolerance) -> bool:
        return self.ran and min(self.margins(tolerance)) >= 0


class Decision(NamedTuple):
    """What to do: ``advice`` ("keep your index", "re-embed", "neither is within the policy"), the scenario it
    rests on, and by how much it clears the limits (negative: falls short), order and set."""

    advice: str
    scenario: str
    order_margin: float
    set_margin: float


def decide(scenarios: Iterable[Scenario], tolerance: Tolerance) -> Decision:
    """Keep the index when that is within the policy (it is the cheaper way), else re-embed when that is, else
    neither; the margins are the chosen scenario's (for neither: the closer of the two)."""
    by_key = {s.key: s for s in scenarios}
    keep, reembed = by_key["keep_index"], by_key["reembed"]
    for scenario, advice in ((keep, "keep your index"), (reembed, "re-embed")):
        if scenario.within(tolerance):
            return Decision(advice, scenario.key, *scenario.margins(tolerance))
    closer = max((keep, reembed), key=lambda s: min(s.margins(tolerance)))
    return Decision("neither is within the policy", closer.key, *closer.margins(tolerance))


def rolled(ids: Sequence[str], share: float) -> np.ndarray:
    """Which documents a rolling re-embed has done at ``share``: a hash of the id below ``share`` (the same
    documents whatever their order or the corpus around them; a larger share re-embeds a superset)."""
    if share <= 0 or not len(ids):
        return np.zeros(len(ids), dtype=bool)
    digests = b"".join(hashlib.blake2b(str(i).encode("utf-8"), digest_size=8).digest() for i in ids)
    return np.frombuffer(digests, dtype=">u8").astype(np.float64) / 2.0**64 < share


@dataclass(frozen=True)
class ScenarioRequest:
    """The judge's ask for the scenarios beside a verdict: the ``[index]`` to search through (None: exact
    only) and whether the candidate was served (the advice then asks about its queries). HARNESS_SCENARIOS=0 skips."""

    index: Optional[IndexSettings] = None
    served: bool = False

    def share(self, pair: EmbeddingPair) -> Optional[float]:
        """The rolling re-embed's share of documents done, None when the scenarios are skipped."""
        if not pair.settings.scenarios:
            return None
        return self.index.rolling_share if self.index is not None else 0.5

    def judge(self, pair: EmbeddingPair, tol: Tolerance, k: int,
              found: Sequence[Scenario]) -> RetrievalScenarios:
        """The scenarios (exact, and through the index) judged by ``tol``'s top-k rules and limits."""
        decision = decide(found, tol)
        return RetrievalScenarios(k=k, queries=len(pair.queries), min_order=tol.min_topk_order_agreement,
                                  min_set=tol.min_topk_set_agreement, advice=decision.advice,
                                  scenario=decision.scenario, order_margin=decision.order_margin,
                                  set_margin=decision.set_margin, served=self.served,
                                  items=[ScenarioShare(s.key, s.title, s.share("same_order") if s.ran else None,
                                                       s.share("same_set") if s.ran else None, s.reason, s.recall)
                                         for s in found])
