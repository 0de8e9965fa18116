"""JSON rendering of a matrix report: the complete data, for machines and for diffing two runs.

Sorted keys and a fixed indent make two reports of the same matrix diff cleanly line by line;
``MatrixReport.from_dict`` reads the document back.
"""

from __future__ import annotations

import json
from typing import Any, Dict

from harness.report.matrix_report import MATRIX_FORMAT_VERSION, MatrixReport

__all__ = ["document", "render_json"]


def document(report: MatrixReport) -> Dict[str, Any]:
    """The report.json document (keys in the order it has always had)."""
    out = {"format_version": MATRIX_FORMAT_VERSION, "matrix": report.matrix, "created_at": report.created_at,
           "baseline": report.baseline, "policy": report.policy, "status": report.status.value, "counts": report.counts,
           "partial": report.partial, "matrix_cells": list(report.matrix_cells),
           "cells": [c.to_dict() for c in report.cells]}
    return {**out, "merged": report.merged._asdict()} if report.merged is not None else out


def render_json(report: MatrixReport) -> str:
    """The report.json text (a report.json read by ``MatrixReport.from_dict`` and rendered again is unchanged;
    anything not JSON-native, such as a ``Path``, as its ``str``)."""
    return json.dumps(document(report), indent=2, sort_keys=True, default=str, ensure_ascii=False) + "\n"
