"""The scenario through a FAISS index (harness.compare.vector_index), bring-your-own index files and id maps,
and the ``[index]`` settings of a project config."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.cli import main
from harness.compare.vector_index import VectorIndexError, index_scenario, parse_id_map
from harness.config.project import IndexSettings
from tests.oracles import retrieval_scenarios

faiss = pytest.importorskip("faiss")


def corpus(seed: int = 0, n: int = 400, dim: int = 16, nq: int = 40, move: float = 0.02) -> Dict[str, Any]:
    rng = np.random.default_rng(seed)
    bd = rng.standard_normal((n, dim)).astype(np.float32)
    bq = rng.standard_normal((nq, dim)).astype(np.float32)
    cq = bq + move * rng.standard_normal(bq.shape).astype(np.float32)
    return {"bq": bq, "cq": cq, "bd": bd, "ids": [f"doc-{i}" for i in range(n)]}


def through(c: Dict[str, Any], k: int = 10, tie: float = 1e-6, **table: Any) -> Any:
    return index_scenario(c["bq"], c["cq"], c["bd"], c["ids"], k, tie, IndexSettings.model_validate(table))


def lists(s: Any) -> Tuple[list, list]:
    return s.agreement.same_order.tolist(), s.agreement.same_set.tolist()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("metric", ["cosine", "ip"])
def test_a_flat_index_gives_the_exact_keep_the_index_scenario(seed: int, metric: str) -> None:
    c = corpus(seed, move=0.003 * (seed + 1))
    if metric == "ip":  # unit rows: inner product is the cosine the exact scenarios rank by
        c = {**c, **{key: c[key] / np.linalg.norm(c[key], axis=1, keepdims=True) for key in ("bq", "cq", "bd")}}
    exact = {s.key: s for s in retrieval_scenarios(c["bq"], c["cq"], c["bd"], c["bd"], c["ids"], 10, 1e-6)}
    flat = through(c, type="flat", metric=metric)
    assert lists(flat) == lists(exact["keep_index"])
    assert flat.recall == 1.0
    assert 0 < flat.share("same_order") < 1  # the moved queries really change some lists


def test_unmoved_queries_keep_every_list_and_moved_ones_do_not() -> None:
    still = through(corpus(1, move=0.0), type="hnsw")
    assert still.share("same_order") == 1.0 and still.share("same_set") == 1.0
    moved = through(corpus(1, move=0.3), type="hnsw")
    assert moved.share("same_set") < 1.0


@pytest.mark.parametrize("table", [{"type": "hnsw", "m": 8, "ef_search": 4}, {"type": "ivf-flat", "nprobe": 1},
                                   {"type": "ivf-pq", "pq_m": 4, "pq_nbits": 6, "nprobe": 2, "threads": 2}])
def test_the_same_inputs_give_the_same_results_twice(table: dict) -> None:
    c = corpus(2, n=600)
    first, second = through(c, **table), through(c, **table)
    assert lists(first) == lists(second) and first.recall == second.recall
    assert first.recall is not None and first.recall < 1.0  # a real approximate index: it misses some neighbours


def test_without_faiss_the_scenario_is_not_run_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)
    s = through(corpus())
    assert not s.ran and "faiss is not installed" in s.reason and "pip install" in s.reason


@pytest.mark.parametrize("table, problem", [
    ({"type": "ivf-pq", "pq_m": 5}, "pq_m = 5 does not divide the dimension 16"),
    ({"type": "ivf-pq", "pq_m": 4, "pq_nbits": 12}, "needs 4096 documents to train, the corpus has 400"),
    ({"type": "ivf-flat", "nlist": 500}, "nlist = 500 is more than the 400 documents"),
])
def test_settings_the_corpus_cannot_meet_are_one_line_errors(table: dict, problem: str) -> None:
    with pytest.raises(VectorIndexError, match=problem):
        through(corpus(), **table)


def _own(tmp_path: Path, c: Dict[str, Any], metric: int = 0, dim: int = 16, extra: int = 0) -> Tuple[Path, Path]:
    """The user's index: a flat IP index over the documents in a shuffled order, and its id map."""
    order = np.random.default_rng(5).permutation(len(c["ids"]))
    rows = c["bd"][order] / np.linalg.norm(c["bd"][order], axis=1, keepdims=True)
    index = faiss.IndexFlat(dim, metric)
    index.add(np.ascontiguousarray(np.resize(rows, (len(rows), dim)), dtype=np.float32))
    index_path, map_path = tmp_path / "user.faiss", tmp_path / "ids.json"
    faiss.write_index(index, str(index_path))
    map_path.write_text(json.dumps([c["ids"][i] for i in order] + [f"x{i}" for i in range(extra)]))
    return index_path, map_path


def test_a_users_index_file_with_its_id_map_gives_the_built_ones_results(tmp_path: Path) -> None:
    c = corpus(3, move=0.1)
    index_path, map_path = _own(tmp_path, c)
    own = through(c, file=str(index_path), id_map=str(map_path))
    assert lists(own) == lists(through(c, type="flat")) and own.recall == 1.0


