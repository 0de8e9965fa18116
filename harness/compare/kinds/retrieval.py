"""The bi-encoder's top-k retrieval judgement over streamed documents: exact for every query (``TopKStream``),
or decided from the baseline's certificate for most queries and exact for the rest (``stats.certify``).

Which queries are scored against every document in the stream is decided before it, from the certificate's
scores and the queries' own moves (the documents are not read yet: their moves are guessed from the
queries'); the proof is checked after it with the documents' real moves. A query the guess missed is scored in
a second pass over the files (only such queries), so the verdict is exact either way; the guess only decides
whether that pass runs. A certificate whose baseline content is not confirmed is not used: every query is
scored exactly then, and the certificate rebuilt.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from harness.compare import certificate as certs
from harness.compare.kinds.source import EmbeddingPair, FilePair
from harness.compare.metrics import TopKAgreement
from harness.compare.stats import TopKStream
from harness.compare.stats.certify import ROUNDING, CertifyStream, certifiable, combine, query_moves

__all__ = ["Retrieval"]


def _documents(pair: EmbeddingPair, position: int, count: int) -> np.ndarray:
    return np.flatnonzero(pair.documents[position : position + count])


def _take(rows_of: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``rows_of[rows]``, but the array itself (no copy: 123 MB per side at 80k x 384) when ``rows`` is every row."""
    if len(rows) == len(rows_of) and (not len(rows) or (rows[0] == 0 and (np.diff(rows) == 1).all())):
        return rows_of
    return rows_of[rows]


