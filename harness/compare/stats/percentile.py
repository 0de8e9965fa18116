"""The exact 99th percentile of |d| over a stream, from the largest 1% of the values only."""

from __future__ import annotations

from typing import List, Optional

import numpy as np

__all__ = ["P99_MAX_KEPT", "P99", "percentile_from_top"]

#: p99 is exact while the largest 1% of |d| is at most this many values (~26M elements); beyond, it is the exact
#: p99 of the rows at positions 0, s, 2s, ...: a sample of >= 26M elements, within a fraction of a percent
P99_MAX_KEPT = 1 << 18


def _need(count: int, q: float = 99.0) -> int:
    """How many of the largest of ``count`` values ``percentile_from_top`` needs."""
    return count - int(np.floor((count - 1) * (q / 100.0))) if count else 1


def percentile_from_top(top: np.ndarray, count: int, q: float = 99.0) -> float:
    """``np.percentile(values, q)`` (linear method, same arithmetic) from only the largest values.

    ``top`` must hold the ``count - floor((count - 1) * q / 100)`` largest of ``count`` values, in any order.
    """
    if count == 0:
        return 0.0
    h, need = (count - 1) * (q / 100.0), _need(count, q)
    if len(top) < need:
        raise ValueError(f"percentile_from_top needs the {need} largest values, got {len(top)}")
    first = len(top) - need
    part = np.partition(np.asarray(top, dtype=np.float64), [first, first + 1] if need > 1 else [first])
    a = part[first]
    if need == 1:  # h = count - 1: the largest
        return float(a)
    b, gamma = part[first + 1], h - int(np.floor(h))
    diff = b - a
    return float(b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma)


class P99:
    """The p99 of |d| over rows streamed in any order (``add(position, rows)``, ``merge``), from the largest 1%
    of the values kept (memory a hundredth of the data's): exact up to ``P99_MAX_KEPT`` kept values, beyond that
    of the rows at positions 0, s, 2s, ..."""

    def __init__(self, total_rows: int, per_row: int = 1) -> None:
        self.every = max(1, -(-_need(int(total_rows) * per_row) // P99_MAX_KEPT))
        self.count = -(-int(total_rows) // self.every) * per_row
        self.keep = _need(self.count)
        self.parts: List[np.ndarray] = []
        self.size = 0
        self.floor: Optional[float] = None  # values <= floor can no longer be among the kept ones

    def add(self, position: int, rows: np.ndarray) -> None:
        """|d| of the rows at positions ``position ..`` (values left out are zeros)."""
        values = (rows if self.every == 1 else rows[(-position) % self.every :: self.every]).ravel()
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

    def merge(self, other: P99) -> None:
        self.parts += other.parts
        self.size += other.size
        self.floor = max((f for f in (self.floor, other.floor) if f is not None), default=None)
        if self.parts:
            self._compact()

    def value(self) -> float:
        if self.parts:
            self._compact()
        top = self.parts[0] if self.parts else np.zeros(0)
        if len(top) < self.keep:  # zeros were never kept: the largest ``keep`` need only that many
            top = np.concatenate([np.zeros(self.keep - len(top)), top])
        return percentile_from_top(top, self.count)
