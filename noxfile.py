"""Nox sessions: the version matrix, baselines from a reference cell, report re-rendering, tests and lint.

Matrix design
-------------
The matrices are data (``matrix.toml``). Nox fixes session parametrization when it imports this file, but the
matrix is chosen at run time, so:

``nox -s matrix -- --matrix smoke`` runs every cell of one matrix in sequence (default matrix: ``$HARNESS_MATRIX``
or ``default``), then compares and writes one report. ``--cells ID ...`` runs a subset.

``matrix_cell`` is parametrized with every cell of *every* matrix (ids ``MATRIX/CELL-ID``, tagged
``matrix-MATRIX``), so one cell runs alone with ``nox -s "matrix_cell(smoke/torch-2.13.0_st-6.2.0_tf-5.23.0_py3.11)"``,
``nox -s matrix_cell -k smoke`` or ``nox -t matrix-smoke``; it writes a one-cell report into its run directory.
``nox -l`` lists them.

Both share ``_run_cell`` (which holds a per-cell lock, so two nox runs of one cell in one checkout take turns). Each session's own nox virtualenv is the *controlling* environment: the harness core
(numpy, pyarrow; never torch) installed from this checkout. Cells are separate virtualenvs under
``.nox/matrix-cells/<cell-id>``, created by this file with ``uv venv`` + ``uv pip install`` (or ``virtualenv`` +
pip: ``--backend pip`` / ``HARNESS_VENV_BACKEND=pip``, automatic when uv is missing), because one nox session
cannot own several nox-managed virtualenvs. A cell gets only what the runner needs: its pins (matrix.toml), the
runner's core dependencies, this project with ``--no-deps`` and model packages with ``--no-deps``. Then
``harness run`` runs *inside* the cell and writes ``<runs>/<matrix>/<cell-id>/results.parquet``; ``cell.json``
beside it records params, stage status, reason and ``setup_s`` / ``run_s``, with ``setup.log`` / ``run.log``.
An install or run failure is recorded (``install-failed`` / ``run-failed`` with the last lines of output) and
the next cell still runs. Afterwards ``python -m harness.matrix report`` compares every cell with the baseline
in the controlling environment and writes ``summary.md``, ``report.json``, ``junit.xml`` and ``report.html``
to ``reports/latest/`` and appends to ``reports/history/history.jsonl``. The session fails when any cell drifted
(``fail``) or could not be judged (``install-failed``, ``run-failed``, ``error``); ``incompatible`` cells are
reported only.

Run directories are per matrix (``reports/runs/<matrix>/<cell-id>/``) because two matrices may hold a cell with
the same pins but different models.

Options (after ``--``): ``--matrix NAME``, ``--cells ID ...``, ``--backend auto|uv|pip``, ``--reuse-venvs`` (keep a
cell virtualenv whose pins did not change instead of recreating it).

Environment: ``HARNESS_MATRIX`` (default matrix), ``HARNESS_MATRIX_FILE`` (another matrix file),
``HARNESS_REPORTS_DIR`` (default ``reports/``), ``HARNESS_VENV_BACKEND``, ``HARNESS_TORCH_INDEX_URL`` (an index
for torch, e.g. https://download.pytorch.org/whl/cpu: uv ``--index`` (preferred over PyPI), pip
``--extra-index-url``), ``HARNESS_PYTHON_3_X`` (interpreter for Python 3.X cells). ``UV_FIND_LINKS`` defaults to
``/opt/wheels`` where that directory exists, ``UV_COMPILE_BYTECODE`` to 1 (bytecode is compiled at install, so
``run_s`` times the run, not compilation; ``UV_COMPILE_BYTECODE=0`` trades 25-60 s less setup per fresh cell for
a first run that compiles what it imports), and pip in cells runs with ``PIP_CONSTRAINT=/dev/null`` so a
machine-wide torch cap does not block newer cells. Cells may write .pyc files (``PYTHONDONTWRITEBYTECODE`` is
dropped for them).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as _dt
import hashlib
import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import nox

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
hm = importlib.import_module("harness.matrix.spec")  # stdlib + packaging only: importable in nox's own Python

nox.options.sessions = ["lint", "tests"]  # a bare `nox` never starts the (long) matrix

VENV_BACKEND = "uv|virtualenv"
REPORTS = Path(os.environ.get("HARNESS_REPORTS_DIR") or ROOT / "reports").resolve()
TAIL_LINES = 40  # lines of output kept in cell.json when a command fails
REASON_LINES = 12  # of which the report's reason shows these

if Path("/opt/wheels").is_dir():
    os.environ.setdefault("UV_FIND_LINKS", "/opt/wheels")
os.environ.setdefault("UV_COMPILE_BYTECODE", "1")

try:
    MATRICES: Optional[hm.MatrixFile] = hm.load_matrix_file(os.environ.get("HARNESS_MATRIX_FILE"))
    MATRIX_ERROR = ""
except hm.MatrixError as _err:  # report it from the matrix sessions; lint and tests must still work
    MATRICES, MATRIX_ERROR = None, str(_err)

CELL_PARAMS = [
    nox.param(matrix.name, cell.cell_id, id=cell.label, tags=[f"matrix-{matrix.name}"])
    for matrix in (MATRICES.matrices.values() if MATRICES else [])
    for cell in matrix.cells
]


# -- options ----------------------------------------------------------------------------------------------------


def _options(session: nox.Session, *, cell_required: bool = False) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"nox -s {session.name} --", add_help=True)
    parser.add_argument("--matrix", default=os.environ.get("HARNESS_MATRIX", "default"), help="matrix name in matrix.toml")
    parser.add_argument("--cells", "--cell", nargs="+", dest="cells", required=cell_required, metavar="CELL_ID")
    parser.add_argument("--backend", choices=("auto", "uv", "pip"), default=os.environ.get("HARNESS_VENV_BACKEND", "auto"))
    parser.add_argument("--reuse-venvs", action="store_true", default=os.environ.get("HARNESS_REUSE_VENVS") == "1")
    parser.add_argument("--force", action="store_true", help="baseline: replace an existing baseline (the old one is kept)")
    parser.add_argument("--reason", help="baseline: why it is (re)generated")
    parser.add_argument("--runs", help="report: gather cells from this directory or URI (s3://bucket/prefix, gs://...) "
                                       "instead of reports/runs/<matrix>/")
    try:
        return parser.parse_args(session.posargs)
    except SystemExit as exit_:
        if not exit_.code:
            session.skip("help printed")
        session.error(f"bad options {session.posargs!r}")


def _matrix(session: nox.Session, name: str) -> hm.Matrix:
    if MATRICES is None:
        session.error(MATRIX_ERROR)
    try:
        return MATRICES.select(name)
    except hm.MatrixError as err:
        session.error(str(err))


def _uv() -> Optional[str]:
    """nox's own uv (the one its uv backend uses), else uv on PATH."""
    find_uv = getattr(importlib.import_module("nox.virtualenv"), "find_uv", None)  # nox >= 2024.3
    if find_uv is not None:
        has_uv, uv, *_ = find_uv()
        if has_uv:
            return str(uv)
    return shutil.which("uv")


