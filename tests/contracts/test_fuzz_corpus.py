"""Fuzzing the corpus readers: whatever a file holds, loading it gives a valid corpus or one CorpusError line
naming the file, never another exception. And the rerank pair-id encoding round-trips and is injective.

Budget: the hypothesis profile (tests/conftest.py); ``nox -s fuzz`` runs the large one.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.config.corpus import Corpus, load_corpus
from harness.config.corpus.user import DataFiles
from harness.errors import CorpusError
from harness.results import pair_item_id, split_pair_item_id
from harness.results.schema import is_unicode_text

pytestmark = pytest.mark.fuzz

#: any code point, lone surrogates included
ANY_TEXT = st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=12)
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
                           max_leaves=8)
KEYS = st.sampled_from(["id", "text", "kind", "role", "query_id", "passage_id", "label"]) | ANY_TEXT
ROW = st.dictionaries(KEYS, JSON_VALUES | st.sampled_from(["a", "b", "q", "query", "document", "x|y", "\\"]), max_size=5)


def _line(draw: Any) -> str:
    choice = draw(st.integers(0, 5))
    if choice == 0:  # deeply nested
        depth = draw(st.integers(1, 30_000))
        return '{"id": "n", "text": ' + "[" * depth + "]" * depth + "}"
    if choice == 1:  # raw garbage
        return draw(st.text(max_size=40))
    if choice == 5:  # a line that is JSON but no object
        return json.dumps(draw(JSON_VALUES))
    return json.dumps(draw(ROW), ensure_ascii=draw(st.booleans()), allow_nan=True)


@st.composite
def jsonl_bytes(draw: Any) -> bytes:
    lines = [_line(draw) for _ in range(draw(st.integers(0, 4)))]
    text = "\n".join(lines) + draw(st.sampled_from(["", "\n", "\r\n"]))
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        data = draw(st.sampled_from([b"", b"\xef\xbb\xbf"])) + data + draw(st.binary(max_size=4))
    return data


@st.composite
def csv_bytes(draw: Any) -> bytes:
    sep = draw(st.sampled_from([",", "\t"]))
    header = draw(st.lists(st.sampled_from(["id", "text", "kind", "role", "x"]) | ANY_TEXT, max_size=4))
    cells = st.sampled_from(["a", "b", "", "query", "\"", "x\ny", sep, "9" * 5000]) | ANY_TEXT
    rows = draw(st.lists(st.lists(cells, max_size=5), max_size=4))
    text = "\n".join(sep.join(r) for r in [header] + rows)
    data = text.encode("utf-8", "surrogatepass")
    return (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + data + draw(st.binary(max_size=3))


def _valid(corpus: Corpus) -> None:
    """What the runner relies on: ids unique across texts, every text and id encodable, pairs resolvable."""
    ids = [t.id for t in corpus.texts()]
    assert len(set(ids)) == len(ids) and corpus.documents
    for value in ids + [t.text for t in corpus.texts()] + [t.kind for t in corpus.texts()]:
        assert isinstance(value, str)
        value.encode("utf-8")
    known = set(ids)
    assert all(p.query_id in known and p.passage_id in known for p in corpus.pairs)


def _load(source: Any, name: str) -> None:
    try:
        corpus = load_corpus(source)
    except CorpusError as err:
        message = str(err)
        assert "\n" not in message and name in message and len(message) < 600, message
        return
    _valid(corpus)


@given(data=jsonl_bytes())
def test_a_jsonl_corpus_loads_or_is_one_corpus_error(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("fz") / "docs.jsonl"
    path.write_bytes(data)
    _load(path, "docs.jsonl")


@given(data=csv_bytes(), suffix=st.sampled_from([".csv", ".tsv"]))
def test_a_csv_corpus_loads_or_is_one_corpus_error(tmp_path_factory: pytest.TempPathFactory, data: bytes, suffix: str) -> None:
    path = tmp_path_factory.mktemp("fz") / f"docs{suffix}"
    path.write_bytes(data)
    _load(path, path.name)


@given(documents=jsonl_bytes(), queries=jsonl_bytes(), pairs=jsonl_bytes())
def test_a_directory_corpus_loads_or_is_one_corpus_error(tmp_path_factory: pytest.TempPathFactory, documents: bytes,
                                                         queries: bytes, pairs: bytes) -> None:
    directory = tmp_path_factory.mktemp("fz")
    for name, data in (("documents.jsonl", documents), ("queries.jsonl", queries), ("rerank.jsonl", pairs)):
        (directory / name).write_bytes(data)
    _load(directory, ".jsonl")


@given(documents=jsonl_bytes(), queries=jsonl_bytes() | csv_bytes())
def test_documents_and_queries_files_load_or_are_one_corpus_error(tmp_path_factory: pytest.TempPathFactory,
                                                                  documents: bytes, queries: bytes) -> None:
    directory = tmp_path_factory.mktemp("fz")
    (directory / "docs.jsonl").write_bytes(documents)
    name = "q.jsonl" if queries.lstrip(b"\xef\xbb\xbf").startswith((b"{", b"[")) else "q.csv"
    (directory / name).write_bytes(queries)
    try:
        corpus = load_corpus(DataFiles(directory / "docs.jsonl", directory / name))  # type: ignore[arg-type]
    except CorpusError as err:
        assert "\n" not in str(err) and ("docs.jsonl" in str(err) or name in str(err)), str(err)
        return
    _valid(corpus)
    assert corpus.queries  # a queries file that holds none is refused, never "no retrieval" silently


PARQUET_COLUMNS = st.sampled_from(["strings", "ints", "binary", "timestamps", "nested", "nulls", "floats", "bad-utf8"])


@given(id_kind=PARQUET_COLUMNS, text_kind=PARQUET_COLUMNS, extra_kind=PARQUET_COLUMNS, n=st.integers(0, 3),
       texts=st.lists(ANY_TEXT, min_size=3, max_size=3))
def test_a_parquet_corpus_loads_or_is_one_corpus_error(tmp_path_factory: pytest.TempPathFactory, id_kind: str, text_kind: str,
                                                       extra_kind: str, n: int, texts: list) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def column(kind: str) -> pa.Array:
        if kind == "strings":
            return pa.array([t.encode("utf-8", "surrogatepass") for t in texts[:n]], pa.binary()).cast(pa.string()) \
                if all(is_unicode_text(t) for t in texts[:n]) else _invalid(texts[:n])
        if kind == "ints":
            return pa.array(list(range(n)), pa.int64())
        if kind == "binary":
            return pa.array([b"\xff"] * n)
        if kind == "timestamps":
            return pa.array([2**62] * n, pa.int64()).cast(pa.timestamp("us"))
        if kind == "nested":
            return pa.array([[{"k": [1]}]] * n)
        if kind == "floats":
            return pa.array([float("nan")] * n)
        if kind == "bad-utf8":
            return _invalid(["\ud800"] * n)
        return pa.nulls(n, pa.string())

    path = tmp_path_factory.mktemp("fz") / "docs.parquet"
    pq.write_table(pa.table({"id": column(id_kind), "text": column(text_kind), "kind": column(extra_kind),
                             "other": column(extra_kind)}), path)
    _load(path, "docs.parquet")




def _invalid(values: list) -> Any:
    import pyarrow as pa

    raw = pa.array([v.encode("utf-8", "surrogatepass") for v in values], pa.binary())
    return pa.Array.from_buffers(pa.string(), len(values), raw.buffers())


# -- the pair-id encoding ------------------------------------------------------------------------------------------

IDS = st.text(st.sampled_from("ab|\\") | st.characters(codec=None), max_size=8)


@given(q=IDS, p=IDS)
def test_pair_ids_round_trip(q: str, p: str) -> None:
    encoded = pair_item_id(q, p)
    assert split_pair_item_id(encoded) == (q, p)
    if "|" not in q + p and "\\" not in q + p:
        assert encoded == f"{q}|{p}"  # the form every results file written before the escaping holds


@given(a=st.tuples(IDS, IDS), b=st.tuples(IDS, IDS))
def test_pair_ids_are_injective(a: tuple, b: tuple) -> None:
    assert (pair_item_id(*a) == pair_item_id(*b)) == (a == b)


@given(item_id=st.text(st.sampled_from("ab|\\"), max_size=10))
def test_splitting_any_string_is_a_pair_or_a_value_error(item_id: str) -> None:
    try:
        q, p = split_pair_item_id(item_id)
    except ValueError:
        return
    assert pair_item_id(q, p) == item_id  # the decoding is exact: only the encoder's own strings decode
