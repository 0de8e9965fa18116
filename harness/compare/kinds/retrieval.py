"""The bi-encoder's top-k retrieval judgement over streamed documents, a batch of queries at a time: exact for
every query of a batch (``TopKStream``), or decided from the baseline's certificate for most and exact for the
rest (``stats.certify``).

Memory is the budget's, whatever the number of queries: the queries are cut into batches whose vectors and
retrieval state fit beside one row group pair (``workers.queries_per_pass``; at 384 float32 dims and the default
512 MB, ~46k queries). The first batch rides along the judge's own pass over the files (with the element
statistics); each further batch is one more pass, retrieval only. The verdict is the same for any batch size.

Which queries of a batch are scored against every document in the stream is decided before it, from the
certificate's scores and the queries' own moves (the documents are not read yet: their moves are guessed from the
queries'); the proof is checked after it with the documents' real moves. A query the guess missed is scored in
one more pass over the files (only such queries), so the verdict is exact either way; the guess only decides
whether that pass runs. The certificate is a hint the caller hands in (read by the comparator, filed by
``harness.compare.certify``); nothing here reads or writes files. ``collect`` keeps the baseline's top documents of
every exact pass: how the certifying step builds a certificate with this same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple, Union

import numpy as np

from harness.compare import certificate as certs
from harness.compare import scenarios
from harness.compare.kinds.source import EmbeddingPair
from harness.compare.metrics import TopKAgreement
from harness.compare.stats.certify import ROUNDING, CertifyStream, certifiable, combine, query_moves
from harness.compare.stats.topk import Fed, TopKStream, add_shared
from harness.compare.workers import queries_per_pass

__all__ = ["Retrieval", "query_bytes"]

#: bytes of retrieval state per query and kept document, for each worker and once more for what they share: the
#: exact pool's entries (query, position, both scores: 32 B, twice while a block's hits are merged and pruned), or
#: the certificate's position and score, both sides' gathered scores and the sorted request arrays
STATE_BYTES_PER_KEPT = 64

#: a certificate in memory, or a filed one read a query batch at a time
Source = Union[certs.Certificate, certs.CertificateFile]


#: rows as retrieval scores them (quantized rows: ``quantized.scoring_floats``), None for float vectors as they are
Scoring = Optional[Callable[[np.ndarray], np.ndarray]]


def query_bytes(pair: EmbeddingPair, keep: int, scoring: Scoring = None) -> int:
    """What one query of a batch costs: both sides' vectors as scored and its retrieval state (``keep``
    documents)."""
    if scoring is None:
        vectors = pair.dim * (pair.base_dtype.itemsize + pair.cand_dtype.itemsize)
    else:
        vectors = 2 * scoring(np.zeros((1, pair.dim), dtype=pair.base_dtype)).nbytes
    return vectors + STATE_BYTES_PER_KEPT * keep * (max(1, pair.threads) + 1) + 64


def _take(rows_of: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``rows_of[rows]``, but the array itself (no copy) when ``rows`` is every row."""
    if len(rows) == len(rows_of) and (not len(rows) or (rows[0] == 0 and (np.diff(rows) == 1).all())):
        return rows_of
    return rows_of[rows]


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


@dataclass
class _Accumulators:
    """One worker's retrieval accumulators, fed the document rows of each segment: the exact stream (the
    batch's queries not certified; ``whole``: all of them), the certificate's proof, and the retrieval scenarios
    over every query of the batch (kept index, rolling re-embed: ``rolled`` says which documents are done)."""

    exact: Optional[TopKStream] = None
    proof: Optional[CertifyStream] = None
    keep_index: Optional[TopKStream] = None
    rolling: Optional[TopKStream] = None
    whole: bool = False

    def add(self, positions: np.ndarray, base: np.ndarray, cand: np.ndarray, bsq: np.ndarray, dsq: np.ndarray,
            rolled: Optional[np.ndarray] = None) -> None:
        fed: List[Fed] = []  # streams over the batch's baseline queries: one screening product for all
        if self.exact is not None:
            if self.whole:
                fed.append((self.exact, None))
            else:
                self.exact.add(positions, base, cand, bsq, dsq)
        if self.proof is not None:
            self.proof.add(positions, base, cand, bsq, dsq)
        if self.keep_index is not None and self.rolling is not None and rolled is not None:
            fed += [(self.keep_index, np.zeros(len(base), dtype=bool)), (self.rolling, rolled)]
        add_shared(fed, positions, base, cand, bsq, dsq)

    def merge(self, other: _Accumulators) -> None:
        for field in ("exact", "proof", "keep_index", "rolling"):
            mine, theirs = getattr(self, field), getattr(other, field)
            if mine is not None:
                mine.merge(theirs)


