"""The matrix report: ``MatrixReport`` of ``ReportCell``s for a whole version matrix, the single source every
format renders from (``report.json`` is its ``to_dict()``).

``build_matrix_report`` assembles it from per-cell outcomes (each carrying ``Comparison.serialize()`` data or
``None``); ``MatrixReport.history_entry`` is the compact record of one run kept in the history log, and
``history_series`` reads a trend back out of that log. The report and its cells answer the renderers' questions
(scope, counts, a cell's models and notes); the functions below answer a model verdict's (which agreement metric
is the headline, why retrieval was not judged), each decided once, not once per format. Data only: writing the
files (and the log) is ``harness.matrix.publish``'s job.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from harness.compare.factors import group_changes
from harness.compare.verdict import CellStatus, ModelVerdict
from harness.report import scenario_lines
from harness.report.format import fmt_percent

__all__ = ["MATRIX_FORMAT_VERSION", "MatrixReport", "ReportCell", "VERDICT_COLUMNS", "build_matrix_report",
           "history_series", "meaningful_env_changes", "order_shown"]

MATRIX_FORMAT_VERSION = 1


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class ReportCell:
    """One cell of a matrix report: its stage outcome and, when it was judged, its comparison.

    ``comparison`` is ``Comparison.serialize()`` data, the one form every report renders a verdict from; the
    cell's own questions (its models, notes, whether it is incomplete) are answered here, once for every format.
    """

    cell_id: str
    params: Dict[str, Any] = field(default_factory=dict)
    status: CellStatus = CellStatus.ERROR
    reason: str = ""
    setup_s: Optional[float] = None
    run_s: Optional[float] = None
    compute_s: Optional[float] = None  # the models' encode/predict part of run_s (the rest: imports, loads)
    results: Optional[str] = None
    comparison: Optional[Dict[str, Any]] = None

    @classmethod
    def of(cls, cell: Mapping[str, Any] | ReportCell) -> ReportCell:
        """A cell from a record (``harness.matrix.collect``, a report.json as read; a live ``Comparison`` is
        serialized); an unknown status or a missing cell id raises ``ValueError``."""
        if isinstance(cell, ReportCell):
            return cell
        if not cell.get("cell_id"):
            raise ValueError(f"matrix cell without a cell_id: {dict(cell)!r}")
        comparison = cell.get("comparison")
        if comparison is not None and hasattr(comparison, "serialize"):
            comparison = comparison.serialize()
        return cls(cell_id=str(cell["cell_id"]), params=dict(cell.get("params") or {}),
                   status=CellStatus.parse(cell.get("status", CellStatus.ERROR)), reason=cell.get("reason") or "",
                   setup_s=cell.get("setup_s"), run_s=cell.get("run_s"), compute_s=cell.get("compute_s"),
                   results=None if cell.get("results") is None else str(cell["results"]), comparison=comparison)

    @functools.cached_property
    def models(self) -> List[ModelVerdict]:
        """The model verdicts of its comparison (none when it was not judged)."""
        return [ModelVerdict.from_dict(m) for m in (self.comparison or {}).get("models", [])]

    @property
    def notes(self) -> List[str]:
        """The notes its comparison carries (``Comparison.notes``: a file compared with itself)."""
        return [str(n) for n in (self.comparison or {}).get("notes", [])]

    @property
    def env_changes(self) -> List[Dict[str, Any]]:
        return list((self.comparison or {}).get("env_changes", []))

    @property
    def incomplete(self) -> bool:
        """No comparison, or a status saying setup, install, the run or a model's loading went wrong (its reason
        is worth showing beside, or instead of, the model verdicts)."""
        return self.comparison is None or self.status is CellStatus.INCOMPATIBLE or self.status.unjudged

    @property
    def seconds(self) -> Optional[float]:
        """Setup plus run time; None when neither was recorded."""
        times = [float(t) for t in (self.setup_s, self.run_s) if t is not None]
        return sum(times) if times else None

    def history(self) -> Dict[str, Any]:
        """Its line in the history log: status and each model's headline numbers."""
        return {"status": self.status.value,
                "max_abs_diff": {m.model_id: m.metrics.get("max_abs_diff") for m in self.models},
                "min_cosine": {m.model_id: m.metrics["min_cosine"] for m in self.models if "min_cosine" in m.metrics}}

    def to_dict(self) -> Dict[str, Any]:
        return {**dataclasses.asdict(self), "status": self.status.value}


