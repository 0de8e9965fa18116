"""JSON text from a file a user, a tool or another version of the harness wrote (a plan, a cell state, a report, a
history line): a document nested too deeply for Python's parser is malformed JSON like any other (``ValueError``,
which every reader turns into its one-line refusal), never a ``RecursionError`` that would read as a bug.
Stdlib only."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["loads"]


def loads(text: str | bytes) -> Any:
    """``json.loads``, with nesting too deep for the parser a ``ValueError``."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply to read") from None
