"""JSON rendering of a matrix report: the complete data, for machines and for diffing two runs.

Sorted keys and a fixed indent make two reports of the same matrix diff cleanly line by line.
"""

from __future__ import annotations

import json

from harness.report.matrix_report import MatrixReport

__all__ = ["render_json"]


def render_json(report: MatrixReport) -> str:
    """The report.json document (a report.json read by ``MatrixReport.from_dict`` and rendered again is unchanged;
    anything not JSON-native, such as a ``Path``, as its ``str``)."""
    return json.dumps(report.to_dict(), indent=2, sort_keys=True, default=str, ensure_ascii=False) + "\n"
