"""Matrix cell setup and run overhead: a cell built fresh with and without byte-compiling, then reused; its run
time against the model compute the run measured of itself.

Targets (issue 14), as ratios and bounds measured in this one run, so a busy machine slows both sides alike:

- an unchanged cell is reused: setup <= 3 s (resolving its lock with ``uv pip compile`` + listing its packages);
- a fresh cell does not byte-compile ~10k files it will never import: fresh setup without compiling is faster
  than with it (``UV_COMPILE_BYTECODE=1``, the old default);
- the warm run (virtualenv reused, ``.pyc`` written by an earlier run) is within 1.5x of the model compute
  (``run_s / compute_s``; the rest is interpreter start, imports, model loading, writing results). This bound
  is the default matrix's (``--matrix default --cell torch-2.13.0_st-6.2.0_tf-5.23.0_py3.11``, the one default
  cell without CUDA wheels); tiny models compute for a few seconds, less than the ~4.5 CPU s that importing
  torch and sentence-transformers takes, so for ``smoke`` it is printed, not checked.

``python benchmarks/bench_cell_setup.py [--matrix smoke] [--cell ID] [--venvs DIR]``: builds its own cell
virtualenvs under ``--venvs`` (default: a temporary directory, removed afterwards). Stdlib + ``harness.matrix``.
Exit 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.matrix import venvs  # noqa: E402
from harness.matrix.cellrun import Workspace, run_cell  # noqa: E402
from harness.matrix.cells import CellState  # noqa: E402
from harness.matrix.spec import load_matrix_file  # noqa: E402

REUSED_SETUP_MAX_S = 3.0
WARM_RUN_OVER_COMPUTE_MAX = 1.5


def _round(ws: Workspace, matrix_name: str, cell_id: str, compile_bytecode: Optional[bool] = None) -> CellState:
    matrix = load_matrix_file().select(matrix_name)
    saved = os.environ.get("UV_COMPILE_BYTECODE")
    if compile_bytecode is not None:
        os.environ["UV_COMPILE_BYTECODE"] = "1" if compile_bytecode else "0"
    try:
        return run_cell(ws, matrix, matrix.cell(cell_id))
    finally:
        if saved is None:
            os.environ.pop("UV_COMPILE_BYTECODE", None)
        else:
            os.environ["UV_COMPILE_BYTECODE"] = saved


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--matrix", default="smoke")
    parser.add_argument("--cell", help="cell id (default: the matrix's first cell)")
    parser.add_argument("--venvs", type=Path, help="where the cell virtualenvs go (default: a temporary directory)")
    args = parser.parse_args(argv)
    matrix = load_matrix_file().select(args.matrix)
    cell_id = args.cell or matrix.cells[0].cell_id
    work = Path(tempfile.mkdtemp(prefix="bench-cells-"))
    uv = venvs.find_uv()
    base = Workspace(root=ROOT, runs=work / "runs", venvs=args.venvs or work / "venvs", backend=venvs.choose_backend("auto", uv),
                     uv=uv, log=lambda line: print(f"  {line}", flush=True))
    fresh = dataclasses.replace(base, reuse_venvs=False)
    print(f"cell {args.matrix}/{cell_id} [{base.backend}], load average {os.getloadavg()[0]:.1f}", flush=True)
    try:
        rounds: Dict[str, CellState] = {
            "fresh, byte-compiled (old)": _round(fresh, args.matrix, cell_id, compile_bytecode=True),
            "fresh, not compiled": _round(fresh, args.matrix, cell_id, compile_bytecode=False),
            "reused (first run after build)": _round(base, args.matrix, cell_id),
            "reused, warm": _round(base, args.matrix, cell_id),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| round | setup s | setup CPU s | run s | run CPU s | compute s | run / compute |\n|---|---|---|---|---|---|---|")
    for name, s in rounds.items():
        ratio = f"{s.run_s / s.compute_s:.2f}" if s.run_s and s.compute_s else "-"
        print(f"| {name} | {s.setup_s} | {s.setup_cpu_s} | {s.run_s} | {s.run_cpu_s} | {s.compute_s} | {ratio} |")
    if not all(s.ran_cleanly for s in rounds.values()):
        print("a round did not run cleanly: " + "; ".join(s.reason for s in rounds.values() if s.reason))
        return 1
    old, new = rounds["fresh, byte-compiled (old)"], rounds["fresh, not compiled"]
    warm = rounds["reused, warm"]
    checks = [
        (f"reused setup {warm.setup_s} s <= {REUSED_SETUP_MAX_S} s", warm.reused_venv and warm.setup_s <= REUSED_SETUP_MAX_S),
        (f"fresh setup without compiling / with: {new.setup_s / old.setup_s:.2f} < 1", new.setup_s < old.setup_s),
    ]
    ratio = f"warm run / compute {warm.run_s / warm.compute_s:.2f} <= {WARM_RUN_OVER_COMPUTE_MAX}"
    if args.matrix == "default":  # the target is the default models'; tiny models compute too little to carry imports
        checks.append((ratio, warm.run_s <= WARM_RUN_OVER_COMPUTE_MAX * warm.compute_s))
    else:
        print(f"info {ratio} (the bound is checked with --matrix default)")
    print(f"\nload average {os.getloadavg()[0]:.1f}")
    for text, ok in checks:
        print(f"{'met ' if ok else 'MISS'} {text}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
