"""Flat tables of a matrix report for notebooks and dashboards: one ``pd.read_parquet`` / ``read_csv`` each.
Report tables, not results files (``harness.results`` owns those and their schema).
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import pyarrow as pa

from harness.report.matrix_report import HistoryEntry, MatrixReport

__all__ = ["verdicts_table", "history_table", "VERDICTS_SCHEMA", "HISTORY_SCHEMA"]

VERDICTS_SCHEMA = pa.schema([
    ("matrix", pa.string()), ("created_at", pa.string()), ("policy", pa.string()), ("cell_id", pa.string()),
    ("cell_status", pa.string()), ("model_id", pa.string()), ("kind", pa.string()), ("model_status", pa.string()),
    ("tolerance_class", pa.string()), ("check", pa.string()), ("op", pa.string()), ("observed", pa.float64()),
    ("limit", pa.float64()), ("used", pa.float64()), ("passed", pa.bool_()),
    ("baseline_rmse_fp64", pa.float64()), ("candidate_rmse_fp64", pa.float64()),
])
HISTORY_SCHEMA = pa.schema([
    ("created_at", pa.string()), ("matrix", pa.string()), ("run_status", pa.string()), ("partial", pa.bool_()),
    ("cell_id", pa.string()), ("cell_status", pa.string()), ("model_id", pa.string()),
    ("max_abs_diff", pa.float64()), ("min_cosine", pa.float64()),
])


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def verdicts_table(report: MatrixReport) -> pa.Table:
    """Every check of the report as a row (a cell or model without checks: one row with an empty ``check``)."""
    rows = report.verdict_rows()
    for row in rows:
        for key in ("observed", "limit", "used"):
            row[key] = _number(row[key])
    return pa.Table.from_pylist(rows, schema=VERDICTS_SCHEMA)


def history_table(history: Sequence[HistoryEntry]) -> pa.Table:
    """The history log (``publish.load_history``) in long format: one row per run, cell and model."""
    rows: List[Dict[str, Any]] = []
    for entry in history:
        head = {"created_at": entry.created_at, "matrix": entry.matrix, "run_status": entry.status, "partial": entry.partial}
        for cell_id, cell in entry.cells.items():
            base = {**head, "cell_id": cell_id, "cell_status": cell.status}
            models = list(dict.fromkeys([*cell.max_abs_diff, *cell.min_cosine])) or [""]
            rows += [{**base, "model_id": m, "max_abs_diff": _number(cell.max_abs_diff.get(m)),
                      "min_cosine": _number(cell.min_cosine.get(m))} for m in models]
    return pa.Table.from_pylist(rows, schema=HISTORY_SCHEMA)
