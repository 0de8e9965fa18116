"""Every TOML file a user writes (policy, model registry, harness.toml / [tool.harness], matrix.toml) is refused
with one ``HarnessError`` line naming the file and the key when it is hostile: wrong types at every level,
NaN/inf, out-of-range numbers, unknown keys (with a did-you-mean), a directory, a 5,000-deep array, bad UTF-8.
A tolerance that is NaN must never turn a drift into a PASS."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Union

import pytest

from harness.cli import main
from harness.config.policy import load_policy
from harness.config.project import load_project, project_registry
from harness.config.registry import load_registry
from harness.errors import HarnessError, PolicyError
from harness.matrix.lenient import load_lenient
from harness.matrix.spec import load_matrix_file
from harness.testing import add_noise_to_one, perturb_results

from conftest import ROOT

BASELINE = ROOT / "fixtures" / "baselines" / "tiny-cpu-float32.parquet"
DEEP = "x = " + "[" * 5000 + "]" * 5000 + "\n"
Content = Union[str, bytes]


def _refused(tmp_path: Path, name: str, content: Content, load: Callable[[Path], object], *fragments: str) -> str:
    """Write ``content`` (None: make a directory), load it, and check the one-line error names file and key."""
    path = tmp_path / name
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(HarnessError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)), message
    for fragment in fragments:
        assert fragment in message, message
    return message


# -- file-level problems, the same for every kind -----------------------------------------------------------------

LOADERS = {
    "policy": (load_policy, "policy.toml"),
    "registry": (load_registry, "registry.toml"),
    "project": (project_registry, "harness.toml"),
    "pyproject": (project_registry, "pyproject.toml"),
    "matrix": (load_matrix_file, "matrix.toml"),
}


@pytest.mark.parametrize("kind", sorted(LOADERS))
@pytest.mark.parametrize("content, fragment", [
    (None, "is a directory"),
    (DEEP, "nested too deeply"),
    (b'x = "\xff\xfe"\n', "UTF-8"),
    ("[x\n", "TOML"),
    ("a = 1\na = 2\n", "TOML"),
])
def test_unreadable_files_are_one_line(tmp_path: Path, kind: str, content: Content, fragment: str) -> None:
    load, name = LOADERS[kind]
    _refused(tmp_path, name, content, load, fragment)


def test_lenient_matrix_load_never_raises(tmp_path: Path) -> None:
    for i, content in enumerate((None, DEEP, b"\xff", "matrix = 5\n", "[matrix.m]\ncells = [5]\n")):
        path = tmp_path / f"m{i}.toml"
        path.mkdir() if content is None else path.write_bytes(content if isinstance(content, bytes) else content.encode())
        matrices, problems = load_lenient(path)
        assert problems and all("\n" not in p.message and p.message.startswith(str(path)) for p in problems)


# -- policy -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, fragments", [
    ("classes = 5\n", ["'classes'", "table"]),
    ('[models.m]\nclass = []\n', ["'class'", "string"]),
    ("[classes.fp32]\ntopk = nan\n", ["classes.fp32", "'topk'"]),
    ("[classes.fp32]\ntopk = 0\n", ["'topk'"]),
    ("[classes.fp32]\ntopk = 99999999999999999999\n", ["'topk'"]),
    ("[classes.fp32]\ntopk = true\n", ["'topk'"]),
    ("[classes.fp32]\natol = nan\n", ["classes.fp32", "'atol'", "finite"]),
    ("[classes.fp32]\natol = inf\n", ["'atol'", "finite"]),
    ("[classes.fp32]\natol = -1e-5\n", ["'atol'", "non-negative"]),
    ("[classes.fp32]\natol = '1e-5'\n", ["'atol'", "number"]),
    ("[classes.fp32]\natol = true\n", ["'atol'", "got True"]),
    ("[classes.fp32]\nmin_cosine = nan\n", ["'min_cosine'", "finite"]),
    ("[classes.fp32]\nmin_cosine = 1.5\n", ["'min_cosine'", "at most 1"]),
    ("[classes.fp32]\ndescription = 3\n", ["'description'", "string"]),
    ("[classes.fp32]\nmax_int_distance = 1e300\n", ["'max_int_distance'"]),
    ("[policy]\ndefault_clas = 'fp16'\n", ["policy", "default_clas", "did you mean 'default_class'?"]),
    ("[policy]\ndefault_class = 3\n", ["'default_class'", "string"]),
    ("policy = 5\n", ["'policy'", "table"]),
    ("[clases.fp32]\natol = 1\n", ["clases", "did you mean 'classes'?"]),
    ("device_classes = []\n", ["'device_classes'", "table"]),
    ('[device_classes]\n"cpu-vs-cuda" = 3\n', ["device_classes", "'cpu-vs-cuda'", "string"]),
    ('[models.m]\nclasses = 5\n', ["models.m", "'classes'", "table"]),
    ('[models.m.classes]\nfp32 = 5\n', ["models.m.classes", "'fp32'", "table"]),
    ('[models.m.classes.fp32]\natol = nan\n', ["models.m.classes.fp32", "'atol'", "finite"]),
    ('[models."a b"]\nmin_cosine = -inf\n', ['models."a b"', "'min_cosine'"]),
    ('[models.m]\nclas = "fp16"\n', ["models.m", "did you mean 'class'?"]),
    ('[models]\nm = "fp16"\n', ["models", "'m'", "table"]),
])
def test_hostile_policies_are_one_line_naming_the_key(tmp_path: Path, text: str, fragments: list) -> None:
    _refused(tmp_path, "policy.toml", text, load_policy, *fragments)


def test_whole_number_floats_still_count_as_integers(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text("[classes.fp32]\ntopk = 5.0\nmax_bit_flips = 3\natol = 1\n")
    tolerance = load_policy(path).tolerance("m", "fp32")
    assert tolerance.topk == 5 and isinstance(tolerance.topk, int) and tolerance.atol == 1.0


def _compare(policy: Path, candidate: Path = BASELINE) -> int:
    return main(["compare", str(BASELINE), str(candidate), "--policy", str(policy)])


@pytest.mark.parametrize("content", ["classes = 5\n", "[classes.fp32]\ntopk = nan\n", "[models.m]\nclass = []\n",
                                     DEEP, None, "[policy]\ndefault_clas = 'fp16'\n"])
def test_compare_with_a_hostile_policy_exits_2_with_one_error_line(tmp_path: Path, capsys, content) -> None:
    path = tmp_path / "p.toml"
    path.mkdir() if content is None else path.write_text(content, encoding="utf-8")
    assert _compare(path) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {path}") and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("text", ["[classes.fp32]\natol = nan\n", "[classes.fp32]\nmin_cosine = nan\n",
                                  '[models."tiny-bi-encoder"]\natol = nan\nmin_cosine = nan\n'])
def test_a_nan_tolerance_never_passes_a_drift(tmp_path: Path, capsys, text: str) -> None:
    drifted = perturb_results(BASELINE, tmp_path / "drift.parquet", "tiny-bi-encoder", vectors=add_noise_to_one(3, 1e-4))
    path = tmp_path / "nan.toml"
    path.write_text(text)
    assert _compare(path, drifted) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {path}") and "finite" in err and len(err.splitlines()) == 1, err
    with pytest.raises(PolicyError):
        load_policy(path)


# -- model registry -----------------------------------------------------------------------------------------------

ENTRY = '[models.x]\nkind = "bi-encoder"\nsource = "path"\npath = "m"\n'


@pytest.mark.parametrize("text, fragments", [
    ('[models.x]\nkind = "bi-encoder"\nsource = "path"\npath = 5\n', ["model 'x'", "'path'", "string"]),
    ('[models.x]\nkind = "bi-encoder"\nsource = "hub"\nhub_id = "a/b"\ncache_dir = 5\n', ["model 'x'", "'cache_dir'"]),
    ("models = 5\n", ["'models'", "table"]),
    ("[models]\nx = 5\n", ["models", "'x'", "table"]),
    ("sets = 5\n", ["'sets'"]),
    ('[sets]\nd = "x"\n', ["'sets'"]),
    ("[sets]\nd = [1]\n", ["'sets'"]),
    (ENTRY + "batch_size = nan\n", ["model 'x'", "'batch_size'", "positive integer"]),
    (ENTRY + "batch_size = 8.0\n", ["'batch_size'", "positive integer"]),
    (ENTRY + "batch_size = true\n", ["'batch_size'", "positive integer"]),
    (ENTRY + "batch_size = 99999999999999999999\n", ["'batch_size'"]),
    (ENTRY + "max_seq_length = -3\n", ["'max_seq_length'"]),
    (ENTRY + 'seed = "1"\n', ["'seed'", "integer"]),
    (ENTRY + "trust_remote_code = 1\n", ["'trust_remote_code'", "true or false"]),
    (ENTRY + "note = []\n", ["'note'", "string"]),
    (ENTRY + "normalise_embeddings = true\n", ["model 'x'", "did you mean 'normalize_embeddings'?"]),
    ('[models.x]\nkind = 5\nsource = "path"\npath = "m"\n', ["'kind'", "one of bi-encoder, cross-encoder"]),
    ('[models.x]\nkind = "bi-encoder"\nsource = []\npath = "m"\n', ["'source'", "one of"]),
    (ENTRY + "http = 5\n", ["model 'x'", "'http'"]),
    ('[modles.x]\nkind = "bi-encoder"\n', ["modles", "did you mean 'models'?"]),
])
def test_hostile_registries_are_one_line_naming_the_key(tmp_path: Path, text: str, fragments: list) -> None:
    _refused(tmp_path, "registry.toml", text, load_registry, *fragments)


# -- project config (harness.toml, pyproject [tool.harness]) ------------------------------------------------------

@pytest.mark.parametrize("name, text, fragments", [
    ("pyproject.toml", "tool = 5\n", ["'tool'", "table"]),
    ("pyproject.toml", "[tool]\nharness = 5\n", ["tool", "'harness'", "table"]),
    ("pyproject.toml", "[tool.harness]\nmodels = 5\n", ["tool.harness", "'models'", "table"]),
    ("pyproject.toml", "[tool.harness.models.x]\nbatch_size = nan\n", ["tool.harness", "model 'x'", "'batch_size'"]),
    ("pyproject.toml", "[tool.harness]\nregistri = 'r.toml'\n", ["did you mean 'registry'?"]),
    ("harness.toml", "registry = 5\n", ["'registry'"]),
    ("harness.toml", "corpus = 5\n", ["'corpus'", "table"]),
    ("harness.toml", "[sets]\na = 5\n", ["'sets'"]),
    ("harness.toml", "[models.x]\nbatch_size = -1\n", ["model 'x'", "'batch_size'"]),
    ("harness.toml", "[models.x]\npath = 5\n", ["model 'x'", "'path'"]),
    ("harness.toml", "[models.tiny-bi-encoder]\nbatch_size = 1.5\n", ["model 'tiny-bi-encoder'", "'batch_size'"]),
    ("harness.toml", "[models.x]\nkind = 'bi-encoder'\nsource = 'hub'\nhub_id = 'a/b'\ncache_dir = 5\n", ["'cache_dir'"]),
    ("harness.toml", "[models]\nx = []\n", ["models", "'x'", "table"]),
    ("harness.toml", "modles = {}\n", ["modles", "did you mean 'models'?"]),
])
def test_hostile_project_configs_are_one_line_naming_the_key(tmp_path: Path, name: str, text: str, fragments: list) -> None:
    _refused(tmp_path, name, text, project_registry, *fragments)
    again = tmp_path / "again"
    again.mkdir()
    _refused(again, name, text, load_project, *fragments)


def test_run_with_a_hostile_config_exits_2_with_one_error_line(tmp_path: Path, capsys) -> None:
    for content in ("[models.x]\npath = 5\n", None, "tool = 5\n"):
        path = tmp_path / ("pyproject.toml" if content == "tool = 5\n" else "harness.toml")
        if path.exists():
            path.rename(tmp_path / f"old-{path.name}")
        path.mkdir() if content is None else path.write_text(content)
        assert main(["run", "--config", str(path), "--out", str(tmp_path / "r.parquet")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {path}") and len(err.splitlines()) == 1, err
        if content is None:
            path.rmdir()


# -- matrix.toml --------------------------------------------------------------------------------------------------

MATRIX = '[matrix.m]\nmodels = "tiny"\nbaseline = "tiny-cpu-float32"\n'
CELL = '[[matrix.m.cells]]\npython = "3.11"\ntorch = "2.13.0"\nsentence-transformers = "6.2.0"\ntransformers = "5.23.0"\n'


@pytest.mark.parametrize("text, fragments", [
    ("matrix = 5\n", ["'matrix'"]),
    ("[matrix]\nm = 5\n", ["matrix 'm'", "table"]),
    (MATRIX + "batch_size = nan\n" + CELL, ["matrix 'm'", "'batch_size'", "positive integer"]),
    (MATRIX + "batch_size = inf\n" + CELL, ["'batch_size'"]),
    (MATRIX + "batch_size = true\n" + CELL, ["'batch_size'"]),
    (MATRIX + "batch_size = 99999999999999999999\n" + CELL, ["'batch_size'"]),
    (MATRIX + "description = 5\n" + CELL, ["'description'", "string"]),
    (MATRIX + "descripton = 'x'\n" + CELL, ["matrix 'm'", "did you mean 'description'?"]),
    (MATRIX + "policy = 5\n" + CELL, ["'policy'"]),
    (MATRIX + "cells = 5\n", ["matrix 'm'", "cell"]),
    (MATRIX + "cells = [5]\n", ["matrix 'm' cell 1", "table"]),
    (MATRIX + CELL.replace('"3.11"', "3.11"), ["cell 1", "'python'", "string"]),
    (MATRIX + CELL + "extra = 'x'\n", ["cell 1", "'extra'"]),
    (MATRIX + CELL + "extra = [1]\n", ["cell 1", "'extra'"]),
    (MATRIX + CELL + "note = 5\n", ["cell 1", "'note'"]),
    (MATRIX + CELL + "numpy = 1\n", ["cell 1", "'numpy'"]),
    (MATRIX + CELL + "sentence_transformers = '6.2.0'\n", ["cell 1", "did you mean 'sentence-transformers'?"]),
    (MATRIX + CELL + 'server = "infinity-emb"\nserver_version = "0.0.77"\nserver_batch_size = nan\n',
     ["cell 1", "'server_batch_size'"]),
])
def test_hostile_matrix_files_are_one_line_naming_the_key(tmp_path: Path, text: str, fragments: list) -> None:
    _refused(tmp_path, "matrix.toml", text, load_matrix_file, *fragments)
    matrices, problems = load_lenient(tmp_path / "matrix.toml")
    assert problems and all("\n" not in p.message for p in problems)


def test_schemas_cover_the_dataclasses_they_build() -> None:
    """A key added to ``Tolerance`` without its schema field would be refused as unknown."""
    from harness.config.policy import Tolerance, ToleranceValues
    from harness.matrix.pins import CORE_PINS, OPTIONAL_PINS
    from harness.matrix.servers import SERVER_KEYS
    from harness.matrix.spec import CellTable

    assert set(ToleranceValues.model_fields) == set(Tolerance.__dataclass_fields__) - {"name"}
    cell_keys = {f.alias or k for k, f in CellTable.model_fields.items()}
    assert cell_keys == {"python", *(k for k, _ in CORE_PINS), *OPTIONAL_PINS, "extra", "id", "note", *SERVER_KEYS}


def test_keys_with_line_breaks_stay_on_one_line(tmp_path: Path) -> None:
    for name, load, text in [("p.toml", load_policy, '[models."a\\nb"]\nclass = "nope"\n'),
                             ("r.toml", load_registry, '[models."a\\u2028b"]\nkind = "x"\n'),
                             ("m.toml", load_matrix_file, '[matrix."a\\nb"]\nmodels = "tiny"\n'),
                             ("q.toml", load_policy, '[policy]\n"default\\nclas" = 1\n')]:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        with pytest.raises(HarnessError) as info:
            load(path)
        assert len(str(info.value).splitlines()) == 1, str(info.value)
