"""The matrix report: ``MatrixReport`` of ``ReportCell``s, the single source every format renders from
(``report.json`` is its ``to_dict()``), with what renderers read computed once. Data only: writing the files
is ``harness.matrix.publish``'s job.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from harness import jsontext
from harness.explain import group_changes
from harness.report import accuracy_lines, scenario_lines
from harness.report.format import fmt_seconds
from harness.report.text import topk_decided
from harness.verdict import CellStatus, EnvChange, ModelVerdict

__all__ = ["MATRIX_FORMAT_VERSION", "CellTimes", "HistoryCell", "HistoryEntry", "MatrixReport", "Merged", "ModelWords",
           "ReportCell", "TREND_RUNS", "TrendRow", "build_matrix_report", "history_series", "published"]

MATRIX_FORMAT_VERSION = 1
#: how many past runs the trend sections show per cell and model
TREND_RUNS = 10


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class TrendRow(NamedTuple):
    """One cell and model's last runs in the history log: ``(created_at, cell status, max abs diff)``, oldest first."""

    cell_id: str
    model_id: str
    points: List[Tuple[str, Optional[CellStatus], Optional[float]]]


class Merged(NamedTuple):
    """A ``--cells`` run merged into the last full report: the cells re-run (all merged runs'), when, and when the
    full run it was merged into ran."""

    cells: List[str]
    created_at: str
    full_run_created_at: str

    @classmethod
    def of(cls, data: Optional[Mapping[str, Any]]) -> Optional[Merged]:
        """``merged`` of a report.json as read (None: not a merged report)."""
        return cls(list(data["cells"]), str(data["created_at"]), str(data["full_run_created_at"])) if data else None


def _numbers(value: object) -> Dict[str, Optional[float]]:
    """A history table of numbers by model id; anything else in it (a hand-edited log) reads as no number."""
    items = value.items() if isinstance(value, dict) else ()
    return {str(k): v if isinstance(v, (int, float)) and not isinstance(v, bool) else None for k, v in items}


class HistoryCell(NamedTuple):
    """One cell of one run in the history log: its status word and each model's headline numbers."""

    status: str
    max_abs_diff: Dict[str, Optional[float]]
    min_cosine: Dict[str, Optional[float]]


class HistoryEntry(NamedTuple):
    """One run's line in the history log (numbers only, no offenders or environments). Read leniently: missing
    keys are empty, a wrong-typed table is a ``ValueError`` (``publish.load_history`` names the line)."""

    created_at: str
    matrix: str
    status: str
    partial: bool  # a --cells run: never a whole-matrix line
    cells: Dict[str, HistoryCell]

    @classmethod
    def from_json(cls, line: str) -> HistoryEntry:
        data = jsontext.loads(line)
        cells = data.get("cells") or {} if isinstance(data, dict) else None
        if not isinstance(cells, dict) or not all(isinstance(c, dict) for c in cells.values()):
            raise ValueError("not a history record (a JSON object with a table of cells)")
        return cls(str(data.get("created_at", "")), str(data.get("matrix", "")), str(data.get("status", "")),
                   bool(data.get("partial")), {str(k): HistoryCell(str(c.get("status", "")), _numbers(c.get("max_abs_diff")),
                                                                    _numbers(c.get("min_cosine"))) for k, c in cells.items()})

    def to_json(self) -> str:
        """The log line (keys sorted, as it has always been written)."""
        out = {**self._asdict(), "cells": {k: c._asdict() for k, c in self.cells.items()}}
        return json.dumps({**out, "format_version": MATRIX_FORMAT_VERSION}, sort_keys=True, default=str)


_STATUS_WORDS = {s.value for s in CellStatus}
#: the comparison's data a cell keeps as it was read (report.json holds it verbatim); the rest is typed below
_STORED = ("cell_id", "params", "status", "reason", "setup_s", "run_s", "compute_s", "results", "comparison")


class ModelWords(NamedTuple):
    """What every format says of one model in the same words: how its top-k was decided (``text.topk_decided``; ""
    when no certificate proved any of it) and its accuracy against fp64 (``accuracy_lines.lines``)."""

    decided: str
    accuracy: List[str]


class CellTimes(NamedTuple):
    """A cell's times as every format shows them (``format.fmt_seconds``: "12.3 s", "-" when unknown): setup, run,
    the models' compute part of the run (None: not recorded), setup plus run."""

    setup: str
    run: str
    compute: Optional[str]
    total: str


