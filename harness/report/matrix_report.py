"""The matrix report: one JSON-able dict for a whole version matrix, the single source every format renders from.

``build_matrix_report`` assembles it from per-cell outcomes (each carrying ``Comparison.serialize()`` data or
``None``); ``history_entry`` is the compact record of one run kept in the history log, and ``history_series``
reads a trend back out of that log. The small accessors below are shared by the renderers, so that e.g. "which
agreement metric is the headline" is decided once, not once per format. Data only: writing the files (and the
log) is ``harness.matrix.publish``'s job.
"""

from __future__ import annotations

import datetime as _dt
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from harness.compare.factors import group_changes
from harness.compare.kinds.common import not_judged_note
from harness.compare.verdict import CellStatus, limit_used
from harness.report.format import fmt_percent

__all__ = [
    "MATRIX_FORMAT_VERSION",
    "build_matrix_report",
    "history_entry",
    "history_series",
    "meaningful_env_changes",
    "order_agreement",
    "order_shown",
    "comparison_notes",
    "retrieval_note",
    "diff_tolerance",
    "report_models",
    "incomplete",
    "report_policy",
    "scope_line",
    "verdict_rows",
    "VERDICT_COLUMNS",
    "check_used",
]

MATRIX_FORMAT_VERSION = 1



# -- building ---------------------------------------------------------------------------------------------------


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _normalize_cell(cell: Mapping[str, Any]) -> Dict[str, Any]:
    """Fill the optional keys so renderers never need ``.get`` defaults, and serialize a live ``Comparison``."""
    if not cell.get("cell_id"):
        raise ValueError(f"matrix cell without a cell_id: {dict(cell)!r}")
    comparison = cell.get("comparison")
    if comparison is not None and hasattr(comparison, "serialize"):
        comparison = comparison.serialize()
    return {
        "cell_id": str(cell["cell_id"]),
        "params": dict(cell.get("params") or {}),
        "status": CellStatus.parse(cell.get("status", CellStatus.ERROR)).value,
        "reason": cell.get("reason") or "",
        "setup_s": cell.get("setup_s"),
        "run_s": cell.get("run_s"),
        "compute_s": cell.get("compute_s"),  # the models' encode/predict part of run_s (the rest: imports, loads)
        "results": None if cell.get("results") is None else str(cell["results"]),
        "comparison": comparison,
    }


def build_matrix_report(
    matrix_name: str,
    baseline: str | os.PathLike[str],
    cells: Sequence[Mapping[str, Any]],
    *,
    created_at: Optional[str] = None,
    matrix_cells: Optional[Sequence[str]] = None,
) -> Dict[str, Any]:
    """The one matrix report dict: cells as given plus the overall status and per-status counts.

    ``matrix_cells``: every cell id of the matrix; a report of fewer cells (``--cells``) is ``partial``, so it
    never passes for a whole-matrix run (``harness.matrix.publish`` merges it into the last full report).
    """
    normalized = [_normalize_cell(c) for c in cells]
    ids = [c["cell_id"] for c in normalized]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate cell id(s): {', '.join(duplicates)}")
    statuses = [CellStatus(c["status"]) for c in normalized]
    return {
        "format_version": MATRIX_FORMAT_VERSION,
        "matrix": matrix_name,
        "created_at": created_at or _now(),
        "baseline": str(baseline),
        "policy": _policy_of(normalized),
        "status": CellStatus.worst(statuses).value,
        "counts": {s.value: statuses.count(s) for s in CellStatus},
        "partial": matrix_cells is not None and not set(matrix_cells) <= set(ids),
        "matrix_cells": list(matrix_cells) if matrix_cells is not None else ids,
        "cells": normalized,
    }


def _policy_of(cells: Sequence[Dict[str, Any]]) -> str:
    """The policy every comparison was judged by (``Comparison.policy``: a file, or the built-in one)."""
    sources = sorted({str(c["comparison"].get("policy")) for c in cells if c.get("comparison")})
    return "; ".join(sources) if sources else "-"


