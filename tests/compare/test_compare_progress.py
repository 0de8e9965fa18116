"""A long comparison says how far it has come: each pass over a model's rows reports (``harness.compare.progress``)
and the CLI prints a line every HARNESS_PROGRESS_INTERVAL seconds, naming the pass, its queries and the time left."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import List

import numpy as np
import pytest
from test_scale_topk import MODEL, _write

from harness.cli.compare_progress import ComparePrinter
from harness.compare import progress
from harness.config.environment import CompareSettings
from harness.results import schema


@pytest.fixture()
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> List[Path]:
    monkeypatch.setattr(schema, "ROW_GROUP_ROWS", 1000)  # ten row groups: ten steps per pass
    rng = np.random.default_rng(4)
    vectors = rng.standard_normal((10_000, 8)).astype(np.float32)
    cand = (vectors + rng.normal(0, 1e-7, vectors.shape)).astype(np.float32)
    return [_write(tmp_path / "base.parquet", vectors, 40), _write(tmp_path / "cand.parquet", cand, 40)]


def _printed(files: List[Path], **settings: int) -> List[str]:
    from harness.compare.comparator import compare_files

    out = io.StringIO()
    compare_files(*files, settings=CompareSettings(listener=ComparePrinter(out, interval_s=1e-9), **settings))
    return out.getvalue().splitlines()


def test_each_pass_reports_its_rows_until_all_are_done(files: List[Path]) -> None:
    lines = _printed(files)
    assert lines, "no progress reported"
    assert all(line.startswith(f"comparing {MODEL}: pass 1/1: 40 queries (scored exactly): ") for line in lines)
    assert lines[-1].split(": ")[-1].startswith("10,000 / 10,000 rows (100%)")


def test_query_batches_are_named_pass_by_pass(files: List[Path]) -> None:
    batches = {"memory_mb": 0, "min_queries_per_pass": 15}  # 40 queries: passes of 15, 15, 10
    passes = {line.split(": ")[1] for line in _printed(files, **batches)}
    assert passes == {"pass 1/3", "pass 2/3", "pass 3/3"}, passes
    text = "\n".join(_printed(files, **batches))
    assert "pass 2/3: queries 16-30 of 40 (scored exactly): 10,000 / 10,000 rows (100%)" in text


def test_nothing_is_tracked_without_a_listener() -> None:
    assert progress.tracker(None, MODEL, "pass", 10) is None
    assert progress.tracker(lambda event: None, MODEL, "pass", 10) is not None


def test_the_cli_prints_progress_on_stderr_only_past_the_interval(files: List[Path]) -> None:
    command = [sys.executable, "-m", "harness", "compare", str(files[0]), str(files[1]), "--json", "-"]
    quick = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert quick.returncode == 0 and "comparing " not in quick.stderr  # default 30 s: a second is silent
    env = {**os.environ, "HARNESS_PROGRESS_INTERVAL": "0.000001"}
    chatty = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert chatty.returncode == 0 and chatty.stdout.lstrip().startswith("{")  # the JSON alone on stdout
    assert f"comparing {MODEL}: pass 1/1: 40 queries (scored exactly):" in chatty.stderr
