"""The bi-encoder's top-k retrieval judgement over streamed documents, a query batch at a time (sized to the
memory budget; the first rides along the judge's pass): exact (``TopKStream``), or proven from the baseline's
certificate (``stats.certify``) with the rest exact; the verdict is the same either way and for any batch size.
Which queries a certificate clears is guessed before a pass and proven after it: a miss costs one more pass, never
a wrong verdict. ``collect`` keeps the baseline's top documents (a certificate); ``rolling_share``: the retrieval
scenarios ride along, sharing the verdict's screening product.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

import numpy as np

from harness.compare import scenarios
from harness.compare.kinds.source import EmbeddingPair, Worker
from harness.compare.metrics import TopKAgreement
from harness.compare.stats.certify import (
    ROUNDING,
    Certificate,
    CertifyStream,
    Source,
    add_proofs,
    certifiable,
    combine,
    query_moves,
    width,
)
from harness.compare.stats.topk import Fed, LazyMask, Mask, TopKStream, add_shared
from harness.compare.workers import Segment, pairs_in_flight

__all__ = ["Retrieval", "RetrievalWorker", "StatsWorker", "first_pass", "queries_per_pass", "query_bytes", "run_pass"]

#: bytes of retrieval state per query and kept document, per worker and once more for what they share (a pool
#: entry is 32 B, twice while a block's hits are merged; a certificate entry about as much)
STATE_BYTES_PER_KEPT = 64

#: rows as retrieval scores them (quantized rows: ``quantized.scoring_floats``), None for float vectors as they are
Scoring = Optional[Callable[[np.ndarray], np.ndarray]]


def query_bytes(pair: EmbeddingPair, keep: int, scoring: Scoring = None, tracks: int = 1) -> int:
    """What one query of a batch costs: both sides' vectors as scored and each track's retrieval state (``keep``
    documents)."""
    if scoring is None:
        vectors = pair.dim * (pair.base_dtype.itemsize + pair.cand_dtype.itemsize)
    else:
        vectors = 2 * scoring(np.zeros((1, pair.dim), dtype=pair.base_dtype)).nbytes
    return vectors + STATE_BYTES_PER_KEPT * keep * (max(1, pair.threads) + 1) * tracks + 64


def queries_per_pass(query_bytes: int, pair_bytes: int, memory_mb: int, minimum: int) -> int:
    """Queries of ``query_bytes`` each (vectors and state) that one pass over the documents holds: what
    ``memory_mb`` leaves beside one row group pair of ``pair_bytes``, at least ``minimum`` (a pass over the
    documents per batch: tiny batches would read the files over and over): what ``pairs_in_flight`` reckons for
    row group pairs, reckoned for queries."""
    return max(minimum, pairs_in_flight(query_bytes, pair_bytes, memory_mb))


def _take(rows_of: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``rows_of[rows]`` for ascending distinct ``rows``, but the array itself (no copy) when they are all."""
    return rows_of if len(rows) == len(rows_of) else rows_of[rows]


def _squares(base: np.ndarray, cand: np.ndarray, chunk: int = 8192) -> Tuple[np.ndarray, np.ndarray]:
    """``|b|^2`` and ``|c - b|^2`` per row as ``DiffStats.add`` returns them (float32 rows: within (dim + 4) u),
    ``chunk`` rows at a time (the difference is a temporary)."""
    work = np.float64 if np.result_type(base.dtype, cand.dtype).itemsize > 4 else np.float32
    bsq: np.ndarray = np.empty(len(base), dtype=work)
    dsq: np.ndarray = np.empty(len(base), dtype=work)
    for s in range(0, len(base), chunk):
        b, c = base[s : s + chunk].astype(work, copy=False), cand[s : s + chunk].astype(work, copy=False)
        d = c - b
        bsq[s : s + chunk], dsq[s : s + chunk] = np.einsum("ij,ij->i", b, b), np.einsum("ij,ij->i", d, d)
    return bsq, dsq


