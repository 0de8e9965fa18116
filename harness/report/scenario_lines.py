""""Must I re-embed?" in every report: the one line per model (``RetrievalScenarios.line``) and the overview with
a column per scenario (same order / same set), one call per renderer. Reported, not judged: nothing here changes
a status."""

from __future__ import annotations

from html import escape
from typing import Any, List, Sequence, Tuple

from harness.verdict import ModelVerdict

__all__ = ["HEADING", "COLUMNS", "text_lines", "markdown_lines", "html_section", "junit_properties"]

HEADING = "Must I re-embed? (retrieval scenarios: same order / same set; reported, not judged)"
#: scenario key -> overview column
COLUMNS = {"reembed": "Re-embed everything", "keep_index": "Keep the index", "rolling": "Rolling re-embed",
           "index": "Through a FAISS index"}


def _cell(model: ModelVerdict, key: str) -> str:
    found = {s.key: s for s in model.scenarios.items} if model.scenarios else {}
    s = found.get(key)
    if s is None or s.same_order is None or s.same_set is None:
        return "not run" if s is not None else "-"
    recall = f" (recall {s.recall:.1%})" if s.recall is not None else ""
    return f"{s.same_order:.1%} / {s.same_set:.1%}{recall}"


def _rows(verdicts: Sequence[Tuple[str, ModelVerdict]]) -> List[List[str]]:
    return [[cell, m.model_id, m.scenarios.advice, *(_cell(m, k) for k in COLUMNS)]
            for cell, m in verdicts if m.scenarios is not None]


def text_lines(models: Sequence[ModelVerdict]) -> List[str]:
    """The terminal verdict's section: per model the line, then every scenario's shares."""
    lines = [f"  {m.model_id}: {m.scenarios.line}\n    {m.scenarios.details}" for m in models if m.scenarios]
    return ["", HEADING + ":", *lines] if lines else []


def markdown_lines(verdicts: Sequence[Tuple[str, ModelVerdict]], escape_md: Any, code: Any) -> List[str]:
    """The Markdown section: the overview table (a column per scenario), then the line per cell and model
    (``escape_md`` for prose, ``code`` for identifiers: the Markdown report's own)."""
    rows = _rows(verdicts)
    if not rows:
        return []
    header = ["Cell", "Model", "Advice", *COLUMNS.values()]
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table += ["| " + " | ".join(escape_md(c) for c in row) + " |" for row in rows]
    lines = [f"- {code(cell)} / {code(m.model_id)}: {escape_md(m.scenarios.line)}"
             for cell, m in verdicts if m.scenarios is not None]
    return ["", f"## {HEADING}", "", *table, "", *lines]


def html_section(verdicts: Sequence[Tuple[str, ModelVerdict]]) -> str:
    """The HTML overview of the scenarios (a column per scenario), each row's line as its last column."""
    rows = _rows(verdicts)
    if not rows:
        return ""
    lines = [m.scenarios.line for _, m in verdicts if m.scenarios is not None]
    head = "".join(f"<th>{escape(h)}</th>" for h in ["Cell", "Model", "Advice", *COLUMNS.values(), "Why"])
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in [*row, line]) + "</tr>"
                   for row, line in zip(rows, lines))
    return (f'<section id="scenarios"><h2>{escape(HEADING)}</h2>'
            f'<table class="scenarios"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></section>')


def junit_properties(models: Sequence[ModelVerdict]) -> List[Tuple[str, str]]:
    """JUnit ``<property>`` pairs: the line per model, and each scenario's shares."""
    pairs = [(f"scenarios.{m.model_id}", m.scenarios.line) for m in models if m.scenarios]
    pairs += [(f"scenarios.{m.model_id}.{key}", _cell(m, key)) for m in models if m.scenarios for key in COLUMNS]
    return pairs
