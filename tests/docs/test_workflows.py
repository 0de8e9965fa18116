"""The GitHub Actions workflows are valid (GitHub's workflow schema, vendored by check-jsonschema: offline), the
nightly cell list comes from matrix.toml through ``harness matrix list --format github``, ``harness matrix cell``
runs cell N, and the drift summary script keeps within GitHub's limits."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from harness.cli import main
from harness.matrix.spec import load_matrix_file

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
SCRIPT = ROOT / ".github" / "scripts" / "drift_summary.py"


def _check_jsonschema() -> List[str]:
    found = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent)) or shutil.which("check-jsonschema")
    if found is None:
        pytest.skip("check-jsonschema is not installed (pip install -e '.[dev]')")
    return [found]


# -- the workflows ----------------------------------------------------------------------------------------------


def test_there_is_a_nightly_and_a_pull_request_workflow() -> None:
    assert {p.name for p in WORKFLOWS} >= {"nightly-matrix.yml", "pull-request.yml"}


def test_every_workflow_validates_against_githubs_schema() -> None:
    proc = subprocess.run([*_check_jsonschema(), "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_schema_check_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    stepz: []\n", encoding="utf-8")
    proc = subprocess.run([*_check_jsonschema(), "--builtin-schema", "vendor.github-workflows", str(broken)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1 and "stepz" in proc.stdout


def _workflow(name: str) -> Dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text(encoding="utf-8"))


def test_the_nightly_cells_come_from_matrix_toml_not_a_copied_list() -> None:
    jobs = _workflow("nightly-matrix.yml")["jobs"]
    listing = " ".join(step.get("run", "") for step in jobs["plan"]["steps"])
    assert "harness matrix list" in listing and "--format github" in listing
    assert jobs["cells"]["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.cells) }}"
    cells_steps = " ".join(str(step) for step in jobs["cells"]["steps"])
    assert "matrix.label" in cells_steps and "matrix.python" in cells_steps
    report = " ".join(str(step) for step in jobs["report"]["steps"])
    for needed in ("GITHUB_STEP_SUMMARY", "--annotations", "actions/cache/restore", "actions/cache/save", "--history"):
        assert needed in report, needed


def test_the_pull_request_workflow_runs_tests_smoke_matrix_docs_and_validation() -> None:
    workflow = _workflow("pull-request.yml")
    assert "pull_request" in workflow[True] if True in workflow else "pull_request" in workflow["on"]
    jobs = workflow["jobs"]
    text = json.dumps(jobs)
    assert {"tests", "smoke-matrix", "docs", "workflows"} <= set(jobs)
    for needed in ("pytest", "--matrix smoke", "nox -s docs", "check-jsonschema", "updateComment", "drift-comment.md"):
        assert needed in text, needed


# -- harness matrix list / cell ---------------------------------------------------------------------------------


def test_matrix_list_without_matrix_lists_every_matrix(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["matrix", "list"]) == 0
    lines = capsys.readouterr().out.split()
    expected = [c.label for m in load_matrix_file().matrices.values() for c in m.cells]
    assert lines == expected and any(line.startswith("smoke/") for line in lines)


def _small_matrix(tmp_path: Path) -> Path:
    path = tmp_path / "m.toml"
    path.write_text('[matrix.only]\nmodels = "tiny"\nbaseline = "tiny-cpu-float32"\n'
                    '[[matrix.only.cells]]\npython = "3.11"\ntorch = "2.13.0"\nsentence-transformers = "6.2.0"\n'
                    'transformers = "5.23.0"\nnote = "one"\n', encoding="utf-8")
    return path


def test_matrix_list_honours_harness_matrix_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HARNESS_MATRIX_FILE", str(_small_matrix(tmp_path)))
    assert main(["matrix", "list"]) == 0
    assert capsys.readouterr().out.split() == ["only/torch-2.13.0_st-6.2.0_tf-5.23.0_py3.11"]
    monkeypatch.setenv("HARNESS_MATRIX_FILE", str(tmp_path / "missing.toml"))
    assert main(["matrix", "list"]) == 2
    err = capsys.readouterr().err
    assert "missing.toml" in err and err.count("\n") == 1


def test_matrix_list_format_github_is_one_line_for_fromjson(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["matrix", "list", "--matrix", "smoke", "--format", "github"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    include = json.loads(out)["include"]
    cells = load_matrix_file().select("smoke").cells
    assert [e["cell"] for e in include] == [c.cell_id for c in cells]
    assert [e["index"] for e in include] == list(range(len(cells)))
    assert all(e["label"] == f"smoke/{e['cell']}" and e["python"] == "3.11" for e in include)


def test_matrix_list_format_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["matrix", "list", "--matrix", "default", "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == len(load_matrix_file().select("default").cells) and listed[0]["params"]["torch"]


@pytest.fixture()
def ran(monkeypatch: pytest.MonkeyPatch) -> List[str]:
    """``run_cell`` replaced: records which cell it was asked to run (no virtualenv is built)."""
    from harness.matrix import cellrun
    from harness.matrix.cells import CellState, StageStatus

    calls: List[str] = []

    def fake_run_cell(ws: Any, matrix: Any, cell: Any, run_args: Any = None) -> CellState:
        calls.append(cell.cell_id)
        return CellState(status=StageStatus.OK, cell_id=cell.cell_id, matrix=matrix.name, run_exit_code=0)

    monkeypatch.setattr(cellrun, "run_cell", fake_run_cell)
    return calls


def test_matrix_cell_runs_the_cell_at_index_n(ran: List[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cells = load_matrix_file().select("smoke").cells
    assert main(["matrix", "cell", "--matrix", "smoke", "--index", "1", "--runs", str(tmp_path), "--backend", "pip"]) == 0
    assert ran == [cells[1].cell_id] and cells[1].label in capsys.readouterr().out


def test_matrix_cell_reads_job_completion_index(ran: List[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "0")
    assert main(["matrix", "cell", "--matrix", "smoke", "--runs", str(tmp_path), "--backend", "pip"]) == 0
    assert ran == [load_matrix_file().select("smoke").cells[0].cell_id]


@pytest.mark.parametrize("args,env,fragment", [
    (["--index", "9"], None, "has 2 cell(s) (--index 0 to 1), got --index 9"),
    ([], None, "give --index N, --cell ID, or set JOB_COMPLETION_INDEX"),
    ([], "x", "JOB_COMPLETION_INDEX='x'"),
    (["--cell", "nope"], None, "has no cell 'nope'"),
])
def test_matrix_cell_refuses_a_cell_that_is_not_there(ran: List[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str], args: List[str],
                                                      env: Any, fragment: str) -> None:
    if env is None:
        monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    else:
        monkeypatch.setenv("JOB_COMPLETION_INDEX", env)
    assert main(["matrix", "cell", "--matrix", "smoke", "--runs", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1 and ran == []


# -- the drift summary script -----------------------------------------------------------------------------------


def _report_dir(tmp_path: Path, rows: int = 2) -> Path:
    out = tmp_path / "latest"
    out.mkdir()
    table = "\n".join(f"| `cell-{i}` | `bi` | **FAIL** | 0.5 |" for i in range(rows))
    (out / "summary.md").write_text(f"# Drift report: m — **FAIL** (2026-12-07)\n\n- cells: 2\n\n## Summary\n\n"
                                    f"| Cell | Model | Verdict | Max drift |\n|---|---|---|---|\n{table}\n\n"
                                    "## Checks\n\nlots of detail\n", encoding="utf-8")
    models = [{"model_id": "bi", "status": "fail", "tolerance_class": "fp32", "reason": "max_abs_diff: 0.5, limit 1e-5\nmore"},
              {"model_id": "ce", "status": "pass"}]
    report = {"matrix": "m", "cells": [
        {"cell_id": "cell-0", "status": "fail", "comparison": {"models": models}},
        {"cell_id": "cell-1", "status": "run-failed", "reason": "pip: no matching distribution", "comparison": None},
        {"cell_id": "cell-2", "status": "pass", "comparison": {"models": [{"model_id": "bi", "status": "pass"}]}},
    ]}
    (out / "report.json").write_text(json.dumps(report), encoding="utf-8")
    return out


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False)


def test_drift_summary_writes_the_job_summary_annotations_and_a_comment(tmp_path: Path) -> None:
    report = _report_dir(tmp_path)
    summary, comment = tmp_path / "step_summary.md", tmp_path / "comment.md"
    summary.write_text("earlier step\n", encoding="utf-8")
    proc = _script(str(report), "--summary", str(summary), "--comment", str(comment), "--annotations")
    assert proc.returncode == 0, proc.stderr
    assert summary.read_text(encoding="utf-8").startswith("earlier step\n# Drift report: m")
    body = comment.read_text(encoding="utf-8")
    assert body.startswith("<!-- embedding-harness drift report -->\n# Drift report: m")
    assert "| `cell-0` | `bi` | **FAIL**" in body and "lots of detail" not in body
    errors = [line for line in proc.stdout.splitlines() if line.startswith("::error")]
    assert len(errors) == 2
    assert errors[0].startswith("::error title=drift%3A m/cell-0 bi::max_abs_diff: 0.5, limit 1e-5%0Amore")
    assert errors[1].startswith("::error title=run-failed%3A m/cell-1::pip: no matching distribution")


def test_drift_summary_stays_within_githubs_limits(tmp_path: Path) -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import drift_summary
    finally:
        sys.path.remove(str(SCRIPT.parent))
    report = _report_dir(tmp_path, rows=40_000)  # ~1.4 MB of summary
    summary, comment = tmp_path / "s.md", tmp_path / "c.md"
    assert _script(str(report), "--summary", str(summary), "--comment", str(comment)).returncode == 0
    assert len(summary.read_bytes()) <= 1024 * 1024 and "cut to fit" in summary.read_text(encoding="utf-8")
    assert len(comment.read_text(encoding="utf-8")) <= 65536
    many = {"matrix": "m", "cells": [{"cell_id": f"c{i}", "status": "fail",
                                      "comparison": {"models": [{"model_id": "bi", "status": "fail"}]}} for i in range(30)]}
    lines = drift_summary.annotations(many)
    assert len(lines) == 10 and "21 more" in lines[-1]


def test_drift_summary_without_a_report_says_so(tmp_path: Path) -> None:
    summary = tmp_path / "s.md"
    proc = _script(str(tmp_path / "nothing"), "--summary", str(summary), "--annotations")
    assert proc.returncode == 0 and "::warning title=no drift report::" in proc.stdout
    assert "did not get as far as its report" in summary.read_text(encoding="utf-8")
