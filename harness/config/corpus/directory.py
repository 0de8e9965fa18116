"""The committed corpus format: a directory of ``documents.jsonl``, ``queries.jsonl`` and ``rerank.jsonl``,
strict keys, and an optional ``MANIFEST.json`` whose hashes pin the files' bytes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import AbstractSet, Any, Dict, Mapping, NamedTuple, Tuple

from harness.config.corpus import (
    CORPUS_FILES,
    DOCUMENTS_FILE,
    MANIFEST_FILE,
    NO_KIND,
    QUERIES_FILE,
    RERANK_FILE,
    Corpus,
    PathLike,
    RerankPair,
    Text,
    display,
    json_lines,
    read_bytes,
    shown,
    valid_text,
)
from harness.errors import CorpusError

__all__ = ["corpus_sha256", "load_directory"]

_TEXT_KEYS = ("id", "text", "kind")
_PAIR_KEYS = ("query_id", "passage_id", "label")


def _hash_files(contents: Dict[str, bytes]) -> str:
    """Combine the per-file SHA-256s; names are included so swapping two files changes the hash."""
    outer = hashlib.sha256()
    for name in CORPUS_FILES:
        outer.update(name.encode("ascii") + b"\0" + hashlib.sha256(contents[name]).hexdigest().encode("ascii") + b"\n")
    return outer.hexdigest()


def corpus_sha256(directory: PathLike) -> str:
    """SHA-256 identifying the corpus in ``directory``: any byte change in any corpus file changes it."""
    directory = Path(directory)
    return _hash_files({name: read_bytes(directory / name) for name in CORPUS_FILES})


def _check_keys(where: str, obj: Dict[str, Any], allowed: Tuple[str, ...]) -> None:
    for key in obj:
        if key not in allowed:
            raise CorpusError(f"{where}: unknown key {key!r} (allowed: {', '.join(allowed)})")


def _string_field(where: str, obj: Dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        problem = "missing" if key not in obj else f"non-string ({type(value).__name__})"
        raise CorpusError(f"{where}: {problem} {key!r}")
    return value


def _parse_texts(path: Path, data: bytes, seen: Dict[str, str]) -> Tuple[Text, ...]:
    """Documents or queries; ``seen`` maps id -> location and is shared so ids are unique across files."""
    texts = []
    file_shown = display(path)  # once per file: per line it cost 0.12 s of a default run
    for number, obj in json_lines(path, data):
        where = f"{file_shown}:{number}"
        _check_keys(where, obj, _TEXT_KEYS)
        text_id = valid_text(where, "'id'", _string_field(where, obj, "id"))
        text = valid_text(where, "the text", _string_field(where, obj, "text"), text_id)
        kind = valid_text(where, "'kind'", _string_field(where, obj, "kind")) if "kind" in obj else NO_KIND
        if not text_id:
            raise CorpusError(f"{where}: empty id")
        if not text.strip():
            raise CorpusError(f"{where}: empty text for id {shown(text_id)}")
        if text_id in seen:
            raise CorpusError(f"{where}: duplicate id {shown(text_id)} (first at {seen[text_id]})")
        seen[text_id] = f"{path.name}:{number}"
        texts.append(Text(id=text_id, text=text, kind=kind))
    return tuple(texts)


def _parse_pairs(path: Path, data: bytes, query_ids: AbstractSet[str], document_ids: AbstractSet[str]) -> Tuple[RerankPair, ...]:
    pairs = []
    seen: Dict[Tuple[str, str], int] = {}
    file_shown = display(path)
    for number, obj in json_lines(path, data):
        where = f"{file_shown}:{number}"
        _check_keys(where, obj, _PAIR_KEYS)
        query_id = _string_field(where, obj, "query_id")
        passage_id = _string_field(where, obj, "passage_id")
        if query_id not in query_ids:
            raise CorpusError(f"{where}: unknown query_id {shown(query_id)}")
        if passage_id not in document_ids:
            raise CorpusError(f"{where}: unknown passage_id {shown(passage_id)}")
        label = obj.get("label")
        if type(label) is not int or label not in (0, 1):  # bool is an int subclass: reject true/false too
            raise CorpusError(f"{where}: label must be 0 or 1, got {shown(label)}")
        key = (query_id, passage_id)
        if key in seen:
            raise CorpusError(f"{where}: duplicate pair ({shown(query_id)}, {shown(passage_id)}) (first at line {seen[key]})")
        seen[key] = number
        pairs.append(RerankPair(query_id=query_id, passage_id=passage_id, label=label))
    return tuple(pairs)


class _Manifest(NamedTuple):
    """``MANIFEST.json``: the corpus's name and version, its hash, and optionally each file's (name -> sha256)."""

    name: str
    version: str
    sha256: str
    files: Mapping[str, object]


def _read_manifest(path: Path) -> _Manifest:
    where = display(path)
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except RecursionError:
        raise CorpusError(f"{where}: invalid JSON: nested too deeply") from None
    except ValueError as exc:  # not UTF-8, not JSON, an integer too long to convert
        raise CorpusError(f"{where}: invalid JSON: {exc}".replace("\n", " ")) from None
    if not isinstance(manifest, dict):
        raise CorpusError(f"{where}: expected a JSON object")
    for key in ("name", "version", "sha256"):
        if not isinstance(manifest.get(key), str):
            raise CorpusError(f"{where}: missing or non-string {key!r}")
    files = manifest.get("files", {})
    if not isinstance(files, dict):
        raise CorpusError(f"{where}: 'files' must be an object of file name -> sha256")
    return _Manifest(manifest["name"], manifest["version"], manifest["sha256"], files)


def _verify_manifest(path: Path, manifest: _Manifest, contents: Dict[str, bytes], actual: str) -> None:
    """Name the changed file when the manifest lists per-file hashes, else report the corpus hash."""
    where = display(path)
    for name, expected in sorted(manifest.files.items()):
        if name in contents and hashlib.sha256(contents[name]).hexdigest() != expected:
            raise CorpusError(f"{where}: sha256 mismatch for {name}: the file changed since the manifest was written")
    if manifest.sha256 != actual:
        raise CorpusError(f"{where}: sha256 mismatch: manifest says {manifest.sha256}, files hash to {actual}")


def load_directory(directory: Path) -> Corpus:
    """Load and validate the fixture-style corpus in ``directory``: rows before the manifest hash, so an edited
    file reports its actual problem (with a line number), not only "hash mismatch"."""
    contents = {name: read_bytes(directory / name) for name in CORPUS_FILES}
    seen: Dict[str, str] = {}
    documents = _parse_texts(directory / DOCUMENTS_FILE, contents[DOCUMENTS_FILE], seen)
    if not documents:
        raise CorpusError(f"{display(directory / DOCUMENTS_FILE)}: empty corpus (no documents)")
    queries = _parse_texts(directory / QUERIES_FILE, contents[QUERIES_FILE], seen)
    pairs = _parse_pairs(
        directory / RERANK_FILE,
        contents[RERANK_FILE],
        query_ids={q.id for q in queries},
        document_ids={d.id for d in documents},
    )
    sha = _hash_files(contents)

    manifest_path = directory / MANIFEST_FILE
    if manifest_path.is_file():
        manifest = _read_manifest(manifest_path)
        _verify_manifest(manifest_path, manifest, contents, sha)
        name, version = manifest.name, manifest.version
    else:
        name, version = directory.resolve().name, "unversioned"
    return Corpus(
        name=name,
        version=version,
        documents=documents,
        queries=queries,
        pairs=pairs,
        sha256=sha,
        path=str(directory),
    )
