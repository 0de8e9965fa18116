"""The matrix report's files, rendered in memory from one ``MatrixReport`` (``matrix_report.published``) before any
is written: every format, the flat verdict table (parquet and CSV) and, with a history, the history log's table.
``harness.matrix.publish`` writes them.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

from harness.report.html import render_html
from harness.report.json_report import render_json
from harness.report.junit import render_junit
from harness.report.markdown import render_markdown
from harness.report.matrix_report import HistoryEntry, MatrixReport
from harness.report.tables import csv_bytes, history_table, parquet_bytes, verdicts_table

__all__ = ["REPORT_FILES", "report_files"]

#: the matrix report's files in ``--out``, by the name the CLI says it wrote
REPORT_FILES: Dict[str, str] = {
    "markdown": "summary.md",
    "json": "report.json",
    "junit": "junit.xml",
    "html": "report.html",
    "verdicts": "verdicts.parquet",
    "verdicts csv": "verdicts.csv",
}


def report_files(report: MatrixReport, history: Optional[Sequence[HistoryEntry]] = None) -> Dict[str, bytes]:
    """Each file of ``REPORT_FILES`` as bytes, and ``history``'s long table (``"history"``) when given."""
    texts = {"markdown": render_markdown(report), "json": render_json(report), "junit": render_junit(report),
             "html": render_html(report)}
    table = verdicts_table(report)
    files = {**{key: text.encode("utf-8") for key, text in texts.items()},
             "verdicts": parquet_bytes(table), "verdicts csv": csv_bytes(table)}
    return files if history is None else {**files, "history": parquet_bytes(history_table(history))}
