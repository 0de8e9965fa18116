"""The results file format: round trip, atomic writes, and refusal of files that are not ours."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.errors import HarnessError, ResultsFileError, SchemaMismatch
from harness.results import METADATA_KEY, SCHEMA_VERSION, ModelRows, ResultsFile, atomic_output, write_results


def _meta(dims: dict) -> dict:
    return {
        "corpus": {"sha256": "abc"},
        "models": {k: {"kind": "bi-encoder", "status": "ok", "dim": d, "vector_dtype": "float32"} for k, d in dims.items()},
    }


def test_round_trip_mixed_dims_and_rerank(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    small = rng.standard_normal((5, 4)).astype(np.float32)
    big = rng.standard_normal((3, 10)).astype(np.float32)
    meta = _meta({"small": 4, "big": 10})
    meta["models"]["ce"] = {"kind": "cross-encoder", "status": "ok"}
    rows = [
        ModelRows("small", "embed", [f"s{i}" for i in range(5)], roles=["document"] * 4 + ["query"], vectors=small),
        ModelRows("big", "embed", ["b0", "b1", "b2"], roles=["document"] * 3, vectors=big),
        ModelRows("ce", "rerank", ["q|a", "q|b"], query_ids=["q", "q"], passage_ids=["a", "b"],
                  scores=np.array([0.5, 0.25], np.float32), ranks=np.array([1, 2], np.int32)),
    ]
    path = write_results(tmp_path / "r.parquet", rows, meta)
    results = ResultsFile(path)
    assert results.meta["schema_version"] == SCHEMA_VERSION
    ids, roles, vec = results.embeddings("small")
    assert ids.tolist() == [f"s{i}" for i in range(5)] and roles[-1] == "query"
    np.testing.assert_array_equal(vec, small)
    np.testing.assert_array_equal(results.embeddings("big")[2], big)
    rr = results.rerank("ce")
    assert rr["passage_id"].tolist() == ["a", "b"] and rr["rank"].tolist() == [1, 2]
    # the vector column is raw fixed-size binary, the layout that decodes fast
    assert pa.types.is_fixed_size_binary(pq.read_schema(path).field("vector").type)


def test_atomic_output_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "out.parquet"
    target.write_bytes(b"previous")
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"half written")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"previous"
    assert list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b"not parquet at all"), "not a readable parquet file"),
        (lambda p: pq.write_table(pa.table({"a": [1]}), p), "not a harness results file"),
    ],
)
def test_foreign_files_are_refused(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "x.parquet"
    make(path)
    with pytest.raises(ResultsFileError, match=message) as info:
        ResultsFile(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_truncated_file_is_refused(tmp_path: Path, tiny_results: Path) -> None:
    data = tiny_results.read_bytes()
    path = tmp_path / "cut.parquet"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ResultsFileError, match="not a readable parquet file"):
        ResultsFile(path)


def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.parquet"
    meta = {"schema_version": SCHEMA_VERSION + 1}
    pq.write_table(pa.table({"a": [1]}).replace_schema_metadata({METADATA_KEY: json.dumps(meta)}), path)
    with pytest.raises(SchemaMismatch, match="upgrade embedding-harness"):
        ResultsFile(path)


def test_missing_columns_are_named(tmp_path: Path) -> None:
    path = tmp_path / "cols.parquet"
    meta = {"schema_version": SCHEMA_VERSION}
    pq.write_table(pa.table({"model_id": ["m"]}).replace_schema_metadata({METADATA_KEY: json.dumps(meta)}), path)
    with pytest.raises(ResultsFileError, match="missing column"):
        ResultsFile(path)


# -- rewrites: the writer's copies of an existing file ---------------------------------------------------------


def _two_models(path: Path) -> Path:
    rng = np.random.default_rng(1)
    meta = _meta({"a": 3, "b": 2})
    rows = [
        ModelRows("a", "embed", ["a0", "a1", "a2", "a3"], roles=["document"] * 3 + ["query"],
                  vectors=rng.standard_normal((4, 3)).astype(np.float32)),
        ModelRows("b", "embed", [f"b{i}" for i in range(400)], roles=["document"] * 399 + ["query"],
                  vectors=rng.standard_normal((400, 2)).astype(np.float32)),
    ]
    return write_results(path, rows, meta)


def test_rewrite_metadata_keeps_rows_checksums_and_the_source_schema_version(tmp_path: Path) -> None:
    from harness.results import rewrite_metadata

    source = _two_models(tmp_path / "s.parquet")
    target = rewrite_metadata(source, tmp_path / "t.parquet", {**ResultsFile(source).meta, "schema_version": 1, "note": "x"})
    before, after = ResultsFile(source), ResultsFile(target)
    assert after.meta["note"] == "x" and after.meta["schema_version"] == 1
    for model_id in ("a", "b"):
        for old, new in zip(before.embeddings(model_id), after.embeddings(model_id)):
            np.testing.assert_array_equal(old, new)
    assert pq.ParquetFile(target).metadata.num_row_groups == pq.ParquetFile(source).metadata.num_row_groups
    assert pq.ParquetFile(target).metadata.row_group(0).column(0).statistics.min == "a"  # row groups stay pure


def test_rewrite_of_a_broken_source_writes_nothing(tmp_path: Path) -> None:
    from harness.results import rewrite_metadata

    source = _two_models(tmp_path / "s.parquet")
    data = bytearray(source.read_bytes())
    chunk = pq.ParquetFile(source).metadata.row_group(1).column(6)  # b's vectors
    middle = chunk.data_page_offset + chunk.total_compressed_size // 2
    data[middle : middle + 16] = b"\xff" * 16
    source.write_bytes(bytes(data))
    with pytest.raises(ResultsFileError, match="row group 1 is unreadable"):
        rewrite_metadata(source, tmp_path / "t.parquet", {"note": "x"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.parquet"]


def test_rewrite_model_replaces_one_models_values_only(tmp_path: Path) -> None:
    from harness.results import rewrite_model

    source = _two_models(tmp_path / "s.parquet")
    before = ResultsFile(source)
    new = np.arange(12, dtype=np.float32).reshape(4, 3)
    target = rewrite_model(source, tmp_path / "t.parquet", "a", vectors=new)
    after = ResultsFile(target)
    np.testing.assert_array_equal(after.embeddings("a")[2], new)
    np.testing.assert_array_equal(after.embeddings("b")[2], before.embeddings("b")[2])
    assert after.meta == before.meta
    with pytest.raises(ValueError, match="model 'a' has 4 rows, got 3 vectors"):
        rewrite_model(source, tmp_path / "u.parquet", "a", vectors=new[:3])
    assert not (tmp_path / "u.parquet").exists()


# -- typed views of the metadata -------------------------------------------------------------------------------


def test_typed_views_read_what_the_runner_wrote(tiny_results: Path) -> None:
    results = ResultsFile(tiny_results)
    assert results.run.device == "cpu" and results.run.batch_size == 32 and results.run.tf32_requested is None
    assert results.run.peak_rss_bytes and results.run.peak_rss_bytes > 0
    bi = results.records["tiny-bi-encoder"]
    assert bi.ok and bi.kind == "bi-encoder" and bi.dim == 32 and bi.vector_dtype == "float32"
    assert bi.source and bi.source["kind"] == "bi-encoder" and bi.items_per_s and bi.encode is not None
    assert results.records["tiny-cross-encoder"].dim is None and results.provenance is None
    assert results.corpus_meta.sha256 == results.meta["corpus"]["sha256"] and results.harness_version


def test_metadata_round_trips_and_keeps_unknown_keys() -> None:
    from harness.results import ResultsMeta

    data = {"harness_version": "9.9", "future": {"x": 1}, "run": {"device": "cpu", "new_flag": True},
            "models": {"m": {"kind": "bi-encoder", "status": "ok", "dim": 4, "backend_sha256": None}}}
    meta = ResultsMeta.from_dict(data, "f.parquet")
    assert meta.run.extra == {"new_flag": True} and meta.models["m"].extra == {"backend_sha256": None}
    again = meta.to_dict()
    assert again["future"] == {"x": 1} and again["run"]["new_flag"] is True and again["run"]["device"] == "cpu"
    assert again["models"]["m"] == data["models"]["m"]


@pytest.mark.parametrize("section, value, field", [
    ("run", {"batch_size": "32"}, "run.batch_size' must be an integer, got '32'"),
    ("run", {"tf32_requested": 1}, "run.tf32_requested' must be true or false, got 1"),
    ("run", [1, 2], "metadata 'run' must be an object, got list"),
    ("models", {"m": {"dim": True}}, "models.m.dim' must be an integer, got True"),
    ("baseline", {"history": [{"reason": 3}]}, "baseline.history[0].reason' must be a string, got 3"),
])
def test_a_field_of_the_wrong_type_names_the_file_and_the_field(tmp_path: Path, section: str, value: object, field: str) -> None:
    path = write_results(tmp_path / "bad.parquet", [], {section: value})
    with pytest.raises(ResultsFileError) as info:
        ResultsFile(path)  # opening checks every typed field, before any comparison reads one
    assert str(info.value).startswith(f"{path}: metadata '") and field in str(info.value)
    assert "\n" not in str(info.value)


# -- a results file as a pandas DataFrame ----------------------------------------------------------------------

COMMITTED_TINY = Path(__file__).resolve().parents[2] / "fixtures" / "baselines" / "tiny-cpu-float32.parquet"


def test_to_pandas_is_tidy_with_decoded_vectors_and_integer_ranks() -> None:
    import numpy as np

    from harness.results import read_frame

    results = ResultsFile(COMMITTED_TINY)
    frame = results.to_pandas()
    assert list(frame.columns) == ["model_id", "task", "role", "item_id", "query_id", "passage_id", "vector", "score", "rank"]
    assert len(frame) == results.num_rows and str(frame["rank"].dtype) == "Int32" and str(frame["score"].dtype) == "float32"
    ids, roles, vectors = results.embeddings("tiny-bi-encoder")
    embed = frame[frame["model_id"] == "tiny-bi-encoder"]
    assert list(embed["item_id"]) == list(ids) and list(embed["role"]) == list(roles)
    assert np.array_equal(np.stack(embed["vector"].to_list()), vectors)  # bit for bit, each row an array
    assert embed["rank"].isna().all() and embed["score"].isna().all()
    rerank = results.rerank("tiny-cross-encoder")
    scored = frame[frame["model_id"] == "tiny-cross-encoder"]
    assert scored["rank"].to_numpy(dtype=np.int64).tolist() == rerank["rank"].tolist()
    assert np.array_equal(scored["score"].to_numpy(), rerank["score"]) and scored["vector"].isna().all()
    one = read_frame(COMMITTED_TINY, ["tiny-cross-encoder"])
    assert set(one["model_id"]) == {"tiny-cross-encoder"} and len(one) == len(scored)
    with pytest.raises(HarnessError, match="has no model"):
        results.to_pandas(["nope"])


def test_the_results_package_reads_and_writes_without_pandas(tmp_path: Path) -> None:
    """A matrix cell's environment need not have pandas: reading, writing rerank scores (float32 and an fp64
    reference's float64) and rewriting a model never import it; only ``to_pandas`` says it needs it."""
    import subprocess
    import sys

    code = ("import sys, importlib.abc\n"  # an environment without pandas: importing it fails as it would there
            "class NoPandas(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name.split('.')[0] == 'pandas':\n"
            "            raise ModuleNotFoundError(\"No module named 'pandas'\")\n"
            "sys.meta_path.insert(0, NoPandas())\n"
            "import numpy as np; import harness.results as r; from harness.testing import perturb_results\n"
            "f = r.ResultsFile(sys.argv[1]); f.embeddings('tiny-bi-encoder'); d = f.rerank('tiny-cross-encoder')\n"
            "for dtype in (np.float32, np.float64):\n"
            "    rows = [r.ModelRows('ce', 'rerank', list(d['item_id']), query_ids=list(d['query_id']),\n"
            "            passage_ids=list(d['passage_id']), scores=d['score'].astype(dtype), ranks=d['rank'])]\n"
            "    r.write_results(sys.argv[2] + dtype.__name__, rows, {'corpus': f.meta['corpus'], 'fingerprint': {}, 'run': {},\n"
            "                    'models': {'ce': {'kind': 'cross-encoder', 'status': 'ok'}}})\n"
            "perturb_results(sys.argv[1], sys.argv[2] + 'moved', 'tiny-cross-encoder', scores=lambda s: s + 1e-6)\n"
            "try:\n    f.to_pandas()\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
    done = subprocess.run([sys.executable, "-c", code, str(COMMITTED_TINY), str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("HarnessError") and "needs pandas" in done.stdout


# -- rerank pair ids: injective, and 'q|p' unchanged for plain ids ----------------------------------------------


def test_pair_item_ids_are_injective_and_unchanged_for_plain_ids() -> None:
    from harness.results import pair_item_id, split_pair_item_id

    assert pair_item_id("q001", "d0042") == "q001|d0042"  # what every committed baseline holds
    assert pair_item_id("a|b", "c") != pair_item_id("a", "b|c")
    assert pair_item_id("a\\", "|b") != pair_item_id("a\\|", "b")
    for q, p in (("a|b", "c"), ("a", "b|c"), ("\\", "|"), ("", ""), ("a\\|b", "\\\\|")):
        assert split_pair_item_id(pair_item_id(q, p)) == (q, p)
    for broken in ("no-separator", "a|b|c", "a\\x|b", "a|b\\"):
        with pytest.raises(ValueError):
            split_pair_item_id(broken)


def _rerank_rows(item_ids: list, model: str = "ce") -> ModelRows:
    n = len(item_ids)
    parts = [i.split("|", 1) for i in item_ids]  # the pair's query and passage, as its id names them
    return ModelRows(model, "rerank", item_ids, query_ids=[q for q, _ in parts], passage_ids=[p for _, p in parts],
                     scores=np.zeros(n, np.float32), ranks=np.arange(1, n + 1, dtype=np.int32))


def test_the_writer_refuses_duplicate_item_ids_per_model(tmp_path: Path) -> None:
    from harness.results import ResultsWriter

    path = tmp_path / "dup.parquet"
    with pytest.raises(ResultsFileError, match=r"dup.parquet: model 'ce': duplicate item id 'q\|p' \(item ids are unique"):
        write_results(path, [_rerank_rows(["q|a", "q|p", "q|p"])], _meta({}))
    assert not path.exists()
    with pytest.raises(ResultsFileError, match="duplicate item id 'q|a'"):  # across chunks of one model
        with ResultsWriter(path, _meta({}), vector_width=4) as writer:
            writer.write(_rerank_rows(["q|a", "q|b"]))
            writer.write(_rerank_rows(["q|c", "q|a"]))
    assert not path.exists()
    # the same ids under two models are fine, and so are many chunks of distinct ids
    with ResultsWriter(path, _meta({}), vector_width=4) as writer:
        writer.write(_rerank_rows(["q|a", "q|b"], "ce"))
        writer.write(_rerank_rows(["q|a", "q|b"], "ce@logits"))
        for start in range(0, 3000, 7):
            writer.write(_rerank_rows([f"x|{i:04d}" for i in range(start, start + 7)], "big"))  # in canonical order
    assert ResultsFile(path).num_rows == 4 + 3003


def test_the_writer_names_a_lone_surrogate(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    with pytest.raises(ResultsFileError, match=r"bad.parquet: model 'ce': item_id 'q\|\\ud800' is not valid Unicode"):
        write_results(path, [_rerank_rows(["q|ok", "q|\ud800"])], _meta({}))
    assert not path.exists()


# -- metadata read back: anything malformed is one ResultsFileError line naming the file ------------------------


def _with_raw_metadata(tmp_path: Path, raw: bytes) -> Path:
    """A valid small results file whose ``harness`` metadata bytes are replaced by ``raw`` as they are."""
    good = write_results(tmp_path / "good.parquet", [ModelRows("m", "embed", ["a"], ["document"], np.ones((1, 2), np.float32))],
                         _meta({"m": 2}))
    table = pq.read_table(good)
    path = tmp_path / "bad.parquet"
    pq.write_table(table.replace_schema_metadata({METADATA_KEY: raw}), path)
    return path


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("raw, problem", [
    (b"[1, 2]", "must be a JSON object, got list"),
    (b'"text"', "must be a JSON object, got str"),
    (b"{", "not valid JSON"),
    (b"\xff\xfe{}", "not valid JSON"),
    (b'{"schema_version": 1, "x": ' + DEEP.encode() + b"}", "not valid JSON (nested too deeply)"),
    (b'{"schema_version": 1, "fingerprint": ' + b'{"a": ' * 40 + b"1" + b"}" * 40 + b"}", "nested deeper than 32 levels"),
    (b'{"schema_version": 1, "run": {"duration_s": NaN}}', "NaN is not a JSON number"),
    (b'{"schema_version": 1, "run": {"duration_s": -Infinity}}', "Infinity is not a JSON number"),
    (b'{"schema_version": 1, "run": {"duration_s": 1e400}}', "the number at 'run.duration_s' is not finite"),
    (b'{"schema_version": 1, "run": {"batch_size": ' + b"9" * 30 + b"}}", "the integer at 'run.batch_size' does not fit"),
    (b'{"schema_version": 1, "x": ' + b"9" * 5000 + b"}", "not valid JSON"),
    (b'{"schema_version": 1, "cell_id": "\\ud800"}', "the string at 'cell_id' is not valid Unicode text"),
    (b'{"schema_version": 1, "models": {"m\\udc00": {}}}', "a key at 'models' is not valid Unicode text"),
    (b'{"schema_version": 1e0}', "no valid schema_version"),
], ids=lambda v: (v.decode('utf-8', 'replace') if isinstance(v, bytes) else str(v))[:40])
def test_malformed_metadata_is_one_line(tmp_path: Path, raw: bytes, problem: str) -> None:
    path = _with_raw_metadata(tmp_path, raw)
    with pytest.raises(ResultsFileError) as info:
        ResultsFile(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message and len(message) < 400, message


@pytest.mark.parametrize("dtype", ["object", "U8", "V4", "datetime64[s]", "complex64", "nonsense", "(2,)f4"])
def test_a_vector_dtype_that_is_no_number_is_one_line(tmp_path: Path, dtype: object) -> None:
    meta = _meta({"m": 2, "other": 2})
    meta["models"]["other"]["vector_dtype"] = dtype  # in another model: vector_spec of 'm' looks at every model
    rows = [ModelRows(k, "embed", ["a"], ["document"], np.ones((1, 2), np.float32)) for k in ("m", "other")]
    results = ResultsFile(write_results(tmp_path / "r.parquet", rows, meta))
    assert results.vector_spec("m")[0] == 2
    with pytest.raises(ResultsFileError, match="model 'other' has an invalid vector_dtype"):
        results.embeddings("other")
