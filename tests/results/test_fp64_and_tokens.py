"""The results format's fp64 reference additions: float64 vectors and scores stored exactly, and the optional
per-text ``tokens``/``truncated`` columns (kept aligned through the canonical sort; absent in older files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.errors import ResultsFileError
from harness.results import ModelRows, ResultsFile, rewrite_model, write_results

META = {"models": {"bi": {"kind": "bi-encoder", "status": "ok", "dim": 3, "vector_dtype": "float64"},
                   "ce": {"kind": "cross-encoder", "status": "ok"}}}


def _rows(tokens: bool = True) -> list:
    rng = np.random.default_rng(1)
    ids = ["d3", "d1", "d2", "q0"]  # not in canonical order: the writer sorts, the token columns must follow
    extra = {"tokens": np.array([30, 10, 20, 5]), "truncated": np.array([True, False, False, False])} if tokens else {}
    vectors = rng.normal(size=(4, 3)) * 1e-3  # float64 values that float32 cannot hold
    scores = np.array([0.1 + 1e-12, 0.3, 0.2, 0.7])
    pair = ModelRows("ce", "rerank", ["q|b", "q|a", "q|c", "r|a"], query_ids=["q", "q", "q", "r"],
                     passage_ids=["b", "a", "c", "a"], scores=scores, ranks=np.array([3, 1, 2, 1]),
                     **({"tokens": np.array([7, 6, 8, 9]), "truncated": np.array([False, False, True, False])}
                        if tokens else {}))
    return [ModelRows("bi", "embed", ids, roles=["document"] * 3 + ["query"], vectors=vectors, **extra), pair]


def test_float64_vectors_and_scores_round_trip_exactly(tmp_path: Path) -> None:
    rows = _rows()
    results = ResultsFile(write_results(tmp_path / "r.parquet", rows, META))
    ids, _, vectors = results.embeddings("bi")
    assert vectors.dtype == np.float64 and list(ids) == ["d1", "d2", "d3", "q0"]
    assert np.array_equal(vectors, rows[0].vectors[[1, 2, 0, 3]])  # bit for bit, not rounded to float32
    scores = results.rerank("ce")["score"]
    assert scores.dtype == np.float64 and scores[1] == 0.1 + 1e-12  # q|b, after q|a
    assert results.arrow_schema.field("score").type == pa.float64()
    changed = rewrite_model(results, tmp_path / "w.parquet", "ce", scores=scores + 1e-13)
    again = ResultsFile(changed).rerank("ce")["score"]
    assert again.dtype == np.float64 and np.array_equal(again, scores + 1e-13)


def test_token_columns_follow_the_rows_and_are_absent_in_older_files(tmp_path: Path) -> None:
    results = ResultsFile(write_results(tmp_path / "r.parquet", _rows(), META))
    tokens = results.token_columns("bi")
    assert tokens is not None and list(tokens["item_id"]) == ["d1", "d2", "d3", "q0"]
    assert list(tokens["tokens"]) == [10, 20, 30, 5] and list(tokens["truncated"]) == [False, False, True, False]
    pairs = results.token_columns("ce")
    assert pairs is not None and list(pairs["tokens"]) == [6, 7, 8, 9] and list(pairs["truncated"]) == [0, 0, 1, 0]
    plain = ResultsFile(write_results(tmp_path / "old.parquet", _rows(tokens=False), META))
    assert "tokens" not in plain.arrow_schema.names and plain.token_columns("bi") is None
    assert plain.arrow_schema.field("score").type == pa.float64()
    mixed = _rows()
    mixed[1] = ModelRows(**{**mixed[1].__dict__, "tokens": None, "truncated": None})  # a served model: none
    file = ResultsFile(write_results(tmp_path / "mixed.parquet", mixed, META))
    assert file.token_columns("ce") is None and file.token_columns("bi") is not None


@pytest.mark.parametrize(("column", "kind"), [("tokens", pa.string()), ("truncated", pa.int8()), ("score", pa.int32())])
def test_a_column_of_another_type_is_refused_on_open(tmp_path: Path, column: str, kind: pa.DataType) -> None:
    path = write_results(tmp_path / "r.parquet", _rows(), META)
    table = pq.read_table(path)
    index = table.schema.get_field_index(column)
    values = table.column(column).cast(kind, safe=False)
    bad = table.set_column(index, pa.field(column, kind), values)
    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(ResultsFileError, match=f"bad.parquet: column '{column}' must be"):
        ResultsFile(tmp_path / "bad.parquet")
