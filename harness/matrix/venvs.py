"""Matrix-cell virtualenvs: which installer, the commands that build one, when one can be reused, one user at a time.

Plain virtualenvs (uv, else virtualenv + pip), because one nox session cannot own several nox-managed ones. Reuse
is keyed by the resolved lock (``uv pip compile``) and ``pip freeze`` after the install, not only the pins: a new
release of an unpinned dependency rebuilds the cell. Nothing is byte-compiled at install (18-37 s a fresh cell):
a run compiles what it imports. Stdlib only: nox's own Python imports this module.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

from harness.matrix.spec import MatrixError

__all__ = [
    "BACKENDS",
    "STAMP_FILE",
    "find_uv",
    "choose_backend",
    "bin_dir",
    "cell_env",
    "install_commands",
    "install_stamp",
    "reusable",
    "cell_lock",
    "LOCK_FILE",
    "FREEZE_FILE",
    "compile_command",
    "freeze_command",
    "lock_key",
    "freeze_difference",
]

#: ``auto`` picks uv when it is found, else pip
BACKENDS = ("auto", "uv", "pip")
#: written into a cell's virtualenv after a clean install: what it was installed from
STAMP_FILE = "harness-cell.stamp"
#: the resolved requirements a cell is installed from (``uv pip compile``), in its run directory
LOCK_FILE = "requirements.lock"
#: ``pip freeze`` of a cell virtualenv right after its clean install, kept inside the virtualenv
FREEZE_FILE = "harness-cell.freeze"
#: wheels on local disk (the machine's CPU torch builds) that uv may take ahead of an index's, where it exists
LOCAL_WHEELS = "/opt/wheels"
#: the index that ``HARNESS_TORCH_INDEX_URL`` names, e.g. https://download.pytorch.org/whl/cpu
TORCH_INDEX_VARIABLE = "HARNESS_TORCH_INDEX_URL"


def find_uv() -> Optional[str]:
    """nox's own uv (the one its uv backend uses) where nox is importable, else uv on PATH."""
    try:
        from nox.virtualenv import find_uv as nox_find_uv  # nox >= 2024.3
    except ImportError:
        nox_find_uv = None
    if nox_find_uv is not None:
        has_uv, uv, *_ = nox_find_uv()
        if has_uv:
            return str(uv)
    return shutil.which("uv")


def choose_backend(choice: str, uv: Optional[str]) -> str:
    """``uv`` or ``pip`` for ``choice`` (``auto|uv|pip``); asking for uv where there is none is a ``MatrixError``."""
    if choice not in BACKENDS:
        raise MatrixError(f"backend '{choice}': not one of {', '.join(BACKENDS)}")
    if choice == "auto":
        return "uv" if uv else "pip"
    if choice == "uv" and not uv:
        raise MatrixError("--backend uv: uv not found (install it, or use --backend pip)")
    return choice


def bin_dir(venv: Path) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin")


def cell_env(venv: Path, backend: str) -> Dict[str, str]:
    """The environment commands run with in a cell: its ``bin`` first, no outer virtualenv or conda."""
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    env.pop("CONDA_PREFIX", None)
    # with UV_COMPILE_BYTECODE=0 the first import writes .pyc files instead of recompiling torch on every import
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault("UV_COMPILE_BYTECODE", "0")  # nothing compiled at install: a run compiles what it imports, once
    if Path(LOCAL_WHEELS).is_dir():  # every caller (nox, `harness attribute run`, tests) resolves the same torch
        env.setdefault("UV_FIND_LINKS", LOCAL_WHEELS)
    env["PATH"] = os.pathsep.join([str(bin_dir(venv)), env.get("PATH", "")])
    if backend == "pip":
        env["PIP_CONSTRAINT"] = "/dev/null"  # a machine-wide torch cap must not decide which torch a cell gets
        env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    return env


