"""Planning again around a step that installs but does not run (issue #24): with a stand-in resolver, a stand-in
cell runner (no virtualenvs) and a stand-in comparison in which every factor moves the numbers by its own known
amount, the torch step that cannot import before the libraries move is run after them and carries exactly
torch's drift; when no order lets torch run alone, the group says why and every order tried is listed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest
from test_attribution import waterfall_from_dict

from harness.matrix import attribution_run
from harness.matrix.attribution import Plan, RuntimeSettings, Waterfall, waterfall
from harness.matrix.cellrun import RESULTS_FILE, Workspace
from harness.matrix.cells import CellState, StageStatus
from harness.matrix.plan import Walk
from harness.matrix.spec import Cell, load_matrix_file
from harness.report.attribution import render_attribution_markdown
from harness.results import write_results
from harness.verdict import Comparison, Metrics, ModelVerdict, Status

from conftest import ROOT

# the two cells (matrix.toml, matrix "default")
NEW = Cell(matrix="default", python="3.11", torch="2.13.0", sentence_transformers="6.2.0", transformers="5.23.0")
OLD = Cell(matrix="default", python="3.10", torch="2.4.1", sentence_transformers="3.0.1", transformers="4.41.2",
           numpy="<2")
NAME_ERROR = "NameError: name 'nn' is not defined"
#: what each factor alone moves the numbers by in the stand-in comparison (distinct powers of two: sums are exact)
DRIFT = {"python": 2.0 ** -24, "torch": 2.0 ** -20, "transformers": 2.0 ** -22, "sentence_transformers": 2.0 ** -23,
         "numpy": 2.0 ** -21}


def _resolves(cell: Cell) -> Optional[str]:
    """What `uv pip compile` says between NEW and OLD: ST pins its transformers major; tf 5 needs python 3.11."""
    if (cell.sentence_transformers == "6.2.0") != (cell.transformers == "5.23.0"):
        return "sentence-transformers and transformers majors disagree"
    if cell.transformers == "5.23.0" and cell.python == "3.10":
        return "transformers 5.23.0 needs Python >= 3.11"
    return None


def _tf5_needs_new_torch(cell: Cell) -> Optional[str]:
    """The issue: transformers 5.23.0 does not import under torch 2.4.1 although the resolver accepts the pair."""
    return NAME_ERROR if cell.torch == "2.4.1" and cell.transformers == "5.23.0" else None


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, imports: Callable[[Cell], Optional[str]],
         resolves: Callable[[Cell], Optional[str]] = _resolves, recorded: bool = False) -> Dict[str, Any]:
    """``run_attribution`` with a cell runner that writes the cell's pins as its "results" or fails like a run
    whose imports fail; the plan it wrote, with the waterfall of the stand-in comparison as ``waterfall``."""
    ran: List[str] = []

    def run_cell(ws: Workspace, matrix: Any, cell: Cell, run_args: List[str]) -> CellState:
        ran.append(cell.cell_id)
        problem = imports(cell)
        results = ws.run_dir(matrix.name, cell.cell_id) / RESULTS_FILE
        if problem and recorded:  # what `harness run --record-incompatible` writes when the library does not import
            results.parent.mkdir(parents=True, exist_ok=True)
            reason = f"sentence-transformers does not import in this environment: {problem}"
            write_results(results, [], {"corpus": {"name": "c", "version": "1", "sha256": "c" * 64},
                                        "fingerprint": {"device": "cpu"}, "run": {"device": "cpu"},
                                        "models": {"m": {"kind": "bi-encoder", "status": "incompatible", "reason": reason}}})
            return CellState(StageStatus.OK, venv="v")
        if problem:
            return CellState(StageStatus.RUN_FAILED, f"`harness run` (no results written) exited 1: {problem}\n"
                                                     f"Traceback (most recent call last):\n{problem}", venv="v")
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps({f: getattr(cell, f) for f in DRIFT}), encoding="utf-8")
        return CellState(StageStatus.OK, venv="v")

    def compare(a: Path, b: Path) -> Comparison:
        pa, pb = (json.loads(p.read_text(encoding="utf-8")) for p in (a, b))
        moved = sum(DRIFT[f] for f in DRIFT if pa[f] != pb[f])
        return Comparison(str(a), str(b), "p", [ModelVerdict("m", "bi-encoder", Status.PASS, "fp32", metrics=Metrics(max_abs_diff=moved))])

    monkeypatch.setattr(attribution_run, "run_cell", run_cell)
    ws = Workspace(root=ROOT, runs=tmp_path / "runs", venvs=tmp_path / "venvs", backend="uv")
    matrix = load_matrix_file().select("default")
    plan_file = attribution_run.run_attribution(ws, matrix, NEW, RuntimeSettings(), OLD, RuntimeSettings(), resolves,
                                                tmp_path / "out")
    plan = json.loads(plan_file.read_text(encoding="utf-8"))
    steps = attribution_run.load_plan(plan_file).steps  # the typed plan reads back what was written
    assert [s.to_dict() for s in steps] == plan["steps"]
    results = {s.step_id: Path(s.results) if s.results and Path(s.results).is_file() else None for s in steps}
    failures = {s.step_id: s.error for s in steps if s.error}
    plan["waterfall"] = waterfall(steps, results, compare, failures).to_dict()
    plan["ran"] = ran
    return plan


def _own_number(row: Dict[str, Any]) -> float:
    return float(row["models"]["m"]["step"]["max_abs_diff"])


def test_torch_that_cannot_import_alone_moves_after_the_libraries_with_its_own_number(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = _run(tmp_path, monkeypatch, _tf5_needs_new_torch)
    first, second = plan["orders"]
    assert first["order"].index("+torch") < first["order"].index("+transformers+sentence-transformers")
    assert first["rejected"] == f"+torch installs but does not run (`harness run` (no results written) exited 1: {NAME_ERROR})"
    assert second == {"order": ["+numpy", "+transformers+sentence-transformers", "+python", "+torch"], "rejected": ""}
    assert "step02-torch" in plan["ran"]  # tried, failed, and left out of the walk
    rows = plan["waterfall"]["steps"]
    assert [r["name"] for r in rows] == ["baseline", *second["order"]]
    assert [r["step_id"] for r in rows] == ["step00-baseline", "step01-numpy", "step02-transformers-sentence-transformers",
                                            "step03-python", "step04-torch"]
    assert not any(r.get("error") or r.get("includes") for r in rows)
    by_name = {r["name"]: r for r in rows}
    assert _own_number(by_name["+torch"]) == DRIFT["torch"]
    assert _own_number(by_name["+transformers+sentence-transformers"]) == DRIFT["transformers"] + DRIFT["sentence_transformers"]
    assert by_name["+torch"]["number_of"] == ["torch"] and plan["waterfall"]["main_cause"]["m"]["factors"] == ["torch"]
    md = render_attribution_markdown(waterfall_from_dict({**plan["waterfall"], "plan": {"orders": plan["orders"]}}))
    assert f"1. {', '.join(first['order'])}: given up, +torch installs but does not run" in md
    assert f"2. {', '.join(second['order'])}: run" in md


def test_a_step_whose_models_are_all_recorded_incompatible_is_planned_around_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cell's `harness run --record-incompatible` writes a results file in which every model is incompatible
    when sentence-transformers does not import: that step did not run either, and torch still gets its number."""
    plan = _run(tmp_path, monkeypatch, _tf5_needs_new_torch, recorded=True)
    first, second = plan["orders"]
    assert first["rejected"].startswith("+torch installs but does not run (sentence-transformers does not import")
    assert second["order"][-1] == "+torch" and not second["rejected"]
    by_name = {r["name"]: r for r in plan["waterfall"]["steps"]}
    assert _own_number(by_name["+torch"]) == DRIFT["torch"]