def _squares(base: np.ndarray, cand: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``|b|^2`` and ``|c - b|^2`` per row as ``DiffStats.add`` returns them (float32 rows: within (dim + 4) u)."""
    work = np.float64 if np.result_type(base.dtype, cand.dtype).itemsize > 4 else np.float32
    b, c = base.astype(work, copy=False), cand.astype(work, copy=False)
    d = c - b
    return np.einsum("ij,ij->i", b, b), np.einsum("ij,ij->i", d, d)


class _Accumulators:
    """One worker's retrieval accumulators, fed the document rows of each segment."""

    def __init__(self, parts: Sequence[object]) -> None:
        self.parts = list(parts)

    def add(self, positions: np.ndarray, base: np.ndarray, cand: np.ndarray, bsq: np.ndarray, dsq: np.ndarray) -> None:
        for part in self.parts:
            part.add(positions, base, cand, bsq, dsq)  # type: ignore[attr-defined]

    def merge(self, other: "_Accumulators") -> None:
        for mine, theirs in zip(self.parts, other.parts):
            mine.merge(theirs)  # type: ignore[attr-defined]


class Retrieval:
    """Top-k agreement of one bi-encoder: ``accumulators()`` per worker (fed by the judge's workers),
    then ``finish(merged)`` gives the agreement and how many queries were certified / scored exactly."""

    def __init__(self, pair: EmbeddingPair, queries: Tuple[np.ndarray, np.ndarray, int], tie_tolerance: float,
                 model_id: str = "", certificate: Optional[certs.Certificate] = None) -> None:
        self.pair = pair
        self.base_q, self.cand_q, self.k = queries
        self.tie = float(tie_tolerance)
        nq, n_docs = len(self.base_q), int(pair.documents.sum())
        self.keep = certs.width(self.k, n_docs)
        self.lookup: Optional[certs.Lookup] = None
        if certificate is None and isinstance(pair, FilePair) and certs.enabled(nq, n_docs, pair.base.path):
            self.lookup = certs.Lookup(pair.base.path, model_id, self.k)
            certificate = self.lookup.load(pair.queries, pair.documents)
        self.certificate = certificate
        self.rebuild = self.lookup is not None and certificate is None  # file the exact pass's top-(k+1)
        self.exact_rows = np.arange(nq)  # queries scored exactly in the stream
        self._shared: Optional[Tuple[np.ndarray, ...]] = None
        if certificate is not None:
            self.moves = query_moves(self.base_q, self.cand_q)
            guess = 4 * float(np.quantile(self.moves, 0.99)) + 1e-9 if nq else 0.0
            every = certificate.scores.shape[1] >= n_docs
            within = certifiable(certificate.scores, self.k, (self.moves + guess) * (1 + 1e-6) + ROUNDING,
                                 every_document=every)
            if within.mean() >= 0.5:
                self.exact_rows = np.flatnonzero(~within)
            else:  # large moves: nothing much would certify, the exact pass is the whole cost anyway
                self.certificate = None

    def accumulators(self) -> _Accumulators:
        parts: List[object] = []
        rows = self.exact_rows
        if len(rows):
            keep = self.keep if self.rebuild else 0
            parts.append(TopKStream(_take(self.base_q, rows), _take(self.cand_q, rows), self.k, self.tie, keep=keep))
        if self.certificate is not None:
            if self._shared is None:
                self._shared = CertifyStream.shared(self.base_q, self.cand_q, self.certificate.positions)
            parts.append(CertifyStream(self.base_q, self.cand_q, self.certificate.positions, shared=self._shared))
        return _Accumulators(parts)

    def finish(self, merged: _Accumulators) -> Tuple[TopKAgreement, int, int]:
        """The agreement over all queries, the number certified (the bound proves the candidate's top-k lies in
        the certificate's W documents, decided by both sides' exact scores of those W alone) and the number
        scored against every document."""
        nq = len(self.base_q)
        parts = list(merged.parts)
        exact = parts.pop(0) if len(self.exact_rows) else None
        exact_parts = [(self.exact_rows, exact.agreement())] if exact is not None else []
        if self.certificate is None:
            if self.rebuild and self.lookup is not None and exact is not None:
                positions, scores = exact.baseline_top()
                self.lookup.save(certs.Certificate(positions=positions, scores=scores), self.pair.queries)
            return combine(nq, self.k, np.zeros(nq, bool), exact_parts), 0, nq
        proof: CertifyStream = parts.pop(0)  # type: ignore[assignment]
        if self.lookup is not None and not self.lookup.confirmed():
            # the baseline is not the one the certificate describes: every query scored, the certificate rebuilt
            again = self._rescore(np.arange(nq), keep=self.keep)
            positions, scores = again.baseline_top()
            self.lookup.save(certs.Certificate(positions=positions, scores=scores), self.pair.queries)
            return combine(nq, self.k, np.zeros(nq, bool), [(np.arange(nq), again.agreement())]), 0, nq
        every = self.certificate.scores.shape[1] >= int(self.pair.documents.sum())
        certified = proof.certified(self.certificate.scores, self.k, self.moves, every)
        in_stream = np.zeros(nq, dtype=bool)
        in_stream[self.exact_rows] = True
        full = certified & ~in_stream
        if full.any():
            exact_parts.append((np.flatnonzero(full), proof.agreement(np.flatnonzero(full), self.k, self.tie)))
        settled = full | in_stream
        missed = np.flatnonzero(~settled)
        if len(missed):
            exact_parts.append((missed, self._rescore(missed).agreement()))
        n_certified = int(full.sum())
        return combine(nq, self.k, np.zeros(nq, bool), exact_parts), n_certified, nq - n_certified

    def _rescore(self, rows: np.ndarray, keep: int = 0) -> TopKStream:
        """A second pass over the pair: exact top-k of the queries ``rows`` only."""
        streams = [TopKStream(_take(self.base_q, rows), _take(self.cand_q, rows), self.k, self.tie, keep=keep)
                   for _ in range(max(1, self.pair.threads))]

        def worker(stream: TopKStream):  # type: ignore[no-untyped-def]
            def add(segment: Tuple[int, np.ndarray, np.ndarray]) -> None:
                position, base, cand = segment
                docs = _documents(self.pair, position, len(base))
                if len(docs):
                    b, c = base[docs], cand[docs]
                    with np.errstate(invalid="ignore", over="ignore"):
                        stream.add(position + docs, b, c, *_squares(b, c))
            return add

        self.pair.feed([worker(s) for s in streams])
        first, *others = streams
        for other in others:
            first.merge(other)
        return first
