"""Writing what the matrix produces: the four report files, the history log, attribution pages and plans.

``harness.report`` only renders text; this module decides file names and writes every file through
``harness.fsio`` (a temp file renamed into place under the file's lock), so a reader never sees half a report
and two runs writing the same file take turns. The history log is rewritten the same way on each append: read,
add one line, replace (it holds one short line per run).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

from harness.fsio import atomic_output, output_lock, write_text
from harness.matrix.spec import MatrixError
from harness.report.attribution import render_attribution_html, render_attribution_json, render_attribution_markdown
from harness.report.html import render_html
from harness.report.json_report import render_json
from harness.report.junit import render_junit
from harness.report.markdown import render_markdown
from harness.report.matrix_report import history_entry

__all__ = [
    "OUTPUT_FILES",
    "ATTRIBUTION_FILES",
    "write_matrix_report",
    "publish_matrix_report",
    "append_history",
    "load_history",
    "write_attribution",
    "write_json",
]

#: the matrix report's files in ``--out``, by format
OUTPUT_FILES: Dict[str, str] = {
    "markdown": "summary.md",
    "json": "report.json",
    "junit": "junit.xml",
    "html": "report.html",
}
#: the attribution report's files, by format
ATTRIBUTION_FILES: Dict[str, str] = {
    "markdown": "attribution.md",
    "json": "attribution.json",
    "html": "attribution.html",
}


def write_matrix_report(
    report: Dict[str, Any],
    out_dir: "str | os.PathLike[str]",
    *,
    history: Optional[List[Dict[str, Any]]] = None,
) -> Dict[str, Path]:
    """Render every format from the same dict and write each file atomically; the paths written, by format."""
    rendered = {
        "markdown": render_markdown(report, history=history),
        "json": render_json(report),
        "junit": render_junit(report),
        "html": render_html(report, history=history),
    }
    return {name: write_text(Path(out_dir) / OUTPUT_FILES[name], text) for name, text in rendered.items()}


def publish_matrix_report(
    report: Dict[str, Any],
    out_dir: "str | os.PathLike[str]",
    history: "str | os.PathLike[str] | None" = None,
) -> Dict[str, Path]:
    """Append the run to ``history`` (if given; the trend then includes it) and write the report files.

    The log is read first, so a corrupt one fails before anything is written.
    """
    past: Optional[List[Dict[str, Any]]] = None
    if history is not None:
        load_history(history)
        append_history(report, history)
        past = load_history(history)
    return write_matrix_report(report, out_dir, history=past)


def _kept_lines(text: str) -> str:
    """The log's complete lines; a torn last line (a run killed mid-append by an older harness) is dropped."""
    if not text or text.endswith("\n"):
        return text
    return text[: text.rfind("\n") + 1]


def append_history(report: Dict[str, Any], history_path: "str | os.PathLike[str]") -> Dict[str, Any]:
    """Add one JSON line for this run: under the log's lock, read it, write it back with the line added, rename.

    Concurrent runs take turns, so lines never interleave and none is lost; a kill leaves the old log whole.
    """
    entry = history_entry(report)
    line = json.dumps(entry, sort_keys=True, default=str) + "\n"
    path = Path(history_path)
    with output_lock(path):
        old = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
        with atomic_output(path) as tmp:
            tmp.write_text(_kept_lines(old) + line, encoding="utf-8")
    return entry


def load_history(path: "str | os.PathLike[str]") -> List[Dict[str, Any]]:
    """Every run in the log, oldest first; a missing file is an empty history.

    A torn last line (a run killed mid-append, without its newline) is skipped; a malformed line anywhere else
    means the log was edited or corrupted: a ``MatrixError`` naming the line.
    """
    target = Path(path)
    if not target.is_file():
        return []
    lines = target.read_text(encoding="utf-8", errors="replace").split("\n")
    entries: List[Dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError as err:
            if number == len(lines):  # no trailing newline: an interrupted append
                break
            raise MatrixError(f"{target}:{number}: not a JSON history line ({err})") from None
        if not isinstance(entry, dict):
            raise MatrixError(f"{target}:{number}: not a history record (a JSON object)")
        entries.append(entry)
    return entries


def write_attribution(data: Dict[str, Any], out_dir: "str | os.PathLike[str]") -> Dict[str, Path]:
    """Write the attribution waterfall as Markdown, JSON and HTML; the paths written, by format."""
    rendered = {
        "markdown": render_attribution_markdown(data),
        "json": render_attribution_json(data),
        "html": render_attribution_html(data),
    }
    return {name: write_text(Path(out_dir) / ATTRIBUTION_FILES[name], text) for name, text in rendered.items()}


def write_json(path: "str | os.PathLike[str]", data: Any) -> Path:
    """A JSON file (an attribution plan), indented, atomically."""
    return write_text(path, json.dumps(data, indent=2, default=str) + "\n")
