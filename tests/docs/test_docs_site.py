"""The documentation site builds in strict mode (broken links or anchors, pages missing from the nav fail) and
renders in a real headless browser: every page of the nav loads from disk, offline, with its navigation and text.

To look at it by hand: ``nox -s docs`` (or ``python -m mkdocs build --strict``), then open ``site/index.html``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from conftest import find_chromium

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
pytest.importorskip("material", reason="mkdocs-material is not installed (pip install -e '.[docs]')")


def _build(site: Path, config: Optional[Path] = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config or ROOT / "mkdocs.yml"),
                           "--site-dir", str(site)], capture_output=True, text=True, timeout=300, check=False,
                          cwd=ROOT, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    proc = _build(out)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def _nav_pages() -> List[str]:
    yaml = pytest.importorskip("yaml")
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
    found: List[str] = []

    def walk(node: object) -> None:
        if isinstance(node, str):
            found.append(node)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)

    walk(config["nav"])
    return found


def test_every_page_of_docs_is_in_the_nav_and_every_nav_entry_was_built(site: Path) -> None:
    nav = _nav_pages()
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert set(nav) == pages
    for page in nav:
        assert (site / page.replace(".md", ".html")).is_file(), page


def test_a_broken_link_fails_the_strict_build(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\n[gone](missing.md) and [anchor](#nowhere)\n", encoding="utf-8")
    config = tmp_path / "mkdocs.yml"
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    config.write_text(text[: text.index("\nnav:")] + "\nnav:\n  - Home: index.md\n", encoding="utf-8")
    proc = _build(tmp_path / "site", config)
    assert proc.returncode == 1 and "missing.md" in proc.stderr


def test_the_readme_keeps_short_and_links_only_to_pages_that_exist() -> None:
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    assert "../shared" not in readme
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target


# -- headless browser -------------------------------------------------------------------------------------------


def _chromium() -> Optional[str]:
    return find_chromium()


RENDERED: Dict[str, List[str]] = {  # page -> text the rendered DOM must hold
    "index.html": ["embedding-harness", "Getting started", "How-to guides", "Reference"],
    "getting-started.html": ["Check that the install works", "Find the drift", "Ask why it moved"],
    "reference/cli.html": ["harness matrix list", "--format", "exit codes"],
    "how-to/nightly-ci.html": ["fromJSON", "JOB_COMPLETION_INDEX", "Indexed"],
}


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="no chromium on PATH (Debian: apt-get install -y chromium)")
@pytest.mark.parametrize("page", sorted(RENDERED))
def test_the_site_renders_in_headless_chromium(site: Path, tmp_path: Path, page: str) -> None:
    profile = tmp_path / "profile"
    proc = subprocess.run(
        [str(_chromium()), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--virtual-time-budget=3000", "--dump-dom", (site / page).as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert 'class="md-nav' in dom and 'class="md-content' in dom, dom[:2000]  # the theme's layout rendered
    for text in RENDERED[page]:
        assert text in dom, (page, text)
    assert "fonts.googleapis.com" not in dom  # offline: no web fonts asked for
