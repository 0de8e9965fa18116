"""One model's verdict, the same for every entry point: its kind's judge (``harness.compare.kinds``) on the two
files, the vector pages verified before a difference is called drift or a value refused, and the accuracy against
the fp64 reference the judge's pass fed (``harness.compare.accuracy``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from harness.compare import accuracy, certify
from harness.compare.kinds.embedding import judge_embeddings
from harness.compare.kinds.rerank import judge_rerank_files
from harness.compare.kinds.source import FilePair
from harness.compare.scenarios import ScenarioRequest
from harness.config.environment import CompareSettings
from harness.config.policy import Tolerance
from harness.config.project import IndexSettings
from harness.errors import UnusableValues
from harness.results import ResultsFile
from harness.verdict import ModelVerdict, Status

__all__ = ["ModelPlan", "judge_model"]


@dataclass(frozen=True)
class ModelPlan:
    """What the two runs' records decide of one model before any vector is read (the comparator plans it): the
    tolerance it is judged by, the quantized precision both sides' vectors have (None: float vectors), how much
    larger an error against fp64 the judged class expects than the baseline's own (>= 1), whether the policy
    judges by that accuracy alone (``judge_by = "accuracy"``), which side was served."""

    model_id: str
    tol: Tolerance
    precision: Optional[str]
    accuracy_scale: float
    judge_by_accuracy: bool
    served: Tuple[bool, bool]


def judge_model(base: ResultsFile, cand: ResultsFile, plan: ModelPlan, settings: CompareSettings,
                index: Optional[IndexSettings], ref: Optional[ResultsFile]) -> ModelVerdict:
    """The verdict on one model that both sides ran: its kind's judge, with the accuracy against ``ref`` (fp64) its
    pass feeds (none for quantized vectors, judged in bits). Vectors are streamed without their page checksums:
    verified before a difference is called drift."""
    model_id, tol = plan.model_id, plan.tol
    tap = (accuracy.Tap(ref, base, cand, model_id, scale=plan.accuracy_scale, gate=plan.judge_by_accuracy,
                        served=plan.served) if ref and not plan.precision else None)
    if base.records[model_id].kind != "bi-encoder":
        verdict = judge_rerank_files(base, cand, model_id, tol, tap)
    else:
        try:
            pair = FilePair(base, cand, model_id, settings)
            verdict = judge_embeddings(model_id, tol, pair, plan.precision, tap=tap,
                                       certificate=None if plan.precision else certify.hint(pair, tol),
                                       scenarios=ScenarioRequest(index, plan.served[1]))
        except UnusableValues:  # non-finite or zero rows: a corrupted page is named as such
            for results in (base, cand):
                results.verify_vectors(model_id)
            raise
        if verdict.status is Status.FAIL:  # bit rot reads as a broken file (exit 2), never as drift
            # the pages that prove it: the largest difference's row when it is beyond its own allowance (a corrupted
            # page elsewhere changes no verdict then), else every page (with rtol it need not be the largest)
            at = verdict.evidence.max_abs
            alone = (at is not None and at.baseline is not None and at.value > tol.atol + tol.rtol * abs(at.baseline)
                     and any(c.name == "max_abs_diff" for c in verdict.failed_checks))
            for results in (base, cand):
                results.verify_vectors(model_id, [at.id] if alone and at is not None else None)
    return accuracy.apply(verdict, tap, tol)
