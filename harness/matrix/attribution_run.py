"""Running an attribution walk and judging it: the steps ``plan.plan_path`` planned, then the waterfall.

What each step produced is recorded in ``plan.json``, so ``harness attribute report PLAN.json`` can judge again
without running anything.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import List, Optional

from harness import jsontext
from harness.config.schema import dotted
from harness.errors import escape_breaks
from harness.matrix.attribution import Plan, PlannedStep, RuntimeSettings, Waterfall, waterfall
from harness.matrix.cellrun import RESULTS_FILE, Workspace, failure, run_cell, run_harness
from harness.matrix.cells import StageStatus
from harness.matrix.plan import Resolver, Walk, package_factors
from harness.matrix.publish import write_json
from harness.matrix.spec import Cell, Matrix, MatrixError

__all__ = ["PLAN_FILE", "STEP_MATRIX", "Plan", "run_attribution", "load_plan", "judge_plan"]

PLAN_FILE = "plan.json"
#: package steps run as cells of this pseudo-matrix (run directories ``<runs>/attribute/<step-id>``)
STEP_MATRIX = "attribute"
_PACKAGES = {name for name, _ in package_factors()}  # extra included


def run_attribution(
    ws: Workspace,
    matrix: Matrix,
    base: Cell,
    base_runtime: RuntimeSettings,
    cand: Cell,
    cand_runtime: RuntimeSettings,
    resolves: Resolver,
    out_dir: Path,
    *,
    runtime_from: str = "",
) -> Path:
    """Plan the walk, run every step, write ``out_dir/plan.json`` (replacing ``out_dir``); its path. A step that
    installs but does not run has the rest planned again around it (``plan.Walk``); other failures are recorded."""
    walk = Walk(base, base_runtime, cand, cand_runtime, resolves)
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    steps: List[PlannedStep] = []
    venv: Optional[Path] = None
    index = 0
    while index < len(walk.steps):
        step = walk.steps[index]
        error: Optional[str] = None
        ws.log(f"{step.step_id}: {step.name} {step.note}".rstrip())
        run_args = [*matrix.model_args(), *step.runtime.run_args()]
        if not step.factors or step.factors[0] in _PACKAGES:
            step_matrix = dataclasses.replace(matrix, name=STEP_MATRIX, device=step.runtime.device,
                                              dtype=step.runtime.dtype, batch_size=step.runtime.batch_size)
            state = run_cell(ws, step_matrix, step.cell, run_args)
            results = ws.run_dir(STEP_MATRIX, step.cell.cell_id) / RESULTS_FILE
            not_run = _none_ran(results)  # e.g. sentence-transformers does not import: every model incompatible
            if state.status is not StageStatus.OK or not results.is_file() or not_run:
                error = f"{state.status.value}: {state.reason}" if not not_run else f"no model ran: {not_run}"
                if (state.status is StageStatus.RUN_FAILED or not_run) and walk.failed(index, not_run or state.reason):
                    ws.log(f"{step.step_id} installs but does not run: planned again -> {', '.join(walk.orders[-1].order)}")
                    continue  # the same index now holds the re-planned next step
            venv = Path(state.venv)
        else:  # runtime factor: same packages, the previous step's venv, different runner flags
            assert venv is not None  # step 0 is always a package step
            run_dir = out_dir / step.step_id
            run_dir.mkdir(parents=True, exist_ok=True)
            results = run_dir / RESULTS_FILE
            code, tail = run_harness(ws, venv, run_args, results, run_dir / "run.log")
            if not results.is_file():
                error = failure(ws, "`harness run`", code, tail, run_dir / "run.log")
        steps.append(dataclasses.replace(step.describe(), error=error, results=str(results)))
        index += 1
    plan = Plan(matrix.name, base.cell_id, cand.cell_id, tuple(matrix.models), runtime_from, tuple(steps), tuple(walk.orders))
    return write_json(out_dir / PLAN_FILE, plan.to_dict())


def _none_ran(results: Path) -> str:
    """The reason when a step's results file records no model that ran (the first model's), else ""."""
    if not results.is_file():
        return ""
    from harness.errors import HarnessError
    from harness.results import ResultsFile

    try:
        infos = list(ResultsFile(results).records.values())
    except HarnessError:  # not a results file: the comparison of the step says so
        return ""
    if not infos or any((info.status or "ok") == "ok" for info in infos):
        return ""
    return str(infos[0].reason or infos[0].status)


def load_plan(path: str | os.PathLike[str]) -> Plan:
    """A ``plan.json`` as written by ``run_attribution``; anything else is a one-line ``MatrixError``."""
    from pydantic import TypeAdapter, ValidationError

    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
        plan = jsontext.loads(text)
    except FileNotFoundError:
        raise MatrixError(f"{source}: no such plan file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise MatrixError(f"{source}: cannot read ({getattr(err, 'strerror', None) or err})") from None
    except ValueError as err:
        raise MatrixError(f"{source}: not valid JSON ({err})") from None
    if not isinstance(plan, dict) or not isinstance(plan.get("steps"), list) or not plan["steps"]:
        raise MatrixError(f"{source}: not an attribution plan (an object with a non-empty 'steps' list)")
    try:  # strict JSON types: a string is no index, a number no name
        return TypeAdapter(Plan).validate_json(text, strict=True)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        loc = tuple(first["loc"])
        step, key = (f"step {int(loc[1]) + 1}: ", loc[2:4]) if loc[:1] == ("steps",) and len(loc) > 2 else ("", loc)
        said = first["msg"][:1].lower() + first["msg"][1:]
        problem = f"missing '{dotted(key)}'" if first["type"] == "missing" else f"{dotted(key)}: {said}"
        raise MatrixError(escape_breaks(f"{source}: {step}{problem}")) from None


def _results_of(step: PlannedStep, base: Path) -> Optional[Path]:
    """The step's results file if it exists; a relative path is taken from the plan's directory."""
    if not step.results:
        return None
    path = Path(step.results)
    path = path if path.is_absolute() else base / path
    return path if path.is_file() else None


def judge_plan(plan_path: str | os.PathLike[str], tolerance_class: str = "fp32") -> Waterfall:
    """The waterfall of a plan's step results: each step compared with the previous one and with the first."""
    from harness.compare import comparator

    plan = load_plan(plan_path)
    where = Path(plan_path).parent
    results = {s.step_id: _results_of(s, where) for s in plan.steps}
    failures = {s.step_id: s.error for s in plan.steps if s.error}

    data = waterfall(plan.steps, results, lambda a, b: comparator.compare_files(
        a, b, tolerance_class=tolerance_class, allow_model_change=True), failures)
    data.plan = plan
    return data
