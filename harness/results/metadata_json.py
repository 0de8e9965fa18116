"""The metadata JSON of a results file, checked once when the file opens, so no reader meets a surprise: anything
wrong is one ``ResultsFileError`` line naming the file. Stdlib only: read in old matrix environments too.
"""

from __future__ import annotations

import json
import math
from typing import Any, Dict, List, Optional, Tuple

from harness.errors import ResultsFileError, escape_breaks, squeeze
from harness.results.schema import is_unicode_text

__all__ = ["MAX_DEPTH", "parse_metadata"]


#: deepest nesting of the metadata JSON read back (the runner writes 5 levels): readers that walk it recursively
#: (flattening a fingerprint, making paths portable) must never meet a RecursionError
MAX_DEPTH = 32
_INT_LIMIT = 1 << 63


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_metadata(raw: bytes, source: str) -> Dict[str, Any]:
    """The ``harness`` metadata JSON of a results file, checked so that no reader meets a surprise: one object,
    at most ``MAX_DEPTH`` deep, finite numbers, integers within 64 bits, strings of valid Unicode (no lone
    surrogates). Anything else is one ``ResultsFileError`` line naming ``source``."""
    try:
        meta = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise ResultsFileError(f"{source}: harness metadata is not valid JSON (nested too deeply)") from None
    except ValueError as err:  # JSONDecodeError, not UTF-8, NaN/Infinity, an integer too long to convert
        raise ResultsFileError(f"{source}: harness metadata is not valid JSON ({squeeze(err)})") from None
    if not isinstance(meta, dict):
        raise ResultsFileError(f"{source}: harness metadata must be a JSON object, got {type(meta).__name__}")
    problem = _first_problem(meta)
    if problem is not None:  # keys from the file may hold line breaks: escaped, so the message stays one line
        raise ResultsFileError(f"{source}: harness metadata: {escape_breaks(problem)}")
    shape = _shape_problem(meta)
    if shape is not None:
        raise ResultsFileError(f"{source}: {escape_breaks(shape)}")
    return meta


def _shape_problem(meta: Dict[str, Any]) -> Optional[str]:
    """The tables every reader walks must be objects (or null, read as empty); so must each model's record."""
    for key in ("models", "corpus", "fingerprint", "run", "baseline"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            return f"metadata '{key}' must be an object, got {type(meta[key]).__name__}"
    for model_id, record in (meta.get("models") or {}).items():
        if not isinstance(record, dict):
            return f"metadata 'models.{model_id}' must be an object, got {type(record).__name__}"
    return None


def _first_problem(meta: Dict[str, Any]) -> Optional[str]:
    """What is wrong with parsed metadata (walked without recursion), or None."""
    todo: List[Tuple[str, Any, int]] = [("", meta, 1)]
    while todo:
        where, value, depth = todo.pop()
        at = f" at '{where}'" if where else ""
        if isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                return f"nested deeper than {MAX_DEPTH} levels{at}"
            items = value.items() if isinstance(value, dict) else ((str(i), v) for i, v in enumerate(value))
            for key, item in items:
                if not is_unicode_text(key):
                    return f"a key{at} is not valid Unicode text (a lone surrogate)"
                todo.append((f"{where}.{key}" if where and isinstance(value, dict) else f"{where}[{key}]" if where
                             else key, item, depth + 1))
        elif isinstance(value, str) and not is_unicode_text(value):
            return f"the string{at} is not valid Unicode text (a lone surrogate)"
        elif isinstance(value, float) and not math.isfinite(value):
            return f"the number{at} is not finite"
        elif isinstance(value, int) and not isinstance(value, bool) and not -_INT_LIMIT <= value < _INT_LIMIT:
            return f"the integer{at} does not fit in 64 bits"
    return None
