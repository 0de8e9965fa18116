"""Finding the interpreter a matrix cell asks for (``python = "3.X"``) on this machine.

Stdlib only: nox's own Python imports this module.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Tuple

__all__ = ["find_python", "override_variable"]


def override_variable(version: str) -> str:
    """The environment variable that names the interpreter for ``3.X`` (``HARNESS_PYTHON_3_X``)."""
    return "HARNESS_PYTHON_" + version.replace(".", "_")


def _python_works(executable: str, version: str) -> bool:
    """A pyenv shim for a Python that is installed but not selected exists and fails: run it to be sure."""
    try:
        out = subprocess.run(
            [executable, "-c", "import sys; print('{}.{}'.format(*sys.version_info[:2]))"],
            capture_output=True, text=True, timeout=30, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and out.stdout.strip() == version


def find_python(version: str) -> Optional[str]:
    """An interpreter for ``3.X``: ``$HARNESS_PYTHON_3_X``, the running one, pyenv's versions, then ``PATH``."""
    override = os.environ.get(override_variable(version))
    if override:
        return override
    if "{}.{}".format(*sys.version_info[:2]) == version:
        return sys.executable
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    candidates: List[Tuple[Tuple[int, ...], Path]] = []
    if pyenv_root.is_dir():
        for entry in pyenv_root.iterdir():
            match = re.match(rf"^{re.escape(version)}\.(\d+)$", entry.name)
            exe = entry / "bin" / f"python{version}"
            if match and exe.is_file():
                candidates.append(((int(match.group(1)),), exe))
    for _, exe in sorted(candidates, reverse=True):
        if _python_works(str(exe), version):
            return str(exe)
    found = shutil.which(f"python{version}")
    if found and _python_works(found, version):
        return found
    return None
