"""Streaming accumulators: the metrics of ``harness.compare.metrics`` over blocks of aligned rows, in bounded
memory, mergeable across threads. Every kind of output judged row by row feeds these, from files or arrays."""

from __future__ import annotations

from harness.compare.stats.diff import DiffStats, Worst
from harness.compare.stats.percentile import percentile_from_top
from harness.compare.stats.topk import TopKStream

__all__ = ["DiffStats", "TopKStream", "Worst", "percentile_from_top"]
