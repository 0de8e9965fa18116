"""The retrieval scenarios in the verdict (issue #25, part 2): computed by the comparator over the files, the
same on every run, serialized and read back, reported (never gating), and shown by every renderer; ``--index``
and ``--id-map`` on the command line, a mismatch one line and exit 2."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest

from harness.cli import main
from harness.compare.comparator import compare_files
from harness.config.project import IndexSettings
from harness.report import scenario_lines
from harness.report.html import render_html
from harness.report.junit import render_junit
from harness.report.markdown import render_markdown
from harness.report.matrix_report import build_matrix_report
from harness.report.tables import verdicts_table
from harness.report.text import render_comparison
from harness.results import ResultsFile
from harness.testing import perturb_results
from harness.verdict import Comparison, ModelVerdict, RetrievalScenarios, Status

from conftest import ROOT

BASE = ROOT / "fixtures" / "baselines" / "default-cpu-float32.parquet"
MODEL = "all-MiniLM-L6-v2"


def _moved(tmp: Path, role: str, sigma: float, name: str) -> Path:
    """The baseline with N(0, sigma) added to the vectors of the rows of ``role`` only (then unit length)."""
    roles = ResultsFile(BASE).embeddings(MODEL)[1]

    def move(v: np.ndarray) -> np.ndarray:
        noise = np.random.default_rng(0).normal(0, sigma, v.shape).astype(v.dtype)
        v[roles == role] += noise[roles == role]
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    return perturb_results(BASE, tmp / name, MODEL, vectors=move)


@pytest.fixture(scope="module")
def moved_documents(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _moved(tmp_path_factory.mktemp("scen"), "document", 0.02, "docs.parquet")


def _scenarios(comparison: Comparison) -> RetrievalScenarios:
    found = {m.model_id: m for m in comparison.models}[MODEL].scenarios
    assert found is not None
    return found


def test_moved_documents_keep_the_index_and_it_does_not_gate(moved_documents: Path) -> None:
    """Only the documents moved: keeping the old index (new queries = old queries here) keeps every result,
    re-embedding everything does not; the advice is to keep the index, the verdict's status stays its checks'."""
    comparison = compare_files(BASE, moved_documents, tolerance_class="fp32")
    found = _scenarios(comparison)
    shares = {s.key: (s.same_order, s.same_set) for s in found.items}
    assert shares["keep_index"] == (1.0, 1.0)
    assert shares["reembed"][0] is not None and shares["reembed"][0] < 1.0
    assert found.advice == "keep your index" and found.scenario == "keep_index"
    verdict = {m.model_id: m for m in comparison.models}[MODEL]
    assert verdict.status is Status.FAIL  # the checks' verdict (re-embed everything), not the advice's
    assert dataclasses.replace(verdict, scenarios=None).status is verdict.status
    assert shares["index"] == (None, None)  # no [index]: not run, with the reason
    assert "no [index] configured" in found.line + found.details


def test_moved_queries_advise_neither(tmp_path: Path) -> None:
    """The queries moved: keeping the index cannot help; under fp32 (100% required) neither is within."""
    found = _scenarios(compare_files(BASE, _moved(tmp_path, "query", 0.05, "q.parquet"), tolerance_class="fp32"))
    assert found.advice == "neither is within the policy"
    assert min(found.order_margin, found.set_margin) < 0
    assert "misses" in found.line


def test_deterministic_and_round_trip(moved_documents: Path) -> None:
    """The same scenarios on every run, through an index too, and a JSON verdict reads back equal."""
    flat = IndexSettings(type="flat")
    one = compare_files(BASE, moved_documents, tolerance_class="bf16", index=flat)
    two = compare_files(BASE, moved_documents, tolerance_class="bf16", index=flat)
    assert _scenarios(one) == _scenarios(two)
    through = {s.key: s for s in _scenarios(one).items}["index"]
    keep = {s.key: s for s in _scenarios(one).items}["keep_index"]
    assert (through.same_order, through.same_set) == (keep.same_order, keep.same_set)  # a Flat index is exact
    assert through.recall == 1.0
    data = json.loads(json.dumps(one.serialize()))
    assert Comparison.from_dict(data).serialize() == one.serialize()
    assert Comparison.from_dict(data).models[0].scenarios == one.models[0].scenarios or one.models[0].scenarios is None


def test_served_line_asks_about_the_servers_queries() -> None:
    found = RetrievalScenarios(k=10, queries=5, min_order=0.5, min_set=0.85, advice="keep your index",
                               scenario="keep_index", order_margin=0.1, set_margin=0.15, served=True)
    assert found.line.startswith("can the server's queries be used against the library-built index? yes")
    assert not dataclasses.replace(found, served=False).line.startswith("can the server's")


def test_every_renderer_shows_the_line(moved_documents: Path) -> None:
    comparison = compare_files(BASE, moved_documents, tolerance_class="fp32")
    line = _scenarios(comparison).line
    report = build_matrix_report("m", str(BASE), [{"cell_id": "cell_a", "params": {}, "comparison": comparison.serialize(),
                                                   "status": comparison.status.value}])
    assert f"- `cell_a` / `{MODEL}`:" in render_markdown(report)  # identifiers as code, not escaped prose
    assert line in render_comparison(comparison)
    assert line in render_comparison(Comparison.from_dict(json.loads(json.dumps(comparison.serialize()))))
    assert line.replace("<", "\\<").replace(">", "\\>") in render_markdown(report) or line in render_markdown(report)
    html = render_html(report)
    assert "Must I re-embed?" in html and "keep your index" in html
    junit = render_junit(report)
    assert f'name="scenarios.{MODEL}"' in junit and "keep your index" in junit
    rows = [r for r in verdicts_table(report).to_pylist() if r["check"].startswith("scenario.")]
    assert {r["check"] for r in rows} >= {"scenario.keep_index.same_order", "scenario.reembed.same_set"}
    assert all(r["passed"] is None for r in rows)


def test_a_verdict_without_scenarios_renders_none() -> None:
    plain = ModelVerdict(model_id="x", kind="cross-encoder", status=Status.PASS, tolerance_class="fp32")
    assert scenario_lines.text_lines([plain]) == [] and scenario_lines.rows([plain]) == []


def _faiss_index(tmp: Path, dim: int, metric: Any, n: int) -> Dict[str, Path]:
    faiss = pytest.importorskip("faiss")
    index = faiss.IndexFlat(dim, metric)
    index.add(np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32))
    faiss.write_index(index, str(tmp / "index.faiss"))
    return {"index": tmp / "index.faiss", "ids": tmp / "ids.json"}


@pytest.mark.parametrize("problem", ["dimension", "metric", "id map"])
def test_index_mismatch_is_one_line_and_exit_2(tmp_path: Path, moved_documents: Path, problem: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    faiss = pytest.importorskip("faiss")
    ids, _, vectors = ResultsFile(BASE).embeddings(MODEL)
    roles = ResultsFile(BASE).embeddings(MODEL)[1]
    doc_ids = [str(i) for i in ids[roles == "document"]]
    dim = vectors.shape[1] + (1 if problem == "dimension" else 0)
    metric = faiss.METRIC_L2 if problem == "metric" else faiss.METRIC_INNER_PRODUCT
    files = _faiss_index(tmp_path, dim, metric, len(doc_ids))
    files["ids"].write_text(json.dumps(doc_ids[:-1] + (["nope"] if problem == "id map" else doc_ids[-1:])))
    code = main(["compare", str(BASE), str(moved_documents), "--index", str(files["index"]),
                 "--id-map", str(files["ids"])])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert {"dimension": "dimensional", "metric": "ranks by L2", "id map": "unknown to the corpus"}[problem] in err[0]


def test_index_needs_its_id_map(moved_documents: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(BASE), str(moved_documents), "--index", str(BASE)]) == 2
    assert "--index and --id-map go together" in capsys.readouterr().err


def test_bring_your_own_index_through_the_cli(tmp_path: Path, moved_documents: Path) -> None:
    faiss = pytest.importorskip("faiss")
    ids, roles, vectors = ResultsFile(BASE).embeddings(MODEL)
    docs = vectors[roles == "document"].astype(np.float32)
    index = faiss.IndexFlat(docs.shape[1], faiss.METRIC_INNER_PRODUCT)
    index.add(docs / np.linalg.norm(docs, axis=1, keepdims=True))
    faiss.write_index(index, str(tmp_path / "own.faiss"))
    (tmp_path / "ids.json").write_text(json.dumps([str(i) for i in ids[roles == "document"]]))
    code = main(["compare", str(BASE), str(moved_documents), "--index", str(tmp_path / "own.faiss"), "--id-map",
                 str(tmp_path / "ids.json"), "--class", "bf16", "--json", str(tmp_path / "v.json")])
    assert code in (0, 1)
    data = json.loads((tmp_path / "v.json").read_text())
    model = next(m for m in data["models"] if m["model_id"] == MODEL)
    through = next(s for s in model["scenarios"]["items"] if s["key"] == "index")
    assert "index file" in through["title"] and through["same_order"] == 1.0


def test_a_served_candidate_is_asked_about_its_queries(tmp_path: Path) -> None:
    """A candidate whose model was served (``backend = "http"``): the comparator marks the scenarios served."""

    def served(meta: Dict[str, Any]) -> Dict[str, Any]:
        meta["models"][MODEL]["backend"] = "http"
        return meta

    cand = perturb_results(BASE, tmp_path / "served.parquet", MODEL, vectors=lambda v: v, meta_update=served)
    found = _scenarios(compare_files(BASE, cand, tolerance_class="fp32"))
    assert found.served and found.line.startswith("can the server's queries be used against the library-built index?")
    assert not _scenarios(compare_files(BASE, BASE)).served


def test_a_missing_index_file_is_refused_before_anything_runs(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ids.json").write_text("[]")
    code = main(["check", "--index", str(tmp_path / "nope.faiss"), "--id-map", str(tmp_path / "ids.json"),
                 "--out", str(tmp_path / "run.parquet")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "nope.faiss: no such file, or not a regular file" in err[0]
    assert not (tmp_path / "run.parquet").exists()


def test_harness_scenarios_0_skips_them(moved_documents: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``HARNESS_SCENARIOS=0`` (``CompareSettings.scenarios``) skips the scenarios and changes nothing else."""
    from harness.config.environment import CompareSettings

    with_them = compare_files(BASE, moved_documents, tolerance_class="fp32")
    monkeypatch.setenv("HARNESS_SCENARIOS", "0")
    assert CompareSettings.from_environment().scenarios is False
    without = compare_files(BASE, moved_documents, tolerance_class="fp32")
    for a, b in zip(with_them.models, without.models):
        assert b.scenarios is None and dataclasses.replace(a, scenarios=None) == b
    assert _scenarios(with_them) is not None
