"""Quantized embeddings (precision int8/uint8/binary/ubinary), judged as integers (``harness.compare.quantized``):
bits flipped or buckets moved per text, the share of texts that changed at all, and the top-k agreement of
retrieval by the quantized scores (Hamming distance for bits). Files and arrays alike, through a pair source.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from harness.compare import quantized
from harness.compare.kinds.common import WORST_N, build_verdict, topk_checks
from harness.compare.kinds.embedding import retrieval_k
from harness.compare.kinds.retrieval import Retrieval
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


class _Worker:
    """One thread's accumulators: the per-text figures (``QuantizedStats``), and the top-k agreement of
    retrieval by the quantized scores (the first query batch's: ``kinds.retrieval`` runs the others)."""

    def __init__(self, pair: EmbeddingPair, precision: str, retrieval: Optional[Retrieval]) -> None:
        self.retrieval = retrieval
        self.stats = quantized.QuantizedStats(precision, bits_per_row=pair.dim * 8, worst_n=WORST_N)
        self.topk = retrieval.accumulators() if retrieval is not None else None

    def __call__(self, segment: Tuple[int, np.ndarray, np.ndarray]) -> None:
        self.stats.add(*segment)
        if self.retrieval is not None and self.topk is not None:  # the rows as retrieval scores them
            self.retrieval.add_segment(self.topk, *segment)


def judge_quantized(model_id: str, tol: Tolerance, pair: EmbeddingPair, precision: str) -> ModelVerdict:
    """The verdict on one bi-encoder's quantized vectors (both sides of ``precision``, aligned by the pair)."""
    k = retrieval_k(pair, tol.topk)
    retrieval = (Retrieval(pair, k, tol.tie_tolerance,
                           scoring=lambda rows: quantized.scoring_floats(rows, precision)) if k is not None else None)
    workers = [_Worker(pair, precision, retrieval) for _ in range(max(1, pair.threads))]
    pair.feed(workers, held_bytes=retrieval.held_bytes if retrieval is not None else 0,
              what=retrieval.pass_name(0) if retrieval is not None else "")
    stats, merged = workers[0].stats, workers[0].topk
    for other in workers[1:]:
        stats.merge(other.stats)
        if merged is not None and other.topk is not None:
            merged.merge(other.topk)
    agreement = retrieval.finish(merged)[0] if retrieval is not None and merged is not None else None
    limit_key = quantized.limit_key(precision)
    limit = getattr(tol, limit_key)
    bits = limit_key == "max_bit_flips"
    unit = "bits flipped" if bits else "bucket(s) moved"
    metrics: Dict[str, Any] = {"texts": pair.rows, "dim": pair.dim, **stats.metrics()}
    changed, fraction = stats.rows_changed, metrics["rows_changed_fraction"]
    checks = [
        Check(name=limit_key, observed=float(stats.most), limit=float(limit), op="<=", passed=stats.most <= limit,
              detail=f"{changed} / {pair.rows} texts changed; the most in one text: {stats.most} {unit}"),
        Check(name="changed_fraction", observed=fraction, limit=tol.max_changed_fraction,
              op="<=", passed=fraction <= tol.max_changed_fraction,
              detail=f"{changed} / {pair.rows} texts differ in at least one {'bit' if bits else 'element'}"),
    ]
    evidence: Dict[str, Any] = {
        "kind": "quantized", "precision": precision, "limit_key": limit_key,
        "worst": [{"id": pair.item_id(w.row), "row": w.row, "value": w.value, "dims": w.dims} for w in stats.worst],
    }
    if agreement is not None:
        more, evidence["topk"] = topk_checks(tol, agreement, lambda i: pair.item_id(int(pair.queries[i])),
                                             metrics, quantized_scores=True)
        checks += more
    where = "bit(s)" if bits else "dimension(s)"
    offenders = [Offender(item_id=pair.item_id(w.row), value=float(w.value), metric=limit_key,
                          detail=f"{unit}; {where} {', '.join(map(str, w.dims))}") for w in stats.worst]
    min_passing: Dict[str, float] = {limit_key: float(stats.most), "max_changed_fraction": fraction}
    if "topk" in metrics:
        min_passing.update(min_quantized_topk_order_agreement=metrics["topk_order_agreement"],
                           min_quantized_topk_set_agreement=metrics["topk_set_agreement"])
    return build_verdict(model_id, "bi-encoder", tol, checks, metrics, offenders, min_passing, evidence)
