"""Fuzzing the TOML loaders users feed: any document gives a valid object or one ``HarnessError`` line naming the
file, never another exception (a traceback exits 1, which CI reads as drift).

Documents follow each file's shape (valid keys, typos of them, random keys; right and wrong types; NaN, inf,
huge integers, booleans) and are written as TOML text by a small writer here, then read by the real loaders.
The budget comes from the hypothesis profile (tests/conftest.py): ``nox -s fuzz`` runs a large one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Dict

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from harness.config.policy import Tolerance, load_policy
from harness.config.project import load_project, project_registry
from harness.config.registry import ModelEntry, load_registry
from harness.errors import HarnessError
from harness.matrix.lenient import load_lenient
from harness.matrix.spec import CellTable, MatrixTable, load_matrix_file

pytestmark = pytest.mark.fuzz

# -- a small TOML writer: everything as key = value with inline tables -------------------------------------------


def _key(key: str) -> str:
    return json.dumps(key)  # a basic string: TOML accepts JSON's escapes


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"


def to_toml(document: Dict[str, Any]) -> str:
    return "".join(f"{_key(k)} = {_value(v)}\n" for k, v in document.items())


# -- documents shaped like each file ------------------------------------------------------------------------------

LEAF = "leaf"
GOOD = ["fp32", "auto", "cpu-vs-cuda", "bi-encoder", "cross-encoder", "path", "hub", "derived", "served", "package",
        "http", "torch", "int8", "binary", "encode", "corpus", "3.11", "2.13.0", "6.2.0", "5.23.0", "<2", "tiny",
        "tiny-cpu-float32", "infinity-emb", "0.0.77", "m", "a/b", "float16", "http://127.0.0.1:1", "openai", ""]
NAMES = st.sampled_from(["fp32", "tf32", "m", "x", "tiny", "tiny-bi-encoder", "a b", "x@logits", "default", ""])
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8)
SCALARS = st.one_of(
    st.sampled_from(GOOD), st.booleans(), st.integers(-3, 300), st.integers(-(2 ** 70), 2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e-5, 0.5, 1.0, 0.0, 1e308, -0.0]), _text,
)
JUNK = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                     st.dictionaries(_text, inner, max_size=3)), max_leaves=6)


def _typo(key: str) -> st.SearchStrategy[str]:
    """A near miss of ``key``: a dropped, doubled or swapped letter."""
    if len(key) < 2:
        return st.just(key + "x")
    return st.integers(0, len(key) - 2).flatmap(lambda i: st.sampled_from([
        key[:i] + key[i + 1:], key[:i] + key[i] + key[i:], key[:i] + key[i + 1] + key[i] + key[i + 2:]]))


def shaped(shape: Any) -> st.SearchStrategy[Any]:
    """Values following ``shape`` (a dict of key -> shape, "*" for any name; [shape]; LEAF), or anything."""
    if shape == LEAF:
        return st.one_of(SCALARS, JUNK)
    if isinstance(shape, list):
        return st.one_of(st.lists(shaped(shape[0]), max_size=3), JUNK)
    named = {k: v for k, v in shape.items() if k != "*"}
    fixed = st.fixed_dictionaries({}, optional={k: shaped(v) for k, v in named.items()})
    parts = [fixed]
    if "*" in shape:
        parts.append(st.dictionaries(NAMES, shaped(shape["*"]), max_size=3))
    if named:
        typos = st.sampled_from(sorted(named)).flatmap(_typo)
        parts.append(st.dictionaries(st.one_of(typos, _text), SCALARS, max_size=2))
    return st.one_of(st.tuples(*parts).map(lambda ds: {k: v for d in ds for k, v in d.items()}), JUNK)


def document(shape: Dict[str, Any]) -> st.SearchStrategy[Dict[str, Any]]:
    """A whole file: always a table at the top."""
    return shaped(shape).map(lambda d: d if isinstance(d, dict) else {"value": d})


TOLERANCE = {k: LEAF for k in Tolerance.__dataclass_fields__ if k != "name"}
POLICY = {"policy": {"default_class": LEAF}, "classes": {"*": TOLERANCE},
          "models": {"*": {**TOLERANCE, "class": LEAF, "classes": {"*": TOLERANCE}}}, "device_classes": {"*": LEAF}}
HTTP = {k: LEAF for k in ("url", "api", "model", "headers", "batch_size", "timeout_s", "retries", "body")}
ENTRY = {**{k: LEAF for k in ModelEntry.model_fields}, "http": HTTP}
REGISTRY = {"models": {"*": ENTRY}, "sets": {"*": [LEAF]}}
PROJECT = {**REGISTRY, "corpus": {"documents": LEAF, "queries": LEAF, "name": LEAF}, "registry": LEAF}
PYPROJECT = {"project": {"name": LEAF}, "tool": {"harness": PROJECT, "other": LEAF}}
CELL = {(f.alias or k): LEAF for k, f in CellTable.model_fields.items()}
MATRIX = {"matrix": {"*": {**{k: LEAF for k in MatrixTable.model_fields if k != "cells"}, "cells": [CELL]}}}


def _matrix(path: Path) -> object:
    load_lenient(path)  # the noxfile's read: never raises, whatever the file
    return load_matrix_file(path)


def _policy(path: Path) -> object:
    policy = load_policy(path)
    for model in [*policy.models, "other"]:
        for name in policy.classes:
            policy.tolerance(model, name)  # every class builds its Tolerance
    return policy


def _check(directory: Path, name: str, document: Dict[str, Any], load: Callable[[Path], object]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(to_toml(document), encoding="utf-8")
    try:
        load(path)
    except HarnessError as err:
        message = str(err)
        assert message and len(message.splitlines()) == 1, message
        assert str(directory) in message or name in message, message


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@given(doc=document(POLICY))
def test_policy_loader(workdir: Path, doc: Dict[str, Any]) -> None:
    _check(workdir / "policy", "policy.toml", doc, _policy)


@given(doc=document(REGISTRY))
def test_registry_loader(workdir: Path, doc: Dict[str, Any]) -> None:
    _check(workdir / "registry", "registry.toml", doc, load_registry)


@given(doc=document(PROJECT))
@example(doc={"registry": "/"})  # a registry path far from the config: the message must still name the config
@example(doc={"registry": "/nonexistent/registry.toml"})
def test_project_loader(workdir: Path, doc: Dict[str, Any]) -> None:
    _check(workdir / "project", "harness.toml", doc, project_registry)


@given(doc=document(PYPROJECT))
def test_pyproject_loader(workdir: Path, doc: Dict[str, Any]) -> None:
    _check(workdir / "pyproject", "pyproject.toml", doc, load_project)
    _check(workdir / "pyproject", "pyproject.toml", doc, project_registry)


@given(doc=document(MATRIX))
def test_matrix_loader(workdir: Path, doc: Dict[str, Any]) -> None:
    _check(workdir / "matrix", "matrix.toml", doc, _matrix)


def test_the_writer_round_trips() -> None:
    from harness.config.tomlfile import tomllib

    document = {"a b": {"x": [1, 2.5, "s\n\"", True, {"k": -0.0}]}, "n": 2 ** 70, "f": float("inf")}
    assert tomllib.loads(to_toml(document)) == document
