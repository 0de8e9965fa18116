"""``harness matrix report|list`` and ``harness attribute run|report``: the version matrix's commands.

``nox -s matrix`` runs the cells and then ``harness matrix report`` in its controlling environment;
``nox -s attribute`` runs ``harness attribute run`` there. Both work without nox too, on run directories
gathered from anywhere (``--runs s3://...``) or a saved attribution plan.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Tuple

from harness.cli.options import device, whole_number
from harness.errors import ExitCode

if TYPE_CHECKING:
    from harness.matrix.attribution import RuntimeSettings
    from harness.matrix.spec import Cell, Matrix

__all__ = ["register"]

_DTYPES = ("float32", "float16", "bfloat16")


def _shown(path: Path | str) -> str:
    from harness.matrix.collect import checkout_relative  # the report's own modules: loaded when a command runs

    return checkout_relative(path)


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def _log(message: str) -> None:
    print(f"harness attribute: {message}", file=sys.stderr, flush=True)


def _echo(line: str) -> None:
    sys.stderr.write(line)
    sys.stderr.flush()


def cmd_matrix_report(args: argparse.Namespace) -> int:
    """Compare every cell with the baseline, write the report; 1 when a cell drifted or could not be judged."""
    from harness.fsio import check_output
    from harness.matrix.collect import collect_matrix
    from harness.matrix.publish import REPORT_FILES, history_table_path, publish_matrix_report
    from harness.matrix.spec import load_matrix_file

    inputs = [("--baseline", args.baseline), ("--file", args.file)]
    for name in REPORT_FILES.values():  # before any cell is judged: a report that cannot be written is bad input
        check_output(Path(args.out) / name, "--out", inputs)
    if args.history is not None:  # the log and its table beside it
        for path in (args.history, history_table_path(args.history)):
            check_output(path, "--history", inputs)
    matrix = load_matrix_file(_matrix_file_arg(args)).select(args.matrix)
    report = collect_matrix(matrix, args.runs, cells=args.cells, baseline=args.baseline, include_missing=not args.skip_missing)
    _print_written(publish_matrix_report(report, args.out, args.history))
    failing = [c for c in report.cells if c.status.failing]
    for cell in failing:
        print(f"{cell.status.value.upper()}: {cell.cell_id}: {_first_line(cell.reason)}", file=sys.stderr)
    return ExitCode.DRIFT if failing else ExitCode.OK


def _matrix_file_arg(args: argparse.Namespace) -> Path | None:
    """``--file``, else ``$HARNESS_MATRIX_FILE`` (the variable nox honours too), else the repository's matrix.toml."""
    if args.file is not None:
        return args.file
    env = os.environ.get("HARNESS_MATRIX_FILE", "").strip()
    return Path(env) if env else None


def _listed(args: argparse.Namespace) -> List[Tuple[Matrix, int, Cell]]:
    """(matrix, index within it, cell) for the matrix asked for, or every matrix of the file."""
    from harness.matrix.spec import load_matrix_file

    matrices = load_matrix_file(_matrix_file_arg(args))
    chosen = [matrices.select(args.matrix)] if args.matrix else list(matrices.matrices.values())
    return [(matrix, index, cell) for matrix in chosen for index, cell in enumerate(matrix.cells)]


def cell_entry(matrix: Matrix, index: int, cell: Cell) -> Dict[str, Any]:
    """One cell as ``--format json|github`` prints it (JSON out: the keys a CI job's ``matrix.*`` expressions read)."""
    return {"matrix": matrix.name, "index": index, "cell": cell.cell_id, "label": cell.label,
            "python": cell.python, "params": cell.params, "note": cell.note or ""}


def cmd_matrix_list(args: argparse.Namespace) -> int:
    """The cells of one matrix (``--matrix``) or of every matrix, as text, JSON, or a GitHub Actions matrix."""
    import json

    from harness.matrix.spec import MatrixError

    listed = _listed(args)
    if args.format == "github":  # one line: strategy.matrix: ${{ fromJSON(...) }} (GitHub allows 256 jobs)
        if len(listed) > 256:
            raise MatrixError(f"{len(listed)} cells: a GitHub Actions matrix holds at most 256 jobs (choose --matrix)")
        print(json.dumps({"include": [cell_entry(*item) for item in listed]}, separators=(",", ":")))
    elif args.format == "json":
        print(json.dumps([cell_entry(*item) for item in listed], indent=2))
    elif args.matrix:
        for _, _, cell in listed:
            print(cell.cell_id)
    else:  # every matrix: MATRIX/CELL-ID, the ``nox -s "matrix_cell(...)"`` id
        for _, _, cell in listed:
            print(cell.label)
    return ExitCode.OK


