"""Project configs (harness.toml / [tool.harness]), user corpora (JSONL / CSV / TSV / parquet), and the shipped
example (fixtures/examples) end to end: run, baseline create, check and compare through the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Dict, List

import pytest

from harness.cli import main
from harness.config.corpus import load_corpus
from harness.config.project import ProjectError, find_config, load_project, project_registry, run_inputs
from harness.config.registry import load_registry
from harness.errors import CorpusError, ModelLoadError
from harness.results import ResultsFile

from conftest import ROOT

EXAMPLES = ROOT / "fixtures" / "examples"
EXAMPLE_CONFIG = EXAMPLES / "harness.toml"
MODELS = ROOT / "fixtures" / "models"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _csv(path: Path, rows: List[List[str]]) -> Path:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return path


def _jsonl(path: Path, rows: List[Dict]) -> Path:
    return _write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


# -- finding and parsing the config ------------------------------------------------------------------------------


def test_find_config_prefers_harness_toml_then_tool_harness(tmp_path: Path) -> None:
    assert find_config(tmp_path) is None
    _write(tmp_path / "pyproject.toml", "[project]\nname = 'x'\n")
    assert find_config(tmp_path) is None  # a pyproject without [tool.harness] is not a config
    _write(tmp_path / "pyproject.toml", "[project]\nname = 'x'\n[tool.harness.models.m]\nkind = 'bi-encoder'\n")
    assert find_config(tmp_path) == tmp_path / "pyproject.toml"
    _write(tmp_path / "harness.toml", "")
    assert find_config(tmp_path) == tmp_path / "harness.toml"


def test_tool_harness_in_pyproject(tmp_path: Path) -> None:
    _write(tmp_path / "pyproject.toml", f"""
[project]
name = "mine"
[tool.harness.models.mine]
kind = "bi-encoder"
source = "path"
path = "{MODELS / 'tiny-bi-encoder'}"
normalize_embeddings = true
[tool.harness.corpus]
documents = "docs.csv"
""")
    _csv(tmp_path / "docs.csv", [["id", "text"], ["a", "alpha"], ["b", "beta"]])
    registry, corpus, project = run_inputs(tmp_path / "pyproject.toml", None, None)
    assert project is not None and corpus == tmp_path / "pyproject.toml"
    assert [s.id for s in registry.select(None)] == ["mine"]
    assert registry.models["mine"].normalize_embeddings is True
    assert [d.id for d in load_corpus(corpus).documents] == ["a", "b"]


@pytest.mark.parametrize(
    "text, problem",
    [
        ("[models\n", "invalid TOML"),
        ("colour = 'red'\n", "unknown key(s) colour"),
        ("sets = 3\n", "'sets' must map set names to lists"),
        ("[sets]\nmine = ['nope']\n", "set 'mine' names unknown model(s) nope"),
        ("[models.x]\nkind = 'bi-encoder'\n", "model 'x' needs 'kind' and 'source'"),
        ("[models.x]\nkind = 'bi-encoder'\nsource = 'path'\npath = 'm'\nbatch_size = 0\n", "'batch_size' must be a positive integer"),
        ("[models.x]\nkind = 'cross-encoder'\nsource = 'path'\npath = 'm'\ntruncate_dim = 8\n", "'truncate_dim' applies to bi-encoders only"),
        ("[models.x]\nkind = 'bi-encoder'\nsource = 'path'\npath = 'm'\nlogits = true\n", "'logits' applies to cross-encoders only"),
        ("[models.x]\nkind = 'bi-encoder'\nsource = 'path'\npath = 'm'\nprecision = 'int4'\n", "'precision' must be one of float32, int8"),
        ("[models.x]\nkind = 'bi-encoder'\nsource = 'path'\npath = 'm'\nbackend = 'tensorrt'\n", "'backend' must be one of torch, onnx, openvino"),
        ("[models.x]\nkind = 'bi-encoder'\nsource = 'path'\npath = 'm'\nprompt = 'a'\nprompt_name = 'b'\n", "set 'prompt' or 'prompt_name', not both"),
        ("[models.x]\nkind = 'bi-encoder'\nsource = 'path'\npath = 'm'\nquantization = 'encode'\n", "'quantization' needs a quantized 'precision'"),
        ("[models.x]\nkind = 'bi-encoder'\nsource = 'path'\npath = 'm'\nnormalize_embeddings = 'yes'\n", "'normalize_embeddings' must be true or false"),
        ("[models.'x@logits']\nkind = 'cross-encoder'\nsource = 'path'\npath = 'm'\n", "must not contain '@'"),
        ("[models.x]\nkind = 'bi-encoder'\nsource = 'path'\npath = 'm'\nprompts = 'a'\n", "unknown key(s) prompts"),
    ],
)
def test_bad_project_configs_are_one_line_errors(tmp_path: Path, text: str, problem: str) -> None:
    config = _write(tmp_path / "harness.toml", text)
    with pytest.raises((ProjectError, ModelLoadError)) as info:
        project_registry(config)
    message = str(info.value)
    assert problem in message and str(config) in message and "\n" not in message


def test_project_models_extend_and_override_the_registry(tmp_path: Path) -> None:
    config = _write(tmp_path / "harness.toml", """