@dataclass
class ReportCell:
    """One cell of a matrix report: its stage outcome and, when it was judged, its comparison (``serialize()``
    data, as report.json holds it), typed once here so no format asks again."""

    cell_id: str
    params: Dict[str, Any] = field(default_factory=dict)
    status: CellStatus = CellStatus.ERROR
    reason: str = ""
    setup_s: Optional[float] = None
    run_s: Optional[float] = None
    compute_s: Optional[float] = None  # the models' encode/predict part of run_s (the rest: imports, loads)
    results: Optional[str] = None
    comparison: Optional[Dict[str, Any]] = None
    models: List[ModelVerdict] = field(init=False, repr=False, compare=False)
    notes: List[str] = field(init=False, repr=False, compare=False)
    env_changes: List[EnvChange] = field(init=False, repr=False, compare=False)
    #: the env changes that belong to a factor (``harness.explain``) with their group, in group order;
    #: ``env_hidden`` counts the others (platform strings, paths: they stay in report.json)
    env_shown: List[Tuple[str, EnvChange]] = field(init=False, repr=False, compare=False)
    env_hidden: int = field(init=False, repr=False, compare=False)
    #: no comparison, or a status saying setup, install, the run or a model's loading went wrong
    incomplete: bool = field(init=False, repr=False, compare=False)
    #: setup plus run time; None when neither was recorded
    seconds: Optional[float] = field(init=False, repr=False, compare=False)
    #: "must I re-embed?": the overview row of each model whose retrieval scenarios ran
    scenarios: List[scenario_lines.ScenarioRow] = field(init=False, repr=False, compare=False)
    #: each model's words every format shares, by model id, and the cell's times as shown
    words: Dict[str, ModelWords] = field(init=False, repr=False, compare=False)
    times: CellTimes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        data = self.comparison or {}
        self.models = [ModelVerdict.from_dict(m) for m in data.get("models", [])]
        self.notes = [str(n) for n in data.get("notes", [])]
        self.env_changes = [EnvChange(c["key"], c.get("baseline"), c.get("candidate")) for c in data.get("env_changes", [])]
        groups, self.env_hidden = group_changes(self.env_changes)
        self.env_shown = [(group, change) for group, items in groups for change in items]
        self.incomplete = self.comparison is None or self.status is CellStatus.INCOMPATIBLE or self.status.unjudged
        times = [float(t) for t in (self.setup_s, self.run_s) if t is not None]
        self.seconds = sum(times) if times else None
        self.scenarios = scenario_lines.rows(self.models)
        self.words = {m.model_id: ModelWords(topk_decided(m), accuracy_lines.lines(m)) for m in self.models}
        self.times = CellTimes(fmt_seconds(self.setup_s), fmt_seconds(self.run_s),
                               None if self.compute_s is None else fmt_seconds(self.compute_s), fmt_seconds(self.seconds))

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

    def to_dict(self) -> Dict[str, Any]:
        return {**copy.deepcopy({k: getattr(self, k) for k in _STORED}), "status": self.status.value}


@dataclass
class MatrixReport:
    """A whole version matrix's outcome. ``partial``: fewer cells than ``matrix_cells`` (a ``--cells`` run),
    never a passing whole matrix; ``merged``: such a run merged into the last full report (``published``);
    ``trend``: its cells' last runs in the history log, read when it was built (empty: no log)."""

    matrix: str
    baseline: str
    cells: List[ReportCell]
    created_at: str = ""
    policy: str = "-"
    partial: bool = False
    matrix_cells: List[str] = field(default_factory=list)
    merged: Optional[Merged] = None
    trend: List[TrendRow] = field(default_factory=list, repr=False, compare=False)
    status: CellStatus = field(init=False, repr=False, compare=False)
    #: cells per status, every status named
    counts: Dict[str, int] = field(init=False, repr=False, compare=False)
    #: every (cell, model verdict) pair, in report order
    verdicts: List[Tuple[ReportCell, ModelVerdict]] = field(init=False, repr=False, compare=False)
    #: every model id in the report, in first-seen order (the overview's columns)
    model_ids: List[str] = field(init=False, repr=False, compare=False)
    #: what it covers: the whole matrix, a ``--cells`` run, or a run merged into the last full report
    scope: str = field(init=False, repr=False, compare=False)
    #: this run's line in the history log: per cell its status and each model's headline numbers
    history_line: HistoryEntry = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.status = CellStatus.worst(c.status for c in self.cells)
        self.counts = {s.value: sum(c.status is s for c in self.cells) for s in CellStatus}
        self.verdicts = [(c, m) for c in self.cells for m in c.models]
        self.model_ids = list(dict.fromkeys(m.model_id for _, m in self.verdicts))
        total, merged = len(self.matrix_cells or self.cells), self.merged
        if merged:
            self.scope = (f"full matrix ({total} cells) from the run of {merged.full_run_created_at}, with "
                          f"{', '.join(merged.cells)} re-run at {merged.created_at} (--cells) and merged in")
        elif self.partial:
            self.scope = f"partial: {len(self.cells)} of {total} cells (--cells); not a whole-matrix run"
        else:
            self.scope = f"full matrix ({total} cells)"
        self.history_line = HistoryEntry(self.created_at, self.matrix, self.status.value, self.partial, {
            c.cell_id: HistoryCell(c.status.value, {m.model_id: m.metrics.max_abs_diff for m in c.models},
                                   {m.model_id: m.metrics.min_cosine for m in c.models if m.metrics.min_cosine is not None})
            for c in self.cells})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MatrixReport:
        """A report.json as read (reports written before ``policy`` was recorded: read from the comparisons)."""
        cells = [ReportCell.of(c) for c in data["cells"]]
        return cls(matrix=str(data["matrix"]), baseline=str(data.get("baseline", "-")), cells=cells,
                   created_at=str(data.get("created_at", "")), policy=str(data.get("policy") or _policy_of(cells)),
                   partial=bool(data.get("partial")), matrix_cells=list(data.get("matrix_cells") or []),
                   merged=Merged.of(data.get("merged")))


