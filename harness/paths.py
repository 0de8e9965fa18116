"""Where the harness finds what it ships, and where it keeps what it builds: every default path, named once.

Fixtures are looked up in ``$HARNESS_HOME``, the checkout the package lives in, the copy a wheel ships
(``harness/_fixtures``), then ``./fixtures``; a missing default is one ``HarnessError`` line saying how to point
at it.
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
    "SHIPPED_FIXTURES",
    "project_root",
    "fixtures_dir",
    "is_shipped",
    "default_registry",
    "default_corpus_dir",
    "default_baseline_dir",
    "default_matrix_file",
    "default_check_dir",
    "cache_dir",
    "missing_message",
    "require",
    "baseline_path",
]

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = PACKAGE_DIR / "data"
DEFAULT_POLICY = DATA_DIR / "default_policy.toml"
DRIFT_MAGNITUDES = DATA_DIR / "drift_magnitudes.toml"
#: The fixtures a wheel ships inside the package (absent in a checkout, where ``fixtures/`` is used).
SHIPPED_FIXTURES = PACKAGE_DIR / "_fixtures"


def _has_fixtures(directory: Path) -> bool:
    return (directory / "models" / "registry.toml").is_file()


def _home() -> Path | None:
    home = os.environ.get("HARNESS_HOME")
    return Path(home).expanduser().resolve() if home else None


def project_root() -> Path:
    """The checkout holding ``fixtures/`` and ``matrix.toml``: ``$HARNESS_HOME``, else the one the package lives
    in (editable install), else the current directory (where a missing file is then reported)."""
    home = _home()
    if home is not None:
        return home
    beside = PACKAGE_DIR.parent
    if _has_fixtures(beside / "fixtures"):
        return beside
    return Path.cwd()


def fixtures_dir() -> Path:
    """The fixtures in use, in the order of this module's docstring."""
    home = _home()
    if home is not None:
        return home / "fixtures"
    if _has_fixtures(PACKAGE_DIR.parent / "fixtures"):
        return PACKAGE_DIR.parent / "fixtures"
    if _has_fixtures(SHIPPED_FIXTURES):
        return SHIPPED_FIXTURES
    return Path.cwd() / "fixtures"


def is_shipped(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` lies in the fixtures shipped inside the installed package (read-only, in effect)."""
    try:
        Path(path).resolve().relative_to(SHIPPED_FIXTURES)
    except ValueError:
        return False
    return True


def default_registry() -> Path:
    return fixtures_dir() / "models" / "registry.toml"


def default_corpus_dir() -> Path:
    return fixtures_dir() / "corpus"


def default_baseline_dir() -> Path:
    return fixtures_dir() / "baselines"


def default_matrix_file() -> Path:
    return project_root() / "matrix.toml"


def default_check_dir() -> Path:
    """Where ``harness check`` keeps its runs without ``--out``: ``reports/checks`` of the working directory."""
    return Path("reports") / "checks"


def cache_dir() -> Path:
    """Where the harness keeps what it builds (backend exports, models derived from a shipped registry):
    ``$HARNESS_CACHE_DIR``, else ``$XDG_CACHE_HOME/embedding-harness`` (``~/.cache/embedding-harness``)."""
    explicit = os.environ.get("HARNESS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "embedding-harness"


def missing_message(path: Path, what: str) -> str:
    """One line naming what is missing, where it was looked for, and how to supply it."""
    home = os.environ.get("HARNESS_HOME")
    if home:
        where = f"HARNESS_HOME={home} has no such file: point it at a checkout of embedding-harness"
    else:
        where = "neither this install nor a checkout beside it has it: set HARNESS_HOME to a checkout of embedding-harness"
    return f"{path}: {what} not found ({where}, or pass the file explicitly)"


def require(path: Path, what: str) -> Path:
    """``path`` if it exists, else a one-line ``HarnessError`` (``missing_message``)."""
    if path.exists():
        return path
    raise HarnessError(missing_message(path, what))


def baseline_path(name: str, directory: str | os.PathLike[str] | None = None,
                  relative_to: str | os.PathLike[str] | None = None) -> Path:
    """``NAME`` -> ``<directory or the default baseline dir>/NAME.parquet``; a name that already is a path is
    used as it is (relative ones resolved against ``relative_to`` when given: matrix.toml names them from the
    checkout, the CLI from the working directory)."""
    if name.endswith(".parquet") or os.sep in name:
        path = Path(name)
        return path if path.is_absolute() or relative_to is None else Path(relative_to) / path
    return Path(directory or default_baseline_dir()) / f"{name}.parquet"
