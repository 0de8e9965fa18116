"""Hostile and broken input: every case ends in one clear line (exit code 2, naming the file and the problem),
and nothing is overwritten. Plus the security defaults: offline, safetensors before pickle, no remote code.

Where each case is covered (cases already tested elsewhere at the library level get their CLI check here):

| case                                              | library level                                              | CLI (exit 2) / here |
|---------------------------------------------------|------------------------------------------------------------|---------------------|
| truncated parquet                                 | test_results_file::test_truncated_file_is_refused          | test_truncated_results_file |
| corrupt bytes inside a data page                  | -                                                          | test_corrupt_string_page, test_corrupt_vector_page_* |
| parquet that is not a harness file                | test_results_file::test_foreign_files_are_refused          | test_foreign_parquet |
| missing columns                                   | test_results_file::test_missing_columns_are_named          | test_missing_column |
| newer schema version                              | test_results_file::test_newer_schema_version_is_refused    | - |
| metadata dim vs vector bytes                      | -                                                          | test_metadata_dim_wider_than_bytes, test_metadata_dim_* (xfail) |
| metadata field of the wrong type                  | test_results_file::test_a_field_of_the_wrong_type_names_*  | test_metadata_field_of_the_wrong_type |
| every metadata field of the wrong type (generated from harness.results.meta), either side | -            | test_a_metadata_field_of_the_wrong_type |
| every column of the wrong type (generated from the schema), either side | -                          | test_a_column_of_the_wrong_type, test_a_vector_column_of_variable_width_is_named |
| baseline dim != candidate dim                     | -                                                          | test_baseline_and_candidate_dims_differ |
| NaN / Inf in candidate or baseline                | test_comparator::test_nan_in_candidate_is_bad_input        | test_non_finite_values |
| duplicate / missing text ids                      | -                                                          | test_duplicate_ids, test_missing_ids (xfail) |
| other corpus / other model weights / model set    | test_comparator::test_other_corpus_is_refused, ::test_changed_weights_are_refused_unless_allowed, ::test_different_model_sets_are_refused | test_incomparable_inputs |
| empty corpus                                      | test_corpus::test_empty_corpus                             | test_empty_corpus |
| model directory without weights                   | test_runner::test_directory_without_weights_is_refused     | test_model_without_weights |
| only pytorch_model.bin (loads, recorded pickle)   | test_runner::test_pickle_only_cache_loads_and_is_recorded  | - |
| both safetensors and pickle: safetensors loaded   | -                                                          | test_safetensors_preferred_over_pickle |
| model needing trust_remote_code                   | test_runner::test_remote_code_is_refused_unless_allowed    | test_remote_code_refused, test_remote_code_runs_when_opted_in |
| unknown model id                                  | test_runner::test_unknown_model_id_lists_known_ones        | test_cli::test_run_rejects_bad_options |
| offline by default                                | -                                                          | test_runner_goes_offline_* |
| Ctrl-C / SIGKILL during a run                     | test_results_file::test_atomic_output_leaves_no_partial_file | test_interrupted_run_leaves_nothing |
| SIGKILL during the write: stale temp file         | -                                                          | test_stale_temp_file_of_a_killed_writer_is_removed |
| two writers of the same results file              | -                                                          | test_concurrent_writers_*, test_two_concurrent_cli_runs |
| JSON the matrix reads nested too deeply (plan.json, cell.json, a history line, report.json to merge into) | test_json_nested_too_deeply_is_bad_input | test_a_plan_nested_too_deeply |
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Callable, List, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.cli import main
from harness.errors import ResultsFileError
from harness.fsio import output_lock, stale_temp_files
from harness.results import ModelRows, ResultsFile, write_results
from harness.testing import perturb_results

from conftest import ROOT, run_tiny

TINY = ROOT / "fixtures" / "baselines" / "tiny-cpu-float32.parquet"
MODELS = ROOT / "fixtures" / "models"
BI, CE = "tiny-bi-encoder", "tiny-cross-encoder"
PROGRESS_PREFIXES = ("harness run: ", "harness check: ")


def _bad_input(argv: List[str], capsys: pytest.CaptureFixture, *expected: str) -> str:
    """Run the CLI; it must exit 2 with exactly one ``error:`` line containing every expected fragment."""
    code = main(argv)
    captured = capsys.readouterr()
    # progress lines of a run that started ("harness run: [1/2] ... started") come before the one error line
    err = "\n".join(line for line in captured.err.strip().splitlines() if not line.startswith(PROGRESS_PREFIXES))
    assert code == 2, (code, captured.out, err)
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    for fragment in expected:
        assert fragment in err, (fragment, err)
    return err


def _compare_refused(baseline: Path, candidate: Path, capsys: pytest.CaptureFixture, *expected: str) -> str:
    return _bad_input(["compare", str(baseline), str(candidate)], capsys, *expected)


def _synthetic(path: Path, dim: int = 8, n: int = 6, ids: List[str] | None = None, seed: int = 0) -> Path:
    """A small, valid results file: one bi-encoder (documents + one query) and one cross-encoder."""
    rng = np.random.default_rng(seed)
    ids = ids or [f"d{i}" for i in range(n - 1)] + ["q0"]
    vectors = rng.standard_normal((len(ids), dim)).astype(np.float32)
    roles = ["query" if i.startswith("q") else "document" for i in ids]
    scores = rng.standard_normal(3).astype(np.float32)
    meta = {
        "corpus": {"name": "synthetic", "sha256": "c" * 64},
        "fingerprint": {"device": "cpu", "device_type": "cpu", "dtype": "float32"},
        "models": {
            "bi": {"kind": "bi-encoder", "status": "ok", "dim": dim, "vector_dtype": "float32"},
            "ce": {"kind": "cross-encoder", "status": "ok"},
        },
    }
    rows = [
        ModelRows("bi", "embed", ids, roles=roles, vectors=vectors),
        ModelRows("ce", "rerank", ["q0|d0", "q0|d1", "q0|d2"], query_ids=["q0"] * 3, passage_ids=["d0", "d1", "d2"],
                  scores=scores, ranks=np.array([1, 2, 3], np.int32)),
    ]
    return write_results(path, rows, meta)


def _rewrite_table(source: Path, target: Path, edit: Callable[[pa.Table], pa.Table]) -> Path:
    """Copy a results file through an edit of its table, keeping the harness metadata."""
    table = pq.read_table(str(source))
    edited = edit(table).replace_schema_metadata(table.schema.metadata)
    pq.write_table(edited, str(target), compression="none")
    return target


def _corrupt_middle(path: Path, column: str, row_group: int = 0, length: int = 16, fill: bytes = b"\xff") -> Path:
    """Overwrite bytes in the middle of one column chunk's data (not the footer, not a page header)."""
    meta = pq.ParquetFile(str(path)).metadata
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    chunk = meta.row_group(row_group).column(names.index(column))
    middle = chunk.data_page_offset + chunk.total_compressed_size // 2
    data = bytearray(path.read_bytes())
    data[middle : middle + length] = fill * length
    path.write_bytes(bytes(data))
    return path


