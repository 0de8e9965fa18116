"""Bi-encoder vectors, one judge for files and arrays and for every precision: the pass over both sides
(``kinds.retrieval``: workers' accumulators, merged, the top-k on the way), the checks of the vectors' precision on
what it measured (float: ``kinds.embedding_checks``; int8, uint8, binary, ubinary: ``compare.quantized``), the top-k
checks and the verdict (``kinds.common``), then, for float vectors, the retrieval scenarios beside it ("must I
re-embed?", ``harness.compare.scenarios``): reported, never gating.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional

import numpy as np

from harness.compare import quantized, vector_index
from harness.compare.kinds.common import WORST_N, build_verdict, with_topk
from harness.compare.kinds.embedding_checks import float_checks
from harness.compare.kinds.retrieval import Retrieval, first_pass
from harness.compare.kinds.source import EmbeddingPair, Worker
from harness.compare.scenarios import ScenarioRequest
from harness.compare.stats import DiffStats
from harness.compare.stats.certify import Source
from harness.compare.streaming import ZERO_VECTORS
from harness.config.policy import Tolerance
from harness.verdict import ModelVerdict

__all__ = ["judge_embeddings"]


def _new_stats(pair: EmbeddingPair, tol: Tolerance, precision: Optional[str]) -> Callable[[], Any]:
    """What each worker of the pass accumulates: element differences and cosines for floats, bits flipped or
    buckets moved per text for quantized rows."""
    if precision is not None:
        return lambda: quantized.QuantizedStats(precision, bits_per_row=pair.dim * 8, worst_n=WORST_N)
    dtype = np.result_type(pair.base_dtype, pair.cand_dtype)
    return lambda: DiffStats(pair.dim, dtype, pair.rows, atol=tol.atol, rtol=tol.rtol, min_cosine=tol.min_cosine,
                             worst_n=WORST_N)


def judge_embeddings(model_id: str, tol: Tolerance, pair: EmbeddingPair, precision: Optional[str] = None,
                     certificate: Optional[Source] = None, scenarios: Optional[ScenarioRequest] = None,
                     tap: Optional[Worker] = None) -> ModelVerdict:
    """The verdict on one bi-encoder's vectors: float (NaN/Inf: ``pair.refuse_nonfinite`` raises), or quantized
    when ``precision`` names one (both sides of it, judged as the integers they are; the top-k by the quantized
    scores, exact). ``certificate``: a hint that spares scoring most float queries (the same verdict without it);
    ``scenarios``: computed in the same passes; ``tap``: also fed every segment, in order (the accuracy against an
    fp64 reference)."""
    k = pair.retrieval_k(tol.topk)
    floats, new_stats = precision is None, _new_stats(pair, tol, precision)
    scoring = None if precision is None else functools.partial(quantized.scoring_floats, precision=precision)
    share = scenarios.share(pair) if scenarios is not None and floats else None
    retrieval = (Retrieval(pair, k, tol.tie_tolerance, certificate, scoring=scoring, rolling_share=share)
                 if k is not None else None)
    first = first_pass(pair, new_stats, retrieval, tap)
    st = first.stats
    if floats and (st.nonfinite_base or st.nonfinite_cand):
        pair.refuse_nonfinite(st.nonfinite_base, st.nonfinite_cand)
    if floats and st.zero_base:  # zeros against zeros would pass with cosine 1: a baseline without direction
        pair.refuse_nonfinite(st.zero_base, [], problem=ZERO_VECTORS)
    topk = retrieval.finish(first.topk) if retrieval is not None and first.topk is not None else None
    found = float_checks(tol, pair, st) if precision is None else quantized.quantized_checks(tol, pair, st, precision)
    metrics, evidence = found.metrics, found.evidence
    if floats or topk is not None:  # floats say why no top-k check ran; quantized rows without queries do not
        metrics, evidence = with_topk(tol, pair, metrics, evidence, found.checks, found.min_passing,
                                      topk[0] if topk is not None else None, quantized_scores=not floats,
                                      certified=(topk[1], topk[2]) if topk is not None and floats else None)
    verdict = build_verdict(model_id, "bi-encoder", tol, found.checks, metrics, found.offenders, found.min_passing,
                            evidence)
    if scenarios is not None and retrieval is not None and retrieval.found and floats:  # and through the index
        scenes = [*retrieval.found, vector_index.through_index(pair, retrieval.k, tol.tie_tolerance, scenarios.index)]
        verdict = dataclasses.replace(verdict, scenarios=scenarios.judge(pair, tol, retrieval.k, scenes))
    return verdict
