"""Shared fixtures: one real run of the tiny models per test session (seconds), reused by many tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Parser fuzzing (tests marked ``fuzz``) runs a small budget in the suite and a large one in ``nox -s fuzz``
# (HYPOTHESIS_PROFILE=fuzz). Fuzz tests take their budget from the profile: no max_examples of their own.
settings.register_profile("suite", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=int(os.environ.get("HARNESS_FUZZ_EXAMPLES", "5000")), deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))


def run_tiny(out: Path, **overrides) -> Path:
    """Run the runner on the tiny models in-process and return the results path."""
    from harness.config.corpus import DEFAULT_CORPUS_DIR
    from harness.config.registry import load_registry
    from harness.run.runner import RunOptions, run

    options = RunOptions(out=out, corpus_dir=DEFAULT_CORPUS_DIR, registry=load_registry(), models=["tiny"], device="cpu")
    options = RunOptions(**{**options.__dict__, **overrides})
    summary = run(options)
    assert summary.ok, summary.reasons
    return summary.path


@pytest.fixture(scope="session")
def tiny_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_tiny(tmp_path_factory.mktemp("tiny") / "tiny.parquet")


@pytest.fixture(scope="session")
def tiny_results_again(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, independent run with a different batch size: real run-to-run and batch drift."""
    return run_tiny(tmp_path_factory.mktemp("tiny2") / "tiny-bs1.parquet", batch_size=1)


def find_chromium() -> Optional[str]:
    """A headless-capable Chromium on PATH (the HTML report and docs site render tests), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def pid_gone(pid: int) -> bool:
    """No process ``pid`` any more (a server the harness started was stopped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False
