"""The exact 99th percentile of |d| over a stream, from the largest values only (``DiffStats.p99``).

Keeping the largest 1% of the values is enough to reproduce ``np.percentile`` exactly, in memory a hundredth of
the data's.
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np

__all__ = ["TopValues", "percentile_from_top"]


def percentile_from_top(top: np.ndarray, count: int, q: float = 99.0) -> float:
    """``np.percentile(values, q)`` (linear method, same arithmetic) from only the largest values.

    ``top`` must hold the ``count - floor((count - 1) * q / 100)`` largest of ``count`` values, in any order.
    """
    if count == 0:
        return 0.0
    h = (count - 1) * (q / 100.0)
    lo = int(np.floor(h))
    need = count - lo
    if len(top) < need:
        raise ValueError(f"percentile_from_top needs the {need} largest values, got {len(top)}")
    top = np.asarray(top, dtype=np.float64)
    first = len(top) - need
    picks = [first, first + 1] if need > 1 else [first]
    part = np.partition(top, picks)
    a = part[first]
    if h >= count - 1 or need == 1:
        return float(part[-1] if need == 1 else a)
    b = part[first + 1]
    gamma = h - lo
    diff = b - a
    return float(b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma)


class TopValues:
    """The ``keep`` largest values seen (in any order), in memory proportional to ``keep``."""

    def __init__(self, keep: int) -> None:
        self.keep = max(int(keep), 1)
        self.parts: List[np.ndarray] = []
        self.size = 0
        self.floor: Optional[float] = None  # values <= floor can no longer be among the kept ones

    def add(self, values: np.ndarray) -> None:
        if self.floor is not None:
            values = values[values > values.dtype.type(self.floor)]
        elif values.base is not None or not values.flags.owndata:
            values = values.copy()
        if len(values):
            self.parts.append(values)
            self.size += len(values)
            if self.size > 2 * self.keep + (1 << 16):
                self._compact()

    def _compact(self) -> None:
        data = np.concatenate(self.parts) if len(self.parts) > 1 else self.parts[0]
        if len(data) > self.keep:
            data = np.partition(data, len(data) - self.keep)[len(data) - self.keep :]
            self.floor = float(data.min())
        self.parts, self.size = [data], len(data)

    def merge(self, other: TopValues) -> None:
        self.parts += other.parts
        self.size += other.size
        if other.floor is not None:
            self.floor = other.floor if self.floor is None else max(self.floor, other.floor)
        if self.parts:
            self._compact()

    def values(self) -> np.ndarray:
        if not self.parts:
            return np.zeros(0)
        self._compact()
        return self.parts[0]
