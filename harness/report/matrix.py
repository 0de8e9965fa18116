"""The matrix report: one JSON-able dict for a whole version matrix, the single source every format renders from.

``build_matrix_report`` assembles it from per-cell outcomes (each carrying ``Comparison.serialize()`` data or
``None``), ``write_matrix_report`` renders all four formats from that one dict, and ``append_history`` /
``load_history`` keep a JSONL log of past runs for the trend sections. The small accessors below are shared by
the renderers, so that e.g. "which agreement metric is the headline" is decided once, not once per format.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from harness.report.format import fmt_cosine, fmt_percent
from harness.fsio import atomic_output

__all__ = [
    "MATRIX_FORMAT_VERSION",
    "CELL_STATUSES",
    "NOT_RUN_STATUSES",
    "ENV_KEY_PATTERNS",
    "build_matrix_report",
    "write_matrix_report",
    "append_history",
    "history_entry",
    "load_history",
    "worst_status",
    "meaningful_env_changes",
    "order_agreement",
    "diff_tolerance",
    "fmt_cosine",
    "fmt_percent",
    "history_series",
    "report_models",
    "OUTPUT_FILES",
]

MATRIX_FORMAT_VERSION = 1

#: every cell status, best first; the overall status is the worst one present
CELL_STATUSES: Tuple[str, ...] = ("pass", "incompatible", "fail", "run-failed", "install-failed", "error")
#: run-failed, install-failed and error are equally bad: none of them produced a trustworthy comparison
_SEVERITY = {"pass": 0, "incompatible": 1, "fail": 2, "run-failed": 3, "install-failed": 3, "error": 3}
#: statuses whose cells normally have no comparison to show
NOT_RUN_STATUSES: Tuple[str, ...] = ("incompatible", "install-failed", "run-failed", "error")

#: fingerprint keys that plausibly move the numbers; the rest (platform strings, cpu_count, ...) is noise in a report
ENV_KEY_PATTERNS: Tuple[str, ...] = (
    "python",
    "packages.*",
    "torch_version",
    "device*",
    "dtype",
    "tf32*",
    "float32_matmul_precision",
    "num_threads",
    "gpu_name",
    "cpu_model",
    "models.*.loaded_dtype",
    "models.*.attn_implementation",
    "models.*.weights_sha256",
)

OUTPUT_FILES: Dict[str, str] = {
    "markdown": "summary.md",
    "json": "report.json",
    "junit": "junit.xml",
    "html": "report.html",
}


# -- building ---------------------------------------------------------------------------------------------------


def worst_status(statuses: Iterable[str]) -> str:
    """Worst cell status (pass < incompatible < fail < run/install failures, error); ``pass`` for none."""
    known = list(statuses)
    for status in known:
        if status not in _SEVERITY:
            raise ValueError(f"unknown cell status {status!r} (known: {', '.join(CELL_STATUSES)})")
    return max(known, key=lambda s: (_SEVERITY[s], CELL_STATUSES.index(s)), default="pass")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _normalize_cell(cell: Mapping[str, Any]) -> Dict[str, Any]:
    """Fill the optional keys so renderers never need ``.get`` defaults, and serialize a live ``Comparison``."""
    if not cell.get("cell_id"):
        raise ValueError(f"matrix cell without a cell_id: {dict(cell)!r}")
    comparison = cell.get("comparison")
    if comparison is not None and hasattr(comparison, "serialize"):
        comparison = comparison.serialize()
    out = {
        "cell_id": str(cell["cell_id"]),
        "params": dict(cell.get("params") or {}),
        "status": cell.get("status", "error"),
        "reason": cell.get("reason") or "",
        "setup_s": cell.get("setup_s"),
        "run_s": cell.get("run_s"),
        "results": None if cell.get("results") is None else str(cell["results"]),
        "comparison": comparison,
    }
    worst_status([out["status"]])  # validates
    return out


def build_matrix_report(
    matrix_name: str,
    baseline: "str | os.PathLike[str]",
    cells: Sequence[Mapping[str, Any]],
    *,
    created_at: Optional[str] = None,
) -> Dict[str, Any]:
    """The one matrix report dict: cells as given plus the overall status and per-status counts."""
    normalized = [_normalize_cell(c) for c in cells]
    ids = [c["cell_id"] for c in normalized]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate cell id(s): {', '.join(duplicates)}")
    statuses = [c["status"] for c in normalized]
    return {
        "format_version": MATRIX_FORMAT_VERSION,
        "matrix": matrix_name,
        "created_at": created_at or _now(),
        "baseline": str(baseline),
        "status": worst_status(statuses),
        "counts": {s: statuses.count(s) for s in CELL_STATUSES},
        "cells": normalized,
    }


def write_matrix_report(
    report: Dict[str, Any],
    out_dir: "str | os.PathLike[str]",
    *,
    history: Optional[List[Dict[str, Any]]] = None,
) -> Dict[str, Path]:
    """Render every format from the same dict and write each file atomically (no half-written report)."""
    from harness.report.html import render_html
    from harness.report.json_report import render_json
    from harness.report.junit import render_junit
    from harness.report.markdown import render_markdown

    rendered = {
        "markdown": render_markdown(report, history=history),
        "json": render_json(report),
        "junit": render_junit(report),
        "html": render_html(report, history=history),
    }
    paths: Dict[str, Path] = {}
    for fmt_name, text in rendered.items():
        target = Path(out_dir) / OUTPUT_FILES[fmt_name]
        with atomic_output(target) as tmp:
            tmp.write_text(text, encoding="utf-8")
        paths[fmt_name] = target
    return paths


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
        "cells": {c["cell_id"]: _history_cell(c) for c in report["cells"]},
    }


def append_history(report: Dict[str, Any], history_path: "str | os.PathLike[str]") -> Dict[str, Any]:
    """Append one JSON line with a single ``write`` (O_APPEND), then fsync, so concurrent runs never interleave."""
    entry = history_entry(report)
    line = (json.dumps(entry, sort_keys=True, default=str) + "\n").encode("utf-8")
    path = Path(history_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"{path}: short write appending history ({written} of {len(line)} bytes)")
        os.fsync(fd)
    finally:
        os.close(fd)
    return entry


def load_history(path: "str | os.PathLike[str]") -> List[Dict[str, Any]]:
    """Every run in the log, oldest first; a missing file is an empty history.

    A torn last line (a run killed mid-append, without its newline) is skipped; a malformed line anywhere else
    means the log was edited or corrupted and raises, naming the line.
    """
    target = Path(path)
    if not target.is_file():
        return []
    text = target.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    entries: List[Dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except ValueError as err:
            if number == len(lines):  # no trailing newline: an interrupted append
                break
            raise ValueError(f"{target}:{number}: not a JSON history line ({err})") from None
    return entries


def history_series(
    history: Sequence[Dict[str, Any]],
    matrix: str,
    cell_id: str,
    model_id: str,
    last: int = 10,
) -> List[Tuple[str, str, Optional[float]]]:
    """``(created_at, cell status, max abs diff)`` of the last ``last`` runs of one cell and model, oldest first."""
    points = []
    for entry in history:
        if entry.get("matrix") != matrix:
            continue
        cell = entry.get("cells", {}).get(cell_id)
        if cell is None:
            continue
        points.append((str(entry.get("created_at", "")), cell.get("status", "?"), cell.get("max_abs_diff", {}).get(model_id)))
    return points[-last:] if last > 0 else points


# -- shared accessors for the renderers -------------------------------------------------------------------------


def report_models(report: Dict[str, Any]) -> List[str]:
    """Every model id in the report, in first-seen order (the overview's columns)."""
    seen: Dict[str, None] = {}
    for cell in report["cells"]:
        for model in (cell.get("comparison") or {}).get("models", []):
            seen.setdefault(model["model_id"], None)
    return list(seen)


def meaningful_env_changes(changes: Sequence[Dict[str, Any]]) -> Tuple[List[Dict[str, Any]], int]:
    """The env changes that can move numbers, plus how many others were left out (they stay in report.json)."""
    kept = [c for c in changes if any(fnmatch.fnmatchcase(c["key"], p) for p in ENV_KEY_PATTERNS)]
    return kept, len(changes) - len(kept)


def order_agreement(model: Dict[str, Any]) -> Tuple[str, Optional[float]]:
    """The headline rank metric and its label: top-k order for bi-encoders, tie-aware reorder rate for rerankers."""
    metrics = model.get("metrics", {})
    if "topk_order_agreement" in metrics:
        return f"top-{metrics.get('topk', '?')} order", metrics["topk_order_agreement"]
    if "rerank_order_agreement" in metrics:
        return "rerank order", metrics["rerank_order_agreement"]
    return "", None


def diff_tolerance(model: Dict[str, Any]) -> Optional[float]:
    """The absolute-difference limit the model was judged by (from its element check, else its tolerance)."""
    for check in model.get("checks", []):
        if check.get("name") in ("max_abs_diff", "max_score_diff"):
            return check.get("limit")
    tolerance = model.get("tolerance", {})
    key = "score_atol" if model.get("kind") == "cross-encoder" else "atol"
    return tolerance.get(key)
