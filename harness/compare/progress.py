"""Progress of a long comparison: each pass over the files reports to the settings' listener
(``CompareSettings.listener``), so that minutes of scoring are not taken for a hang; the CLI prints it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

__all__ = ["Listener", "PassProgress", "PassTracker", "tracker"]


@dataclass(frozen=True)
class PassProgress:
    """One pass over a model's rows: which (``what``), how many rows are done of how many, since when."""

    model_id: str
    what: str
    rows_done: int
    rows: int
    elapsed_s: float


Listener = Callable[[PassProgress], None]


class PassTracker:
    """Counts the rows of one pass as the workers finish them (any thread) and reports each step."""

    def __init__(self, listener: Listener, model_id: str, what: str, rows: int) -> None:
        self.listener, self.model_id, self.what, self.rows = listener, model_id, what, int(rows)
        self.done = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def add(self, rows: int) -> None:
        with self._lock:
            self.done += int(rows)
            event = PassProgress(self.model_id, self.what, self.done, self.rows, time.monotonic() - self.started)
        self.listener(event)


def tracker(listener: Optional[Listener], model_id: str, what: str, rows: int) -> Optional[PassTracker]:
    """A tracker for one pass, or None when nobody listens (nothing is counted then)."""
    return PassTracker(listener, model_id, what, rows) if listener is not None else None
