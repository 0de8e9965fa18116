"""Running one matrix cell: build (or reuse) its virtualenv, install its pins, run ``harness run`` inside it.

Everything a cell did is kept in its run directory; a failure is recorded (``cell.json``), not raised, so the
next cell still runs. This module prints nothing itself (``log``/``echo`` callbacks). Stdlib only: nox's own
Python runs the matrix cells.
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
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from harness import jsontext
from harness.fsio import write_text
from harness.matrix import venvs
from harness.matrix.cells import CellState, StageStatus, write_cell_state
from harness.matrix.pythons import find_python, override_variable
from harness.matrix.spec import Cell, Matrix

__all__ = ["TAIL_LINES", "REASON_LINES", "TIMINGS_FILE", "THREAD_VARIABLES", "Workspace", "run_cell", "run_harness",
           "failure"]

TAIL_LINES = 40  # lines of output kept in cell.json when a command fails
REASON_LINES = 12  # of which the report's reason shows these
RESULTS_FILE = "results.parquet"
#: what ``harness run`` measured of itself (``harness.run.timings``): compute apart from imports and loading
TIMINGS_FILE = "timings.json"
#: tells ``harness run`` where to write them (``harness.run.timings``; the CLI and results format stay as they are)
TIMINGS_VARIABLE = "HARNESS_TIMINGS_FILE"
#: the thread pools a cell's run is limited to when the workspace gives it a share of the cores
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS")


def _quiet(_: str) -> None:
    return None


def _no_step(_step: str, _state: CellState) -> None:
    return None


#: a server cell's lifecycle around the served ``harness run`` (``harness.matrix.served_cell.run``)
Serve = Callable[[Callable[[List[str]], Tuple[int, str]]], Tuple[int, str]]


class Ran(NamedTuple):
    """One finished command: exit code, last lines of output, CPU seconds it used."""

    code: int
    tail: str
    cpu_s: float


@dataclass(frozen=True)
class Workspace:
    """Where cells are built and run, with what, and who hears about it."""

    root: Path  #: the checkout: installed into every cell (``-e``) and the working directory of every command
    runs: Path  #: run directories are ``runs/<matrix>/<cell-id>``
    venvs: Path  #: cell virtualenvs are ``venvs/<cell-id>``
    backend: str  #: ``uv`` or ``pip`` (``venvs.choose_backend``)
    uv: Optional[str] = None
    reuse_venvs: bool = True  #: keep a virtualenv whose stamp, lock and installed packages did not change
    threads: Optional[int] = None  #: limit each run's thread pools (``THREAD_VARIABLES``); None: the libraries' default
    log: Callable[[str], None] = _quiet  #: one line about what is happening
    echo: Callable[[str], None] = _quiet  #: each line of a command's output, as it comes (newline included)
    on_step: Callable[[str, CellState], None] = _no_step  #: told after ``setup`` and after ``run`` of each cell

    def run_dir(self, matrix: str, cell_id: str) -> Path:
        return self.runs / matrix / cell_id

    def shown(self, path: Path) -> str:
        """``path`` relative to the checkout where it lies inside it (shorter in reasons and logs)."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)


def _stream(ws: Workspace, cmd: Sequence[str], log: Path, env: Dict[str, str], capture: Optional[List[str]] = None) -> Ran:
    """Run ``cmd`` (cwd: the checkout), echo and log its output; exit code, last lines and the command's CPU
    (``wait4`` of this one process, so cells side by side are not charged each other's work)."""
    shown = " ".join(shlex.quote(str(c)) for c in cmd)
    ws.log(shown)
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
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
            return Ran(127, f"{shown}: {err}", 0.0)
        assert proc.stdout is not None
        started = time.perf_counter()
        for line in proc.stdout:
            if capture is None:
                ws.echo(line)
            else:
                capture.append(line)
            handle.write(line)
            tail.append(line.rstrip("\n"))
        code, cpu = _wait(proc)
        handle.write(f"[exit {code} after {time.perf_counter() - started:.2f} s]\n")
    return Ran(code, "\n".join(tail), cpu)


def _wait(proc: subprocess.Popen[str]) -> Tuple[int, float]:
    """Exit code and CPU seconds (user + system) of one finished child."""
    if not hasattr(os, "wait4"):  # Windows
        return proc.wait(), 0.0
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


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
    ran = _run_harness(ws, venv, run_args, results, log, None)
    return ran.code, ran.tail


