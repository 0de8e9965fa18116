"""Matrix-cell virtualenvs: which installer, the commands that build one, when one can be reused, one user at a time.

Cells are plain virtualenvs under ``.nox/matrix-cells/<cell-id>``, built with ``uv venv`` + ``uv pip install``
(or ``virtualenv`` + pip: backend ``pip``, automatic when uv is missing), because one nox session cannot own
several nox-managed virtualenvs. A cell gets only what the runner needs: its pins, the runner's core
dependencies, this project with ``--no-deps`` and model packages with ``--no-deps``.

Stdlib only: nox's own Python imports this module.
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
]

#: ``auto`` picks uv when it is found, else pip
BACKENDS = ("auto", "uv", "pip")
#: written into a cell's virtualenv after a clean install: what it was installed from
STAMP_FILE = "harness-cell.stamp"
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
        [vpy, "-m", "pip", "install", *index_args, "-r", str(requirements)],
        [vpy, "-m", "pip", "install", "--no-deps", "-e", str(root), *no_deps],
    ]


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
    """One run at a time per cell virtualenv: a second run of the same cell (another terminal) waits.

    The lock is ``<venv>.lock`` beside the virtualenv (the virtualenv itself is deleted and recreated under it);
    ``on_wait`` is told when another run holds it. Without ``fcntl`` (Windows) there is no lock.
    """
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


