"""Drift attribution by experiment: walk from the baseline environment to the candidate one factor at a time.

Package factors change through matrix cells, runtime factors through runner flags; each step is compared with
the previous one, so the total drift is split into the steps that caused it. Planning and bookkeeping only,
stdlib only: running the steps is ``harness.matrix.attribution_run``'s job.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from harness.matrix.spec import Cell, Pins

if TYPE_CHECKING:  # judging imports the comparator; planning (nox's own Python) does not
    from harness.verdict import Comparison, ModelVerdict

__all__ = [
    "PACKAGE_FACTORS",
    "RUNTIME_FACTORS",
    "RuntimeSettings",
    "Step",
    "PlannedStep",
    "Order",
    "Plan",
    "Drift",
    "StepDrift",
    "MainCause",
    "Waterfall",
    "waterfall",
]

#: package factors in the order they are changed; python first because it gates which wheels exist
PACKAGE_FACTORS: Tuple[Tuple[str, str], ...] = (
    ("python", "python"),
    ("torch", "torch"),
    ("transformers", "transformers"),
    ("sentence-transformers", "sentence_transformers"),
    ("numpy", "numpy"),
    ("tokenizers", "tokenizers"),
)
RUNTIME_FACTORS = ("device", "dtype", "attn_implementation", "tf32", "batch_size", "threads", "cpu_isa")


@dataclass(frozen=True)
class RuntimeSettings:
    """Runner flags that move numbers without changing any package."""

    device: str = "cpu"
    dtype: str = "float32"
    attn_implementation: Optional[str] = None
    tf32: Optional[bool] = None
    batch_size: int = 32
    threads: Optional[int] = None
    #: x86 instruction set the kernels are pinned to (``harness run --cpu-isa``); None: the machine's own
    cpu_isa: Optional[str] = None

    @classmethod
    def from_run_options(cls, options: Any) -> RuntimeSettings:
        """The settings of a ``RunOptions`` (e.g. ``harness.baselines.rerun_options``: how a baseline was run)."""
        return cls(**{name: getattr(options, name) for name in RUNTIME_FACTORS if hasattr(options, name)})

    def run_args(self) -> List[str]:
        """The ``harness run`` flags that pin these settings."""
        args = ["--device", self.device, "--dtype", self.dtype, "--batch-size", str(self.batch_size)]
        if self.attn_implementation:
            args += ["--attn-implementation", self.attn_implementation]
        if self.tf32 is not None:
            args += ["--tf32", "on" if self.tf32 else "off"]
        if self.threads:
            args += ["--threads", str(self.threads)]
        if self.cpu_isa:
            args += ["--cpu-isa", self.cpu_isa]
        return args


@dataclass(frozen=True)
class Step:
    """One environment on the walk; ``factors`` are what changed from the previous step."""

    index: int
    factors: Tuple[str, ...]
    cell: Cell
    runtime: RuntimeSettings
    note: str = ""

    @property
    def name(self) -> str:
        return "baseline" if not self.factors else "+" + "+".join(self.factors)

    @property
    def step_id(self) -> str:
        return f"step{self.index:02d}-" + ("baseline" if not self.factors else "-".join(self.factors))

    def describe(self) -> PlannedStep:
        return PlannedStep(self.index, self.name, self.step_id, self.factors, self.cell.params, self.runtime, self.note)


@dataclass(frozen=True)
class PlannedStep:
    """A step as plan.json records it: what it changes, and what running it gave (``results``, or ``error``)."""

    index: int
    name: str
    step_id: str
    factors: Tuple[str, ...]
    params: Pins
    runtime: RuntimeSettings
    note: str = ""
    error: Optional[str] = None
    results: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        """The plan.json entry (JSON out): ``error`` and ``results`` only where known."""
        data = {**dataclasses.asdict(self), "factors": list(self.factors)}
        return {k: v for k, v in data.items() if v is not None or k not in ("error", "results")}


@dataclass
class Order:
    """One order of the steps tried (their names, after the baseline) and why it was given up (empty: it stood)."""

    order: List[str]
    rejected: str = ""


@dataclass(frozen=True)
class Plan:
    """plan.json: the walk's cells and models, every step as it ran, and the orders tried (None: not recorded)."""

    matrix: Optional[str] = None
    baseline_cell: Optional[str] = None
    candidate_cell: Optional[str] = None
    models: Optional[Tuple[str, ...]] = None
    runtime_from: Optional[str] = None
    steps: Tuple[PlannedStep, ...] = ()
    orders: Optional[Tuple[Order, ...]] = None

    def to_dict(self) -> Dict[str, Any]:
        """plan.json (JSON out), keys as ``run_attribution`` always wrote them."""
        data = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        return {**data, "steps": [s.to_dict() for s in self.steps]}


