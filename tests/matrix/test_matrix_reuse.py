"""Cell reuse, run timings, progress lines and ``--jobs``, without building a real virtualenv.

A stand-in ``uv`` (a script: ``venv``, ``pip compile``, ``pip install``, ``pip freeze``) and a stand-in ``harness``
inside the "virtualenv" let the cell runner's decisions run for real in milliseconds: reuse when the resolved lock
and the installed packages are unchanged, rebuild when either moved or ``--fresh`` says so, the compute seconds
the run measured carried into ``cell.json``, the thread share of ``--jobs``. The real builds are the
``matrix``-marked tests (``tests/matrix/test_matrix.py``, ``test_jobs_give_the_serial_results``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
from test_matrix import MINIMAL, ROOT, _wanted, _write

from harness.matrix import schedule, venvs
from harness.matrix import spec as hm
from harness.matrix.cellrun import Workspace, run_cell
from harness.matrix.cells import CellState, StageStatus, read_cell_state

TWO_CELLS = MINIMAL + """
[[matrix.m.cells]]
python = "3.11"
torch = "2.13.0"
sentence-transformers = "3.0.1"
transformers = "4.41.2"
"""

FAKE_UV = r'''#!{python}
"""uv, as far as the cell runner uses it; what it did goes to $FAKE/calls."""
import json, os, shutil, sys
from pathlib import Path
fake = Path(os.environ["FAKE"])
args = sys.argv[1:]
with open(fake / "calls", "a") as calls:
    calls.write(" ".join(args[:2]) + "\n")
if args[0] == "venv":
    venv = Path(args[-1])
    (fake / "installed-by-hand.txt").unlink(missing_ok=True)  # a new virtualenv holds nothing installed by hand
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    harness = venv / "bin" / "harness"
    harness.write_text((fake / "harness.py").read_text())
    harness.chmod(0o755)
elif args[:2] == ["pip", "compile"]:
    shutil.copy(fake / "resolved.txt", args[args.index("-o") + 1])
elif args[:2] == ["pip", "install"]:
    if "-r" in args:
        shutil.copy(args[args.index("-r") + 1], fake / "installed.txt")
elif args[:2] == ["pip", "freeze"]:
    print("Using Python 3.11 environment at: somewhere")
    print((fake / "installed.txt").read_text() + "-e file:///checkout")
    extra = fake / "installed-by-hand.txt"
    if extra.exists():
        print(extra.read_text())
'''

FAKE_HARNESS = r'''#!{python}
"""harness run: a results file, the timings a real run writes, and the thread settings it was given."""
import json, os, sys, time
from pathlib import Path
out = Path(sys.argv[sys.argv.index("--out") + 1])
time.sleep(float(os.environ.get("FAKE_RUN_S", "0")))
out.write_bytes(b"not really parquet")
Path(os.environ["HARNESS_TIMINGS_FILE"]).write_text(json.dumps({{"compute_s": 0.25, "import_s": 0.5}}))
seen = {{k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "RAYON_NUM_THREADS")}}
(out.parent / "env.json").write_text(json.dumps(seen))
'''


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "fake"
    home.mkdir()
    uv = home / "uv"
    uv.write_text(FAKE_UV.format(python=sys.executable))
    uv.chmod(0o755)
    (home / "harness.py").write_text(FAKE_HARNESS.format(python=sys.executable))
    (home / "resolved.txt").write_text("torch==2.13.0+cpu\ntokenizers==0.19.1\ntransformers==5.23.0\n")
    monkeypatch.setenv("FAKE", str(home))
    monkeypatch.setenv("HARNESS_PYTHON_3_11", sys.executable)
    for name in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "RAYON_NUM_THREADS", "HARNESS_TORCH_INDEX_URL"):
        monkeypatch.delenv(name, raising=False)
    return home


def _workspace(tmp_path: Path, fake: Path, **changes: object) -> Workspace:
    ws = Workspace(root=ROOT, runs=tmp_path / "runs", venvs=tmp_path / "venvs", backend="uv", uv=str(fake / "uv"))
    return dataclasses.replace(ws, **changes)  # type: ignore[arg-type]


def _calls(fake: Path) -> List[str]:
    calls = (fake / "calls").read_text().splitlines() if (fake / "calls").exists() else []
    (fake / "calls").unlink(missing_ok=True)
    return calls


def test_a_cell_is_reused_while_its_lock_and_packages_stay_and_rebuilt_when_either_moves(tmp_path: Path, fake: Path) -> None:
    matrix = hm.load_matrix_file(_write(tmp_path, MINIMAL)).select("m")
    cell = matrix.cells[0]
    ws = _workspace(tmp_path, fake)

    first = run_cell(ws, matrix, cell)
    assert first.status is StageStatus.OK and not first.reused_venv and first.setup_note == "built: no virtualenv yet"
    assert _calls(fake) == ["pip compile", "venv --clear", "pip install", "pip install", "pip freeze"]
    run_dir = ws.run_dir("m", cell.cell_id)
    assert (run_dir / venvs.LOCK_FILE).read_text() == (fake / "resolved.txt").read_text()
    assert "torch==2.13.0+cpu" in (run_dir / "installed.txt").read_text()

    again = run_cell(ws, matrix, cell)
    assert again.reused_venv and again.setup_note.startswith("reused")
    assert _calls(fake) == ["pip compile", "pip freeze"], "an unchanged cell is resolved and listed, not reinstalled"

    # an unpinned dependency got a new release upstream: same pins, another lock
    (fake / "resolved.txt").write_text("torch==2.13.0+cpu\ntokenizers==0.19.2\ntransformers==5.23.0\n")
    moved = run_cell(ws, matrix, cell)
    assert not moved.reused_venv and moved.setup_note == "built: the pins or their resolved lock changed"
    assert "venv --clear" in _calls(fake) and moved.cleanup_s is not None

    # someone installed into the cell by hand
    (fake / "installed-by-hand.txt").write_text("rich==14.0.0\n")
    tampered = run_cell(ws, matrix, cell)
    assert not tampered.reused_venv and "installed packages changed since the install: +rich==14.0.0" in tampered.setup_note
    assert run_cell(ws, matrix, cell).reused_venv, "the rebuilt cell is what its lock says: reused from now on"

    # the same virtualenv somewhere else: its scripts still point at the old place
    shutil.copytree(tmp_path / "venvs", tmp_path / "moved", symlinks=True)
    moved_ws = _workspace(tmp_path, fake, venvs=tmp_path / "moved")
    assert not run_cell(moved_ws, matrix, cell).reused_venv and run_cell(moved_ws, matrix, cell).reused_venv
    _calls(fake)

    fresh = run_cell(_workspace(tmp_path, fake, reuse_venvs=False), matrix, cell)
    assert not fresh.reused_venv and fresh.setup_note == "built: --fresh"
    assert read_cell_state(run_dir) == fresh


def test_the_lock_key_is_the_set_of_resolved_packages() -> None:
    lock = "b==2\na==1\n"
    assert venvs.lock_key("stamp", lock) == venvs.lock_key("stamp", "# comment\na==1\n\nb==2  # via x\n")
    assert venvs.lock_key("stamp", lock) != venvs.lock_key("stamp", "a==1\nb==2.1\n")
    assert venvs.lock_key("stamp", lock) != venvs.lock_key("other", lock)
    assert venvs.lock_key("stamp", None) == "stamp", "pip has no lock: the stamp alone"
    assert venvs.freeze_difference("a==1\nb==2\n", "b==2\na==1\n") == ""
    assert venvs.freeze_difference("a==1\n", "a==2\n") == "installed packages changed since the install: -a==1, +a==2"
    assert venvs.freeze_difference(None, "a==1") == "no record of what was installed"


def test_cells_compile_nothing_at_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """~10k files byte-compiled per fresh cell was 18-37 s of setup: neither installer compiles."""
    monkeypatch.delenv("UV_COMPILE_BYTECODE", raising=False)
    assert venvs.cell_env(tmp_path, "uv")["UV_COMPILE_BYTECODE"] == "0"
    assert "PYTHONDONTWRITEBYTECODE" not in venvs.cell_env(tmp_path, "uv"), "a run must write the .pyc it compiles"
    pip = venvs.install_commands("pip", "/py", tmp_path, tmp_path / "r.txt", [], root=ROOT, uv=None)
    assert all("--no-compile" in cmd for cmd in pip[1:])


def test_the_run_timings_land_in_cell_json_and_the_threads_follow_the_share(tmp_path: Path, fake: Path) -> None:
    matrix = hm.load_matrix_file(_write(tmp_path, TWO_CELLS)).select("m")
    lines: List[str] = []
    states = schedule.run_cells(_workspace(tmp_path, fake), matrix, matrix.cells, 2, lines.append)
    assert [s.cell_id for s in states] == [c.cell_id for c in matrix.cells], "states in the cells' order"
    for state in states:
        assert state.compute_s == 0.25 and state.timings["import_s"] == 0.5 and state.threads == schedule.thread_share(2)
        seen: Dict[str, str] = json.loads((tmp_path / "runs" / "m" / state.cell_id / "env.json").read_text())
        assert seen == {"OMP_NUM_THREADS": str(state.threads), "RAYON_NUM_THREADS": str(state.threads),
                        "OMP_WAIT_POLICY": "PASSIVE"}
        assert read_cell_state(tmp_path / "runs" / "m" / state.cell_id).compute_s == 0.25
    serial = schedule.run_cells(_workspace(tmp_path, fake), matrix, matrix.cells, 1, lines.append)
    seen = json.loads((tmp_path / "runs" / "m" / serial[0].cell_id / "env.json").read_text())
    assert serial[0].threads is None and seen["OMP_NUM_THREADS"] is None, "one at a time: the libraries' default"


def test_thread_share() -> None:
    assert schedule.thread_share(1, cores=2) is None
    assert schedule.thread_share(2, cores=2) == 1 and schedule.thread_share(2, cores=16) == 8
    assert schedule.thread_share(4, cores=2) == 1
    with pytest.raises(hm.MatrixError, match="--jobs must be >= 1"):
        schedule.thread_share(0)


def test_progress_says_each_step_with_an_eta(tmp_path: Path) -> None:
    matrix = hm.load_matrix_file(_write(tmp_path, TWO_CELLS)).select("m")
    first, second = (c.cell_id for c in matrix.cells)
    now = [100.0]
    lines: List[str] = []
    progress = schedule.Progress(matrix.cells, lines.append, clock=lambda: now[0])
    progress.step("setup", CellState(StageStatus.OK, cell_id=first, setup_s=1.23, reused_venv=True))
    now[0] = 110.0
    progress.step("run", CellState(StageStatus.OK, cell_id=first, run_s=8.07, compute_s=6.0))
    progress.step("setup", CellState(StageStatus.INSTALL_FAILED, cell_id=second, setup_s=3.0, setup_note="built: --fresh"))
    now[0] = 113.0
    progress.step("run", CellState(StageStatus.INSTALL_FAILED, cell_id=second, setup_s=3.0))
    assert lines == [
        f"cell 1/2 {first}: setup 1.2 s (reused)",
        f"cell 1/2 {first}: run 8.1 s (compute 6.0 s) · ETA 10 s",
        f"cell 2/2 {second}: setup 3.0 s (built: --fresh): install-failed",
        f"cell 2/2 {second}: not run (install-failed) · ETA 0 s",
    ]
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"status": "fail", "cells": [
        {"cell_id": first, "status": "pass"}, {"cell_id": second, "status": "install-failed", "reason": "no torch\nmore"}]}))
    assert schedule.verdict_lines(report, matrix.cells) == [
        f"cell 1/2 {first}: verdict PASS", f"cell 2/2 {second}: verdict INSTALL-FAILED (no torch)"]
    assert schedule.report_status(report).failing
    report.write_text("{")
    with pytest.raises(hm.MatrixError, match="cannot read the matrix report"):
        schedule.verdict_lines(report, matrix.cells)


def test_noxfile_rejects_bad_jobs_before_installing(tmp_path: Path) -> None:
    pytest.importorskip("nox")
    proc = subprocess.run(
        [sys.executable, "-m", "nox", "--noxfile", str(ROOT / "noxfile.py"), "-s", "matrix", "--no-venv", "--",
         "--matrix", "smoke", "--jobs", "0"],
        cwd=ROOT, env={**os.environ, "HARNESS_REPORTS_DIR": str(tmp_path)}, capture_output=True, text=True, timeout=120,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "--jobs must be >= 1, got 0" in output, output[-2000:]


@pytest.mark.matrix
def test_jobs_give_the_serial_results(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The smoke matrix's cells for real, one at a time and then two at a time with a thread each: the same vectors
    and scores, bit for bit (cell virtualenvs under ``.nox/matrix-cells``, reused when warm)."""
    if not _wanted(request.config):
        pytest.skip("builds virtualenvs (minutes): select with -m matrix or HARNESS_MATRIX_TESTS=1")
    pa = pytest.importorskip("pyarrow.parquet")
    smoke = hm.load_matrix_file().select("smoke")
    uv = venvs.find_uv()
    outputs = {}
    for jobs in (1, 2):
        ws = Workspace(root=ROOT, runs=tmp_path / f"jobs{jobs}", venvs=ROOT / ".nox" / "matrix-cells",
                       backend=venvs.choose_backend("auto", uv), uv=uv)
        states = schedule.run_cells(ws, smoke, smoke.cells, jobs, lambda _line: None)
        assert all(s.ran_cleanly for s in states), [s.reason for s in states]
        assert [s.threads for s in states] == [schedule.thread_share(jobs)] * len(states)
        outputs[jobs] = {s.cell_id: pa.read_table(ws.run_dir("smoke", s.cell_id) / "results.parquet") for s in states}
    for cell_id, serial in outputs[1].items():
        parallel = outputs[2][cell_id]
        for column in ("model_id", "item_id", "vector", "score", "rank"):
            if column in serial.column_names:
                assert serial.column(column).equals(parallel.column(column)), f"{cell_id}: {column} differs"


def test_the_report_shows_each_cells_compute_beside_its_run_time(tmp_path: Path) -> None:
    """cell.json -> the cell's record -> the report dict -> the Markdown summary's "Run (compute)" column."""
    from test_matrix import _cell

    from harness.matrix.cells import write_cell_state
    from harness.matrix.collect import cell_record
    from harness.report.json_report import document
    from harness.report.markdown import render_markdown
    from harness.report.matrix_report import build_matrix_report

    run_dir = tmp_path / "runs" / "cell"
    write_cell_state(run_dir, CellState(StageStatus.RUN_FAILED, reason="boom", setup_s=1.0, run_s=12.5, compute_s=9.25))
    record = cell_record(_cell(), run_dir, tmp_path / "baseline.parquet")
    assert (record.run_s, record.compute_s) == (12.5, 9.25)
    report = build_matrix_report("m", "baseline.parquet", [record])
    assert document(report)["cells"][0]["compute_s"] == 9.25
    summary = render_markdown(report)
    header = next(line for line in summary.splitlines() if line.startswith("| Cell | Model"))
    row = next(line for line in summary.splitlines() if "(not run)" in line)
    assert header.endswith("| Run (compute) |") and row.endswith("| 12.5 s (9.2 s) |"), summary
