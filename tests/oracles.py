"""Test oracles: the whole-array metrics the streamed accumulators (``harness.compare.stats``) must reproduce.

They lived in ``harness.compare.metrics`` with no caller in the package; the tests are their only users.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from harness.compare.kinds.retrieval import Retrieval
from harness.compare.kinds.source import ArrayPair
from harness.compare.metrics import REL_FLOOR, ElementStats, TopKAgreement, unit_rows
from harness.compare.scenarios import SCENARIOS, Scenario, rolled
from harness.compare.stats import TopKStream
from harness.compare.streaming import Segment
from harness.config.corpus import Corpus, RerankPair
from harness.config.environment import CompareSettings

__all__ = ["compare_quantized", "cosine_matrix", "element_stats", "group_rows", "pairs_by_query", "retrieval_scenarios",
           "row_max_abs", "scenarios_apart"]


def pairs_by_query(corpus: Corpus) -> Dict[str, List[RerankPair]]:
    """Rerank pairs grouped by query id, queries and pairs both in file order (was ``Corpus.pairs_by_query``)."""
    grouped: Dict[str, List[RerankPair]] = {}
    for pair in corpus.pairs:
        grouped.setdefault(pair.query_id, []).append(pair)
    return grouped


def element_stats(baseline: np.ndarray, candidate: np.ndarray) -> ElementStats:
    """Absolute and relative differences; relative is ``|d| / |baseline|`` (floored to avoid 0-division)."""
    base = np.asarray(baseline, dtype=np.float64)
    diff = np.abs(np.asarray(candidate, dtype=np.float64) - base)
    if diff.size == 0:
        return ElementStats(0, 0.0, 0.0, 0.0, 0.0, -1)
    flat = diff.reshape(len(diff), -1) if diff.ndim > 1 else diff.reshape(-1, 1)
    rel = diff / np.maximum(np.abs(base), REL_FLOOR)
    return ElementStats(
        count=int(diff.size),
        max_abs=float(diff.max()),
        mean_abs=float(diff.mean()),
        p99_abs=float(np.percentile(diff, 99)),
        max_rel=float(rel.max()),
        argmax_row=int(np.argmax(flat.max(axis=1))),
    )


def row_max_abs(baseline: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Largest absolute element difference per row (per text), to name the worst texts."""
    return np.abs(candidate.astype(np.float64) - baseline.astype(np.float64)).max(axis=1)


