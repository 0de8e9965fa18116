"""The committed corpus (fixtures/corpus) and its loader (harness.config.corpus).

The corpus is only useful as a cross-environment fixture if it is exactly reproducible, covers the
inputs that move embedding numbers, and is rejected loudly (file:line: problem) when edited badly.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Union

import pytest

from harness.config.corpus import (
    CORPUS_FILES,
    DEFAULT_CORPUS_DIR,
    DOCUMENTS_FILE,
    MANIFEST_FILE,
    QUERIES_FILE,
    RERANK_FILE,
    Corpus,
    corpus_sha256,
    load_corpus,
)
from harness.errors import CorpusError

from oracles import pairs_by_query

SCRIPT = DEFAULT_CORPUS_DIR / "make_corpus.py"
ALL_FILES = CORPUS_FILES + (MANIFEST_FILE,)


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return load_corpus(DEFAULT_CORPUS_DIR)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A private copy of the committed corpus (with its manifest) to break in one test."""
    target = tmp_path / "corpus"
    target.mkdir()
    for name in ALL_FILES:
        shutil.copyfile(DEFAULT_CORPUS_DIR / name, target / name)
    return target


def lines(path: Path) -> List[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def write_lines(path: Path, rows: List[str]) -> None:
    path.write_bytes(("".join(row + "\n" for row in rows)).encode("utf-8"))


def set_line(path: Path, number: int, row: Union[str, dict]) -> None:
    """Replace line ``number`` (1-based) with ``row`` (a dict is JSON-encoded)."""
    rows = lines(path)
    rows[number - 1] = row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)
    write_lines(path, rows)


def load_error(directory: Path) -> str:
    with pytest.raises(CorpusError) as info:
        load_corpus(directory)
    message = str(info.value)
    assert "\n" not in message, "errors must be one line"
    return message


# -- reproducibility -------------------------------------------------------------------------------


def _import_generator():
    spec = importlib.util.spec_from_file_location("make_corpus", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_same_files(generated: Path) -> None:
    for name in ALL_FILES:
        assert (generated / name).read_bytes() == (DEFAULT_CORPUS_DIR / name).read_bytes(), (
            f"{name} differs from a fresh regeneration: run python fixtures/corpus/make_corpus.py and commit"
        )


def test_regeneration_reproduces_committed_files(tmp_path: Path) -> None:
    _import_generator().main(["--out", str(tmp_path)])
    assert_same_files(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("hash_seed", ["0", "4242"])
def test_regeneration_independent_of_hash_seed(tmp_path: Path, hash_seed: str) -> None:
    """Set iteration order varies with PYTHONHASHSEED; the output must not."""
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], check=True, env=env, capture_output=True)
    assert_same_files(tmp_path)


# -- size and content ------------------------------------------------------------------------------


def test_sizes(corpus: Corpus) -> None:
    assert len(corpus.documents) >= 500
    assert len(corpus.queries) >= 50
    assert corpus.name == "harness-corpus" and corpus.version == "1"


def test_every_query_has_10_to_50_distinct_candidates(corpus: Corpus) -> None:
    by_query = pairs_by_query(corpus)
    assert set(by_query) == {q.id for q in corpus.queries}
    document_ids = {d.id for d in corpus.documents}
    for query_id, pairs in by_query.items():
        passages = [p.passage_id for p in pairs]
        assert 10 <= len(passages) <= 50, query_id
        assert len(set(passages)) == len(passages), query_id
        assert set(passages) <= document_ids
        assert {p.label for p in pairs} == {0, 1}, f"{query_id} needs relevant and irrelevant candidates"
    sizes = {len(pairs) for pairs in by_query.values()}
    assert {10, 50} <= sizes and len(sizes) > 10, "candidate counts should vary over the whole range"


CJK = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af]")
ARABIC = re.compile(r"[\u0600-\u06ff]")
CYRILLIC = re.compile(r"[\u0400-\u04ff]")
GREEK = re.compile(r"[\u0370-\u03ff]")
DEVANAGARI = re.compile(r"[\u0900-\u097f]")
ACCENTED_LATIN = re.compile(r"[\u00c0-\u024f]")
EMOJI = re.compile(r"[\U0001F300-\U0001FAFF]")
FLAG = re.compile(r"[\U0001F1E6-\U0001F1FF]{2}")

