"""``harness matrix report|list`` and ``harness attribute run|report``: exit codes, files written, what is printed.

Fast: run directories are written by hand (cell.json + synthetic results files), and the attribution plan points
at the shipped tiny baseline and perturbed copies of it. Nothing builds a virtualenv.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
from test_matrix import CELL, MINIMAL, _results, _write

from harness.cli import main
from harness.matrix.cells import CellState, StageStatus, write_cell_state
from harness.matrix.spec import load_matrix_file

from synthetic_results import BI, CROSS, perturb_results

ROOT = Path(__file__).resolve().parents[2]
TINY_BASELINE = ROOT / "fixtures" / "baselines" / "tiny-cpu-float32.parquet"


# -- harness matrix report --------------------------------------------------------------------------------------


@pytest.fixture()
def runs(tmp_path: Path) -> Dict[str, Any]:
    """A two-cell matrix file, a baseline, and a runs directory: the first cell identical, the second drifted,
    a third cell (install-failed) added on request by the tests."""
    matrix_file = _write(tmp_path, MINIMAL + CELL.replace('sentence-transformers = "6.2.0"', 'sentence-transformers = "3.0.1"'))
    matrix = load_matrix_file(matrix_file).select("m")
    baseline = _results(tmp_path / "baseline.parquet")
    runs_dir = tmp_path / "runs"
    first, second = (c.cell_id for c in matrix.cells)
    for cell_id, bump in ((first, 0.0), (second, 0.5)):
        write_cell_state(runs_dir / cell_id, CellState(status=StageStatus.OK, setup_s=1.0, run_s=2.0, run_exit_code=0))
        _results(runs_dir / cell_id / "results.parquet", bump=bump)
    args = ["matrix", "report", "--file", str(matrix_file), "--matrix", "m", "--baseline", str(baseline), "--runs", str(runs_dir)]
    return {"args": args, "runs": runs_dir, "cells": [first, second], "tmp": tmp_path, "file": matrix_file}


@pytest.mark.parametrize("link", ["latest/verdicts.parquet", "h/history.parquet"])
def test_a_symlink_where_a_report_table_goes_is_refused_before_anything_is_written(
        runs: Dict[str, Any], capsys: pytest.CaptureFixture[str], link: str) -> None:
    """The tables beside the report and beside the history log are outputs too: refused up front (exit 2), not
    after the other files were written."""
    target = runs["tmp"] / "precious.bin"
    target.write_bytes(b"keep me")
    (runs["tmp"] / link).parent.mkdir(parents=True, exist_ok=True)
    (runs["tmp"] / link).symlink_to(target)
    code = main([*runs["args"], "--out", str(runs["tmp"] / "latest"), "--history", str(runs["tmp"] / "h" / "history.jsonl")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "symbolic link" in err[0] and link.split("/")[1] in err[0]
    assert target.read_bytes() == b"keep me" and (runs["tmp"] / link).is_symlink()
    assert not (runs["tmp"] / "latest" / "summary.md").exists() and not (runs["tmp"] / "h" / "history.jsonl").exists()


def test_report_of_a_drifted_cell_exits_1_and_says_which(runs: Dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    out = runs["tmp"] / "latest"
    code = main([*runs["args"], "--out", str(out), "--history", str(runs["tmp"] / "h" / "history.jsonl")])
    captured = capsys.readouterr()
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["junit.xml", "report.html", "report.json", "summary.md",
                                                     "verdicts.csv", "verdicts.parquet"]
    assert captured.out.strip() == (out / "summary.md").read_text(encoding="utf-8").strip()
    assert captured.out.startswith("# Drift report: m — **FAIL**")
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [c["status"] for c in report["cells"]] == ["pass", "fail"] and report["counts"]["fail"] == 1
    err = captured.err.splitlines()
    assert {line.split(":")[0] for line in err if line.startswith("wrote ")} == {"wrote markdown", "wrote json", "wrote junit", "wrote html",
                                                                                "wrote verdicts", "wrote verdicts csv",
                                                                                "wrote history"}
    assert f"FAIL: {runs['cells'][1]}: bi: " in captured.err and "max_abs_diff" in captured.err
    assert len((runs["tmp"] / "h" / "history.jsonl").read_text(encoding="utf-8").splitlines()) == 1


def test_report_passes_with_incompatible_cells_and_counts_failed_stages(runs: Dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    second = runs["cells"][1]
    _results(runs["runs"] / second / "results.parquet", incompatible=True)
    assert main([*runs["args"], "--out", str(runs["tmp"] / "a")]) == 0, "incompatible is reported, not failed"
    assert "FAIL" not in capsys.readouterr().err
    write_cell_state(runs["runs"] / second, CellState(status=StageStatus.INSTALL_FAILED, reason="uv: no torch 2.13.0\nmore"))
    assert main([*runs["args"], "--out", str(runs["tmp"] / "b")]) == 1
    assert f"INSTALL-FAILED: {second}: uv: no torch 2.13.0\n" in capsys.readouterr().err
    report = json.loads((runs["tmp"] / "b" / "report.json").read_text(encoding="utf-8"))
    assert report["status"] == "install-failed" and report["cells"][1]["comparison"] is None


def test_report_of_cells_never_run(runs: Dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    for path in sorted((runs["runs"] / runs["cells"][1]).iterdir()):
        path.unlink()
    assert main([*runs["args"], "--out", str(runs["tmp"] / "a"), "--skip-missing"]) == 0
    report = json.loads((runs["tmp"] / "a" / "report.json").read_text(encoding="utf-8"))
    assert [c["cell_id"] for c in report["cells"]] == runs["cells"][:1]
    assert main([*runs["args"], "--out", str(runs["tmp"] / "b")]) == 1, "counted as error unless skipped"
    assert f"ERROR: {runs['cells'][1]}: not run: no " in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda r: r["args"].__setitem__(r["args"].index("m"), "x"), "no matrix named 'x' (matrices: m)"),
        (lambda r: (r["runs"] / r["cells"][0] / "cell.json").write_text("[1]", encoding="utf-8"), "cell.json: not a cell state object"),
        (lambda r: r["args"].extend(["--cells", "nope"]), "has no cell 'nope'"),
        (lambda r: r["args"].__setitem__(r["args"].index("--file") + 1, str(r["tmp"] / "none.toml")), "none.toml: no such matrix file"),
    ],
)
def test_bad_input_is_exit_2_with_one_line_and_nothing_written(
    runs: Dict[str, Any], capsys: pytest.CaptureFixture[str], change: Any, fragment: str
) -> None:
    change(runs)
    out = runs["tmp"] / "out"
    assert main([*runs["args"], "--out", str(out), "--history", str(runs["tmp"] / "history.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and fragment in err and err.count("\n") == 1, err
    assert not out.exists() and not (runs["tmp"] / "history.jsonl").exists()


def test_python_m_harness_matrix_is_the_same_command(runs: Dict[str, Any]) -> None:
    args = runs["args"][1:] + ["--out", str(runs["tmp"] / "alias")]
    proc = subprocess.run([sys.executable, "-m", "harness.matrix", *args], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stdout.startswith("# Drift report: m") and (runs["tmp"] / "alias" / "report.html").is_file()


def test_matrix_list(runs: Dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["matrix", "list", "--file", str(runs["file"]), "--matrix", "m"]) == 0
    assert capsys.readouterr().out.split() == runs["cells"]


# -- harness attribute ------------------------------------------------------------------------------------------


def _step(index: int, name: str, factors: List[str], results: str, **runtime: Any) -> Dict[str, Any]:
    params = {"python": "3.11", "torch": "2.13.0", "sentence-transformers": "6.2.0", "transformers": "5.23.0"}
    settings = {"device": "cpu", "dtype": "float32", "attn_implementation": None, "tf32": None, "batch_size": 32,
                "threads": None, **runtime}
    step_id = f"step{index:02d}-" + ("-".join(factors) or "baseline")
    return {"index": index, "name": name, "step_id": step_id, "factors": factors, "params": params,
            "runtime": settings, "note": "", "results": results}


@pytest.fixture()
def plan(tmp_path: Path) -> Path:
    """baseline (the shipped tiny baseline) -> +dtype (a 1e-3 perturbation: drift) -> +batch_size (noise) ->
    +threads (did not run). The second step's results path is relative: taken from the plan's directory."""
    perturb_results(TINY_BASELINE, tmp_path / "dtype.parquet", noise={BI: 1e-3, CROSS: 1e-3}, seed=4)
    perturb_results(tmp_path / "dtype.parquet", tmp_path / "batch.parquet", noise={BI: 1e-8}, seed=5)
    steps = [
        _step(0, "baseline", [], str(TINY_BASELINE)),
        _step(1, "+dtype", ["dtype"], "dtype.parquet", dtype="bfloat16"),
        _step(2, "+batch_size", ["batch_size"], str(tmp_path / "batch.parquet"), dtype="bfloat16", batch_size=1),
        {**_step(3, "+threads", ["threads"], str(tmp_path / "missing.parquet"), dtype="bfloat16", batch_size=1, threads=1),
         "error": "`harness run` exited 2: RuntimeError: boom"},
    ]
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"matrix": "smoke", "baseline_cell": "a", "candidate_cell": "b", "steps": steps}), encoding="utf-8")
    return path


def test_attribute_report_writes_the_waterfall(plan: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["attribute", "report", str(plan)]) == 0
    captured = capsys.readouterr()
    assert sorted(p.name for p in tmp_path.glob("attribution.*")) == ["attribution.html", "attribution.json", "attribution.md"]
    assert captured.out.strip() == (tmp_path / "attribution.md").read_text(encoding="utf-8").strip()
    assert "| +dtype | dtype float32 -> bfloat16 | tiny-bi-encoder |" in captured.out
    assert "did not run: `harness run` exited 2: RuntimeError: boom" in captured.out
    data = json.loads((tmp_path / "attribution.json").read_text(encoding="utf-8"))
    assert data["main_cause"]["tiny-bi-encoder"]["step"] == "+dtype"
    assert data["main_cause"]["tiny-bi-encoder"]["max_abs_diff"] > 1e-4
    assert data["steps"][2]["models"]["tiny-bi-encoder"]["step"]["max_abs_diff"] < 1e-6
    assert data["plan"]["matrix"] == "smoke"
    assert "wrote markdown: " in captured.err


def test_attribute_report_elsewhere_and_by_another_class(plan: Path, tmp_path: Path) -> None:
    assert main(["attribute", "report", str(plan), "--out", str(tmp_path / "other"), "--class", "bf16"]) == 0
    data = json.loads((tmp_path / "other" / "attribution.json").read_text(encoding="utf-8"))
    assert data["steps"][1]["models"]["tiny-bi-encoder"]["step"]["status"] == "pass", "bf16 limits admit 1e-3"
    assert not (tmp_path / "attribution.md").exists()


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "plan.json: no such plan file"),
        ("{", "plan.json: not valid JSON"),
        ('{"steps": []}', "plan.json: not an attribution plan"),
        ('{"steps": [{"step_id": "step00-baseline", "index": 0, "name": "baseline", "factors": [], "params": {}}]}',
         "plan.json: step 1: missing 'runtime'"),
    ],
)
def test_attribute_report_bad_plan_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: Any, fragment: str) -> None:
    path = tmp_path / "plan.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    assert main(["attribute", "report", str(path)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1, err
    assert not list(tmp_path.glob("attribution.*"))


def test_attribute_run_starts_from_the_baselines_recorded_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk starts where the matrix's baseline was made (``harness.baselines.rerun_options``), and falls back
    to the matrix's own settings while the baseline does not exist."""
    from dataclasses import replace

    from harness.cli.matrix_commands import _baseline_runtime
    from harness.matrix.attribution import RuntimeSettings

    smoke = load_matrix_file().select("smoke")
    settings, source = _baseline_runtime(smoke)
    assert settings == RuntimeSettings(device="cpu", dtype="float32", batch_size=32) and source == str(TINY_BASELINE)
    fresh = replace(smoke, baseline="no-such-baseline", batch_size=8)
    settings, source = _baseline_runtime(fresh)
    assert settings.batch_size == 8 and "no baseline" in source


def test_attribute_run_bad_cell_is_exit_2_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["attribute", "run", "nope", "other", "--matrix", "smoke", "--reports", str(tmp_path), "--venvs", str(tmp_path / "v")])
    assert code == 2
    assert "matrix 'smoke' has no cell 'nope'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