def _document_runs(docs: np.ndarray, copy_rows: int = 8192) -> List[Tuple[int, int]]:
    """Ranges of ``docs`` (segment rows holding documents) to feed the top-k at a time: each contiguous run
    whole (a view of the segment), or, when the roles interleave (more than 64 runs), pieces of
    ``copy_rows`` rows (copied): memory stays a few MB whatever the segment and the number of queries."""
    if not len(docs):
        return []
    breaks = np.flatnonzero(np.diff(docs) != 1) + 1
    if len(breaks) <= 64:
        bounds = [0, *breaks.tolist(), len(docs)]
        return list(zip(bounds[:-1], bounds[1:]))
    return [(s, min(len(docs), s + copy_rows)) for s in range(0, len(docs), copy_rows)]


#: what a batch judges: the verdict's top-k (re-embed everything) and, when asked, the kept index and the rolling
#: re-embed, all over the same queries (the candidate side's queries), each exact or certified
VERDICT, TRACKS = "reembed", tuple(scenarios.SCENARIOS)


@dataclass
class _Accumulators:
    """One worker's retrieval accumulators per track: the exact stream (the queries the certificate will not
    clear) and the certificate's proof; the exact streams share one baseline screening product (``shared``)."""

    exact: Dict[str, TopKStream] = field(default_factory=dict)
    proofs: Dict[str, CertifyStream] = field(default_factory=dict)
    shared: bool = True

    def add(self, positions: np.ndarray, base: np.ndarray, cand: np.ndarray, bsq: np.ndarray, dsq: np.ndarray,
            rolled: Mask = None) -> None:
        masks: Dict[str, Mask] = {VERDICT: None, "keep_index": np.zeros(len(base), dtype=bool), "rolling": rolled}
        if self.proofs:
            add_proofs([(proof, masks[key]) for key, proof in self.proofs.items()], positions, base, cand, bsq, dsq)
        fed: List[Fed] = [(stream, masks[key]) for key, stream in self.exact.items()]
        for group in [fed] if self.shared else [[f] for f in fed]:
            add_shared(group, positions, base, cand, bsq, dsq)

    def merge(self, other: _Accumulators) -> None:
        for mine, theirs in ((self.exact, other.exact), (self.proofs, other.proofs)):
            for key, part in mine.items():
                part.merge(theirs[key])  # type: ignore[arg-type]  # the same kind of part under the same key


