"""How ``compare``, ``check`` and ``baseline create/update/diff`` show a long comparison: one stderr line every
``HARNESS_PROGRESS_INTERVAL`` seconds of a pass, nothing for one that ends sooner. Only the CLI prints."""

from __future__ import annotations

import sys
import threading
from typing import Dict, Optional, TextIO, Tuple

from harness.compare import progress
from harness.config.environment import CompareSettings, setting

__all__ = ["ComparePrinter", "progress_settings"]


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


class ComparePrinter:
    """Prints a pass's progress at most once per ``interval_s`` of that pass (the first after ``interval_s``)."""

    def __init__(self, stream: Optional[TextIO] = None, interval_s: Optional[float] = None) -> None:
        self.stream = stream or sys.stderr
        self.interval_s = interval_s if interval_s is not None else float(setting("HARNESS_PROGRESS_INTERVAL"))
        self._printed: Dict[Tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def __call__(self, event: progress.PassProgress) -> None:
        key = (event.model_id, event.what)
        with self._lock:
            if self.interval_s <= 0 or event.elapsed_s - self._printed.get(key, 0.0) < self.interval_s:
                return
            self._printed[key] = event.elapsed_s
        share = event.rows_done / max(event.rows, 1)
        left = event.elapsed_s * (1 - share) / share if share > 0 else 0.0
        print(f"comparing {event.model_id}: {event.what}: {event.rows_done:,} / {event.rows:,} rows "
              f"({share:.0%}) in {_duration(event.elapsed_s)}, ~{_duration(left)} left", file=self.stream, flush=True)


def progress_settings(stream: Optional[TextIO] = None) -> CompareSettings:
    """The environment's comparison settings, printing the progress of the comparisons handed them."""
    return CompareSettings.from_environment(listener=ComparePrinter(stream))
