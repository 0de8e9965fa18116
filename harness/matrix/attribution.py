"""Drift attribution by experiment: walk from the baseline environment to the candidate one factor at a time.

Package factors (python, torch, transformers, sentence-transformers, numpy, tokenizers) change through matrix
cells (one virtualenv each); runtime factors (dtype, attention implementation, TF32, batch size, threads,
device) change through runner flags inside the candidate's environment. Each step is run and compared with the
previous one, so the total drift is split into the steps that caused it. Where package requirements forbid a
single-factor step (e.g. torch 2.2 does not exist for Python 3.13), factors are grouped and the plan says why.

Pure planning and bookkeeping, stdlib only (nox's own Python may plan): running the steps is
``harness.matrix.attribution_run``'s job (``harness attribute run``, ``nox -s attribute``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from harness.matrix.spec import Cell

__all__ = [
    "PACKAGE_FACTORS",
    "RUNTIME_FACTORS",
    "RuntimeSettings",
    "Step",
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
        values: Dict[str, Any] = {name: getattr(options, name, None) for name in RUNTIME_FACTORS if hasattr(options, name)}
        return cls(**values)

    def with_changes(self, changes: Mapping[str, Any]) -> RuntimeSettings:
        """These settings with some changed; unknown names are a ``ValueError`` naming the known ones."""
        unknown = sorted(set(changes) - set(RUNTIME_FACTORS))
        if unknown:
            raise ValueError(f"unknown runtime setting(s) {', '.join(unknown)} (known: {', '.join(RUNTIME_FACTORS)})")
        return dataclasses.replace(self, **changes)

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

    def describe(self) -> Dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "step_id": self.step_id,
            "factors": list(self.factors),
            "params": self.cell.params,
            "runtime": dataclasses.asdict(self.runtime),
            "note": self.note,
        }


def _model_row(verdict: Dict[str, Any]) -> Dict[str, Any]:
    metrics = verdict.get("metrics", {})
    order = next((v for k, v in metrics.items() if k.endswith("order_agreement") and not k.startswith("topk_raw")), None)
    return {
        "status": verdict["status"],
        "max_abs_diff": metrics.get("max_abs_diff"),
        "min_cosine": metrics.get("min_cosine"),
        "order_agreement": order,
        "reason": verdict.get("reason", ""),
    }


def waterfall(
    steps: Sequence[Step | Dict[str, Any]],
    results: Dict[str, Optional[Path]],
    compare: Callable[[Path, Path], Dict[str, Any]],
    failures: Optional[Dict[str, str]] = None,
) -> Dict[str, Any]:
    """Compare each step with the previous one and with the baseline; name the step that moved most.

    ``steps`` are ``Step`` objects or their ``describe()`` dicts (as saved in a plan file); ``results`` maps step
    ids to results files (None when the step did not run); ``compare`` returns a serialized comparison
    (``Comparison.serialize()``), so this module stays free of I/O and policy.
    """
    failures = failures or {}
    described = [s.describe() if isinstance(s, Step) else dict(s) for s in steps]
    rows: List[Dict[str, Any]] = []
    base_path = results.get(described[0]["step_id"])
    previous: Optional[Path] = base_path
    skipped: List[Dict[str, Any]] = []  # steps since the last one that ran: their change is inside the next step's delta
    for step in described:
        path = results.get(step["step_id"])
        row: Dict[str, Any] = {**step, "results": str(path) if path else None, "models": {}}
        if path is None:
            row["error"] = failures.get(step["step_id"], "step did not produce results")
            skipped.append(step)
        elif step["index"] > 0 and previous is not None and base_path is not None:
            # the factors whose change this step's number holds
            row["number_of"] = [factor for s in (*skipped, step) for factor in s["factors"]]
            if skipped:
                row["includes"] = [s["name"] for s in skipped]
                also = f"also holds the change of {', '.join(row['includes'])}, which did not run"
                row["note"] = f"{also}; {row['note']}" if row.get("note") else also
                skipped = []
            step_cmp = compare(previous, path)
            total_cmp = compare(base_path, path)
            cumulative = {v["model_id"]: v for v in total_cmp["models"]}
            for verdict in step_cmp["models"]:
                model_id = verdict["model_id"]
                row["models"][model_id] = {
                    "step": _model_row(verdict),
                    "cumulative": _model_row(cumulative[model_id]) if model_id in cumulative else None,
                }
        rows.append(row)
        if path is not None:
            previous = path
    return {"format_version": 1, "steps": rows, "main_cause": _main_cause(rows)}


def _main_cause(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Per model, the step whose own change moved the numbers most (by max abs diff)."""
    best: Dict[str, Dict[str, Any]] = {}
    for row in rows:
        for model_id, entry in row.get("models", {}).items():
            value = entry["step"]["max_abs_diff"]
            if value is None:
                continue
            if model_id not in best or value > best[model_id]["max_abs_diff"]:
                best[model_id] = {"step": row["name"], "factors": row["factors"], "max_abs_diff": value, "note": row.get("note", "")}
    return best