def _backend(session: nox.Session, choice: str) -> str:
    if choice == "auto":
        return "uv" if _uv() else "pip"
    if choice == "uv" and not _uv():
        session.error("--backend uv: uv not found (install it, or use --backend pip)")
    return choice


def _controller(session: nox.Session) -> None:
    """The controlling environment: the harness core from this checkout (no torch), for compare and report."""
    session.install("-e", str(ROOT))


def _cells_root(session: nox.Session) -> Path:
    location = getattr(session.virtualenv, "location", None)
    return (Path(location).parent if location else ROOT / ".nox") / "matrix-cells"


# -- one cell ---------------------------------------------------------------------------------------------------


def _child_cpu_s() -> float:
    """CPU seconds (user + system) of all waited-for child processes so far: wall time's load-proof companion."""
    if resource is None:
        return 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _stream(session: nox.Session, cmd: Sequence[str], log: Path, env: Dict[str, str]) -> Tuple[int, str]:
    """Run ``cmd`` (cwd: repository root), echo and log its output; return exit code and the last lines."""
    shown = " ".join(shlex.quote(str(c)) for c in cmd)
    session.log(shown)
    tail: "collections.deque[str]" = collections.deque(maxlen=TAIL_LINES)
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"$ {shown}\n")
        handle.flush()
        try:
            proc = subprocess.Popen(
                [str(c) for c in cmd], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, errors="replace", bufsize=1,
            )
        except OSError as err:
            handle.write(f"{err}\n")
            return 127, f"{shown}: {err}"
        assert proc.stdout is not None
        started = time.perf_counter()
        for line in proc.stdout:
            sys.stdout.write(line)
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