def scope_line(report: Dict[str, Any]) -> str:
    """What the report covers: the whole matrix, a ``--cells`` run, or a run merged into the last full report."""
    merged = report.get("merged")
    total = len(report.get("matrix_cells") or report["cells"])
    if merged:
        return (f"full matrix ({total} cells) from the run of {merged['full_run_created_at']}, with "
                f"{', '.join(merged['cells'])} re-run at {merged['created_at']} (--cells) and merged in")
    if report.get("partial"):
        return f"partial: {len(report['cells'])} of {total} cells (--cells); not a whole-matrix run"
    return f"full matrix ({total} cells)"


def report_policy(report: Dict[str, Any]) -> str:
    """The report's policy line (reports written before it was recorded: read from the comparisons)."""
    return str(report.get("policy") or _policy_of(report.get("cells", [])))


def check_used(check: Mapping[str, Any]) -> Optional[float]:
    """The share of a check's allowance used (``limit_used``), also for checks saved before it was recorded."""
    return limit_used(float(check["observed"]), float(check["limit"]), str(check["op"]))


#: the flat verdict table: one row per cell x model x check (a cell or model without checks: one row, check "")
VERDICT_COLUMNS = ("matrix", "created_at", "policy", "cell_id", "cell_status", "model_id", "kind", "model_status",
                   "tolerance_class", "check", "op", "observed", "limit", "used", "passed")


