"""A broken ``matrix.toml`` never silently removes nox sessions (issue #13).

One typo in one cell used to make the strict load fail at noxfile import: ``nox -l`` showed ``matrix_cell`` as a
no-op and ``nox -s "matrix_cell(<valid cell>)"`` answered "Sessions not found". Now the valid cells stay sessions,
the broken cell is a session that fails naming the file, the cell and the problem, and ``nox -l`` lists it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest
from test_matrix import _write

from harness.matrix.lenient import load_lenient
from harness.matrix.spec import MatrixError, load_matrix_file

ROOT = Path(__file__).resolve().parents[2]

CELL = """
[[matrix.m.cells]]
python = "3.11"
torch = "2.13.0"
sentence-transformers = "{st}"
transformers = "5.23.0"
"""
HEAD = """
[matrix.m]
models = "tiny"
baseline = "tiny-cpu-float32"
"""
TYPO = CELL.format(st="6.2.0") + CELL.format(st="3.0.1").replace('python = "3.11"', 'python = "3.11"\ntorhc = "2.13.0"')
OTHER = """
[matrix.other]
models = "tiny"
baseline = "tiny-cpu-float32"
batch_size = "many"

[[matrix.other.cells]]
python = "3.11"
torch = "2.13.0"
sentence-transformers = "6.2.0"
transformers = "5.23.0"
"""


def test_lenient_load_keeps_valid_cells_and_names_each_broken_part(tmp_path: Path) -> None:
    path = _write(tmp_path, HEAD + TYPO + OTHER)
    with pytest.raises(MatrixError):
        load_matrix_file(path)  # the CLI stays strict
    matrices, problems = load_lenient(path)
    assert matrices is not None and list(matrices.matrices) == ["m"]
    assert [c.sentence_transformers for c in matrices.matrices["m"].cells] == ["6.2.0"]
    by_label = {p.label: p.message for p in problems}
    assert set(by_label) == {"m/cell-2-invalid", "other/invalid"}
    assert by_label["m/cell-2-invalid"].startswith(f"{path}: matrix 'm' cell 2: unknown key(s) 'torhc'")
    assert "'batch_size' must be a positive integer" in by_label["other/invalid"]


def test_lenient_load_of_a_valid_file_has_no_problems() -> None:
    matrices, problems = load_lenient()
    assert problems == [] and matrices is not None and matrices.matrices == load_matrix_file().matrices


def test_unparseable_file_is_one_problem(tmp_path: Path) -> None:
    matrices, problems = load_lenient(_write(tmp_path, "[matrix.m\n"))
    assert matrices is None and len(problems) == 1
    assert problems[0].label == "matrix-file-invalid" and "not valid TOML" in problems[0].message


def _nox(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env: Dict[str, str] = {**os.environ, "HARNESS_MATRIX_FILE": str(path)}
    return subprocess.run([sys.executable, "-m", "nox", "--noxfile", str(ROOT / "noxfile.py"), *args],
                          capture_output=True, text=True, timeout=180, env=env, cwd=ROOT, check=False)


def test_nox_lists_valid_and_broken_cells_and_runs_each_as_its_own_session(tmp_path: Path) -> None:
    pytest.importorskip("nox")
    path = _write(tmp_path, HEAD + TYPO)
    listing = _nox(path, "-l")
    assert listing.returncode == 0, listing.stderr[-2000:]
    out = listing.stdout
    assert "matrix_cell(m/torch-2.13.0_st-6.2.0_tf-5.23.0_py3.11) [matrix-m]" in out
    assert "matrix_cell(m/cell-2-invalid) [matrix-m]" in out
    assert f"m/cell-2-invalid: {path}: matrix 'm' cell 2: unknown key(s) 'torhc'" in out
    assert out.index("Sessions defined in") > out.index("matrix.toml problems")  # problems before the list

    broken = _nox(path, "--no-venv", "-s", "matrix_cell(m/cell-2-invalid)")
    assert broken.returncode == 1
    assert f"{path}: matrix 'm' cell 2: unknown key(s) 'torhc'" in broken.stderr

    valid = _nox(path, "--no-venv", "-s", "matrix_cell(m/torch-2.13.0_st-6.2.0_tf-5.23.0_py3.11)", "--", "--help")
    assert "Sessions not found" not in valid.stderr, valid.stderr[-2000:]
    assert valid.returncode == 0 and "usage: nox -s matrix_cell" in valid.stdout + valid.stderr

    whole = _nox(path, "--no-venv", "-s", "matrix", "--", "--matrix", "m")  # the whole matrix cannot run with a broken cell
    assert whole.returncode == 1 and "cell 2: unknown key(s) 'torhc'" in whole.stderr


def test_nox_lists_a_session_for_an_unreadable_matrix_file(tmp_path: Path) -> None:
    pytest.importorskip("nox")
    path = _write(tmp_path, "[matrix.m\n")
    listing = _nox(path, "-l")
    assert listing.returncode == 0 and "matrix_cell(matrix-file-invalid)" in listing.stdout
    assert f"{path}: not valid TOML" in listing.stdout
    assert "lint" in listing.stdout and "tests" in listing.stdout