def _failure(what: str, code: int, tail: str, log: Path) -> str:
    """One headline, then the last lines of output (the full log stays in the run directory)."""
    last = "\n".join(tail.splitlines()[-REASON_LINES:])
    return f"{what} exited {code}: {_headline(tail)}\n(last lines; full log: {_shown(log)})\n{last}"


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _bin(venv: Path) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin")


def _cell_env(venv: Path, backend: str) -> Dict[str, str]:
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    env.pop("CONDA_PREFIX", None)
    # with UV_COMPILE_BYTECODE=0 the first import writes .pyc files instead of recompiling torch on every import
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PATH"] = os.pathsep.join([str(_bin(venv)), env.get("PATH", "")])
    if backend == "pip":
        env["PIP_CONSTRAINT"] = "/dev/null"  # a machine-wide torch cap must not decide which torch a cell gets
        env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    return env


def _install_cmds(backend: str, python: str, venv: Path, requirements: Path, no_deps: List[str]) -> List[List[str]]:
    vpy = str(_bin(venv) / "python")
    index = os.environ.get("HARNESS_TORCH_INDEX_URL")
    if backend == "uv":
        uv = _uv() or "uv"
        index_args = ["--index", index] if index else []
        return [
            [uv, "venv", "--clear", "--no-project", "--python", python, str(venv)],
            [uv, "pip", "install", "--python", vpy, *index_args, "-r", str(requirements)],
            [uv, "pip", "install", "--python", vpy, "--no-deps", "-e", str(ROOT), *no_deps],
        ]
    try:
        import virtualenv  # noqa: F401 - nox depends on it; seeds a current pip

        create = [sys.executable, "-m", "virtualenv", "--quiet", "--clear", "--python", python, str(venv)]
    except ImportError:
        create = [python, "-m", "venv", "--clear", str(venv)]
    index_args = ["--extra-index-url", index] if index else []
    return [
        create,
        [vpy, "-m", "pip", "install", *index_args, "-r", str(requirements)],
        [vpy, "-m", "pip", "install", "--no-deps", "-e", str(ROOT), *no_deps],
    ]


def _stamp(python: str, backend: str, requirements: List[str], no_deps: List[str]) -> str:
    text = json.dumps([python, backend, requirements, no_deps, os.environ.get("HARNESS_TORCH_INDEX_URL")])
    return hashlib.sha256(text.encode()).hexdigest()


@contextlib.contextmanager
def _cell_lock(session: nox.Session, venv: Path) -> Iterator[None]:
    """One nox run at a time per cell virtualenv: a second run of the same cell (another terminal) waits."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        yield
        return
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.with_name(venv.name + ".lock"), "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            session.log(f"waiting: another nox run is using {venv}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _run_cell(session: nox.Session, matrix: hm.Matrix, cell: hm.Cell, opts: argparse.Namespace) -> Dict[str, Any]:
    """Create the cell's virtualenv, install its pins, run ``harness run`` inside it; write ``cell.json``."""
    backend = _backend(session, opts.backend)
    venv = _cells_root(session) / cell.cell_id
    with _cell_lock(session, venv):
        return _run_cell_locked(session, matrix, cell, opts, backend, venv)


