"""A whole matrix, warm: its wall time against the sum of its cells' model compute (issue 14, "Matrix cells").

Target: the default matrix, every cell reused (virtualenv unchanged, ``.pyc`` written by an earlier run), runs
within 1.5x the sum of the cells' ``compute_s`` (the encode/predict calls each run measured of itself). The rest
is per cell: setup (``uv pip compile`` + ``uv pip freeze``), interpreter start, ``import torch`` and
``sentence_transformers``, model loads, the results write, interpreter exit. Both sides are measured in the same
round, so a busy machine slows both alike; the per-cell ratios show which cell carries the overhead. The bound
is the default models': the smoke matrix's tiny models compute for seconds, less than their imports, and miss it
(3.0x measured; that is also how the check was seen to fail).

``python benchmarks/bench_matrix_warm.py [--matrix default] [--rounds 2] [--jobs 1] [--venvs DIR]``: the cells
run as ``nox -s matrix`` runs them (``harness.matrix.schedule.run_cells``), from the virtualenvs under ``--venvs``
(default: nox's ``.nox/matrix-cells``, so cells built by ``nox -s matrix`` are reused; a missing one is built in
the first round, which is why only the last round is checked). Results go to a temporary directory, never to
``reports/``. Exit 1 when the last round misses the bound or a cell fails. Stdlib + ``harness.matrix``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.matrix import venvs  # noqa: E402
from harness.matrix.cellrun import Workspace  # noqa: E402
from harness.matrix.cells import CellState  # noqa: E402
from harness.matrix.schedule import run_cells  # noqa: E402
from harness.matrix.spec import load_matrix_file  # noqa: E402

WARM_WALL_OVER_COMPUTE_MAX = 1.5


def _ratio(numerator: Optional[float], denominator: Optional[float]) -> str:
    return f"{numerator / denominator:.2f}" if numerator and denominator else "-"


def _table(states: List[CellState]) -> None:
    print("| cell | setup s | run s | run CPU s | import s | compute s | run / compute |\n|---|---|---|---|---|---|---|")
    for s in states:
        print(f"| {s.cell_id} | {s.setup_s} | {s.run_s} | {s.run_cpu_s} | {(s.timings or {}).get('import_s', '-')} "
              f"| {s.compute_s} | {_ratio(s.run_s, s.compute_s)} |")


def _round(ws: Workspace, matrix_name: str, jobs: int) -> Tuple[float, List[CellState]]:
    """Every cell of the matrix once; the round's wall seconds and the cells' states."""
    matrix = load_matrix_file().select(matrix_name)
    started = time.perf_counter()
    states = run_cells(ws, matrix, matrix.cells, jobs, lambda line: print(f"  {line}", flush=True))
    return time.perf_counter() - started, states


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--matrix", default="default")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the whole matrix; the last one is checked")
    parser.add_argument("--jobs", type=int, default=1, help="cells side by side, as nox -s matrix -- --jobs N")
    parser.add_argument("--venvs", type=Path, default=ROOT / ".nox" / "matrix-cells", help="cell virtualenvs (reused)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-matrix-"))
    uv = venvs.find_uv()
    ws = Workspace(root=ROOT, runs=work / "runs", venvs=args.venvs, backend=venvs.choose_backend("auto", uv), uv=uv)
    rounds: List[Tuple[float, List[CellState]]] = []
    try:
        for number in range(1, max(1, args.rounds) + 1):
            load = os.getloadavg()[0]
            wall, states = _round(ws, args.matrix, args.jobs)
            compute = sum(s.compute_s or 0.0 for s in states)
            built = [s.cell_id for s in states if not s.reused_venv]
            print(f"\nround {number}: wall {wall:.1f} s, compute {compute:.1f} s, wall / compute {_ratio(wall, compute)}, "
                  f"load average {load:.1f} -> {os.getloadavg()[0]:.1f}" + (f", built: {', '.join(built)}" if built else ""))
            _table(states)
            rounds.append((wall, states))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    wall, states = rounds[-1]
    compute = sum(s.compute_s or 0.0 for s in states)
    failed = [s.cell_id for s in states if not s.ran_cleanly or not s.compute_s]
    warm = all(s.reused_venv for s in states)
    met = not failed and warm and wall <= WARM_WALL_OVER_COMPUTE_MAX * compute
    print(f"\n{'met ' if met else 'MISS'} warm matrix wall / sum of compute {_ratio(wall, compute)} "
          f"<= {WARM_WALL_OVER_COMPUTE_MAX}" + (f" (failed: {', '.join(failed)})" if failed else "")
          + ("" if warm else " (not warm: a cell was built in the last round; run more rounds)"))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
