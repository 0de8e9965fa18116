"""The fp64 reference in the verdict: each side's error against it, the ratio check, and the gate.

The comparator calls ``find`` once (the reference beside the baseline, ``NAME.reference.parquet``, or the one
given; ``check_reference`` refuses a wrong one) and ``apply`` per model. ``apply`` reads the three files block by
block in their canonical order (each model's rows by id), so memory is a row group per file whatever the size,
and adds the ``accuracy_ratio`` check: candidate RMSE / baseline RMSE against fp64 at most the class's
``max_accuracy_ratio`` (PyTorch's fp64 rule, m = 2 for fp32, 3 for fp16/bf16) times ``scale``. ``scale`` is 1
unless the candidate is judged at its own class, lower than the baseline's: then it is the ratio of the two
classes' measured ``precision_error_ratio`` (bf16 14,698x fp32's error on an H100), since that loss is expected.
With ``judge_by = "accuracy"`` the ratio decides the status and the tolerance checks are reported, not judged.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from harness.compare import quantized
from harness.compare.accuracy import Accumulator, AccuracyVerdict
from harness.compare.kinds.common import significant
from harness.compare.policy import Policy, Tolerance, auto_class, is_served
from harness.compare.verdict import Check, ModelVerdict, Status
from harness.errors import IncompatibleInputs, PolicyError
from harness.reference import check_reference, reference_path
from harness.results import ResultsFile
from harness.results.reader import arrow_to_numpy

__all__ = ["NO_REFERENCE", "apply", "find"]

NO_REFERENCE = "no fp64 reference: accuracy not measured (harness baseline reference NAME makes one)"
Block = Dict[str, np.ndarray]


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


def _blocks(results: ResultsFile, model_id: str, column: str) -> Iterator[Block]:
    """One model's ids, values and (where recorded) token counts and truncation flags, row group by row group."""
    names = results.arrow_schema.names
    extra = [c for c in ("tokens", "truncated") if c in names]
    for table in results.model_table(model_id, ["item_id", column, *extra]):
        values = (results._vectors(model_id, table.column(column)) if column == "vector"
                  else arrow_to_numpy(table.column(column)))
        block = {"ids": arrow_to_numpy(table.column("item_id")), "values": values}
        block.update({c: arrow_to_numpy(table.column(c)) for c in extra if not table.column(c).null_count})
        yield block


def _aligned(streams: Sequence[Iterator[Block]]) -> Iterator[List[Block]]:
    """Cut three streams of blocks (row groups of different sizes) into aligned blocks of equal length."""
    heads: List[Optional[Block]] = [None] * len(streams)
    while True:
        for i, stream in enumerate(streams):
            while heads[i] is None or not len(heads[i]["ids"]):  # type: ignore[index]
                heads[i] = next(stream, None)
                if heads[i] is None:
                    break
        if any(h is None for h in heads):
            if not all(h is None for h in heads):
                raise IncompatibleInputs("the reference, baseline and candidate have different numbers of rows")
            return
        n = min(len(h["ids"]) for h in heads)  # type: ignore[index]
        yield [{k: v[:n] for k, v in h.items()} for h in heads]  # type: ignore[union-attr]
        heads = [{k: v[n:] for k, v in h.items()} for h in heads]  # type: ignore[union-attr]


def _measure(ref: ResultsFile, base: ResultsFile, cand: ResultsFile, model_id: str, column: str) -> Accumulator:
    acc = Accumulator()
    files = (ref, base, cand)
    for blocks in _aligned([_blocks(f, model_id, column) for f in files]):
        for f, block in zip(files[1:], blocks[1:]):
            if not np.array_equal(block["ids"], blocks[0]["ids"]):
                first = block["ids"][np.flatnonzero(block["ids"] != blocks[0]["ids"])[0]]
                raise IncompatibleInputs(f"{ref.path}: model '{model_id}': rows differ from {f.path} (at '{first}')")
        flags = tuple(b.get("truncated") for b in blocks)
        acc.add(blocks[0]["ids"], *(b["values"] for b in blocks), tokens=blocks[0].get("tokens"),
                truncated=flags if all(f is not None for f in flags) else None)  # type: ignore[arg-type]
    return acc


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


def apply(verdict: ModelVerdict, ref: Optional[ResultsFile], base: ResultsFile, cand: ResultsFile, tol: Tolerance,
          policy: Policy) -> ModelVerdict:
    """``verdict`` with its accuracy against ``ref`` and the ``accuracy_ratio`` check (the status re-judged);
    unchanged without a reference, for a model not compared, and for quantized vectors (judged in bits)."""
    model_id = verdict.model_id
    record = base.records[model_id]
    if (ref is None or verdict.status not in (Status.PASS, Status.FAIL) or verdict.quantized
            or record.precision in quantized.PRECISIONS):
        return verdict
    column = "vector" if record.kind == "bi-encoder" else "score"
    measured = _measure(ref, base, cand, model_id, column).result()
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