def group_rows(keys: Sequence[str]) -> Dict[str, List[int]]:
    """Row indices per key, in first-seen order."""
    groups: Dict[str, List[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return groups


def scenarios_apart(base_q: np.ndarray, cand_q: np.ndarray, base_d: np.ndarray, cand_d: np.ndarray,
                    ids: Sequence[str], k: int, tie: float, share: float = 0.5, block: int = 16384,
                    batch: int = 1 << 30) -> Tuple[Scenario, ...]:
    """The retrieval scenarios as the comparator computed them before they joined the verdict's pass (its
    former ``scenarios_over``): three independent ``TopKStream`` per query batch, each scoring every document
    block itself (the rolling mix copied), so the one-pass sharing has something independent to equal."""
    parts: Dict[str, List[TopKAgreement]] = {key: [] for key in SCENARIOS}
    k = min(int(k), len(base_d))
    for start in range(0, len(base_q), batch):
        streams = {key: TopKStream(base_q[start : start + batch], cand_q[start : start + batch], k, tie)
                   for key in SCENARIOS}
        for s in range(0, len(base_d), block):
            b, c = base_d[s : s + block], cand_d[s : s + block]
            work = np.float64 if np.result_type(b.dtype, c.dtype).itemsize > 4 else np.float32
            bw, d = b.astype(work), c.astype(work) - b.astype(work)
            bsq, dsq = np.einsum("ij,ij->i", bw, bw), np.einsum("ij,ij->i", d, d)
            done, at = rolled(ids[s : s + block], share), np.arange(s, s + len(b))
            with np.errstate(invalid="ignore", over="ignore"):
                streams["reembed"].add(at, b, c, bsq, dsq)
                streams["keep_index"].add(at, b, b, bsq, np.zeros_like(dsq))
                streams["rolling"].add(at, b, np.where(done[:, None], c, b), bsq, np.where(done, dsq, 0))
        for key, stream in streams.items():
            parts[key].append(stream.agreement())
    fields = ("same_order", "same_set", "overlap", "raw_same_order")
    return tuple(Scenario(key, SCENARIOS[key], TopKAgreement(k=k, **{f: np.concatenate([getattr(p, f) for p in
                                                                                         parts[key]]) for f in fields}))
                 for key in SCENARIOS)


def retrieval_scenarios(base_queries: np.ndarray, cand_queries: np.ndarray, base_docs: np.ndarray,
                        cand_docs: np.ndarray, doc_ids: Sequence[str], k: int, tie_tolerance: float,
                        share: float = 0.5, settings: Optional[CompareSettings] = None) -> Tuple[Scenario, ...]:
    """The three exact scenarios (``reembed``, ``keep_index``, ``rolling``) for documents in memory (rows aligned
    on ``doc_ids``), by the comparator's own one-pass code (``kinds.retrieval`` over an ``ArrayPair``, in query
    batches within ``settings``' budget); k is cut to the corpus. Tests and benchmarks call it; the package does
    not."""
    n, nq = len(base_docs), len(base_queries)
    if n == 0 or len(cand_docs) != n or len(doc_ids) != n or len(cand_queries) != nq:
        raise ValueError(f"scenarios: {n} baseline documents, {len(cand_docs)} candidate, {len(doc_ids)} ids; "
                         f"{nq} baseline queries, {len(cand_queries)} candidate")
    pair = ArrayPair([*map(str, doc_ids), *(f"query {i}" for i in range(nq))], ["document"] * n + ["query"] * nq,
                     np.concatenate([base_docs, base_queries]), np.concatenate([cand_docs, cand_queries]),
                     settings=settings)
    retrieval = Retrieval(pair, min(int(k), n), tie_tolerance, rolling_share=share)
    accumulators = retrieval.accumulators()

    def add(segment: Segment) -> None:
        with np.errstate(invalid="ignore", over="ignore"):
            retrieval.add_segment(accumulators, *segment)

    pair.feed([add], held_bytes=retrieval.held_bytes)
    retrieval.finish(accumulators)
    return retrieval.found
def compare_quantized(base: np.ndarray, cand: np.ndarray, precision: str, tolerance: Optional[Mapping[str, Any]] = None,
                      ids: Optional[Sequence[str]] = None, worst_n: int = 10) -> Dict[str, Any]:
    """Quantized rows judged whole (bits by ``np.unpackbits``, buckets in int16): the metrics, worst texts and
    pass/fail that the streamed ``QuantizedStats`` with ``kinds.judge_embeddings`` (a quantized precision) must reproduce. ``tolerance``:
    ``max_bit_flips`` / ``max_int_distance`` (default 0) and ``max_changed_fraction`` (default 1)."""
    base, cand = np.asarray(base), np.asarray(cand)
    binary = precision in ("binary", "ubinary")
    if binary:
        moved = np.unpackbits(base.view(np.uint8), axis=1) != np.unpackbits(cand.view(np.uint8), axis=1)
        per_row = moved.sum(axis=1)
    else:
        moved = np.abs(base.astype(np.int16) - cand.astype(np.int16))
        per_row = moved.max(axis=1, initial=0)
    rows, changed, most = len(base), int((per_row > 0).sum()), int(per_row.max(initial=0))
    metrics: Dict[str, Any] = {"precision": precision, "rows": rows}
    if binary:
        bits, total = base.shape[1] * 8, int(per_row.sum())
        metrics.update(bits_per_row=bits, max_bit_flips=most, mean_bit_flips=total / rows if rows else 0.0,
                       total_bit_flips=total, flipped_bit_fraction=total / (rows * bits) if rows and bits else 0.0)
    else:
        elements = int((base != cand).sum())
        metrics.update(max_int_distance=most, elements=int(base.size), elements_changed=elements,
                       elements_changed_fraction=elements / base.size if base.size else 0.0)
    metrics.update(rows_changed=changed, rows_changed_fraction=changed / rows if rows else 0.0)
    key = "max_bit_flips" if binary else "max_int_distance"
    tolerance = dict(tolerance or {})
    passed = most <= tolerance.get(key, 0) and metrics["rows_changed_fraction"] <= tolerance.get("max_changed_fraction", 1.0)
    worst = []
    for i in sorted(np.flatnonzero(per_row).tolist(), key=lambda r: (-int(per_row[r]), r))[:worst_n]:
        dims = np.flatnonzero(moved[i])[:8] if binary else np.argsort(-moved[i], kind="stable")[: int((moved[i] > 0).sum())][:8]
        worst.append({"row": i, "id": None if ids is None else str(ids[i]), key: int(per_row[i]),
                      "dims": [int(d) for d in dims]})
    return {"metrics": metrics, "worst": worst, "passed": passed}


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of every row of ``a`` with every row of ``b``, in float64: the in-memory retrieval scores that
    ``topk_agreement`` ranks and ``TopKStream`` reproduces streamed. Pair by pair (``einsum``, no BLAS): two
    identical rows get identical scores, as in the streamed judge; a matrix product's rounding depends on where a
    column falls in its tiles and broke exact ties of duplicated documents by an ulp in 83 of 300 random cases."""
    return np.einsum("ik,jk->ij", unit_rows(a), unit_rows(b))
