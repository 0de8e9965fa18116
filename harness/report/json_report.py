"""JSON rendering of a matrix report: the complete data, for machines and for diffing two runs.

Sorted keys and a fixed indent make two reports of the same matrix diff cleanly line by line.
"""

from __future__ import annotations

import json
from typing import Any, Dict

__all__ = ["render_json"]


def render_json(report: Dict[str, Any]) -> str:
    """The report verbatim (anything not JSON-native, such as a ``Path``, as its ``str``)."""
    return json.dumps(report, indent=2, sort_keys=True, default=str, ensure_ascii=False) + "\n"
