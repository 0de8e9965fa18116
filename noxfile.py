# /// script
# dependencies = ["nox>=2025.2.9", "packaging>=21", "pydantic>=2.7,<3", "tomli>=1.1; python_version < '3.11'"]
# ///
"""Nox sessions: the version matrix (``nox -s matrix -- --matrix NAME``), one cell alone (``matrix_cell``),
baselines, reports, tests, lint, benchmarks and the documentation site. Options, environment variables and the
run layout: docs/how-to/matrix.md; ``nox -s matrix -- --help`` lists the options.

The script block above is what this file imports in nox's own Python (harness.matrix validates matrix.toml with
pydantic): where nox lacks one of them, nox makes an environment with them and runs itself there (PEP 723).
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

from harness.matrix import cellrun, schedule, venvs  # noqa: E402 - stdlib + packaging only: importable in nox's own Python
from harness.matrix.cells import CellState  # noqa: E402
from harness.matrix.lenient import MatrixProblem, load_lenient  # noqa: E402
from harness.matrix.spec import Cell, Matrix, MatrixError, MatrixFile, baseline_file  # noqa: E402

nox.options.sessions = ["lint", "tests"]  # a bare `nox` never starts the (long) matrix

VENV_BACKEND = "uv|virtualenv"
REPORTS = Path(os.environ.get("HARNESS_REPORTS_DIR") or ROOT / "reports").resolve()

if Path("/opt/wheels").is_dir():
    os.environ.setdefault("UV_FIND_LINKS", "/opt/wheels")

# A broken matrix.toml never removes sessions: valid cells stay ``matrix_cell`` sessions, each broken cell (or
# matrix, or the whole file) becomes a ``matrix_cell(<matrix>/cell-N-invalid)`` session that fails with the file,
# the cell and the problem, ``nox -l`` lists the problems first, and every matrix session warns about them.
MATRICES: Optional[MatrixFile]
MATRICES, PROBLEMS = load_lenient(os.environ.get("HARNESS_MATRIX_FILE"))
if PROBLEMS:
    __doc__ = (__doc__ or "") + "\nmatrix.toml problems (those cells are sessions that fail; the rest still run):\n" + "".join(
        f"  {problem.label}: {problem.message}\n" for problem in PROBLEMS)

CELL_PARAMS = [
    nox.param(matrix.name, cell.cell_id, "", id=cell.label, tags=[f"matrix-{matrix.name}"])
    for matrix in (MATRICES.matrices.values() if MATRICES else [])
    for cell in matrix.cells
] + [
    nox.param(problem.matrix or "", "", problem.message, id=problem.label,
              tags=[f"matrix-{problem.matrix}"] if problem.matrix else [])
    for problem in PROBLEMS
]


def _warn_problems(session: nox.Session, problems: List[MatrixProblem]) -> None:
    for problem in problems:
        session.warn(f"skipped, does not validate: {problem.message}")


# -- helpers ----------------------------------------------------------------------------------------------------


def _options(session: nox.Session, *, cell_required: bool = False) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"nox -s {session.name} --", add_help=True)
    parser.add_argument("--matrix", default=os.environ.get("HARNESS_MATRIX", "default"), help="matrix name in matrix.toml")
    parser.add_argument("--cells", "--cell", nargs="+", dest="cells", required=cell_required, metavar="CELL_ID")
    parser.add_argument("--backend", choices=venvs.BACKENDS, default=os.environ.get("HARNESS_VENV_BACKEND", "auto"))
    parser.add_argument("--fresh", action="store_true", default=os.environ.get("HARNESS_FRESH_VENVS") == "1",
                        help="rebuild every cell virtualenv (default: keep one whose resolved lock did not change)")
    parser.add_argument("--reuse-venvs", action="store_true", help="the default now; kept so older commands still work")
    parser.add_argument("--jobs", "-j", type=int, default=os.environ.get("HARNESS_MATRIX_JOBS") or "1", metavar="N",
                        help="cells run side by side, each with cores/N threads (default 1)")
    parser.add_argument("--force", action="store_true", help="baseline: replace an existing baseline (the old one is kept)")
    parser.add_argument("--reason", help="baseline: why it is (re)generated")
    parser.add_argument("--runs", help="report: gather cells from this directory or URI (s3://bucket/prefix, gs://...) "
                                       "instead of reports/runs/<matrix>/")
    try:
        opts = parser.parse_args(session.posargs)
    except SystemExit as exit_:
        if not exit_.code:
            session.skip("help printed")
        session.error(f"bad options {session.posargs!r}")
    try:
        schedule.thread_share(opts.jobs)  # --jobs 0 is bad input, said before minutes of installing
    except MatrixError as err:
        session.error(str(err))
    return opts


def _matrix(session: nox.Session, name: str, *, partial: bool = False) -> Matrix:
    """The matrix ``name``. A broken part of it (or of the whole file) fails the session, unless ``partial`` and
    the matrix itself is valid (one valid cell of it runs); every other problem in the file is warned about."""
    own = [p for p in PROBLEMS if p.matrix in (name, None)]
    if own and (not partial or MATRICES is None or name not in MATRICES.matrices):
        session.error("; ".join(p.message for p in own))
    _warn_problems(session, [p for p in PROBLEMS if partial or p not in own])
    assert MATRICES is not None  # no matrices means a whole-file problem, which failed above
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
                             reuse_venvs=not opts.fresh, log=session.log, echo=sys.stdout.write)


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


def _run_and_report(session: nox.Session, opts: argparse.Namespace, matrix: Matrix, cells: List[Cell], out: Path,
                    *extra: str) -> None:
    """Set up and run ``cells`` with a line per step, judge them once, then a verdict line per cell."""
    started = time.perf_counter()
    schedule.run_cells(_workspace(session, opts), matrix, cells, opts.jobs, session.log)
    session.log(f"{len(cells)} cell(s) set up and run in {time.perf_counter() - started:.1f} s")
    # exit 1 (drift, unjudged cells) is read back from report.json after the verdict lines; 2 (bad input) fails here
    session.run("harness", "matrix", "report", "--matrix", matrix.name, "--file", str(matrix.source),
                "--runs", str(REPORTS / "runs" / matrix.name), "--out", str(out), *extra, success_codes=[0, 1])
    try:
        for line in schedule.verdict_lines(out / "report.json", cells):
            session.log(line)
        status = schedule.report_status(out / "report.json")
    except MatrixError as err:
        session.error(str(err))
    if status.failing:
        session.error(f"matrix {matrix.name}: {status.value} (see {out / 'summary.md'})")


# -- sessions ---------------------------------------------------------------------------------------------------


@nox.session(venv_backend=VENV_BACKEND)
def matrix(session: nox.Session) -> None:
    """Run every cell of a matrix (``-- --matrix NAME``), compare each with the baseline, write one report."""
    opts = _options(session)
    chosen = _matrix(session, opts.matrix)
    _prepare(session, chosen, opts.cells)
    _controller(session)
    cells = chosen.select(opts.cells)
    _run_and_report(session, opts, chosen, cells, REPORTS / "latest",
                    "--history", str(REPORTS / "history" / "history.jsonl"),
                    *(["--cells", *[c.cell_id for c in cells]] if opts.cells else []))


@nox.session(venv_backend=VENV_BACKEND)
@nox.parametrize(("matrix_name", "cell_id", "problem"), CELL_PARAMS)
def matrix_cell(session: nox.Session, matrix_name: str, cell_id: str, problem: str) -> None:
    """Run one cell alone and write a one-cell report into its run directory (not reports/latest)."""
    if problem:  # a cell (or matrix) of matrix.toml that does not validate: say which and why
        session.error(problem)
    opts = _options(session)
    chosen = _matrix(session, matrix_name, partial=True)
    _prepare(session, chosen, [cell_id])
    _controller(session)
    _run_and_report(session, opts, chosen, [chosen.cell(cell_id)], REPORTS / "runs" / chosen.name / cell_id / "report",
                    "--cells", cell_id)


@nox.session(venv_backend=VENV_BACKEND)
def baseline(session: nox.Session) -> None:
    """(Re)generate a matrix's baseline from a reference cell: ``-- --matrix smoke --cell ID [--force]``."""
    opts = _options(session, cell_required=True)
    chosen = _matrix(session, opts.matrix, partial=True)
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
def fuzz(session: nox.Session) -> None:
    """Every parser fuzzed with a large hypothesis budget (tests marked ``fuzz``; HARNESS_FUZZ_EXAMPLES per test,
    default 5000): any input gives a valid object or one HarnessError line, never another exception."""
    session.install("torch==2.13.0", "-e", f"{ROOT}[run,dev,models]")
    session.run("pytest", "-m", "fuzz", "-p", "no:cacheprovider", "--hypothesis-show-statistics", *session.posargs,
                env={"HYPOTHESIS_PROFILE": "fuzz"})


