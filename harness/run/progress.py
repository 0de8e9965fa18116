"""What the runner tells a listener while it runs: one event when a model starts, one when it finishes.
The runner never prints; a listener that raises does not stop the run (progress is a courtesy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

__all__ = ["ProgressEvent", "ProgressListener", "notify"]


@dataclass(frozen=True)
class ProgressEvent:
    """``stage`` is ``start`` or ``finish``; ``index`` counts models from 1 to ``total``; ``roles`` what the
    model embeds or scores and how many; a finish carries the status, seconds and throughput."""

    stage: str
    model_id: str
    kind: str
    index: int
    total: int
    roles: Tuple[Tuple[str, int], ...] = ()
    status: Optional[str] = None
    elapsed_s: Optional[float] = None
    items_per_s: Optional[float] = None

    @property
    def items(self) -> int:
        """Texts (or pairs) this model runs over."""
        return sum(count for _, count in self.roles)


ProgressListener = Callable[[ProgressEvent], None]


def notify(listener: Optional[ProgressListener], event: ProgressEvent) -> None:
    """Hand ``event`` to ``listener`` (if any); a broken listener is ignored rather than failing the run."""
    if listener is None:
        return
    try:
        listener(event)
    except Exception:  # noqa: BLE001 - a display problem must never lose a run's results
        pass
