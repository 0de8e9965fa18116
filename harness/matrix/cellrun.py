"""Running one matrix cell: build (or reuse) its virtualenv, install its pins, run ``harness run`` inside it.

Everything a cell did is kept in its run directory (``<runs>/<matrix>/<cell-id>/``): ``requirements.txt``,
``setup.log`` and ``run.log`` (every command and its whole output), ``results.parquet`` and ``cell.json``
(``cells.CellState``: stage, reason with the failing command's last lines, setup/run seconds). An install or run
failure is recorded, not raised, so the next cell still runs. The caller says where output goes (``log`` for
what happens, ``echo`` for each line of a command's output): this module prints nothing itself.

Stdlib only: nox's own Python runs the matrix cells.
"""

from __future__ import annotations

import collections
import datetime as _dt
import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from harness.fsio import write_text
from harness.matrix import venvs
from harness.matrix.cells import CellState, StageStatus, write_cell_state
from harness.matrix.pythons import find_python, override_variable
from harness.matrix.spec import Cell, Matrix

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]

__all__ = ["TAIL_LINES", "REASON_LINES", "Workspace", "run_cell", "run_harness", "failure"]

TAIL_LINES = 40  # lines of output kept in cell.json when a command fails
REASON_LINES = 12  # of which the report's reason shows these
RESULTS_FILE = "results.parquet"


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class Workspace:
    """Where cells are built and run, with what, and who hears about it."""

    root: Path  #: the checkout: installed into every cell (``-e``) and the working directory of every command
    runs: Path  #: run directories are ``runs/<matrix>/<cell-id>``
    venvs: Path  #: cell virtualenvs are ``venvs/<cell-id>``
    backend: str  #: ``uv`` or ``pip`` (``venvs.choose_backend``)
    uv: Optional[str] = None
    reuse_venvs: bool = False  #: keep a virtualenv whose install stamp did not change
    log: Callable[[str], None] = _quiet  #: one line about what is happening
    echo: Callable[[str], None] = _quiet  #: each line of a command's output, as it comes (newline included)

    def run_dir(self, matrix: str, cell_id: str) -> Path:
        return self.runs / matrix / cell_id

    def shown(self, path: Path) -> str:
        """``path`` relative to the checkout where it lies inside it (shorter in reasons and logs)."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)


def _child_cpu_s() -> float:
    """CPU seconds (user + system) of all waited-for child processes so far: wall time's load-proof companion."""
    if resource is None:
        return 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _stream(ws: Workspace, cmd: Sequence[str], log: Path, env: Dict[str, str]) -> Tuple[int, str]:
    """Run ``cmd`` (cwd: the checkout), echo and log its output; return exit code and the last lines."""
    shown = " ".join(shlex.quote(str(c)) for c in cmd)
    ws.log(shown)
    tail: "collections.deque[str]" = collections.deque(maxlen=TAIL_LINES)
    with open(log, "a", encoding="utf-8") as handle:  # a log grows while the command runs: appended, not atomic
        handle.write(f"$ {shown}\n")
        handle.flush()
        try:
            proc = subprocess.Popen(
                [str(c) for c in cmd], cwd=ws.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, errors="replace", bufsize=1,
            )
        except OSError as err:
            handle.write(f"{err}\n")
            return 127, f"{shown}: {err}"
        assert proc.stdout is not None
        started = time.perf_counter()
        for line in proc.stdout:
            ws.echo(line)
            handle.write(line)
            tail.append(line.rstrip("\n"))
        code = proc.wait()
        handle.write(f"[exit {code} after {time.perf_counter() - started:.2f} s]\n")
    return code, "\n".join(tail)


def _headline(tail: str) -> str:
    """The line of a failed command's output that says what went wrong (the exception, pip's/uv's error)."""
    lines = [line.strip() for line in tail.splitlines() if line.strip() and not line.startswith("[exit ")]
    for line in reversed(lines):
        if re.match(r"^(error|ERROR|×|[A-Za-z_.]*(Error|Exception|Interrupt)\b)", line):
            return line
    return lines[-1] if lines else "no output"


def failure(ws: Workspace, what: str, code: int, tail: str, log: Path) -> str:
    """One headline, then the last lines of output (the full log stays in the run directory)."""
    last = "\n".join(tail.splitlines()[-REASON_LINES:])
    return f"{what} exited {code}: {_headline(tail)}\n(last lines; full log: {ws.shown(log)})\n{last}"


def run_harness(ws: Workspace, venv: Path, run_args: Sequence[str], results: Path, log: Path) -> Tuple[int, str]:
    """``harness run RUN_ARGS --out RESULTS`` inside the cell ``venv``; exit code and the last lines of output."""
    cmd = [str(venvs.bin_dir(venv) / "harness"), "run", *run_args, "--out", str(results), "--no-progress"]
    return _stream(ws, cmd, log, venvs.cell_env(venv, ws.backend))


