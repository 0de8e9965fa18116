"""What a verdict says beyond pass/fail (issue #13): numbers with the digits that matter, and retrieval that
could not be judged said so, with ad hoc corpora able to bring queries (a ``role`` column or ``--queries``)."""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.cli import main
from harness.compare.kinds import ArrayPair, judge_embeddings, judge_rerank
from harness.compare.kinds.common import share, significant
from harness.config.corpus import load_corpus
from harness.config.corpus.user import DataFiles
from harness.config.policy import load_policy
from harness.errors import CorpusError
from harness.report.format import fmt

from conftest import ROOT

MODELS = ROOT / "fixtures" / "models"


# -- significant digits ----------------------------------------------------------------------------------------


def _rotated(cosine: float, dim: int = 8) -> tuple:
    """Two unit vectors at exactly ``cosine`` (in float64) as the second row of two 2-row float32 arrays."""
    base = np.zeros((2, dim), np.float64)
    base[:, 0] = 1.0
    cand = base.copy()
    cand[1, 0], cand[1, 1] = cosine, math.sqrt(1 - cosine * cosine)
    return base.astype(np.float32), cand.astype(np.float32)


def test_a_min_cosine_just_below_its_limit_keeps_its_digits_in_the_reason() -> None:
    base, cand = _rotated(0.99999719)
    tol = load_policy().tolerance("m", "fp32")
    verdict = judge_embeddings("m", tol, ArrayPair(["a", "b"], ["document", "document"], base, cand))
    observed = verdict.metrics.min_cosine
    assert 0.9999970 < observed < 0.9999974 and not verdict
    shown = re.search(r"min_cosine (\S+) \(limit >= (\S+)\)", verdict.reason)
    assert shown is not None, verdict.reason
    assert shown.group(1) != "1" and float(shown.group(1)) < float(shown.group(2)) == tol.min_cosine
    assert abs(float(shown.group(1)) - observed) < 5e-9  # the distance from 1 (2.8e-6) keeps 3 digits


def test_report_numbers_near_one_keep_their_digits() -> None:
    assert fmt(0.99999719) == "0.99999719" and fmt(1.0000003) == "1.0000003" and fmt(1.0) == "1"
    assert fmt(0.933) == "0.933" and fmt(2.44e-4) == "2.44e-04" and fmt(12.5) == "12.5"


@settings(max_examples=300, deadline=None)
@given(value=st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), limit=st.floats(min_value=-1e6, max_value=1e6))
def test_significant_keeps_the_order_against_the_limit_and_never_shows_a_false_integer(value: float, limit: float) -> None:
    shown, other = float(significant(value, limit)), float(significant(limit, value))
    assert (shown > other) - (shown < other) == (value > limit) - (value < limit)
    if not float(value).is_integer():
        assert not shown.is_integer() or value == 0
    assert abs(shown - value) <= 5e-3 * abs(value) + 1e-300  # at least 3 significant digits


# -- retrieval that cannot be judged ---------------------------------------------------------------------------


def test_a_corpus_without_queries_says_retrieval_was_not_judged() -> None:
    rng = np.random.default_rng(0)
    base = rng.standard_normal((4, 8)).astype(np.float32)
    tol = load_policy().tolerance("m", "fp32")
    verdict = judge_embeddings("m", tol, ArrayPair(list("abcd"), ["document"] * 4, base, base.copy()))
    assert verdict and verdict.metrics.topk_not_judged == "no queries"
    assert verdict.evidence.to_json()["topk_not_judged"] == {"why": "no queries", "queries": 0, "documents": 4}
    assert "topk" not in verdict.evidence.to_json()  # the renderers' top-k evidence stays what it was: absent
    moved = base.copy()
    moved[0, 0] += 1e-3
    failed = judge_embeddings("m", tol, ArrayPair(list("abcd"), ["document"] * 4, base, moved))
    assert not failed and failed.reason.endswith("retrieval not judged: no queries")
    with_queries = judge_embeddings("m", tol, ArrayPair(list("abcd"), ["document"] * 3 + ["query"], base, base.copy()))
    assert with_queries.metrics.topk_not_judged is None and with_queries.metrics.topk_order_agreement == 1.0


def _files(tmp_path: Path) -> tuple:
    docs = tmp_path / "docs.csv"
    docs.write_text("id,text\nd1,the cat sat on the mat\nd2,dogs bark at night\nd3,fish swim in the sea\n")
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("id,text,role\nd1,the cat sat on the mat,\nd2,dogs bark at night,document\n"
                     "d3,fish swim in the sea,\nq1,which animal barks,query\n")
    queries = tmp_path / "queries.csv"
    queries.write_text("id,text\nq1,which animal barks\nq2,what swims\n")
    return docs, mixed, queries


def test_an_ad_hoc_corpus_takes_queries_from_a_role_column_or_a_second_file(tmp_path: Path) -> None:
    docs, mixed, queries = _files(tmp_path)
    plain = load_corpus(docs)
    assert len(plain.documents) == 3 and plain.queries == ()
    split = load_corpus(mixed)
    assert [t.id for t in split.documents] == ["d1", "d2", "d3"] and [t.id for t in split.queries] == ["q1"]
    both = load_corpus(DataFiles(docs, queries))
    assert [t.id for t in both.queries] == ["q1", "q2"] and len(both.documents) == 3
    assert len({plain.sha256, split.sha256, both.sha256}) == 3  # queries are part of what two runs must share
    bad = tmp_path / "bad.csv"
    bad.write_text("id,text,role\nd1,x,document\nq1,y,query\nz1,z,admin\n")
    with pytest.raises(CorpusError, match="'role' must be 'document', 'query' or empty, got 'admin'"):
        load_corpus(bad)
    with pytest.raises(CorpusError, match="--queries needs --corpus to be a data file"):
        load_corpus(DataFiles(ROOT / "fixtures" / "corpus", queries))


