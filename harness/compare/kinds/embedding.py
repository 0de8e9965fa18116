"""Float embeddings: every element within ``atol + rtol * |baseline|``, every text's cosine above ``min_cosine``,
and each query's top-k retrieval order and set unchanged (ties within ``tie_tolerance`` ignored).

One judge for files and arrays: a pair source (``kinds.source``) feeds segments of both sides to workers, each
with its own ``DiffStats`` and ``TopKStream`` (merged afterwards); the verdict and its evidence (the worst
element, the largest relative difference, the lowest cosine, the changed queries) come from those alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from harness.compare.kinds.common import NAMED, WORST_N, build_verdict, retrieval_not_judged, share, significant, topk_checks
from harness.compare.kinds.retrieval import Retrieval
from harness.compare.kinds.scenarios import ScenarioRequest
from harness.compare.kinds.source import EmbeddingPair, Worker
from harness.compare.metrics import TopKAgreement
from harness.compare.policy import Tolerance
from harness.compare.stats import DiffStats
from harness.compare.stats.certify import Source
from harness.compare.streaming import ZERO_VECTORS
from harness.compare.verdict import Check, ModelVerdict, Offender

__all__ = ["judge_embeddings", "retrieval_k"]


def retrieval_k(pair: EmbeddingPair, k: int) -> Optional[int]:
    """The k to compare (at most the documents there are); None when there are no queries or no documents (no
    retrieval to judge)."""
    n_docs = int(pair.documents.sum())
    if not len(pair.queries) or not n_docs:
        return None
    return min(k, n_docs)


class _Worker:
    """One thread's accumulators."""

    def __init__(self, pair: EmbeddingPair, tol: Tolerance, dtype: np.dtype, retrieval: Optional[Retrieval]) -> None:
        self.retrieval = retrieval
        self.stats = DiffStats(pair.dim, dtype, pair.rows, atol=tol.atol, rtol=tol.rtol,
                               min_cosine=tol.min_cosine, worst_n=WORST_N)
        self.topk = retrieval.accumulators() if retrieval is not None else None

    def __call__(self, segment: Tuple[int, np.ndarray, np.ndarray]) -> None:
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # NaN/Inf rows: refused afterwards
            self._add(segment)

    def _add(self, segment: Tuple[int, np.ndarray, np.ndarray]) -> None:
        position, base, cand = segment
        squares = self.stats.add(position, base, cand)
        if self.retrieval is not None and self.topk is not None:
            self.retrieval.add_segment(self.topk, position, base, cand, squares)


def judge_embeddings(model_id: str, tol: Tolerance, pair: EmbeddingPair, certificate: Optional[Source] = None,
                     scenarios: Optional[ScenarioRequest] = None, tap: Optional[Worker] = None) -> ModelVerdict:
    """The verdict on one bi-encoder's float vectors (NaN/Inf anywhere: ``pair.refuse_nonfinite`` raises).
    ``certificate``: a hint, the baseline's top ``width(k)`` per query (``harness.compare.certify``): most
    queries are then decided without scoring every document; the verdict is the same without it.
    ``scenarios``: the retrieval scenarios, reported beside the verdict, computed in the same passes.
    ``tap``: also fed every segment of the verdict's pass, in order (the accuracy against an fp64 reference)."""
    dtype = np.result_type(pair.base_dtype, pair.cand_dtype)
    k = retrieval_k(pair, tol.topk)
    share = scenarios.share(pair) if scenarios is not None else None
    retrieval = Retrieval(pair, k, tol.tie_tolerance, certificate, rolling_share=share) if k is not None else None
    workers = [_Worker(pair, tol, dtype, retrieval) for _ in range(max(1, pair.threads))]
    pair.feed(workers, held_bytes=retrieval.held_bytes if retrieval is not None else 0,
              what=retrieval.pass_name(0) if retrieval is not None else "", tap=tap)
    first, *others = workers
    for other in others:
        first.stats.merge(other.stats)
        if first.topk is not None and other.topk is not None:
            first.topk.merge(other.topk)
        other.stats, other.topk = None, None  # type: ignore[assignment]  # merged: held no longer
    st = first.stats
    if st.nonfinite_base or st.nonfinite_cand:
        pair.refuse_nonfinite(st.nonfinite_base, st.nonfinite_cand)
    if st.zero_base:  # zeros against zeros would pass with cosine 1: a baseline without direction proves nothing
        pair.refuse_nonfinite(st.zero_base, [], problem=ZERO_VECTORS)
    topk = retrieval.finish(first.topk) if retrieval is not None and first.topk is not None else None
    verdict = _verdict(model_id, tol, pair, st, topk)
    if scenarios is not None and retrieval is not None and retrieval.found:
        verdict = dataclasses.replace(verdict, scenarios=scenarios.judge(pair, tol, retrieval.k, retrieval.found))
    return verdict