[models.mine]
kind = "bi-encoder"
source = "path"
path = "models/mine"                # relative to this file

[models.tiny-bi-encoder]            # settings only: the built-in entry, called differently
batch_size = 4
query_prompt = "query: "

[models.tiny-cross-encoder]         # a full entry replaces the built-in one
kind = "cross-encoder"
source = "hub"
hub_id = "org/reranker"
""")
    registry = project_registry(config)
    builtin = load_registry()
    assert registry.models["mine"].path == str((tmp_path / "models" / "mine").resolve())
    tiny = registry.models["tiny-bi-encoder"]
    assert tiny.path == builtin.models["tiny-bi-encoder"].path and tiny.batch_size == 4 and tiny.query_prompt == "query: "
    assert registry.models["tiny-cross-encoder"].source == "hub"
    assert "all-MiniLM-L6-v2" in registry.models  # the rest of the registry is still there
    assert [s.id for s in registry.select(None)] == ["mine", "tiny-bi-encoder", "tiny-cross-encoder"]
    assert registry.sets["tiny"] == builtin.sets["tiny"]
    _write(config, config.read_text() + "\n[sets]\ndefault = ['mine']\n")
    assert [s.id for s in project_registry(config).select(None)] == ["mine"]


def test_registry_maps_derived_entry_ids_back_to_their_model() -> None:
    """Ids read from a baseline (``x@logits``, ``x@label1``) select the model that produced them, once."""
    registry = load_registry()
    selected = registry.select(["tiny-cross-encoder", "tiny-cross-encoder@logits", "tiny-cross-encoder@label1@logits"])
    assert [s.id for s in selected] == ["tiny-cross-encoder"]
    # a multi-label model known only from a baseline's recorded sources (baseline.rerun_options): run it once
    from harness.config.registry import ModelSpec, Registry

    rebuilt = {f"m@label{i}": ModelSpec(id=f"m@label{i}", kind="cross-encoder", source="path", path="/m") for i in range(2)}
    selected = Registry(path=Path("baseline.parquet"), models=rebuilt).select(list(rebuilt))
    assert [(s.id, s.path) for s in selected] == [("m", "/m")]


def test_run_inputs_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    registry, corpus, project = run_inputs(None, None, None)
    assert project is None and corpus.name == "corpus" and "tiny" in registry.sets
    _write(tmp_path / "harness.toml", "[corpus]\ndocuments = 'd.jsonl'\n")
    registry, corpus, project = run_inputs(None, None, None)  # found in the working directory
    assert project is not None and corpus == project.path
    _, corpus, _ = run_inputs(None, None, tmp_path / "other.csv")  # --corpus wins over the config's
    assert corpus == tmp_path / "other.csv"
    assert load_project(tmp_path / "harness.toml").registry_path is None


# -- user corpora -------------------------------------------------------------------------------------------------


def test_example_corpus_loads_with_custom_columns() -> None:
    corpus = load_corpus(EXAMPLE_CONFIG)
    assert (corpus.name, corpus.version) == ("example-faq", "1")
    assert len(corpus.documents) == 20 and len(corpus.queries) == 5 and len(corpus.pairs) == 21
    by_id = {t.id: t for t in corpus.texts()}
    assert "\n" in by_id["faq-08"].text and '"Reset password"' in by_id["faq-01"].text  # quoted CSV fields
    assert by_id["faq-17"].kind == "billing" and by_id["q-invoice"].kind == "unspecified"
    assert corpus.pairs[0].label == 1 and corpus.pairs[1].label == 0


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "tsv", "parquet"])
def test_every_format_reads_the_same_corpus(tmp_path: Path, fmt: str) -> None:
    rows = [{"doc": 1, "body": "first, with a comma"}, {"doc": "b", "body": "zweite Zeile\nmit Umbruch"}, {"doc": "c", "body": "日本語 🙂"}]
    path = tmp_path / f"docs.{fmt}"
    if fmt == "jsonl":
        _jsonl(path, rows)
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"doc": [str(r["doc"]) for r in rows], "body": [r["body"] for r in rows]}), path)
    else:
        import csv

        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, delimiter="\t" if fmt == "tsv" else ",")
            writer.writerow(["doc", "body"])
            writer.writerows([[r["doc"], r["body"]] for r in rows])
    config = _write(tmp_path / "c.toml", f"[corpus]\ndocuments = {{ path = '{path.name}', id_column = 'doc', text_column = 'body' }}\n")
    corpus = load_corpus(config)
    assert [(t.id, t.text) for t in corpus.documents] == [(str(r["doc"]), r["body"]) for r in rows]
    assert corpus.queries == () and corpus.pairs == ()


def test_data_file_alone_is_a_documents_only_corpus(tmp_path: Path) -> None:
    docs = _csv(tmp_path / "mine.csv", [["id", "text", "extra"], ["1", "one", "x"], ["2", "two", "y"]])
    corpus = load_corpus(docs)
    assert corpus.name == "mine" and [t.id for t in corpus.documents] == ["1", "2"] and not corpus.queries


def test_corpus_hash_covers_bytes_and_columns_not_location(tmp_path: Path) -> None:
    docs = _csv(tmp_path / "a" / "docs.csv", [["id", "text", "title"], ["1", "one", "t1"], ["2", "two", "t2"]])
    moved = tmp_path / "b" / "renamed.csv"
    moved.parent.mkdir()
    shutil.copyfile(docs, moved)
    assert load_corpus(docs).sha256 == load_corpus(moved).sha256
    as_title = _write(tmp_path / "a" / "c.toml", "[corpus]\ndocuments = 'docs.csv'\ntext_column = 'title'\n")
    assert load_corpus(as_title).sha256 != load_corpus(docs).sha256  # same bytes, other texts
    moved.write_bytes(moved.read_bytes().replace(b"two", b"tw0"))
    assert load_corpus(moved).sha256 != load_corpus(docs).sha256


def _config_corpus(tmp_path: Path, extra: str = "") -> Path:
    _csv(tmp_path / "docs.csv", [["id", "text"], ["d1", "one"], ["d2", "two"]])
    _csv(tmp_path / "queries.csv", [["id", "text"], ["q1", "first?"]])
    _csv(tmp_path / "pairs.csv", [["query_id", "passage_id", "label"], ["q1", "d1", "1"], ["q1", "d2", "0"]])
    return _write(tmp_path / "harness.toml",
                  "[corpus]\ndocuments = 'docs.csv'\nqueries = 'queries.csv'\npairs = 'pairs.csv'\n" + extra)


@pytest.mark.parametrize(
    "file, rows, where, problem",
    [
        ("docs.csv", [["key", "text"], ["d1", "one"]], "docs.csv:1", "missing column 'id' (header: key, text)"),
        ("docs.csv", [["id", "text"], ["d1", "one"], ["d1", "again"]], "docs.csv:3", "duplicate id 'd1' (first at docs.csv:2)"),
        ("docs.csv", [["id", "text"], ["d1", "one"], ["d2", "  "]], "docs.csv:3", "empty text for id 'd2' (set allow_empty = true"),
        ("docs.csv", [["id", "text"], ["", "one"]], "docs.csv:2", "empty 'id'"),
        ("docs.csv", [["id", "text"], ["d1", "one", "surplus"]], "docs.csv:2", "3 field(s), the header has 2"),
        ("queries.csv", [["id", "text"], ["d1", "clash"]], "queries.csv:2", "duplicate id 'd1' (first at docs.csv:2)"),
        ("pairs.csv", [["query_id", "passage_id"], ["q9", "d1"]], "pairs.csv:2", "unknown query_id 'q9' (not in the queries file)"),
        ("pairs.csv", [["query_id", "passage_id"], ["q1", "d9"]], "pairs.csv:2", "unknown passage_id 'd9' (not in the documents file)"),
        ("pairs.csv", [["query_id", "passage_id"], ["q1", "d1"], ["q1", "d1"]], "pairs.csv:3", "duplicate pair ('q1', 'd1') (first at pairs.csv:2)"),
        ("pairs.csv", [["query_id", "passage_id", "label"], ["q1", "d1", "yes"]], "pairs.csv:2", "label must be an integer, got \"yes\""),
        ("pairs.csv", [["qid", "passage_id"], ["q1", "d1"]], "pairs.csv:1", "missing column 'query_id'"),
    ],
)
def test_corpus_errors_name_file_and_line(tmp_path: Path, file: str, rows: List[List[str]], where: str, problem: str) -> None:
    config = _config_corpus(tmp_path)
    _csv(tmp_path / file, rows)
    with pytest.raises(CorpusError) as info:
        load_corpus(config)
    message = str(info.value)
    assert where in message and problem in message and "\n" not in message, message


def test_empty_texts_only_when_declared(tmp_path: Path) -> None:
    config = _config_corpus(tmp_path, "allow_empty = true\n")
    _csv(tmp_path / "docs.csv", [["id", "text"], ["d1", "one"], ["d2", ""]])
    assert {t.id: t.text for t in load_corpus(config).texts()}["d2"] == ""


def test_jsonl_and_parquet_errors_name_line_or_row(tmp_path: Path) -> None:
    _jsonl(tmp_path / "d.jsonl", [{"id": "a", "text": "x"}, {"id": "b"}])
    with pytest.raises(CorpusError, match=r"d\.jsonl:2: missing column 'text'"):
        load_corpus(tmp_path / "d.jsonl")
    _jsonl(tmp_path / "d.jsonl", [{"id": "a", "text": "x"}, {"id": True, "text": "y"}])
    with pytest.raises(CorpusError, match=r"d\.jsonl:2: non-string \(bool\) 'id'"):
        load_corpus(tmp_path / "d.jsonl")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ["a", "b"], "text": ["x", None]}), tmp_path / "d.parquet")
    with pytest.raises(CorpusError, match=r"d\.parquet: row 2: null 'text' for id 'b'"):
        load_corpus(tmp_path / "d.parquet")
    (tmp_path / "d.parquet").write_bytes(b"not parquet")
    with pytest.raises(CorpusError, match=r"d\.parquet: not a readable parquet file"):
        load_corpus(tmp_path / "d.parquet")


@pytest.mark.parametrize(
    "table, problem",
    [
        ("queries = 'queries.csv'\n", "'documents' (a file path) is required"),
        ("documents = 'docs.csv'\npairs = 'pairs.csv'\n", "'pairs' needs a 'queries' file"),
        ("documents = 'docs.xlsx'\n", "unknown corpus file format"),
        ("documents = { path = 'docs.csv', sep = ';' }\n", "unknown key(s) sep"),
        ("documents = 'docs.csv'\ncolour = 1\n", "unknown key(s) colour"),
        ("documents = 'missing.csv'\n", "missing.csv: missing file"),
    ],
)
def test_bad_corpus_tables(tmp_path: Path, table: str, problem: str) -> None:
    _config_corpus(tmp_path)
    config = _write(tmp_path / "c.toml", "[corpus]\n" + table)
    with pytest.raises(CorpusError) as info:
        load_corpus(config)
    assert problem in str(info.value)


def test_config_without_corpus_table(tmp_path: Path) -> None:
    config = _write(tmp_path / "c.toml", "[models]\n")
    with pytest.raises(CorpusError, match=r"c\.toml: no \[corpus\] table"):
        load_corpus(config)


# -- end to end: the shipped example through the CLI ----------------------------------------------------------------


def test_example_end_to_end_run_baseline_check_compare(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The README walk-through: baseline create from the config, check against it, compare two runs."""
    baselines = tmp_path / "baselines"
    code = main(["baseline", "create", "mine", "--config", str(EXAMPLE_CONFIG), "--dir", str(baselines),
                 "--device", "cpu", "--reason", "example"])
    assert code == 0, capsys.readouterr().err
    baseline = ResultsFile(baselines / "mine.parquet")
    assert baseline.meta["corpus"]["name"] == "example-faq" and baseline.meta["corpus"]["sha256"] == load_corpus(EXAMPLE_CONFIG).sha256
    assert sorted(baseline.meta["models"]) == ["faq-embedder", "faq-reranker", "faq-reranker@logits"]
    embedder = baseline.meta["models"]["faq-embedder"]
    assert embedder["encode"]["query_prompt"] == "query: " and embedder["encode"]["document_prompt"] == "passage: "
    assert embedder["encode"]["batch_size"] == 16 and embedder["max_seq_length"] == 128
    assert baseline.meta["models"]["faq-reranker@logits"]["derived_from"] == "faq-reranker"
    capsys.readouterr()

    monkeypatch.chdir(EXAMPLES)  # harness.toml found in the working directory, no --config
    candidate = tmp_path / "check.parquet"
    assert main(["check", str(baselines / "mine.parquet"), "--out", str(candidate)]) == 0
    out = capsys.readouterr().out
    assert "harness compare: PASS" in out and "faq-reranker@logits" in out

    assert main(["compare", str(baselines / "mine.parquet"), str(candidate)]) == 0


