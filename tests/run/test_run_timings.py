"""``harness run``'s own timings (``HARNESS_TIMINGS_FILE``): what the cell runner records as the compute part of a
cell's run time, beside imports and model loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.results import ResultsFile
from harness.run import timings as run_timings

from conftest import run_tiny


def test_a_run_writes_its_compute_apart_from_imports_and_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "timings.json"
    monkeypatch.setenv(run_timings.TIMINGS_VARIABLE, str(target))
    results = run_tiny(tmp_path / "tiny.parquet")
    measured = json.loads(target.read_text(encoding="utf-8"))
    records = ResultsFile(results).records
    # one number per registry model (its entries, e.g. ``<id>@logits``, share the model's record)
    per_model = {r.derived_from or model_id: r for model_id, r in records.items()}
    assert set(measured["models"]) == set(per_model)
    for model_id, record in per_model.items():
        assert measured["models"][model_id] == {"load_s": record.load_s, "compute_s": record.compute_s}
    assert measured["compute_s"] == pytest.approx(sum(r.compute_s for r in per_model.values()), abs=1e-3)
    assert measured["compute_s"] > 0 and measured["load_s"] > 0 and "import_s" in measured and "write_s" in measured
    assert measured["in_run_s"] >= measured["compute_s"] + measured["load_s"]


def test_without_the_variable_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(run_timings.TIMINGS_VARIABLE, raising=False)
    monkeypatch.chdir(tmp_path)
    timings = run_timings.RunTimings()
    with timings.phase("import"):
        pass
    timings.model("m", 0.5, 2.0)
    timings.write()
    assert list(tmp_path.iterdir()) == []
    data = timings.to_dict()
    assert data["compute_s"] == 2.0 and data["load_s"] == 0.5 and data["import_s"] >= 0
    age = run_timings.process_age_s()
    assert age is None or age > 0, "this process started before the test"
