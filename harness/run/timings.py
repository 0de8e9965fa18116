"""Where a run's time goes: process startup, library imports, model loads, the model compute, the results write.

A cell's wall time is mostly not the model's work, and the cell runner (nox's Python, no pyarrow) cannot read
the results metadata, so with ``HARNESS_TIMINGS_FILE`` the run writes this breakdown there as JSON. Stdlib
only: imported by the runner inside old matrix environments.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Any, Dict, Iterator, Optional

from harness.fsio import write_text

__all__ = ["TIMINGS_VARIABLE", "RunTimings", "process_age_s"]

TIMINGS_VARIABLE = "HARNESS_TIMINGS_FILE"


def process_age_s() -> Optional[float]:
    """Seconds since this process started (Linux ``/proc``; None elsewhere): the interpreter's startup and the
    imports before the runner got control, which no timer inside the program sees."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime", encoding="ascii") as uptime:
            now = float(uptime.read().split()[0])
        return round(max(0.0, now - int(fields[19]) / os.sysconf("SC_CLK_TCK")), 2)  # field 22: starttime
    except (OSError, ValueError, IndexError):
        return None


class RunTimings:
    """Seconds per phase of one run; ``write()`` does nothing unless ``HARNESS_TIMINGS_FILE`` is set."""

    def __init__(self) -> None:
        self.startup_s = process_age_s()
        self._started = time.perf_counter()
        self.phases: Dict[str, float] = {}
        self.models: Dict[str, Dict[str, Optional[float]]] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the block under ``name`` (added to what that phase already took)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - started

    def model(self, model_id: str, load_s: Optional[float], compute_s: Optional[float]) -> None:
        """One model's load and compute seconds (as recorded in its ``ModelRecord``)."""
        self.models[model_id] = {"load_s": load_s, "compute_s": compute_s}

    def to_dict(self) -> Dict[str, Any]:
        compute = sum(m["compute_s"] or 0.0 for m in self.models.values())
        load = sum(m["load_s"] or 0.0 for m in self.models.values())
        in_run = time.perf_counter() - self._started
        return {
            "startup_s": self.startup_s,
            **{f"{name}_s": round(value, 3) for name, value in self.phases.items()},
            "load_s": round(load, 3),
            "compute_s": round(compute, 3),
            "in_run_s": round(in_run, 3),
            "total_s": round(in_run + (self.startup_s or 0.0), 3),
            "models": self.models,
        }

    def write(self) -> None:
        target = os.environ.get(TIMINGS_VARIABLE)
        if target:
            write_text(target, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