# -- broken results files -------------------------------------------------------------------------------------


def test_truncated_results_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(TINY.read_bytes()[: TINY.stat().st_size // 2])
    _compare_refused(TINY, cut, capsys, str(cut), "not a readable parquet file")
    _compare_refused(cut, TINY, capsys, str(cut), "not a readable parquet file")


def test_corrupt_string_page_is_a_results_file_error_at_compare_time(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = _corrupt_middle(_synthetic(tmp_path / "bad.parquet", n=400), "item_id")
    ResultsFile(bad)  # the footer is intact: opening works, the damage shows when the data is read
    good = _synthetic(tmp_path / "good.parquet", n=400)
    _compare_refused(good, bad, capsys, str(bad), "row group 0 is unreadable")
    _compare_refused(bad, good, capsys, str(bad), "row group 0 is unreadable")
    before = bad.read_bytes()
    _bad_input(["baseline", "create", str(tmp_path / "b.parquet"), "--from", str(bad)], capsys, str(bad), "unreadable")
    assert not (tmp_path / "b.parquet").exists() and bad.read_bytes() == before


def test_corrupt_vector_page_of_a_baseline_is_caught_by_its_checksums(tmp_path: Path) -> None:
    """``harness baseline create`` writes page CRCs, so bit rot in a baseline is detectable by a reader."""
    from harness.baselines import create_baseline

    target = tmp_path / "base.parquet"
    create_baseline(TINY, target)
    _corrupt_middle(target, "vector")
    with pytest.raises(OSError, match="CRC checksum verification failed"):
        pq.ParquetFile(str(target), page_checksum_verification=True).read_row_group(0)


def test_corrupt_vector_page_is_a_results_file_error_at_compare_time(tmp_path: Path, tiny_results: Path) -> None:
    from harness.compare.comparator import compare_files

    copy = tmp_path / "run.parquet"
    shutil.copy(tiny_results, copy)
    bad = _corrupt_middle(copy, "vector", length=8, fill=b"\x00")  # valid floats: no NaN to trip over
    with pytest.raises(ResultsFileError, match="run.parquet"):
        compare_files(tiny_results, bad)


def test_corrupt_vector_page_is_named_as_corruption_not_as_its_values(tmp_path: Path) -> None:
    """Vectors stream without their page checksums; a comparison that fails or refuses the values verifies them
    first, so bytes that decode as NaN (or as a drift) read as a broken page of the file that has it. (No query:
    nothing else reads the page with its checksum first.)"""
    from harness.compare.comparator import compare_files

    documents = [f"d{i}" for i in range(64)]
    good = _synthetic(tmp_path / "good.parquet", dim=32, ids=documents)
    assert compare_files(good, good).models[0].status.value == "pass"
    for fill, side in ((b"\xff", 0), (b"\x00", 1)):  # NaN floats: refused; zeros: a drift
        bad = _corrupt_middle(_synthetic(tmp_path / f"run{side}.parquet", dim=32, ids=documents), "vector",
                              length=8, fill=fill)
        with pytest.raises(ResultsFileError, match=f"run{side}.parquet: row group 0 is unreadable .*CRC"):
            compare_files(*((bad, good) if side == 0 else (good, bad)))


def test_a_failure_is_proven_by_the_pages_of_its_largest_difference(tmp_path: Path) -> None:
    """A failed largest difference is verified where it is: a corrupted page elsewhere, whose bytes move less,
    changes no verdict (the drift is real); one whose bytes move most is the failure, and reads as corruption."""
    from harness.compare.comparator import compare_files
    from harness.results import ModelRows, ResultsWriter
    from harness.results.schema import ROW_GROUP_ROWS

    rng = np.random.default_rng(7)
    n = 2 * ROW_GROUP_ROWS + 10  # three row groups
    base = rng.uniform(0.5, 1.0, (n, 4)).astype(np.float32)

    def write(path: Path, vectors: np.ndarray) -> Path:
        meta = {"corpus": {"name": "c", "sha256": "e" * 64}, "fingerprint": {},
                "models": {"m": {"kind": "bi-encoder", "status": "ok", "dim": 4, "vector_dtype": "float32"}}}
        with ResultsWriter(path, meta, vector_width=16) as writer:
            writer.write(ModelRows("m", "embed", [f"t{i:06d}" for i in range(n)], roles=["document"] * n,
                                   vectors=vectors))
        return path

    drifted = base.copy()
    drifted[5, 0] += 30.0  # row group 0: a drift larger than any zeroed value could make
    good = write(tmp_path / "base.parquet", base)
    cand = _corrupt_middle(write(tmp_path / "cand.parquet", drifted), "vector", row_group=2, length=8, fill=b"\x00")
    results = ResultsFile(cand)
    results.verify_vectors("m", ["t000005"])  # row group 0's pages are intact
    with pytest.raises(ResultsFileError, match="row group 2 is unreadable"):
        results.verify_vectors("m")
    verdict = compare_files(good, cand).models[0]
    assert verdict.status.value == "fail" and verdict.offenders[0].item_id == "t000005"
    worse = _corrupt_middle(write(tmp_path / "worse.parquet", base), "vector", row_group=2, length=8, fill=b"\x00")
    with pytest.raises(ResultsFileError, match="worse.parquet: row group 2 is unreadable"):
        compare_files(good, worse)
    # with rtol the largest difference may be within its own allowance, the failing element elsewhere: every page
    from harness.config.policy import load_policy

    policy = tmp_path / "rtol.toml"
    policy.write_text("[classes.fp32]\natol = 1e-5\nrtol = 1.0\n")
    big, moved = base.copy(), base.copy()
    big[5, 0] = moved[5, 0] = 100.0
    moved[5, 0] += 50.0  # the largest difference, within atol + rtol * 100
    allowed = write(tmp_path / "big.parquet", big)
    hidden = _corrupt_middle(write(tmp_path / "hidden.parquet", moved), "vector", row_group=2, length=8, fill=b"\x41")
    with pytest.raises(ResultsFileError, match="hidden.parquet: row group 2 is unreadable"):  # 12.1 where ~0.75 was
        compare_files(allowed, hidden, load_policy(policy))


def test_a_directory_or_a_device_node_is_not_a_regular_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Refused by name, one line, exit 2: a path that exists but is no file is not reported as missing."""
    good = _synthetic(tmp_path / "good.parquet")
    fifo = tmp_path / "pipe.parquet"
    os.mkfifo(fifo)
    for odd in (tmp_path, fifo, Path("/dev/null")):
        _compare_refused(good, odd, capsys, str(odd), "not a regular file")
        _compare_refused(odd, good, capsys, str(odd), "not a regular file")
    _compare_refused(good, tmp_path / "absent.parquet", capsys, "absent.parquet", "no such file")
    assert Path("/dev/null").is_char_device() and fifo.is_fifo()
    fsspec = pytest.importorskip("fsspec")
    remote = f"harness-test-{os.getpid()}-odd"
    fsspec.filesystem("memory").pipe(f"/{remote}/inside/x.txt", b"x")  # a directory on remote storage
    try:
        _bad_input(["compare", str(good), f"memory://{remote}/inside"], capsys, f"memory://{remote}/inside",
                   "not a regular file")
        _bad_input(["compare", str(good), f"memory://{remote}/absent.parquet"], capsys, "absent.parquet",
                   "no such file")
    finally:
        fsspec.filesystem("memory").rm(f"/{remote}", recursive=True)


def test_foreign_parquet(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    foreign = tmp_path / "sales.parquet"
    pq.write_table(pa.table({"region": ["eu"], "revenue": [1.0]}), str(foreign))
    _compare_refused(TINY, foreign, capsys, str(foreign), "not a harness results file")
    _bad_input(["baseline", "show", str(foreign)], capsys, str(foreign), "not a harness results file")


def test_missing_column(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    no_vectors = _rewrite_table(TINY, tmp_path / "novec.parquet", lambda t: t.drop_columns(["vector"]))
    _compare_refused(TINY, no_vectors, capsys, str(no_vectors), "missing column(s) vector")


def test_metadata_dim_wider_than_bytes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    def wider(meta: dict) -> dict:
        return {**meta, "models": {**meta["models"], BI: {**meta["models"][BI], "dim": 64}}}

    bad = perturb_results(TINY, tmp_path / "wide.parquet", BI, meta_update=wider)
    _compare_refused(TINY, bad, capsys, str(bad), "dim 64 does not match the vector column (128 bytes per row)")


@pytest.mark.parametrize("dim", [16, 0, -1])
def test_metadata_dim_narrower_than_bytes_is_refused(tmp_path: Path, dim: int) -> None:
    from harness.compare.comparator import compare_files

    def narrower(meta: dict) -> dict:
        return {**meta, "models": {**meta["models"], BI: {**meta["models"][BI], "dim": dim}}}

    bad = perturb_results(TINY, tmp_path / "narrow.parquet", BI, meta_update=narrower)
    with pytest.raises(ResultsFileError, match="dim"):
        compare_files(bad, bad)


def test_metadata_field_of_the_wrong_type(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    def text_batch(meta: dict) -> dict:
        return {**meta, "run": {**meta["run"], "batch_size": "32"}}

    bad = perturb_results(TINY, tmp_path / "typed.parquet", BI, meta_update=text_batch)
    _bad_input(["baseline", "show", str(bad)], capsys, str(bad), "metadata 'run.batch_size' must be an integer, got '32'")
    _bad_input(["check", str(bad)], capsys, str(bad), "run.batch_size")
    _compare_refused(TINY, bad, capsys, str(bad), "run.batch_size")


def test_baseline_and_candidate_dims_differ(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    small = _synthetic(tmp_path / "small.parquet", dim=8)
    big = _synthetic(tmp_path / "big.parquet", dim=16)
    _compare_refused(small, big, capsys, str(big), "model 'bi' vectors have dim 16, baseline 8")


@pytest.mark.parametrize("side", ["candidate", "baseline"])
@pytest.mark.parametrize("what, value", [("vectors", np.nan), ("vectors", np.inf), ("scores", np.nan), ("scores", -np.inf)])
def test_non_finite_values(tmp_path: Path, capsys: pytest.CaptureFixture, side: str, what: str, value: float) -> None:
    def poison(values: np.ndarray) -> np.ndarray:
        out = values.copy()
        out[3] = value
        return out

    model = BI if what == "vectors" else CE
    bad = perturb_results(TINY, tmp_path / f"bad-{side}.parquet", model, **{what: poison})
    pair = (TINY, bad) if side == "candidate" else (bad, TINY)
    _compare_refused(*pair, capsys, str(bad), f"model '{model}' has non-finite", "(first: '")


def test_duplicate_ids(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    doubled = _rewrite_table(TINY, tmp_path / "dup.parquet", lambda t: pa.concat_tables([t, t.slice(5, 1)]))
    _compare_refused(TINY, doubled, capsys, str(doubled), "model 'tiny-bi-encoder' has duplicate id(s) d0006")
    _compare_refused(doubled, TINY, capsys, str(doubled), "duplicate id(s)")


def test_missing_ids(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fewer = _rewrite_table(TINY, tmp_path / "fewer.parquet", lambda t: pa.concat_tables([t.slice(0, 5), t.slice(6)]))
    _compare_refused(TINY, fewer, capsys, str(fewer), "d0006")


def test_incomparable_inputs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    def other_corpus(meta: dict) -> dict:
        return {**meta, "corpus": {**meta["corpus"], "sha256": "0" * 64, "name": "other"}}

    def other_weights(meta: dict) -> dict:
        return {**meta, "models": {**meta["models"], CE: {**meta["models"][CE], "weights_sha256": "f" * 64}}}

    def other_model(meta: dict) -> dict:
        models = dict(meta["models"])
        models["another-model"] = models.pop(CE)
        return {**meta, "models": models}

    corpus = perturb_results(TINY, tmp_path / "corpus.parquet", BI, meta_update=other_corpus)
    _compare_refused(TINY, corpus, capsys, str(corpus), "corpus differs from baseline", "other")
    weights = perturb_results(TINY, tmp_path / "weights.parquet", CE, meta_update=other_weights)
    _compare_refused(TINY, weights, capsys, str(weights), "'tiny-cross-encoder' weights differ", "--allow-model-change")
    model = perturb_results(TINY, tmp_path / "model.parquet", CE, meta_update=other_model)
    _compare_refused(TINY, model, capsys, str(model), "only in baseline: tiny-cross-encoder", "only in candidate: another-model")


def test_failed_compare_overwrites_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    report = tmp_path / "verdict.json"
    report.write_text("previous")
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"junk")
    _bad_input(["compare", str(TINY), str(junk), "--json", str(report)], capsys, str(junk))
    assert report.read_text() == "previous" and sorted(p.name for p in tmp_path.iterdir()) == ["junk.parquet", "verdict.json"]


# -- broken runs ----------------------------------------------------------------------------------------------


def _existing_out(tmp_path: Path) -> Tuple[Path, bytes]:
    out = tmp_path / "out" / "run.parquet"
    out.parent.mkdir()
    out.write_bytes(b"a previous results file")
    return out, out.read_bytes()


def _untouched(out: Path, before: bytes) -> None:
    assert out.read_bytes() == before
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name], list(out.parent.iterdir())


def test_empty_corpus(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("documents.jsonl", "queries.jsonl", "rerank.jsonl"):
        (corpus / name).write_text("")
    out, before = _existing_out(tmp_path)
    _bad_input(["run", "--models", "tiny", "--device", "cpu", "--corpus", str(corpus), "--out", str(out)], capsys,
               "documents.jsonl", "empty corpus (no documents)")
    _untouched(out, before)


def test_model_without_weights(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    empty = tmp_path / "no-weights"
    shutil.copytree(MODELS / "tiny-bi-encoder", empty)
    (empty / "model.safetensors").unlink()
    out, before = _existing_out(tmp_path)
    _bad_input(["run", "--models", str(empty), "--device", "cpu", "--out", str(out)], capsys,
               "model 'no-weights'", str(empty), "holds no weights")
    _untouched(out, before)


def _custom_code_model(tmp_path: Path, with_auto_map: bool = True) -> Path:
    """The tiny bi-encoder with a custom modeling file (a plain BERT subclass), as remote-code models ship."""
    custom = tmp_path / "custom-code"
    shutil.copytree(MODELS / "tiny-bi-encoder", custom)
    (custom / "modeling_custom.py").write_text(textwrap.dedent("""
        from transformers import BertModel


        class CustomBert(BertModel):
            pass
    """))
    if with_auto_map:
        config = json.loads((custom / "config.json").read_text())
        config["auto_map"] = {"AutoModel": "modeling_custom.CustomBert"}
        (custom / "config.json").write_text(json.dumps(config))
    return custom


@pytest.mark.parametrize("with_auto_map", [True, False], ids=["auto_map", "only-a-py-file"])
def test_remote_code_refused(tmp_path: Path, capsys: pytest.CaptureFixture, with_auto_map: bool) -> None:
    custom = _custom_code_model(tmp_path, with_auto_map)
    out, before = _existing_out(tmp_path)
    _bad_input(["run", "--models", str(custom), "--device", "cpu", "--out", str(out)], capsys,
               "model 'custom-code'", "needs trust_remote_code", "--trust-remote-code")
    _untouched(out, before)


def test_registry_flag_alone_does_not_allow_remote_code(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``trust_remote_code = true`` in a registry entry is not consent: the run needs --trust-remote-code too."""
    custom = _custom_code_model(tmp_path)
    registry = tmp_path / "registry.toml"
    registry.write_text(f'[models.custom]\nkind = "bi-encoder"\nsource = "path"\npath = "{custom}"\ntrust_remote_code = true\n')
    out, before = _existing_out(tmp_path)
    _bad_input(["run", "--registry", str(registry), "--models", "custom", "--device", "cpu", "--out", str(out)], capsys,
               "needs trust_remote_code")
    _untouched(out, before)


@pytest.mark.slow
def test_remote_code_runs_when_opted_in(tmp_path: Path) -> None:
    custom = _custom_code_model(tmp_path)
    out = tmp_path / "custom.parquet"
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}  # transformers copies the code there
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--models", str(custom), "--device", "cpu",
                           "--trust-remote-code", "--out", str(out)], capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert ResultsFile(out).meta["models"]["custom-code"]["architecture"] == "CustomBert"


# -- security defaults ----------------------------------------------------------------------------------------


def test_runner_goes_offline_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hub_constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)  # as if imported while online
    out = run_tiny(tmp_path / "offline.parquet")
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert hub_constants.HF_HUB_OFFLINE is True  # already-imported libraries are switched too
    recorded = ResultsFile(out)
    assert recorded.fingerprint["env"]["HF_HUB_OFFLINE"] == recorded.fingerprint["env"]["TRANSFORMERS_OFFLINE"] == "1"
    assert recorded.meta["run"]["allow_network"] is False