@dataclass
class MatrixReport:
    """A whole version matrix's outcome, the single source every format renders from (``report.json`` is
    ``to_dict()``). ``partial``: fewer cells than ``matrix_cells`` (a ``--cells`` run), never a passing whole
    matrix; ``merged``: such a run merged into the last full report (``harness.matrix.publish``)."""

    matrix: str
    baseline: str
    cells: List[ReportCell]
    created_at: str = ""
    policy: str = "-"
    partial: bool = False
    matrix_cells: List[str] = field(default_factory=list)
    merged: Optional[Dict[str, Any]] = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MatrixReport:
        """A report.json as read (reports written before ``policy`` was recorded: read from the comparisons)."""
        cells = [ReportCell.of(c) for c in data["cells"]]
        return cls(matrix=str(data["matrix"]), baseline=str(data.get("baseline", "-")), cells=cells,
                   created_at=str(data.get("created_at", "")), policy=str(data.get("policy") or _policy_of(cells)),
                   partial=bool(data.get("partial")), matrix_cells=list(data.get("matrix_cells") or []),
                   merged=data.get("merged"))

    @property
    def status(self) -> CellStatus:
        return CellStatus.worst(c.status for c in self.cells)

    @property
    def counts(self) -> Dict[str, int]:
        """Cells per status, every status named."""
        return {s.value: sum(c.status is s for c in self.cells) for s in CellStatus}

    def verdicts(self) -> List[Tuple[ReportCell, ModelVerdict]]:
        """Every (cell, model verdict) pair, in report order."""
        return [(c, m) for c in self.cells for m in c.models]

    def model_ids(self) -> List[str]:
        """Every model id in the report, in first-seen order (the overview's columns)."""
        return list(dict.fromkeys(m.model_id for _, m in self.verdicts()))

    def scope(self) -> str:
        """What it covers: the whole matrix, a ``--cells`` run, or a run merged into the last full report."""
        total = len(self.matrix_cells or self.cells)
        if self.merged:
            return (f"full matrix ({total} cells) from the run of {self.merged['full_run_created_at']}, with "
                    f"{', '.join(self.merged['cells'])} re-run at {self.merged['created_at']} (--cells) and merged in")
        if self.partial:
            return f"partial: {len(self.cells)} of {total} cells (--cells); not a whole-matrix run"
        return f"full matrix ({total} cells)"

    def history_entry(self) -> Dict[str, Any]:
        """The compact per-run record kept in the history log (numbers only, no offenders or environments)."""
        return {"format_version": MATRIX_FORMAT_VERSION, "created_at": self.created_at, "matrix": self.matrix,
                "status": self.status.value, "partial": self.partial,  # a --cells run: never a whole-matrix line
                "cells": {c.cell_id: c.history() for c in self.cells}}

    def verdict_rows(self) -> List[Dict[str, Any]]:
        """Every check of every model of every cell as one flat record (``VERDICT_COLUMNS``), for dataframes."""
        top = {"matrix": self.matrix, "created_at": self.created_at, "policy": self.policy}
        rows: List[Dict[str, Any]] = []
        for cell in self.cells:
            base = {**top, "cell_id": cell.cell_id, "cell_status": cell.status.value}
            if not cell.models:
                rows.append({**base, "model_id": "", "kind": "", "model_status": cell.status.value,
                             "tolerance_class": "", "check": "", "op": "", "observed": None, "limit": None,
                             "used": None, "passed": None})
            for model in cell.models:
                head = {**base, "model_id": model.model_id, "kind": model.kind, "model_status": model.status.value,
                        "tolerance_class": model.tolerance_class}
                rows += [{**head, "check": c.name, "op": c.op, "observed": c.observed, "limit": c.limit, "used": c.used,
                          "passed": c.passed} for c in model.checks]
                rows += scenario_lines.verdict_rows(head, model)
                if not model.checks:
                    rows.append({**head, "check": "", "op": "", "observed": None, "limit": None, "used": None,
                                 "passed": None})
        return rows

    def to_dict(self) -> Dict[str, Any]:
        """The report.json document (keys in the order it has always had)."""
        out = {"format_version": MATRIX_FORMAT_VERSION, "matrix": self.matrix, "created_at": self.created_at,
               "baseline": self.baseline, "policy": self.policy, "status": self.status.value, "counts": self.counts,
               "partial": self.partial, "matrix_cells": list(self.matrix_cells),
               "cells": [c.to_dict() for c in self.cells]}
        return {**out, "merged": self.merged} if self.merged is not None else out


def build_matrix_report(
    matrix_name: str,
    baseline: str | os.PathLike[str],
    cells: Sequence[Mapping[str, Any] | ReportCell],
    *,
    created_at: Optional[str] = None,
    matrix_cells: Optional[Sequence[str]] = None,
) -> MatrixReport:
    """The matrix report of ``cells`` (records or ``ReportCell``s), with the policy they were judged by.

    ``matrix_cells``: every cell id of the matrix; a report of fewer cells (``--cells``) is ``partial``, so it
    never passes for a whole-matrix run (``harness.matrix.publish`` merges it into the last full report).
    """
    typed = [ReportCell.of(c) for c in cells]
    ids = [c.cell_id for c in typed]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate cell id(s): {', '.join(duplicates)}")
    return MatrixReport(matrix=matrix_name, baseline=str(baseline), cells=typed, created_at=created_at or _now(),
                        policy=_policy_of(typed), partial=matrix_cells is not None and not set(matrix_cells) <= set(ids),
                        matrix_cells=list(matrix_cells) if matrix_cells is not None else ids)


def _policy_of(cells: Sequence[ReportCell]) -> str:
    """The policy every comparison was judged by (``Comparison.policy``: a file, or the built-in one)."""
    sources = sorted({str(c.comparison.get("policy")) for c in cells if c.comparison})
    return "; ".join(sources) if sources else "-"


#: the flat verdict table: one row per cell x model x check (a cell or model without checks: one row, check "")
VERDICT_COLUMNS = ("matrix", "created_at", "policy", "cell_id", "cell_status", "model_id", "kind", "model_status",
                   "tolerance_class", "check", "op", "observed", "limit", "used", "passed")


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


def meaningful_env_changes(changes: Sequence[Dict[str, Any]]) -> Tuple[List[Dict[str, Any]], int]:
    """The env changes that belong to a factor (``harness.compare.factors``), each with its ``group``, in group
    order; plus how many others (platform strings, paths) were left out (they stay in report.json). Hardware and
    kernel changes are a group of their own: never hidden."""
    groups, hidden = group_changes(changes)
    return [dict(c, group=group) for group, items in groups for c in items], hidden


def order_shown(model: ModelVerdict) -> str:
    """What every report's order-agreement column shows: the headline agreement and its label, or why retrieval
    was not judged (never a bare "-" that reads as "nothing to say"); "-" only for a model without either."""
    why = model.retrieval_note()
    if why:
        return why
    label, value = model.order_agreement()
    return f"{fmt_percent(value)} ({label})" if label else "-"
