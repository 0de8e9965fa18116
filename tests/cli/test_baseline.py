"""Baselines are never overwritten silently: create refuses, --force keeps the previous file, update needs a reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.baselines import create_baseline, list_baselines, provenance
from harness.cli import main
from harness.errors import BaselineExists, BaselineMissing, HarnessError
from harness.results import ResultsFile
from harness.testing import add_noise_to_one, perturb_results


def test_create_refuses_overwrite_and_force_keeps_previous(tiny_results: Path, tmp_path: Path) -> None:
    target = tmp_path / "base.parquet"
    create_baseline(tiny_results, target, reason="first")
    first = target.read_bytes()
    with pytest.raises(BaselineExists, match="refusing to overwrite"):
        create_baseline(tiny_results, target)
    assert target.read_bytes() == first
    prov = create_baseline(tiny_results, target, force=True, reason="second")
    kept = Path(prov["previous_file"])
    assert kept.read_bytes() == first and kept.name.startswith("base.")
    assert ResultsFile(target).meta["baseline"]["history"][0]["reason"] == "first"


def test_update_needs_existing_baseline_and_reason(tiny_results: Path, tmp_path: Path) -> None:
    target = tmp_path / "b.parquet"
    with pytest.raises(BaselineMissing):
        create_baseline(tiny_results, target, action="update", reason="x")
    create_baseline(tiny_results, target)
    with pytest.raises(HarnessError, match="--reason"):
        create_baseline(tiny_results, target, action="update")
    noisy = perturb_results(tiny_results, tmp_path / "n.parquet", "tiny-bi-encoder", vectors=add_noise_to_one(0, 1e-3))
    prov = create_baseline(noisy, target, action="update", reason="accepted torch upgrade")
    assert prov["reason"] == "accepted torch upgrade" and prov["created_by"]
    shown = provenance(target)
    assert shown["baseline"]["action"] == "update" and shown["fingerprint"]["torch_version"]


def test_invalid_source_touches_nothing(tmp_path: Path, tiny_results: Path) -> None:
    target = tmp_path / "keep.parquet"
    create_baseline(tiny_results, target)
    before = target.read_bytes()
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"PAR1 garbage")
    with pytest.raises(HarnessError):
        create_baseline(junk, target, force=True)
    assert target.read_bytes() == before and len(list(tmp_path.glob("keep.*"))) == 1


def test_cli_create_list_show(tiny_results: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["baseline", "create", "mine", "--from", str(tiny_results), "--dir", str(tmp_path)]) == 0
    assert main(["baseline", "create", "mine", "--from", str(tiny_results), "--dir", str(tmp_path)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert main(["baseline", "list", "--dir", str(tmp_path)]) == 0
    assert "mine" in capsys.readouterr().out
    assert [b["name"] for b in list_baselines(tmp_path)] == ["mine"]
    assert main(["baseline", "show", "mine", "--dir", str(tmp_path)]) == 0
    assert '"weights_sha256"' in capsys.readouterr().out