def test_runner_leaves_network_alone_with_allow_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hub_constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    out = run_tiny(tmp_path / "online.parquet", allow_network=True)  # local models: nothing is downloaded
    assert "HF_HUB_OFFLINE" not in os.environ and hub_constants.HF_HUB_OFFLINE is False
    assert ResultsFile(out).meta["run"]["allow_network"] is True


def test_safetensors_preferred_over_pickle(tmp_path: Path, tiny_results: Path) -> None:
    """A directory with both formats loads model.safetensors; the pickle beside it is never unpickled."""
    both = tmp_path / "both-formats"
    shutil.copytree(MODELS / "tiny-bi-encoder", both)
    marker = tmp_path / "pickle-was-loaded"
    (both / "pytorch_model.bin").write_bytes(_booby_trapped_pickle(marker))
    out = run_tiny(tmp_path / "both.parquet", models=[str(both)])
    info = ResultsFile(out).meta["models"]["both-formats"]
    assert info["weights_format"] == "safetensors" and "pytorch_model.bin" in info["weight_files"]
    assert not marker.exists()
    np.testing.assert_array_equal(ResultsFile(out).embeddings("both-formats")[2], ResultsFile(tiny_results).embeddings(BI)[2])


class _Trap:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (Path.touch, (self.marker,))


