"""Where a bi-encoder's two sides come from: two results files (``FilePair``, streamed row group pair by row group
pair) or two aligned arrays (``ArrayPair``, in memory). The judges and their verdicts are the same for both; only
the feeding differs.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple, Type, Union

import numpy as np

from harness.compare import progress, streaming
from harness.compare.streaming import NONFINITE
from harness.compare.workers import run_segments
from harness.config.environment import CompareSettings
from harness.errors import HarnessError, UnusableValues
from harness.results import ResultsFile

__all__ = ["ArrayPair", "EmbeddingPair", "FilePair", "Worker"]

#: a worker takes one aligned segment: (baseline position of its first row, baseline rows, candidate rows)
Worker = Callable[[streaming.Segment], None]


class _Pair:
    """What both sources share: sizes, roles and the settings, in the baseline's row order."""

    rows: int
    dim: int
    base_dtype: np.dtype
    cand_dtype: np.dtype
    queries: np.ndarray  # baseline positions of the rows with role "query"
    documents: np.ndarray  # bool per baseline position: role "document"
    threads: int  # how many workers ``feed`` keeps busy
    settings: CompareSettings  # the comparison's memory budget, certificate use, progress listener
    segment_bytes: int = 0  # bytes of the largest segment pair ``feed`` reads (0: both sides already in memory)
    model_id: str
    labels: Tuple[str, str]  # the sides as bad input is refused naming them
    error: Type[HarnessError] = HarnessError

    def ids_at(self, positions: np.ndarray) -> List[str]:
        raise NotImplementedError

    def retrieval_k(self, k: int) -> Optional[int]:
        """The k to compare (at most the documents there are); None when there are no queries or no documents (no
        retrieval to judge)."""
        n_docs = int(self.documents.sum())
        return min(k, n_docs) if len(self.queries) and n_docs else None

    def item_id(self, position: int) -> str:
        """The id of the text at baseline position ``position``."""
        return self.ids_at(np.array([position]))[0]

    def refuse_nonfinite(self, base_rows: List[int], cand_rows: List[int], problem: str = NONFINITE) -> None:
        """Raise for NaN/Inf rows (baseline positions) or all-zero baseline rows (``problem``): bad input, never a
        verdict. The baseline first; each side's first bad row in its own order."""
        for label, rows in zip(self.labels, (base_rows, cand_rows)):
            if rows:
                model = f" model '{self.model_id}'" if self.model_id else ""
                first = self.item_id(min(rows))
                raise self.error(f"{label}:{model} has {problem} in {len(rows)} row(s) (first: '{first}')")


class FilePair(_Pair):
    """One bi-encoder of two results files, streamed row group by row group."""

    error = UnusableValues

    def __init__(self, base: ResultsFile, cand: ResultsFile, model_id: str,
                 settings: Optional[CompareSettings] = None) -> None:
        self.base, self.cand, self.model_id = base, cand, model_id
        self.labels = (str(base.path), str(cand.path))
        self.settings = settings or CompareSettings.from_environment()
        self.plan = streaming.plan(base, cand, model_id)
        self.rows, self.dim = self.plan.rows, self.plan.dim
        self.base_dtype, self.cand_dtype = base.vector_spec(model_id)[1], cand.vector_spec(model_id)[1]
        self.queries, self.documents, self.threads = self.plan.queries, self.plan.documents, self.settings.workers
        self.segment_bytes = streaming.row_group_pair_bytes(base, cand, model_id)

    def ids_at(self, positions: np.ndarray) -> List[str]:
        """The ids of the texts at baseline ``positions`` (the rolling re-embed hashes them)."""
        if not len(positions):
            return []
        lo, ids = int(positions.min()), self.plan.base_ids  # no ``take``: arrow converts indices through pandas
        span = int(positions.max()) - lo + 1
        if 8 * len(positions) < span:  # a few, scattered: one by one
            return [str(ids[i].as_py()) for i in positions.tolist()]
        values = ids.slice(lo, span).to_pylist()
        return [str(values[i]) for i in (positions - lo).tolist()]

    def query_vectors(self, start: int = 0, stop: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
        """Both sides' vectors of the queries ``start:stop`` (a query batch), in the order of ``queries``."""
        rows = self.plan.queries[start:stop]
        return streaming.read_rows(self.base, self.model_id, rows), streaming.read_rows(self.cand, self.model_id, rows)

    def feed(self, workers: Sequence[Worker], held_bytes: int = 0, what: str = "",
             tap: Optional[Worker] = None) -> None:
        """Call the workers on aligned segments covering every row once (``held_bytes``: what the caller holds for
        the whole pass, counted against the memory budget; ``what``: the pass, for its progress reports; ``tap``:
        also called on every segment, in order)."""
        counter = progress.tracker(self.settings.listener, self.model_id, what or "one pass", self.rows)
        streaming.stream(self.base, self.cand, self.model_id, workers, held_bytes, self.settings.memory_mb,
                         counter, tap)


class ArrayPair(_Pair):
    """Two aligned in-memory arrays (row i of each is the same text), with the rows' ids and roles."""

    #: rows per segment handed to the worker (the accumulators are fed as from a file's row groups)
    SEGMENT_ROWS = 1 << 16

    def __init__(self, ids: Sequence[str] | np.ndarray, roles: Sequence[str] | np.ndarray | None, base: np.ndarray,
                 cand: np.ndarray, labels: Tuple[str, str] = ("baseline", "candidate"), model_id: str = "",
                 settings: Optional[CompareSettings] = None) -> None:
        if base.shape != cand.shape or base.ndim != 2 or len(ids) != len(base):
            raise ValueError(f"ArrayPair: expected two aligned (rows, dim) arrays and one id per row, got "
                             f"{base.shape}, {cand.shape} and {len(ids)} ids")
        self.ids, self.base, self.cand = np.asarray(ids, dtype=str), base, cand
        self.labels, self.model_id = labels, model_id
        self.rows, self.dim = int(base.shape[0]), int(base.shape[1])
        self.base_dtype, self.cand_dtype = base.dtype, cand.dtype
        role = np.asarray(roles, dtype=str) if roles is not None else np.full(self.rows, "", dtype=str)
        self.queries, self.documents, self.threads = np.flatnonzero(role == "query"), role == "document", 1
        self.settings = settings or CompareSettings.from_environment()

    def ids_at(self, positions: np.ndarray) -> List[str]:
        return [str(i) for i in self.ids[positions]]

    def query_vectors(self, start: int = 0, stop: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
        rows = self.queries[start:stop]
        return self.base[rows], self.cand[rows]

    def feed(self, workers: Sequence[Worker], held_bytes: int = 0, what: str = "",
             tap: Optional[Worker] = None) -> None:
        bounds = range(0, self.rows, self.SEGMENT_ROWS)
        run_segments(((s, self.base[s : s + self.SEGMENT_ROWS], self.cand[s : s + self.SEGMENT_ROWS]) for s in bounds),
                     workers[:1], tap=tap)


#: both sides of one bi-encoder, from files or arrays
EmbeddingPair = Union[FilePair, ArrayPair]