def verdict_rows(report: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Every check of every model of every cell as one flat record (``VERDICT_COLUMNS``), for dataframes."""
    top = {"matrix": report["matrix"], "created_at": report["created_at"], "policy": report_policy(report)}
    rows: List[Dict[str, Any]] = []
    for cell in report["cells"]:
        base = {**top, "cell_id": cell["cell_id"], "cell_status": cell["status"]}
        models = (cell.get("comparison") or {}).get("models", [])
        if not models:
            rows.append({**base, "model_id": "", "kind": "", "model_status": cell["status"], "tolerance_class": "",
                         "check": "", "op": "", "observed": None, "limit": None, "used": None, "passed": None})
        for model in models:
            head = {**base, "model_id": model["model_id"], "kind": model.get("kind", ""), "model_status": model["status"],
                    "tolerance_class": model.get("tolerance_class", "")}
            checks = model.get("checks") or [{}]
            rows += [{**head, "check": c.get("name", ""), "op": c.get("op", ""), "observed": c.get("observed"),
                      "limit": c.get("limit"), "used": check_used(c) if c else None, "passed": c.get("passed")} for c in checks]
    return rows


# -- history ----------------------------------------------------------------------------------------------------


def _history_cell(cell: Dict[str, Any]) -> Dict[str, Any]:
    models = (cell.get("comparison") or {}).get("models", [])
    return {
        "status": cell["status"],
        "max_abs_diff": {m["model_id"]: m.get("metrics", {}).get("max_abs_diff") for m in models},
        "min_cosine": {
            m["model_id"]: m["metrics"]["min_cosine"] for m in models if "min_cosine" in m.get("metrics", {})
        },
    }


def history_entry(report: Dict[str, Any]) -> Dict[str, Any]:
    """The compact per-run record kept in the history log (numbers only, no offenders or environments)."""
    return {
        "format_version": MATRIX_FORMAT_VERSION,
        "created_at": report["created_at"],
        "matrix": report["matrix"],
        "status": report["status"],
        "partial": bool(report.get("partial")),  # a --cells run: only these cells, never a whole-matrix line
        "cells": {c["cell_id"]: _history_cell(c) for c in report["cells"]},
    }


def _logged_status(value: Any) -> Optional[CellStatus]:
    """A status as the log recorded it; None for a missing or unknown word (a hand-edited or newer log)."""
    try:
        return CellStatus.parse(value)
    except ValueError:
        return None


def history_series(
    history: Sequence[Dict[str, Any]],
    matrix: str,
    cell_id: str,
    model_id: str,
    last: int = 10,
) -> List[Tuple[str, Optional[CellStatus], Optional[float]]]:
    """``(created_at, cell status, max abs diff)`` of the last ``last`` runs of one cell and model, oldest first."""
    points = []
    for entry in history:
        if entry.get("matrix") != matrix:
            continue
        cell = entry.get("cells", {}).get(cell_id)
        if cell is None:
            continue
        status = _logged_status(cell.get("status"))
        points.append((str(entry.get("created_at", "")), status, cell.get("max_abs_diff", {}).get(model_id)))
    return points[-last:] if last > 0 else points


# -- shared accessors for the renderers -------------------------------------------------------------------------


def report_models(report: Dict[str, Any]) -> List[str]:
    """Every model id in the report, in first-seen order (the overview's columns)."""
    seen: Dict[str, None] = {}
    for cell in report["cells"]:
        for model in (cell.get("comparison") or {}).get("models", []):
            seen.setdefault(model["model_id"], None)
    return list(seen)


def incomplete(cell: Dict[str, Any]) -> bool:
    """A cell without a comparison, or whose status says setup, install, the run or a model's loading went wrong
    (its reason is worth showing beside, or instead of, the model verdicts)."""
    status = CellStatus(cell["status"])
    return cell.get("comparison") is None or status is CellStatus.INCOMPATIBLE or status.unjudged


def meaningful_env_changes(changes: Sequence[Dict[str, Any]]) -> Tuple[List[Dict[str, Any]], int]:
    """The env changes that belong to a factor (``harness.compare.factors``), each with its ``group``, in group
    order; plus how many others (platform strings, paths) were left out (they stay in report.json). Hardware and
    kernel changes are a group of their own: never hidden."""
    groups, hidden = group_changes(changes)
    return [dict(c, group=group) for group, items in groups for c in items], hidden


def order_agreement(model: Dict[str, Any]) -> Tuple[str, Optional[float]]:
    """The headline rank metric and its label: top-k order for bi-encoders, tie-aware reorder rate for rerankers."""
    metrics = model.get("metrics", {})
    if "rerank_order_agreement" in metrics:  # a cross-encoder's top-k order is reported, not its headline
        return "rerank order", metrics["rerank_order_agreement"]
    if "topk_order_agreement" in metrics:
        return f"top-{metrics.get('topk', '?')} order", metrics["topk_order_agreement"]
    return "", None


def retrieval_note(model: Dict[str, Any]) -> Optional[str]:
    """Why no retrieval check ran ("retrieval not judged: no queries"), or None when it ran or does not apply."""
    why = model.get("metrics", {}).get("topk_not_judged")
    return not_judged_note(why) if why else None


def order_shown(model: Dict[str, Any]) -> str:
    """What every report's order-agreement column shows: the headline agreement and its label, or why retrieval
    was not judged (never a bare "-" that reads as "nothing to say"); "-" only for a model without either."""
    why = retrieval_note(model)
    if why:
        return why
    label, value = order_agreement(model)
    return f"{fmt_percent(value)} ({label})" if label else "-"


def comparison_notes(cell: Mapping[str, Any]) -> List[str]:
    """The notes a cell's comparison carries (``Comparison.notes``: a file compared with itself), for every report."""
    return [str(n) for n in (cell.get("comparison") or {}).get("notes", [])]


def diff_tolerance(model: Dict[str, Any]) -> Optional[float]:
    """The absolute-difference limit the model was judged by (from its element check, else its tolerance)."""
    for check in model.get("checks", []):
        if check.get("name") in ("max_abs_diff", "max_score_diff"):
            return check.get("limit")
    tolerance = model.get("tolerance", {})
    key = "score_atol" if model.get("kind") == "cross-encoder" else "atol"
    return tolerance.get(key)