def _booby_trapped_pickle(marker: Path) -> bytes:
    """A torch-style pickle that creates ``marker`` if anything unpickles it."""
    import pickle

    return pickle.dumps({"embeddings.word_embeddings.weight": _Trap(marker)})


# -- interrupted and concurrent runs --------------------------------------------------------------------------


def _leftovers(directory: Path) -> List[str]:
    return sorted(p.name for p in directory.iterdir())


class _Harness:
    """``python -m harness run`` in a subprocess, its stderr collected as it arrives."""

    def __init__(self, out: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harness", "run", "--models", "tiny", "--device", "cpu", "--out", str(out), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
            # a shell's background job (`.ci/run &`) ignores SIGINT and its children inherit that; a user's
            # terminal does not: give the run the default handling, as a foreground run has
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.err = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        while chunk := self.proc.stderr.read1(4096):
            self.err += chunk

    def wait_for(self, marker: bytes, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.err:
            assert self.proc.poll() is None, f"exited early: {self.err.decode(errors='replace')[-2000:]}"
            assert time.monotonic() < deadline, "timed out waiting for the model to start"
            time.sleep(0.05)

    def finish(self, timeout: float = 180.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
def test_interrupted_run_leaves_nothing(tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "reports" / "run.parquet"
    run = _Harness(out, "--progress", "--batch-size", "1")  # batch size 1: seconds of model work to interrupt
    run.wait_for(b"Batches")
    run.proc.send_signal(sig)
    code = run.finish()
    if sig == signal.SIGINT:
        assert code == 130 and b"interrupted" in run.err, run.err[-2000:]
    else:
        assert code == -signal.SIGKILL
    assert not out.exists()
    assert not out.parent.exists() or _leftovers(out.parent) == []


def test_stale_temp_file_of_a_killed_writer_is_removed(tmp_path: Path) -> None:
    """SIGKILL between writing the temp file and renaming it leaves ``.<name>.*.tmp``; the next write removes it."""
    out = tmp_path / "run.parquet"
    script = (
        "import os, signal, sys\n"
        "from harness.fsio import atomic_output\n"
        "with atomic_output(sys.argv[1]) as tmp:\n"
        "    tmp.write_bytes(b'PAR1 half a file')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(out)], cwd=ROOT)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists() and len(stale_temp_files(out)) == 1  # readers never see it: it is not the target
    run_tiny(out)
    assert stale_temp_files(out) == [] and _leftovers(tmp_path) == ["run.parquet"]
    assert sorted(ResultsFile(out).records) == [BI, CE]


_WRITER = """
import sys
import numpy as np
from harness.fsio import output_lock
from harness.results import ModelRows, write_results

target, writer, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
n, dim = 20000, 64
for i in range(rounds):
    vectors = np.full((n, dim), writer * 1000 + i, dtype=np.float32)
    meta = {"corpus": {"sha256": "x"}, "writer": writer, "round": i,
            "models": {"m": {"kind": "bi-encoder", "status": "ok", "dim": dim, "vector_dtype": "float32"}}}
    with output_lock(target):
        write_results(target, [ModelRows("m", "embed", [f"t{j}" for j in range(n)], roles=["document"] * n, vectors=vectors)], meta)
"""


def test_concurrent_writers_never_expose_a_partial_file(tmp_path: Path) -> None:
    """Three processes rewrite the same file while this one reads it: every read sees one complete file."""
    target = tmp_path / "shared" / "x.parquet"
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    writers = [subprocess.Popen([sys.executable, str(script), str(target), str(w), "6"], cwd=ROOT) for w in range(3)]
    reads = 0
    while any(w.poll() is None for w in writers):
        if target.exists():
            results = ResultsFile(target)
            _, _, vectors = results.embeddings("m")
            expected = results.meta["writer"] * 1000 + results.meta["round"]
            assert vectors.shape == (20000, 64) and (vectors == expected).all()
            reads += 1
    assert [w.wait() for w in writers] == [0, 0, 0]
    assert reads > 0 and _leftovers(target.parent) == ["x.parquet"]
    assert ResultsFile(target).meta["round"] == 5


def test_output_lock_serializes_threads_and_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "t.parquet"
    inside: List[int] = []
    overlap: List[bool] = []

    def work(i: int) -> None:
        for _ in range(20):
            with output_lock(target):
                inside.append(i)
                overlap.append(len(inside) > 1)
                time.sleep(0.001)
                inside.remove(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(overlap) == 80 and not any(overlap)
    assert _leftovers(tmp_path) == []


@pytest.mark.slow
def test_two_concurrent_cli_runs_write_one_complete_file(tmp_path: Path) -> None:
    out = tmp_path / "reports" / "same.parquet"
    runs = [_Harness(out), _Harness(out)]
    codes = [r.finish() for r in runs]
    assert codes == [0, 0], [r.err.decode(errors="replace")[-2000:] for r in runs]
    assert _leftovers(out.parent) == ["same.parquet"]
    from harness.compare.comparator import compare_files

    assert compare_files(TINY, out)  # complete and equal to the baseline


# -- every column and metadata field of the schema, of the wrong type: exit 2 in either position ----------------


def _wrong_column_cases() -> List[Tuple[str, pa.DataType]]:
    """For each results column, every type of a small palette that is not the schema's (generated, not listed)."""
    from harness.results.schema import (
        COLUMNS,
        _same_type,  # noqa: PLC2701 - the test checks the reader's own rule
        arrow_schema,
    )

    palette = [pa.int32(), pa.int64(), pa.float32(), pa.float64(), pa.string(), pa.binary(), pa.binary(4),
               pa.list_(pa.float32()), pa.bool_()]
    expected = arrow_schema(1)
    return [(name, kind) for name in COLUMNS for kind in palette if not _same_type(kind, expected.field(name).type)]


WRONG_COLUMNS = _wrong_column_cases()


@pytest.mark.parametrize("side", ["baseline", "candidate"])
@pytest.mark.parametrize("column, kind", WRONG_COLUMNS, ids=[f"{c}-{k}" for c, k in WRONG_COLUMNS])
def test_a_column_of_the_wrong_type(tmp_path: Path, capsys: pytest.CaptureFixture, side: str, column: str,
                                    kind: pa.DataType) -> None:
    good = _synthetic(tmp_path / "good.parquet")

    def retype(table: pa.Table) -> pa.Table:
        index = table.schema.get_field_index(column)
        return table.set_column(index, pa.field(column, kind), pa.nulls(table.num_rows, type=kind))

    bad = _rewrite_table(good, tmp_path / "bad.parquet", retype)
    pair = (bad, good) if side == "baseline" else (good, bad)
    _compare_refused(*pair, capsys, str(bad), f"column '{column}' must be", f"got {str(kind).split('<')[0]}")


def test_a_vector_column_of_variable_width_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Real vectors in a variable-width binary column (a foreign writer's layout), not nulls."""
    good = _synthetic(tmp_path / "good.parquet")
    bad = _rewrite_table(good, tmp_path / "bad.parquet", lambda t: t.set_column(
        t.schema.get_field_index("vector"), "vector", t.column("vector").cast(pa.binary())))
    _compare_refused(good, bad, capsys, str(bad), "column 'vector' must be fixed_size_binary", "got binary")


def _wrong_value(hint: object) -> object:
    """A JSON value of a type other than the field's (``_expected`` reads the hint as the reader does)."""
    from harness.results.meta import _expected  # noqa: PLC2701

    kind, _ = _expected(hint)
    if isinstance(kind, type) and hasattr(kind, "from_dict"):
        return [1]
    return {str: 7, int: "7", float: "7.5", bool: "yes", dict: [1], list: "x"}[kind]


def _wrong_metadata_cases() -> List[Tuple[str, object]]:
    """Every typed field of the metadata (``harness.results.meta``), at every place it occurs, as a path."""
    import dataclasses
    import typing

    from harness.results.meta import CorpusMeta, ModelRecord, Provenance, ResultsMeta, RunMeta

    def fields(cls: type, prefix: str) -> List[Tuple[str, object]]:
        hints = typing.get_type_hints(cls)
        return [(f"{prefix}{f.name}", _wrong_value(hints[f.name])) for f in dataclasses.fields(cls) if f.name != "extra"]

    cases = fields(ResultsMeta, "")
    cases += fields(CorpusMeta, "corpus.") + fields(RunMeta, "run.") + fields(ModelRecord, "models.bi.")
    cases += fields(Provenance, "baseline.") + fields(Provenance, "baseline.history[0].")
    return cases


WRONG_METADATA = _wrong_metadata_cases()


def _set_path(meta: dict, path: str, value: object) -> None:
    """Set ``a.b.c`` (``history[0]`` is the first entry of a one-entry history) in ``meta``."""
    node = meta
    *parents, last = path.replace("history[0]", "history.0").split(".")
    for part in parents:
        if part == "0":
            node = node[0]
        elif part == "history":
            node = node.setdefault("history", [{}])
        else:
            node = node.setdefault(part, {}) if isinstance(node.get(part), dict) else node.__setitem__(part, {}) or node[part]
    node[last] = value


@pytest.mark.parametrize("side", ["baseline", "candidate"])
@pytest.mark.parametrize("field, value", WRONG_METADATA, ids=[f for f, _ in WRONG_METADATA])
def test_a_metadata_field_of_the_wrong_type(tmp_path: Path, capsys: pytest.CaptureFixture, side: str, field: str,
                                            value: object) -> None:
    from harness.results import METADATA_KEY

    good = _synthetic(tmp_path / "good.parquet")
    table = pq.read_table(str(good))
    meta = json.loads(table.schema.metadata[METADATA_KEY])
    _set_path(meta, field, value)
    bad = tmp_path / "bad.parquet"
    pq.write_table(table.replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()}), str(bad))
    pair = (bad, good) if side == "baseline" else (good, bad)
    shown = field.split(".", 1)[0] if field in ("corpus", "run", "models", "fingerprint") else field
    _compare_refused(*pair, capsys, str(bad), f"metadata '{shown}", "must be")


_DEEP = "[" * 100_000 + "]" * 100_000  # beyond Python's recursion limit, a few hundred kB


def _deep_history(tmp_path: Path) -> None:
    from harness.matrix.publish import load_history

    (tmp_path / "history.jsonl").write_text('{"matrix": "m", "cells": {}}\n' + _DEEP + "\n", encoding="utf-8")
    load_history(tmp_path / "history.jsonl")


def _deep_cell(tmp_path: Path) -> None:
    from harness.matrix.cells import parse_cell_state

    parse_cell_state(_DEEP, str(tmp_path / "cell.json"))


def _deep_plan(tmp_path: Path) -> None:
    from harness.matrix.attribution_run import load_plan

    (tmp_path / "plan.json").write_text(_DEEP, encoding="utf-8")
    load_plan(tmp_path / "plan.json")


def _deep_report_to_merge(tmp_path: Path) -> None:
    from harness.matrix.publish import publish_matrix_report
    from harness.report.matrix_report import build_matrix_report

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "report.json").write_text(_DEEP, encoding="utf-8")
    partial = build_matrix_report("m", "baseline.parquet", [], matrix_cells=["c"])
    assert partial.partial
    publish_matrix_report(partial, tmp_path / "out")


@pytest.mark.parametrize("read", [_deep_history, _deep_cell, _deep_plan, _deep_report_to_merge])
def test_json_nested_too_deeply_is_bad_input(tmp_path: Path, read: Callable[[Path], None]) -> None:
    """Python's JSON parser raises RecursionError on deep nesting: every matrix reader says "malformed" (exit 2)."""
    from harness.matrix.spec import MatrixError

    with pytest.raises(MatrixError, match="nested too deeply"):
        read(tmp_path)


def test_a_plan_nested_too_deeply(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "plan.json").write_text(_DEEP, encoding="utf-8")
    assert main(["attribute", "report", str(tmp_path / "plan.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "plan.json" in err[0] and "nested too deeply" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"], "nothing written"

