"""Accuracy against an fp64 reference: is a drift normal rounding, or a loss of accuracy, and which side is wrong?

Two fp32 runs differ by rounding and neither is "right"; an fp64 run is right to about 1e-16, so each side's error
against it can be measured. The accuracy ratio (candidate RMSE / baseline RMSE) is about 1 for another fp32
device or kernel, hundreds and more for fp16/bf16 (``docs/how-to/reference.md``). PyTorch's compiler tests use
the same rule (``MULTIPLIERS``). Fed block by block: memory of one block.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from harness.errors import HarnessError

__all__ = ["MULTIPLIERS", "TOKEN_EDGES", "Accumulator", "Accuracy", "AccuracyVerdict", "Bucket", "SideError", "accuracy"]

#: the largest accuracy ratio that is still rounding, by the candidate's dtype (PyTorch's fp64 reference rule)
MULTIPLIERS: Dict[str, float] = {"float32": 2.0, "float16": 3.0, "bfloat16": 3.0}
#: token-count bucket lower edges: 1-16, 17-32, ..., 257-512, 513 and more
TOKEN_EDGES: Tuple[int, ...] = (0, 17, 33, 65, 129, 257, 513)
WORST = 10


@dataclass(frozen=True)
class SideError:
    """One side's error against the reference: RMSE over every value, the largest absolute difference, and the
    texts with the largest per-text RMSE (``(id, rmse)``, worst first). Non-finite values make it ``inf``."""

    rmse: float
    max_abs: float
    worst: Tuple[Tuple[str, float], ...]


@dataclass(frozen=True)
class Bucket:
    """The error of the texts whose token count is in ``[low, high]`` (``high`` None: no upper bound)."""

    low: int
    high: Optional[int]
    texts: int
    baseline_rmse: float
    candidate_rmse: float


@dataclass(frozen=True)
class Accuracy:
    """Both sides' error against the fp64 reference for one model, and what it means.

    ``ratio``: candidate RMSE / baseline RMSE (1.0 when both are 0, ``inf`` when only the baseline is exact).
    ``candidate_worse``/``baseline_worse``: texts on which that side is further from the reference.
    ``truncated``: ``(id, side)`` of texts truncated on one side and not in the reference (first ``WORST``),
    ``truncation_mismatches`` their count: a cause named, since a cut text differs for a reason other than rounding.
    """

    rows: int
    baseline: SideError
    candidate: SideError
    ratio: float
    candidate_worse: int
    baseline_worse: int
    buckets: Tuple[Bucket, ...]
    truncation_mismatches: int
    truncated: Tuple[Tuple[str, str], ...]

    def rounding(self, dtype: str = "float32") -> bool:
        """Whether the ratio is within what rounding in ``dtype`` explains (``MULTIPLIERS``)."""
        return bool(self.ratio <= MULTIPLIERS[dtype])


@dataclass(frozen=True)
class AccuracyVerdict:
    """What a model's verdict carries about the fp64 reference (``ModelVerdict.accuracy``): the measurement, the
    ratio limit it was held to (the class's ``max_accuracy_ratio`` times ``scale``, the expected error ratio of the
    candidate's precision to the baseline's when it is judged at its own lower class, else 1), whether the ratio
    is the primary gate (``judge_by = "accuracy"``), and how reports name the two sides ("the server")."""

    measured: Accuracy
    limit: float
    scale: float
    gate: bool
    sides: Tuple[str, str]
    reference: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AccuracyVerdict:
        """As serialized (``asdict``; a report.json as read: lists where tuples were)."""
        m = dict(data["measured"])
        pairs = lambda items: tuple(tuple(i) for i in items)  # noqa: E731
        side = lambda s: SideError(s["rmse"], s["max_abs"], tuple((str(i), float(e)) for i, e in s["worst"]))  # noqa: E731
        measured = Accuracy(**{**m, "baseline": side(m["baseline"]), "candidate": side(m["candidate"]),
                               "buckets": tuple(Bucket(**b) for b in m["buckets"]), "truncated": pairs(m["truncated"])})
        return cls(**{**data, "measured": measured, "sides": tuple(data["sides"])})


class _Side:
    """Running sums of one side: squares (overall, per bucket), the largest difference, the worst texts."""

    def __init__(self) -> None:
        self.squares, self.max_abs, self.bad = 0.0, 0.0, False
        self.bucket_squares = np.zeros(len(TOKEN_EDGES))
        self.worst: List[Tuple[float, str]] = []

    def add(self, ids: np.ndarray, diff: np.ndarray, per_text: np.ndarray, bucket: Optional[np.ndarray]) -> None:
        finite = np.isfinite(diff)
        self.bad |= not bool(finite.all())
        diff = np.where(finite, diff, 0.0)
        self.squares += float(np.square(diff).sum())
        self.max_abs = max(self.max_abs, float(np.abs(diff).max(initial=0.0)))
        if bucket is not None:
            self.bucket_squares += np.bincount(bucket, weights=np.square(diff).sum(axis=1), minlength=len(TOKEN_EDGES))
        keep = np.argsort(-per_text, kind="stable")[:WORST]
        merged = self.worst + [(float(per_text[i]), str(ids[i])) for i in keep]
        self.worst = sorted(merged, key=lambda pair: -pair[0])[:WORST]

    def result(self, values: int) -> SideError:
        rmse = float("inf") if self.bad else float(np.sqrt(self.squares / max(values, 1)))
        return SideError(rmse, float("inf") if self.bad else self.max_abs, tuple((i, e) for e, i in self.worst))


@dataclass
class Accumulator:
    """Accuracy of one model, fed block by block (aligned rows of reference, baseline and candidate)."""

    rows: int = 0
    width: int = 0
    _sides: Tuple[_Side, _Side] = field(default_factory=lambda: (_Side(), _Side()))
    _worse: List[int] = field(default_factory=lambda: [0, 0])
    _bucket_texts: np.ndarray = field(default_factory=lambda: np.zeros(len(TOKEN_EDGES), dtype=np.int64))
    _tokens: bool = False
    _mismatches: int = 0
    _truncated: List[Tuple[str, str]] = field(default_factory=list)

    def add(self, ids: Sequence[str] | np.ndarray, reference: np.ndarray, baseline: np.ndarray, candidate: np.ndarray, *,
            tokens: Optional[np.ndarray] = None, truncated: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]] = None,
            ) -> None:
        """One block: ``ids`` (n,), values (n, dim) vectors or (n,) scores, ``tokens`` (n,) token counts of the
        reference's texts, ``truncated`` the (n,) flags of reference, baseline and candidate."""
        names = np.asarray(ids)
        arrays = [np.asarray(a, dtype=np.float64) for a in (reference, baseline, candidate)]
        if {a.shape for a in arrays} != {arrays[0].shape} or len(arrays[0]) != len(ids):
            raise HarnessError(f"accuracy: shapes differ (reference {np.shape(reference)}, baseline "
                               f"{np.shape(baseline)}, candidate {np.shape(candidate)}, {len(ids)} ids)")
        arrays = [a.reshape(len(ids), -1) for a in arrays]
        if self.width and arrays[0].shape[1] != self.width:
            raise HarnessError(f"accuracy: a block of width {arrays[0].shape[1]} after blocks of width {self.width}")
        self.width, self.rows = arrays[0].shape[1], self.rows + len(ids)
        bucket = None
        if tokens is not None:
            self._tokens = True
            bucket = np.searchsorted(TOKEN_EDGES, np.asarray(tokens), side="right") - 1
            self._bucket_texts += np.bincount(bucket, minlength=len(TOKEN_EDGES))
        per_text = []
        for side, values in zip(self._sides, arrays[1:]):
            diff = values - arrays[0]
            errors = np.sqrt(np.mean(np.square(diff), axis=1))
            per_text.append(np.where(np.isfinite(errors), errors, np.inf))
            side.add(names, diff, per_text[-1], bucket)
        self._worse[0] += int(np.count_nonzero(per_text[1] > per_text[0]))
        self._worse[1] += int(np.count_nonzero(per_text[0] > per_text[1]))
        if truncated is not None:
            ref = np.asarray(truncated[0], dtype=bool)
            for name, flags in (("baseline", truncated[1]), ("candidate", truncated[2])):
                differs = np.flatnonzero(np.asarray(flags, dtype=bool) != ref)
                self._mismatches += len(differs)
                self._truncated += [(str(names[i]), name) for i in differs[: WORST - len(self._truncated)]]

    def result(self) -> Accuracy:
        """The accuracy of every block added so far."""
        values = self.rows * self.width
        base, cand = (side.result(values) for side in self._sides)
        if base.rmse == 0.0:
            ratio = 1.0 if cand.rmse == 0.0 else float("inf")
        else:
            ratio = cand.rmse / base.rmse
        buckets = []
        if self._tokens:
            for i, texts in enumerate(self._bucket_texts):
                if texts:
                    rmse = [float(np.sqrt(s.bucket_squares[i] / (texts * self.width))) for s in self._sides]
                    high = TOKEN_EDGES[i + 1] - 1 if i + 1 < len(TOKEN_EDGES) else None
                    buckets.append(Bucket(max(TOKEN_EDGES[i], 1), high, int(texts), rmse[0], rmse[1]))
        return Accuracy(self.rows, base, cand, ratio, self._worse[0], self._worse[1], tuple(buckets),
                        self._mismatches, tuple(self._truncated))


def accuracy(ids: Sequence[str], reference: np.ndarray, baseline: np.ndarray, candidate: np.ndarray, *,
             tokens: Optional[np.ndarray] = None, truncated: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]] = None,
             block_rows: int = 65_536) -> Accuracy:
    """The accuracy of one model's aligned arrays (whole, in memory), computed ``block_rows`` rows at a time."""
    acc = Accumulator()
    for start in range(0, max(len(ids), 1), block_rows):
        part = slice(start, start + block_rows)
        flags = None if truncated is None else (truncated[0][part], truncated[1][part], truncated[2][part])
        acc.add(np.asarray(ids)[part], reference[part], baseline[part], candidate[part],
                tokens=None if tokens is None else np.asarray(tokens)[part], truncated=flags)
    return acc.result()
