"""Numeric settings from environment variables: a bad value is bad input (exit 2, one line naming the
variable), never a traceback from the module that reads it; and no setting can ask for unbounded resources."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.compare.kinds.source import FilePair
from harness.config.environment import CompareSettings
from harness.errors import HarnessError
from harness.results import ResultsFile

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / "fixtures" / "baselines" / "tiny-cpu-float32.parquet"


@pytest.mark.parametrize("variable, value, problem", [
    ("HARNESS_COMPARE_MEMORY_MB", "abc", "expected a whole number"),
    ("HARNESS_COMPARE_MEMORY_MB", "0", "must be at least 16"),
    ("HARNESS_COMPARE_MEMORY_MB", "-5", "must be at least 16"),
    ("HARNESS_COMPARE_THREADS", "two", "expected a whole number"),
    ("HARNESS_TOPK_CERTIFY_MIN_PAIRS", "1e9", "expected a whole number"),
])
def test_a_bad_setting_is_one_line_and_exit_2(variable: str, value: str, problem: str) -> None:
    env = {**os.environ, variable: value}
    done = subprocess.run([sys.executable, "-m", "harness", "compare", str(BASELINE), str(BASELINE)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [f"error: environment variable {variable}={value!r}: {problem}" + lines[0].split(problem, 1)[1]]
    assert "Traceback" not in done.stderr and variable in lines[0] and problem in lines[0]


def test_a_good_setting_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_COMPARE_MEMORY_MB", " 64 ")
    monkeypatch.setenv("HARNESS_TOPK_CERTIFICATES", "0")
    assert CompareSettings.from_environment() == CompareSettings(memory_mb=64, certificates=False)


def test_settings_are_read_when_a_comparison_starts_not_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable set after the comparator was imported still applies (nothing is read at import)."""
    results = ResultsFile(BASELINE)
    model = next(m for m, info in results.meta["models"].items() if info.get("kind") == "bi-encoder")
    for threads in ("3", "1"):
        monkeypatch.setenv("HARNESS_COMPARE_THREADS", threads)
        assert FilePair(results, results, model).threads == int(threads)


@pytest.mark.fuzz
@given(threads=st.text(max_size=12), memory=st.text(max_size=12), certificates=st.text(max_size=4))
def test_any_environment_gives_settings_or_one_harness_error(threads: str, memory: str, certificates: str) -> None:
    """Whatever the variables hold, the comparison's settings are the numbers they name (defaults when blank) or
    one ``HarnessError`` naming the variable: never another exception from deep inside the comparator."""
    values = {"HARNESS_COMPARE_THREADS": threads, "HARNESS_COMPARE_MEMORY_MB": memory,
              "HARNESS_TOPK_CERTIFICATES": certificates}
    if any("\0" in value for value in values.values()):
        return  # not representable in an environment
    with mock.patch.dict(os.environ, values):
        try:
            got = CompareSettings.from_environment()
        except HarnessError as err:
            assert str(err).startswith("environment variable HARNESS_COMPARE_") and "\n" not in str(err)
            return
    assert got.threads == (int(threads) if threads.strip() else 0) and got.workers >= 1
    assert got.memory_mb == (int(memory) if memory.strip() else 512) >= 16
    assert got.certificates == (certificates.strip() != "0")