def test_ad_hoc_corpus_file_and_model_directory(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``harness run --corpus FILE --model DIR``: no config, a documents-only corpus, retrieval not compared."""
    monkeypatch.chdir(tmp_path)
    docs = _csv(tmp_path / "docs.csv", [["id", "text"], *[[f"d{i}", f"document number {i}"] for i in range(12)]])
    out = tmp_path / "run.parquet"
    assert main(["run", "--corpus", str(docs), "--model", str(MODELS / "tiny-bi-encoder"), "--device", "cpu", "--out", str(out)]) == 0
    results = ResultsFile(out)
    assert results.meta["corpus"]["queries"] == 0 and results.meta["corpus"]["documents"] == 12
    assert main(["compare", str(out), str(out)]) == 0
    capsys.readouterr()
    # a cross-encoder needs pairs: refused before anything runs, one line, nothing written
    assert main(["run", "--corpus", str(docs), "--model", "tiny-cross-encoder", "--device", "cpu", "--out", str(tmp_path / "x.parquet")]) == 2
    err = capsys.readouterr().err
    assert "model 'tiny-cross-encoder' is a cross-encoder" in err and "has no rerank pairs" in err
    assert not (tmp_path / "x.parquet").exists()


def test_quantized_measurement_config_resolves() -> None:
    """docs/results/quantized/harness.toml (the README's quantized measurements) stays a valid config."""
    registry = project_registry(ROOT / "docs" / "results" / "quantized" / "harness.toml", None)
    precisions = {m: registry.models[m].precision for m in registry.models if m.startswith(("minilm-float", "minilm-int", "minilm-uint", "minilm-bin", "minilm-ubin"))}
    assert precisions == {"minilm-float32": None, "minilm-int8": "int8", "minilm-uint8": "uint8",
                          "minilm-binary": "binary", "minilm-ubinary": "ubinary"}


@pytest.mark.parametrize("content, message", [
    (None, "model registry not found"),
    (b"[models\n", "invalid TOML"),
    (b"[models.x]\nnote = \"\xff\"\n", "invalid TOML"),  # not UTF-8: one line, not a traceback
])
def test_bad_registry_file_is_one_line(tmp_path: Path, content: Any, message: str) -> None:
    from harness.config.registry import load_registry
    from harness.errors import ModelLoadError

    path = tmp_path / "registry.toml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message) as failure:
        load_registry(path)
    assert str(failure.value).startswith(str(path)) and len(str(failure.value).splitlines()) == 1


def test_a_projects_baselines_land_in_the_project(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 26: ``harness baseline create NAME --config harness.toml`` wrote into the harness's own
    ``fixtures/baselines`` and printed a temporary path as "wrote". A project's baselines live in the project
    (``baselines`` relative to its config, default ``baselines``), and the path printed is the baseline."""
    import harness.run.runner as runner

    tiny = ROOT / "fixtures" / "baselines" / "tiny-cpu-float32.parquet"

    def run(options: Any) -> Any:  # the tiny baseline as this "run"'s results: no model loads
        shutil.copyfile(tiny, options.out)
        return runner.RunSummary(path=Path(options.out), statuses={"tiny-bi-encoder": "ok"})

    monkeypatch.setattr(runner, "run", run)
    shipped = sorted(p.name for p in (ROOT / "fixtures" / "baselines").iterdir())
    project = tmp_path / "project"
    config = _write(project / "harness.toml", "")
    monkeypatch.chdir(project)
    assert main(["baseline", "create", "mine", "--config", "harness.toml", "--reason", "t"]) == 0
    captured = capsys.readouterr()
    assert (project / "baselines" / "mine.parquet").is_file()
    assert captured.out.splitlines()[0] == f"baseline {Path('baselines') / 'mine.parquet'} written", captured.out
    assert "wrote" not in captured.out + captured.err and "harness-baseline-" not in captured.out + captured.err
    assert sorted(p.name for p in (ROOT / "fixtures" / "baselines").iterdir()) == shipped

    _write(config, 'baselines = "refs"\n')  # the key, relative to the config file, wherever the command runs
    monkeypatch.chdir(tmp_path)
    assert main(["baseline", "create", "other", "--config", str(config), "--reason", "t"]) == 0
    assert (project / "refs" / "other.parquet").is_file()
    assert f"baseline {project / 'refs' / 'other.parquet'} written" in capsys.readouterr().out
    monkeypatch.chdir(project)  # the config found in the working directory: names are looked up there
    assert main(["baseline", "show", "other"]) == 0
    assert Path(json.loads(capsys.readouterr().out)["path"]).resolve() == (project / "refs" / "other.parquet").resolve()
    assert main(["baseline", "list"]) == 0 and capsys.readouterr().out.startswith("other ")
    assert main(["baseline", "show", "tiny-cpu-float32"]) == 0  # a name the project lacks: the shipped one
    capsys.readouterr()
    _write(config, "baselines = 5\n")
    assert main(["baseline", "list"]) == 2
    assert "baselines" in capsys.readouterr().err
