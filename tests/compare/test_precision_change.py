"""A precision downgrade never passes silently (``policy.choose_class``).

A candidate that ran at lower precision than its baseline (bf16 against fp32) is judged at the baseline's class by
default; the verdict names the change and how to judge it at its own class (``--class`` or the policy's
``precision_change = "candidate"``), and when it is judged at its own class the status line says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import pytest

from harness.cli import main
from harness.compare.comparator import compare_files
from harness.config.policy import choose_class, load_policy
from harness.results import SideSettings
from harness.testing import bf16_round, perturb_results

from conftest import ROOT

TINY = ROOT / "fixtures" / "baselines" / "tiny-cpu-float32.parquet"
BI = "tiny-bi-encoder"


def _as_bf16(meta: Dict[str, Any]) -> Dict[str, Any]:
    meta = json.loads(json.dumps(meta))
    meta.pop("schema_version", None)
    meta["fingerprint"]["dtype"] = meta["run"]["dtype"] = "bfloat16"
    for info in meta["models"].values():
        info["loaded_dtype"] = "bfloat16"
    return meta


@pytest.fixture(scope="module")
def bf16_candidate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny baseline's bi-encoder vectors rounded to bfloat16, recorded as a bfloat16 run."""
    out = tmp_path_factory.mktemp("bf16") / "bf16.parquet"
    return perturb_results(TINY, out, BI, vectors=bf16_round, meta_update=_as_bf16)


def test_a_downgrade_is_judged_at_the_baselines_class_and_named(bf16_candidate: Path) -> None:
    comparison = compare_files(TINY, bf16_candidate, models=[BI])
    verdict = comparison.models[0]
    assert verdict.tolerance_class == "fp32" and not verdict
    assert "candidate ran at bf16, the baseline at fp32" in verdict.precision_change
    assert "--class bf16" in verdict.precision_change and 'precision_change = "candidate"' in verdict.precision_change
    assert any(note.startswith(f"{BI}: precision change") for note in comparison.notes)


def test_its_own_class_only_when_asked_and_the_status_line_says_so(bf16_candidate: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    assert main(["compare", str(TINY), str(bf16_candidate), "--models", BI]) == 1
    assert capsys.readouterr().out.splitlines()[0].startswith("harness compare: FAIL at fp32")
    assert main(["compare", str(TINY), str(bf16_candidate), "--models", BI, "--class", "bf16"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("harness compare: PASS at bf16") and "(forced by --class)" in out
    policy = tmp_path / "policy.toml"
    policy.write_text('[policy]\nprecision_change = "candidate"\n', encoding="utf-8")
    assert main(["compare", str(TINY), str(bf16_candidate), "--models", BI, "--policy", str(policy)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("harness compare: PASS at bf16") and "its own precision" in out


def test_an_upgrade_or_equal_precision_carries_no_note() -> None:
    policy = load_policy()
    fp32, bf16 = SideSettings("cpu", "float32"), SideSettings("cpu", "bfloat16")
    assert choose_class(policy, fp32, fp32) == ("fp32", "")
    assert choose_class(policy, bf16, bf16) == ("bf16", "")
    assert choose_class(policy, bf16, fp32) == ("bf16", "")  # a bf16 baseline sets the looser class
    assert choose_class(policy, fp32, bf16)[0] == "fp32"


def test_a_misspelt_setting_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[policy]\nprecision_change = "candiate"\n', encoding="utf-8")
    assert main(["compare", str(TINY), str(TINY), "--policy", str(policy)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "precision_change" in err and str(policy) in err
