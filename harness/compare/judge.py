"""One model's verdict, the same for every entry point: its kind's judge (``harness.compare.kinds``) on the two
files, the vector pages verified before a difference is called drift or a value refused, and the accuracy against
the fp64 reference the judge's pass fed (``harness.compare.accuracy``).
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from harness.compare import accuracy, certify, kinds, quantized
from harness.compare.kinds.embedding import ScenarioRequest
from harness.config.environment import CompareSettings
from harness.config.policy import Policy, Tolerance
from harness.config.project import IndexSettings
from harness.errors import UnusableValues
from harness.results import ResultsFile
from harness.verdict import ModelVerdict, Status

__all__ = ["judge_model"]


def _witness(verdict: ModelVerdict, tol: Tolerance) -> Optional[List[str]]:
    """The rows whose pages prove a failure: the row of the largest difference when that element is itself beyond
    its allowance (``atol + rtol * |baseline|``): a corrupted page elsewhere changes no verdict then, its bytes move
    a row less or that row would be the largest. None for any other failure (every page): with ``rtol`` the failing
    element need not be the largest difference."""
    at = verdict.evidence.max_abs
    failed = any(c.name == "max_abs_diff" for c in verdict.failed_checks)
    if failed and at is not None and at.baseline is not None and at.value > tol.atol + tol.rtol * abs(at.baseline):
        return [at.id]
    return None


def judge_model(base: ResultsFile, cand: ResultsFile, model_id: str, tol: Tolerance, policy: Policy,
                settings: CompareSettings, index: Optional[IndexSettings], ref: Optional[ResultsFile], own_class: str,
                served: Tuple[bool, bool]) -> ModelVerdict:
    """The verdict on one model that both sides ran: its kind's judge, with the accuracy against ``ref`` (fp64) its
    pass feeds (none for quantized vectors, judged in bits); ``own_class``, ``served``: the runs' facts, read by the
    comparator. Vectors are streamed without their page checksums: verified before a difference is called drift."""
    rec_b, rec_c = base.records[model_id], cand.records[model_id]
    quantized_run = rec_b.precision in quantized.PRECISIONS or rec_c.precision in quantized.PRECISIONS
    tap = accuracy.Tap(ref, base, cand, model_id, own_class, served) if ref and not quantized_run else None
    if rec_b.kind != "bi-encoder":
        verdict = kinds.judge_rerank_files(base, cand, model_id, tol, tap)
    else:
        try:
            if quantized_run:
                precision = kinds.file_precision(base, cand, model_id)
                verdict = kinds.judge_quantized(model_id, tol, kinds.FilePair(base, cand, model_id, settings), precision)
            else:
                pair = kinds.FilePair(base, cand, model_id, settings)
                verdict = kinds.judge_embeddings(model_id, tol, pair, certificate=certify.hint(pair, tol),  # a hint
                                                 scenarios=ScenarioRequest(index, served[1]), tap=tap)
        except UnusableValues:  # non-finite or zero rows: a corrupted page is named as such
            for results in (base, cand):
                results.verify_vectors(model_id)
            raise
        if verdict.status is Status.FAIL:  # bit rot reads as a broken file (exit 2), never as drift
            witness = _witness(verdict, tol)
            for results in (base, cand):
                results.verify_vectors(model_id, witness)
    return accuracy.apply(verdict, tap, tol, policy)