@pytest.mark.slow
def test_harness_run_with_queries_gets_top_k_checks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    docs, _, queries = _files(tmp_path)
    model = str(MODELS / "tiny-bi-encoder")
    plain, ranked = tmp_path / "plain.parquet", tmp_path / "ranked.parquet"
    assert main(["run", "--corpus", str(docs), "--model", model, "--device", "cpu", "--out", str(plain)]) == 0
    assert main(["run", "--corpus", str(docs), "--queries", str(queries), "--model", model, "--device", "cpu",
                 "--out", str(ranked)]) == 0
    capsys.readouterr()
    copy = tmp_path / "plain-copy.parquet"
    shutil.copy(plain, copy)
    assert main(["compare", str(plain), str(copy)]) == 0
    assert "retrieval not judged: no queries" in capsys.readouterr().out
    again = tmp_path / "ranked-copy.parquet"
    shutil.copy(ranked, again)
    assert main(["compare", str(ranked), str(again)]) == 0
    out = capsys.readouterr().out
    assert "retrieval not judged" not in out and "100.0%" in out


# -- every report says retrieval was not judged ----------------------------------------------------------------


def _no_query_report(with_queries: bool = False) -> Any:
    """A one-cell matrix report of a bi-encoder compared over a corpus without queries (or with one)."""
    from harness.report.matrix_report import build_matrix_report
    from harness.verdict import Comparison

    base = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    roles = ["document"] * 3 + ["query"] if with_queries else ["document"] * 4
    verdict = judge_embeddings("m", load_policy().tolerance("m", "fp32"), ArrayPair(list("abcd"), roles, base, base.copy()))
    comparison = Comparison(baseline="b.parquet", candidate="c.parquet", policy="built-in", models=[verdict])
    cell = {"cell_id": "c1", "status": "pass", "comparison": comparison.serialize()}
    return build_matrix_report("m", "b.parquet", [cell])


def test_markdown_html_and_junit_say_retrieval_was_not_judged() -> None:
    from harness.report.html import render_html
    from harness.report.junit import render_junit
    from harness.report.markdown import render_markdown

    report = _no_query_report()
    summary_row = next(line for line in render_markdown(report).splitlines() if line.startswith("| `c1`"))
    assert "retrieval not judged: no queries" in summary_row
    assert '<p class="note not-judged">retrieval not judged: no queries</p>' in render_html(report)
    case = ET.fromstring(render_junit(report)).find("testsuite/testcase")
    assert case is not None and "retrieval not judged: no queries" in case.findtext("system-out", "")
    judged = _no_query_report(with_queries=True)  # a corpus with a query: the agreement, no note
    markdown = render_markdown(judged)
    assert "retrieval not judged" not in markdown and "100.0% (top-3 order)" in markdown
    assert "not-judged" not in render_html(judged) and "retrieval not judged" not in render_junit(judged)


# -- counts and limits printed on their side -------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(count=st.integers(min_value=0, max_value=10**7), extra=st.integers(min_value=0, max_value=10**7))
def test_a_share_never_hides_a_count(count: int, extra: int) -> None:
    total = count + extra
    shown = share(count, total)
    assert shown.startswith(f"{count} of {total}")
    if total:
        percent = float(re.fullmatch(r".*\((\S+)%\)", shown).group(1))
        assert (percent > 0) == (count > 0) and (percent < 100) == (count < total)
        assert abs(percent - 100 * count / total) <= 5e-3 * 100 * count / total + 1e-12


@settings(max_examples=200, deadline=None)
@given(limit=st.floats(min_value=1e-9, max_value=10), ratio=st.floats(min_value=0.999, max_value=1.001),
       rtol=st.sampled_from([0.0, 1e-7, 1e-4]))
def test_a_reason_never_prints_a_score_difference_on_the_other_side_of_its_limit(limit: float, ratio: float, rtol: float) -> None:
    tol = dataclasses.replace(load_policy().tolerance("m", "fp32"), score_atol=limit, score_rtol=rtol)
    observed = limit * ratio
    base = np.array([0.0, 0.0, 0.0])
    verdict = judge_rerank("m", tol, ["p1", "p2", "p3"], None, base, np.array([observed, 0.0, 0.0]))
    check = verdict.checks[0]
    if check.passed:
        return
    head = re.match(r"max_score_diff (\S+) \(limit <= (\S+)\): (\d+) of 3 \((\S+)%\) elements exceed atol=(\S+) "
                    r"\+ rtol=(\S+)\*\|baseline\|", verdict.reason)
    assert head is not None, verdict.reason
    shown_obs, shown_limit, atol_shown = float(head.group(1)), float(head.group(2)), float(head.group(5))
    order = (check.observed > limit) - (check.observed < limit)
    assert (shown_obs > shown_limit) - (shown_obs < shown_limit) == order
    assert (shown_obs > atol_shown) - (shown_obs < atol_shown) == order
    assert float(head.group(6)) == rtol and float(head.group(4)) > 0


def test_an_offender_cosine_is_not_rounded_to_one() -> None:
    base = np.zeros((2, 8), np.float64)
    base[:, 0] = 1.0
    cand = base.copy()
    cand[1, 1] = 1e-6  # cosine 1 - 5e-13: ":.9f" printed it as 1.000000000
    verdict = judge_embeddings("m", load_policy().tolerance("m", "fp32"), ArrayPair(["a", "b"], ["document"] * 2, base, cand))
    (offender,) = verdict.offenders
    shown = float(offender.detail.removeprefix("cosine "))
    assert shown < 1 and abs(shown - verdict.metrics.min_cosine) < 1e-15, offender.detail
