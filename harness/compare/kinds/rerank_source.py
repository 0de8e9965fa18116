"""A cross-encoder's two results files streamed side by side, each query handed to ``RerankStats`` whole (a query
a row group boundary cuts is carried to the next chunk).

Both files are in canonical order (by query, then passage), so the same pairs are the same rows. The stream checks
it as it goes; anything else is broken input, refused with the cause found by one more read of both sides' ids.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness.compare import streaming
from harness.compare.stats.rerank import RerankStats
from harness.compare.workers import Segment
from harness.errors import ResultsFileError
from harness.results import ResultsFile, arrow_to_numpy, single_chunk
from harness.results.schema import in_canonical_order

__all__ = ["RerankPair"]

#: one aligned chunk: (baseline position of its first pair, query ids, baseline scores, candidate scores)
Chunk = Tuple[int, pa.Array, np.ndarray, np.ndarray]


class _Broken(Exception):
    """The sides do not line up pair for pair: a duplicate or an id on one side only."""


def _scores(table: pa.Table) -> np.ndarray:
    return arrow_to_numpy(table.column("score")).astype(np.float64)


def _sorted(values: pa.Array) -> pa.Array:
    """Strings sorted (arrow sorts bytewise: the code point order of Python and numpy)."""
    return values.take(pc.sort_indices(values))


class _QueryRuns:
    """Queries as runs of equal query ids in baseline order; the last run of a chunk is carried to the next."""

    def __init__(self, stats: RerankStats) -> None:
        self.stats = stats
        self.open: Optional[Tuple[str, int, List[np.ndarray], List[np.ndarray]]] = None

    def add(self, position: int, queries: pa.Array, bs: np.ndarray, cs: np.ndarray) -> None:
        if not len(bs):
            return
        encoded = single_chunk(queries).dictionary_encode()
        codes, names = arrow_to_numpy(encoded.indices), encoded.dictionary.to_pylist()
        starts = np.concatenate([[0], np.flatnonzero(codes[1:] != codes[:-1]) + 1, [len(codes)]]).tolist()
        for s, e in zip(starts, starts[1:]):
            query = str(names[codes[s]])
            if self.open is not None and self.open[0] == query:
                self.open[2].append(bs[s:e])
                self.open[3].append(cs[s:e])
                continue
            self.close()
            self.open = (query, position + s, [bs[s:e]], [cs[s:e]])

    def close(self) -> None:
        if self.open is None:
            return
        query, first, bs, cs = self.open
        self.open = None
        b, c = (np.concatenate(bs), np.concatenate(cs)) if len(bs) > 1 else (bs[0], cs[0])
        self.stats.add_query(query, np.arange(first, first + len(b)), b, c)


class RerankPair:
    """One cross-encoder of two results files, fed to ``RerankStats`` (see the module's docstring)."""

    def __init__(self, base: ResultsFile, cand: ResultsFile, model_id: str) -> None:
        self.base, self.cand, self.model_id = base, cand, model_id
        self.groups = base.model_row_groups(model_id)
        self.starts = np.cumsum([0] + [count for _, count in self.groups])
        self.rows = int(self.starts[-1])

    def feed(self, stats: RerankStats, tap: Optional[Callable[[Segment], None]] = None) -> None:
        """Every pair's scores once, every query whole once (``tap``: each chunk's, in order); refuses broken
        input (one line, file named)."""
        runs = _QueryRuns(stats)
        try:
            for position, queries, bs, cs in self._chunks():
                stats.add_scores(position, bs, cs)
                if tap is not None:
                    tap((position, bs, cs))
                runs.add(position, queries, bs, cs)
        except _Broken:
            self._refuse()
            raise ResultsFileError(f"{self.cand.path}: model '{self.model_id}' pairs are not in canonical order") from None
        runs.close()

    def _chunks(self) -> Iterator[Chunk]:
        """Both files side by side in equal-length slices (row groups may be cut differently on each side)."""
        sides = [self.base.model_table(self.model_id, ["item_id", "query_id", "passage_id", "score"]),
                 self.cand.model_table(self.model_id, ["item_id", "score"])]
        current: List[Optional[pa.Table]] = [next(sides[0], None), next(sides[1], None)]
        offset, position, last, nonfinite = [0, 0], 0, None, False
        while True:
            for side in (0, 1):
                while current[side] is not None and offset[side] >= len(current[side]):  # type: ignore[arg-type]
                    current[side], offset[side] = next(sides[side], None), 0
            if current[0] is None or current[1] is None:
                if current[0] is not None or current[1] is not None:
                    raise _Broken()
                break
            take = min(len(current[0]) - offset[0], len(current[1]) - offset[1])
            b, c = current[0].slice(offset[0], take), current[1].slice(offset[1], take)
            ids = single_chunk(b.column("item_id"))
            keys = b.select(["query_id", "passage_id"])
            if not ids.equals(single_chunk(c.column("item_id"))) or not in_canonical_order(keys, "rerank"):
                raise _Broken()
            first = (keys.column(0)[0].as_py(), keys.column(1)[0].as_py())
            if last is not None and not first > last:
                raise _Broken()
            last = (keys.column(0)[take - 1].as_py(), keys.column(1)[take - 1].as_py())
            bs, cs = _scores(b), _scores(c)
            for values in (bs, cs):
                wrong = ~np.isfinite(values)
                nonfinite |= bool(wrong.any())
                values[wrong] = 0.0  # refused at the end (``_refuse`` counts them): the statistics stay finite
            yield position, b.column("query_id"), bs, cs
            position += take
            offset[0] += take
            offset[1] += take
        if nonfinite:
            self._refuse()

    def _refuse(self) -> None:
        """Broken input, each side in turn (duplicates, then non-finite scores), then ids on one side only."""
        ids: List[pa.Array] = []
        for results in (self.base, self.cand):
            table = pa.concat_tables(list(results.model_table(self.model_id, ["item_id", "score"])))
            side_ids = single_chunk(table.column("item_id")).cast(pa.string())
            counts = pc.value_counts(side_ids)
            if len(counts) != len(side_ids):
                dups = _sorted(counts.field("values").filter(pc.greater(counts.field("counts"), 1)))[:3].to_pylist()
                raise ResultsFileError(f"{results.path}: model '{self.model_id}' has duplicate id(s) {', '.join(dups)}")
            wrong = ~np.isfinite(_scores(table))
            first = side_ids[int(np.argmax(wrong))].as_py() if wrong.any() else None
            streaming.refuse_nonfinite(results, self.model_id, int(wrong.sum()), first, "non-finite scores")
            ids.append(side_ids)
        only = [a.filter(pc.invert(pc.is_in(a, value_set=b))) for a, b in ((ids[0], ids[1]), (ids[1], ids[0]))]
        streaming.refuse_id_mismatch(self.model_id, _sorted(only[0]), _sorted(only[1]), self.cand.path)

    def pair_ids(self, positions: Sequence[int]) -> Dict[int, str]:
        """The baseline's pair ids at these positions, reading only the row groups that hold them."""
        out: Dict[int, str] = {}
        where = np.searchsorted(self.starts, np.asarray(positions, dtype=np.int64), side="right") - 1
        for g in sorted(set(where.tolist())):
            ids = self.base.read_model_group(self.model_id, self.groups[g][0], ["item_id"]).column("item_id")
            for p, at in zip(positions, where.tolist()):
                if at == g:
                    out[p] = str(ids[p - int(self.starts[g])].as_py())
        return out
