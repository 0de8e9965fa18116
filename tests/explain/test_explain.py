"""`harness explain`: fingerprint differences become named factors with their known drift."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.explain import explain, factor_of, load_magnitudes
from harness.testing import perturb_results, tf32_round
from harness.verdict import EnvChange


def _env_changed(meta: dict) -> dict:
    fp = dict(meta["fingerprint"])
    fp["packages"] = {**fp["packages"], "transformers": "4.41.2"}
    fp["tf32_matmul"] = True
    fp["device_type"] = "cuda"
    run = {**meta["run"], "batch_size": 1}
    return {**meta, "fingerprint": fp, "run": run}


def test_factors_named_and_ranked_by_known_drift(tiny_results: Path, tmp_path: Path) -> None:
    cand = perturb_results(tiny_results, tmp_path / "c.parquet", "tiny-bi-encoder", vectors=tf32_round, meta_update=_env_changed)
    factors = {f.name: f for f in explain(tiny_results, cand)}
    assert {"transformers", "tf32", "device", "batch_size"} <= set(factors)
    order = [f.name for f in explain(tiny_results, cand)]
    assert order[0] == "tf32"
    observed = 2.4e-4
    assert factors["tf32"].can_explain(observed) is True
    assert factors["batch_size"].can_explain(observed) is False


def test_identical_runs_have_no_factors(tiny_results: Path) -> None:
    assert explain(tiny_results, tiny_results) == []


def test_every_mapped_factor_has_a_measured_entry() -> None:
    table = load_magnitudes()
    for name, entry in table.items():
        assert entry.source, name
    for key in ("packages.torch", "dtype", "tf32_matmul", "models.m.attn_implementation", "models.m.weights_sha256",
                "run.batch_size", "num_threads", "device_type", "packages.sentence-transformers"):
        factor = factor_of(EnvChange(key=key, baseline="a", candidate="b"))
        assert factor in table, key
    assert factor_of(EnvChange(key="models.m.loaded_dtype", baseline="float32", candidate="bfloat16")) == "dtype_bf16"


def test_cli_explain(tiny_results: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cand = perturb_results(tiny_results, tmp_path / "c.parquet", "tiny-bi-encoder", vectors=tf32_round, meta_update=_env_changed)
    assert main(["explain", str(tiny_results), str(cand)]) == 0
    out = capsys.readouterr().out
    assert "tf32" in out and "4.41.2" in out and "no (too small)" in out