def _run_harness(ws: Workspace, venv: Path, run_args: Sequence[str], results: Path, log: Path,
                 timings: Optional[Path]) -> Ran:
    """``run_harness`` with the CPU seconds; ``timings``: where the run writes what it measured of itself."""
    cmd = [str(venvs.bin_dir(venv) / "harness"), "run", *run_args, "--out", str(results), "--no-progress",
           "--record-incompatible"]
    env = venvs.cell_env(venv, ws.backend)
    # OpenMP threads that spin while waiting steal the cores their own siblings need whenever anything else runs
    # on the machine: tiny models took 17-28 s instead of 1.6-3.5 s on the shared 2-core machine (README)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if ws.threads:
        env.update({name: str(ws.threads) for name in THREAD_VARIABLES})
    if timings is not None:
        env[TIMINGS_VARIABLE] = str(timings)
    return _stream(ws, cmd, log, env)


def run_cell(ws: Workspace, matrix: Matrix, cell: Cell, run_args: Optional[List[str]] = None) -> CellState:
    """Create the cell's virtualenv, install its pins, run ``harness run`` inside it; write ``cell.json``."""
    venv = ws.venvs / matrix.name / cell.cell_id  # per matrix: smoke and default share cell ids, not model packages
    with venvs.cell_lock(venv, ws.log):
        return _run_locked(ws, matrix, cell, venv, matrix.run_args() if run_args is None else run_args)


def _run_locked(ws: Workspace, matrix: Matrix, cell: Cell, venv: Path, run_args: List[str]) -> CellState:
    run_dir = ws.run_dir(matrix.name, cell.cell_id)
    shutil.rmtree(run_dir, ignore_errors=True)  # never compare a stale results file from an earlier run
    run_dir.mkdir(parents=True)
    state = CellState(
        status=StageStatus.INSTALL_FAILED, cell_id=cell.cell_id, matrix=matrix.name, params=cell.params,
        models=list(matrix.models), baseline=matrix.baseline, backend=ws.backend, venv=str(venv),
        started_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), threads=ws.threads,
    )
    ws.log(f"cell {cell.label}: {', '.join(f'{k} {v}' for k, v in cell.params.items())} [{ws.backend}]")
    _setup(ws, state, cell, matrix.model_packages(), venv, run_dir)
    ws.on_step("setup", state)
    if state.status is StageStatus.OK:
        # -- a server cell (harness.matrix.served_cell) runs this same `harness run` through its own server --
        serve: Optional[Serve] = None
        if cell.server:
            from harness.matrix import served_cell

            def serve(harness: Callable[[List[str]], Tuple[int, str]]) -> Tuple[int, str]:
                return served_cell.run(matrix, cell, venv, run_dir, venvs.cell_env(venv, ws.backend), harness,
                                       bin_dir=venvs.bin_dir(venv), cwd=ws.root, say=ws.log)
        # -- end of the server cell hook --
        _run(ws, state, venv, [*run_args, "--cell-id", cell.cell_id], run_dir, serve)
    write_cell_state(run_dir, state)
    ws.on_step("run", state)
    ws.log(f"cell {cell.label}: {state.status.value} (setup {state.setup_s} s, run {state.run_s} s, "
           f"compute {state.compute_s} s)")
    return state


def _setup(ws: Workspace, state: CellState, cell: Cell, no_deps: List[str], venv: Path, run_dir: Path) -> None:
    """Resolve the cell's lock (uv), then keep its virtualenv when nothing changed, else build it afresh."""
    started, cpu = time.perf_counter(), 0.0
    requirements = cell.requirements()
    install_from = write_text(run_dir / "requirements.txt", "\n".join(requirements) + "\n")
    python = find_python(cell.python)
    setup_log, env = run_dir / "setup.log", venvs.cell_env(venv, ws.backend)
    lock_text: Optional[str] = None
    if python is None:
        state.reason = (
            f"no Python {cell.python} found (pyenv, python{cell.python} on PATH); "
            f"set {override_variable(cell.python)}=/path/to/python{cell.python}"
        )
    elif ws.backend == "uv":
        lock = run_dir / venvs.LOCK_FILE
        ran = _stream(ws, venvs.compile_command(ws.uv, python, install_from, lock), setup_log, env)
        cpu += ran.cpu_s
        if ran.code != 0:
            state.reason = failure(ws, "`uv pip compile` (resolving the cell's pins)", ran.code, ran.tail, setup_log)
            state.output_tail, python = ran.tail, None
        else:
            lock_text, install_from = lock.read_text(encoding="utf-8"), lock
    if python is not None:
        stamp = venvs.install_stamp(os.path.realpath(python), ws.backend, requirements, no_deps)
        key = venvs.lock_key(f"{stamp} {venv.resolve()}", lock_text)  # a moved virtualenv's scripts point elsewhere
        why_not, cpu_freeze = _why_not_reuse(ws, venv, key, run_dir, env)
        cpu += cpu_freeze
        if not why_not:
            state.status, state.reused_venv, state.setup_note = StageStatus.OK, True, "reused: lock and packages unchanged"
            ws.log(f"reusing {venv} (lock and installed packages unchanged)")
        else:
            state.setup_note = f"built: {why_not}"
            ws.log(f"building {venv}: {why_not}")
            cpu += _build(ws, state, venv, python, install_from, no_deps, run_dir, key)
    state.setup_s = round(time.perf_counter() - started, 2)
    state.setup_cpu_s = round(cpu, 2)


