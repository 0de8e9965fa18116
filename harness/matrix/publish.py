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

from harness.fsio import atomic_output, output_lock, write_text
from harness.matrix.attribution import Waterfall
from harness.matrix.spec import MatrixError
from harness.report.attribution import render_attribution_html, render_attribution_json, render_attribution_markdown
from harness.report.html import render_html
from harness.report.json_report import render_json
from harness.report.junit import render_junit
from harness.report.markdown import render_markdown
from harness.report.matrix_report import HistoryEntry, MatrixReport, published
from harness.report.tables import history_table, verdicts_table

__all__ = [
    "OUTPUT_FILES",
    "ATTRIBUTION_FILES",
    "write_matrix_report",
    "publish_matrix_report",
    "append_history",
    "load_history",
    "write_attribution",
    "write_json",
    "TABLE_FILES",
]

#: the matrix report's files in ``--out``, by format
OUTPUT_FILES: Dict[str, str] = {
    "markdown": "summary.md",
    "json": "report.json",
    "junit": "junit.xml",
    "html": "report.html",
}
#: the flat verdict table beside the report (one row per cell x model x check), by format
TABLE_FILES: Dict[str, str] = {"parquet": "verdicts.parquet", "csv": "verdicts.csv"}
#: the attribution report's files, by format
ATTRIBUTION_FILES: Dict[str, str] = {
    "markdown": "attribution.md",
    "json": "attribution.json",
    "html": "attribution.html",
}


def write_matrix_report(report: MatrixReport, out_dir: str | os.PathLike[str]) -> Dict[str, Path]:
    """Render every format from the same report and write each file atomically; the paths written, by format."""
    rendered = {
        "markdown": render_markdown(report),
        "json": render_json(report),
        "junit": render_junit(report),
        "html": render_html(report),
    }
    written = {name: write_text(Path(out_dir) / OUTPUT_FILES[name], text) for name, text in rendered.items()}
    return {**written, **_write_table(verdicts_table(report), Path(out_dir) / TABLE_FILES["parquet"], csv=True)}


def _write_table(table: Any, path: Path, *, csv: bool = False) -> Dict[str, Path]:
    """A report table as parquet (and CSV beside it), each written atomically."""
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    written: Dict[str, Path] = {}
    with atomic_output(path) as tmp:
        pq.write_table(table, str(tmp))
    written[path.stem] = path
    if csv:
        with atomic_output(path.with_suffix(".csv")) as tmp:
            pa_csv.write_csv(table, str(tmp))
        written[f"{path.stem} csv"] = path.with_suffix(".csv")
    return written


def _previous(out_dir: Path, report: MatrixReport) -> Tuple[Path, Optional[MatrixReport]]:
    """Where ``report`` is written, and the whole-matrix report there that a ``--cells`` run merges into (None: a
    whole run, or nothing to merge into). One of another baseline or policy is kept: the run goes to ``<out>/partial/``."""
    path = out_dir / OUTPUT_FILES["json"]
    if not report.partial or not path.is_file():
        return out_dir, None
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
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
    before anything is written), build the report once, write its files, then add the run's line to the log."""
    out, full = _previous(Path(out_dir), report)
    log = [] if history is None else [*load_history(history), report.history_line]
    written = write_matrix_report(published(report, full, log), out)
    if history is not None:
        _write_table(history_table(append_history(report, history)), Path(history).with_suffix(".parquet"))
    return written


def _kept_lines(text: str) -> str:
    """The log's complete lines; a torn last line (a run killed mid-append by an older harness) is dropped."""
    if not text or text.endswith("\n"):
        return text
    return text[: text.rfind("\n") + 1]


def append_history(report: MatrixReport, history_path: str | os.PathLike[str]) -> List[HistoryEntry]:
    """Add the run's JSON line (``report.history_line``) under the log's lock: read, add, rename, so concurrent runs
    never lose or interleave a line and a kill leaves the old log whole; the log as it now stands."""
    path = Path(history_path)
    with output_lock(path):
        old = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
        entries = _entries(old, path)
        with atomic_output(path) as tmp:
            tmp.write_text(_kept_lines(old) + report.history_line.to_json() + "\n", encoding="utf-8")
    return [*entries, report.history_line]


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
