"""Numeric settings read from environment variables (``HARNESS_COMPARE_MEMORY_MB`` and the like), parsed in one
place: a value that is not a number, or is out of range, is refused in one line naming the variable (exit 2),
never a traceback from deep inside the comparator."""

from __future__ import annotations

import os
from typing import Callable, TypeVar

from harness.errors import HarnessError

__all__ = ["float_setting", "int_setting"]

Number = TypeVar("Number", int, float)


def _setting(name: str, default: Number, minimum: Number, parse: Callable[[str], Number], kind: str) -> Number:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise HarnessError(f"environment variable {name}={raw!r}: expected {kind} (default {default:g})") from None
    if not value >= minimum:
        raise HarnessError(f"environment variable {name}={raw!r}: must be at least {minimum:g} (default {default:g})")
    return value


def int_setting(name: str, default: int, minimum: int = 0) -> int:
    """``$name`` as a whole number of at least ``minimum``; ``default`` when unset or empty."""
    return _setting(name, default, minimum, int, "a whole number")


def float_setting(name: str, default: float, minimum: float = 0.0) -> float:
    """``$name`` as a number of at least ``minimum``; ``default`` when unset or empty."""
    return _setting(name, default, minimum, float, "a number")
