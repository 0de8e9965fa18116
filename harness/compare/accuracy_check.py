"""The fp64 reference in the verdict: each side's error against it, the ``accuracy_ratio`` check, and the gate.

The ratio may be at most the class's ``max_accuracy_ratio`` times ``scale``: 1, unless the candidate is judged at
its own lower class, whose expected loss (``precision_error_ratio``) it is then allowed. With
``judge_by = "accuracy"`` the ratio decides the status and the tolerance checks are reported, not judged.
"""

from __future__ import annotations

import dataclasses
import os
from typing import List, Optional, Tuple, Union

import numpy as np
import pyarrow as pa

from harness.compare import quantized
from harness.compare.accuracy import Accumulator, AccuracyVerdict
from harness.compare.kinds.common import significant
from harness.compare.policy import Policy, Tolerance, auto_class, is_served
from harness.compare.verdict import Check, ModelVerdict, Status
from harness.compare.workers import Segment
from harness.errors import IncompatibleInputs, PolicyError
from harness.reference import check_reference, reference_path
from harness.results import ResultsFile, arrow_to_numpy, single_chunk

__all__ = ["NO_REFERENCE", "Tap", "apply", "find", "tap"]

NO_REFERENCE = "no fp64 reference: accuracy not measured (harness baseline reference NAME makes one)"


def find(base: ResultsFile, given: Union[ResultsFile, str, os.PathLike[str], None] = None) -> Optional[ResultsFile]:
    """The reference to use: ``given``, else ``NAME.reference.parquet`` beside the baseline, else None; refused
    (``IncompatibleInputs``, exit 2) when it is not an fp64 run of the baseline's corpus and models."""
    if given is None:
        beside = reference_path(base.path)
        if not beside.is_file():
            return None
        given = beside
    ref = given if isinstance(given, ResultsFile) else ResultsFile(given)
    check_reference(ref, base)
    return ref


class Tap:
    """One model's ``Accumulator`` fed from the verdict's own pass: each aligned segment of baseline and candidate
    values (in order) with the reference's rows for it, read alongside, so nothing is read twice (memory: the ids
    and truncation flags, and a row group of each file). Reference rows other than the baseline's (ids, order,
    number) are refused when it is made, before the pass."""

    def __init__(self, ref: ResultsFile, base: ResultsFile, cand: ResultsFile, model_id: str) -> None:
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


def _scale(policy: Policy, model_id: str, tol: Tolerance, base: ResultsFile, cand: ResultsFile) -> float:
    """The expected error ratio of the class judged at over the baseline's precision class (1 when the same)."""
    try:
        own = policy.tolerance(model_id, auto_class(base.fingerprint, base.models.get(model_id)))
    except PolicyError:  # a policy without the baseline's precision class: no expected loss known
        return 1.0
    return max(tol.precision_error_ratio / own.precision_error_ratio, 1.0)


def _sides(base: ResultsFile, cand: ResultsFile, model_id: str) -> Tuple[str, str]:
    served = [is_served(f.models.get(model_id)) for f in (base, cand)]
    if served[0] != served[1]:
        return ("the server", "the library") if served[0] else ("the library", "the server")
    return "the baseline", "the candidate"


def tap(ref: Optional[ResultsFile], base: ResultsFile, cand: ResultsFile, model_id: str) -> Optional[Tap]:
    """The ``Tap`` the verdict's pass feeds; None without a reference and for quantized vectors (judged in bits)."""
    precisions = {f.records[model_id].precision for f in (base, cand)}
    return None if ref is None or precisions & set(quantized.PRECISIONS) else Tap(ref, base, cand, model_id)


def apply(verdict: ModelVerdict, fed: Optional[Tap], base: ResultsFile, cand: ResultsFile, tol: Tolerance,
          policy: Policy) -> ModelVerdict:
    """``verdict`` with its accuracy against the reference (what the pass ``fed``) and the ``accuracy_ratio`` check
    (the status re-judged); unchanged without a reference, for a model not compared, and for quantized vectors."""
    model_id = verdict.model_id
    if fed is None or verdict.status not in (Status.PASS, Status.FAIL) or verdict.quantized:
        return verdict
    measured, ref = fed.acc.result(), fed.ref
    scale = _scale(policy, model_id, tol, base, cand)
    limit = tol.max_accuracy_ratio * scale
    gate = policy.judge_by == "accuracy"
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
        accuracy=AccuracyVerdict(measured, limit, scale, gate, _sides(base, cand, model_id), str(ref.path)))
