"""The runner on the tiny models: what it records, how it loads (offline-first), and how it refuses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.config.registry import ModelSpec, load_registry
from harness.errors import ModelLoadError
from harness.results import ResultsFile
from harness.run.resolve import resolve_model_dir
from harness.run.runner import rank_within_queries

from conftest import ROOT, run_tiny

MODELS = ROOT / "fixtures" / "models"


def test_results_record_fingerprint_corpus_and_model_facts(tiny_results: Path) -> None:
    results = ResultsFile(tiny_results)
    fp = results.fingerprint
    for key in ("python", "torch_version", "cpu_model", "device", "dtype", "tf32_matmul", "num_threads",
                "deterministic_algorithms", "torch_build", "cudnn", "gpu_name"):
        assert key in fp, key
    for pkg in ("torch", "transformers", "sentence-transformers", "tokenizers", "numpy"):
        assert fp["packages"][pkg], pkg
    assert fp["torch_build"]["blas_info"]
    corpus = results.meta["corpus"]
    manifest = json.loads((ROOT / "fixtures" / "corpus" / "MANIFEST.json").read_text())
    assert corpus["sha256"] == manifest["sha256"]
    bi = results.meta["models"]["tiny-bi-encoder"]
    assert bi["status"] == "ok" and bi["dim"] == 32 and len(bi["weights_sha256"]) == 64
    assert bi["loaded_dtype"] == "float32" and bi["attn_implementation"]
    assert bi["saved_versions"]["sentence_transformers"] == "2.7.0"
    ce = results.meta["models"]["tiny-cross-encoder"]
    assert ce["items"] == corpus["pairs"] and ce["items_per_s"] > 0


def test_vectors_are_normalized_and_ranks_are_consistent(tiny_results: Path) -> None:
    results = ResultsFile(tiny_results)
    ids, roles, vectors = results.embeddings("tiny-bi-encoder")
    assert len(ids) == results.meta["corpus"]["documents"] + results.meta["corpus"]["queries"]
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    rr = results.rerank("tiny-cross-encoder")
    for qid in np.unique(rr["query_id"]):
        sel = rr["query_id"] == qid
        order = np.argsort(rr["rank"][sel])
        assert np.all(np.diff(rr["score"][sel][order]) <= 0)


def test_rank_within_queries_ties_keep_file_order() -> None:
    ranks = rank_within_queries(["a", "a", "b", "a"], np.array([0.5, 0.9, 0.1, 0.5]))
    assert ranks.tolist() == [2, 1, 1, 3]


def test_same_run_twice_is_bit_identical(tiny_results: Path, tmp_path: Path) -> None:
    again = run_tiny(tmp_path / "again.parquet")
    a, b = ResultsFile(tiny_results), ResultsFile(again)
    np.testing.assert_array_equal(a.embeddings("tiny-bi-encoder")[2], b.embeddings("tiny-bi-encoder")[2])
    np.testing.assert_array_equal(a.rerank("tiny-cross-encoder")["score"], b.rerank("tiny-cross-encoder")["score"])


def _newer_st_copy(tmp_path: Path) -> Path:
    target = tmp_path / "from-the-future"
    shutil.copytree(MODELS / "tiny-bi-encoder", target)
    config = target / "config_sentence_transformers.json"
    data = json.loads(config.read_text())
    data["__version__"]["sentence_transformers"] = "99.0.0"
    config.write_text(json.dumps(data))
    return target


def test_model_saved_by_newer_sentence_transformers_is_incompatible_not_a_crash(tmp_path: Path) -> None:
    future = _newer_st_copy(tmp_path)
    from harness.config.corpus import DEFAULT_CORPUS_DIR
    from harness.run.runner import RunOptions, run

    summary = run(RunOptions(out=tmp_path / "r.parquet", corpus_dir=DEFAULT_CORPUS_DIR, registry=load_registry(),
                             models=[str(future), "tiny-cross-encoder"], device="cpu"))
    assert summary.statuses == {"from-the-future": "incompatible", "tiny-cross-encoder": "ok"}
    info = ResultsFile(summary.path).meta["models"]["from-the-future"]
    assert "99.0.0" in info["reason"] and info["saved_versions"]["sentence_transformers"] == "99.0.0"


def test_hub_id_resolves_offline_from_local_cache() -> None:
    spec = load_registry().models["tiny-hub-bi-encoder"]
    directory, how = resolve_model_dir(spec)
    assert how == "cache" and (directory / "model.safetensors").is_file()


def test_hub_id_not_in_cache_fails_with_model_and_cache_path(tmp_path: Path) -> None:
    spec = ModelSpec(id="missing", kind="bi-encoder", source="hub", hub_id="org/not-cached", cache_dir=str(tmp_path))
    with pytest.raises(ModelLoadError) as info:
        resolve_model_dir(spec, allow_network=False)
    message = str(info.value)
    assert "org/not-cached" in message and str(tmp_path) in message and "--allow-network" in message


def test_package_source_without_package_and_cache_names_the_install(tmp_path: Path) -> None:
    spec = ModelSpec(id="pkg", kind="bi-encoder", source="package", package="no_such_model_pkg",
                     hub_id="org/none", cache_dir=str(tmp_path))
    with pytest.raises(ModelLoadError, match="pip install no-such-model-pkg"):
        resolve_model_dir(spec)


def test_pickle_only_cache_loads_and_is_recorded(tmp_path: Path) -> None:
    """A cache holding only pytorch_model.bin (no safetensors) still loads, and the format is recorded."""
    out = run_tiny(tmp_path / "bin.parquet", models=[str(MODELS / "incomplete-cache"), "tiny-bi-encoder"])
    results = ResultsFile(out)
    assert results.meta["models"]["incomplete-cache"]["weights_format"] == "pickle"
    np.testing.assert_array_equal(results.embeddings("incomplete-cache")[2], results.embeddings("tiny-bi-encoder")[2])


def test_directory_without_weights_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "no-weights"
    shutil.copytree(MODELS / "tiny-bi-encoder", empty)
    (empty / "model.safetensors").unlink()
    spec = ModelSpec(id="no-weights", kind="bi-encoder", source="path", path=str(empty))
    with pytest.raises(ModelLoadError, match="holds no weights"):
        resolve_model_dir(spec)


def test_unknown_model_id_lists_known_ones() -> None:
    with pytest.raises(ModelLoadError, match="unknown model id 'nope'.*tiny-bi-encoder"):
        load_registry().select(["nope"])


def test_remote_code_is_refused_unless_allowed(tmp_path: Path) -> None:
    custom = tmp_path / "custom-code"
    shutil.copytree(MODELS / "tiny-bi-encoder", custom)
    config = json.loads((custom / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (custom / "config.json").write_text(json.dumps(config))
    from harness.config.corpus import DEFAULT_CORPUS_DIR
    from harness.run.runner import RunOptions, run

    with pytest.raises(ModelLoadError, match="trust_remote_code"):
        run(RunOptions(out=tmp_path / "r.parquet", corpus_dir=DEFAULT_CORPUS_DIR, registry=load_registry(),
                       models=[str(custom)], device="cpu"))
    assert not (tmp_path / "r.parquet").exists()


def test_runner_and_comparator_import_diets() -> None:
    """The runner loads torch only when running; the comparator never (it must not drift itself)."""
    code = (
        "import sys, harness.run.runner, harness.cli; assert 'torch' not in sys.modules, 'runner'; "
        "import harness.compare.comparator, harness.report.text; "
        "assert 'torch' not in sys.modules and 'sentence_transformers' not in sys.modules, 'comparator'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.skipif(sys.version_info < (3, 10), reason="sys.stdlib_module_names is 3.10+")
def test_runner_imports_only_stdlib_numpy_and_pyarrow() -> None:
    """Matrix cells import the runner inside old environments: beyond numpy and pyarrow (and what they pull in
    themselves), importing it may load nothing but the stdlib, harness and pydantic (the registry's schema; a core
    dependency every cell installs, harness.matrix.pins)."""
    code = (
        "import sys\n"
        "def third_party():\n"
        "    tops = {m.split('.')[0] for m in sys.modules}\n"
        "    return {t for t in tops if t not in sys.stdlib_module_names and not t.startswith('_')}\n"
        "import numpy, pyarrow, pyarrow.parquet, pyarrow.fs\n"
        "before = third_party()\n"
        "import harness.run.runner\n"
        "schema = {'pydantic', 'pydantic_core', 'annotated_types', 'typing_extensions', 'typing_inspection'}\n"
        "print(sorted(third_party() - before - {'harness'} - schema))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.slow
def test_a_run_under_transformers_5_prints_no_torch_dtype_deprecation(tmp_path: Path) -> None:
    """The runner reads ``config.dtype`` where it exists; reading ``torch_dtype`` warned on every run. Nor does
    transformers' own "Loading weights" bar reach the log (the harness reports progress itself)."""
    out = tmp_path / "r.parquet"
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--models", "tiny", "--device", "cpu", "--out", str(out),
                           "--no-progress"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "torch_dtype" not in proc.stderr + proc.stdout
    assert "Loading weights" not in proc.stderr + proc.stdout
    assert ResultsFile(out).records["tiny-bi-encoder"].config_dtype == "float32"