def build_matrix_report(
    matrix_name: str,
    baseline: str | os.PathLike[str],
    cells: Sequence[Mapping[str, Any] | ReportCell],
    *,
    created_at: Optional[str] = None,
    matrix_cells: Optional[Sequence[str]] = None,
    merged: Optional[Merged] = None,
    history: Sequence[HistoryEntry] = (),
) -> MatrixReport:
    """The matrix report of ``cells`` (records or ``ReportCell``s), with the policy they were judged by and their
    trend over ``history`` (the log as read, this run's line included); fewer cells than ``matrix_cells`` make it
    ``partial``."""
    typed = [ReportCell.of(c) for c in cells]
    ids = [c.cell_id for c in typed]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate cell id(s): {', '.join(duplicates)}")
    rows = [TrendRow(c.cell_id, m.model_id, history_series(history, matrix_name, c.cell_id, m.model_id, TREND_RUNS))
            for c in typed for m in c.models]
    return MatrixReport(matrix=matrix_name, baseline=str(baseline), cells=typed, created_at=created_at or _now(),
                        policy=_policy_of(typed), partial=matrix_cells is not None and not set(matrix_cells) <= set(ids),
                        matrix_cells=list(matrix_cells) if matrix_cells is not None else ids, merged=merged,
                        trend=[row for row in rows if row.points])


def published(run: MatrixReport, full: Optional[MatrixReport], history: Sequence[HistoryEntry] = ()) -> MatrixReport:
    """The report as it is written, with its trend over ``history``: ``run``, or for a ``--cells`` run ``full`` (the
    last whole-matrix report) with the run's cells replacing its own (matrix order, status recomputed, marked merged)."""
    base, cells, order, merged = full or run, run.cells, run.matrix_cells, run.merged
    if full is not None:
        fresh = {c.cell_id: c for c in run.cells}
        order = list(run.matrix_cells or full.matrix_cells or [c.cell_id for c in full.cells])
        by_id = {**{c.cell_id: c for c in full.cells}, **fresh}
        cells = [by_id[i] for i in order if i in by_id] + [c for i, c in by_id.items() if i not in order]
        previous = full.merged
        merged = Merged(sorted(set(previous.cells if previous else []) | set(fresh)), run.created_at,
                        (previous.full_run_created_at if previous else "") or full.created_at)
    return build_matrix_report(base.matrix, base.baseline, cells, created_at=run.created_at,
                               matrix_cells=order or None, merged=merged, history=history)


def _policy_of(cells: Sequence[ReportCell]) -> str:
    """The policy every comparison was judged by (``Comparison.policy``: a file, or the built-in one)."""
    sources = sorted({str(c.comparison.get("policy")) for c in cells if c.comparison})
    return "; ".join(sources) if sources else "-"


def history_series(history: Sequence[HistoryEntry], matrix: str, cell_id: str, model_id: str,
                   last: int = 10) -> List[Tuple[str, Optional[CellStatus], Optional[float]]]:
    """``(created_at, cell status, max abs diff)`` of the last ``last`` runs of one cell and model, oldest first (a
    missing or unknown status word, from a hand-edited or newer log: no status)."""
    points = [(e.created_at, CellStatus(c.status) if c.status in _STATUS_WORDS else None, c.max_abs_diff.get(model_id))
              for e in history if e.matrix == matrix for c in [e.cells.get(cell_id)] if c is not None]
    return points[-last:] if last > 0 else points