def cmd_matrix_cell(args: argparse.Namespace) -> int:
    """Set up and run one cell, chosen by its position (``--index N``, a Kubernetes Indexed Job's
    ``$JOB_COMPLETION_INDEX``) or id, into ``RUNS/<matrix>/<cell-id>/``; 1 when it could not be set up or run."""
    from harness.matrix.cellrun import Workspace, run_cell
    from harness.matrix.spec import ROOT, MatrixError, load_matrix_file
    from harness.matrix.venvs import choose_backend, find_uv

    matrix = load_matrix_file(_matrix_file_arg(args)).select(args.matrix)
    if args.cell is not None:
        cell = matrix.cell(args.cell)
    else:
        index = args.index
        if index is None:
            raw = os.environ.get("JOB_COMPLETION_INDEX", "").strip()
            if not raw:
                raise MatrixError("harness matrix cell: give --index N, --cell ID, or set JOB_COMPLETION_INDEX")
            try:
                index = int(raw)
            except ValueError:
                raise MatrixError(f"environment variable JOB_COMPLETION_INDEX={raw!r}: expected a whole number") from None
        if not 0 <= index < len(matrix.cells):
            raise MatrixError(f"{_shown(matrix.source)}: matrix '{matrix.name}' has {len(matrix.cells)} cell(s) "
                              f"(--index 0 to {len(matrix.cells) - 1}), got --index {index}")
        cell = matrix.cells[index]
    uv = find_uv()
    runs = (args.runs or Path(os.environ.get("HARNESS_REPORTS_DIR") or ROOT / "reports") / "runs").resolve()
    ws = Workspace(root=ROOT, runs=runs, venvs=(args.venvs or ROOT / ".nox" / "matrix-cells").resolve(),
                   backend=choose_backend(args.backend, uv), uv=uv, reuse_venvs=not args.fresh,
                   log=lambda line: print(f"harness matrix cell: {line}", file=sys.stderr, flush=True), echo=_echo)
    state = run_cell(ws, matrix, cell)
    print(f"{cell.label}: {state.status.value}" + (f" ({_first_line(state.reason)})" if state.reason else ""))
    print(f"wrote {_shown(ws.run_dir(matrix.name, cell.cell_id))}", file=sys.stderr)
    return ExitCode.OK if state.ran_cleanly else ExitCode.DRIFT


def _candidate_runtime(args: argparse.Namespace, base: RuntimeSettings) -> RuntimeSettings:
    """The baseline's runtime settings with the ``--to-*`` options given (one per runtime factor)."""
    from harness.matrix.attribution import RUNTIME_FACTORS

    changes = {name: getattr(args, f"to_{name}") for name in RUNTIME_FACTORS if getattr(args, f"to_{name}") is not None}
    return dataclasses.replace(base, **{**changes, "tf32": changes["tf32"] == "on"} if "tf32" in changes else changes)


def _baseline_runtime(matrix: Any) -> Tuple[Any, str]:
    """How the matrix's baseline was run (``harness.baselines.rerun_options``), and where that came from; the
    matrix's own device, dtype and batch size where the baseline file does not exist yet."""
    from harness.baselines import rerun_options
    from harness.matrix.attribution import RuntimeSettings
    from harness.matrix.spec import baseline_file

    path = baseline_file(matrix.baseline)
    if not path.is_file():
        settings = RuntimeSettings(device=matrix.device, dtype=matrix.dtype, batch_size=matrix.batch_size)
        return settings, f"{matrix.source} (no baseline {path})"
    # only the run settings are used: the walk's steps choose their own output files, so ``out`` is a placeholder
    options = rerun_options(path, path.with_suffix(".rerun.parquet"), config=matrix.config)
    return RuntimeSettings.from_run_options(options), str(path)


def _write_attribution(plan: Path, out_dir: Path, tolerance_class: str) -> int:
    from harness.matrix.attribution_run import judge_plan
    from harness.matrix.publish import write_attribution

    _print_written(write_attribution(judge_plan(plan, tolerance_class), out_dir))
    return ExitCode.OK


