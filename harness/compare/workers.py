"""Running workers over a stream of segments in threads: the reader ahead of the workers, the first error stops
all of them, the read-ahead never holds more than its budget of row groups, BLAS limited to one thread each.

``harness.compare.streaming`` decides what the segments are; this module only runs them.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["Budget", "Prefetch", "Segment", "blas_threads", "pairs_in_flight", "queries_per_pass", "run_segments"]

Segment = Tuple[int, np.ndarray, np.ndarray]


def pairs_in_flight(pair_bytes: int, held_bytes: int, memory_mb: int) -> int:
    """Row group pairs of ``pair_bytes`` (both sides) that fit in ``memory_mb`` (``CompareSettings.memory_mb``)
    next to ``held_bytes`` already held for the whole pass (the query batch); always at least one."""
    return max(1, ((memory_mb << 20) - max(0, int(held_bytes))) // max(1, int(pair_bytes)))


def queries_per_pass(query_bytes: int, pair_bytes: int, memory_mb: int, minimum: int) -> int:
    """Queries of ``query_bytes`` each (vectors and state) that one pass over the documents holds: what
    ``memory_mb`` leaves beside one row group pair of ``pair_bytes``, at least ``minimum`` (a pass over the
    documents per batch: tiny batches would read the files over and over)."""
    return max(minimum, ((memory_mb << 20) - max(0, int(pair_bytes))) // max(1, int(query_bytes)))


class Budget:
    """Tokens for row groups in memory: the reader waits for one, and stops waiting once the comparison is
    abandoned (a worker failed: its traceback may keep a row group alive, the token would never come back)."""

    def __init__(self, tokens: int) -> None:
        self._tokens = threading.Semaphore(tokens)
        self.abandoned = threading.Event()

    def acquire(self) -> None:
        while not self._tokens.acquire(timeout=0.05):
            if self.abandoned.is_set():
                raise RuntimeError("comparison abandoned")

    def release(self) -> None:
        self._tokens.release()


def blas_threads(limit: Optional[int]) -> Any:
    """Limit BLAS threads while the workers run (threadpoolctl: a core dependency, skipped if missing). The
    workers already keep the cores busy, and an idle OpenBLAS thread spins: with two workers and two BLAS threads
    each, a 1M x 384 comparison used 35% more CPU and ran 40% longer (3.2 s instead of 2.3 s on 2 cores)."""
    if limit is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=limit, user_api="blas")


class Prefetch:
    """Advance ``source`` (which reads the files) in a background thread, ``depth`` items ahead, so that the
    next row group is read while the workers compute on the current one. Errors come out of ``next``."""

    _END = object()

    def __init__(self, source: Iterator[Segment], depth: int, stop: Optional[threading.Event] = None) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._stop = stop or threading.Event()
        self._thread = threading.Thread(target=self._run, args=(source,), name="harness-compare-read", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, source: Iterator[Segment]) -> None:
        try:
            for item in source:
                if not self._put(item):
                    break
                del item
            self._put(self._END)
        except BaseException as err:  # noqa: BLE001 - handed to the consumers
            self._put(err)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Prefetch:
        return self

    def __next__(self) -> Segment:
        item = self._queue.get()
        if item is self._END:
            self._queue.put(self._END)  # for the other consumers
            raise StopIteration
        if isinstance(item, BaseException):
            self._queue.put(item)
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        while True:  # drop what was read ahead, so that the reader is not blocked
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join()


def run_segments(segments: Iterator[Segment], workers: Sequence[Callable[[Segment], None]],
                 on_rows: Optional[Callable[[int], None]] = None) -> None:
    """Feed ``segments`` to the workers, one thread each: the iterator (which reads) is advanced under a lock,
    the statistics are computed outside it (``on_rows``: told each segment's rows once its worker is done with
    them). The first error anywhere stops every thread and is raised."""
    lock = threading.Lock()
    errors: List[BaseException] = []

    def loop(worker: Callable[[Segment], None]) -> None:
        while True:
            with lock:
                if errors:
                    return
                try:
                    segment = next(segments)
                except StopIteration:
                    return
                except BaseException as err:  # noqa: BLE001 - handed to the calling thread
                    errors.append(err)
                    return
            try:
                worker(segment)
                if on_rows is not None:
                    on_rows(len(segment[1]))
            except BaseException as err:  # noqa: BLE001
                with lock:
                    errors.append(err)
                return
            finally:
                del segment

    threads = [threading.Thread(target=loop, args=(w,), name=f"harness-compare-{i}", daemon=True)
               for i, w in enumerate(workers[1:], 1)]
    for thread in threads:
        thread.start()
    try:
        loop(workers[0])
    finally:
        for thread in threads:
            thread.join()
        close = getattr(segments, "close", None)
        if close is not None:
            with lock:
                close()
    if errors:
        raise errors[0]

