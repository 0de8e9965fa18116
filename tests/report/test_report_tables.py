"""``--cells`` runs never pass for whole-matrix runs, and every report writes flat tables (issue #13).

A partial report merges into the last full report in ``--out`` (saying so) instead of replacing it, and its
history line is marked ``partial``; ``verdicts.parquet``/``.csv`` and ``history.parquet`` read with one call.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from harness.matrix.publish import load_history, publish_matrix_report
from harness.report.json_report import document
from harness.report.matrix_report import MatrixReport, build_matrix_report, history_series

from synthetic_results import synthetic_matrix


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> MatrixReport:
    return synthetic_matrix(tmp_path_factory.mktemp("tables"))


def _partial(full: MatrixReport, created_at: str = "2026-11-24T09:00:00+00:00") -> MatrixReport:
    """A --cells run of the failing cell (cell 2) that now passes: the first cell's comparison under its id."""
    cell = dataclasses.replace(copy.deepcopy(full.cells[0]), cell_id=full.cells[1].cell_id)
    ids = [c.cell_id for c in full.cells]
    return build_matrix_report(full.matrix, full.baseline, [cell], created_at=created_at, matrix_cells=ids)


def test_a_cells_run_merges_into_the_full_report_and_says_so(full: MatrixReport, tmp_path: Path) -> None:
    out, history = tmp_path / "latest", tmp_path / "history" / "history.jsonl"
    publish_matrix_report(full, out, history)
    partial = _partial(full)
    assert partial.partial and not full.partial
    publish_matrix_report(partial, out, history)
    merged = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [c["cell_id"] for c in merged["cells"]] == [c["cell_id"] for c in document(full)["cells"]]  # nothing dropped
    assert merged["cells"][1]["status"] == "pass" and merged["cells"][0] == json.loads(json.dumps(document(full)["cells"][0], default=str))
    assert merged["merged"] == {"cells": [full.cells[1].cell_id], "created_at": partial.created_at,
                                "full_run_created_at": full.created_at}
    assert merged["counts"]["fail"] == 0 and merged["status"] == "install-failed"
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert f"re-run at {partial.created_at} (--cells) and merged in" in summary
    lines = load_history(history)
    assert [entry.partial for entry in lines] == [False, True]
    assert list(lines[1].cells) == [full.cells[1].cell_id]  # only the cell that ran
    points = history_series(lines, full.matrix, full.cells[1].cell_id, full.cells[0].comparison["models"][0]["model_id"])
    assert [str(s.value) for _, s, _ in points] == ["fail", "pass"]


def test_a_cells_run_alone_is_written_as_partial(full: MatrixReport, tmp_path: Path) -> None:
    publish_matrix_report(_partial(full), tmp_path)
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert report["partial"] and len(report["cells"]) == 1 and "merged" not in report
    assert "partial: 1 of 5 cells (--cells); not a whole-matrix run" in (tmp_path / "summary.md").read_text(encoding="utf-8")


def test_a_cells_run_against_another_baseline_never_replaces_the_full_report(full: MatrixReport, tmp_path: Path) -> None:
    publish_matrix_report(full, tmp_path)
    before = (tmp_path / "report.json").read_bytes()
    other = _partial(full)
    other.baseline = "fixtures/baselines/other.parquet"
    publish_matrix_report(other, tmp_path)
    assert (tmp_path / "report.json").read_bytes() == before
    assert json.loads((tmp_path / "partial" / "report.json").read_text(encoding="utf-8"))["partial"]


def test_verdict_and_history_tables_read_with_one_call(full: MatrixReport, tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    written = publish_matrix_report(full, tmp_path / "latest", history)
    verdicts = pd.read_parquet(written["verdicts"])
    checks = [(c, m, k) for c in document(full)["cells"] for m in (c["comparison"] or {}).get("models", []) for k in m["checks"]]
    not_run = [c for c in document(full)["cells"] if not c["comparison"]]
    scenario_rows = verdicts[verdicts.check.str.startswith("scenario.")]
    ran = [s for c in document(full)["cells"] for m in (c["comparison"] or {}).get("models", [])
           for s in (m.get("scenarios") or {}).get("items", []) if s["same_order"] is not None]
    assert len(verdicts) - len(scenario_rows) == len(checks) + len(not_run)
    assert len(scenario_rows) == 2 * len(ran) > 0 and scenario_rows.passed.isna().all()  # reported, not judged
    row = verdicts[(verdicts.cell_id == full.cells[1].cell_id) & (verdicts.check == "max_abs_diff")].iloc[0]
    assert row.model_status == "fail" and row.observed > row.limit and row.used == pytest.approx(row.observed / row.limit)
    assert not row.passed and row.policy == full.policy
    assert pd.read_csv(tmp_path / "latest" / "verdicts.csv").shape == verdicts.shape
    publish_matrix_report(_partial(full), tmp_path / "latest", history)
    long = pd.read_parquet(tmp_path / "history.parquet")
    assert set(long.columns) >= {"created_at", "cell_id", "model_id", "max_abs_diff", "partial"}
    assert long.groupby("created_at").partial.first().tolist() == [False, True]
    assert len(long[long.partial]) == 2  # one cell, two models
