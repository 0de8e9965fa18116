"""Requirement lines of a matrix cell: its own pins merged with what the runner needs.

Stdlib and ``packaging`` only: nox's own Python imports this module.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Sequence, Tuple

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from harness import paths
from harness.config.tomlfile import tomllib

__all__ = ["CORE_PINS", "OPTIONAL_PINS", "pin", "merge_requirements", "runner_requirements", "implied_requirements"]

#: the three libraries every cell pins to one exact version, with the short names used in cell ids
CORE_PINS: Tuple[Tuple[str, str], ...] = (("torch", "torch"), ("sentence-transformers", "st"), ("transformers", "tf"))
#: optional pins: an exact version ("1.26.4") or a specifier ("<2")
OPTIONAL_PINS: Tuple[str, ...] = ("numpy", "tokenizers")
#: the runner's own dependencies when pyproject.toml is not at hand (an installed, non-editable harness)
_FALLBACK_RUNNER_REQUIREMENTS = (
    "numpy>=1.21",
    "pyarrow>=14",
    "packaging>=21",
    "tqdm>=4.60",
    "pydantic>=2.7,<3",
    "tomli>=1.1; python_version < '3.11'",
)


def pin(name: str, value: str) -> str:
    """``"2.4.1"`` -> ``name==2.4.1``; a specifier (``"<2"``, ``">=1.26,<2"``) is used as it is."""
    return f"{name}{value}" if value[:1] in "<>=!~" else f"{name}=={value}"


def merge_requirements(own: Sequence[str], runner: Sequence[str]) -> List[str]:
    """``own`` lines, then each ``runner`` line; a runner line on a package ``own`` already names is merged into
    that line (``numpy<2`` and ``numpy>=1.21`` -> ``numpy<2,>=1.21``), so neither pip nor uv sees a name twice."""
    out = list(own)
    position = {canonicalize_name(Requirement(line).name): i for i, line in enumerate(own)}
    for line in runner:
        req = Requirement(line)
        index = position.get(canonicalize_name(req.name))
        if index is None:
            out.append(line)
            continue
        match = Requirement(out[index])
        merged = SpecifierSet(str(match.specifier)) & SpecifierSet(str(req.specifier))
        out[index] = f"{match.name}{','.join(sorted(str(s) for s in merged))}" + (f"; {match.marker}" if match.marker else "")
    return out


#: (package, version it must stay below, why): binary incompatibilities that packages do not declare, so no
#: resolver sees them; each applies when the cell's numpy pin admits no numpy 2
_NUMPY1_CAPS = (("pyarrow", "26", "pyarrow 26 refuses numpy < 2 at import time but does not declare it"),)


def implied_requirements(lines: Sequence[str]) -> List[str]:
    """Caps the resolver cannot know about, implied by a cell's pins (a numpy < 2 cell gets ``pyarrow<26``)."""
    numpy = next((Requirement(line) for line in lines if canonicalize_name(Requirement(line).name) == "numpy"), None)
    if numpy is None or not str(numpy.specifier) or any(numpy.specifier.contains(v) for v in ("2.0.0", "2.2.6", "2.4.6")):
        return []
    return [f"{name}<{below}" for name, below, _ in _NUMPY1_CAPS]


def runner_requirements(pyproject: str | os.PathLike[str] | None = None) -> List[str]:
    """What ``harness run`` needs besides torch and sentence-transformers: the project's core dependencies."""
    source = Path(pyproject) if pyproject else paths.project_root() / "pyproject.toml"
    try:
        deps = tomllib.loads(source.read_text(encoding="utf-8"))["project"]["dependencies"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return list(_FALLBACK_RUNNER_REQUIREMENTS)
    return [str(d) for d in deps]