def _print_written(written: Dict[str, Path]) -> None:
    """The Markdown report on stdout, every file written on stderr."""
    print(written["markdown"].read_text(encoding="utf-8"))
    for kind, path in written.items():
        print(f"wrote {kind}: {_shown(path)}", file=sys.stderr)


def cmd_attribute_run(args: argparse.Namespace) -> int:
    """Walk from one cell to another one factor at a time, run every step, and write the waterfall."""
    from harness.matrix.attribution_run import run_attribution
    from harness.matrix.cellrun import Workspace
    from harness.matrix.plan import uv_resolver
    from harness.matrix.spec import ROOT, load_matrix_file
    from harness.matrix.venvs import choose_backend, find_uv

    matrix = load_matrix_file(_matrix_file_arg(args)).select(args.matrix)
    base, cand = matrix.cell(args.baseline_cell), matrix.cell(args.candidate_cell)
    base_runtime, source = _baseline_runtime(matrix)
    cand_runtime = _candidate_runtime(args, base_runtime)
    uv = args.uv or find_uv()
    reports = (args.reports or Path(os.environ.get("HARNESS_REPORTS_DIR") or ROOT / "reports")).resolve()
    ws = Workspace(root=ROOT, runs=reports / "runs", venvs=(args.venvs or ROOT / ".nox" / "matrix-cells").resolve(),
                   backend=choose_backend(args.backend, uv), uv=uv, reuse_venvs=args.reuse_venvs, log=_log, echo=_echo)
    _log(f"starting point: {' '.join(base_runtime.run_args())} (from {_shown(source)})")
    out_dir = reports / "attribution" / f"{base.cell_id}__{cand.cell_id}"
    plan = run_attribution(ws, matrix, base, base_runtime, cand, cand_runtime, uv_resolver(uv=uv), out_dir,
                           runtime_from=source)
    return _write_attribution(plan, out_dir, args.tolerance_class)


def cmd_attribute_report(args: argparse.Namespace) -> int:
    """Judge a saved plan's step results again (nothing runs)."""
    return _write_attribution(args.plan, args.out or args.plan.parent, args.tolerance_class)


def _add_matrix_file(parser: argparse.ArgumentParser, *, default_matrix: bool = False) -> None:
    if default_matrix:
        parser.add_argument("--matrix", default=os.environ.get("HARNESS_MATRIX", "default"),
                            help="matrix name in the matrix file (default: $HARNESS_MATRIX or %(default)s)")
    else:
        parser.add_argument("--matrix", required=True, help="matrix name in the matrix file")
    parser.add_argument("--file", type=Path,
                        help="matrix file (default: $HARNESS_MATRIX_FILE, else matrix.toml at the repository root)")


def _register_matrix(sub: Any) -> None:
    matrix = sub.add_parser("matrix", help="the version matrix (matrix.toml): report a run, list its cells")
    msub = matrix.add_subparsers(dest="matrix_command", required=True)
    report = msub.add_parser("report", help="compare cell results with the baseline and write the matrix report (exit 0/1/2)")
    _add_matrix_file(report)
    report.add_argument("--runs", required=True,
                        help="directory or URI (s3://bucket/prefix, gs://..., file://...) holding <cell-id>/cell.json and results.parquet")
    report.add_argument("--out", type=Path, required=True, help="directory to write summary.md, report.json, junit.xml, report.html")
    report.add_argument("--cells", nargs="+", metavar="CELL_ID", help="only these cells")
    report.add_argument("--history", type=Path, help="append this run to this JSONL history log")
    report.add_argument("--baseline", type=Path, help="compare with this file instead of the matrix's baseline")
    report.add_argument("--skip-missing", action="store_true", help="leave out cells that were never run")
    report.set_defaults(func=cmd_matrix_report)
    lst = msub.add_parser("list", help="print the cells of every matrix (MATRIX/CELL-ID), or of one (--matrix: one id "
                                       "per line); --format github prints a GitHub Actions matrix for fromJSON")
    lst.add_argument("--matrix", help="only this matrix (default: every matrix in the file)")
    lst.add_argument("--file", type=Path,
                     help="matrix file (default: $HARNESS_MATRIX_FILE, else matrix.toml at the repository root)")
    lst.add_argument("--format", choices=("text", "json", "github"), default="text",
                     help="text (default); json: a list of cells with their pins; github: one line "
                          '{"include": [...]} for strategy.matrix: ${{ fromJSON(...) }}')
    lst.set_defaults(func=cmd_matrix_list)
    cell = msub.add_parser("cell", help="set up and run one cell by position (--index N, e.g. a Kubernetes Indexed "
                                        "Job's $JOB_COMPLETION_INDEX) into RUNS/<matrix>/<cell-id>/; gather with "
                                        "'harness matrix report'")
    _add_matrix_file(cell, default_matrix=True)
    which = cell.add_mutually_exclusive_group()
    which.add_argument("--index", type=whole_number(0, 1_000_000), metavar="N",
                       help="the cell's position in the matrix, from 0 (default: $JOB_COMPLETION_INDEX)")
    which.add_argument("--cell", metavar="CELL_ID", help="the cell's id instead of its position")
    cell.add_argument("--runs", type=Path, help="where run directories go (default: $HARNESS_REPORTS_DIR/runs or reports/runs)")
    cell.add_argument("--venvs", type=Path, help="where cell virtualenvs live (default: .nox/matrix-cells)")
    cell.add_argument("--backend", choices=("auto", "uv", "pip"), default=os.environ.get("HARNESS_VENV_BACKEND", "auto"),
                      help="how cell virtualenvs are built (default: $HARNESS_VENV_BACKEND or %(default)s)")
    cell.add_argument("--fresh", action="store_true", help="rebuild the cell's virtualenv even if its lock did not change")
    cell.set_defaults(func=cmd_matrix_cell)


