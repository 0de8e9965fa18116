"""How ``harness run`` and ``harness check`` show progress: the runner's events (``harness.run.progress``) on stderr:
bars on a terminal, else a line per model start and finish plus a "still running" line every
``HARNESS_PROGRESS_INTERVAL`` seconds, so a CI log never goes silent for minutes.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Optional, TextIO

from harness.config.environment import setting
from harness.run.progress import ProgressEvent

__all__ = ["make_listener", "LineProgress", "BarProgress"]

_NOUNS = {"document": "documents", "query": "queries", "pair": "pairs"}


def _what(event: ProgressEvent) -> str:
    roles = " + ".join(f"{count:,} {_NOUNS.get(role, role)}" for role, count in event.roles)
    return f"{event.model_id} ({event.kind}: {roles})"


def _rate(event: ProgressEvent) -> str:
    unit = "pairs/s" if [role for role, _ in event.roles] == ["pair"] else "texts/s"
    return f"{event.items_per_s:,.0f} {unit}" if event.items_per_s else f"- {unit}"


class LineProgress:
    """One line per model start and finish, and a heartbeat while one runs long (CI logs)."""

    def __init__(self, stream: TextIO, prefix: str = "harness run", interval_s: Optional[float] = None) -> None:
        self.stream, self.prefix = stream, prefix
        self.interval_s = interval_s if interval_s is not None else float(setting("HARNESS_PROGRESS_INTERVAL"))
        self._stop: Optional[threading.Event] = None

    def _line(self, text: str) -> None:
        print(f"{self.prefix}: {text}", file=self.stream, flush=True)

    def _heartbeat(self, event: ProgressEvent, started: float, stop: threading.Event) -> None:
        while not stop.wait(self.interval_s):
            self._line(f"[{event.index}/{event.total}] {event.model_id} still running ({time.perf_counter() - started:.0f} s)")

    def __call__(self, event: ProgressEvent) -> None:
        if self._stop is not None:
            self._stop.set()
            self._stop = None
        if event.stage == "start":
            self._line(f"[{event.index}/{event.total}] {_what(event)} started")
            if self.interval_s > 0:
                self._stop = threading.Event()
                threading.Thread(target=self._heartbeat, args=(event, time.perf_counter(), self._stop), daemon=True).start()
        else:
            self._line(f"[{event.index}/{event.total}] {event.model_id} {event.status or 'done'} in "
                       f"{event.elapsed_s or 0:.1f} s ({_rate(event)})")

    def close(self) -> None:
        if self._stop is not None:
            self._stop.set()


class BarProgress:
    """A tqdm bar over the models: which one runs, N of M, the last one's texts/s (a terminal)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._bar: Any = None

    def __call__(self, event: ProgressEvent) -> None:
        from tqdm.auto import tqdm

        if self._bar is None:
            self._bar = tqdm(total=event.total, unit="model", file=self.stream, dynamic_ncols=True)
        if event.stage == "start":
            self._bar.set_description(f"[{event.index}/{event.total}] {_what(event)}")
        else:
            self._bar.set_postfix_str(f"{event.model_id}: {event.status}, {_rate(event)}")
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def make_listener(progress: Optional[bool], stream: TextIO = sys.stderr, prefix: str = "harness run") -> Any:
    """The display for ``--progress/--no-progress`` (None: a bar on a terminal, lines elsewhere)."""
    if progress is False:
        return None
    if progress or (progress is None and stream.isatty()):
        return BarProgress(stream)
    return LineProgress(stream, prefix)
