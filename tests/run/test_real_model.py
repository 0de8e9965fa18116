"""End to end against the committed baselines: the tiny models (fast) and the real all-MiniLM-L6-v2 (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.baselines import DEFAULT_BASELINE_DIR
from harness.compare.comparator import compare_files
from harness.results import ResultsFile
from harness.testing import perturb_results, tf32_round
from harness.verdict import Status

from conftest import run_tiny

TINY_BASELINE = DEFAULT_BASELINE_DIR / "tiny-cpu-float32.parquet"
DEFAULT_BASELINE = DEFAULT_BASELINE_DIR / "default-cpu-float32.parquet"


def test_committed_baselines_were_made_by_the_runner() -> None:
    for path in (TINY_BASELINE, DEFAULT_BASELINE):
        results = ResultsFile(path)
        assert results.meta["baseline"]["reason"]
        assert results.fingerprint["device"] == "cpu" and results.fingerprint["dtype"] == "float32"
        assert all(info["status"] == "ok" for info in results.meta["models"].values())


def test_this_environment_matches_the_tiny_baseline(tiny_results: Path) -> None:
    comparison = compare_files(TINY_BASELINE, tiny_results)
    assert comparison.status is Status.PASS, comparison.serialize()["models"]


@pytest.mark.slow
def test_real_minilm_matches_baseline_and_catches_tf32_rounding(tmp_path: Path) -> None:
    out = run_tiny(tmp_path / "default.parquet", models=["default"])
    results = ResultsFile(out)
    info = results.meta["models"]["all-MiniLM-L6-v2"]
    assert info["dim"] == 384 and info["found_via"] == "package" and info["max_seq_length"] == 256
    comparison = compare_files(DEFAULT_BASELINE, out)
    assert comparison.status is Status.PASS, comparison.serialize()["models"]
    minilm = next(v for v in comparison.models if v.model_id == "all-MiniLM-L6-v2")
    assert minilm.metrics.max_abs_diff < 1e-5
    rounded = perturb_results(out, tmp_path / "tf32.parquet", "all-MiniLM-L6-v2", vectors=tf32_round)
    drifted = next(v for v in compare_files(DEFAULT_BASELINE, rounded).models if v.model_id == "all-MiniLM-L6-v2")
    assert drifted.status is Status.FAIL and drifted.metrics.max_abs_diff > 1e-5
