"""Float embeddings: every element within ``atol + rtol * |baseline|``, every text's cosine above ``min_cosine``,
each query's top-k order and set unchanged (ties within ``tie_tolerance`` ignored); quantized vectors:
``kinds.quantized``. One judge for files and arrays: workers' accumulators, merged. Beside a float
verdict, the retrieval scenarios ("must I re-embed?", ``harness.compare.scenarios``): reported, never gating.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from harness.compare import scenarios, streaming, vector_index
from harness.compare.kinds.common import NAMED, WORST_N, build_verdict, share, significant, with_topk
from harness.compare.kinds.retrieval import Retrieval, first_pass, retrieval_k
from harness.compare.kinds.source import EmbeddingPair, FilePair, Worker
from harness.compare.metrics import TopKAgreement
from harness.compare.stats import DiffStats
from harness.compare.stats.certify import Source
from harness.compare.streaming import ZERO_VECTORS
from harness.config.policy import Tolerance
from harness.config.project import IndexSettings
from harness.measured import At
from harness.verdict import Check, Evidence, Metrics, ModelVerdict, Offender, RetrievalScenarios, ScenarioShare

__all__ = ["ScenarioRequest", "judge_embeddings"]


def _through_index(pair: EmbeddingPair, k: int, tol: Tolerance, index: Optional[IndexSettings]) -> scenarios.Scenario:
    """Through the index: the documents and every query in memory, as the index holds them."""
    if index is None or not isinstance(pair, FilePair):
        return scenarios.Scenario("index", "keep the index, through a FAISS index", None,
                                  reason="no [index] configured (harness.toml, or --index FILE --id-map FILE)")
    base_q, cand_q = pair.query_vectors()
    at = np.flatnonzero(pair.documents)
    docs = streaming.read_rows(pair.base, pair.model_id, at)
    return vector_index.index_scenario(base_q, cand_q, docs, pair.ids_at(at), k, tol.tie_tolerance, index)


@dataclass(frozen=True)
class ScenarioRequest:
    """The comparator's ask for the scenarios beside a verdict: the ``[index]`` to search through (None: exact
    only) and whether the candidate was served (the advice then asks about its queries). HARNESS_SCENARIOS=0 skips."""

    index: Optional[IndexSettings] = None
    served: bool = False

    def share(self, pair: EmbeddingPair) -> Optional[float]:
        """The rolling re-embed's share of documents done, None when the scenarios are skipped."""
        if not pair.settings.scenarios:
            return None
        return self.index.rolling_share if self.index is not None else 0.5

    def judge(self, pair: EmbeddingPair, tol: Tolerance, k: int,
              exact: Tuple[scenarios.Scenario, ...]) -> RetrievalScenarios:
        """The exact scenarios (and the one through the index) judged by ``tol``'s top-k rules and limits."""
        found: List[scenarios.Scenario] = [*exact, _through_index(pair, k, tol, self.index)]
        decision = scenarios.decide(found, tol)
        return RetrievalScenarios(k=k, queries=len(pair.queries), min_order=tol.min_topk_order_agreement,
                                  min_set=tol.min_topk_set_agreement, advice=decision.advice,
                                  scenario=decision.scenario, order_margin=decision.order_margin,
                                  set_margin=decision.set_margin, served=self.served,
                                  items=[ScenarioShare(s.key, s.title, s.share("same_order") if s.ran else None,
                                                       s.share("same_set") if s.ran else None, s.reason, s.recall)
                                         for s in found])


