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

Each session's own nox virtualenv is the *controlling* environment: the harness core (numpy, pyarrow; never
torch) installed from this checkout. Cells are separate virtualenvs under ``.nox/matrix-cells/<cell-id>``, built
and run by ``harness.matrix.cellrun`` from nox's own Python (``uv`` or ``--backend pip`` /
``HARNESS_VENV_BACKEND=pip``, automatic when uv is missing; see ``harness.matrix.venvs``); one nox run at a time
per cell. Each cell writes ``<runs>/<matrix>/<cell-id>/`` (``results.parquet``, ``cell.json``, ``setup.log``,
``run.log``); an install or run failure is recorded and the next cell still runs. Afterwards ``harness matrix
report`` compares every cell with the baseline in the controlling environment and writes ``summary.md``,
``report.json``, ``junit.xml`` and ``report.html`` to ``reports/latest/`` and appends to
``reports/history/history.jsonl``. The session fails when any cell drifted (``fail``) or could not be judged
(``install-failed``, ``run-failed``, ``error``); ``incompatible`` cells are reported only. Run directories are per
matrix (``reports/runs/<matrix>/<cell-id>/``) because two matrices may hold a cell with the same pins but
different models.

Options (after ``--``): ``--matrix NAME``, ``--cells ID ...``, ``--backend auto|uv|pip``, ``--reuse-venvs`` (keep a
cell virtualenv whose pins did not change instead of recreating it).

Environment: ``HARNESS_MATRIX`` (default matrix), ``HARNESS_MATRIX_FILE`` (another matrix file),
``HARNESS_REPORTS_DIR`` (default ``reports/``), ``HARNESS_VENV_BACKEND``, ``HARNESS_REUSE_VENVS=1``,
``HARNESS_TORCH_INDEX_URL`` (an index for torch, e.g. https://download.pytorch.org/whl/cpu: uv ``--index``
(preferred over PyPI), pip ``--extra-index-url``), ``HARNESS_PYTHON_3_X`` (interpreter for Python 3.X cells).
``UV_FIND_LINKS`` defaults to ``/opt/wheels`` where that directory exists, ``UV_COMPILE_BYTECODE`` to 1 (bytecode
is compiled at install, so ``run_s`` times the run, not compilation; ``UV_COMPILE_BYTECODE=0`` trades 25-60 s
less setup per fresh cell for a first run that compiles what it imports), and pip in cells runs with
``PIP_CONSTRAINT=/dev/null`` so a machine-wide torch cap does not block newer cells. Cells may write .pyc files
(``PYTHONDONTWRITEBYTECODE`` is dropped for them).

This file imports only the stdlib, nox and ``harness.matrix`` modules that are stdlib + ``packaging``: nox's own
Python has no numpy or pyarrow.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

import nox

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness.matrix import cellrun, venvs  # noqa: E402 - stdlib + packaging only: importable in nox's own Python
from harness.matrix.cells import CellState  # noqa: E402
from harness.matrix.spec import Matrix, MatrixError, MatrixFile, baseline_file, load_matrix_file  # noqa: E402

nox.options.sessions = ["lint", "tests"]  # a bare `nox` never starts the (long) matrix

VENV_BACKEND = "uv|virtualenv"
REPORTS = Path(os.environ.get("HARNESS_REPORTS_DIR") or ROOT / "reports").resolve()

if Path("/opt/wheels").is_dir():
    os.environ.setdefault("UV_FIND_LINKS", "/opt/wheels")
os.environ.setdefault("UV_COMPILE_BYTECODE", "1")

try:
    MATRICES: Optional[MatrixFile] = load_matrix_file(os.environ.get("HARNESS_MATRIX_FILE"))
    MATRIX_ERROR = ""
except MatrixError as _err:  # report it from the matrix sessions; lint and tests must still work
    MATRICES, MATRIX_ERROR = None, str(_err)

CELL_PARAMS = [
    nox.param(matrix.name, cell.cell_id, id=cell.label, tags=[f"matrix-{matrix.name}"])
    for matrix in (MATRICES.matrices.values() if MATRICES else [])
    for cell in matrix.cells
]


# -- helpers ----------------------------------------------------------------------------------------------------


def _options(session: nox.Session, *, cell_required: bool = False) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"nox -s {session.name} --", add_help=True)
    parser.add_argument("--matrix", default=os.environ.get("HARNESS_MATRIX", "default"), help="matrix name in matrix.toml")
    parser.add_argument("--cells", "--cell", nargs="+", dest="cells", required=cell_required, metavar="CELL_ID")
    parser.add_argument("--backend", choices=venvs.BACKENDS, default=os.environ.get("HARNESS_VENV_BACKEND", "auto"))
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


def _matrix(session: nox.Session, name: str) -> Matrix:
    if MATRICES is None:
        session.error(MATRIX_ERROR)
    try:
        return MATRICES.select(name)
    except MatrixError as err:
        session.error(str(err))


def _cells_root(session: nox.Session) -> Path:
    location = getattr(session.virtualenv, "location", None)
    return (Path(location).parent if location else ROOT / ".nox") / "matrix-cells"