class Retrieval:
    """Top-k agreement of one bi-encoder: ``accumulators()`` per worker for the judge's pass (the first query
    batch), then ``finish(merged)`` runs the other batches; ``rolling_share``: the scenarios ride along."""

    def __init__(self, pair: EmbeddingPair, k: int, tie_tolerance: float, certificate: Optional[Source] = None,
                 scoring: Scoring = None, collect: bool = False, rolling_share: Optional[float] = None) -> None:
        self.pair, self.k, self.tie, self.scoring = pair, int(k), float(tie_tolerance), scoring
        nq, self.n_docs = len(pair.queries), int(pair.documents.sum())
        self.keep = width(self.k, self.n_docs)
        self.source: Optional[Source] = certificate if scoring is None else None  # quantized rows: exact only
        self.collect = collect and scoring is None  # keep the baseline's top ``keep`` of every exact pass
        self.collected: List[Certificate] = []
        self.share = rolling_share if scoring is None else None
        # which documents the rolling re-embed has done (1) or not (0), hashed from the ids when first asked (-1)
        self.rolled: np.ndarray = np.full(pair.rows if self.share is not None else 0, -1, dtype=np.int8)
        self.found: Tuple[scenarios.Scenario, ...] = ()
        self.tracks = TRACKS if self.share is not None else (VERDICT,)
        self.query_bytes = query_bytes(pair, self.keep, scoring, len(self.tracks))
        size = queries_per_pass(self.query_bytes, pair.segment_bytes, pair.settings.memory_mb,
                                pair.settings.min_queries_per_pass)
        self.batches = [(s, min(nq, s + size)) for s in range(0, nq, size)]
        self.first: Optional[_Batch] = _Batch(self, *self.batches[0])

    def add_segment(self, accumulators: _Accumulators, position: int, base: np.ndarray, cand: np.ndarray,
                    squares: Optional[Tuple[np.ndarray, np.ndarray]] = None) -> None:
        """Feed a segment's document rows (views where contiguous) to one worker's ``accumulators``, as ``scoring``
        makes them, with ``DiffStats.add``'s ``squares`` or ones computed here."""
        docs = np.flatnonzero(self.pair.documents[position : position + len(base)])
        for a, z in _document_runs(docs):
            rows = slice(int(docs[a]), int(docs[z - 1]) + 1) if docs[z - 1] - docs[a] == z - a - 1 else docs[a:z]
            b, c = base[rows], cand[rows]
            if self.scoring is not None:
                b, c = self.scoring(b), self.scoring(c)
            bsq, dsq = (squares[0][rows], squares[1][rows]) if squares is not None else _squares(b, c)
            accumulators.add(position + docs[a:z], b, c, bsq, dsq, LazyMask(self.done, position + docs[a:z]))

    def done(self, positions: np.ndarray) -> np.ndarray:
        """Whether the rolling re-embed has done the documents at ``positions`` (hashed once each, when first
        asked: only the documents a screen keeps or a certificate gathers)."""
        known = self.rolled[positions]
        new = positions[known < 0]
        if len(new) and self.share is not None:
            self.rolled[new] = known[known < 0] = scenarios.rolled(self.pair.ids_at(new), self.share)
        return known > 0

    def pass_name(self, index: int) -> str:
        """How the progress reports name the pass of batch ``index``."""
        nq, (start, stop) = len(self.pair.queries), self.batches[index]
        how = ("scored exactly, keeping the certificate" if self.collect
               else "certified" if self.source is not None else "scored exactly")
        queries = f"queries {start + 1:,}-{stop:,} of {nq:,}" if len(self.batches) > 1 else f"{nq:,} queries"
        return f"pass {index + 1}/{len(self.batches)}: {queries} ({how})"

    @property
    def held_bytes(self) -> int:
        """What the first batch holds through the judge's pass (counted against the memory budget)."""
        return self.query_bytes * (self.batches[0][1] - self.batches[0][0])

    def accumulators(self) -> _Accumulators:
        assert self.first is not None
        return self.first.accumulators()

    def finish(self, merged: _Accumulators) -> Tuple[TopKAgreement, int, int]:
        """The agreement over all queries, the number certified and the number scored against every document."""
        nq = len(self.pair.queries)
        first, self.first = self.first, None
        parts: Dict[str, List[TopKAgreement]] = {key: [] for key in self.tracks}
        certified = 0
        for index, (start, stop) in enumerate(self.batches):
            if index:
                batch = _Batch(self, start, stop)
                accumulated = batch.own_pass(batch.accumulators, self.pass_name(index))
            else:  # the first batch's pass was the judge's
                batch, accumulated, first = first, merged, None  # type: ignore[assignment]  # set in __init__
            agreements, n_certified, top = batch.finish(accumulated)
            accumulated.exact, accumulated.proofs = {}, {}  # this batch's pools and vectors go before the next's
            del batch
            if top is not None:
                self.collected.append(top)
            for key, agreement in agreements.items():
                parts[key].append(agreement)
            certified += n_certified
        found = {key: TopKAgreement.concat(self.k, p) for key, p in parts.items()}  # the batches, in query order
        if self.share is not None:
            titles = {**scenarios.SCENARIOS, "rolling": f"rolling re-embed ({self.share:.0%} of documents done)"}
            self.found = tuple(scenarios.Scenario(key, titles[key], found[key]) for key in TRACKS)
        return found[VERDICT], certified, nq - certified

    def certificate(self) -> Optional[Certificate]:
        """The baseline's top ``keep`` documents per query collected by ``finish`` (``collect``), else None."""
        if not self.collect or len(self.collected) != len(self.batches):
            return None
        return Certificate(positions=np.concatenate([c.positions for c in self.collected]),
                           scores=np.concatenate([c.scores for c in self.collected]))


