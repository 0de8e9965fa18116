""""Must I re-embed?": the retrieval scenarios of an upgrade for one bi-encoder, judged by the harness's own
exact top-k rules (``TopKStream``: order, set, tie-aware, ties by document position).

The baseline ranking is always the old environment's (baseline queries x baseline documents). What serves the
queries after the upgrade differs by scenario:

- ``reembed``: re-embed everything (candidate queries x candidate documents), what the verdict judges today;
- ``keep_index``: keep the index built with the old environment and embed only the queries anew (candidate
  queries x baseline documents);
- ``rolling``: a rolling re-embed caught half-way (candidate queries x one index mixing both sides' documents:
  a deterministic share of documents, chosen by a hash of their id, is re-embedded).

``decide`` turns them into advice within the policy's top-k limits. Memory: the queries are cut into batches
(``workers.queries_per_pass``), each batch one pass over the documents, fed in blocks of ``BLOCK_ROWS``; each
scenario keeps about k documents per query. Pure functions over arrays; nothing here reads files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from harness.compare.metrics import TopKAgreement
from harness.compare.policy import Tolerance
from harness.compare.stats import TopKStream
from harness.compare.workers import queries_per_pass
from harness.config.environment import CompareSettings

__all__ = ["BLOCK_ROWS", "SCENARIOS", "batch_size", "Decision", "Scenario", "decide", "rolled", "retrieval_scenarios",
           "scenarios_over"]

#: documents per block fed to the scenarios (the rolling mix is a copy of one block)
BLOCK_ROWS = 16384
#: scenario key -> how reports name it
SCENARIOS = {"reembed": "re-embed everything", "keep_index": "keep the index, re-embed queries only",
             "rolling": "rolling re-embed"}
#: a block of documents: baseline positions, ids, baseline rows, candidate rows
Block = Tuple[np.ndarray, Sequence[str], np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Scenario:
    """One way of serving queries after the upgrade and its top-k agreement with the old ranking; ``agreement``
    None when it did not run (``reason`` says why). ``recall``: an approximate index's own recall@k against
    exact search (baseline queries), beside the upgrade's effect."""

    key: str
    title: str
    agreement: Optional[TopKAgreement]
    reason: str = ""
    recall: Optional[float] = None

    @property
    def ran(self) -> bool:
        return self.agreement is not None

    def share(self, field: str) -> float:
        """Share of queries with ``field`` (``same_order`` / ``same_set``); NaN when not run."""
        return self.agreement.share(field) if self.agreement is not None else float("nan")

    def within(self, tolerance: Tolerance) -> bool:
        """Whether the scenario keeps top-k results within the policy's limits."""
        return self.ran and self.share("same_order") >= tolerance.min_topk_order_agreement \
            and self.share("same_set") >= tolerance.min_topk_set_agreement


@dataclass(frozen=True)
class Decision:
    """What to do: ``advice`` ("keep your index", "re-embed", "neither is within the policy"), the scenario it
    rests on, and by how much it clears the limits (negative: falls short), order and set."""

    advice: str
    scenario: str
    order_margin: float
    set_margin: float

    @property
    def text(self) -> str:
        how = "clears" if min(self.order_margin, self.set_margin) >= 0 else "misses"
        return (f"{self.advice}: {SCENARIOS.get(self.scenario, self.scenario)} {how} the policy's top-k limits by "
                f"{self.order_margin:+.1%} (same order) and {self.set_margin:+.1%} (same set)")


def decide(scenarios: Iterable[Scenario], tolerance: Tolerance) -> Decision:
    """Keep the index when that is within the policy (it is the cheaper way), else re-embed when that is, else
    neither; the margins are the chosen scenario's (for neither: the closer of the two)."""
    by_key = {s.key: s for s in scenarios}

    def margins(s: Scenario) -> Tuple[float, float]:
        return (s.share("same_order") - tolerance.min_topk_order_agreement,
                s.share("same_set") - tolerance.min_topk_set_agreement)

    keep, reembed = by_key["keep_index"], by_key["reembed"]
    if keep.within(tolerance):
        return Decision("keep your index", keep.key, *margins(keep))
    if reembed.within(tolerance):
        return Decision("re-embed", reembed.key, *margins(reembed))
    closer = max((keep, reembed), key=lambda s: min(margins(s)))
    return Decision("neither is within the policy", closer.key, *margins(closer))


def rolled(ids: Sequence[str], share: float) -> np.ndarray:
    """Which documents a rolling re-embed has done at ``share``: a hash of the id below ``share`` (the same
    documents whatever their order or the corpus around them; a larger share re-embeds a superset)."""
    if share <= 0 or not len(ids):
        return np.zeros(len(ids), dtype=bool)
    digests = b"".join(hashlib.blake2b(str(i).encode("utf-8"), digest_size=8).digest() for i in ids)
    return np.frombuffer(digests, dtype=">u8").astype(np.float64) / 2.0**64 < share


