"""Quantized embeddings (int8, uint8, binary, ubinary) judged as the integers they are: the most bits flipped or
buckets moved in one text and the share of texts changed (``harness.compare.quantized``), and the top-k by the
quantized scores, coarser than float's.
"""

from __future__ import annotations

import dataclasses
from typing import Dict

from harness.compare import quantized
from harness.compare.kinds.common import WORST_N, build_verdict, with_topk
from harness.compare.kinds.retrieval import Retrieval, first_pass, retrieval_k
from harness.compare.kinds.source import EmbeddingPair
from harness.config.policy import Tolerance
from harness.errors import IncompatibleInputs, ResultsFileError
from harness.measured import At
from harness.results import ResultsFile
from harness.verdict import Check, Evidence, ModelVerdict, Offender

__all__ = ["file_precision", "judge_quantized"]


def file_precision(base: ResultsFile, cand: ResultsFile, model_id: str) -> str:
    """The precision both files' vectors of ``model_id`` have; refuses different ones, or vectors stored in
    another dtype than their precision's."""
    precisions = [f.records[model_id].precision or "float32" for f in (base, cand)]
    if precisions[0] != precisions[1]:
        raise IncompatibleInputs(f"{cand.path}: model '{model_id}' vectors are {precisions[1]}, the baseline's "
                                 f"{precisions[0]}: compare a quantized run only with a baseline of the same precision")
    precision = precisions[0]
    expected = quantized.STORED_DTYPE[precision]
    for side in (base, cand):
        stored = side.vector_spec(model_id)[1]
        if stored != expected:
            raise ResultsFileError(f"{side.path}: model '{model_id}' is {precision} but its vectors are stored as "
                                   f"{stored} (expected {expected})")
    return precision


def judge_quantized(model_id: str, tol: Tolerance, pair: EmbeddingPair, precision: str) -> ModelVerdict:
    """The verdict on one bi-encoder's quantized vectors (both sides of ``precision``, aligned by the pair)."""
    k = retrieval_k(pair, tol.topk)
    retrieval = (Retrieval(pair, k, tol.tie_tolerance,
                           scoring=lambda rows: quantized.scoring_floats(rows, precision)) if k is not None else None)
    first = first_pass(pair, lambda: quantized.QuantizedStats(precision, bits_per_row=pair.dim * 8, worst_n=WORST_N),
                       retrieval)
    stats: quantized.QuantizedStats = first.stats
    agreement = retrieval.finish(first.topk)[0] if retrieval is not None and first.topk is not None else None
    limit_key = quantized.limit_key(precision)
    limit = getattr(tol, limit_key)
    bits = limit_key == "max_bit_flips"
    unit = "bits flipped" if bits else "bucket(s) moved"
    metrics = dataclasses.replace(stats.metrics(), texts=pair.rows, dim=pair.dim)
    changed, fraction = stats.rows_changed, float(metrics.rows_changed_fraction or 0.0)
    checks = [
        Check(limit_key, float(stats.most), float(limit), "<=", stats.most <= limit,
              f"{changed} / {pair.rows} texts changed; the most in one text: {stats.most} {unit}"),
        Check("changed_fraction", fraction, tol.max_changed_fraction, "<=", fraction <= tol.max_changed_fraction,
              f"{changed} / {pair.rows} texts differ in at least one {'bit' if bits else 'element'}"),
    ]
    evidence = Evidence("quantized", precision=precision, limit_key=limit_key,
                        worst=[At(pair.item_id(w.row), w.row, value=w.value, dims=w.dims) for w in stats.worst])
    min_passing: Dict[str, float] = {limit_key: float(stats.most), "max_changed_fraction": fraction}
    if agreement is not None:
        metrics, evidence = with_topk(tol, pair, metrics, evidence, checks, min_passing, agreement,
                                      quantized_scores=True)
    where = "bit(s)" if bits else "dimension(s)"
    offenders = [Offender(pair.item_id(w.row), float(w.value), limit_key,
                          f"{unit}; {where} {', '.join(map(str, w.dims))}") for w in stats.worst]
    return build_verdict(model_id, "bi-encoder", tol, checks, metrics, offenders, min_passing, evidence)