@nox.session(venv_backend=VENV_BACKEND)
def lint(session: nox.Session) -> None:
    """ruff on the package, the tests, the benchmarks, the docs generator and this file, then mypy on the package and
    the docs generator (both configured in pyproject.toml, pinned in .ci/constraints.txt). ``-- --fix`` lets ruff fix
    what it can."""
    session.install("-c", str(ROOT / ".ci" / "constraints.txt"), "ruff", "mypy", "pytest", "httpx", "-e", str(ROOT))
    session.run("ruff", "check", "harness", "tests", "benchmarks", "docs", "noxfile.py", *session.posargs)
    session.run("python", "-m", "mypy")


@nox.session(venv_backend=VENV_BACKEND)
def bench(session: nox.Session) -> None:
    """Benchmarks (never part of a bare ``nox``): comparator throughput and peak RSS at 10k/100k/1M x 384
    (``benchmarks/bench_compare.py``; ~3 GB of temporary files at 1M), the runner's overhead over bare
    ``encode``/``predict`` calls (``benchmarks/bench_runner_overhead.py``), and 100 / 10k / 80k queries over 1M
    documents x 384 as ratios to a bare read (``benchmarks/bench_scale.py``; ~40 min, most of it the 80k queries'
    one-off exact pass). ``-- compare ARGS``, ``-- scale ARGS``, ``-- overhead ARGS`` runs one of them with its own
    arguments (e.g. ``-- scale --queries 100 10000``); ``-- rerank`` for 1M cross-encoder pairs;
    ``-- device --device cuda`` runs ``benchmarks/device_drift.py`` (drift per precision on one device; only
    when asked: it is the GPU check, minutes per setting); ``-- matrix`` runs ``benchmarks/bench_matrix_warm.py``
    (the default matrix warm against its cells' compute, from the cell virtualenvs ``nox -s matrix`` built)."""
    session.install("torch==2.13.0", "-e", f"{ROOT}[run,models]")
    scripts = {"compare": "bench_compare.py", "overhead": "bench_runner_overhead.py", "device": "device_drift.py",
               "scale": "bench_scale.py", "rerank": "bench_rerank.py",
               "cells": "bench_cell_setup.py",  # cells: matrix cell setup/reuse and run vs compute, only when asked
               "matrix": "bench_matrix_warm.py"}  # matrix: a whole matrix warm vs its compute (minutes), only when asked
    if session.posargs and session.posargs[0] in scripts:
        session.run("python", str(ROOT / "benchmarks" / scripts[session.posargs[0]]), *session.posargs[1:])
        return
    for script, args in ((scripts["compare"], []), (scripts["scale"], ["--skip-exact"]), (scripts["overhead"], [])):
        session.run("python", str(ROOT / "benchmarks" / script), *args)


@nox.session(venv_backend=VENV_BACKEND)
def docs(session: nox.Session) -> None:
    """Build the documentation site into site/ in strict mode (a broken link, a missing page or a stale page fails).

    The reference pages generated from the code (``docs/reference/``) are checked first: ``-- --regenerate``
    rewrites them instead (the same as ``python docs/reference_pages.py``); ``-- --serve`` previews the site."""
    session.install("-c", str(ROOT / ".ci" / "constraints.txt"), "-e", f"{ROOT}[docs]")
    env = {"NO_MKDOCS_2_WARNING": "1"}
    regenerate = "--regenerate" in session.posargs
    session.run("python", str(ROOT / "docs" / "reference_pages.py"), *([] if regenerate else ["--check"]))
    if "--serve" in session.posargs:
        session.run("python", "-m", "mkdocs", "serve", "-f", str(ROOT / "mkdocs.yml"), env=env)
        return
    session.run("python", "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), env=env)
