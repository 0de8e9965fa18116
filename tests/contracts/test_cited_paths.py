"""Every repository path the README, the docs, the code and ``harness explain``'s data cite exists (issue #13).

A reader who follows "see benchmarks/bench_compare.py" or an explain row "measured by tests/test_x.py" must find
that file. Paths are recognised by their top-level directory (or as the repository's top-level files); the few
that name a placeholder or a wheel-only copy are listed below, each with why; generated files (matched by
``.gitignore``) are cited as where a run puts them.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Dict, List, Set

import pytest

from harness.explain import MAGNITUDES_PATH, load_magnitudes

ROOT = Path(__file__).resolve().parents[2]
_PATH = re.compile(
    r"(?<![\w./-])((?:harness|tests|benchmarks|docs|fixtures|\.ci)/[A-Za-z0-9_./-]*[A-Za-z0-9_]"
    r"|noxfile\.py|matrix\.toml|pyproject\.toml)"
)
#: cited on purpose though not in the repository
_NOT_FILES = {
    "fixtures/baselines/NAME.parquet": "placeholder for a baseline name",
    "harness/_fixtures": "the copy a wheel ships inside the package (built from pyproject.toml)",
    "harness/bare": "prose: harness / bare rounds, not a path",
}


def _generated(path: str) -> bool:
    """Matched by ``.gitignore``: written by a run (``*.obtained.parquet``, ``reports/latest/``), never committed."""
    patterns = [line.strip() for line in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")]
    for pattern in patterns:
        if pattern.endswith("/") and (path + "/").startswith(pattern):
            return True
        if fnmatch.fnmatch(Path(path).name, pattern) or fnmatch.fnmatch(path, pattern):
            return True
    return False


def _sources() -> List[Path]:
    found = [ROOT / "README.md", ROOT / "noxfile.py", *sorted(ROOT.glob("docs/**/*.md")),
             *sorted(ROOT.glob("harness/**/*.py")), *sorted(ROOT.glob("harness/data/*.toml")),
             *sorted(ROOT.glob("benchmarks/*.py"))]
    return [p for p in found if p.is_file()]


def cited_paths(text: str) -> Set[str]:
    return {m.group(1).rstrip(".") for m in _PATH.finditer(text)}


def test_the_scanner_finds_paths_in_prose_and_code() -> None:
    text = "see `benchmarks/bench_compare.py`, (tests/test_x.py) and noxfile.py; not my-harness/x or a.harness/b"
    assert cited_paths(text) == {"benchmarks/bench_compare.py", "tests/test_x.py", "noxfile.py"}


def test_every_cited_repository_path_exists() -> None:
    missing: Dict[str, List[str]] = {}
    for source in _sources():
        for path in cited_paths(source.read_text(encoding="utf-8")):
            if path not in _NOT_FILES and not _generated(path) and not (ROOT / path).exists():
                missing.setdefault(path, []).append(str(source.relative_to(ROOT)))
    assert not missing, f"cited but not in the repository: {missing}"


def test_the_exceptions_are_still_cited_and_still_absent() -> None:
    """An exception that no longer applies goes, so the list cannot hide a real broken reference later."""
    everything = set().union(*(cited_paths(s.read_text(encoding="utf-8")) for s in _sources()))
    for path in _NOT_FILES:
        assert path in everything and not (ROOT / path).exists(), path


@pytest.mark.parametrize("factor", sorted(load_magnitudes()))
def test_explain_cites_only_files_that_exist(factor: str) -> None:
    """``harness explain``'s MEASURED BY column prints each factor's ``source``."""
    source = load_magnitudes()[factor].source or ""
    for path in cited_paths(source):
        assert (ROOT / path).exists(), f"{MAGNITUDES_PATH}: factor '{factor}' cites {path}"
