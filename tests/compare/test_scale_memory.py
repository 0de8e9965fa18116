"""Issue 14 follow-up: row groups in flight bounded by ``HARNESS_COMPARE_MEMORY_MB``, the certified / exactly
scored counts where the verdict is read, and ``harness baseline create`` filing the certificate."""

from __future__ import annotations

import threading
import weakref
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
from test_scale_topk import MODEL, _write

from harness.compare import certify as certs
from harness.compare import workers
from harness.compare.kinds import retrieval
from harness.config.environment import CompareSettings
from harness.results import ResultsFile
from harness.results.schema import ROW_GROUP_ROWS


@pytest.fixture()
def pair(tmp_path: Path) -> List[Path]:
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((5 * ROW_GROUP_ROWS + 100, 8)).astype(np.float32)
    cand = (vectors + rng.normal(0, 1e-7, vectors.shape)).astype(np.float32)
    return [_write(tmp_path / "base.parquet", vectors, 40), _write(tmp_path / "cand.parquet", cand, 40)]


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HARNESS_TOPK_CERTIFY_MIN_PAIRS", "1")
    return tmp_path / "cache"


@pytest.mark.parametrize("pairs", [1, 2])
def test_row_groups_in_flight_never_exceed_the_budget(pair: List[Path], monkeypatch: pytest.MonkeyPatch,
                                                      pairs: int) -> None:
    """Whole row groups alive at once (both sides, read ahead and in use), counted as the comparison streams:
    never more than the budget's pairs, however many row groups the files have (six here)."""
    pair_mb = 2 * ROW_GROUP_ROWS * 8 * 4 >> 20  # both sides' row groups at 8 float32 dims: 4 MiB
    budget = CompareSettings(threads=2, memory_mb=pairs * pair_mb + 1)  # + 1: the 40 query rows held count too
    lock, live, peak = threading.Lock(), [0], [0]
    read = ResultsFile.read_vectors

    def counted(self: ResultsFile, model_id: str, group: int, verified: bool = True) -> np.ndarray:
        rows = read(self, model_id, group, verified)
        owner = rows
        while isinstance(owner.base, np.ndarray):
            owner = owner.base
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])

        def freed() -> None:
            with lock:
                live[0] -= 1
        weakref.finalize(owner, freed)
        return rows

    monkeypatch.setattr(ResultsFile, "read_vectors", counted)
    from harness.compare.comparator import compare_files

    for _ in range(3):  # thread timing varies: the bound must hold every time
        peak[0] = 0
        verdict = compare_files(*pair, settings=budget).serialize()["models"][0]
        assert verdict["status"] == "pass"
        assert 1 <= peak[0] <= 2 * pairs, f"{peak[0]} row groups alive at once, budget {pairs} pair(s)"


def test_the_query_batch_held_counts_against_the_budget() -> None:
    pair = 2 * 65_536 * 384 * 4  # 384 float32 dims, both sides
    assert workers.pairs_in_flight(pair, 0, 512) == 2
    assert workers.pairs_in_flight(pair, 46_000 * 7168, 512) == 1  # a full batch: one pair
    assert workers.pairs_in_flight(pair, 10 << 30, 512) == 1  # never none
    assert workers.pairs_in_flight(pair, 0, 4096) == 21


def test_queries_per_pass_fill_what_one_row_group_pair_leaves() -> None:
    from harness.compare.kinds.retrieval import STATE_BYTES_PER_KEPT

    pair = 2 * 65_536 * 384 * 4
    per_query = 2 * 384 * 4 + STATE_BYTES_PER_KEPT * 21 * 3 + 64  # vectors + state of W = 21, 2 workers
    assert retrieval.queries_per_pass(per_query, pair, 512, 1024) == (320 << 20) // per_query  # ~46.8k
    assert retrieval.queries_per_pass(per_query, pair, 4096, 1024) == (3904 << 20) // per_query
    assert retrieval.queries_per_pass(per_query, pair, 64, 1024) == 1024  # the floor


def _two_comparisons(pair: List[Path]) -> Dict[str, Any]:
    from harness.certificates import file_certificates
    from harness.compare.comparator import compare_files

    file_certificates(pair[0])  # the explicit step (the judge files nothing)
    return compare_files(*pair).serialize()


def test_the_verdict_says_how_many_queries_were_certified(pair: List[Path], cache: Path) -> None:
    from harness.report.html import render_html
    from harness.report.matrix_report import MatrixReport
    from harness.report.text import render_comparison
    from harness.verdict import Comparison

    data = _two_comparisons(pair)
    (model,) = data["models"]
    topk = model["evidence"]["topk"]
    assert topk["certified"] > 0 and topk["certified"] + topk["scored_exactly"] == 40
    line = f"top-10: 40 queries, {topk['certified']} certified by the bound, {topk['scored_exactly']} scored exactly"
    assert line in render_comparison(Comparison.from_dict(data))
    report = MatrixReport.from_dict({"matrix": "m", "cells": [{"cell_id": "c1", "status": "pass",
                                                               "comparison": {"models": [model]}}]})
    assert f'<p class="note topk-decided">{line}</p>' in render_html(report)


def test_the_summary_markdown_says_how_many_queries_were_certified(pair: List[Path], cache: Path) -> None:
    from harness.report.markdown import _summary
    from harness.report.matrix_report import MatrixReport

    (model,) = _two_comparisons(pair)["models"]
    report = MatrixReport.from_dict({"matrix": "m", "cells": [{"cell_id": "c1", "status": "pass",
                                                               "comparison": {"models": [model]}}]})
    text = "\n".join(_summary(report))
    assert f"40 queries, {model['evidence']['topk']['certified']} certified by the bound" in text


def test_no_count_line_without_certified_queries(pair: List[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.compare.comparator import compare_files
    from harness.report.text import render_comparison

    monkeypatch.setenv("HARNESS_TOPK_CERTIFICATES", "0")
    assert "certified by the bound" not in render_comparison(compare_files(*pair))


def test_baseline_create_files_the_certificate(pair: List[Path], cache: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    """The first comparison against a new baseline is already the certified one."""
    from harness.cli import main
    from harness.compare.comparator import compare_files

    assert main(["baseline", "create", "big", "--from", str(pair[0]), "--dir", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert f"top-k certificate filed for {MODEL} (40 queries)" in out
    target = tmp_path / "b" / "big.parquet"
    assert certs.location(target, MODEL, 10).is_file()
    first = compare_files(target, pair[1]).serialize()["models"][0]
    assert first["evidence"]["topk"]["certified"] > 0


def test_baseline_create_files_nothing_for_a_small_baseline(pair: List[Path], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture) -> None:
    from harness.cli import main

    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))  # default threshold: 40 x 330k is small
    assert main(["baseline", "create", "small", "--from", str(pair[0]), "--dir", str(tmp_path / "b")]) == 0
    assert "certificate" not in capsys.readouterr().out
    assert not (tmp_path / "cache" / "topk-certificates").exists()


def test_baseline_create_with_bad_vectors_is_written_and_says_why_no_certificate(
        pair: List[Path], cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from harness.cli import main

    vectors = np.asarray(np.random.default_rng(1).standard_normal((2_000, 8)), dtype=np.float32)
    vectors[7, 3] = np.nan
    source = _write(tmp_path / "nan.parquet", vectors, 40)
    assert main(["baseline", "create", "nan", "--from", str(source), "--dir", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert "top-k certificate not filed:" in err and "non-finite" in err and "Traceback" not in err
    assert (tmp_path / "b" / "nan.parquet").exists()
