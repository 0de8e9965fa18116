"""Verdict types: what the comparator concludes, with the evidence (the fp64 accuracy and retrieval scenarios
included). No numpy: the noxfile imports them. Every report renders from
``Comparison.serialize()``, so they can never disagree.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from harness.measured import Evidence, Metrics, SidePerformance, Tolerance, adapter, not_judged_note, present

__all__ = ["Status", "CellStatus", "Check", "limit_used", "not_judged_note", "BUILT_IN_POLICY", "Offender", "ModelVerdict",
           "EnvChange", "Comparison", "FORMAT_VERSION", "RetrievalScenarios", "ScenarioShare",
           "MULTIPLIERS", "Accuracy", "AccuracyVerdict", "Bucket", "SideError", "Tolerance",
           "Metrics", "SidePerformance", "Evidence"]

FORMAT_VERSION = 1
#: ``Comparison.policy`` when no policy file was given: the built-in classes (``harness/data/default_policy.toml``)
BUILT_IN_POLICY = "built-in default policy"


class CellStatus(str, enum.Enum):
    """A matrix cell's (and a model's) outcome, best first: ``incompatible`` (cannot load there) is only
    reported, ``fail`` is drift, the rest produced no trustworthy comparison (a cell never run is ``error``)."""

    PASS = "pass"
    INCOMPATIBLE = "incompatible"
    FAIL = "fail"
    RUN_FAILED = "run-failed"
    INSTALL_FAILED = "install-failed"
    ERROR = "error"

    @property
    def severity(self) -> int:
        """0 pass, 1 incompatible, 2 drift, 3 no trustworthy comparison."""
        return {"pass": 0, "incompatible": 1, "fail": 2}.get(self.value, 3)

    @property
    def failing(self) -> bool:
        """Fails the matrix (drift or not judged); ``incompatible`` does not."""
        return self.severity >= 2

    @property
    def unjudged(self) -> bool:
        """The cell (or model) produced no comparison to trust: install, run or comparison went wrong."""
        return self.severity >= 3

    @classmethod
    def parse(cls, value: str | CellStatus) -> CellStatus:
        """``value`` as a member; an unknown word raises ``ValueError`` naming the known ones."""
        try:
            return cls(getattr(value, "value", value))
        except ValueError:
            known = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown cell status {value!r} (known: {known})") from None

    @classmethod
    def worst(cls, statuses: Iterable[str | CellStatus]) -> CellStatus:
        """The worst of ``statuses`` by severity (ties: the later in this Enum); ``PASS`` for none."""
        members = list(cls)
        return max((cls.parse(s) for s in statuses), key=lambda s: (s.severity, members.index(s)), default=cls.PASS)


#: a model's outcome, in the same words (never ``run-failed`` or ``install-failed``: only a matrix cell is)
Status = CellStatus


#: checks whose "nothing changed" value is not 0: an accuracy ratio of 1 is "as accurate as the baseline"
_UNCHANGED = {"accuracy_ratio": 1.0}


def limit_used(observed: float, limit: float, op: str, unchanged: float = 0.0) -> Optional[float]:
    """How much of a check's allowance the drift used: 0 none, 1 all of it, None over a zero allowance.

    ``>=`` checks are on quantities whose perfect value is 1 (cosine, agreements): they allow ``1 - limit`` of
    shortfall (``observed / limit`` of a cosine would read "100%" whatever the drift). ``unchanged``: a ``<=``
    check's value when nothing moved (1 for a ratio to the baseline's own error)."""
    used, allowed = (observed - unchanged, limit - unchanged) if op == "<=" else (1.0 - observed, 1.0 - limit)
    if allowed > 0:
        return max(float(used), 0.0) / float(allowed)
    return 0.0 if used <= 0 else None


@dataclass(frozen=True)
class Check:
    """One tolerance check: ``observed`` compared with ``limit`` by ``op``; ``used`` derived, so that every
    report shows the same headroom."""

    name: str
    observed: float
    limit: float
    op: str
    passed: bool
    detail: str = ""
    used: Optional[float] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "used", limit_used(self.observed, self.limit, self.op, _UNCHANGED.get(self.name, 0.0)))


#: the largest accuracy ratio that is still rounding, by the candidate's dtype (PyTorch's fp64 reference rule)
MULTIPLIERS: Dict[str, float] = {"float32": 2.0, "float16": 3.0, "bfloat16": 3.0}


@dataclass(frozen=True)
class SideError:
    """One side's error against the reference: RMSE over every value, the largest absolute difference, and the
    texts with the largest per-text RMSE (``(id, rmse)``, worst first). Non-finite values make it ``inf``."""

    rmse: float
    max_abs: float
    worst: Tuple[Tuple[str, float], ...]


@dataclass(frozen=True)
class Bucket:
    """The error of the texts whose token count is in ``[low, high]`` (``high`` None: no upper bound)."""

    low: int
    high: Optional[int]
    texts: int
    baseline_rmse: float
    candidate_rmse: float


@dataclass(frozen=True)
class Accuracy:
    """Both sides' error against the fp64 reference for one model (``harness.compare.accuracy``): ``ratio`` is
    candidate RMSE / baseline RMSE (1 when both are 0); ``truncated`` names texts cut on one side only (a cause
    other than rounding)."""

    rows: int
    baseline: SideError
    candidate: SideError
    ratio: float
    candidate_worse: int
    baseline_worse: int
    buckets: Tuple[Bucket, ...]
    truncation_mismatches: int
    truncated: Tuple[Tuple[str, str], ...]

    def rounding(self, dtype: str = "float32") -> bool:
        """Whether the ratio is within what rounding in ``dtype`` explains (``MULTIPLIERS``)."""
        return bool(self.ratio <= MULTIPLIERS[dtype])


@dataclass(frozen=True)
class AccuracyVerdict:
    """What a model's verdict carries about the fp64 reference: the measurement, the ratio limit it was held to
    (``max_accuracy_ratio`` times ``scale``), whether the ratio is the gate, how reports name the two sides."""

    measured: Accuracy
    limit: float
    scale: float
    gate: bool
    sides: Tuple[str, str]
    reference: str


@dataclass(frozen=True)
class Offender:
    """One of the texts, pairs or queries that moved most."""

    item_id: str
    value: float
    metric: str
    detail: str = ""


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
    """"Must I re-embed?" for one bi-encoder, reported beside its verdict, never gating: the scenarios, the advice
    (``scenarios.decide``) with its margins and limits; ``served``: "keep the index" asks whether the server's
    queries can be used against the library-built index."""

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


@dataclass(frozen=True)
class ModelVerdict:
    model_id: str
    kind: str
    status: Status
    tolerance_class: str
    checks: List[Check] = field(default_factory=list)
    metrics: Metrics = field(default_factory=Metrics)
    offenders: List[Offender] = field(default_factory=list)
    reason: str = ""
    #: the limits it was judged by (None: not judged)
    tolerance: Optional[Tolerance] = None
    #: the loosest limits under which this comparison would have passed (for "what would it take")
    min_passing: Dict[str, float] = field(default_factory=dict)
    #: how fast each side ran it, on what: {"baseline": ..., "candidate": ...}; reported, never judged
    performance: Dict[str, SidePerformance] = field(default_factory=dict)
    #: where the drift is, for messages that quote it (``harness.report.assertion``)
    evidence: Evidence = field(default_factory=Evidence)
    #: the candidate ran at lower precision than its baseline: what was done about it (``policy.choose_class``)
    precision_change: str = ""
    #: each side's error against the fp64 reference (``harness.compare.accuracy``); None without one
    accuracy: Optional[AccuracyVerdict] = None
    #: "must I re-embed?": the retrieval scenarios and their advice (bi-encoders with queries; reported, not judged)
    scenarios: Optional[RetrievalScenarios] = None

    def __bool__(self) -> bool:
        return self.status is Status.PASS

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelVerdict:
        """A verdict as serialized (``Comparison.serialize()``; a report.json as read)."""
        return adapter(cls).validate_python(_typed(data))

    def to_json(self) -> Dict[str, Any]:
        """The verdict as report JSON (``Comparison.serialize``): keys a kind does not have left out, as written
        since format 1."""
        return {**asdict(self), "status": self.status.value, "metrics": self.metrics.to_json(),
                "evidence": self.evidence.to_json(), "tolerance": asdict(self.tolerance) if self.tolerance else {},
                "performance": {side: present(p, ("device", "hardware")) for side, p in self.performance.items()}}

    @property
    def failed_checks(self) -> List[Check]:
        return [c for c in self.checks if not c.passed]

    def diff_limit(self) -> Optional[float]:
        """The absolute-difference limit it was judged by (its element check's, else its tolerance's)."""
        for check in self.checks:
            if check.name in ("max_abs_diff", "max_score_diff"):
                return check.limit
        tol = self.tolerance
        return None if tol is None else tol.score_atol if self.kind == "cross-encoder" else tol.atol


@dataclass(frozen=True)
class EnvChange:
    """One fingerprint entry that differs between baseline and candidate."""

    key: str
    baseline: Any
    candidate: Any


@dataclass(frozen=True)
class Comparison:
    baseline: str
    candidate: str
    policy: str
    models: List[ModelVerdict]
    env_changes: List[EnvChange] = field(default_factory=list)
    baseline_env: Dict[str, Any] = field(default_factory=dict)
    candidate_env: Dict[str, Any] = field(default_factory=dict)
    corpus: Dict[str, Any] = field(default_factory=dict)
    label: Optional[str] = None
    #: what the reader must know beyond the verdicts (a file compared with itself passes by construction)
    notes: List[str] = field(default_factory=list)

    @property
    def status(self) -> Status:
        return Status.worst([m.status for m in self.models])

    def __bool__(self) -> bool:
        return self.status is Status.PASS

    def serialize(self) -> Dict[str, Any]:
        data = asdict(self)
        data.update(format_version=FORMAT_VERSION, status=self.status.value, models=[m.to_json() for m in self.models])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Comparison:
        """A comparison as serialized (``serialize``; a report.json as read)."""
        models = data.get("models")
        return adapter(cls).validate_python({**data, "models": [_typed(m) for m in models]}
                                             if isinstance(models, list) else dict(data))


def _typed(model: Any) -> Any:
    """A serialized verdict as its dataclass reads it: an empty tolerance (not judged) is None."""
    return {**model, "tolerance": model.get("tolerance") or None} if isinstance(model, Mapping) else model
