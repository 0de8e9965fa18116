"""Baselines written by older harness versions stay readable and comparable (``fixtures/baselines/legacy/``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from harness.baselines import list_baselines, provenance
from harness.cli import main
from harness.compare.comparator import compare_files
from harness.config.policy import choose_class, load_policy
from harness.results import SCHEMA_VERSION, ResultsFile, SideSettings
from harness.verdict import Status

from conftest import ROOT

LEGACY = ROOT / "fixtures" / "baselines" / "legacy"
V1 = LEGACY / "v1-tiny.parquet"
#: the frozen file's bytes: a legacy baseline must never be rewritten (add a new file for a new format)
V1_SHA256 = "ead4d8cf84b8c81f05dd649be3aa51651c00311e4145229a9e9a0fd021564ffa"
TINY = ROOT / "fixtures" / "baselines" / "tiny-cpu-float32.parquet"


def test_v1_file_is_frozen() -> None:
    assert hashlib.sha256(V1.read_bytes()).hexdigest() == V1_SHA256, (
        f"{V1} changed: legacy baselines are frozen; restore it (git checkout) and add a new file instead"
    )


def test_v1_file_loads() -> None:
    results = ResultsFile(V1)
    assert results.meta["schema_version"] == 1 <= SCHEMA_VERSION
    assert results.meta["harness_version"] == "0.1.0"
    ids, roles, vectors = results.embeddings("tiny-bi-encoder")
    assert vectors.shape == (747, 32) and vectors.dtype == np.float32
    assert set(roles) == {"document", "query"}
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    rerank = results.rerank("tiny-cross-encoder")
    assert len(rerank["score"]) == 1758 and np.isfinite(rerank["score"]).all()
    shown = provenance(V1)
    assert shown["baseline"]["reason"] and shown["fingerprint"]["device_type"] == "cpu"


def test_v1_baseline_compares_with_a_run_of_today(tiny_results: Path) -> None:
    comparison = compare_files(V1, tiny_results)
    assert comparison.status is Status.PASS, comparison.serialize()
    assert {m.model_id for m in comparison.models} == {"tiny-bi-encoder", "tiny-cross-encoder"}
    assert all(m.tolerance_class == "fp32" for m in comparison.models)


def test_v1_baseline_through_the_cli(tiny_results: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["compare", str(V1), str(tiny_results)]) == 0
    assert "harness compare: PASS" in capsys.readouterr().out
    assert main(["baseline", "diff", str(V1), str(TINY)]) == 0
    out = capsys.readouterr().out
    assert "harness baseline diff: PASS" in out and "harness 0.1.0" in out
    assert main(["baseline", "show", str(V1)]) == 0
    assert '"schema_version": 1' in capsys.readouterr().out


def test_legacy_directory_is_listed_apart() -> None:
    assert "v1-tiny" not in [b.name for b in list_baselines(ROOT / "fixtures" / "baselines")]
    assert [(b.name, b.status) for b in list_baselines(LEGACY)] == [("v1-tiny", "ok")]


def test_class_selection_reads_old_fingerprints() -> None:
    """Fingerprints of older files may lack ``device_type``: the device string is used instead."""
    policy = load_policy()
    old_cpu = SideSettings.of({"device": "cpu", "dtype": "float32"})
    assert choose_class(policy, old_cpu, SideSettings.of({"device": "cuda:0", "dtype": "float32"}))[0] == "cpu-vs-cuda"
    assert choose_class(policy, old_cpu, old_cpu)[0] == "fp32"
    v1 = SideSettings.of(ResultsFile(V1).fingerprint)
    assert choose_class(policy, v1, v1)[0] == "fp32"


def test_baseline_diff_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``harness baseline diff A B``: 0 when B is within tolerance of A, 1 on drift (explained), 2 on bad input."""
    from harness.baselines import create_baseline
    from harness.testing import add_noise_to_one, perturb_results

    noisy = perturb_results(TINY, tmp_path / "noisy.parquet", "tiny-bi-encoder", vectors=add_noise_to_one(4, 1e-3))
    create_baseline(noisy, tmp_path / "moved.parquet", reason="torch upgrade")
    create_baseline(TINY, tmp_path / "ref.parquet", reason="reference")
    report = tmp_path / "diff.json"
    assert main(["baseline", "diff", "ref", "moved", "--dir", str(tmp_path), "--json", str(report)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"A {tmp_path / 'ref.parquet'}: create ") and ": torch upgrade" in out
    assert "harness baseline diff: FAIL" in out and "FAIL tiny-bi-encoder (tolerance class fp32)" in out
    assert '"status": "fail"' in report.read_text()
    assert main(["baseline", "diff", "ref", "moved", "--dir", str(tmp_path), "--models", "tiny-cross-encoder"]) == 0
    capsys.readouterr()
    assert main(["baseline", "diff", "ref", "nope", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {tmp_path / 'nope.parquet'}: baseline 'nope' not found") and len(err.splitlines()) == 1


def test_v1_file_reads_through_the_typed_views() -> None:
    """Keys added since v1 (peak memory, encode settings, ...) are absent there: the views say None, not crash."""
    results = ResultsFile(V1)
    assert (results.run.device, results.run.dtype, results.run.batch_size) == ("cpu", "float32", 32)
    assert results.run.peak_rss_bytes is None and results.run.tf32_requested is None
    bi = results.records["tiny-bi-encoder"]
    assert bi.ok and bi.dim == 32 and bi.encode is None and bi.weights_sha256
    assert results.provenance is not None and results.provenance.reason == "reference: tiny models, CPU fp32"
    assert results.provenance.history == () and results.created_at == "2026-11-23T15:45:27+00:00"


# -- rerank pair ids: committed baselines keep theirs, and ids with '|' no longer collide -------------------------


def test_committed_baselines_hold_the_pair_ids_the_runner_writes_today() -> None:
    """Every rerank item id of every committed baseline (and the legacy v1 file) is exactly ``pair_item_id`` of
    its query and passage ids: the escaping changed nothing for them, so they compare with new runs as before."""
    from harness.results import pair_item_id

    files = sorted((ROOT / "fixtures" / "baselines").glob("*.parquet")) + [V1]
    checked = 0
    for path in files:
        results = ResultsFile(path)
        for model_id, record in results.meta["models"].items():
            if record.get("kind") != "cross-encoder" or record.get("status") != "ok":
                continue
            data = results.rerank(model_id)
            assert [pair_item_id(q, p) for q, p in zip(data["query_id"], data["passage_id"])] == list(data["item_id"])
            checked += len(data["item_id"])
    assert checked > 0


def test_ids_with_a_bar_stay_distinct_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """'a|b' + 'c' and 'a' + 'b|c' were both the item id 'a|b|c': the run exited 0 with an unusable file."""
    from harness.results import split_pair_item_id

    (tmp_path / "docs.jsonl").write_text('{"id": "c", "text": "a passage"}\n{"id": "b|c", "text": "another one"}\n'
                                         '{"id": "back\\\\slash", "text": "third"}\n', encoding="utf-8")
    (tmp_path / "queries.jsonl").write_text('{"id": "a|b", "text": "first query"}\n{"id": "a", "text": "second"}\n',
                                            encoding="utf-8")
    (tmp_path / "pairs.jsonl").write_text('{"query_id": "a|b", "passage_id": "c"}\n{"query_id": "a", "passage_id": "b|c"}\n'
                                          '{"query_id": "a", "passage_id": "c"}\n'
                                          '{"query_id": "a|b", "passage_id": "back\\\\slash"}\n',
                                          encoding="utf-8")
    (tmp_path / "harness.toml").write_text('[corpus]\ndocuments = "docs.jsonl"\nqueries = "queries.jsonl"\n'
                                           'pairs = "pairs.jsonl"\n', encoding="utf-8")
    out = tmp_path / "run.parquet"
    config = str(tmp_path / "harness.toml")
    assert main(["run", "--models", "tiny", "--device", "cpu", "--corpus", config, "--out", str(out)]) == 0
    results = ResultsFile(out)
    rerankers = [m for m, r in results.meta["models"].items() if r.get("kind") == "cross-encoder"]
    assert rerankers
    for model_id in rerankers:
        data = results.rerank(model_id)
        ids = list(data["item_id"])
        assert len(set(ids)) == len(ids) == 4, ids
        assert [split_pair_item_id(i) for i in ids] == list(zip(data["query_id"], data["passage_id"]))
    capsys.readouterr()
    assert main(["compare", str(out), str(out)]) == 0