class Retrieval:
    """Top-k agreement of one bi-encoder: ``accumulators()`` per worker for the judge's pass (the first query
    batch; ``held_bytes`` is what that batch holds), then ``finish(merged)`` runs the other batches and gives
    the agreement over all queries and how many were certified / scored exactly. ``rolling_share`` (float rows
    only): the retrieval scenarios ride along the same passes (``scenarios()`` after ``finish``)."""

    def __init__(self, pair: EmbeddingPair, k: int, tie_tolerance: float, certificate: Optional[Source] = None,
                 scoring: Scoring = None, collect: bool = False, rolling_share: Optional[float] = None) -> None:
        self.pair, self.k, self.tie, self.scoring = pair, int(k), float(tie_tolerance), scoring
        nq, self.n_docs = len(pair.queries), int(pair.documents.sum())
        self.keep = certs.width(self.k, self.n_docs)
        self.source: Optional[Source] = certificate if scoring is None else None  # quantized rows: exact only
        self.collect = collect and scoring is None  # keep the baseline's top ``keep`` of every exact pass
        self.collected: List[certs.Certificate] = []
        self.share = rolling_share if scoring is None else None
        # which documents the rolling re-embed has done, hashed from their ids in the first pass, read after
        self.rolled: Optional[np.ndarray] = np.zeros(pair.rows, dtype=bool) if self.share is not None else None
        self.hashed = False
        self.found: Tuple[scenarios.Scenario, ...] = ()
        self.query_bytes = query_bytes(pair, self.keep, scoring) + (
            0 if self.share is None else 2 * STATE_BYTES_PER_KEPT * self.k * (max(1, pair.threads) + 1))
        size = queries_per_pass(self.query_bytes, pair.segment_bytes, pair.settings.memory_mb,
                                pair.settings.min_queries_per_pass)
        self.batches = [(s, min(nq, s + size)) for s in range(0, nq, size)]
        self.first: Optional[_Batch] = _Batch(self, *self.batches[0])

    def add_segment(self, accumulators: _Accumulators, position: int, base: np.ndarray, cand: np.ndarray,
                    squares: Optional[Tuple[np.ndarray, np.ndarray]] = None) -> None:
        """Feed a segment's document rows to one worker's ``accumulators``: views of the segment where the
        documents are contiguous (``_document_runs``), as ``scoring`` makes them, with the segment's ``|b|^2`` and
        ``|c - b|^2`` (``squares``: ``DiffStats.add``'s, of the raw rows) or computed here."""
        docs = np.flatnonzero(self.pair.documents[position : position + len(base)])
        done = self.rolled
        if done is not None and accumulators.rolling is not None and not self.hashed and self.share is not None:
            done[position + docs] = scenarios.rolled(self.pair.ids_at(position + docs), self.share)
        for a, z in _document_runs(docs):
            lo, hi = int(docs[a]), int(docs[z - 1]) + 1
            rows = slice(lo, hi) if hi - lo == z - a else docs[a:z]
            b, c = base[rows], cand[rows]
            if self.scoring is not None:
                b, c = self.scoring(b), self.scoring(c)
            bsq, dsq = (squares[0][rows], squares[1][rows]) if squares is not None else _squares(b, c)
            accumulators.add(position + docs[a:z], b, c, bsq, dsq,
                             done[position + docs[a:z]] if done is not None else None)

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
        """The agreement over all queries, the number certified (the bound proves the candidate's top-k lies in
        the certificate's W documents, decided by both sides' exact scores of those W alone) and the number
        scored against every document."""
        nq = len(self.pair.queries)
        first, self.first = self.first, None
        self.hashed = True  # the judge's pass saw every document
        parts: List[Tuple[np.ndarray, TopKAgreement]] = []
        kept: List[Tuple[np.ndarray, TopKAgreement]] = []
        rolling: List[Tuple[np.ndarray, TopKAgreement]] = []
        certified = 0
        for index, (start, stop) in enumerate(self.batches):
            if first is not None:
                batch, accumulated = first, merged
                first = None
            else:
                batch = _Batch(self, start, stop)
                accumulated = batch.own_pass(batch.accumulators, self.pass_name(index))
            agreement, n_certified, top = batch.finish(accumulated)
            rows = np.arange(start, stop)
            if accumulated.keep_index is not None and accumulated.rolling is not None:
                kept.append((rows, accumulated.keep_index.agreement()))
                rolling.append((rows, accumulated.rolling.agreement()))
            accumulated.exact = accumulated.proof = accumulated.keep_index = accumulated.rolling = None
            del batch  # this batch's pools and vectors go before the next batch is read
            if top is not None:
                self.collected.append(top)
            parts.append((rows, agreement))
            certified += n_certified
        agreement = combine(nq, self.k, np.zeros(nq, bool), parts)
        if self.share is not None:
            found = (agreement, *(combine(nq, self.k, np.zeros(nq, bool), p) for p in (kept, rolling)))
            titles = {**scenarios.SCENARIOS, "rolling": f"rolling re-embed ({self.share:.0%} of documents done)"}
            self.found = tuple(scenarios.Scenario(key, titles[key], a) for key, a in zip(scenarios.SCENARIOS, found))
        return agreement, certified, nq - certified

    def certificate(self) -> Optional[certs.Certificate]:
        """The baseline's top ``keep`` documents per query collected by ``finish`` (``collect``), else None."""
        if not self.collect or len(self.collected) != len(self.batches):
            return None
        return certs.Certificate(positions=np.concatenate([c.positions for c in self.collected]),
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
        out = _Accumulators(whole=len(rows) == self.stop - self.start)
        if len(rows):
            keep = owner.keep if owner.collect else 0
            out.exact = TopKStream(_take(self.base_q, rows), _take(self.cand_q, rows), owner.k, owner.tie, keep=keep)
        if self.certificate is not None:
            if self._shared is None:
                self._shared = CertifyStream.shared(self.base_q, self.cand_q, self.certificate.positions)
            out.proof = CertifyStream(self.base_q, self.cand_q, self.certificate.positions, shared=self._shared)
        if owner.share is not None:
            out.keep_index, out.rolling = (TopKStream(self.base_q, self.cand_q, owner.k, owner.tie) for _ in "kr")
        return out

    def finish(self, merged: _Accumulators) -> Tuple[TopKAgreement, int, Optional[certs.Certificate]]:
        """The batch's agreement, how many of its queries were certified, and (rebuilding) its certificate rows."""
        owner, nq = self.owner, self.stop - self.start
        exact = merged.exact
        exact_parts = [(self.exact_rows, exact.agreement())] if exact is not None else []
        if self.certificate is None or merged.proof is None:
            top = None
            if owner.collect and exact is not None:
                positions, scores = exact.baseline_top()
                top = certs.Certificate(positions=positions, scores=scores)
            return combine(nq, owner.k, np.zeros(nq, bool), exact_parts), 0, top
        certified = merged.proof.certified(self.certificate.scores, owner.k, self.moves,
                                           self.certificate.width >= owner.n_docs)
        in_stream: np.ndarray = np.zeros(nq, dtype=bool)
        in_stream[self.exact_rows] = True
        full = certified & ~in_stream
        if full.any():
            exact_parts.append((np.flatnonzero(full), merged.proof.agreement(np.flatnonzero(full), owner.k, owner.tie)))
        missed = np.flatnonzero(~(full | in_stream))
        if len(missed):
            rescored = self.own_pass(lambda: _Accumulators(TopKStream(_take(self.base_q, missed),
                                                                      _take(self.cand_q, missed), owner.k, owner.tie)),
                                     f"one more pass: {len(missed):,} queries the bound could not clear")
            assert rescored.exact is not None
            exact_parts.append((missed, rescored.exact.agreement()))
        n_certified = int(full.sum())
        return combine(nq, owner.k, np.zeros(nq, bool), exact_parts), n_certified, None

    def own_pass(self, make: Callable[[], _Accumulators], what: str) -> _Accumulators:
        """One more pass over the pair, retrieval only: ``make()``'s accumulators per worker, merged."""
        owner, pair = self.owner, self.owner.pair
        accumulators = [make() for _ in range(max(1, pair.threads))]

        def worker(acc: _Accumulators) -> Callable[[Tuple[int, np.ndarray, np.ndarray]], None]:
            def add(segment: Tuple[int, np.ndarray, np.ndarray]) -> None:
                with np.errstate(invalid="ignore", over="ignore"):
                    owner.add_segment(acc, *segment)
            return add

        pair.feed([worker(a) for a in accumulators], held_bytes=self.owner.query_bytes * (self.stop - self.start),
                  what=what)
        first, *others = accumulators
        for other in others:
            first.merge(other)
        return first