def test_when_no_order_runs_torch_alone_the_group_says_why_and_lists_every_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch 2.4.1 runs only on python 3.10 here, and python 3.10 has no torch 2.13.0: torch moves with python."""
    def resolves(cell: Cell) -> Optional[str]:
        no_wheel = "no torch 2.13.0 wheel for Python 3.10" if (cell.python, cell.torch) == ("3.10", "2.13.0") else None
        return _resolves(cell) or no_wheel

    def imports(cell: Cell) -> Optional[str]:
        return NAME_ERROR if cell.torch == "2.4.1" and cell.python != "3.10" else None

    plan = _run(tmp_path, monkeypatch, imports, resolves)
    orders = plan["orders"]
    assert [o["order"] for o in orders] == [
        ["+numpy", "+torch", "+transformers+sentence-transformers", "+python"],
        ["+numpy", "+transformers+sentence-transformers", "+torch", "+python"],
        ["+numpy", "+transformers+sentence-transformers", "+python+torch"],
    ]
    assert all(o["rejected"].startswith("+torch installs but does not run") for o in orders[:2]) and not orders[2]["rejected"]
    group = plan["waterfall"]["steps"][-1]
    assert group["factors"] == ["python", "torch"] and _own_number(group) == DRIFT["torch"] + DRIFT["python"]
    assert "python alone does not install (no torch 2.13.0 wheel for Python 3.10)" in group["note"]
    assert f"torch alone installs but does not run (`harness run` (no results written) exited 1: {NAME_ERROR})" in group["note"]


def test_replans_are_bounded_and_the_last_failure_is_folded_and_reported() -> None:
    """With one re-plan allowed, the second failing torch step stays: its change goes into the next step."""
    walk = Walk(NEW, RuntimeSettings(), OLD, RuntimeSettings(), _resolves, replans=1)
    assert [s.name for s in walk.steps][1:3] == ["+numpy", "+torch"]
    assert walk.failed(2, NAME_ERROR)
    assert [s.name for s in walk.steps][2:] == ["+transformers+sentence-transformers", "+python", "+torch"]
    assert not walk.failed(3, "ImportError: x")  # +python fails too: no re-plan left
    assert walk.orders[-1].rejected == ("+python installs but does not run (ImportError: x); no re-plan left, so its "
                                           "change is in the next step's number")
    assert len(walk.orders) == 2 and not walk.failed(0, "boom") and not walk.failed(4, "candidate")
    md = render_attribution_markdown(Waterfall([], Plan(orders=tuple(walk.orders))))
    assert "1. +numpy, +torch, +transformers+sentence-transformers, +python: given up, +torch installs" in md
    assert "2. +numpy, +transformers+sentence-transformers, +python, +torch: run, but +python installs" in md