def _register_attribute(sub: Any) -> None:
    attr = sub.add_parser("attribute", help="attribute drift between two matrix cells to single factors, by experiment")
    asub = attr.add_subparsers(dest="attribute_command", required=True)
    run = asub.add_parser("run", help="walk from BASELINE_CELL to CANDIDATE_CELL one factor at a time, run each step, "
                                      "write reports/attribution/<a>__<b>/attribution.{md,json,html}")
    run.add_argument("baseline_cell", help="cell id (matrix.toml) of the starting environment")
    run.add_argument("candidate_cell", help="cell id of the target environment")
    _add_matrix_file(run, default_matrix=True)
    run.add_argument("--backend", choices=("auto", "uv", "pip"), default=os.environ.get("HARNESS_VENV_BACKEND", "auto"))
    run.add_argument("--reuse-venvs", action=argparse.BooleanOptionalAction, default=True,
                     help="reuse cell venvs whose pins did not change (default: yes)")
    for flag, kind, help_ in (("device", device, "cpu|cuda|mps"), ("dtype", str, "|".join(_DTYPES)),
                              ("attn-implementation", str, "eager|sdpa"), ("batch-size", whole_number(1, 1_000_000), "N"),
                              ("threads", whole_number(1, 4096), "N")):
        run.add_argument(f"--to-{flag}", type=kind, choices=_DTYPES if flag == "dtype" else None,
                         help=f"candidate runtime setting ({help_}); default: the baseline's")
    run.add_argument("--to-tf32", choices=("on", "off"), help="candidate TF32 setting; default: the baseline's")
    run.add_argument("--to-cpu-isa", choices=("default", "avx2", "avx512"),
                     help="candidate kernel instruction set (harness run --cpu-isa): how much of a cross-machine drift "
                          "is kernel dispatch; default: this machine's own")
    run.add_argument("--reports", type=Path, help="reports directory (default: $HARNESS_REPORTS_DIR or reports/)")
    run.add_argument("--venvs", type=Path, help="where cell virtualenvs live (default: .nox/matrix-cells)")
    run.add_argument("--uv", help="the uv executable (default: nox's own uv, else uv on PATH)")
    run.add_argument("--class", dest="tolerance_class", default="fp32", help="class each step is judged by (default: %(default)s)")
    run.set_defaults(func=cmd_attribute_run)
    report = asub.add_parser("report", help="judge a saved attribution plan's step results again and write the waterfall")
    report.add_argument("plan", type=Path, help="plan.json written by 'harness attribute run'")
    report.add_argument("--out", type=Path, help="directory for attribution.{md,json,html} (default: the plan's)")
    report.add_argument("--class", dest="tolerance_class", default="fp32", help="class each step is judged by (default: %(default)s)")
    report.set_defaults(func=cmd_attribute_report)


def register(sub: Any) -> None:
    _register_matrix(sub)
    _register_attribute(sub)
