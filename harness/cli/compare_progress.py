"""How ``harness compare``, ``check`` and ``baseline create/update/diff`` show a long comparison: one line on
stderr every ``HARNESS_PROGRESS_INTERVAL`` seconds (default 30; 0: never) of a pass over a model's rows, with the
share done and the time left, and nothing at all for a comparison that ends sooner (the committed baselines
compare in about a second). The comparator reports (``harness.compare.progress``); only the CLI prints."""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import Dict, Iterator, Optional, TextIO, Tuple

from harness.compare import progress
from harness.config.environment import setting

__all__ = ["ComparePrinter", "showing_progress"]


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


@contextlib.contextmanager
def showing_progress(stream: Optional[TextIO] = None) -> Iterator[None]:
    """Print the progress of the comparisons made inside the block."""
    with progress.listening(ComparePrinter(stream)):
        yield