def judge_embeddings(model_id: str, tol: Tolerance, pair: EmbeddingPair, certificate: Optional[Source] = None,
                     scenarios: Optional[ScenarioRequest] = None, tap: Optional[Worker] = None) -> ModelVerdict:
    """The verdict on one bi-encoder's float vectors (NaN/Inf: ``pair.refuse_nonfinite`` raises). ``certificate``:
    a hint that spares scoring most queries (the same verdict without it); ``scenarios``: computed in the same
    passes; ``tap``: also fed every segment, in order (the accuracy against an fp64 reference)."""
    dtype = np.result_type(pair.base_dtype, pair.cand_dtype)
    k = retrieval_k(pair, tol.topk)
    share = scenarios.share(pair) if scenarios is not None else None
    retrieval = Retrieval(pair, k, tol.tie_tolerance, certificate, rolling_share=share) if k is not None else None
    first = first_pass(pair, lambda: DiffStats(pair.dim, dtype, pair.rows, atol=tol.atol, rtol=tol.rtol,
                                               min_cosine=tol.min_cosine, worst_n=WORST_N), retrieval, tap)
    st: DiffStats = first.stats
    if st.nonfinite_base or st.nonfinite_cand:
        pair.refuse_nonfinite(st.nonfinite_base, st.nonfinite_cand)
    if st.zero_base:  # zeros against zeros would pass with cosine 1: a baseline without direction proves nothing
        pair.refuse_nonfinite(st.zero_base, [], problem=ZERO_VECTORS)
    topk = retrieval.finish(first.topk) if retrieval is not None and first.topk is not None else None
    verdict = _verdict(model_id, tol, pair, st, topk)
    if scenarios is not None and retrieval is not None and retrieval.found:
        verdict = dataclasses.replace(verdict, scenarios=scenarios.judge(pair, tol, retrieval.k, retrieval.found))
    return verdict


def _evidence(pair: EmbeddingPair, tol: Tolerance, st: DiffStats) -> Evidence:
    """Where the elements moved: the worst element, the largest relative difference, the lowest cosine (each
    the first in baseline order among equals, as numpy's argmax/argmin name them), the texts beyond atol."""
    max_abs = max_rel = min_cosine = None
    if st.worst:
        w = st.worst[0]
        max_abs = At(pair.item_id(w.position), w.position, max(w.dim, 0), float(w.value), actual=float(w.cand_value),
                     baseline=float(w.base_value))
        row = st.max_rel_position if st.max_rel_position >= 0 else 0  # nothing moved relatively: the first
        max_rel = At(pair.item_id(row), row, max(st.max_rel_dim, 0), float(st.max_rel))
    if pair.rows:
        row = st.min_cos_position if st.min_cos_position >= 0 else 0  # every cosine exactly 1: the first
        min_cosine = At(pair.item_id(row), row, value=float(st.min_cos), below=int(st.below_cosine))
    beyond = [At(pair.item_id(w.position), w.position, value=float(w.value)) for w in st.worst if w.value > tol.atol]
    return Evidence("embedding", elements=st.count, max_abs=max_abs, max_rel=max_rel, min_cosine=min_cosine,
                    texts_beyond=beyond[:NAMED])


def _verdict(model_id: str, tol: Tolerance, pair: EmbeddingPair, st: DiffStats,
             topk: Optional[Tuple[TopKAgreement, int, int]]) -> ModelVerdict:
    stats, n_bad = st.summary(), st.bad_elements
    min_cos = st.min_cos if pair.rows else 1.0
    checks: List[Check] = [
        Check("max_abs_diff", stats.max_abs, tol.atol, "<=", n_bad == 0, f"{share(n_bad, st.count)} elements exceed "
              f"atol={significant(tol.atol, stats.max_abs)} + rtol={significant(tol.rtol)}*|baseline|"),
        Check("min_cosine", min_cos, tol.min_cosine, ">=", st.below_cosine == 0,
              f"{st.below_cosine} / {pair.rows} texts below cosine {significant(tol.min_cosine, min_cos)}"),
    ]
    metrics = Metrics(texts=pair.rows, dim=pair.dim, max_abs_diff=stats.max_abs, mean_abs_diff=stats.mean_abs,
                      p99_abs_diff=stats.p99_abs, max_rel_diff=stats.max_rel, min_cosine=min_cos,
                      elements_beyond_tolerance=n_bad, texts_beyond_tolerance=st.texts_beyond,
                      abs_diff_histogram=st.histogram())
    min_passing = {"atol": stats.max_abs, "min_cosine": min_cos}
    evidence = _evidence(pair, tol, st)
    metrics, evidence = with_topk(tol, pair, metrics, evidence, checks, min_passing,
                                  topk[0] if topk is not None else None,
                                  certified=(topk[1], topk[2]) if topk is not None else None)
    offenders = [Offender(pair.item_id(w.position), w.value, "max_abs_diff",
                          f"cosine {significant(w.cosine, tol.min_cosine)}") for w in st.worst if w.value > 0]
    return build_verdict(model_id, "bi-encoder", tol, checks, metrics, offenders, min_passing, evidence)