def _run_cell_locked(
    session: nox.Session, matrix: hm.Matrix, cell: hm.Cell, opts: argparse.Namespace, backend: str, venv: Path
) -> Dict[str, Any]:
    run_dir = REPORTS / "runs" / matrix.name / cell.cell_id
    shutil.rmtree(run_dir, ignore_errors=True)  # never compare a stale results file from an earlier run
    run_dir.mkdir(parents=True)
    requirements = cell.requirements()
    no_deps = matrix.model_packages()
    (run_dir / "requirements.txt").write_text("\n".join(requirements) + "\n", encoding="utf-8")
    state: Dict[str, Any] = {
        "cell_id": cell.cell_id,
        "matrix": matrix.name,
        "params": cell.params,
        "models": list(matrix.models),
        "baseline": matrix.baseline,
        "backend": backend,
        "venv": str(venv),
        "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "status": "install-failed",
        "reason": "",
        "setup_s": None,
        "run_s": None,
        "setup_cpu_s": None,
        "run_cpu_s": None,
        "reused_venv": False,
    }
    session.log(f"cell {cell.label}: {', '.join(f'{k} {v}' for k, v in cell.params.items())} [{backend}]")
    python = hm.find_python(cell.python)
    env = _cell_env(venv, backend)
    stamp = _stamp(os.path.realpath(python) if python else cell.python, backend, requirements, no_deps)
    stamp_file = venv / "harness-cell.stamp"
    reuse = opts.reuse_venvs and stamp_file.is_file() and stamp_file.read_text().strip() == stamp
    if venv.exists() and not reuse:  # housekeeping, timed apart: deleting 20k files is slow on a busy disk
        started = time.perf_counter()
        shutil.rmtree(venv)
        state["cleanup_s"] = round(time.perf_counter() - started, 2)
    started, cpu = time.perf_counter(), _child_cpu_s()
    if python is None:
        state["reason"] = (
            f"no Python {cell.python} found (pyenv, python{cell.python} on PATH); "
            f"set HARNESS_PYTHON_{cell.python.replace('.', '_')}=/path/to/python{cell.python}"
        )
    elif reuse:
        state.update(status="ok", reused_venv=True)
        session.log(f"reusing {venv} (pins unchanged)")
    else:
        for cmd in _install_cmds(backend, python, venv, run_dir / "requirements.txt", no_deps):
            code, tail = _stream(session, cmd, run_dir / "setup.log", env)
            if code != 0:
                state["reason"] = _failure(f"`{shlex.join(cmd[:3])} ...`", code, tail, run_dir / "setup.log")
                state["output_tail"] = tail
                break
        else:
            state["status"] = "ok"
            stamp_file.write_text(stamp + "\n")
    state["setup_s"] = round(time.perf_counter() - started, 2)
    state["setup_cpu_s"] = round(_child_cpu_s() - cpu, 2)
    if state["status"] == "ok":
        results = run_dir / "results.parquet"
        cmd = [str(_bin(venv) / "harness"), "run", *matrix.run_args(), "--out", str(results),
               "--cell-id", cell.cell_id, "--no-progress"]
        started, cpu = time.perf_counter(), _child_cpu_s()
        code, tail = _stream(session, cmd, run_dir / "run.log", env)
        state["run_s"] = round(time.perf_counter() - started, 2)
        state["run_cpu_s"] = round(_child_cpu_s() - cpu, 2)
        state["run_exit_code"] = code
        if not results.is_file():
            state.update(status="run-failed", reason=_failure("`harness run` (no results written)", code, tail, run_dir / "run.log"),
                         output_tail=tail)
        elif code != 0:  # results written, but some model not ok (e.g. incompatible): the comparison decides
            state["output_tail"] = tail
    hm.write_cell_state(run_dir, state)
    session.log(f"cell {cell.label}: {state['status']} (setup {state['setup_s']} s, run {state['run_s']} s)")
    return state


