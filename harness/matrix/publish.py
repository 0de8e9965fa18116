"""Writing what the matrix produces: the report files, the history log, attribution pages and plans.

Every file goes through ``harness.fsio`` (renamed into place under its lock), so a reader never sees half a
report. A ``--cells`` run never replaces a whole-matrix report: it is merged into the last full one of the same
matrix, baseline and policy (``merged``), else written as the partial report it is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

from harness.fsio import atomic_output, output_lock, write_text
from harness.matrix.attribution import Waterfall
from harness.matrix.spec import MatrixError
from harness.report.attribution import render_attribution_html, render_attribution_json, render_attribution_markdown
from harness.report.html import render_html
from harness.report.json_report import render_json
from harness.report.junit import render_junit
from harness.report.markdown import render_markdown
from harness.report.matrix_report import HistoryEntry, MatrixReport, Merged, build_matrix_report
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
    "merge_into_full",
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


def write_matrix_report(
    report: MatrixReport,
    out_dir: str | os.PathLike[str],
    *,
    history: Optional[List[HistoryEntry]] = None,
) -> Dict[str, Path]:
    """Render every format from the same report and write each file atomically; the paths written, by format."""
    rendered = {
        "markdown": render_markdown(report, history=history),
        "json": render_json(report),
        "junit": render_junit(report),
        "html": render_html(report, history=history),
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


def _full_report(out_dir: Path, report: MatrixReport) -> Optional[MatrixReport] | bool:
    """The whole-matrix report already in ``out_dir`` that a ``--cells`` run of ``report`` merges into; False when
    there is none (the partial report may be written there); True when there is one it cannot merge into (another
    baseline or policy: it is kept, and the partial report goes to ``<out>/partial/``)."""
    path = out_dir / OUTPUT_FILES["json"]
    if not path.is_file():
        return False
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise MatrixError(f"{path}: not a JSON matrix report ({err}); move it away to write a new one") from None
    if not isinstance(old, dict) or old.get("partial") or not isinstance(old.get("cells"), list):
        return False
    same = [old.get("matrix"), old.get("baseline"), old.get("policy")] == [report.matrix, report.baseline, report.policy]
    return MatrixReport.from_dict(old) if same else True


def merge_into_full(full: MatrixReport, partial: MatrixReport) -> MatrixReport:
    """The full report with ``partial``'s cells replacing its own (matrix order), status recomputed, marked merged."""
    fresh = {c.cell_id: c for c in partial.cells}
    order = list(partial.matrix_cells or full.matrix_cells or [c.cell_id for c in full.cells])
    by_id = {**{c.cell_id: c for c in full.cells}, **fresh}
    cells = [by_id[i] for i in order if i in by_id] + [c for i, c in by_id.items() if i not in order]
    merged = build_matrix_report(full.matrix, full.baseline, cells, created_at=partial.created_at, matrix_cells=order)
    previous = full.merged
    merged.merge(Merged(sorted(set(previous.cells if previous else []) | set(fresh)), partial.created_at,
                        (previous.full_run_created_at if previous else "") or full.created_at))
    return merged


def publish_matrix_report(
    report: MatrixReport,
    out_dir: str | os.PathLike[str],
    history: str | os.PathLike[str] | None = None,
) -> Dict[str, Path]:
    """Append the run to ``history`` (if given) and write the report files; whatever is read is read first, so
    a corrupt log fails before anything is written."""
    past: Optional[List[HistoryEntry]] = None
    full = _full_report(Path(out_dir), report) if report.partial else False
    if full is True:
        out_dir, full = Path(out_dir) / "partial", False
    if history is not None:
        load_history(history)
        append_history(report, history)
        past = load_history(history)
        _write_table(history_table(past), Path(history).with_suffix(".parquet"))
    return write_matrix_report(merge_into_full(full, report) if isinstance(full, MatrixReport) else report, out_dir,
                               history=past)


def _kept_lines(text: str) -> str:
    """The log's complete lines; a torn last line (a run killed mid-append by an older harness) is dropped."""
    if not text or text.endswith("\n"):
        return text
    return text[: text.rfind("\n") + 1]


def append_history(report: MatrixReport, history_path: str | os.PathLike[str]) -> HistoryEntry:
    """Add one JSON line for this run: under the log's lock, read, add, rename, so concurrent runs never lose or
    interleave a line and a kill leaves the old log whole."""
    entry = report.history_entry()
    line = entry.to_json() + "\n"
    path = Path(history_path)
    with output_lock(path):
        old = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
        with atomic_output(path) as tmp:
            tmp.write_text(_kept_lines(old) + line, encoding="utf-8")
    return entry


def load_history(path: str | os.PathLike[str]) -> List[HistoryEntry]:
    """Every run in the log, oldest first; a torn last line (a killed append) is skipped, a malformed line
    elsewhere is a ``MatrixError`` naming it."""
    target = Path(path)
    if not target.is_file():
        return []
    lines = target.read_text(encoding="utf-8", errors="replace").split("\n")
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