class _Batch:
    """The queries ``start:stop``: their vectors, their part of the certificate, which of them the stream
    scores exactly, and their agreement."""

    def __init__(self, owner: Retrieval, start: int, stop: int) -> None:
        self.owner, self.start, self.stop = owner, start, stop
        self.base_q, self.cand_q = owner.pair.query_vectors(start, stop)
        if owner.scoring is not None:
            self.base_q, self.cand_q = owner.scoring(self.base_q), owner.scoring(self.cand_q)
        nq = stop - start
        self.certificate = owner.source.rows(start, stop) if owner.source is not None else None
        self.exact_rows = np.arange(nq)  # queries scored exactly in the stream
        self._shared: Optional[Tuple[np.ndarray, ...]] = None
        if self.certificate is not None:
            self.moves = query_moves(self.base_q, self.cand_q)
            guess = 4 * float(np.quantile(self.moves, 0.99)) + 1e-9 if nq else 0.0
            within = certifiable(self.certificate.scores, owner.k, (self.moves + guess) * (1 + 1e-6) + ROUNDING,
                                 every_document=self.certificate.width >= owner.n_docs)
            if within.mean() >= 0.5:
                self.exact_rows = np.flatnonzero(~within)
            else:  # large moves: nothing much would certify, the exact pass is the whole cost anyway
                self.certificate = None

    def accumulators(self) -> _Accumulators:
        rows, owner = self.exact_rows, self.owner
        out = _Accumulators()
        for key in owner.tracks if len(rows) else ():
            keep = owner.keep if owner.collect and key == VERDICT else 0
            out.exact[key] = TopKStream(_take(self.base_q, rows), _take(self.cand_q, rows), owner.k, owner.tie,
                                        keep=keep)
        if self.certificate is not None:
            if self._shared is None:
                self._shared = CertifyStream.shared(self.base_q, self.cand_q, self.certificate.positions)
            out.proofs = {key: CertifyStream(self.base_q, self.cand_q, self.certificate.positions, shared=self._shared,
                                             baseline=key == VERDICT) for key in owner.tracks}  # one baseline gather
        return out

    def finish(self, merged: _Accumulators) -> Tuple[Dict[str, TopKAgreement], int, Optional[Certificate]]:
        """Each track's agreement over the batch, how many of its queries the verdict certified, and
        (rebuilding) its certificate rows. A query a track's proof could not clear is scored in one more pass."""
        owner, nq = self.owner, self.stop - self.start
        parts = {key: [(self.exact_rows, stream.agreement())] for key, stream in merged.exact.items()}
        top = Certificate(*merged.exact[VERDICT].baseline_top()) if owner.collect and VERDICT in merged.exact else None
        n_certified, missed, cert = 0, {}, self.certificate
        in_stream = np.isin(np.arange(nq), self.exact_rows)
        for key, proof in merged.proofs.items():
            assert cert is not None  # proofs only with a certificate
            proof.sb = merged.proofs[VERDICT].sb  # the same (query, document) pairs: gathered once
            certified = proof.certified(cert.scores, owner.k, self.moves, cert.width >= owner.n_docs)
            full, left = np.flatnonzero(certified & ~in_stream), np.flatnonzero(~(certified | in_stream))
            if len(full):
                parts.setdefault(key, []).append((full, proof.agreement(full, owner.k, owner.tie)))
            n_certified += len(full) if key == VERDICT else 0
            if len(left):
                missed[key] = left
        if missed:
            count = len(np.unique(np.concatenate(list(missed.values()))))
            rescored = self.own_pass(lambda: _Accumulators({key: TopKStream(_take(self.base_q, rows), _take(
                self.cand_q, rows), owner.k, owner.tie) for key, rows in missed.items()}, shared=False),
                f"one more pass: {count:,} queries the bound could not clear")
            for key, stream in rescored.exact.items():
                parts.setdefault(key, []).append((missed[key], stream.agreement()))
        return {key: combine(nq, owner.k, parts.get(key, [])) for key in owner.tracks}, n_certified, top

    def own_pass(self, make: Callable[[], _Accumulators], what: str) -> _Accumulators:
        """One more pass over the pair, retrieval only: ``make()``'s accumulators per worker, merged."""
        workers = [RetrievalWorker(self.owner, make()) for _ in range(max(1, self.owner.pair.threads))]
        held = self.owner.query_bytes * (self.stop - self.start)
        merged = run_pass(self.owner.pair, workers, self.owner, held_bytes=held, what=what).topk
        assert merged is not None  # made above
        return merged


