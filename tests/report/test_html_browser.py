"""The HTML report in a real headless browser: it loads from disk, renders, and its DOM has the tables and plots.

To repeat by hand (Debian: ``apt-get install -y chromium``), render a report and run::

    chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \\
        --disable-background-networking --disable-component-update --disable-sync \\
        --user-data-dir=$(mktemp -d) --screenshot=/tmp/report.png --window-size=1400,2000 \\
        file:///path/to/report.html

and open ``/tmp/report.png``. Replace ``--screenshot=...`` with ``--dump-dom`` to print the rendered DOM.
"""

from __future__ import annotations

import dataclasses
import re
import struct
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from harness.fsio import append_line
from harness.matrix.publish import load_history
from harness.report.html import render_html
from harness.report.json_report import document
from harness.report.matrix_report import MatrixReport, published

from conftest import find_chromium
from synthetic_results import synthetic_matrix

WIDTH, HEIGHT = 1400, 2000


def _chromium() -> Optional[str]:
    return find_chromium()


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(_chromium() is None, reason="no chromium on PATH (Debian: apt-get install -y chromium)"),
]


def _browser(profile: Path, *args: str) -> List[str]:
    """Headless, offline-minded flags: no GPU, no sync, no background fetches, a throwaway profile."""
    return [
        str(_chromium()), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", *args,
    ]


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """A failing + passing matrix report (real comparator on synthetic results) with a two-run trend."""
    tmp = tmp_path_factory.mktemp("browser")
    report = synthetic_matrix(tmp)
    history_path = tmp / "history.jsonl"
    append_line(history_path, dataclasses.replace(report, created_at="2026-11-22T15:00:00+00:00").history_line.to_json())
    append_line(history_path, report.history_line.to_json())
    target = tmp / "report.html"
    target.write_text(render_html(published(report, None, load_history(history_path))), encoding="utf-8")
    return {"html": target, "tmp": tmp}


def _png_size(path: Path) -> tuple:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_screenshot_renders(page: Dict[str, Path]) -> None:
    shot = page["tmp"] / "report.png"
    result = subprocess.run(
        _browser(page["tmp"] / "profile-shot", f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}",
                 page["html"].resolve().as_uri()),
        capture_output=True, text=True, timeout=180,
    )
    assert shot.is_file(), f"no screenshot (rc {result.returncode}): {result.stderr[-2000:]}"
    assert _png_size(shot) == (WIDTH, HEIGHT)
    assert shot.stat().st_size > 50_000, "a blank page compresses to a few kB; the report is tables, bars and plots"


def test_dom_has_tables_and_plots(page: Dict[str, Path]) -> None:
    result = subprocess.run(
        _browser(page["tmp"] / "profile-dom", "--dump-dom", page["html"].resolve().as_uri()),
        capture_output=True, text=True, timeout=180,
    )
    dom = result.stdout
    assert result.returncode == 0 and dom, result.stderr[-2000:]
    assert '<table class="overview">' in dom
    assert dom.count('<svg class="histogram"') == 4
    assert dom.count('<svg class="sparkline"') == 4
    assert dom.count("<table") >= 10
    assert 'id="cell-1-py3.11-torch2.14.0-st6.3.0"' in dom
    assert "torch 1.13.1 has no wheel for python 3.13" in dom
    # the policy, each check's limit and share used, what would pass, and what the blue bars are
    assert 'policy <code class="policy">built-in default policy</code>' in dom
    assert dom.count("<th>Limit used</th>") == 4 and dom.count('class="would-pass"') == 2
    assert dom.count('class="note order-note"') == 4 and "blue ones are reported, not judged" in dom


def test_a_long_environment_value_keeps_the_page_narrow(tmp_path: Path) -> None:
    """Issue 26: one unwrapped ``blas_runtime`` value made the page 5,000 px wide. Long values wrap (and are
    ellipsized, whole in the tooltip): at a 1,400 px window the page stays under 1,600 px."""
    report = synthetic_matrix(tmp_path)
    cell = next(c for c in report.cells if c.status.value == "fail")
    lib = {"internal_api": "openblas", "version": "0.3.27", "threading_layer": "pthreads",
           "filepath": "/opt/conda/envs/" + "x" * 400 + "/lib/python3.11/site-packages/numpy.libs/libopenblas64_p.so"}
    cell.comparison["env_changes"].append(
        {"key": "blas_runtime", "baseline": [lib] * 3, "candidate": [dict(lib, version="0.3.28")] * 3})
    report = MatrixReport.from_dict(document(report))  # a report's cells are typed when it is made
    html = render_html(report).replace("</body>", "<script>document.body.setAttribute('data-page-width', "
                                                  "document.documentElement.scrollWidth)</script></body>")
    assert "blas_runtime" in html
    target = tmp_path / "long.html"
    target.write_text(html, encoding="utf-8")
    result = subprocess.run(_browser(tmp_path / "profile-width", f"--window-size={WIDTH},{HEIGHT}", "--dump-dom",
                                     target.resolve().as_uri()), capture_output=True, text=True, timeout=180)
    found = re.search(r'data-page-width="(\d+)"', result.stdout)
    assert found, result.stderr[-2000:]
    assert int(found.group(1)) < 1600, found.group(1)


def _page_width(html: str, tmp_path: Path, name: str) -> int:
    html = html.replace("</body>", "<script>document.body.setAttribute('data-page-width', "
                                   "document.documentElement.scrollWidth)</script></body>")
    target = tmp_path / f"{name}.html"
    target.write_text(html, encoding="utf-8")
    result = subprocess.run(_browser(tmp_path / f"profile-{name}", f"--window-size={WIDTH},{HEIGHT}", "--dump-dom",
                                     target.resolve().as_uri()), capture_output=True, text=True, timeout=180)
    found = re.search(r'data-page-width="(\d+)"', result.stdout)
    assert found, result.stderr[-2000:]
    return int(found.group(1))


def test_the_accuracy_section_keeps_the_page_narrow(tmp_path: Path) -> None:
    """The fp64 accuracy lines (one per token-count bucket on one line) made the page wider than the window."""
    from harness.compare.comparator import compare_files
    from harness.report.matrix_report import build_matrix_report
    from harness.testing import add_noise_to_one, perturb_results

    from conftest import ROOT

    base = ROOT / "fixtures" / "baselines" / "tiny-cpu-float32.parquet"
    moved = perturb_results(base, tmp_path / "moved.parquet", "tiny-bi-encoder", vectors=add_noise_to_one(3, 1e-6))
    comparison = compare_files(base, moved)
    assert all(m.accuracy is not None for m in comparison.models)  # the shipped reference was found
    report = build_matrix_report("m", str(base), [{"cell_id": "c", "params": {}, "status": comparison.status.value,
                                                  "comparison": comparison.serialize()}])
    html = render_html(report)
    assert "Accuracy against fp64" in html and "by token count" in html
    assert _page_width(html, tmp_path, "accuracy") <= WIDTH
