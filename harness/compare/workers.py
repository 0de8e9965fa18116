"""Running workers over a stream of segments (``harness.compare.streaming`` decides what they are): each worker on
its own thread, the next segment read meanwhile, a budget of segments in memory, the first error stopping all.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Deque, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from threadpoolctl import threadpool_limits

__all__ = ["Segment", "pairs_in_flight", "run_segments"]

Segment = Tuple[int, np.ndarray, np.ndarray]


def pairs_in_flight(pair_bytes: int, held_bytes: int, memory_mb: int) -> int:
    """Row group pairs of ``pair_bytes`` (both sides) that fit in ``memory_mb`` (``CompareSettings.memory_mb``)
    next to ``held_bytes`` already held for the whole pass (the query batch); always at least one."""
    return max(1, ((memory_mb << 20) - max(0, int(held_bytes))) // max(1, int(pair_bytes)))


def run_segments(segments: Iterable[Segment], workers: Sequence[Callable[[Segment], None]], in_flight: int = 1,
        on_rows: Optional[Callable[[int], None]] = None, tap: Optional[Callable[[Segment], None]] = None) -> None:
    """Hand each segment to ``tap`` (on this thread, in order) and, one piece per worker, to the workers: each on
    its own thread (its accumulators are touched by one thread only), the next segment read meanwhile, at most
    ``in_flight`` segments in memory (``on_rows``: told each piece's rows once done). The first error is raised."""

    def call(worker: Callable[[Segment], None], piece: Segment) -> None:
        worker(piece)
        if on_rows is not None:
            on_rows(len(piece[1]))

    if len(workers) == 1:
        for segment in segments:
            if tap is not None:
                tap(segment)
            call(workers[0], segment)
            del segment  # not held while the next pair is read
        return
    pools = [ThreadPoolExecutor(1, thread_name_prefix=f"harness-compare-{i}") for i in range(len(workers))]
    pending: Deque[List[Future[None]]] = deque()
    try:
        with threadpool_limits(limits=1, user_api="blas"):  # an idle OpenBLAS thread spins (docs/performance.md)
            for segment in segments:
                if tap is not None:
                    tap(segment)
                position, base, cand = segment
                cuts = [len(base) * i // len(workers) for i in range(len(workers) + 1)]  # nearly equal pieces
                pending.append([pool.submit(call, worker, (position + a, base[a:b], cand[a:b]))
                                for pool, worker, a, b in zip(pools, workers, cuts, cuts[1:]) if b > a])
                del segment, base, cand  # the pieces hold the rows only as long as their workers need them
                while pending and (len(pending) >= in_flight or all(f.done() for f in pending[0])):
                    for future in pending.popleft():
                        future.result()
            for futures in pending:
                for future in futures:
                    future.result()
    finally:
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)
