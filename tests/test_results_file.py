"""The results file format: round trip, atomic writes, and refusal of files that are not ours."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.errors import ResultsFileError, SchemaMismatch
from harness.results.reader import METADATA_KEY, SCHEMA_VERSION, ModelRows, ResultsFile, atomic_output, write_results


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