REQUIRED = {
    "a text over 2000 characters": lambda t: len(t) > 2000,
    "a text of 600+ words (beyond 512 word pieces)": lambda t: len(t.split()) >= 600,
    "a text of at most 3 characters": lambda t: len(t) <= 3,
    "a single word": lambda t: re.fullmatch(r"[A-Za-z]{5,}", t) is not None,
    "a lone emoji": lambda t: len(t) <= 2 and EMOJI.search(t) is not None,
    "a lone punctuation mark": lambda t: t in {".", "?", "!", "…", "—"},
    "CJK": CJK.search,
    "Arabic": ARABIC.search,
    "Cyrillic": CYRILLIC.search,
    "Greek": GREEK.search,
    "Devanagari": DEVANAGARI.search,
    "accented Latin": ACCENTED_LATIN.search,
    "emoji": EMOJI.search,
    "an emoji ZWJ sequence": lambda t: EMOJI.search(t) is not None and "\u200d" in t,
    "a flag": FLAG.search,
    "double whitespace": lambda t: re.search(r"\s\s", t),
    "a tab": lambda t: "\t" in t,
    "a newline inside the text": lambda t: "\n" in t.strip(),
    "an all-upper-case text": lambda t: len(t) > 20 and t.isupper(),
    "digits": lambda t: re.search(r"\d", t),
    "a decimal number": lambda t: re.search(r"\d\.\d", t),
    "a date": lambda t: re.search(r"\d{4}-\d{2}-\d{2}", t),
    "a phone-like string": lambda t: re.search(r"\+\d[\d ()-]{8,}", t),
    "a URL": lambda t: "https://" in t,
    "code": lambda t: "SELECT " in t or "def " in t,
    "decomposed accents (NFD)": lambda t: "\u0301" in t,
}


@pytest.mark.parametrize("category", sorted(REQUIRED))
def test_required_category_present(corpus: Corpus, category: str) -> None:
    check = REQUIRED[category]
    assert any(check(t.text) for t in corpus.texts()), f"no text in the corpus has {category}"


def test_kinds_are_recorded(corpus: Corpus) -> None:
    kinds = {t.kind for t in corpus.documents}
    assert {"plain", "short", "long", "cjk", "arabic", "emoji", "whitespace", "mixed_case", "numbers"} <= kinds
    assert "unspecified" not in {t.kind for t in corpus.texts()}
    assert len({t.kind for t in corpus.queries}) >= 8


def test_no_empty_texts_and_unique_ids(corpus: Corpus) -> None:
    texts = corpus.texts()
    assert all(t.text.strip() for t in texts)
    assert len({t.id for t in texts}) == len(texts)


def test_corpus_helpers(corpus: Corpus) -> None:
    assert corpus.texts() == corpus.documents + corpus.queries
    first = corpus.pairs[0]
    assert pairs_by_query(corpus)[first.query_id][0] == first
    with pytest.raises(dataclasses.FrozenInstanceError):
        corpus.documents[0].text = "changed"  # type: ignore[misc]


# -- hashing ---------------------------------------------------------------------------------------


