"""Backends beside torch (``backend = "onnx"`` / ``"openvino"`` per model): a missing backend package is a clean
``incompatible`` cell, not a crash; where ONNX Runtime is installed, torch and ONNX results of the tiny models
compare within the ``onnx`` tolerance class, and the export lands in the harness cache, never in a fixture.

sentence-transformers[onnx] needs optimum-onnx, which supports transformers < 4.58 only, so the ONNX runs live in
their own virtualenv (``pip install -e ".[onnx]"``). Point ``HARNESS_ONNX_PYTHON`` at that interpreter to run them
from the main environment; they run in-process when the current one has the packages.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import pytest

import harness.run.backends as backends
from harness import paths
from harness.config.corpus import DEFAULT_CORPUS_DIR
from harness.config.project import run_inputs
from harness.results import ResultsFile

from conftest import ROOT

MODELS = ROOT / "fixtures" / "models"
EXAMPLE_CONFIG = ROOT / "fixtures" / "examples" / "harness.toml"
ONNX_HINT = 'python -m venv .venv-onnx && .venv-onnx/bin/pip install torch==2.13.0 -e ".[onnx,dev]"'


def _config(path: Path, backend: str, logits: bool = True) -> Path:
    path.write_text(
        f'[models.tiny-bi-encoder]\nbackend = "{backend}"\n'
        f'[models.tiny-cross-encoder]\nbackend = "{backend}"\nlogits = {str(logits).lower()}\n',
        encoding="utf-8",
    )
    return path


def _run_in_process(config: Path, out: Path, corpus: Path = DEFAULT_CORPUS_DIR, **options) -> ResultsFile:
    from harness.run.runner import RunOptions, run

    registry, _, _ = run_inputs(config, None, corpus)
    summary = run(RunOptions(out=out, corpus_dir=corpus, registry=registry, device="cpu", **options))
    return ResultsFile(summary.path)


# -- without the backend's packages ------------------------------------------------------------------------------


def test_missing_backend_packages_are_incompatible_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(backend: str) -> Optional[str]:
        return f"backend {backend} needs {backends._BACKEND_INSTALL[backend]}; 'x' is not installed"

    monkeypatch.setattr(backends, "backend_missing", missing)
    config = tmp_path / "harness.toml"
    config.write_text('[models.tiny-bi-encoder]\nbackend = "onnx"\n[models.tiny-cross-encoder]\nbackend = "openvino"\n'
                      '[models.torch-one]\nkind = "bi-encoder"\nsource = "path"\n'
                      f'path = "{MODELS / "tiny-bi-encoder"}"\n')
    results = _run_in_process(config, tmp_path / "r.parquet", corpus=EXAMPLE_CONFIG)
    onnx, openvino = results.meta["models"]["tiny-bi-encoder"], results.meta["models"]["tiny-cross-encoder"]
    assert onnx["status"] == "incompatible" and "backend onnx needs onnxruntime/optimum" in onnx["reason"]
    assert openvino["status"] == "incompatible" and "backend openvino needs openvino/optimum-intel" in openvino["reason"]
    assert results.meta["models"]["torch-one"]["status"] == "ok"  # the other models still ran


def test_this_environment_reports_its_own_missing_backends(tmp_path: Path) -> None:
    reasons = {b: backends.backend_missing(b) for b in ("onnx", "openvino")}
    if all(r is None for r in reasons.values()):
        pytest.skip("both backends are installed here")
    for backend, reason in reasons.items():
        if reason is not None:
            assert reason.startswith(f"backend {backend} needs ")
    backend = next(b for b, r in reasons.items() if r is not None)
    results = _run_in_process(_config(tmp_path / "harness.toml", backend, logits=False), tmp_path / "r.parquet",
                              corpus=EXAMPLE_CONFIG)
    for model_id in ("tiny-bi-encoder", "tiny-cross-encoder"):
        info = results.meta["models"][model_id]
        assert info["status"] == "incompatible" and (reasons[backend] in info["reason"] or "backend=" in info["reason"])


def test_backend_runs_float32_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "backend_missing", lambda backend: None)
    results = _run_in_process(_config(tmp_path / "harness.toml", "onnx", logits=False), tmp_path / "r.parquet",
                              corpus=EXAMPLE_CONFIG, dtype="bfloat16")
    info = results.meta["models"]["tiny-bi-encoder"]
    assert info["status"] == "incompatible" and "exported float32 graph; --dtype bfloat16" in info["reason"]


def test_backend_cache_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.cache_dir() == tmp_path / "xdg" / "embedding-harness"
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "mine"))
    assert paths.cache_dir() == tmp_path / "mine"


# -- with ONNX Runtime: torch vs ONNX through the comparator ---------------------------------------------------------


def _onnx_in_process() -> bool:
    if backends.backend_missing("onnx") is not None:
        return False
    try:
        import optimum.onnxruntime  # noqa: F401 - the import itself is the check (optimum vs transformers)
    except Exception:  # noqa: BLE001
        return False
    return True


@pytest.fixture(scope="module")
def onnx_runner(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path, Path], ResultsFile]:
    """Runs ``harness run --config CONFIG`` where ONNX Runtime works: here, or in ``$HARNESS_ONNX_PYTHON``."""
    cache = tmp_path_factory.mktemp("harness-cache")
    if _onnx_in_process():
        def run_here(config: Path, out: Path) -> ResultsFile:
            previous = os.environ.get("HARNESS_CACHE_DIR")
            os.environ["HARNESS_CACHE_DIR"] = str(cache)
            try:
                return _run_in_process(config, out)
            finally:
                if previous is None:
                    os.environ.pop("HARNESS_CACHE_DIR", None)
                else:
                    os.environ["HARNESS_CACHE_DIR"] = previous

        run_here.cache = cache  # type: ignore[attr-defined]
        return run_here
    python = os.environ.get("HARNESS_ONNX_PYTHON")
    if not python:
        pytest.skip(f"backend onnx needs onnxruntime/optimum (not installed here); set HARNESS_ONNX_PYTHON to a Python "
                    f"with them ({ONNX_HINT})")

    def run_there(config: Path, out: Path) -> ResultsFile:
        env = {**os.environ, "HARNESS_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        proc = subprocess.run([python, "-m", "harness", "run", "--config", str(config), "--device", "cpu", "--out", str(out)],
                              cwd=str(config.parent), env=env, capture_output=True, text=True, timeout=1200, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return ResultsFile(out)

    run_there.cache = cache  # type: ignore[attr-defined]
    return run_there


def _listing(directory: Path) -> List[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


@pytest.fixture(scope="module")
def torch_and_onnx(onnx_runner: Callable[[Path, Path], ResultsFile], tmp_path_factory: pytest.TempPathFactory) -> Dict[str, object]:
    work = tmp_path_factory.mktemp("onnx")
    before = {name: _listing(MODELS / name) for name in ("tiny-bi-encoder", "tiny-cross-encoder")}
    torch_results = onnx_runner(_config(work / "torch.toml", "torch"), work / "torch.parquet")
    onnx_results = onnx_runner(_config(work / "onnx.toml", "onnx"), work / "onnx.parquet")
    again = onnx_runner(_config(work / "onnx-again.toml", "onnx"), work / "onnx-again.parquet")
    after = {name: _listing(MODELS / name) for name in before}
    return {"torch": torch_results, "onnx": onnx_results, "again": again, "before": before, "after": after,
            "cache": onnx_runner.cache}  # type: ignore[attr-defined]


def test_onnx_matches_torch_within_the_onnx_class(torch_and_onnx: Dict[str, object]) -> None:
    from harness.compare.comparator import compare_files

    torch_results, onnx_results = torch_and_onnx["torch"], torch_and_onnx["onnx"]
    for model_id in ("tiny-bi-encoder", "tiny-cross-encoder", "tiny-cross-encoder@logits"):
        assert onnx_results.meta["models"][model_id]["status"] == "ok", onnx_results.meta["models"][model_id].get("reason")
        assert onnx_results.meta["models"][model_id]["backend"] == "onnx" and torch_results.meta["models"][model_id]["backend"] == "torch"
    comparison = compare_files(torch_results.path, onnx_results.path, tolerance_class="onnx")
    assert comparison, comparison.serialize()
    assert {v.model_id for v in comparison.models} == {"tiny-bi-encoder", "tiny-cross-encoder", "tiny-cross-encoder@logits"}
    assert all(v.tolerance_class == "onnx" for v in comparison.models)
    bi = next(v for v in comparison.models if v.model_id == "tiny-bi-encoder")
    assert bi.metrics.max_abs_diff > 0  # a different runtime really ran


def test_onnx_export_goes_to_the_cache_and_is_reused(torch_and_onnx: Dict[str, object]) -> None:
    assert torch_and_onnx["before"] == torch_and_onnx["after"]  # nothing written into the fixtures
    cache = Path(torch_and_onnx["cache"])  # type: ignore[arg-type]
    first, again = torch_and_onnx["onnx"], torch_and_onnx["again"]
    info = first.meta["models"]["tiny-bi-encoder"]
    assert Path(info["backend_dir"]).is_relative_to(cache) and info["backend_files"] == ["onnx/model.onnx"]
    assert info["backend_exported_now"] is True and len(info["backend_sha256"]) == 64
    assert info["weights_sha256"] == torch_and_onnx["torch"].meta["models"]["tiny-bi-encoder"]["weights_sha256"]
    reused = again.meta["models"]["tiny-bi-encoder"]
    assert reused["backend_exported_now"] is False and reused["backend_sha256"] == info["backend_sha256"]
    np.testing.assert_array_equal(first.embeddings("tiny-bi-encoder")[2], again.embeddings("tiny-bi-encoder")[2])
    np.testing.assert_array_equal(first.rerank("tiny-cross-encoder")["score"], again.rerank("tiny-cross-encoder")["score"])