def _report(session: nox.Session, matrix: hm.Matrix, *extra: str, runs: Optional[str] = None) -> None:
    """Compare and render in the controlling environment; the session fails on drift or failed cells."""
    session.run(
        "python", "-m", "harness.matrix", "report", "--matrix", matrix.name,
        *(["--file", str(matrix.source)]), "--runs", runs or str(REPORTS / "runs" / matrix.name), *extra,
    )


def _check_baseline(session: nox.Session, matrix: hm.Matrix) -> None:
    path = hm.baseline_file(matrix.baseline)
    if not path.is_file():
        cell = matrix.cells[-1].cell_id
        session.error(
            f"{path}: baseline '{matrix.baseline}' of matrix '{matrix.name}' does not exist; create it from a "
            f"reference cell: nox -s baseline -- --matrix {matrix.name} --cell {cell}"
        )


# -- sessions ---------------------------------------------------------------------------------------------------


@nox.session(venv_backend=VENV_BACKEND)
def matrix(session: nox.Session) -> None:
    """Run every cell of a matrix (``-- --matrix NAME``), compare each with the baseline, write one report."""
    opts = _options(session)
    chosen = _matrix(session, opts.matrix)
    try:
        cells = chosen.select(opts.cells)
        chosen.model_packages()
    except hm.MatrixError as err:
        session.error(str(err))
    _check_baseline(session, chosen)
    _controller(session)
    started = time.perf_counter()
    for cell in cells:
        _run_cell(session, chosen, cell, opts)
    session.log(f"{len(cells)} cell(s) set up and run in {time.perf_counter() - started:.1f} s")
    _report(
        session, chosen,
        "--out", str(REPORTS / "latest"),
        "--history", str(REPORTS / "history" / "history.jsonl"),
        *(["--cells", *[c.cell_id for c in cells]] if opts.cells else []),
    )


@nox.session(venv_backend=VENV_BACKEND)
@nox.parametrize(("matrix_name", "cell_id"), CELL_PARAMS)
def matrix_cell(session: nox.Session, matrix_name: str, cell_id: str) -> None:
    """Run one cell alone and write a one-cell report into its run directory (not reports/latest)."""
    opts = _options(session)
    chosen = _matrix(session, matrix_name)
    cell = chosen.cell(cell_id)
    _check_baseline(session, chosen)
    _controller(session)
    _run_cell(session, chosen, cell, opts)
    _report(session, chosen, "--cells", cell.cell_id, "--out", str(REPORTS / "runs" / chosen.name / cell.cell_id / "report"))


@nox.session(venv_backend=VENV_BACKEND)
def baseline(session: nox.Session) -> None:
    """(Re)generate a matrix's baseline from a reference cell: ``-- --matrix smoke --cell ID [--force]``."""
    opts = _options(session, cell_required=True)
    chosen = _matrix(session, opts.matrix)
    if len(opts.cells) != 1:
        session.error("--cell takes one cell id")
    try:
        cell = chosen.cell(opts.cells[0])
    except hm.MatrixError as err:
        session.error(str(err))
    target = hm.baseline_file(chosen.baseline)
    if target.exists() and not opts.force:  # fail before minutes of installing, with the CLI's own wording
        session.error(f"{target}: baseline exists; refusing to overwrite (use --force to replace it, keeping the old file)")
    _controller(session)
    state = _run_cell(session, chosen, cell, opts)
    if state["status"] != "ok" or state.get("run_exit_code"):
        session.error(f"cell {cell.label} did not run cleanly ({state['status']}): {state['reason']}")
    reason = opts.reason or f"reference cell {cell.label} ({', '.join(f'{k} {v}' for k, v in cell.params.items())})"
    session.run(
        "harness", "baseline", "create", str(target), "--from", str(REPORTS / "runs" / chosen.name / cell.cell_id / "results.parquet"),
        "--reason", reason, *(["--force"] if opts.force else []),
    )


