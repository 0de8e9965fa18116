"""Writing what the matrix produces: the report files, the history log, attribution pages and plans.

Every file goes through ``harness.fsio`` (renamed into place under its lock), so a reader never sees half a
report. A ``--cells`` run never replaces a whole-matrix report: it is merged into the last full one of the same
matrix, baseline and policy (``merged``), else written as the partial report it is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from harness import jsontext
from harness.fsio import append_line, write_bytes, write_text
from harness.matrix.attribution import Waterfall
from harness.matrix.spec import MatrixError
from harness.report.attribution import render_attribution_html, render_attribution_json, render_attribution_markdown
from harness.report.files import REPORT_FILES, report_files
from harness.report.matrix_report import HistoryEntry, MatrixReport, published

__all__ = [
    "REPORT_FILES",
    "ATTRIBUTION_FILES",
    "publish_matrix_report",
    "history_table_path",
    "load_history",
    "write_attribution",
    "write_json",
]

#: the attribution report's files, by format
ATTRIBUTION_FILES: Dict[str, str] = {
    "markdown": "attribution.md",
    "json": "attribution.json",
    "html": "attribution.html",
}


def _previous(out_dir: Path, report: MatrixReport) -> Tuple[Path, Optional[MatrixReport]]:
    """Where ``report`` is written, and the whole-matrix report there that a ``--cells`` run merges into (None: a
    whole run, or nothing to merge into). One of another baseline or policy is kept: the run goes to ``<out>/partial/``."""
    path = out_dir / REPORT_FILES["json"]
    if not report.partial or not path.is_file():
        return out_dir, None
    try:
        old = jsontext.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise MatrixError(f"{path}: not a JSON matrix report ({err}); move it away to write a new one") from None
    if not isinstance(old, dict) or old.get("partial") or not isinstance(old.get("cells"), list):
        return out_dir, None
    same = [old.get("matrix"), old.get("baseline"), old.get("policy")] == [report.matrix, report.baseline, report.policy]
    return (out_dir, MatrixReport.from_dict(old)) if same else (out_dir / "partial", None)


def publish_matrix_report(
    report: MatrixReport,
    out_dir: str | os.PathLike[str],
    history: str | os.PathLike[str] | None = None,
) -> Dict[str, Path]:
    """Read what is there (the last full report a ``--cells`` run merges into, the history log: a corrupt one fails
    before anything is written), build the report once, render every file, write them, then add the run's line to
    the log; the paths written, by name (``REPORT_FILES``'s, and ``history``: the log's table beside it)."""
    out, full = _previous(Path(out_dir), report)
    log = None if history is None else [*load_history(history), report.history_line]
    paths = {key: out / name for key, name in REPORT_FILES.items()}
    if history is not None:
        paths["history"] = history_table_path(history)
    built = published(report, full, log or [])
    files = report_files(built, log)
    written = {key: write_bytes(paths[key], data) for key, data in files.items()}
    if history is not None:
        append_line(history, report.history_line.to_json())
    return written


def history_table_path(history: str | os.PathLike[str]) -> Path:
    """Where the history log's long table is written: beside the log, ``.parquet`` for its suffix."""
    return Path(history).with_suffix(".parquet")


def load_history(path: str | os.PathLike[str]) -> List[HistoryEntry]:
    """Every run in the log, oldest first; a torn last line (a killed append) is skipped, a malformed line
    elsewhere is a ``MatrixError`` naming it."""
    target = Path(path)
    return _entries(target.read_text(encoding="utf-8", errors="replace"), target) if target.is_file() else []


def _entries(text: str, target: Path) -> List[HistoryEntry]:
    lines = text.split("\n")
    entries: List[HistoryEntry] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entries.append(HistoryEntry.from_json(line))
        except json.JSONDecodeError as err:
            if number == len(lines):  # no trailing newline: an interrupted append
                break
            raise MatrixError(f"{target}:{number}: not a JSON history line ({err})") from None
        except ValueError as err:
            raise MatrixError(f"{target}:{number}: {err}") from None
    return entries


def write_attribution(data: Waterfall, out_dir: str | os.PathLike[str]) -> Dict[str, Path]:
    """Write the attribution waterfall as Markdown, JSON and HTML; the paths written, by format."""
    rendered = {
        "markdown": render_attribution_markdown(data),
        "json": render_attribution_json(data),
        "html": render_attribution_html(data),
    }
    return {name: write_text(Path(out_dir) / ATTRIBUTION_FILES[name], text) for name, text in rendered.items()}


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """A JSON file (an attribution plan), indented, atomically."""
    return write_text(path, json.dumps(data, indent=2, default=str) + "\n")
