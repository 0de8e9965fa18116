"""JUnit XML rendering of a matrix report, so CI systems show each cell x model as a test.

Drift is a ``<failure>``, an incompatible model or cell ``<skipped>`` (the environment, not a regression),
install/run failures ``<error>``. Characters XML 1.0 forbids (terminal escapes in a pip log) are replaced
first: ElementTree would write them through verbatim.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any, Dict, List, Optional, Tuple

from harness.report.format import fmt
from harness.report.matrix_report import MatrixReport, ModelWords, ReportCell
from harness.report.scenario_lines import COLUMNS
from harness.report.text import check_line, explained, would_pass
from harness.verdict import CellStatus, ModelVerdict, Status

__all__ = ["render_junit", "xml_safe"]

_INVALID_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_MESSAGE_MAX = 1000


def xml_safe(text: Any) -> str:
    """Text XML 1.0 can carry: forbidden control characters become visible ``\\xNN`` escapes."""
    return _INVALID_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", "" if text is None else str(text))


def _message(text: str) -> str:
    """Attribute-sized one-liner: CI viewers show ``message`` in a list, the element text holds the full story."""
    flat = " ".join(text.split())
    return flat if len(flat) <= _MESSAGE_MAX else flat[: _MESSAGE_MAX - 1] + "…"


def _outcome(parent: ET.Element, tag: str, message: str, kind: str, body: str = "") -> None:
    element = ET.SubElement(parent, tag, {"message": xml_safe(_message(message)), "type": kind})
    if body:
        element.text = xml_safe(body)


def _failure_body(model: ModelVerdict, accuracy: List[str]) -> str:
    """Failed checks with their detail, then the worst offenders: what a CI viewer shows when expanded."""
    lines = explained(model)
    if model.offenders:
        lines.append("worst items:")
        lines += [f"  {o.item_id}  {o.metric} {fmt(o.value)}  {o.detail}" for o in model.offenders]
    if model.min_passing:
        lines.append(f"would pass with: {would_pass(model)}")
    lines += accuracy
    lines.append(f"tolerance class: {model.tolerance_class}")
    return "\n".join(lines)


def _checks_out(model: ModelVerdict) -> str:
    """Every check with its limit and the share of it used: the headroom a passing case still has."""
    return "\n".join(check_line(c) + ("" if c.passed else " FAILED") for c in model.checks)


def _model_case(suite: ET.Element, cell_id: str, model: ModelVerdict, words: ModelWords) -> CellStatus:
    case = ET.SubElement(suite, "testcase", {"classname": _classname(cell_id), "name": xml_safe(model.model_id)})
    status = model.status
    reason = model.reason or status.value
    if status is Status.FAIL:
        _outcome(case, "failure", reason, "drift", _failure_body(model, words.accuracy))
    elif status is Status.INCOMPATIBLE:
        _outcome(case, "skipped", reason, status.value)
    elif status is not Status.PASS:
        _outcome(case, "error", reason, status.value, reason)
    out = "\n".join(filter(None, [_checks_out(model), model.metrics.retrieval_note(), *words.accuracy]))
    if out:
        ET.SubElement(case, "system-out").text = xml_safe(out)
    return CellStatus.parse(status)


def _needs_setup_case(cell: ReportCell, model_statuses: List[CellStatus]) -> bool:
    """A cell without a comparison, or whose own failure no model testcase already reports."""
    if cell.comparison is None:
        return True
    status = cell.status
    if status.unjudged:
        return CellStatus.ERROR not in model_statuses
    if status is CellStatus.INCOMPATIBLE:
        return CellStatus.INCOMPATIBLE not in model_statuses
    return False


def _setup_case(suite: ET.Element, cell: ReportCell) -> CellStatus:
    attrs = {"classname": _classname(cell.cell_id), "name": "setup"}
    if cell.setup_s is not None:
        attrs["time"] = f"{float(cell.setup_s):.3f}"
    case = ET.SubElement(suite, "testcase", attrs)
    status = cell.status
    reason = cell.reason or status.value
    if status is CellStatus.INCOMPATIBLE:
        _outcome(case, "skipped", reason, status.value)
    elif status.unjudged:  # install-failed, run-failed, error: counted as one JUnit error each
        _outcome(case, "error", reason, status.value, reason)
        return CellStatus.ERROR
    elif status is CellStatus.FAIL:
        _outcome(case, "failure", reason, "drift", reason)
    return status


def _properties(suite: ET.Element, cell: ReportCell, policy: str) -> None:
    props = ET.SubElement(suite, "properties")
    pairs: List[Tuple[str, Any]] = list(cell.params.items()) + [("policy", policy)]
    pairs += [("cell.status", cell.status.value), ("cell.reason", cell.reason), ("cell.results", cell.results)]
    pairs += [("note", note) for note in cell.notes] + [(f"scenarios.{row.model_id}", row.line) for row in cell.scenarios]
    pairs += [(f"scenarios.{row.model_id}.{key}", share) for row in cell.scenarios for key, share in zip(COLUMNS, row.shares)]
    for name, value in pairs:
        if value not in (None, ""):
            ET.SubElement(props, "property", {"name": xml_safe(name), "value": xml_safe(value)})


def _env_out(cell: ReportCell) -> Optional[str]:
    changes = cell.env_changes
    if not changes:
        return None
    lines = [f"environment changes vs baseline ({len(changes)}):"]
    lines += [f"  {c.key}: {fmt(c.baseline)} -> {fmt(c.candidate)}" for c in changes]
    return "\n".join(lines)


def _count(statuses: List[CellStatus]) -> Dict[str, int]:
    return {
        "tests": len(statuses),
        "failures": statuses.count(CellStatus.FAIL),
        "errors": sum(s.unjudged for s in statuses),
        "skipped": statuses.count(CellStatus.INCOMPATIBLE),
    }


def _suite(root: ET.Element, cell: ReportCell, timestamp: str, policy: str) -> Tuple[List[CellStatus], float]:
    suite = ET.SubElement(root, "testsuite", {"name": xml_safe(cell.cell_id), "timestamp": xml_safe(timestamp)})
    _properties(suite, cell, policy)
    statuses = [_model_case(suite, cell.cell_id, m, cell.words[m.model_id]) for m in cell.models]
    if _needs_setup_case(cell, statuses):
        statuses.append(_setup_case(suite, cell))
    env = _env_out(cell)
    if env:
        ET.SubElement(suite, "system-out").text = xml_safe(env)
    seconds = cell.seconds or 0.0
    for key, value in _count(statuses).items():
        suite.set(key, str(value))
    suite.set("time", f"{seconds:.3f}")
    return statuses, seconds


def render_junit(report: MatrixReport) -> str:
    """The matrix as JUnit XML (``<testsuites>`` root, totals on every level)."""
    root = ET.Element("testsuites", {"name": xml_safe(f"matrix {report.matrix}")})
    timestamp = report.created_at[:19]  # JUnit's xsd wants ISO 8601 without a zone
    all_statuses: List[CellStatus] = []
    total = 0.0
    for cell in report.cells:
        statuses, seconds = _suite(root, cell, timestamp, report.policy)
        all_statuses += statuses
        total += seconds
    for key, value in _count(all_statuses).items():
        root.set(key, str(value))
    root.set("time", f"{total:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _classname(cell_id: str) -> str:
    """``matrix.<cell>`` with the cell's dots replaced: CI viewers read dots as package levels."""
    return xml_safe("matrix." + cell_id.replace(".", "_"))