def test_device_cuda_without_a_driver_is_refused_before_torch_is_imported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """Issue 26: ``--device cuda`` on a machine without an NVIDIA driver was refused only after 12.6 s of imports;
    no /proc/driver/nvidia (nor ROCm's /dev/kfd, WSL's /dev/dxg) and no libcuda: refused before torch loads."""
    import ctypes.util

    import harness.run.runner as runner
    from harness.cli import main

    def no_imports() -> None:
        raise AssertionError("torch imported before the device was refused")

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(runner, "_DRIVER_SIGNS", (str(tmp_path / "no-driver"),))
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(runner, "_import_libraries", no_imports)
    out = tmp_path / "r.parquet"
    assert main(["run", "--models", "tiny-bi-encoder", "--device", "cuda", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --device cuda requested, but this machine has no NVIDIA driver"), err
    assert not out.exists()
    # a driver present (or a libcuda): torch's own check stays the final word
    (tmp_path / "no-driver").mkdir()
    runner.refuse_absent_cuda("cuda:1")
    monkeypatch.setattr(runner, "_DRIVER_SIGNS", ())
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: "libcuda.so.1")
    runner.refuse_absent_cuda("cuda")
    runner.refuse_absent_cuda("cpu")


def test_the_pickle_fallback_says_which_weights_it_used(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Issue 26: a cache holding only pytorch_model.bin loaded and said only "ok": the run's per-model line and
    ``harness baseline show`` name the weights file and format used."""
    from harness.cli import main

    out = tmp_path / "bin.parquet"
    assert main(["run", "--models", str(MODELS / "incomplete-cache"), "--device", "cpu", "--out", str(out),
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "incomplete-cache: ok [weights pytorch_model.bin (pickle)]" in err, err
    assert main(["baseline", "create", str(tmp_path / "b.parquet"), "--from", str(out), "--reason", "t"]) == 0
    capsys.readouterr()
    assert main(["baseline", "show", str(tmp_path / "b.parquet")]) == 0
    model = json.loads(capsys.readouterr().out)["models"]["incomplete-cache"]
    assert model["weight_files"] == ["pytorch_model.bin"] and model["weights_format"] == "pickle"


def _saved_by_next_patch(tmp_path: Path, name: str) -> Path:
    """The tiny bi-encoder as if saved by the next patch release of the installed sentence-transformers."""
    from packaging.version import Version

    from harness.run.load import installed_version

    major, minor, micro = (list(Version(installed_version()).release) + [0, 0])[:3]
    target = tmp_path / name
    shutil.copytree(MODELS / "tiny-bi-encoder", target)
    config = target / "config_sentence_transformers.json"
    data = json.loads(config.read_text())
    data["__version__"]["sentence_transformers"] = f"{major}.{minor}.{micro + 1}"
    config.write_text(json.dumps(data))
    return target


def test_a_model_saved_by_a_newer_patch_release_is_tried_with_a_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Issue 26: a model saved by sentence-transformers 6.3.1 was refused under 6.3.0 without trying. A newer
    major/minor stays incompatible at once (the test above); a newer patch warns on stderr and loads, and is
    incompatible only when loading fails."""
    from harness.config.corpus import DEFAULT_CORPUS_DIR
    from harness.run.runner import RunOptions, run

    patched = _saved_by_next_patch(tmp_path, "next-patch")
    broken = _saved_by_next_patch(tmp_path, "next-patch-broken")
    (broken / "config.json").write_text("{ not json")
    summary = run(RunOptions(out=tmp_path / "r.parquet", corpus_dir=DEFAULT_CORPUS_DIR, registry=load_registry(),
                             models=[str(patched), str(broken)], device="cpu"))
    assert summary.statuses == {"next-patch": "ok", "next-patch-broken": "incompatible"}, summary.reasons
    err = capsys.readouterr().err
    assert "warning: model 'next-patch': model saved by sentence-transformers" in err and "trying to load it" in err
    reason = ResultsFile(summary.path).meta["models"]["next-patch-broken"]["reason"]
    assert "is older, and loading failed" in reason, reason


def test_a_hub_id_on_the_command_line_resolves_from_the_local_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """Issue 26: ``harness run --models org/name`` did not take hub ids and did not say how. A hub id resolves
    offline from the local cache (HF_HOME / HF_HUB_CACHE); not cached, one line says how to supply it."""
    from huggingface_hub import constants

    from harness.cli import main
    from harness.config.registry import Registry
    from harness.run.resolve import with_hub_ids

    registry = load_registry()
    # a registry entry with that hub_id runs under its own id
    assert with_hub_ids(registry, ["harness-test/tiny-bi-encoder"])[1] == ["tiny-hub-bi-encoder"]
    # any other hub id: from the standard cache, under the hub id, its kind read from its files
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(MODELS / "hub-cache"))
    bare = Registry(path=tmp_path / "r.toml", models={}, sets={})
    merged, names = with_hub_ids(bare, ["harness-test/tiny-bi-encoder", "tiny"])
    assert names == ["harness-test/tiny-bi-encoder", "tiny"]
    spec = merged.models["harness-test/tiny-bi-encoder"]
    assert (spec.source, spec.hub_id, spec.kind) == ("hub", "harness-test/tiny-bi-encoder", "bi-encoder")
    directory, how = resolve_model_dir(spec)
    assert how == "cache" and (directory / "model.safetensors").is_file()
    ran = tmp_path / "hub.parquet"
    empty = tmp_path / "empty-registry.toml"
    empty.write_text("[models]\n")
    assert main(["run", "--models", "harness-test/tiny-bi-encoder", "--registry", str(empty), "--device", "cpu",
                 "--out", str(ran), "--no-progress"]) == 0, capsys.readouterr().err
    assert ResultsFile(ran).records["harness-test/tiny-bi-encoder"].status == "ok"
    capsys.readouterr()
    # not cached: exit 2, one line naming the cache and the ways to supply it, nothing written
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    out = tmp_path / "r.parquet"
    assert main(["run", "--models", "sentence-transformers/foo", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sentence-transformers/foo" in err[0] and str(tmp_path / "empty-cache") in err[0], err
    for how_to in ("--allow-network", "HF_HOME", "registry entry"):
        assert how_to in err[0], (how_to, err[0])
    assert not out.exists()


@pytest.mark.slow
def test_a_library_that_installs_but_does_not_import_is_incompatible_not_an_internal_error(tmp_path: Path) -> None:
    """transformers 5.23 under torch 2.4.1 raises NameError on import: `harness run` says so in one line (exit 2),
    and with --record-incompatible records every model as incompatible with that reason (a matrix cell's finding)."""

    broken = tmp_path / "site" / "transformers"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise NameError(\"name 'nn' is not defined\")\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(broken.parent), str(ROOT)]),
           "HARNESS_CRASH_DIR": str(tmp_path / "crashes")}
    base = [sys.executable, "-m", "harness", "run", "--models", "tiny-bi-encoder"]
    plain = subprocess.run([*base, "--out", str(tmp_path / "a.parquet")], env=env, capture_output=True, text=True, timeout=600)
    assert plain.returncode == 2, plain.stderr
    last = plain.stderr.strip().splitlines()[-1]
    assert "sentence-transformers does not import in this environment: NameError" in last and "internal error" not in last
    assert not (tmp_path / "a.parquet").exists() and not (tmp_path / "crashes").exists()
    kept = subprocess.run([*base, "--out", str(tmp_path / "b.parquet"), "--record-incompatible"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert kept.returncode == 0, kept.stderr
    info = ResultsFile(tmp_path / "b.parquet").meta["models"]["tiny-bi-encoder"]
    assert info["status"] == "incompatible" and "NameError" in info["reason"]
