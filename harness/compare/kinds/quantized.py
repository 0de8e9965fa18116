"""Quantized embeddings, judged as integers (``harness.compare.quantized``): bits flipped or buckets moved per
text, the share of texts that changed, and top-k agreement of retrieval by the quantized scores.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from harness.compare import quantized
from harness.compare.kinds.common import WORST_N, build_verdict, topk_checks
from harness.compare.kinds.embedding import retrieval_k
from harness.compare.kinds.retrieval import Retrieval, RetrievalWorker, run_pass
from harness.compare.kinds.source import EmbeddingPair
from harness.compare.policy import Tolerance
from harness.compare.verdict import Check, ModelVerdict, Offender
from harness.errors import IncompatibleInputs, ResultsFileError
from harness.results import ResultsFile

__all__ = ["file_precision", "judge_quantized"]


def file_precision(base: ResultsFile, cand: ResultsFile, model_id: str) -> str:
    """The precision both files' vectors of ``model_id`` have; refuses different ones, or vectors stored in
    another dtype than their precision's."""
    precisions = [f.records[model_id].precision or "float32" for f in (base, cand)]
    if precisions[0] != precisions[1]:
        raise IncompatibleInputs(
            f"{cand.path}: model '{model_id}' vectors are {precisions[1]}, the baseline's {precisions[0]}: "
            "compare a quantized run only with a baseline of the same precision"
        )
    precision = precisions[0]
    expected = quantized.STORED_DTYPE[precision]
    for side in (base, cand):
        stored = side.vector_spec(model_id)[1]
        if stored != expected:
            raise ResultsFileError(f"{side.path}: model '{model_id}' is {precision} but its vectors are stored as "
                                   f"{stored} (expected {expected})")
    return precision


class _Worker(RetrievalWorker):
    """One thread's accumulators: the per-text figures, and the first query batch's retrieval by quantized scores."""

    def __init__(self, pair: EmbeddingPair, precision: str, retrieval: Optional[Retrieval]) -> None:
        super().__init__(retrieval)
        self.stats = quantized.QuantizedStats(precision, bits_per_row=pair.dim * 8, worst_n=WORST_N)

    def add(self, position: int, base: np.ndarray, cand: np.ndarray, squares: Any = None) -> None:
        self.stats.add(position, base, cand)
        super().add(position, base, cand)

    def merge(self, other: RetrievalWorker) -> None:
        assert isinstance(other, _Worker)
        self.stats.merge(other.stats)
        super().merge(other)


def judge_quantized(model_id: str, tol: Tolerance, pair: EmbeddingPair, precision: str) -> ModelVerdict:
    """The verdict on one bi-encoder's quantized vectors (both sides of ``precision``, aligned by the pair)."""
    k = retrieval_k(pair, tol.topk)
    retrieval = (Retrieval(pair, k, tol.tie_tolerance,
                           scoring=lambda rows: quantized.scoring_floats(rows, precision)) if k is not None else None)
    first = run_pass(pair, [_Worker(pair, precision, retrieval) for _ in range(max(1, pair.threads))], retrieval)
    stats = first.stats
    agreement = retrieval.finish(first.topk)[0] if retrieval is not None and first.topk is not None else None
    limit_key = quantized.limit_key(precision)
    limit = getattr(tol, limit_key)
    bits = limit_key == "max_bit_flips"
    unit = "bits flipped" if bits else "bucket(s) moved"
    metrics: Dict[str, Any] = {"texts": pair.rows, "dim": pair.dim, **stats.metrics()}
    changed, fraction = stats.rows_changed, metrics["rows_changed_fraction"]
    checks = [
        Check(limit_key, float(stats.most), float(limit), "<=", stats.most <= limit,
              f"{changed} / {pair.rows} texts changed; the most in one text: {stats.most} {unit}"),
        Check("changed_fraction", fraction, tol.max_changed_fraction, "<=", fraction <= tol.max_changed_fraction,
              f"{changed} / {pair.rows} texts differ in at least one {'bit' if bits else 'element'}"),
    ]
    evidence: Dict[str, Any] = {
        "kind": "quantized", "precision": precision, "limit_key": limit_key,
        "worst": [{"id": pair.item_id(w.row), "row": w.row, "value": w.value, "dims": w.dims} for w in stats.worst],
    }
    min_passing: Dict[str, float] = {limit_key: float(stats.most), "max_changed_fraction": fraction}
    if agreement is not None:
        checks += topk_checks(tol, agreement, pair, metrics, evidence, min_passing, quantized_scores=True)
    where = "bit(s)" if bits else "dimension(s)"
    offenders = [Offender(pair.item_id(w.row), float(w.value), limit_key, f"{unit}; {where} {', '.join(map(str, w.dims))}")
                 for w in stats.worst]
    return build_verdict(model_id, "bi-encoder", tol, checks, metrics, offenders, min_passing, evidence)
