"""Accuracy against an fp64 reference: is a drift normal rounding, or a loss of accuracy, and which side is wrong?

Two fp32 runs differ by rounding and neither is "right"; an fp64 run is right to about 1e-16, so each side's error
against it can be measured (``docs/how-to/reference.md``). The verdict's own pass feeds the ``Tap`` (nothing read
twice) and ``apply`` adds the ``accuracy_ratio`` check (candidate RMSE / baseline RMSE, PyTorch's rule).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa

from harness.compare.kinds.common import significant
from harness.compare.workers import Segment
from harness.config.policy import Tolerance
from harness.errors import HarnessError, IncompatibleInputs
from harness.results import ResultsFile, arrow_to_numpy, single_chunk
from harness.verdict import MULTIPLIERS, Accuracy, AccuracyVerdict, Bucket, Check, ModelVerdict, SideError, Status

__all__ = ["MULTIPLIERS", "TOKEN_EDGES", "Accumulator", "Accuracy", "AccuracyVerdict", "Bucket", "SideError", "Tap",
           "accuracy", "apply"]

#: token-count bucket lower edges: 1-16, 17-32, ..., 257-512, 513 and more
TOKEN_EDGES: Tuple[int, ...] = (0, 17, 33, 65, 129, 257, 513)
WORST = 10


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
        ratio = cand.rmse / base.rmse if base.rmse else 1.0 if cand.rmse == 0.0 else float("inf")
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


class Tap:
    """One model's ``Accumulator`` fed from the verdict's own pass, the reference's rows read alongside (nothing
    read twice); reference rows other than the baseline's are refused when it is made, before the pass. It carries
    what ``apply`` needs of the two runs, planned by the comparator: the class's expected error ``scale``, whether
    the accuracy alone is the ``gate`` (``judge_by = "accuracy"``), which side is ``served``."""

    def __init__(self, ref: ResultsFile, base: ResultsFile, cand: ResultsFile, model_id: str, *, scale: float,
                 gate: bool, served: Tuple[bool, bool]) -> None:
        self.ref, self.model_id, self.acc, self.offset = ref, model_id, Accumulator(), 0
        self.column = "vector" if base.records[model_id].kind == "bi-encoder" else "score"
        self.tokens = "tokens" in ref.arrow_schema.names
        self.tables, self.head = ref.model_table(model_id, [self.column, *["tokens"][: self.tokens]]), pa.table({})
        self.ids, base_ids = (f.model_columns(model_id, ["item_id"])["item_id"] for f in (ref, base))
        if not self.ids.equals(base_ids):
            where = f"{len(self.ids)} rows, the baseline {len(base_ids)}"
            if len(self.ids) == len(base_ids):
                differ = arrow_to_numpy(single_chunk(self.ids)) != arrow_to_numpy(single_chunk(base_ids))
                where = f"at '{self.ids[int(np.flatnonzero(differ)[0])]}'"
            raise IncompatibleInputs(f"{ref.path}: model '{model_id}': rows differ from {base.path} ({where})")
        flags = [f.model_columns(model_id, ["truncated"])["truncated"] if "truncated" in f.arrow_schema.names else None
                 for f in (ref, base, cand)]
        self.flags = [arrow_to_numpy(single_chunk(f)) for f in flags if f is not None and not f.null_count]
        self.scale, self.gate = scale, gate
        self.sides = ("the baseline", "the candidate")
        if served[0] != served[1]:
            self.sides = ("the server", "the library") if served[0] else ("the library", "the server")

    def __call__(self, segment: Segment) -> None:
        position, rows = segment[0], len(segment[1])
        parts: List[pa.Table] = []
        taken = 0
        while taken < rows:  # the reference's next rows, across its row groups
            if self.offset == len(self.head):
                self.head, self.offset = next(self.tables), 0
            parts.append(self.head.slice(self.offset, rows - taken))
            self.offset += len(parts[-1])
            taken += len(parts[-1])
        table, at = pa.concat_tables(parts), slice(position, position + rows)
        tokens = table.column("tokens") if self.tokens and not table.column("tokens").null_count else None
        values = (self.ref._vectors(self.model_id, table.column(self.column)) if self.column == "vector"
                  else arrow_to_numpy(table.column(self.column)))
        self.acc.add(arrow_to_numpy(single_chunk(self.ids.slice(position, rows))), values, segment[1], segment[2],
                     tokens=None if tokens is None else arrow_to_numpy(tokens),
                     truncated=tuple(f[at] for f in self.flags) if len(self.flags) == 3 else None)  # type: ignore[arg-type]


def apply(verdict: ModelVerdict, fed: Optional[Tap], tol: Tolerance) -> ModelVerdict:
    """``verdict`` with its accuracy against the reference (what the pass ``fed``) and the ``accuracy_ratio`` check
    (the status re-judged); unchanged without a reference, for a model not compared, and for quantized vectors."""
    if fed is None or verdict.status not in (Status.PASS, Status.FAIL) or verdict.metrics.quantized:
        return verdict
    measured, ref, scale = fed.acc.result(), fed.ref, fed.scale
    limit = tol.max_accuracy_ratio * scale
    gate = fed.gate
    detail = (f"candidate RMSE {measured.candidate.rmse:.3g} / baseline RMSE {measured.baseline.rmse:.3g} against "
              f"fp64" + (f"; limit {tol.max_accuracy_ratio:g} x {scale:,.0f} (judged at its own class)" if scale != 1 else ""))
    check = Check("accuracy_ratio", measured.ratio, limit, "<=", bool(measured.ratio <= limit), detail)
    checks = [*verdict.checks, check]
    judged = [check] if gate else checks
    min_passing = dict(verdict.min_passing)
    ratio = f"accuracy_ratio {significant(check.observed, limit)} (limit <= {significant(limit, check.observed)})"
    reason = [verdict.reason] if verdict.reason and not gate else []
    if not check.passed:
        min_passing["max_accuracy_ratio"] = measured.ratio / scale
        reason.append(f"{ratio}: less accurate than the baseline, {detail}")
    elif verdict.status is Status.FAIL:
        reason.append(f"other rounding, equally accurate: {ratio}" + ("; the tolerance checks are reported, not judged "
                                                                       "(judge_by = \"accuracy\")" if gate
                                                                       else "; the gate stays the tolerances"))
    return dataclasses.replace(
        verdict, checks=checks, min_passing=min_passing, reason="; ".join(reason),
        status=Status.PASS if all(c.passed for c in judged) else Status.FAIL,
        accuracy=AccuracyVerdict(measured, limit, scale, gate, fed.sides, str(ref.path)))