@nox.session(venv_backend=VENV_BACKEND)
def report(session: nox.Session) -> None:
    """Re-render ``reports/latest/`` from the existing ``reports/runs/<matrix>/*/`` without running any cell, or
    gather cells uploaded elsewhere: ``-- --runs s3://bucket/nightly/<date>`` (a directory or any URI pyarrow or
    fsspec opens)."""
    opts = _options(session)
    chosen = _matrix(session, opts.matrix)
    _controller(session)
    _report(session, chosen, "--out", str(REPORTS / "latest"), "--skip-missing",
            *(["--cells", *opts.cells] if opts.cells else []), runs=opts.runs)


@nox.session(venv_backend=VENV_BACKEND)
def tests(session: nox.Session) -> None:
    """The pytest suite (default ``-m "not matrix"``; pass pytest arguments after ``--``)."""
    session.install("torch==2.13.0", "-e", f"{ROOT}[run,dev,models]")
    session.run("pytest", *(session.posargs or ["-m", "not matrix"]))


@nox.session(venv_backend=VENV_BACKEND)
def lint(session: nox.Session) -> None:
    """ruff on the package, the tests and this file."""
    session.install("ruff")
    session.run("ruff", "check", "harness", "tests", "noxfile.py", *session.posargs)


@nox.session(venv_backend=VENV_BACKEND)
def bench(session: nox.Session) -> None:
    """Benchmarks (never part of a bare ``nox``): comparator throughput and peak RSS at 10k/100k/1M x 384
    (``benchmarks/bench_compare.py``; ~3 GB of temporary files at 1M), and the runner's overhead over bare
    ``encode``/``predict`` calls (``benchmarks/bench_runner_overhead.py``). ``-- compare ARGS`` or
    ``-- overhead ARGS`` runs one of them with its own arguments (e.g. ``-- compare --sizes 100000``);
    ``-- device --device cuda`` runs ``benchmarks/device_drift.py`` (drift per precision on one device; only
    when asked: it is the GPU check, minutes per setting)."""
    session.install("torch==2.13.0", "-e", f"{ROOT}[run,models]")
    scripts = {"compare": "bench_compare.py", "overhead": "bench_runner_overhead.py", "device": "device_drift.py"}
    if session.posargs and session.posargs[0] in scripts:
        session.run("python", str(ROOT / "benchmarks" / scripts[session.posargs[0]]), *session.posargs[1:])
        return
    for script in (scripts["compare"], scripts["overhead"]):
        session.run("python", str(ROOT / "benchmarks" / script))


# -- attribution ------------------------------------------------------------------------------------------------


def _attribute_options(session: nox.Session) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="nox -s attribute --", description=(
        "Walk from BASELINE_CELL to CANDIDATE_CELL one factor at a time (packages through cell venvs, then runtime "
        "flags in the candidate's venv), run each step, and attribute the drift to the steps."))
    parser.add_argument("baseline_cell", help="cell id (matrix.toml) of the starting environment")
    parser.add_argument("candidate_cell", help="cell id of the target environment")
    parser.add_argument("--matrix", default=os.environ.get("HARNESS_MATRIX", "default"))
    parser.add_argument("--backend", choices=("auto", "uv", "pip"), default=os.environ.get("HARNESS_VENV_BACKEND", "auto"))
    parser.add_argument("--reuse-venvs", action="store_true", default=True, help="reuse cell venvs whose pins did not change (default)")
    for flag, help_ in (("dtype", "float32|float16|bfloat16"), ("attn-implementation", "eager|sdpa"), ("tf32", "on|off"),
                        ("batch-size", "N"), ("threads", "N"), ("device", "cpu|cuda|mps")):
        parser.add_argument(f"--to-{flag}", help=f"candidate runtime setting ({help_}); default: the baseline's")
    try:
        return parser.parse_args(session.posargs)
    except SystemExit as exit_:
        if not exit_.code:
            session.skip("help printed")
        raise


