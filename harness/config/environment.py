"""Numeric settings read from environment variables (``HARNESS_COMPARE_MEMORY_MB`` and the like), parsed in one
place and all checked before any work (``check_settings``): a bad value is one line naming the variable (exit
2), not a traceback after an hour-long run. Nothing reads them at import: tests pass settings instead of patching.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple, TypeVar, Union

from harness.errors import HarnessError

__all__ = ["CompareSettings", "float_setting", "int_setting", "Setting", "SETTINGS", "setting", "check_settings"]

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


@dataclass(frozen=True)
class Setting:
    """One numeric environment setting: its name, default, minimum and whether it is whole."""

    name: str
    default: Union[int, float]
    minimum: Union[int, float]
    whole: bool
    help: str

    def read(self) -> Union[int, float]:
        if self.whole:
            return int_setting(self.name, int(self.default), int(self.minimum))
        return float_setting(self.name, float(self.default), float(self.minimum))


#: every numeric setting the harness reads from the environment (the modules that use one read it through here)
SETTINGS: Tuple[Setting, ...] = (
    Setting("HARNESS_COMPARE_MEMORY_MB", 512, 16, True, "memory the comparator may hold beside its inputs, in MB"),
    Setting("HARNESS_COMPARE_THREADS", 0, 0, True, "comparator worker threads (0: up to 2, by CPU count)"),
    Setting("HARNESS_TOPK_CERTIFY_MIN_PAIRS", 50_000_000, 0, True,
            "query x document pairs from which top-k is certified instead of computed exactly"),
    Setting("HARNESS_PROGRESS_INTERVAL", 30.0, 0.0, False, "seconds between progress lines of a long comparison"),
)


def setting(name: str) -> Union[int, float]:
    """The value of the declared setting ``name`` (its default when unset)."""
    for item in SETTINGS:
        if item.name == name:
            return item.read()
    raise KeyError(name)


def check_settings() -> None:
    """Read every declared setting once: a bad value is one ``HarnessError`` line before any work starts."""
    for item in SETTINGS:
        item.read()


@dataclass(frozen=True)
class CompareSettings:
    """What a comparison may use, handed down from its entry point (nothing below reads the environment).

    threads: worker threads (0: up to 2, by CPU count). memory_mb: what the streamed comparison holds at once for
    its rows. certify_min_pairs: query x document pairs from which a filed top-k certificate is used.
    certificates/scenarios: False turns the certificate lookup / the retrieval scenarios off. min_queries_per_pass:
    the smallest query batch. listener: called with each ``PassProgress`` (from worker threads). Costs:
    docs/performance.md.
    """

    threads: int = 0
    memory_mb: int = 512
    certify_min_pairs: int = 50_000_000
    certificates: bool = True
    min_queries_per_pass: int = 1024
    scenarios: bool = True
    listener: Optional[Callable[[Any], None]] = None

    @classmethod
    def from_environment(cls, listener: Optional[Callable[[Any], None]] = None) -> CompareSettings:
        """The comparator's environment variables (HARNESS_COMPARE_THREADS, HARNESS_COMPARE_MEMORY_MB,
        HARNESS_TOPK_CERTIFY_MIN_PAIRS, HARNESS_TOPK_CERTIFICATES, HARNESS_SCENARIOS) as set now (a bad value:
        ``HarnessError``)."""
        return cls(threads=int(setting("HARNESS_COMPARE_THREADS")), memory_mb=int(setting("HARNESS_COMPARE_MEMORY_MB")),
                   certify_min_pairs=int(setting("HARNESS_TOPK_CERTIFY_MIN_PAIRS")),
                   certificates=os.environ.get("HARNESS_TOPK_CERTIFICATES", "1").strip() != "0",
                   scenarios=os.environ.get("HARNESS_SCENARIOS", "1").strip() != "0", listener=listener)

    @property
    def workers(self) -> int:
        """Worker threads to run: ``threads``, or up to two by CPU count."""
        return max(1, self.threads or min(2, os.cpu_count() or 1))
