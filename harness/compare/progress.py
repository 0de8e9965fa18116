"""Progress of a long comparison: each pass over the files reports to the settings' listener
(``CompareSettings.listener``), so that minutes of scoring are not taken for a hang; the CLI prints it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

__all__ = ["Listener", "PassProgress", "tracker"]


@dataclass(frozen=True)
class PassProgress:
    """One pass over a model's rows: which (``what``), how many rows are done of how many, since when."""

    model_id: str
    what: str
    rows_done: int
    rows: int
    elapsed_s: float


Listener = Callable[[PassProgress], None]


def tracker(listener: Optional[Listener], model_id: str, what: str, rows: int) -> Optional[Callable[[int], None]]:
    """A counter of one pass's rows as the workers finish them (any thread), reporting each step; None when nobody
    listens (nothing is counted then)."""
    if listener is None:
        return None
    lock, done, started = threading.Lock(), [0], time.monotonic()

    def add(count: int) -> None:
        with lock:
            done[0] += int(count)
            event = PassProgress(model_id, what, done[0], int(rows), time.monotonic() - started)
        listener(event)

    return add
