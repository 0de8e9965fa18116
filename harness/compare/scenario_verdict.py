"""The retrieval scenarios as a verdict carries them (``ModelVerdict.scenarios``): shares and advice, reported,
never gating. No imports, so that ``verdict`` can hold it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Mapping, Optional

__all__ = ["ScenarioShare", "RetrievalScenarios"]


@dataclass(frozen=True)
class ScenarioShare:
    """One scenario's shares of queries whose top-k keeps its order / its set (None: not run, ``reason`` why);
    ``recall``: an approximate index's own recall@k against exact search."""

    key: str
    title: str
    same_order: Optional[float]
    same_set: Optional[float]
    reason: str = ""
    recall: Optional[float] = None

    @property
    def shown(self) -> str:
        """``keep the index ... 90.0% / 98.3%`` (same order / same set), or why it did not run."""
        if self.same_order is None or self.same_set is None:
            return f"{self.title}: not run ({self.reason})"
        recall = f", index recall@k {self.recall:.1%}" if self.recall is not None else ""
        return f"{self.title} {self.same_order:.1%} / {self.same_set:.1%}{recall}"


@dataclass(frozen=True)
class RetrievalScenarios:
    """"Must I re-embed?" for one bi-encoder: the scenarios, the advice (``scenarios.decide``) with its margins,
    the policy's limits it was decided by; ``served``: the candidate is a served model, so "keep the index" asks
    whether the server's queries can be used against the library-built index."""

    k: int
    queries: int
    min_order: float
    min_set: float
    advice: str
    scenario: str
    order_margin: float
    set_margin: float
    served: bool = False
    items: List[ScenarioShare] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetrievalScenarios:
        return cls(**{**data, "items": [ScenarioShare(**s) for s in data.get("items", [])]})

    @property
    def line(self) -> str:
        """The one line every report shows: the advice, by how much, within which limits."""
        by_key = {s.key: s for s in self.items}
        chosen = by_key.get(self.scenario)
        how = "clears" if min(self.order_margin, self.set_margin) >= 0 else "misses"
        limits = f"policy: same order >= {self.min_order:.0%}, same set >= {self.min_set:.0%}"
        advice = self.advice
        if self.served:
            answer = "yes" if self.advice == "keep your index" else "no"
            advice = f"can the server's queries be used against the library-built index? {answer}; {self.advice}"
        return (f"{advice}: {chosen.title if chosen else self.scenario} {how} the top-{self.k} limits by "
                f"{self.order_margin:+.1%} (same order) and {self.set_margin:+.1%} (same set) ({limits}; "
                f"{self.queries} queries; reported, not judged)")

    @property
    def details(self) -> str:
        """Every scenario's shares, same order / same set."""
        return "; ".join(s.shown for s in self.items)