class _Pass:
    """One query batch's three scenarios over the documents fed in blocks."""

    def __init__(self, base_q: np.ndarray, cand_q: np.ndarray, k: int, tie: float, share: float) -> None:
        self.share = share
        self.streams = {key: TopKStream(base_q, cand_q, k, tie) for key in SCENARIOS}

    def add(self, positions: np.ndarray, ids: Sequence[str], base: np.ndarray, cand: np.ndarray) -> None:
        work = np.float64 if np.result_type(base.dtype, cand.dtype).itemsize > 4 else np.float32
        b, c = base.astype(work, copy=False), cand.astype(work, copy=False)
        d = c - b
        bsq, dsq = np.einsum("ij,ij->i", b, b), np.einsum("ij,ij->i", d, d)
        del d
        done = rolled(ids, self.share)
        self.streams["reembed"].add(positions, base, cand, bsq, dsq)
        self.streams["keep_index"].add(positions, base, base, bsq, np.zeros_like(dsq))
        self.streams["rolling"].add(positions, base, np.where(done[:, None], cand, base), bsq, np.where(done, dsq, 0))


def batch_size(dim: int, itemsize: int, k: int, settings: CompareSettings) -> int:
    """Queries per pass over the documents within the budget: both sides' query vectors and three scenarios'
    top-k state each, beside a block pair (the one count for ``scenarios_over`` and its callers that read the
    queries in batches)."""
    per_query = 2 * dim * itemsize + 3 * 64 * (k + 4)
    return queries_per_pass(per_query, 2 * BLOCK_ROWS * dim * 8, settings.memory_mb, settings.min_queries_per_pass)


def scenarios_over(blocks: Callable[[], Iterable[Block]], base_queries: np.ndarray, cand_queries: np.ndarray,
                   k: int, tie_tolerance: float, share: float = 0.5,
                   settings: Optional[CompareSettings] = None) -> Tuple[Scenario, ...]:
    """The three exact scenarios over documents streamed by ``blocks()`` (called once per query batch; each
    call yields every document once, at least ``k`` in all): ``reembed``, ``keep_index``, ``rolling``."""
    nq, dim = base_queries.shape
    if len(cand_queries) != nq:
        raise ValueError(f"scenarios: {nq} baseline queries but {len(cand_queries)} candidate queries")
    settings = settings or CompareSettings.from_environment()
    size = batch_size(dim, base_queries.dtype.itemsize, k, settings)
    parts: dict[str, List[TopKAgreement]] = {key: [] for key in SCENARIOS}
    for start in range(0, nq, size) if nq else []:
        one = _Pass(base_queries[start : start + size], cand_queries[start : start + size], k, tie_tolerance, share)
        for positions, ids, base, cand in blocks():
            with np.errstate(invalid="ignore", over="ignore"):
                one.add(np.asarray(positions, dtype=np.int64), ids, base, cand)
            del base, cand  # a block may be a view of a row group: let it go before the next is read
        for key, stream in one.streams.items():
            parts[key].append(stream.agreement())
    titles = {**SCENARIOS, "rolling": f"rolling re-embed ({share:.0%} of documents done)"}
    return tuple(Scenario(key, titles[key], _joined(parts[key], k)) for key in SCENARIOS)


def _joined(parts: List[TopKAgreement], k: int) -> TopKAgreement:
    empty: np.ndarray = np.zeros(0, dtype=bool)
    fields = ("same_order", "same_set", "overlap", "raw_same_order")
    return TopKAgreement(k=parts[0].k if parts else k,
                         **{f: np.concatenate([getattr(p, f) for p in parts]) if parts else empty for f in fields})


def retrieval_scenarios(base_queries: np.ndarray, cand_queries: np.ndarray, base_docs: np.ndarray,
                        cand_docs: np.ndarray, doc_ids: Sequence[str], k: int, tie_tolerance: float,
                        share: float = 0.5, settings: Optional[CompareSettings] = None) -> Tuple[Scenario, ...]:
    """``scenarios_over`` for documents in memory (rows aligned on ``doc_ids``); k is cut to the corpus."""
    n = len(base_docs)
    if n == 0 or len(cand_docs) != n or len(doc_ids) != n:
        raise ValueError(f"scenarios: {n} baseline documents, {len(cand_docs)} candidate, {len(doc_ids)} ids")

    def blocks() -> Iterable[Block]:
        for s in range(0, n, BLOCK_ROWS):
            e = min(n, s + BLOCK_ROWS)
            yield np.arange(s, e), doc_ids[s:e], base_docs[s:e], cand_docs[s:e]

    return scenarios_over(blocks, base_queries, cand_queries, min(int(k), n), tie_tolerance, share, settings)
