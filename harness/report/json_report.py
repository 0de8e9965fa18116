"""JSON rendering of a matrix report: the complete data, for machines and for diffing two runs.

Sorted keys and a fixed indent make two reports of the same matrix diff cleanly line by line.
"""

from __future__ import annotations

import json
from typing import Any, Dict

from harness.report.matrix_report import MatrixReport

__all__ = ["render_json"]


def render_json(report: MatrixReport | Dict[str, Any]) -> str:
    """The report verbatim (a report.json as read, rendered again, is unchanged; anything not JSON-native, such
    as a ``Path``, as its ``str``)."""
    data = report.to_dict() if isinstance(report, MatrixReport) else report
    return json.dumps(data, indent=2, sort_keys=True, default=str, ensure_ascii=False) + "\n"