@dataclass(frozen=True)
class Drift:
    """One model's drift over one step (or from the baseline to it): the headline numbers of its verdict."""

    status: str
    max_abs_diff: Optional[float] = None
    min_cosine: Optional[float] = None
    order_agreement: Optional[float] = None
    reason: str = ""

    @classmethod
    def of(cls, verdict: ModelVerdict) -> Drift:
        """A model verdict's numbers (the first judged order agreement, not the raw one)."""
        metrics = verdict.metrics
        return cls(verdict.status.value, metrics.max_abs_diff, metrics.min_cosine, metrics.order_agreement()[1], verdict.reason)


@dataclass
class StepDrift:
    """A step of the waterfall: the step as planned and what it measured per model, ``(this step alone, from the
    baseline)``; ``error`` when it did not run."""

    planned: PlannedStep
    results: Optional[str] = None
    models: Dict[str, Tuple[Drift, Optional[Drift]]] = field(default_factory=dict)
    error: Optional[str] = None
    #: the factors whose change this step's number holds (its own and those of steps before it that did not run)
    number_of: Optional[List[str]] = None
    #: the steps before it that did not run, whose change its number holds
    includes: Optional[List[str]] = None
    note: str = ""

    @property
    def name(self) -> str:
        return self.planned.name

    def to_dict(self) -> Dict[str, Any]:
        models = {m: {"step": dataclasses.asdict(s), "cumulative": c and dataclasses.asdict(c)} for m, (s, c) in self.models.items()}
        optional = {"error": self.error, "number_of": self.number_of, "includes": self.includes}
        planned = {k: v for k, v in self.planned.to_dict().items() if k not in ("results", "error", "note")}
        return {**planned, "results": self.results, "models": models, "note": self.note,
                **{k: v for k, v in optional.items() if v is not None}}


@dataclass(frozen=True)
class MainCause:
    """The step whose own change moved a model's numbers most (by max abs diff)."""

    step: str
    factors: List[str]
    max_abs_diff: float
    note: str = ""


@dataclass
class Waterfall:
    """The attribution of a walk: every step's drift, each model's main cause, and the plan it judged (plan.json
    without its steps: the orders tried). ``to_dict`` is attribution.json."""

    steps: List[StepDrift]
    plan: Optional[Plan] = None

    @property
    def main_cause(self) -> Dict[str, MainCause]:
        best: Dict[str, MainCause] = {}
        for row in self.steps:
            for model_id, (step, _) in row.models.items():
                if step.max_abs_diff is not None and (model_id not in best or step.max_abs_diff > best[model_id].max_abs_diff):
                    best[model_id] = MainCause(row.name, list(row.planned.factors), step.max_abs_diff, row.note)
        return best

    def to_dict(self) -> Dict[str, Any]:
        out = {"format_version": 1, "steps": [s.to_dict() for s in self.steps],
               "main_cause": {m: dataclasses.asdict(c) for m, c in self.main_cause.items()}}
        return {**out, "plan": {k: v for k, v in self.plan.to_dict().items() if k != "steps"}} if self.plan else out


def waterfall(
    steps: Sequence[Step | PlannedStep],
    results: Dict[str, Optional[Path]],
    compare: Callable[[Path, Path], Comparison],
    failures: Optional[Dict[str, str]] = None,
) -> Waterfall:
    """Compare each step with the previous one and with the baseline; name the step that moved most.
    ``compare`` judges two results files, so this module stays free of I/O and policy."""
    failures = failures or {}
    described = [s.describe() if isinstance(s, Step) else s for s in steps]
    rows: List[StepDrift] = []
    base_path = results.get(described[0].step_id)
    previous: Optional[Path] = base_path
    skipped: List[StepDrift] = []  # steps since the last one that ran: their change is inside the next step's delta
    for step in described:
        path = results.get(step.step_id)
        row = StepDrift(step, str(path) if path else None, error=step.error, note=step.note)
        if path is None:
            row.error = failures.get(step.step_id, "step did not produce results")
            skipped.append(row)
        elif step.index > 0 and previous is not None and base_path is not None:
            row.number_of = [factor for s in (*skipped, row) for factor in s.planned.factors]
            if skipped:
                row.includes = [s.name for s in skipped]
                also = f"also holds the change of {', '.join(row.includes)}, which did not run"
                row.note = f"{also}; {row.note}" if row.note else also
                skipped = []
            step_cmp = compare(previous, path)
            cumulative = {v.model_id: Drift.of(v) for v in compare(base_path, path).models}
            row.models = {v.model_id: (Drift.of(v), cumulative.get(v.model_id)) for v in step_cmp.models}
        rows.append(row)
        if path is not None:
            previous = path
    return Waterfall(rows)