def run_cell(ws: Workspace, matrix: Matrix, cell: Cell, run_args: Optional[List[str]] = None) -> CellState:
    """Create the cell's virtualenv, install its pins, run ``harness run`` inside it; write ``cell.json``.

    ``run_args`` default to the matrix's (``Matrix.run_args``); the attribution walk passes its step's flags.
    """
    venv = ws.venvs / cell.cell_id
    with venvs.cell_lock(venv, ws.log):
        return _run_locked(ws, matrix, cell, venv, matrix.run_args() if run_args is None else run_args)


def _install(ws: Workspace, state: CellState, venv: Path, python: str, run_dir: Path, no_deps: List[str]) -> None:
    """Run the install commands in order; the first that fails sets the reason and stops."""
    commands = venvs.install_commands(ws.backend, python, venv, run_dir / "requirements.txt", no_deps, root=ws.root, uv=ws.uv)
    for cmd in commands:
        code, tail = _stream(ws, cmd, run_dir / "setup.log", venvs.cell_env(venv, ws.backend))
        if code != 0:
            state.reason = failure(ws, f"`{shlex.join(cmd[:3])} ...`", code, tail, run_dir / "setup.log")
            state.output_tail = tail
            return
    state.status = StageStatus.OK


def _run_locked(ws: Workspace, matrix: Matrix, cell: Cell, venv: Path, run_args: List[str]) -> CellState:
    run_dir = ws.run_dir(matrix.name, cell.cell_id)
    shutil.rmtree(run_dir, ignore_errors=True)  # never compare a stale results file from an earlier run
    run_dir.mkdir(parents=True)
    requirements = cell.requirements()
    no_deps = matrix.model_packages()
    write_text(run_dir / "requirements.txt", "\n".join(requirements) + "\n")
    state = CellState(
        status=StageStatus.INSTALL_FAILED, cell_id=cell.cell_id, matrix=matrix.name, params=cell.params,
        models=list(matrix.models), baseline=matrix.baseline, backend=ws.backend, venv=str(venv),
        started_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    ws.log(f"cell {cell.label}: {', '.join(f'{k} {v}' for k, v in cell.params.items())} [{ws.backend}]")
    python = find_python(cell.python)
    stamp = venvs.install_stamp(os.path.realpath(python) if python else cell.python, ws.backend, requirements, no_deps)
    reuse = ws.reuse_venvs and venvs.reusable(venv, stamp)
    if venv.exists() and not reuse:  # housekeeping, timed apart: deleting 20k files is slow on a busy disk
        started = time.perf_counter()
        shutil.rmtree(venv)
        state.cleanup_s = round(time.perf_counter() - started, 2)
    started, cpu = time.perf_counter(), _child_cpu_s()
    if python is None:
        state.reason = (
            f"no Python {cell.python} found (pyenv, python{cell.python} on PATH); "
            f"set {override_variable(cell.python)}=/path/to/python{cell.python}"
        )
    elif reuse:
        state.status, state.reused_venv = StageStatus.OK, True
        ws.log(f"reusing {venv} (pins unchanged)")
    else:
        _install(ws, state, venv, python, run_dir, no_deps)
        if state.status is StageStatus.OK:
            write_text(venv / venvs.STAMP_FILE, stamp + "\n")
    state.setup_s = round(time.perf_counter() - started, 2)
    state.setup_cpu_s = round(_child_cpu_s() - cpu, 2)
    if state.status is StageStatus.OK:
        results = run_dir / RESULTS_FILE
        started, cpu = time.perf_counter(), _child_cpu_s()
        # -- a server cell (harness.matrix.served_cell) runs this same `harness run` through its own server --
        if cell.server:
            from harness.matrix import served_cell

            code, tail = served_cell.run(
                matrix, cell, venv, run_dir, venvs.cell_env(venv, ws.backend),
                lambda args: run_harness(ws, venv, [*args, "--cell-id", cell.cell_id], results, run_dir / "run.log"),
                bin_dir=venvs.bin_dir(venv), cwd=ws.root, say=ws.log)
        # -- end of the server cell hook --
        else:
            code, tail = run_harness(ws, venv, [*run_args, "--cell-id", cell.cell_id], results, run_dir / "run.log")
        state.run_s = round(time.perf_counter() - started, 2)
        state.run_cpu_s = round(_child_cpu_s() - cpu, 2)
        state.run_exit_code = code
        if not results.is_file():
            state.status = StageStatus.RUN_FAILED
            state.reason = failure(ws, "`harness run` (no results written)", code, tail, run_dir / "run.log")
            state.output_tail = tail
        elif code != 0:  # results written, but some model not ok (e.g. incompatible): the comparison decides
            state.output_tail = tail
    write_cell_state(run_dir, state)
    ws.log(f"cell {cell.label}: {state.status.value} (setup {state.setup_s} s, run {state.run_s} s)")
    return state

