"""Renderers: each turns a ``Comparison`` (or the ``MatrixReport`` built from comparisons) into one output
format, and does nothing else; writing the files is the caller's job (``harness.matrix.publish``, the CLI)."""

from harness.report.html import render_html
from harness.report.json_report import render_json
from harness.report.junit import render_junit
from harness.report.markdown import render_markdown
from harness.report.matrix_report import build_matrix_report

__all__ = [
    "render_html",
    "render_json",
    "render_junit",
    "render_markdown",
    "build_matrix_report",
]
