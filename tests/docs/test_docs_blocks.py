"""Every command and Python block of the README and the tutorial (docs/getting-started.md) runs, in order, in one
scratch directory, and exits as the text says: 0, or the code a trailing ``# exit N`` comment names. A block
preceded by ``<!-- not run: REASON -->`` is skipped, and must say why. A command the README and the tutorial
share runs once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = ("README.md", "docs/getting-started.md")
_FENCE = re.compile(r"(?P<marker><!--\s*not run[^>]*-->\s*\n)?```(?P<lang>bash|python)\n(?P<body>.*?)```", re.S)
_EXIT = re.compile(r"#\s*exit\s+(\d+)")

pytestmark = pytest.mark.slow


def blocks(document: str) -> List[Tuple[str, str, bool]]:
    """(language, body, runs) of every bash and python block."""
    text = (ROOT / document).read_text(encoding="utf-8")
    return [(m["lang"], m["body"], not m["marker"]) for m in _FENCE.finditer(text)]


def test_every_skipped_block_says_why() -> None:
    for document in DOCUMENTS:
        text = (ROOT / document).read_text(encoding="utf-8")
        for marker in re.findall(r"<!--\s*not run([^>]*)-->", text):
            assert marker.strip(" :"), f"{document}: a '<!-- not run -->' without a reason"


def test_the_documents_have_blocks_that_run() -> None:
    for document in DOCUMENTS:
        assert any(runs for _, _, runs in blocks(document)), document


def _commands(body: str) -> List[Tuple[str, int]]:
    out = []
    for line in body.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        found = _EXIT.search(line)
        out.append((line, int(found.group(1)) if found else 0))
    return out


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory where the documents' relative paths (fixtures/...) mean the checkout's."""
    work = tmp_path_factory.mktemp("docs-blocks")
    (work / "fixtures").symlink_to(ROOT / "fixtures")
    return work


def _environment() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_") or k == "HARNESS_HOME"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def test_every_block_runs_as_the_text_says(scratch: Path) -> None:
    seen = set()
    for document in DOCUMENTS:
        for lang, body, runs in blocks(document):
            if not runs:
                continue
            if lang == "python":
                proc = subprocess.run([sys.executable, "-c", body], cwd=scratch, env=_environment(),
                                      capture_output=True, text=True, timeout=600, check=False)
                assert proc.returncode == 0, f"{document}: python block failed:\n{body}\n{proc.stderr[-3000:]}"
                continue
            for command, expected in _commands(body):
                if command in seen:
                    continue
                seen.add(command)
                proc = subprocess.run(["bash", "-c", command], cwd=scratch, env=_environment(),
                                      capture_output=True, text=True, timeout=900, check=False)
                assert proc.returncode == expected, (
                    f"{document}: `{command}` exited {proc.returncode}, the text says {expected}\n"
                    f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