def install_commands(
    backend: str, python: str, venv: Path, requirements: Path, no_deps: Sequence[str], *, root: Path, uv: Optional[str]
) -> List[List[str]]:
    """Create the virtualenv, install the requirements file, then this project (``root``) and ``no_deps``."""
    vpy = str(bin_dir(venv) / "python")
    index = os.environ.get(TORCH_INDEX_VARIABLE)
    if backend == "uv":
        exe = uv or "uv"
        index_args = ["--index", index] if index else []
        return [
            [exe, "venv", "--clear", "--no-project", "--python", python, str(venv)],
            [exe, "pip", "install", "--python", vpy, *index_args, "-r", str(requirements)],
            [exe, "pip", "install", "--python", vpy, "--no-deps", "-e", str(root), *no_deps],
        ]
    try:
        import virtualenv  # noqa: F401 - nox depends on it; seeds a current pip

        create = [sys.executable, "-m", "virtualenv", "--quiet", "--clear", "--python", python, str(venv)]
    except ImportError:
        create = [python, "-m", "venv", "--clear", str(venv)]
    index_args = ["--extra-index-url", index] if index else []
    return [
        create,
        [vpy, "-m", "pip", "install", "--no-compile", *index_args, "-r", str(requirements)],
        [vpy, "-m", "pip", "install", "--no-compile", "--no-deps", "-e", str(root), *no_deps],
    ]


def compile_command(uv: Optional[str], python: str, requirements: Path, lock: Path) -> List[str]:
    """``uv pip compile`` of the cell's requirements for its interpreter into ``lock`` (same index as the install)."""
    index = os.environ.get(TORCH_INDEX_VARIABLE)
    return [uv or "uv", "pip", "compile", "--quiet", "--no-header", "--no-annotate", "--python", python,
            *(["--index", index] if index else []), str(requirements), "-o", str(lock)]


def freeze_command(backend: str, venv: Path, uv: Optional[str]) -> List[str]:
    """List what is installed in the cell virtualenv, one ``name==version`` (or ``-e url``) a line."""
    vpy = str(bin_dir(venv) / "python")
    if backend == "uv":
        return [uv or "uv", "pip", "freeze", "--python", vpy]
    return [vpy, "-m", "pip", "freeze", "--all"]


def lock_key(stamp: str, lock_text: Optional[str]) -> str:
    """The reuse key: the install stamp and the resolved lock (None with pip: the stamp alone)."""
    if lock_text is None:
        return stamp
    return hashlib.sha256(f"{stamp}\n{_canonical_lines(lock_text)}".encode()).hexdigest()


def _canonical_lines(text: str) -> str:
    """Requirement lines without comments, blanks and ordering, so an equal set of packages reads equal."""
    lines = {line.split("#", 1)[0].strip() for line in text.splitlines()}
    return "\n".join(sorted(line for line in lines if line))


def freeze_difference(recorded: Optional[str], current: str) -> str:
    """Empty when ``current`` (freeze now) equals ``recorded`` (after the install); else what differs, one line."""
    if recorded is None:
        return "no record of what was installed"
    old, new = set(_canonical_lines(recorded).splitlines()), set(_canonical_lines(current).splitlines())
    changes = [f"-{line}" for line in sorted(old - new)] + [f"+{line}" for line in sorted(new - old)]
    if not changes:
        return ""
    return "installed packages changed since the install: " + ", ".join(changes[:6]) + (" ..." if len(changes) > 6 else "")


def install_stamp(python: str, backend: str, requirements: Sequence[str], no_deps: Sequence[str]) -> str:
    """What a cell virtualenv was installed from, as one hash: equal stamps mean the venv can be reused."""
    text = json.dumps([python, backend, list(requirements), list(no_deps), os.environ.get(TORCH_INDEX_VARIABLE)])
    return hashlib.sha256(text.encode()).hexdigest()


def reusable(venv: Path, stamp: str) -> bool:
    """The virtualenv was installed cleanly from exactly ``stamp``."""
    stamp_file = venv / STAMP_FILE
    return stamp_file.is_file() and stamp_file.read_text(encoding="utf-8").strip() == stamp


@contextlib.contextmanager
def cell_lock(venv: Path, on_wait: Callable[[str], None]) -> Iterator[None]:
    """One run at a time per cell virtualenv (``<venv>.lock`` beside it, as the virtualenv is recreated under it);
    ``on_wait`` is told when another run holds it. Without ``fcntl`` there is no lock."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        yield
        return
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.with_name(venv.name + ".lock"), "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait(f"waiting: another run is using {venv}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


