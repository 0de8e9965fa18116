"""Flat tables of a matrix report for notebooks and dashboards: one ``pd.read_parquet`` / ``read_csv`` each.
Report tables, not results files (``harness.results`` owns those and their schema).
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import pyarrow as pa

from harness.report.matrix_report import HistoryEntry, MatrixReport

__all__ = ["verdicts_table", "history_table", "parquet_bytes", "csv_bytes", "VERDICTS_SCHEMA", "HISTORY_SCHEMA"]

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
    """Every check of every model of every cell as a row (``VERDICTS_SCHEMA``'s columns), for dataframes: a cell or
    model without checks is one row with an empty ``check``; each retrieval scenario that ran adds its shares."""
    top = {"matrix": report.matrix, "created_at": report.created_at, "policy": report.policy}
    none = {"check": "", "op": "", "observed": None, "limit": None, "used": None, "passed": None}
    rows: List[Dict[str, Any]] = []
    for cell in report.cells:
        base = {**top, "cell_id": cell.cell_id, "cell_status": cell.status.value}
        if not cell.models:
            rows.append({**base, "model_id": "", "kind": "", "model_status": cell.status.value, "tolerance_class": "",
                         **none, "baseline_rmse_fp64": None, "candidate_rmse_fp64": None})
        for model in cell.models:
            acc = model.accuracy
            head = {**base, "model_id": model.model_id, "kind": model.kind, "model_status": model.status.value,
                    "tolerance_class": model.tolerance_class,
                    "baseline_rmse_fp64": acc.measured.baseline.rmse if acc else None,
                    "candidate_rmse_fp64": acc.measured.candidate.rmse if acc else None}
            rows += [{**head, "check": c.name, "op": c.op, "observed": _number(c.observed), "limit": _number(c.limit),
                      "used": _number(c.used), "passed": c.passed} for c in model.checks]
            found = model.scenarios
            if found is not None:  # each scenario that ran: its shares against the policy's limits, not judged
                rows += [{**head, "check": f"scenario.{s.key}.{name}", "op": ">=", "observed": value, "limit": limit,
                          "used": None, "passed": None} for s in found.items if s.same_order is not None
                         for name, value, limit in (("same_order", s.same_order, found.min_order),
                                                    ("same_set", s.same_set, found.min_set))]
            rows += [] if model.checks else [{**head, **none}]
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


def parquet_bytes(table: pa.Table) -> bytes:
    """``table`` as a parquet file's bytes (pyarrow's defaults: snappy)."""
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def csv_bytes(table: pa.Table) -> bytes:
    """``table`` as CSV with a header row."""
    import pyarrow.csv as pa_csv

    sink = pa.BufferOutputStream()
    pa_csv.write_csv(table, sink)
    return bytes(sink.getvalue().to_pybytes())