@pytest.mark.parametrize("case, where, problem", [
    ("dim", "user.faiss", "holds 8-dimensional vectors, the model's have 16"),
    ("metric", "user.faiss", "ranks by L2, [index] metric is 'cosine'"),
    ("length", "user.faiss", "holds 400 vectors, its id map"),
    ("unknown", "ids.json", "1 id(s) unknown to the corpus, first \"ghost\""),
    ("garbage", "user.faiss", "not a readable FAISS index"),
    ("no map", "ids.json", "no such id map, or not a regular file"),
    ("fifo map", "ids.json", "no such id map, or not a regular file"),
    ("directory", "user.faiss", "no such index file, or not a regular file"),
    ("unreadable map", "ids.json", "cannot read the id map"),
    ("bad json", "ids.json", "not a JSON array of corpus ids"),
])
def test_a_bad_index_file_or_id_map_is_one_line_naming_it(tmp_path: Path, case: str, where: str,
                                                          problem: str) -> None:
    c = corpus()
    index_path, map_path = _own(tmp_path, c, metric=1 if case == "metric" else 0, dim=8 if case == "dim" else 16,
                                extra=1 if case == "length" else 0)
    if case == "unknown":
        ids = json.loads(map_path.read_text())
        map_path.write_text(json.dumps(["ghost", *ids[1:]]))
    elif case == "garbage":
        index_path.write_bytes(b"\x00not an index\n" * 10)
    elif case == "no map":
        map_path.unlink()
    elif case == "fifo map":
        map_path.unlink()
        os.mkfifo(map_path)
    elif case == "directory":
        index_path.unlink()
        index_path.mkdir()
    elif case == "unreadable map":
        if os.geteuid() == 0:
            pytest.skip("root reads any file")
        map_path.chmod(0)
    elif case == "bad json":
        map_path.write_bytes(b'["doc-1", ')
    with pytest.raises(VectorIndexError) as err:
        through(c, file=str(index_path), id_map=str(map_path))
    text = str(err.value)
    assert "\n" not in text and text.startswith(str(tmp_path / where)) and problem in text


@pytest.mark.parametrize("raw, problem", [
    (b'{"a": 1}', "must be a JSON array of non-empty strings"), (b'["a", 3]', "non-empty strings"),
    (b'["a", ""]', "non-empty strings"), (b'["a", "b", "a"]', 'id "a" appears at two index positions'),
    (b"\xff\xfe", "not a JSON array"), (b"[" * 100000, "not a JSON array"),
])
def test_id_map_problems(raw: bytes, problem: str) -> None:
    with pytest.raises(VectorIndexError, match=problem):
        parse_id_map(raw, "ids.json")


@pytest.mark.fuzz
@given(raw=st.one_of(st.binary(max_size=200),
                     st.lists(st.one_of(st.text(max_size=6), st.integers(), st.none()), max_size=8).map(
                         lambda v: json.dumps(v).encode()),
                     st.recursive(st.text(max_size=4) | st.integers(), lambda inner: st.lists(inner, max_size=3)
                                  | st.dictionaries(st.text(max_size=3), inner, max_size=3)).map(
                         lambda v: json.dumps(v).encode())))
def test_fuzz_id_map_parser_gives_ids_or_one_line_error(raw: bytes) -> None:
    try:
        ids = parse_id_map(raw, "ids.json")
    except VectorIndexError as err:
        assert str(err).startswith("ids.json: ") and "\n" not in str(err)
        return
    assert ids == json.loads(raw) and len(set(ids)) == len(ids) and all(isinstance(i, str) and i for i in ids)


@pytest.mark.parametrize("table, problem", [
    ('typ = "hnsw"', "index: unknown key(s) typ (did you mean 'type'?)"),
    ('type = "ivf"', "index: 'type' must be one of flat, hnsw, ivf-flat or ivf-pq, got 'ivf'"),
    ('metric = "dot"', "index: 'metric' must be \"cosine\""),
    ("nprobe = 0", "index: 'nprobe' must be a whole number from 1 to 1048576, got 0"),
    ('m = "16"', "index: 'm' must be a whole number from 2 to 256, got '16'"),
    ("rolling_share = 1.5", "index: 'rolling_share' must be a number from 0 to 1"),
    ("threads = true", "index: 'threads' must be a whole number"),
    ('file = "x.faiss"', "index: 'file' and 'id_map' go together"),
])
def test_bad_index_settings_exit_2_with_one_line_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                 table: str, problem: str) -> None:
    config = tmp_path / "harness.toml"
    config.write_text(f"[index]\n{table}\n")
    code = main(["run", "--config", str(config), "--device", "cpu", "--out", str(tmp_path / "out.parquet")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and str(config) in err and problem in err, err
    assert not (tmp_path / "out.parquet").exists()


def test_index_settings_in_pyproject_resolve_files_beside_the_config(tmp_path: Path) -> None:
    from harness.config.project import load_project

    config = tmp_path / "pyproject.toml"
    config.write_text('[tool.harness.index]\ntype = "ivf-pq"\nnlist = 64.0\nrolling_share = 1\n'
                      'file = "idx/user.faiss"\nid_map = "idx/ids.json"\n')
    index = load_project(config).index
    assert (index.type, index.nlist, index.rolling_share) == ("ivf-pq", 64, 1.0)
    assert index.file == str(tmp_path / "idx/user.faiss") and index.id_map == str(tmp_path / "idx/ids.json")


def test_an_index_returning_fewer_than_k_results_is_judged_not_a_crash() -> None:
    """IVF with 100 lists of ~4 documents and one probe: most queries get fewer than 10 results (label -1)."""
    c = corpus(4)
    short = through({**c, "cq": c["bq"]}, type="ivf-flat", nlist=100, nprobe=1)
    assert short.share("same_order") == 1.0 and short.recall is not None and short.recall < 0.6
    moved = through(corpus(4, move=0.5), type="ivf-flat", nlist=100, nprobe=1)
    assert moved.share("same_set") < 1.0
