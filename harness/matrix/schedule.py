"""Running a matrix's cells one after another or side by side (``--jobs N``), with one progress line per step.

CI logs must never be long silence, so every step says what it took as soon as it ends; verdicts come last,
from the one judge's ``report.json``. Side by side, each cell's thread pools get an equal share of the cores.
Stdlib only: nox's own Python runs the matrix cells.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from harness import jsontext
from harness.matrix.cellrun import Workspace, run_cell
from harness.matrix.cells import CellState, StageStatus
from harness.matrix.spec import Cell, Matrix, MatrixError
from harness.verdict import CellStatus

__all__ = ["thread_share", "Progress", "run_cells", "verdict_lines", "report_status"]


def thread_share(jobs: int, cores: Optional[int] = None) -> Optional[int]:
    """Threads per cell when ``jobs`` cells run at once: None (the libraries' default) for one at a time."""
    if jobs < 1:
        raise MatrixError(f"--jobs must be >= 1, got {jobs}")
    if jobs == 1:
        return None
    return max(1, (cores or os.cpu_count() or 1) // jobs)


def _seconds(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f} s"


class Progress:
    """Formats the per-step lines and the ETA (elapsed time per finished cell, times the cells left)."""

    def __init__(self, cells: Sequence[Cell], say: Callable[[str], None], clock: Callable[[], float] = time.perf_counter):
        self._position = {cell.cell_id: i for i, cell in enumerate(cells, 1)}
        self._total, self._say, self._clock = len(cells), say, clock
        self._started, self._done = clock(), 0
        self._lock = threading.Lock()

    def _prefix(self, cell_id: str) -> str:
        return f"cell {self._position.get(cell_id, 0)}/{self._total} {cell_id}:"

    def step(self, step: str, state: CellState) -> None:
        """One line after ``setup`` and after ``run`` (``cellrun.Workspace.on_step``)."""
        with self._lock:
            if step == "setup":
                how = "reused" if state.reused_venv else (state.setup_note or "built")
                failed = "" if state.status is StageStatus.OK else f": {state.status.value}"
                self._say(f"{self._prefix(state.cell_id)} setup {_seconds(state.setup_s)} ({how}){failed}")
                return
            self._done += 1
            left = self._total - self._done
            eta = (self._clock() - self._started) / self._done * left
            if state.run_s is None:  # never ran: setup failed, already said
                what = f"not run ({state.status.value})"
            else:
                failed = "" if state.status is StageStatus.OK else f" {state.status.value}"
                what = f"run {_seconds(state.run_s)} (compute {_seconds(state.compute_s)}){failed}"
            self._say(f"{self._prefix(state.cell_id)} {what} · ETA {eta:.0f} s")


def run_cells(ws: Workspace, matrix: Matrix, cells: Sequence[Cell], jobs: int,
              say: Callable[[str], None]) -> List[CellState]:
    """Run ``cells`` ``jobs`` at a time (each with its share of the threads); states in the cells' order."""
    progress = Progress(cells, say)
    threads = thread_share(jobs)
    ws = dataclasses.replace(ws, on_step=progress.step, threads=threads or ws.threads)
    if jobs == 1:
        return [run_cell(ws, matrix, cell) for cell in cells]
    say(f"{len(cells)} cells, {jobs} at a time, {threads} thread(s) each; command output goes to each cell's logs")
    ws = dataclasses.replace(ws, echo=lambda _line: None)
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(lambda cell: run_cell(ws, matrix, cell), cells))


def _report(report_json: Path) -> Dict[str, Any]:
    try:
        data = jsontext.loads(report_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise MatrixError(f"{report_json}: cannot read the matrix report ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise MatrixError(f"{report_json}: not a matrix report")
    return data


def verdict_lines(report_json: Path, cells: Sequence[Cell]) -> List[str]:
    """``cell i/N <id>: verdict PASS`` per cell, from the report the judge wrote."""
    by_id = {c.get("cell_id"): c for c in _report(report_json)["cells"] if isinstance(c, dict)}
    lines = []
    for i, cell in enumerate(cells, 1):
        record = by_id.get(cell.cell_id) or {}
        status = str(record.get("status", "not in the report")).upper()
        reason = str(record.get("reason") or "").splitlines()
        lines.append(f"cell {i}/{len(cells)} {cell.cell_id}: verdict {status}" + (f" ({reason[0]})" if reason else ""))
    return lines


def report_status(report_json: Path) -> CellStatus:
    """The matrix's overall status as the judge wrote it into ``report.json``."""
    return CellStatus.parse(_report(report_json).get("status", CellStatus.ERROR.value))