def _evidence(pair: EmbeddingPair, tol: Tolerance, st: DiffStats) -> Dict[str, Any]:
    """Where the elements moved: the worst element, the largest relative difference, the lowest cosine (each
    the first in baseline order among equals, as numpy's argmax/argmin name them), the texts beyond atol."""
    evidence: Dict[str, Any] = {"kind": "embedding", "elements": st.count}
    if st.worst:
        w = st.worst[0]
        evidence["max_abs"] = {"id": pair.item_id(w.position), "row": w.position, "dim": max(w.dim, 0),
                               "value": float(w.value), "actual": float(w.cand_value), "baseline": float(w.base_value)}
        row = st.max_rel_position if st.max_rel_position >= 0 else 0  # nothing moved relatively: the first
        evidence["max_rel"] = {"id": pair.item_id(row), "row": row, "dim": max(st.max_rel_dim, 0),
                               "value": float(st.max_rel)}
    if pair.rows:
        row = st.min_cos_position if st.min_cos_position >= 0 else 0  # every cosine exactly 1: the first
        evidence["min_cosine"] = {"id": pair.item_id(row), "row": row, "value": float(st.min_cos),
                                 "below": int(st.below_cosine)}
    evidence["texts_beyond"] = [{"id": pair.item_id(w.position), "row": w.position, "value": float(w.value)}
                                for w in st.worst if w.value > tol.atol][:NAMED]
    return evidence


def _verdict(model_id: str, tol: Tolerance, pair: EmbeddingPair, st: DiffStats,
             topk: Optional[Tuple[TopKAgreement, int, int]]) -> ModelVerdict:
    stats = st.summary()
    total = st.count
    n_bad = st.bad_elements
    min_cos = st.min_cos if pair.rows else 1.0
    checks: List[Check] = [
        Check(
            name="max_abs_diff",
            observed=stats.max_abs,
            limit=tol.atol,
            op="<=",
            passed=n_bad == 0,
            detail=f"{share(n_bad, total)} elements exceed "
                   f"atol={significant(tol.atol, stats.max_abs)} + rtol={significant(tol.rtol)}*|baseline|",
        ),
        Check(
            name="min_cosine",
            observed=min_cos,
            limit=tol.min_cosine,
            op=">=",
            passed=st.below_cosine == 0,
            detail=f"{st.below_cosine} / {pair.rows} texts below cosine {significant(tol.min_cosine, min_cos)}",
        ),
    ]
    metrics: Dict[str, Any] = {
        "texts": pair.rows,
        "dim": pair.dim,
        "max_abs_diff": stats.max_abs,
        "mean_abs_diff": stats.mean_abs,
        "p99_abs_diff": stats.p99_abs,
        "max_rel_diff": stats.max_rel,
        "min_cosine": min_cos,
        "elements_beyond_tolerance": n_bad,
        "texts_beyond_tolerance": st.texts_beyond,
        "abs_diff_histogram": st.histogram(),
    }
    evidence = _evidence(pair, tol, st)
    if topk is not None:
        agreement, certified, scored = topk
        more, evidence["topk"] = topk_checks(tol, agreement, lambda i: pair.item_id(int(pair.queries[i])), metrics)
        evidence["topk"].update(certified=certified, scored_exactly=scored)  # how the agreement was decided
        checks += more
    else:
        retrieval_not_judged(len(pair.queries), int(pair.documents.sum()), metrics, evidence)
    offenders = [
        Offender(item_id=pair.item_id(w.position), value=w.value, metric="max_abs_diff",
                 detail=f"cosine {significant(w.cosine, tol.min_cosine)}")
        for w in st.worst
        if w.value > 0
    ]
    min_passing = {"atol": stats.max_abs, "min_cosine": metrics["min_cosine"]}
    if "topk" in metrics:
        min_passing.update(
            min_topk_order_agreement=metrics["topk_order_agreement"],
            min_topk_set_agreement=metrics["topk_set_agreement"],
        )
    return build_verdict(model_id, "bi-encoder", tol, checks, metrics, offenders, min_passing, evidence)