def _workspace(session: nox.Session, opts: argparse.Namespace) -> cellrun.Workspace:
    """Where cells are built and run: nox's uv (or pip), this checkout, output echoed as it comes."""
    uv = venvs.find_uv()
    try:
        backend = venvs.choose_backend(opts.backend, uv)
    except MatrixError as err:
        session.error(str(err))
    return cellrun.Workspace(root=ROOT, runs=REPORTS / "runs", venvs=_cells_root(session), backend=backend, uv=uv,
                             reuse_venvs=opts.reuse_venvs, log=session.log, echo=sys.stdout.write)


def _controller(session: nox.Session) -> None:
    """The controlling environment: the harness core from this checkout (no torch), for compare and report."""
    session.install("-e", str(ROOT))


def _prepare(session: nox.Session, matrix: Matrix, cell_ids: Optional[List[str]]) -> None:
    """Fail before minutes of installing: unknown cells or models, or no baseline to compare with."""
    try:
        matrix.select(cell_ids)
        matrix.model_packages()
        matrix.require_baseline()
    except MatrixError as err:
        session.error(str(err))


def _report(session: nox.Session, matrix: Matrix, *extra: str, runs: Optional[str] = None) -> None:
    """Compare and render in the controlling environment; the session fails on drift or failed cells."""
    session.run("harness", "matrix", "report", "--matrix", matrix.name, "--file", str(matrix.source),
                "--runs", runs or str(REPORTS / "runs" / matrix.name), *extra)


# -- sessions ---------------------------------------------------------------------------------------------------


@nox.session(venv_backend=VENV_BACKEND)
def matrix(session: nox.Session) -> None:
    """Run every cell of a matrix (``-- --matrix NAME``), compare each with the baseline, write one report."""
    opts = _options(session)
    chosen = _matrix(session, opts.matrix)
    _prepare(session, chosen, opts.cells)
    _controller(session)
    workspace = _workspace(session, opts)
    cells = chosen.select(opts.cells)
    started = time.perf_counter()
    for cell in cells:
        cellrun.run_cell(workspace, chosen, cell)
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
    _prepare(session, chosen, [cell_id])
    _controller(session)
    cellrun.run_cell(_workspace(session, opts), chosen, chosen.cell(cell_id))
    _report(session, chosen, "--cells", cell_id, "--out", str(REPORTS / "runs" / chosen.name / cell_id / "report"))


@nox.session(venv_backend=VENV_BACKEND)
def baseline(session: nox.Session) -> None:
    """(Re)generate a matrix's baseline from a reference cell: ``-- --matrix smoke --cell ID [--force]``."""
    opts = _options(session, cell_required=True)
    chosen = _matrix(session, opts.matrix)
    if len(opts.cells) != 1:
        session.error("--cell takes one cell id")
    try:
        cell = chosen.cell(opts.cells[0])
    except MatrixError as err:
        session.error(str(err))
    target = baseline_file(chosen.baseline)
    if target.exists() and not opts.force:  # fail before minutes of installing, with the CLI's own wording
        session.error(f"{target}: baseline exists; refusing to overwrite (use --force to replace it, keeping the old file)")
    _controller(session)
    state: CellState = cellrun.run_cell(_workspace(session, opts), chosen, cell)
    if not state.ran_cleanly:
        session.error(f"cell {cell.label} did not run cleanly ({state.status.value}): {state.reason}")
    reason = opts.reason or f"reference cell {cell.label} ({', '.join(f'{k} {v}' for k, v in cell.params.items())})"
    results = REPORTS / "runs" / chosen.name / cell.cell_id / cellrun.RESULTS_FILE
    session.run("harness", "baseline", "create", str(target), "--from", str(results), "--reason", reason,
                *(["--force"] if opts.force else []))


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
def attribute(session: nox.Session) -> None:
    """Attribute drift between two matrix cells to single factors: ``-- BASELINE_CELL CANDIDATE_CELL [--to-dtype ...]``
    (``harness attribute run --help`` lists the options). It starts from the settings the matrix's baseline was
    run with and writes ``reports/attribution/<a>__<b>/attribution.{md,json,html}``."""
    _controller(session)
    uv = venvs.find_uv()
    session.run(
        "harness", "attribute", "run", *session.posargs, "--reports", str(REPORTS), "--venvs", str(_cells_root(session)),
        *(["--file", str(MATRICES.path)] if MATRICES else []), *(["--uv", uv] if uv else []),
    )


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
    ``encode``/``predict`` calls (``benchmarks/bench_runner_overhead.py``), and many queries at 1M x 384 as ratios
    to a bare read (``benchmarks/bench_scale.py``; ``-- rerank`` for 1M cross-encoder pairs). ``-- compare ARGS`` or
    ``-- overhead ARGS`` runs one of them with its own arguments (e.g. ``-- compare --sizes 100000``);
    ``-- device --device cuda`` runs ``benchmarks/device_drift.py`` (drift per precision on one device; only
    when asked: it is the GPU check, minutes per setting)."""
    session.install("torch==2.13.0", "-e", f"{ROOT}[run,models]")
    scripts = {"compare": "bench_compare.py", "overhead": "bench_runner_overhead.py", "device": "device_drift.py",
               "scale": "bench_scale.py", "rerank": "bench_rerank.py"}
    if session.posargs and session.posargs[0] in scripts:
        session.run("python", str(ROOT / "benchmarks" / scripts[session.posargs[0]]), *session.posargs[1:])
        return
    for script in (scripts["compare"], scripts["scale"], scripts["overhead"]):
        session.run("python", str(ROOT / "benchmarks" / script))
