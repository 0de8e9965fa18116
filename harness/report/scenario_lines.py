""""Must I re-embed?" in every report: the one line per model (``RetrievalScenarios.line``) and the overview's
shares, a column per scenario (same order / same set). A matrix report's cells carry their ``ScenarioRow``s,
made once here; each format lays them out. Reported, not judged: nothing here changes a status."""

from __future__ import annotations

from typing import List, NamedTuple, Sequence

from harness.verdict import ModelVerdict

__all__ = ["HEADING", "COLUMNS", "ScenarioRow", "rows", "text_lines"]

HEADING = "Must I re-embed? (retrieval scenarios: same order / same set; reported, not judged)"
#: scenario key -> overview column
COLUMNS = {"reembed": "Re-embed everything", "keep_index": "Keep the index", "rolling": "Rolling re-embed",
           "index": "Through a FAISS index"}


class ScenarioRow(NamedTuple):
    """One model's overview row: its advice, its shares in ``COLUMNS`` order and its line."""

    model_id: str
    advice: str
    shares: List[str]
    line: str


def _shares(model: ModelVerdict, key: str) -> str:
    found = {s.key: s for s in model.scenarios.items} if model.scenarios else {}
    s = found.get(key)
    if s is None or s.same_order is None or s.same_set is None:
        return "not run" if s is not None else "-"
    recall = f" (recall {s.recall:.1%})" if s.recall is not None else ""
    return f"{s.same_order:.1%} / {s.same_set:.1%}{recall}"


def rows(models: Sequence[ModelVerdict]) -> List[ScenarioRow]:
    """The overview row of every model whose scenarios were run."""
    return [ScenarioRow(m.model_id, m.scenarios.advice, [_shares(m, k) for k in COLUMNS], m.scenarios.line)
            for m in models if m.scenarios is not None]


def text_lines(models: Sequence[ModelVerdict]) -> List[str]:
    """The terminal verdict's section: per model the line, then every scenario's shares."""
    lines = [f"  {m.model_id}: {m.scenarios.line}\n    {m.scenarios.details}" for m in models if m.scenarios]
    return ["", HEADING + ":", *lines] if lines else []