def test_hash_is_stable_and_matches_manifest(corpus: Corpus) -> None:
    manifest = json.loads((DEFAULT_CORPUS_DIR / MANIFEST_FILE).read_text(encoding="utf-8"))
    assert corpus_sha256(DEFAULT_CORPUS_DIR) == corpus_sha256(str(DEFAULT_CORPUS_DIR)) == manifest["sha256"]
    assert corpus.sha256 == manifest["sha256"]
    assert re.fullmatch(r"[0-9a-f]{64}", corpus.sha256)


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_changing_one_byte_changes_hash(copy: Path, name: str) -> None:
    before = corpus_sha256(copy)
    data = bytearray((copy / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / name).write_bytes(bytes(data))
    assert corpus_sha256(copy) != before


def test_swapping_files_changes_hash(copy: Path) -> None:
    before = corpus_sha256(copy)
    documents, queries = (copy / DOCUMENTS_FILE).read_bytes(), (copy / QUERIES_FILE).read_bytes()
    (copy / DOCUMENTS_FILE).write_bytes(queries)
    (copy / QUERIES_FILE).write_bytes(documents)
    assert corpus_sha256(copy) != before


def test_edited_file_fails_manifest_check(copy: Path) -> None:
    row = json.loads(lines(copy / DOCUMENTS_FILE)[0])
    set_line(copy / DOCUMENTS_FILE, 1, dict(row, text=row["text"] + "!"))
    message = load_error(copy)
    assert "MANIFEST.json" in message and "sha256 mismatch for documents.jsonl" in message


def test_corpus_hash_mismatch_without_per_file_hashes(copy: Path) -> None:
    manifest = json.loads((copy / MANIFEST_FILE).read_text(encoding="utf-8"))
    del manifest["files"]
    manifest["sha256"] = "0" * 64
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    assert "MANIFEST.json: sha256 mismatch: manifest says 000" in load_error(copy)


def test_manifest_is_optional(copy: Path) -> None:
    (copy / MANIFEST_FILE).unlink()
    loaded = load_corpus(copy)
    assert (loaded.name, loaded.version) == ("corpus", "unversioned")
    assert loaded.sha256 == corpus_sha256(DEFAULT_CORPUS_DIR)
    assert loaded.path == str(copy)


@pytest.mark.parametrize("content", ["{not json", '["a list"]', '{"name": "x", "version": "1"}'])
def test_bad_manifest(copy: Path, content: str) -> None:
    (copy / MANIFEST_FILE).write_text(content, encoding="utf-8")
    assert "MANIFEST.json: " in load_error(copy)


# -- validation errors: one test per problem -------------------------------------------------------


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_missing_file(copy: Path, name: str) -> None:
    (copy / name).unlink()
    assert f"{name}: missing file" in load_error(copy)


def test_invalid_json(copy: Path) -> None:
    set_line(copy / DOCUMENTS_FILE, 3, '{"id": "d0003", "text": ')
    assert "documents.jsonl:3: invalid JSON" in load_error(copy)


def test_line_not_an_object(copy: Path) -> None:
    set_line(copy / QUERIES_FILE, 2, '["q002", "text"]')
    assert "queries.jsonl:2: expected a JSON object, got list" in load_error(copy)


def test_blank_line(copy: Path) -> None:
    set_line(copy / RERANK_FILE, 4, "")
    assert "rerank.jsonl:4: blank line" in load_error(copy)


def test_not_utf8(copy: Path) -> None:
    data = (copy / DOCUMENTS_FILE).read_bytes().split(b"\n")
    data[1] = data[1][:20] + b"\xff" + data[1][20:]
    (copy / DOCUMENTS_FILE).write_bytes(b"\n".join(data))
    assert "documents.jsonl:2: not valid UTF-8" in load_error(copy)


@pytest.mark.parametrize(
    "row, problem",
    [
        ({"text": "hello", "kind": "plain"}, "missing 'id'"),
        ({"id": 7, "text": "hello", "kind": "plain"}, "non-string (int) 'id'"),
        ({"id": "", "text": "hello", "kind": "plain"}, "empty id"),
        ({"id": "d0005", "kind": "plain"}, "missing 'text'"),
        ({"id": "d0005", "text": None, "kind": "plain"}, "non-string (NoneType) 'text'"),
        ({"id": "d0005", "text": "hello", "kind": 3}, "non-string (int) 'kind'"),
        ({"id": "d0005", "text": "hello", "kind": "plain", "lang": "en"}, "unknown key 'lang'"),
    ],
)
def test_bad_document_fields(copy: Path, row: dict, problem: str) -> None:
    set_line(copy / DOCUMENTS_FILE, 5, row)
    assert f"documents.jsonl:5: {problem}" in load_error(copy)


@pytest.mark.parametrize("text", ["", "  \t\n"])
def test_empty_text(copy: Path, text: str) -> None:
    set_line(copy / QUERIES_FILE, 3, {"id": "q003", "text": text, "kind": "plain"})
    assert "queries.jsonl:3: empty text for id 'q003'" in load_error(copy)


def test_duplicate_document_id(copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    row = json.loads(lines(copy / DOCUMENTS_FILE)[4])
    set_line(copy / DOCUMENTS_FILE, 5, dict(row, id="d0002"))
    monkeypatch.chdir(copy.parent)  # paths under the cwd are shown relative to it
    assert load_error(copy) == "corpus/documents.jsonl:5: duplicate id 'd0002' (first at documents.jsonl:2)"


def test_duplicate_id_across_documents_and_queries(copy: Path) -> None:
    row = json.loads(lines(copy / QUERIES_FILE)[0])
    set_line(copy / QUERIES_FILE, 1, dict(row, id="d0001"))
    assert "queries.jsonl:1: duplicate id 'd0001' (first at documents.jsonl:1)" in load_error(copy)


def test_unknown_query_id(copy: Path) -> None:
    set_line(copy / RERANK_FILE, 6, {"query_id": "q999", "passage_id": "d0001", "label": 0})
    assert "rerank.jsonl:6: unknown query_id 'q999'" in load_error(copy)


@pytest.mark.parametrize("passage_id", ["d9999", "q001"])  # a query is not a passage
def test_unknown_passage_id(copy: Path, passage_id: str) -> None:
    set_line(copy / RERANK_FILE, 6, {"query_id": "q001", "passage_id": passage_id, "label": 0})
    assert f"rerank.jsonl:6: unknown passage_id '{passage_id}'" in load_error(copy)


def test_duplicate_pair(copy: Path) -> None:
    first = lines(copy / RERANK_FILE)[0]
    set_line(copy / RERANK_FILE, 2, json.dumps(dict(json.loads(first), label=1 - json.loads(first)["label"])))
    pair = json.loads(first)
    expected = f"rerank.jsonl:2: duplicate pair ('{pair['query_id']}', '{pair['passage_id']}') (first at line 1)"
    assert expected in load_error(copy)


@pytest.mark.parametrize("label", [2, -1, True, "1", 1.0, None])
def test_label_not_0_or_1(copy: Path, label: object) -> None:
    pair = json.loads(lines(copy / RERANK_FILE)[2])
    set_line(copy / RERANK_FILE, 3, dict(pair, label=label))
    assert "rerank.jsonl:3: label must be 0 or 1" in load_error(copy)


def test_missing_pair_field(copy: Path) -> None:
    set_line(copy / RERANK_FILE, 3, {"query_id": "q001", "label": 1})
    assert "rerank.jsonl:3: missing 'passage_id'" in load_error(copy)


def test_empty_corpus(copy: Path) -> None:
    (copy / DOCUMENTS_FILE).write_bytes(b"")
    assert "documents.jsonl: empty corpus (no documents)" in load_error(copy)


def test_minimal_corpus_without_manifest(tmp_path: Path) -> None:
    """Any directory works; kind is optional; queries and pairs may be empty."""
    (tmp_path / DOCUMENTS_FILE).write_text('{"id": "a", "text": "x"}\n', encoding="utf-8")
    (tmp_path / QUERIES_FILE).write_text("", encoding="utf-8")
    (tmp_path / RERANK_FILE).write_text("", encoding="utf-8")
    loaded = load_corpus(str(tmp_path))
    assert [(t.id, t.text, t.kind) for t in loaded.texts()] == [("a", "x", "unspecified")]
    assert loaded.queries == () and loaded.pairs == () and loaded.version == "unversioned"


# -- hostile input: every file is read correctly or refused with one CorpusError line naming it -----------------

NESTED = "[" * 100_000 + "]" * 100_000


def _short_id(value: object) -> str:
    """A readable test id for a parameter that may be 200 kB of brackets."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _one_line_naming(err: CorpusError, name: str) -> str:
    message = str(err)
    assert "\n" not in message and name in message and len(message) < 400, message
    return message


def _refused(source: object, name: str, *expected: str) -> str:
    with pytest.raises(CorpusError) as info:
        load_corpus(source)  # type: ignore[arg-type]
    message = _one_line_naming(info.value, name)
    for part in expected:
        assert part in message, message
    return message


def _parquet(path: Path, **columns: object) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)
    return path


@pytest.mark.parametrize("line, expected", [
    ('{"id": "a", "text": "x", "extra": ' + NESTED + '}', "docs.jsonl:2: JSON nested too deeply"),
    ('{"id": "a\\ud800", "text": "x"}', "docs.jsonl:2: 'id' holds a lone surrogate (U+D800"),
    ('{"id": "a", "text": "x\\udfff y"}', "docs.jsonl:2: the text of id 'a' holds a lone surrogate (U+DFFF"),
    ('{"id": "a", "text": "x", "kind": "\\ud800"}', "docs.jsonl:2: 'kind' holds a lone surrogate"),
    ('{"id": ' + "9" * 5000 + ', "text": "x"}', "docs.jsonl:2: invalid JSON"),
    ('{"id": "a", "id": "b", "text": "x"}', "docs.jsonl:2: key 'id' appears twice"),
    ('{"id": NaN, "text": "x"}', "docs.jsonl:2: non-string (float) 'id'"),
    ('{"id": "a", "text": ' + NESTED[:50] + NESTED[-50:] + '}', "docs.jsonl:2: non-string (list) 'text' for id 'a'"),
], ids=_short_id)
def test_hostile_jsonl_lines_are_one_line_errors(tmp_path: Path, line: str, expected: str) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text('{"id": "z", "text": "fine"}\n' + line + "\n", encoding="utf-8")
    _refused(path, "docs.jsonl", expected)


@pytest.mark.parametrize("name", [DOCUMENTS_FILE, QUERIES_FILE])
def test_hostile_lines_in_the_committed_format(copy: Path, name: str) -> None:
    with (copy / name).open("a", encoding="utf-8") as handle:
        handle.write('{"id": "q\\ud800", "text": "x"}\n' if name == QUERIES_FILE else '{"id": "d", "text": "x\\udc00"}\n')
    _refused(copy, name, "holds a lone surrogate")
    (copy / name).write_text('{"id": "a", "text": "x", "kind": ' + NESTED + '}\n', encoding="utf-8")
    _refused(copy, name, f"{name}:1: JSON nested too deeply")


def test_a_nested_manifest_is_one_line(copy: Path) -> None:
    (copy / MANIFEST_FILE).write_text(NESTED, encoding="utf-8")
    _refused(copy, MANIFEST_FILE, "invalid JSON")


def test_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    for name, content in (("b.jsonl", '{"id": "a", "text": "x"}\n'), ("b.csv", "id,text\na,x\n"), ("b.tsv", "id\ttext\na\tx\n")):
        (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + content.encode())
        assert [(t.id, t.text) for t in load_corpus(tmp_path / name).documents] == [("a", "x")]


@pytest.mark.parametrize("name, content, expected", [
    ("bad.jsonl", b'{"id": "a", "text": "x"}\n{"id": "b", "text": "\xff"}\n', "bad.jsonl:2: not valid UTF-8"),
    ("bad.csv", b"id,text\na,x\nb,\xed\xa0\x80\n", "bad.csv:3: not valid UTF-8"),  # a surrogate, UTF-8 encoded
    ("bad.tsv", b"id\ttext\na\t\xc3\n", "bad.tsv:2: not valid UTF-8"),
])
def test_invalid_utf8_names_the_line(tmp_path: Path, name: str, content: bytes, expected: str) -> None:
    (tmp_path / name).write_bytes(content)
    _refused(tmp_path / name, name, expected)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".tsv", ".parquet"])
def test_a_huge_line_is_read(tmp_path: Path, suffix: str) -> None:
    text = "word " * 200_000  # 1 MB: more than the csv module's default field limit (128 KiB)
    path = tmp_path / f"big{suffix}"
    if suffix == ".jsonl":
        path.write_text(json.dumps({"id": "a", "text": text}) + "\n", encoding="utf-8")
    elif suffix == ".parquet":
        _parquet(path, id=["a"], text=[text])
    else:
        sep = "," if suffix == ".csv" else "\t"
        path.write_text(f"id{sep}text\na{sep}{text}\n", encoding="utf-8")
    assert load_corpus(path).documents[0].text == text


def test_parquet_reads_only_the_columns_it_uses(tmp_path: Path) -> None:
    """Out-of-range timestamps (year 10000+ does not fit a Python datetime) in a column nobody reads."""
    import pyarrow as pa

    far = pa.array([2**62, -(2**62)], pa.int64()).cast(pa.timestamp("us"))
    path = _parquet(tmp_path / "docs.parquet", id=["a", "b"], text=["x", "y"], created=far,
                    blob=pa.array([b"\xff\xfe", b""]), nested=pa.array([[{"k": [1]}], []]))
    loaded = load_corpus(path)
    assert [(t.id, t.text) for t in loaded.documents] == [("a", "x"), ("b", "y")]
    # the same garbage in a column it does read (the kind column) is one line naming the column
    _parquet(tmp_path / "kinds.parquet", id=["a", "b"], text=["x", "y"], kind=far)
    _refused(tmp_path / "kinds.parquet", "kinds.parquet", "column 'kind'")


def _invalid_utf8_strings(values: List[bytes]) -> object:
    """A string column holding bytes that are no UTF-8 (what another tool may write; pyarrow's own builders refuse)."""
    import pyarrow as pa

    return pa.Array.from_buffers(pa.string(), len(values), pa.array(values, pa.binary()).buffers())


@pytest.mark.parametrize("column", ["id", "text"])
def test_parquet_strings_that_are_no_utf8(tmp_path: Path, column: str) -> None:
    surrogate = "a\ud800".encode("utf-8", "surrogatepass")
    columns = {"id": ["a", "b"], "text": ["x", "y"]}
    columns[column] = _invalid_utf8_strings([b"fine", surrogate])
    path = _parquet(tmp_path / "h.parquet", **columns)
    _refused(path, "h.parquet", f"column '{column}'")


@pytest.mark.parametrize("columns, expected", [
    ({"id": [1, 2**60], "text": ["x", None]}, "row 2: null 'text' for id '1152921504606846976'"),
    ({"id": [b"a"], "text": ["x"]}, "row 1: non-string (bytes) 'id'"),
    ({"id": ["a"], "text": [["x"]]}, "row 1: non-string (list) 'text' for id 'a'"),
])
def test_hostile_parquet_values(tmp_path: Path, columns: dict, expected: str) -> None:
    path = _parquet(tmp_path / "h.parquet", **columns)
    _refused(path, "h.parquet", expected)


@pytest.mark.parametrize("name, content, expected", [
    ("queries.jsonl", "", "queries.jsonl: empty queries file (no queries)"),
    ("queries.csv", "id,text\n", "queries.csv: empty queries file (no queries)"),
    ("queries.csv", "", "queries.csv: empty file (no header row)"),
    ("queries.parquet", None, "queries.parquet: empty queries file (no queries)"),
])
def test_an_empty_queries_file_is_refused(tmp_path: Path, name: str, content: Union[str, None], expected: str) -> None:
    from harness.config.corpus.user import DataFiles

    (tmp_path / "docs.csv").write_text("id,text\na,x\n", encoding="utf-8")
    if content is None:
        _parquet(tmp_path / name, id=[], text=[])
    else:
        (tmp_path / name).write_text(content, encoding="utf-8")
    _refused(DataFiles(tmp_path / "docs.csv", tmp_path / name), name, expected)
    (tmp_path / "harness.toml").write_text(f'[corpus]\ndocuments = "docs.csv"\nqueries = "{name}"\n', encoding="utf-8")
    _refused(tmp_path / "harness.toml", name, expected.split(": ", 1)[1])


def test_long_ids_are_cut_in_messages(tmp_path: Path) -> None:
    long_id = "x" * 100_000
    rows = [json.dumps({"id": long_id, "text": text}) + "\n" for text in ("a", "b")]
    (tmp_path / "d.jsonl").write_text("".join(rows), encoding="utf-8")
    assert len(_refused(tmp_path / "d.jsonl", "d.jsonl:2: duplicate id 'xxx")) < 200


@pytest.mark.parametrize("content, args", [
    ('{"id": "a", "text": "x", "meta": ' + NESTED + '}\n', []),
    ('{"id": "a\\ud800", "text": "x"}\n', []),
    ('{"id": "a", "text": "x"}\n', ["--queries", "EMPTY"]),
], ids=_short_id)
def test_hostile_corpora_through_the_cli_are_exit_2_and_no_file(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                               content: str, args: List[str]) -> None:
    from harness.cli import main

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(content, encoding="utf-8")
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    out = tmp_path / "out.parquet"
    args = [str(tmp_path / "empty.jsonl") if a == "EMPTY" else a for a in args]
    assert main(["run", "--models", "tiny", "--device", "cpu", "--corpus", str(corpus), *args, "--out", str(out)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and ("empty.jsonl" if args else "corpus.jsonl") in errors[0], errors
    assert not out.exists()