def _freeze(ws: Workspace, venv: Path, run_dir: Path, env: Dict[str, str]) -> Tuple[Optional[str], float]:
    """What is installed in the cell now (None if it cannot be listed); also kept as the run's ``installed.txt``."""
    lines: List[str] = []
    ran = _stream(ws, venvs.freeze_command(ws.backend, venv, ws.uv), run_dir / "setup.log", env, capture=lines)
    text = "".join(line for line in lines if not line.startswith("Using Python "))  # uv's note, not a package
    if ran.code != 0:
        return None, ran.cpu_s
    write_text(run_dir / "installed.txt", text)
    return text, ran.cpu_s


def _why_not_reuse(ws: Workspace, venv: Path, key: str, run_dir: Path, env: Dict[str, str]) -> Tuple[str, float]:
    """Empty when the virtualenv can be kept, else why not (one phrase); and the CPU seconds checking took."""
    if not ws.reuse_venvs:
        return "--fresh", 0.0
    if not (venvs.bin_dir(venv) / "python").exists():
        return "no virtualenv yet", 0.0
    if not venvs.reusable(venv, key):
        return "the pins or their resolved lock changed", 0.0
    current, cpu = _freeze(ws, venv, run_dir, env)
    if current is None:
        return "listing its packages failed", cpu
    recorded = venv / venvs.FREEZE_FILE
    return venvs.freeze_difference(recorded.read_text(encoding="utf-8") if recorded.is_file() else None, current), cpu


def _build(ws: Workspace, state: CellState, venv: Path, python: str, requirements: Path, no_deps: List[str],
           run_dir: Path, key: str) -> float:
    """A fresh virtualenv from ``requirements`` (the lock with uv); stamped with ``key`` once it installed cleanly."""
    if venv.exists():  # housekeeping, timed apart: deleting 20k files is slow on a busy disk
        removing = time.perf_counter()
        shutil.rmtree(venv)
        state.cleanup_s = round(time.perf_counter() - removing, 2)
    setup_log, env, cpu = run_dir / "setup.log", venvs.cell_env(venv, ws.backend), 0.0
    for cmd in venvs.install_commands(ws.backend, python, venv, requirements, no_deps, root=ws.root, uv=ws.uv):
        ran = _stream(ws, cmd, setup_log, env)
        cpu += ran.cpu_s
        if ran.code != 0:
            state.reason = failure(ws, f"`{shlex.join(cmd[:3])} ...`", ran.code, ran.tail, setup_log)
            state.output_tail = ran.tail
            return cpu
    installed, freeze_cpu = _freeze(ws, venv, run_dir, env)
    if installed is not None:  # without a record the next run rebuilds: never reuse what was not checked
        write_text(venv / venvs.FREEZE_FILE, installed)
        write_text(venv / venvs.STAMP_FILE, key + "\n")
    state.status = StageStatus.OK
    return cpu + freeze_cpu


def _run(ws: Workspace, state: CellState, venv: Path, run_args: List[str], run_dir: Path,
         serve: Optional[Serve] = None) -> None:
    """``harness run`` in the cell: wall and CPU seconds, and the compute part the run measured of itself.

    ``serve``: a server cell's lifecycle, which calls back with the served run's own arguments while it is up."""
    results, timings = run_dir / RESULTS_FILE, run_dir / TIMINGS_FILE
    started = time.perf_counter()
    if serve is None:
        ran = _run_harness(ws, venv, run_args, results, run_dir / "run.log", timings)
    else:
        runs: List[Ran] = []

        def harness(args: List[str]) -> Tuple[int, str]:
            runs.append(_run_harness(ws, venv, [*args, "--cell-id", state.cell_id], results, run_dir / "run.log", timings))
            return runs[-1].code, runs[-1].tail

        code, tail = serve(harness)
        ran = Ran(code, tail, sum(r.cpu_s for r in runs))
    state.run_s = round(time.perf_counter() - started, 2)
    state.run_cpu_s = round(ran.cpu_s, 2)
    state.run_exit_code = ran.code
    state.timings = read_timings(timings)
    state.compute_s = state.timings.get("compute_s") if state.timings else None
    if not results.is_file():
        state.status = StageStatus.RUN_FAILED
        state.reason = failure(ws, "`harness run` (no results written)", ran.code, ran.tail, run_dir / "run.log")
        state.output_tail = ran.tail
    elif ran.code != 0:  # results written, but some model not ok (e.g. incompatible): the comparison decides
        state.output_tail = ran.tail


def read_timings(path: Path) -> Dict[str, Any]:
    """The run's own timings (empty when it wrote none: an older harness, or it failed before the end)."""
    try:
        data = jsontext.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
