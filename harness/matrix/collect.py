"""Collecting a matrix run: each cell's stage outcome and its comparison with the baseline, into the report.

Runs in the controlling environment (numpy + pyarrow, never torch). The cells' run directories may lie on
local disk or where CI jobs uploaded them (``s3://bucket/nightly/2026-11-23``; see
``harness.results.storage``). Every comparison is ``harness.compare.comparator.compare_files``: the one judge.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, List, Optional, Sequence, Union, cast

from harness.compare import comparator
from harness.config.policy import Policy, load_policy
from harness.config.project import load_project
from harness.errors import HarnessError
from harness.matrix.cells import CELL_FILE, CellState, read_cell_state
from harness.matrix.spec import ROOT, Cell, Matrix, MatrixError, baseline_file
from harness.report.matrix_report import MatrixReport, ReportCell, build_matrix_report
from harness.results import storage
from harness.verdict import CellStatus, Status

__all__ = ["RESULTS_FILE", "cell_record", "checkout_relative", "collect_matrix"]

RESULTS_FILE = "results.parquet"
_UNREAD: Any = object()


def checkout_relative(path: Path | str) -> str:
    """A local path relative to the checkout (shorter in reports); a URI as it is."""
    if storage.is_uri(path):
        return str(path)
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _model_reasons(cell: ReportCell) -> str:
    """``model: reason`` for every model that did not pass."""
    return "; ".join(f"{m.model_id}: {m.reason or m.status.value}" for m in cell.models if m.status is not Status.PASS)


def cell_record(
    cell: Cell,
    run_dir: str | os.PathLike[str],
    baseline: str | os.PathLike[str],
    policy: Optional[Policy] = None,
    state: Optional[CellState] = _UNREAD,
    index: Any = None,
) -> ReportCell:
    """The report's record of one cell: its stage outcome and, when it produced results, the comparison with the
    baseline, judged by ``policy`` (the matrix's, read once: None, the default); ``error`` when they cannot be
    compared at all or the cell never ran. ``state``: the ``cell.json`` a caller already read, so object storage
    is asked once."""
    location: Union[Path, str] = cast(str, run_dir) if storage.is_uri(run_dir) else Path(run_dir)
    if state is _UNREAD:
        state = read_cell_state(location)
    results = storage.join(location, RESULTS_FILE)
    written = storage.is_file(results)
    record = ReportCell(cell.cell_id, dict(cell.params), setup_s=state.setup_s if state else None,
                        run_s=state.run_s if state else None, compute_s=state.compute_s if state else None,
                        results=checkout_relative(results) if written else None)
    if state is None:
        return dataclasses.replace(record, reason=f"not run: no {checkout_relative(storage.join(location, CELL_FILE))}")
    decided = state.status.cell_status
    if decided is not None:
        return dataclasses.replace(record, status=decided, reason=state.reason)
    if not written:
        return dataclasses.replace(record, status=CellStatus.RUN_FAILED,
                                   reason=state.reason or f"{checkout_relative(results)} was not written")
    try:
        comparison = comparator.compare_files(baseline, results, policy, label=cell.cell_id,
                                             index=index).serialize()
    except HarnessError as err:
        return dataclasses.replace(record, reason=str(err))
    judged = dataclasses.replace(record, status=CellStatus.parse(comparison["status"]), comparison=comparison)
    return dataclasses.replace(judged, reason="" if judged.status is CellStatus.PASS else _model_reasons(judged))


def collect_matrix(
    matrix: Matrix,
    runs_dir: str | os.PathLike[str],
    *,
    cells: Optional[Sequence[str]] = None,
    baseline: str | os.PathLike[str] | None = None,
    include_missing: bool = True,
) -> MatrixReport:
    """Compare every (selected) cell's results with the baseline: the matrix report. The project and the policy
    are read once, first (a bad one is bad input before any cell is judged). ``include_missing``: cells never run
    count as ``error``; otherwise they are left out, and none run at all is a ``MatrixError``."""
    base = Path(baseline) if baseline else baseline_file(matrix.baseline)
    runs: Union[Path, str] = cast(str, runs_dir) if storage.is_uri(runs_dir) else Path(runs_dir)
    records: List[ReportCell] = []
    index = load_project(matrix.config).index if matrix.config else None  # the project's [index], as run finds it
    policy = load_policy(matrix.policy)
    for cell in matrix.select(cells):
        run_dir = storage.join(runs, cell.cell_id)
        state = read_cell_state(run_dir)
        if not include_missing and state is None:
            continue
        records.append(cell_record(cell, run_dir, base, policy, state=state, index=index))
    if not records:
        raise MatrixError(f"{runs}: no cell of matrix '{matrix.name}' has been run (no */cell.json)")
    return build_matrix_report(matrix.name, checkout_relative(base), records, matrix_cells=[c.cell_id for c in matrix.cells])
