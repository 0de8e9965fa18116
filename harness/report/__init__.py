"""Renderers: each turns ``Comparison.serialize()`` data into one output format, and does nothing else."""

from harness.report.html import render_html
from harness.report.json_report import render_json
from harness.report.junit import render_junit
from harness.report.markdown import render_markdown
from harness.report.matrix import (
    append_history,
    build_matrix_report,
    load_history,
    write_matrix_report,
)

__all__ = [
    "render_html",
    "render_json",
    "render_junit",
    "render_markdown",
    "build_matrix_report",
    "write_matrix_report",
    "append_history",
    "load_history",
]