class RetrievalWorker:
    """One thread's share of a pass: the retrieval accumulators (by default the first query batch's) it feeds."""

    def __init__(self, retrieval: Optional[Retrieval], topk: Optional[_Accumulators] = None) -> None:
        self.retrieval = retrieval
        self.topk = topk if topk is not None or retrieval is None else retrieval.accumulators()

    def __call__(self, segment: Segment) -> None:
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # NaN/Inf rows: refused afterwards
            self.add(*segment)

    def add(self, position: int, base: np.ndarray, cand: np.ndarray,
            squares: Optional[Tuple[np.ndarray, np.ndarray]] = None) -> None:
        if self.retrieval is not None and self.topk is not None:
            self.retrieval.add_segment(self.topk, position, base, cand, squares)

    def merge(self, other: RetrievalWorker) -> None:
        if self.topk is not None and other.topk is not None:
            self.topk.merge(other.topk)
        other.topk = None  # merged: held no longer


W = TypeVar("W", bound=RetrievalWorker)


def run_pass(pair: EmbeddingPair, workers: List[W], retrieval: Optional[Retrieval], tap: Optional[Worker] = None,
             held_bytes: Optional[int] = None, what: Optional[str] = None) -> W:
    """One pass of ``workers`` over the pair (by default the first query batch's), merged into the first."""
    if retrieval is not None:
        held_bytes = retrieval.held_bytes if held_bytes is None else held_bytes
        what = retrieval.pass_name(0) if what is None else what
    pair.feed(workers, held_bytes=held_bytes or 0, what=what or "", tap=tap)
    first, *others = workers
    for other in others:
        first.merge(other)
    return first


class StatsWorker(RetrievalWorker):
    """One thread's accumulators in a judge's pass: ``stats`` (element statistics or quantized figures), and the
    first query batch's retrieval (fed the squared norms ``stats.add`` returns, if any)."""

    def __init__(self, stats: Any, retrieval: Optional[Retrieval]) -> None:
        super().__init__(retrieval)
        self.stats = stats

    def add(self, position: int, base: np.ndarray, cand: np.ndarray, squares: Any = None) -> None:
        super().add(position, base, cand, self.stats.add(position, base, cand))

    def merge(self, other: RetrievalWorker) -> None:
        assert isinstance(other, StatsWorker)
        self.stats.merge(other.stats)
        other.stats = None  # merged: held no longer
        super().merge(other)


def first_pass(pair: EmbeddingPair, stats: Callable[[], Any], retrieval: Optional[Retrieval],
               tap: Optional[Worker] = None) -> StatsWorker:
    """The verdict's pass: one worker per thread, each with its own ``stats()``, merged into the first."""
    return run_pass(pair, [StatsWorker(stats(), retrieval) for _ in range(max(1, pair.threads))], retrieval, tap)
