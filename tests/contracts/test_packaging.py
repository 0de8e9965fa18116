"""An installed (non-editable) harness runs from any directory: the wheel ships the data the CLI defaults to.

pyproject.toml lists the packages explicitly (so that ``fixtures/`` can join them as ``harness/_fixtures``); the
fast tests keep that list and the shipped patterns honest, the slow one builds a wheel, installs it into a fresh
virtualenv and runs ``harness check`` from a directory that is no checkout.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

import pytest

from harness.config.tomlfile import tomllib

from conftest import ROOT

FIXTURES = ROOT / "fixtures"


def _setuptools_config() -> Dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def _shipped() -> Set[Path]:
    patterns = _setuptools_config()["package-data"]["harness._fixtures"]
    return {p for pattern in patterns for p in FIXTURES.glob(pattern) if p.is_file()}


def test_every_package_of_harness_is_listed_for_the_wheel() -> None:
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "harness").rglob("__init__.py")}
    listed = set(_setuptools_config()["packages"]) - {"harness._fixtures"}
    assert found == listed, f"pyproject.toml [tool.setuptools] packages: add {sorted(found - listed)}, drop {sorted(listed - found)}"
    assert _setuptools_config()["package-dir"] == {"harness._fixtures": "fixtures"}


def test_the_wheel_ships_what_the_cli_defaults_to() -> None:
    shipped = _shipped()
    wanted = [FIXTURES / "models" / "registry.toml", FIXTURES / "corpus" / "MANIFEST.json",
              *(FIXTURES / "corpus").glob("*.jsonl"), *(FIXTURES / "baselines").glob("*.parquet")]
    for model in ("tiny-bi-encoder", "tiny-cross-encoder", "hub-cache"):
        wanted += [p for p in (FIXTURES / "models" / model).rglob("*") if p.is_file()]
    missing = sorted(str(p.relative_to(FIXTURES)) for p in wanted if p not in shipped)
    assert not missing, f"not shipped in the wheel: {missing}"
    assert not [p for p in shipped if p.suffix == ".py" or "derived" in p.parts]  # scripts and built models stay home


def test_missing_shipped_data_is_one_line_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    from harness.cli import main

    monkeypatch.setenv("HARNESS_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    for argv, what in ((["run", "--models", "tiny", "--out", "x.parquet"], "models/registry.toml: model registry not found"),
                       (["check"], "baselines/default-cpu-float32.parquet: baseline 'default-cpu-float32' not found")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {tmp_path / 'fixtures'}") and what in err, err
        assert f"HARNESS_HOME={tmp_path} has no such file" in err and len(err.splitlines()) == 1
    (tmp_path / "fixtures" / "models").mkdir(parents=True)
    shutil.copyfile(FIXTURES / "models" / "registry.toml", tmp_path / "fixtures" / "models" / "registry.toml")
    assert main(["run", "--models", "tiny", "--out", "x.parquet"]) == 2
    assert "fixtures/corpus: corpus (documents.jsonl, queries.jsonl, rerank.jsonl) not found" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fixtures"]


def test_models_derived_from_a_shipped_registry_are_built_in_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed package is no place for generated weights: a derived entry of the shipped registry goes to the cache."""
    from harness import paths
    from harness.config.registry import load_registry

    shipped = tmp_path / "site-packages" / "harness" / "_fixtures"
    (shipped / "models").mkdir(parents=True)
    shutil.copyfile(FIXTURES / "models" / "registry.toml", shipped / "models" / "registry.toml")
    monkeypatch.setattr(paths, "SHIPPED_FIXTURES", shipped)
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    derived = load_registry(shipped / "models" / "registry.toml").models["minilm-l6-derived-cross-encoder"]
    assert derived.path == str(tmp_path / "cache" / "derived" / "minilm-l6-derived-cross-encoder")
    in_checkout = load_registry(FIXTURES / "models" / "registry.toml").models["minilm-l6-derived-cross-encoder"]
    assert in_checkout.path == str(FIXTURES / "models" / "derived" / "minilm-l6-derived-cross-encoder")


# -- the wheel, installed -----------------------------------------------------------------------------------------


def _copy_source(target: Path) -> Path:
    """The checkout without its virtualenvs, caches, reports and build outputs (the wheel is built from this)."""
    ignore = shutil.ignore_patterns(".git", ".venv*", ".nox", "reports", "build", "dist", "*.egg-info", "__pycache__",
                                    ".pytest_cache", ".hypothesis", "derived")
    return Path(shutil.copytree(ROOT, target, ignore=ignore))


def _fresh_venv(tmp_path: Path) -> Path:
    """A virtualenv with only the wheel installed; torch and friends come from this interpreter's site-packages."""
    source = _copy_source(tmp_path / "src")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(source)]
    try:
        import setuptools  # noqa: F401 - present: build with it, offline
        build.insert(4, "--no-build-isolation")
    except ImportError:
        pass
    subprocess.run(build, check=True, cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("embedding_harness-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # This interpreter may itself be a virtualenv, whose packages --system-site-packages does not reach: a path
    # file adds them (after the venv's own site-packages, and without running their .pth files: no editable hook).
    Path(purelib, "outer-site.pth").write_text("\n".join(site.getsitepackages()) + "\n", encoding="utf-8")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True)
    return venv


def _harness(venv: Path, args: List[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("HARNESS_HOME", "PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(venv / "bin" / "harness"), *args], cwd=cwd, capture_output=True, text=True,
                          env={**clean, **env}, timeout=900)


@pytest.mark.slow
def test_installed_wheel_checks_from_any_directory(tmp_path: Path) -> None:
    venv = _fresh_venv(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import harness, harness.paths as p; "
                            "print(harness.__file__); print(p.fixtures_dir())"], cwd=elsewhere, capture_output=True,
                           text=True, check=True, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}).stdout.split()
    assert Path(where[0]).is_relative_to(venv) and not Path(where[0]).is_relative_to(ROOT), where  # the wheel, not the checkout
    assert Path(where[1]) == Path(where[0]).parent / "_fixtures"

    listed = _harness(venv, ["baseline", "list"], elsewhere)
    assert listed.returncode == 0, listed.stderr
    assert "default-cpu-float32" in listed.stdout and "tiny-cpu-float32" in listed.stdout

    out = elsewhere / "check.parquet"
    checked = _harness(venv, ["check", "tiny-cpu-float32", "--out", str(out), "--no-progress"], elsewhere)
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]
    assert "harness compare: PASS" in checked.stdout and out.is_file()
    assert sorted(p.name for p in elsewhere.iterdir()) == ["check.parquet"]  # nothing else written here

    empty = tmp_path / "no-checkout"
    empty.mkdir()
    missing = _harness(venv, ["check", "--out", str(out)], elsewhere, HARNESS_HOME=str(empty))
    err = missing.stderr.strip()
    assert missing.returncode == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {empty / 'fixtures' / 'baselines' / 'default-cpu-float32.parquet'}: "
                          "baseline 'default-cpu-float32' not found") and f"HARNESS_HOME={empty}" in err
