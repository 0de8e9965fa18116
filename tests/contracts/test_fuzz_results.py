"""Fuzzing results metadata read back: a real small results file, written by the writer, with its ``harness`` JSON
mutated (wrong types, NaN, huge numbers, deep nesting, broken JSON, lone surrogates) either reads, through every
typed view and every model's rows, or is refused with one ResultsFileError line naming the file.

Budget: the hypothesis profile (tests/conftest.py); ``nox -s fuzz`` runs the large one.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, List

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.errors import ResultsFileError
from harness.results import METADATA_KEY, ModelRows, ResultsFile, write_results

pytestmark = pytest.mark.fuzz

ANY_TEXT = st.text(st.characters(codec=None), max_size=8)
SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63 - 2, max_value=2**70)
           | st.floats() | ANY_TEXT | st.sampled_from(["float32", "int8", "object", "U4", "ok", "cross-encoder", "bi-encoder"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
                      max_leaves=6)


@pytest.fixture(scope="module")
def table() -> pa.Table:
    """A real results file's table (one bi-encoder, one cross-encoder), from the writer."""
    meta = {
        "harness_version": "0.1.0", "created_at": "2026-01-01T00:00:00Z", "cell_id": "c",
        "corpus": {"name": "c", "version": "1", "sha256": "abc", "documents": 2, "queries": 1, "pairs": 2},
        "run": {"device": "cpu", "dtype": "float32", "batch_size": 8, "duration_s": 1.5},
        "fingerprint": {"python": "3.11", "blas_runtime": [{"library": "libgomp.so"}], "packages": {"torch": "2.4"}},
        "models": {"bi": {"kind": "bi-encoder", "status": "ok", "dim": 3, "vector_dtype": "float32", "weight_files": ["w"]},
                   "ce": {"kind": "cross-encoder", "status": "ok", "num_labels": 1}},
        "baseline": {"name": "b", "action": "create", "history": [{"name": "b0"}]},
    }
    rows = [ModelRows("bi", "embed", ["d1", "d2", "q1"], ["document", "document", "query"], np.ones((3, 3), np.float32)),
            ModelRows("ce", "rerank", ["q1|d1", "q1|d2"], query_ids=["q1", "q1"], passage_ids=["d1", "d2"],
                      scores=np.array([0.5, -1.0], np.float32), ranks=np.array([1, 2], np.int32))]
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return pq.read_table(write_results(Path(tmp) / "r.parquet", rows, meta))


def _paths(value: Any, prefix: List[Any]) -> List[List[Any]]:
    """Every path into a JSON value (dict keys and list indexes)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, prefix + [key])
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _paths(item, prefix + [i])
    return found


@st.composite
def mutated(draw: Any, meta: dict) -> bytes:
    meta = copy.deepcopy(meta)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(meta, [])
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "replace", "delete", "add", "nest"]))
        if not path:
            if action == "replace":
                meta = draw(VALUES)  # type: ignore[assignment]
            continue
        parent: Any = meta
        for step in path[:-1]:
            parent = parent[step]
        if action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(ANY_TEXT)] = draw(VALUES)
        elif action == "nest":
            depth = draw(st.integers(1, 3000))
            parent[path[-1]] = json.loads("[" * min(depth, 900) + "]" * min(depth, 900))
        else:
            parent[path[-1]] = draw(VALUES)
    text = json.dumps(meta, allow_nan=True, ensure_ascii=draw(st.booleans()))
    raw = text.encode("utf-8", "surrogatepass")
    damage = draw(st.sampled_from(["none", "none", "truncate", "garbage", "deep"]))
    if damage == "truncate":
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif damage == "garbage":
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=6)) + raw[at:]
    elif damage == "deep":
        raw = b'{"schema_version": 1, "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    return raw


def _read_everything(results: ResultsFile) -> None:
    """What the comparator, the reports and a re-run read of a file's metadata and rows."""
    read = (results.run, results.records, results.provenance, results.corpus_meta, results.created_at,
            results.harness_version, results.cell_id, results.fingerprint)
    assert len(read) == 8
    for model_id, record in results.records.items():
        if model_id == "bi" or record.kind == "bi-encoder":
            results.vector_spec(model_id)
            results.embeddings(model_id)
        else:
            results.rerank(model_id)


@given(data=st.data())
def test_mutated_metadata_reads_or_is_one_results_file_error(tmp_path_factory: pytest.TempPathFactory, table: pa.Table,
                                                            data: st.DataObject) -> None:
    meta = json.loads(table.schema.metadata[METADATA_KEY])
    raw = data.draw(mutated(meta))
    path = tmp_path_factory.mktemp("fz") / "mutated.parquet"
    pq.write_table(table.replace_schema_metadata({METADATA_KEY: raw}), path)
    try:
        _read_everything(ResultsFile(path))
    except ResultsFileError as err:
        message = str(err)
        assert message.startswith(str(path)) and "\n" not in message and len(message) < 600, message
