"""Where a cross-encoder's two sides come from when they are results files: scores streamed row group by row
group in the baseline's order, each query handed to ``RerankStats`` whole, in memory bounded by configuration.

What is held, and what bounds it (``MEMORY_MB`` = ``HARNESS_COMPARE_MEMORY_MB``):

* Same pair ids in the same order (the normal case; checked chunk by chunk, ids strictly increasing so no
  duplicates): one row group of each side, plus the query cut by a row group boundary, carried to the next
  chunk (a query is always whole in memory: its size bounds its own cost).
* Another order, ids not increasing (duplicates possible) or ids missing: the pairs of both sides are bucketed
  by a hash of their id, each bucket joined in memory (duplicates and missing ids found there, as exactly as
  before), and the candidate's scores written back in baseline order, bucketed by baseline row group. Each
  bucket holds about ``MEMORY_MB / 2``; one bucket stays in memory, more go to temporary files (disk: ~50 bytes
  per pair of each side).
* Queries not contiguous in the baseline (a query id seen again after its rows ended): a second pass buckets
  the pairs by a hash of their query id (the same way) and judges each query from its bucket.
* Per query: a hash of its id while streaming (to notice a query that comes back), and ``RerankStats``' four
  numbers.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness.compare import streaming
from harness.compare.kinds import rerank_spill as spill
from harness.compare.stats.rerank import RerankStats
from harness.errors import ResultsFileError
from harness.results import ResultsFile, arrow_to_numpy, single_chunk

__all__ = ["RerankPair"]

#: one aligned chunk: (baseline position of its first pair, query ids, baseline scores, candidate scores)
Chunk = Tuple[int, pa.Array, np.ndarray, np.ndarray]


class _OtherOrder(Exception):
    """The candidate's ids are not the baseline's, in the same strictly increasing order."""


def _scores(table: pa.Table) -> np.ndarray:
    return arrow_to_numpy(table.column("score")).astype(np.float64)


def _smallest(found: List[str], more: Sequence[str], n: int = 3) -> List[str]:
    return sorted(set(found) | set(map(str, more)))[:n]


def _first_sorted(values: pa.Array, n: int = 3) -> List[str]:
    """The ``n`` smallest strings (arrow sorts bytewise: the code point order of Python and numpy)."""
    return values.take(pc.sort_indices(values)[:n]).to_pylist() if len(values) else []


class _Returning:
    """Hashes of the query ids already finished, to notice one that comes back (its rows not contiguous)."""

    def __init__(self) -> None:
        self.recent: Set[int] = set()
        self.old = np.zeros(0, dtype=np.int64)

    def seen_again(self, query: str) -> bool:
        h = hash(query)
        at = int(np.searchsorted(self.old, h))
        if h in self.recent or (at < len(self.old) and self.old[at] == h):
            return True  # a hash collision only sends the comparison down the grouped path: still exact
        self.recent.add(h)
        if len(self.recent) > 1 << 16:
            self.old = np.union1d(self.old, np.fromiter(self.recent, dtype=np.int64))
            self.recent = set()
        return False


class _QueryRuns:
    """Queries as runs of equal query ids in baseline order; the last run of a chunk is carried to the next."""

    def __init__(self, stats: RerankStats) -> None:
        self.stats, self.returning = stats, _Returning()
        self.open: Optional[Tuple[str, int, List[np.ndarray], List[np.ndarray]]] = None

    def add(self, position: int, queries: pa.Array, bs: np.ndarray, cs: np.ndarray) -> bool:
        """False when a query came back after its rows ended (the caller groups through buckets instead)."""
        if not len(bs):
            return True
        encoded = single_chunk(queries).dictionary_encode()
        codes, names = arrow_to_numpy(encoded.indices), encoded.dictionary.to_pylist()
        starts = np.concatenate([[0], np.flatnonzero(codes[1:] != codes[:-1]) + 1, [len(codes)]]).tolist()
        for s, e in zip(starts, starts[1:]):
            query = str(names[codes[s]])
            if self.open is not None and self.open[0] == query:
                self.open[2].append(bs[s:e])
                self.open[3].append(cs[s:e])
                continue
            if not self.close():
                return False
            self.open = (query, position + s, [bs[s:e]], [cs[s:e]])
        return True

    def close(self) -> bool:
        if self.open is None:
            return True
        query, first, bs, cs = self.open
        self.open = None
        if self.returning.seen_again(query):
            return False
        b, c = (np.concatenate(bs), np.concatenate(cs)) if len(bs) > 1 else (bs[0], cs[0])
        self.stats.add_query(query, np.arange(first, first + len(b)), b, c)
        return True


class RerankPair:
    """One cross-encoder of two results files, fed to ``RerankStats`` (see the module's docstring)."""

    def __init__(self, base: ResultsFile, cand: ResultsFile, model_id: str) -> None:
        self.base, self.cand, self.model_id = base, cand, model_id
        self.groups = base.model_row_groups(model_id)
        self.starts = np.cumsum([0] + [count for _, count in self.groups])
        self.rows = int(self.starts[-1])
        self._emitted: Optional[spill.AlignedScores] = None

    def feed(self, stats: RerankStats) -> None:
        """Every pair's scores once, every query whole once; refuses broken input (one line, file named)."""
        try:
            self._feed(stats, self._same_order_chunks)
        except _OtherOrder:
            stats.reset()
            with tempfile.TemporaryDirectory(prefix="harness-rerank-") as tmp:
                self._align(Path(tmp))
                try:
                    self._feed(stats, self._realigned_chunks)
                finally:
                    self._emitted.close()

    def _feed(self, stats: RerankStats, chunks: Callable[[], Iterator[Chunk]]) -> None:
        runs: Optional[_QueryRuns] = _QueryRuns(stats)
        for position, queries, bs, cs in chunks():
            stats.add_scores(position, bs, cs)
            if runs is not None and not runs.add(position, queries, bs, cs):
                runs = None
        if runs is not None and runs.close():
            return
        stats.reset_queries()
        with tempfile.TemporaryDirectory(prefix="harness-rerank-queries-") as tmp:
            self._grouped(stats, chunks, Path(tmp))

    def _grouped(self, stats: RerankStats, chunks: Callable[[], Iterator[Chunk]], directory: Path) -> None:
        """Queries whose rows are not contiguous: bucketed by query id, each bucket grouped in memory."""
        schema = pa.schema([("position", pa.int64()), ("query", pa.string()), ("b", pa.float64()), ("c", pa.float64())])
        store = spill.Buckets(spill.bucket_rows(self.rows), schema, directory)
        for position, queries, bs, cs in chunks():
            queries = single_chunk(queries).cast(pa.string())
            batch = pa.RecordBatch.from_arrays([spill.as_arrow(np.arange(position, position + len(bs), dtype=np.int64)),
                                                queries, spill.as_arrow(bs), spill.as_arrow(cs)], schema=schema)
            store.add(batch, spill.hash_buckets(queries, store.count))
        for table in store.tables():
            positions = arrow_to_numpy(table.column("position"))
            encoded = single_chunk(table.column("query")).dictionary_encode()
            codes, names = arrow_to_numpy(encoded.indices), encoded.dictionary.to_pylist()
            rows = np.argsort(codes, kind="stable")  # rows were written in baseline order
            bs, cs = arrow_to_numpy(table.column("b")), arrow_to_numpy(table.column("c"))
            for part in np.split(rows, np.flatnonzero(np.diff(codes[rows])) + 1):
                if len(part):
                    stats.add_query(str(names[codes[part[0]]]), positions[part], bs[part], cs[part])

    # -- same order --------------------------------------------------------------------------------------

    def _same_order_chunks(self) -> Iterator[Chunk]:
        """Both files side by side in equal-length slices (row groups may be cut differently on each side)."""
        sides = [self.base.model_table(self.model_id, ["item_id", "query_id", "score"]),
                 self.cand.model_table(self.model_id, ["item_id", "score"])]
        current: List[Optional[pa.Table]] = [next(sides[0], None), next(sides[1], None)]
        offset, position, last = [0, 0], 0, None
        bad: List[List] = [[0, None], [0, None]]
        while True:
            for side in (0, 1):
                while current[side] is not None and offset[side] >= len(current[side]):
                    current[side], offset[side] = next(sides[side], None), 0
            if current[0] is None or current[1] is None:
                if current[0] is not None or current[1] is not None:
                    raise _OtherOrder()
                break
            take = min(len(current[0]) - offset[0], len(current[1]) - offset[1])
            b, c = current[0].slice(offset[0], take), current[1].slice(offset[1], take)
            ids = single_chunk(b.column("item_id"))
            if not ids.equals(single_chunk(c.column("item_id"))):
                raise _OtherOrder()
            if take > 1 and not pc.all(pc.greater(ids.slice(1), ids.slice(0, take - 1))).as_py():
                raise _OtherOrder()
            if last is not None and not ids[0].as_py() > last:
                raise _OtherOrder()
            last = ids[take - 1].as_py()
            bs, cs = _scores(b), _scores(c)
            for side, values in enumerate((bs, cs)):
                wrong = ~np.isfinite(values)
                if wrong.any():
                    bad[side][0] += int(wrong.sum())
                    if bad[side][1] is None:
                        bad[side][1] = ids[int(np.argmax(wrong))].as_py()
                    values[wrong] = 0.0  # refused once counted: the statistics meanwhile stay finite
            yield position, b.column("query_id"), bs, cs
            position += take
            offset[0] += take
            offset[1] += take
        for results, (count, first) in zip((self.base, self.cand), bad):
            _refuse_nonfinite(results, self.model_id, count, first)

    # -- another order -----------------------------------------------------------------------------------

    def _align(self, directory: Path) -> None:
        """Refuse duplicates, non-finite scores, missing ids (in the order and words they always had), and put
        the candidate's scores in baseline order (``_realigned`` in memory, else regions of a temporary file)."""
        count = spill.bucket_rows(self.rows + sum(n for _, n in self.cand.model_row_groups(self.model_id)))
        schema = pa.schema([("id", pa.string()), ("position", pa.int64()), ("score", pa.float64())])
        stores, bad = [], []
        for side, results in enumerate((self.base, self.cand)):
            if count > 1:
                (directory / str(side)).mkdir()
            store = spill.Buckets(count, schema, directory / str(side) if count > 1 else None)
            wrong_count, first, position = 0, None, 0
            for table in results.model_table(self.model_id, ["item_id", "score"]):
                ids, scores = single_chunk(table.column("item_id")).cast(pa.string()), _scores(table)
                wrong = ~np.isfinite(scores)
                if wrong.any():
                    wrong_count += int(wrong.sum())
                    first = ids[int(np.argmax(wrong))].as_py() if first is None else first
                batch = pa.RecordBatch.from_arrays(
                    [ids, spill.as_arrow(np.arange(position, position + len(ids), dtype=np.int64)),
                     spill.as_arrow(scores)], schema=schema)
                store.add(batch, spill.hash_buckets(ids, count))
                position += len(ids)
            stores.append(store)
            bad.append((wrong_count, first))
        dups: List[List[str]] = [[], []]
        missing: List[List] = [[0, []], [0, []]]  # count and first ids, baseline side then candidate side
        emitted = spill.AlignedScores(self.rows, self.starts, directory)
        for b_tab, c_tab in zip(stores[0].tables(), stores[1].tables()):
            b_ids, c_ids = single_chunk(b_tab.column("id")), single_chunk(c_tab.column("id"))
            for side, ids in enumerate((b_ids, c_ids)):  # arrow's hash tables: no Python string per pair
                counts = pc.value_counts(ids)
                if len(counts) != len(ids):
                    dups[side] = _smallest(dups[side], _first_sorted(
                        counts.field("values").filter(pc.greater(counts.field("counts"), 1))))
            if dups[0] or dups[1]:
                continue
            at = pc.index_in(b_ids, value_set=c_ids)  # the candidate row of each baseline row (null: missing)
            found = pc.is_valid(at)
            only_c = c_ids.filter(pc.invert(pc.is_in(c_ids, value_set=b_ids)))
            for side, only in enumerate((b_ids.filter(pc.invert(found)), only_c)):
                missing[side] = [missing[side][0] + len(only), _smallest(missing[side][1], _first_sorted(only))]
            positions = arrow_to_numpy(b_tab.column("position").filter(found)).astype(np.int64)
            rows = arrow_to_numpy(at.filter(found)).astype(np.int64)  # (an empty numpy column has no int dtype)
            emitted.add(positions, arrow_to_numpy(c_tab.column("score"))[rows])
        for side, results in enumerate((self.base, self.cand)):
            if dups[side]:
                raise ResultsFileError(f"{results.path}: model '{self.model_id}' has duplicate id(s) {', '.join(dups[side])}")
            _refuse_nonfinite(results, self.model_id, *bad[side])
        streaming.refuse_id_mismatch(self.model_id, _Firsts(*missing[0]), _Firsts(*missing[1]), self.cand.path)
        self._emitted = emitted

    def _realigned_chunks(self) -> Iterator[Chunk]:
        for g, (group, _) in enumerate(self.groups):
            table = self.base.read_model_group(self.model_id, group, ["query_id", "score"])
            assert self._emitted is not None
            yield int(self.starts[g]), table.column("query_id"), _scores(table), self._emitted.region(g)

    # -- naming ------------------------------------------------------------------------------------------

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


class _Firsts:
    """The ids only on one side, as ``refuse_id_mismatch`` reads them: how many, and the first few (sorted)."""

    def __init__(self, count: int, first: List[str]) -> None:
        self.count, self.first = count, first

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: slice) -> List[str]:
        return self.first[index]


def _refuse_nonfinite(results: ResultsFile, model_id: str, count: int, first: Optional[str]) -> None:
    if count:
        raise ResultsFileError(f"{results.path}: model '{model_id}' has non-finite scores in {count} row(s) "
                               f"(first: '{first}')")
