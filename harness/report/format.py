"""The one number formatter of every report (terminal, Markdown, HTML, JUnit, JSON summaries, assertions)."""

from __future__ import annotations

import math
from typing import Any, Optional, Tuple

from harness.compare.kinds.common import significant

__all__ = ["fmt", "fmt_cosine", "fmt_pair", "fmt_percent", "fmt_seconds", "significant"]


def fmt(value: Any, digits: int = 3) -> str:
    """Numbers as engineers read drift: scientific for tiny values, plain otherwise."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) < 1e-3 or abs(value) >= 1e5:
            return f"{value:.{digits - 1}e}"
        return significant(value, digits=digits)
    return str(value)


def fmt_cosine(value: Any) -> str:
    """Cosines near 1 are read by their distance from 1 (``1 - 2.4e-08``), which is what drifts."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    if value == 1:
        return "1"
    if 0.999 <= value < 1:
        return f"1 - {1 - value:.1e}"
    return fmt(float(value))


def fmt_percent(value: Optional[float]) -> str:
    """A share (0..1) as a percentage with one decimal (``99.5%``)."""
    if value is None:
        return "-"
    return f"{100 * value:.1f}%"


def fmt_seconds(value: Optional[float]) -> str:
    """A duration as reports show it (``12.3 s``); ``-`` when unknown."""
    if value is None:
        return "-"
    return f"{value:.1f} s"


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def fmt_pair(baseline: Any, candidate: Any) -> Tuple[str, str]:
    """A baseline and a candidate value side by side: two numbers get one notation and the same significant
    digits (at least 3, more until two different values read differently), so the columns compare digit by
    digit (``3000.00`` next to ``3500.00``, not ``3e+03`` next to ``3500``); anything else as ``fmt``."""
    if not (_real(baseline) and _real(candidate)) or (isinstance(baseline, int) and isinstance(candidate, int)):
        return fmt(baseline), fmt(candidate)
    a, b = float(baseline), float(candidate)
    scientific = any(v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5) for v in (a, b))
    largest = max(abs(a), abs(b))
    exponent = math.floor(math.log10(largest)) if largest > 0 and math.isfinite(largest) else 0
    for digits in range(3, 18):
        decimals = max(0, digits - 1 - exponent)
        shown = tuple(f"{v:.{digits - 1}e}" if scientific else f"{v:.{decimals}f}" for v in (a, b))
        if a == b or shown[0] != shown[1]:
            break
    return shown[0], shown[1]