def _resolver(python_cache: Dict[str, Optional[str]]):  # noqa: ANN202
    """``uv pip compile`` dry run of a step's pins: None when they install together, else uv's last line."""

    def resolves(cell: hm.Cell) -> Optional[str]:
        uv = _uv()
        if uv is None:
            return None  # cannot check without uv: try the step and let the install decide
        key = "\n".join([cell.python, *cell.requirements()])
        if key not in python_cache:
            proc = subprocess.run(
                [uv, "pip", "compile", "-", "--quiet", "--python-version", cell.python, "--no-header"],
                input="\n".join(cell.requirements()), capture_output=True, text=True, env=dict(os.environ),
            )
            last = [line for line in proc.stderr.strip().splitlines() if line.strip()]
            python_cache[key] = None if proc.returncode == 0 else (last[-1].strip() if last else f"exit {proc.returncode}")
        return python_cache[key]

    return resolves


@nox.session(venv_backend=VENV_BACKEND)
def attribute(session: nox.Session) -> None:
    """Attribute drift between two matrix cells to single factors: ``-- BASELINE_CELL CANDIDATE_CELL [--to-dtype ...]``."""
    import dataclasses

    from harness.matrix.attribution import PACKAGE_FACTORS, RuntimeSettings, plan_steps

    opts = _attribute_options(session)
    chosen = _matrix(session, opts.matrix)
    try:
        base, cand = chosen.cell(opts.baseline_cell), chosen.cell(opts.candidate_cell)
    except hm.MatrixError as err:
        session.error(str(err))
    base_rt = RuntimeSettings(device=chosen.device, dtype=chosen.dtype, batch_size=chosen.batch_size)
    overrides: Dict[str, Any] = {}
    for name in ("dtype", "attn_implementation", "device"):
        if getattr(opts, f"to_{name}"):
            overrides[name] = getattr(opts, f"to_{name}")
    for name in ("batch_size", "threads"):
        if getattr(opts, f"to_{name}"):
            overrides[name] = int(getattr(opts, f"to_{name}"))
    if opts.to_tf32:
        overrides["tf32"] = opts.to_tf32 == "on"
    steps = plan_steps(base, base_rt, cand, dataclasses.replace(base_rt, **overrides), _resolver({}))
    out_dir = REPORTS / "attribution" / f"{base.cell_id}__{cand.cell_id}"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    _controller(session)
    plan: Dict[str, Any] = {"matrix": chosen.name, "baseline_cell": base.cell_id, "candidate_cell": cand.cell_id,
                            "models": list(chosen.models), "steps": []}
    venv_of: Dict[str, Path] = {}
    for step in steps:
        entry = step.describe()
        session.log(f"{step.step_id}: {step.name} {step.note}")
        if not step.factors or step.factors[0] in {name for name, _ in PACKAGE_FACTORS}:
            step_matrix = dataclasses.replace(chosen, name="attribute", device=step.runtime.device,
                                              dtype=step.runtime.dtype, batch_size=step.runtime.batch_size)
            state = _run_cell(session, step_matrix, step.cell, opts)
            results = REPORTS / "runs" / "attribute" / step.cell.cell_id / "results.parquet"
            venv_of["current"] = Path(state["venv"])
            if state["status"] != "ok" or not results.is_file():
                entry["error"] = f"{state['status']}: {state['reason']}"
        else:  # runtime factor: same packages, the previous step's venv, different runner flags
            run_dir = out_dir / step.step_id
            run_dir.mkdir(parents=True, exist_ok=True)
            results = run_dir / "results.parquet"
            venv = venv_of["current"]
            cmd = [str(_bin(venv) / "harness"), "run", "--models", *chosen.models, *step.runtime.run_args(),
                   "--out", str(results), "--no-progress"]
            code, tail = _stream(session, cmd, run_dir / "run.log", _cell_env(venv, _backend(session, opts.backend)))
            if not results.is_file():
                entry["error"] = _failure("`harness run`", code, tail, run_dir / "run.log")
        entry["results"] = str(results)
        plan["steps"].append(entry)
    (out_dir / "plan.json").write_text(json.dumps(plan, indent=2), encoding="utf-8")
    session.run("python", "-m", "harness.matrix.attribution", str(out_dir / "plan.json"), "--out", str(out_dir))
    session.log(f"attribution report: {out_dir / 'attribution.md'} (and .json, .html)")
