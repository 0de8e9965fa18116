"""Where the harness finds what it ships: the data beside the code, and the checkout's fixtures.

Every default path the harness uses (policy, drift magnitudes, model registry, corpus, baselines, matrix file)
is named here once. Package data (``harness/data``) always travels with the code. The fixtures (corpus, tiny
models, committed baselines) and ``matrix.toml`` live in the source checkout: an editable install finds them
beside the package; any other install finds them under ``$HARNESS_HOME`` (a checkout) or the current directory,
and a missing one is a one-line ``HarnessError`` saying what is missing and how to point at it.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.errors import HarnessError

__all__ = [
    "PACKAGE_DIR",
    "DATA_DIR",
    "DEFAULT_POLICY",
    "DRIFT_MAGNITUDES",
    "project_root",
    "fixtures_dir",
    "default_registry",
    "default_corpus_dir",
    "default_baseline_dir",
    "default_matrix_file",
    "cache_dir",
    "missing_message",
    "require",
    "baseline_path",
]

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = PACKAGE_DIR / "data"
DEFAULT_POLICY = DATA_DIR / "default_policy.toml"
DRIFT_MAGNITUDES = DATA_DIR / "drift_magnitudes.toml"


def _is_checkout(directory: Path) -> bool:
    return (directory / "fixtures" / "models" / "registry.toml").is_file()


def project_root() -> Path:
    """The checkout holding ``fixtures/`` and ``matrix.toml``: ``$HARNESS_HOME``, else the one the package lives
    in (editable install), else the current directory (where a missing file is then reported)."""
    home = os.environ.get("HARNESS_HOME")
    if home:
        return Path(home).expanduser().resolve()
    beside = PACKAGE_DIR.parent
    if _is_checkout(beside):
        return beside
    return Path.cwd()


def fixtures_dir() -> Path:
    return project_root() / "fixtures"


def default_registry() -> Path:
    return fixtures_dir() / "models" / "registry.toml"


def default_corpus_dir() -> Path:
    return fixtures_dir() / "corpus"


def default_baseline_dir() -> Path:
    return fixtures_dir() / "baselines"


def default_matrix_file() -> Path:
    return project_root() / "matrix.toml"


def cache_dir() -> Path:
    """Where the harness keeps what it builds (backend exports): ``$HARNESS_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/embedding-harness`` (``~/.cache/embedding-harness``)."""
    explicit = os.environ.get("HARNESS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "embedding-harness"


def missing_message(path: Path, what: str) -> str:
    """One line naming what is missing, where it was looked for, and how to supply it."""
    home = os.environ.get("HARNESS_HOME")
    where = (f"HARNESS_HOME={home} has no such file: point it at a checkout of embedding-harness"
             if home else "the harness's fixtures live in its source checkout: run from the checkout, set HARNESS_HOME to it")
    return f"{path}: {what} not found ({where}, or pass the file explicitly)"


def require(path: Path, what: str) -> Path:
    """``path`` if it exists, else a one-line ``HarnessError`` (``missing_message``)."""
    if path.exists():
        return path
    raise HarnessError(missing_message(path, what))


def baseline_path(name: str, directory: "str | os.PathLike[str] | None" = None,
                  relative_to: "str | os.PathLike[str] | None" = None) -> Path:
    """``NAME`` -> ``<directory or the default baseline dir>/NAME.parquet``; a name that already is a path is
    used as it is (relative ones resolved against ``relative_to`` when given: matrix.toml names them from the
    checkout, the CLI from the working directory)."""
    if name.endswith(".parquet") or os.sep in name:
        path = Path(name)
        return path if path.is_absolute() or relative_to is None else Path(relative_to) / path
    return Path(directory or default_baseline_dir()) / f"{name}.parquet"
