"""The comparator: load a baseline and a candidate results file, align them, judge each model by its policy.

Stages: open both files -> refuse incomparable inputs -> per model: align rows, compute metrics (``compare``),
apply the tolerance (``policy``) -> a ``Comparison`` (``verdict``). Nothing here imports torch or
sentence-transformers: the comparator runs in the controlling environment so that it cannot drift itself.

Bi-encoders are compared streaming: row group by row group, in two threads, memory independent of the file
size (1M x 384 on 2 cores: ~0.7 GB peak, 500-600 MB/s with 100 queries, 650-760 MB/s without; measured in
``benchmarks/README.md``). Cross-encoder scores, one float per pair, are compared in memory. Nothing here
imports pandas either (pyarrow's ``to_numpy`` would: +0.4 s, +50 MB).
"""

from __future__ import annotations

import contextlib
import os
import queue
import tempfile
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness import compare as m
from harness.errors import IncompatibleInputs, ResultsFileError
from harness.policy import Policy, Tolerance, load_policy, select_class
from harness.results import ResultsFile, _single_chunk, arrow_to_numpy
from harness.verdict import Check, Comparison, EnvChange, ModelVerdict, Offender, Status

__all__ = ["compare_files", "compare_results", "env_changes", "WORST_N"]

WORST_N = 5
#: fingerprint keys that differ between any two machines without meaning anything for the numbers
_VOLATILE_KEYS = ("executable", "env.HF_HUB_OFFLINE", "env.TRANSFORMERS_OFFLINE")


def _flatten(data: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    flat: Dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def env_changes(baseline: Dict[str, Any], candidate: Dict[str, Any]) -> List[EnvChange]:
    """Fingerprint entries that differ (package versions, device, dtype, flags, threads, ...)."""
    fb, fc = _flatten(baseline), _flatten(candidate)
    keys = sorted(set(fb) | set(fc))
    return [
        EnvChange(key=k, baseline=fb.get(k), candidate=fc.get(k))
        for k in keys
        if fb.get(k) != fc.get(k) and k not in _VOLATILE_KEYS
    ]


def _model_env(results: ResultsFile, model_id: str) -> Dict[str, Any]:
    """Per-model facts worth diffing (loaded dtype, attention kernel, weights) next to the fingerprint."""
    info = results.models.get(model_id, {})
    keys = ("loaded_dtype", "attn_implementation", "max_seq_length", "padding_side", "weights_sha256", "saved_versions")
    return {k: info.get(k) for k in keys if k in info}


def _choose_class(policy: Policy, forced: Optional[str], base: ResultsFile, cand: ResultsFile, model_id: str) -> str:
    """A forced class, else the policy default, else the looser of what either side's settings call for."""
    if forced:
        return forced
    if policy.default_class != "auto":
        return policy.default_class
    return select_class(policy, base.fingerprint, base.models.get(model_id),
                        cand.fingerprint, cand.models.get(model_id), forced=forced)


def _check_comparable(base: ResultsFile, cand: ResultsFile, models: Optional[Iterable[str]], allow_model_change: bool) -> List[str]:
    """Refuse different corpora or model sets; return the model ids to compare."""
    bsha, csha = base.corpus.get("sha256"), cand.corpus.get("sha256")
    if bsha != csha:
        raise IncompatibleInputs(
            f"{cand.path}: corpus differs from baseline {base.path} "
            f"({cand.corpus.get('name')} {str(csha)[:12]} vs {base.corpus.get('name')} {str(bsha)[:12]}); "
            "results from different corpora cannot be compared"
        )
    bmodels, cmodels = set(base.models), set(cand.models)
    if models:
        wanted = list(dict.fromkeys(models))
        for side, have in ((base, bmodels), (cand, cmodels)):
            missing = [x for x in wanted if x not in have]
            if missing:
                raise IncompatibleInputs(f"{side.path}: has no model(s) {', '.join(missing)}")
    else:
        if bmodels != cmodels:
            only_b = ", ".join(sorted(bmodels - cmodels)) or "-"
            only_c = ", ".join(sorted(cmodels - bmodels)) or "-"
            raise IncompatibleInputs(
                f"{cand.path}: different models than baseline {base.path} "
                f"(only in baseline: {only_b}; only in candidate: {only_c}); pass --models to compare a subset"
            )
        wanted = sorted(bmodels)
    for model_id in wanted:
        bw = base.models[model_id].get("weights_sha256")
        cw = cand.models[model_id].get("weights_sha256")
        if bw and cw and bw != cw and not allow_model_change:
            raise IncompatibleInputs(
                f"{cand.path}: model '{model_id}' weights differ from the baseline's "
                f"({cw[:12]} vs {bw[:12]}); pass --allow-model-change to compare anyway"
            )
    return wanted


def _require_clean(results: ResultsFile, model_id: str, ids: np.ndarray, values: np.ndarray, what: str) -> None:
    """Duplicate ids or NaN/Inf make every statistic meaningless: refuse with the first offender named."""
    unique, counts = np.unique(ids, return_counts=True)
    if len(unique) != len(ids):
        dup = unique[counts > 1]
        raise ResultsFileError(f"{results.path}: model '{model_id}' has duplicate id(s) {', '.join(dup[:3])}")
    bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1) if len(values) else np.array([], bool)
    if bad.any():
        raise ResultsFileError(
            f"{results.path}: model '{model_id}' has non-finite {what} in {int(bad.sum())} row(s) "
            f"(first: '{ids[np.argmax(bad)]}')"
        )


def _elements_check(name: str, base: np.ndarray, cand: np.ndarray, atol: float, rtol: float) -> Tuple[Check, int]:
    """numpy.isclose-style check: |cand - base| <= atol + rtol * |base| for every element."""
    diff = np.abs(cand.astype(np.float64) - base.astype(np.float64))
    allowed = atol + rtol * np.abs(base.astype(np.float64))
    bad = int((diff > allowed).sum())
    total = int(diff.size)
    worst = float(diff.max()) if total else 0.0
    detail = (
        f"{bad} / {total} elements ({100.0 * bad / max(total, 1):.2f}%) exceed atol={atol:g} + rtol={rtol:g}*|baseline|"
    )
    return Check(name=name, observed=worst, limit=atol, op="<=", passed=bad == 0, detail=detail), bad


def _ratio_check(name: str, observed: float, limit: float, detail: str) -> Check:
    return Check(name=name, observed=observed, limit=limit, op=">=", passed=observed >= limit, detail=detail)


def _missing_verdict(model_id: str, kind: str, tol: Tolerance, only_base: np.ndarray, only_cand: np.ndarray,
                     path: "Path | str" = "candidate") -> None:
    """Same corpus hash but different ids means a broken or hand-edited file: bad input, never a drift verdict."""
    if not len(only_base) and not len(only_cand):
        return None
    raise IncompatibleInputs(
        f"{path}: model '{model_id}' ids differ from the baseline's although the corpus hash matches: "
        f"{len(only_base)} missing (e.g. {', '.join(map(str, only_base[:3])) or '-'}), "
        f"{len(only_cand)} extra (e.g. {', '.join(map(str, only_cand[:3])) or '-'})"
    )


# -- bi-encoders: streamed ----------------------------------------------------------------------------------------
#
# Both files are read row group by row group and compared in one pass (``compare.DiffStats``, ``TopKStream``):
# memory is a few row groups, whatever the file size. Only ids and roles are read whole (small next to vectors).
#   1. ids pass: item_id + role of both sides; duplicates, missing ids and the alignment are decided here.
#   2. queries: the rows with role "query" (read from the row groups holding them) for the top-k agreement.
#   3. vectors: aligned segments of both files go to ``COMPARE_THREADS`` workers (reads serialized, compute in
#      parallel: numpy and pyarrow release the GIL), each with its own accumulators, merged at the end.
# Same item_id order on both sides (one runner, one corpus: the normal case) streams both files side by side,
# even when their row groups are cut differently. Another order realigns the candidate to the baseline's order:
# in memory up to ``ALIGN_IN_MEMORY_BYTES`` of candidate vectors, else through a temporary file of the
# candidate's vectors in baseline order (written once, read sequentially; needs that much free space in the
# temporary directory).

#: worker threads for the streamed comparison (``HARNESS_COMPARE_THREADS`` overrides; 1 = no threads). Two
#: keep two cores busy; more need more cores, and each holds up to a row group pair (~0.2 GB at 384 dims).
COMPARE_THREADS = max(1, int(os.environ.get("HARNESS_COMPARE_THREADS", "0") or 0) or min(2, os.cpu_count() or 1))
#: a candidate whose ids are in another order is realigned in memory up to this many bytes of vectors
ALIGN_IN_MEMORY_BYTES = 256 << 20

Segment = Tuple[int, np.ndarray, np.ndarray]


@dataclass
class _Plan:
    """What the ids pass decided about one bi-encoder."""

    rows: int
    dim: int
    base_ids: pa.ChunkedArray  # baseline order; offenders are named from it by position
    queries: np.ndarray  # baseline positions of role "query"
    documents: np.ndarray  # bool per baseline position, role "document"
    cand_pos: Optional[np.ndarray]  # candidate position of each baseline row; None: same order


def _duplicates(ids: pa.ChunkedArray) -> List[str]:
    """Ids that occur more than once, sorted. Strictly increasing ids (the runner writes the corpus in its
    sorted file order) need one comparison pass; others a hash pass (~10x slower)."""
    flat = _single_chunk(ids)
    if len(flat) < 2 or pc.all(pc.greater(flat.slice(1), flat.slice(0, len(flat) - 1))).as_py():
        return []
    counts = pc.value_counts(flat)
    if len(counts) == len(ids):
        return []
    values = counts.field("values").to_pylist()
    return sorted(values[i] for i in np.flatnonzero(arrow_to_numpy(counts.field("counts")) > 1))


def _role_mask(roles: pa.ChunkedArray, role: str) -> np.ndarray:
    """``roles == role`` as numpy, through a dictionary encoding (no Python value is converted to arrow)."""
    encoded = _single_chunk(roles).dictionary_encode() if len(roles) else None
    if encoded is None:
        return np.zeros(0, dtype=bool)
    names = encoded.dictionary.to_pylist()
    if role not in names:
        return np.zeros(len(roles), dtype=bool)
    return arrow_to_numpy(encoded.indices) == names.index(role)


def _refuse_nonfinite(results: ResultsFile, model_id: str, rows: int, first: Optional[str]) -> None:
    if rows:
        raise ResultsFileError(
            f"{results.path}: model '{model_id}' has non-finite vector values in {rows} row(s) (first: '{first}')"
        )


def _scan_nonfinite(results: ResultsFile, model_id: str, ids: pa.ChunkedArray) -> None:
    """Refuse a file with NaN/Inf vectors (a separate pass, only taken when the files are not compared)."""
    bad, first, position = 0, None, 0
    for group, count in results.model_row_groups(model_id):
        vectors = results.read_vectors(model_id, group)
        rows = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
        if len(rows) and first is None:
            first = ids[position + int(rows[0])].as_py()
        bad += len(rows)
        position += count
    _refuse_nonfinite(results, model_id, bad, first)


def _plan(base: ResultsFile, cand: ResultsFile, model_id: str, tol: Tolerance) -> _Plan:
    """Ids pass: refuse broken inputs in the order the checks always ran, decide the alignment."""
    cols = base.model_columns(model_id, ["item_id", "role"])
    b_ids, c_ids = cols["item_id"], cand.model_columns(model_id, ["item_id"])["item_id"]
    dup = _duplicates(b_ids)
    if dup:
        raise ResultsFileError(f"{base.path}: model '{model_id}' has duplicate id(s) {', '.join(dup[:3])}")
    same_order = b_ids.equals(c_ids)
    c_dup = [] if same_order else _duplicates(c_ids)
    b_dim, c_dim = base.vector_spec(model_id)[0], cand.vector_spec(model_id)[0]
    cand_pos = only_b = only_c = None
    if not c_dup and not same_order:
        c_flat = c_ids.combine_chunks()
        b_flat = b_ids.combine_chunks()
        in_cand = pc.is_in(b_flat, value_set=c_flat)
        in_base = pc.is_in(c_flat, value_set=b_flat)
        only_b = np.sort(arrow_to_numpy(b_flat.filter(pc.invert(in_cand))))
        only_c = np.sort(arrow_to_numpy(c_flat.filter(pc.invert(in_base))))
        if not len(only_b) and not len(only_c):
            cand_pos = arrow_to_numpy(pc.index_in(b_flat, value_set=c_flat)).astype(np.int64)
    missing = only_b is not None and (len(only_b) or len(only_c))
    if c_dup or b_dim != c_dim or missing:
        _scan_nonfinite(base, model_id, b_ids)
        if c_dup:
            raise ResultsFileError(f"{cand.path}: model '{model_id}' has duplicate id(s) {', '.join(c_dup[:3])}")
        _scan_nonfinite(cand, model_id, c_ids)
        if b_dim != c_dim:
            raise IncompatibleInputs(f"{cand.path}: model '{model_id}' vectors have dim {c_dim}, baseline {b_dim}")
        _missing_verdict(model_id, "bi-encoder", tol, only_b, only_c, cand.path)  # raises
    roles = cols["role"]
    return _Plan(
        rows=len(b_ids),
        dim=b_dim,
        base_ids=b_ids,
        queries=np.flatnonzero(_role_mask(roles, "query")),
        documents=_role_mask(roles, "document"),
        cand_pos=cand_pos,
    )


def _read_rows(results: ResultsFile, model_id: str, positions: np.ndarray) -> np.ndarray:
    """The vectors at file positions ``positions`` (in that order), reading only the row groups holding them."""
    dim, dtype = results.vector_spec(model_id)
    out = np.zeros((len(positions), dim), dtype=dtype)
    start = 0
    for group, count in results.model_row_groups(model_id):
        inside = np.flatnonzero((positions >= start) & (positions < start + count))
        if len(inside):
            out[inside] = results.read_vectors(model_id, group)[positions[inside] - start]
        start += count
    return out


class _Budget:
    """Tokens for row groups in memory: the reader waits for one, and stops waiting once the comparison is
    abandoned (a worker failed: its traceback may keep a row group alive, the token would never come back)."""

    def __init__(self, tokens: int) -> None:
        self._tokens = threading.Semaphore(tokens)
        self.abandoned = threading.Event()

    def acquire(self) -> None:
        while not self._tokens.acquire(timeout=0.05):
            if self.abandoned.is_set():
                raise RuntimeError("comparison abandoned")

    def release(self) -> None:
        self._tokens.release()


def _read_counted(results: ResultsFile, model_id: str, group: int, budget: Optional[_Budget]) -> np.ndarray:
    """``read_vectors``, first taking one of ``budget``'s tokens, given back when the rows are freed (by whichever
    thread drops the last slice): the read-ahead never holds more than ``budget`` baseline row groups."""
    if budget is None:
        return results.read_vectors(model_id, group)
    budget.acquire()
    try:
        rows = results.read_vectors(model_id, group)
    except BaseException:
        budget.release()
        raise
    owner = rows
    while isinstance(owner.base, np.ndarray):  # slices keep the array that owns the memory alive
        owner = owner.base
    weakref.finalize(owner, budget.release)
    return rows


def _same_order_segments(base: ResultsFile, cand: ResultsFile, model_id: str, pieces: int = 1,
                         budget: Optional[_Budget] = None) -> Iterator[Segment]:
    """Both files side by side, in equal-length slices (row groups may be cut differently on each side), each
    cut into ``pieces``."""
    files = (base, cand)
    groups = [iter(f.model_row_groups(model_id)) for f in files]
    current: List[np.ndarray] = [np.zeros((0, 0)), np.zeros((0, 0))]
    offset = [0, 0]
    position = 0
    while True:
        for side in (0, 1):
            while offset[side] >= len(current[side]):
                current[side] = np.zeros((0, 0))  # let go of a finished row group before reading the next
                nxt = next(groups[side], None)
                if nxt is None:
                    return
                current[side] = _read_counted(files[side], model_id, nxt[0], budget if side == 0 else None)
                offset[side] = 0
        take = min(len(current[0]) - offset[0], len(current[1]) - offset[1])
        for start, stop in _pieces(take, pieces):  # the workers share a row group instead of holding one each
            yield (position + start, current[0][offset[0] + start : offset[0] + stop],
                   current[1][offset[1] + start : offset[1] + stop])
        offset[0] += take
        offset[1] += take
        position += take


def _pieces(count: int, pieces: int) -> List[Tuple[int, int]]:
    """``count`` rows cut into ``pieces`` nearly equal ranges."""
    bounds = [count * i // pieces for i in range(pieces + 1)]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def _realigned_segments(base: ResultsFile, cand: ResultsFile, model_id: str, cand_pos: np.ndarray,
                        pieces: int = 1, budget: Optional[_Budget] = None) -> Iterator[Segment]:
    """The baseline in file order, the candidate's rows put in the baseline's order (ids in another order)."""
    dim, dtype = cand.vector_spec(model_id)
    row_bytes = dim * dtype.itemsize
    groups = base.model_row_groups(model_id)
    if len(cand_pos) * row_bytes <= ALIGN_IN_MEMORY_BYTES:
        whole = np.concatenate([cand.read_vectors(model_id, g) for g, _ in cand.model_row_groups(model_id)])
        position = 0
        for group, _ in groups:
            rows = _read_counted(base, model_id, group, budget)
            aligned = whole[cand_pos[position : position + len(rows)]]
            for start, stop in _pieces(len(rows), pieces):
                yield position + start, rows[start:stop], aligned[start:stop]
            position += len(rows)
        return
    # Out of core, in two sequential passes (a bucket sort by baseline row group): each candidate row is
    # appended to the region of the temporary file that covers its baseline row group, then each region is
    # read back whole and put in order in memory. Memory: one row group; disk: the candidate's vectors.
    starts = np.cumsum([0] + [count for _, count in groups])
    target = np.empty(len(cand_pos), dtype=np.int64)
    target[cand_pos] = np.arange(len(cand_pos), dtype=np.int64)  # baseline position of each candidate row
    with tempfile.TemporaryFile(prefix="harness-realign-") as spill:
        filled = starts[:-1].copy()  # next free row in each region
        arrived: List[List[np.ndarray]] = [[] for _ in groups]  # baseline positions, in the order written
        first = 0
        for group, count in cand.model_row_groups(model_id):
            rows = cand.read_vectors(model_id, group)
            where = target[first : first + count]
            bucket = np.searchsorted(starts, where, side="right") - 1
            order = np.argsort(bucket, kind="stable")
            cuts = np.searchsorted(bucket[order], np.arange(len(groups) + 1))
            step = max(1, (8 << 20) // max(row_bytes, 1))
            for b in np.flatnonzero(np.diff(cuts)):
                pick = order[cuts[b] : cuts[b + 1]]
                spill.seek(int(filled[b]) * row_bytes)
                for first_row in range(0, len(pick), step):  # gathered and written 8 MiB at a time
                    spill.write(memoryview(np.ascontiguousarray(rows[pick[first_row : first_row + step]])).cast("B"))
                filled[b] += len(pick)
                arrived[b].append(where[pick])
            first += count
        for b, (group, count) in enumerate(groups):
            rows = _read_counted(base, model_id, group, budget)
            where = np.concatenate(arrived[b]) - starts[b] if arrived[b] else np.zeros(0, np.int64)
            ordered = np.empty((count, dim), dtype=dtype)
            chunk = max(1, (8 << 20) // max(row_bytes, 1))  # read back in 8 MiB pieces, scattered into place
            spill.seek(int(starts[b]) * row_bytes)
            for first_row in range(0, count, chunk):
                part = np.empty((min(chunk, count - first_row), dim), dtype=dtype)
                _read_all(spill, memoryview(part).cast("B"))
                ordered[where[first_row : first_row + len(part)]] = part
            for start, stop in _pieces(count, pieces):
                yield int(starts[b]) + start, rows[start:stop], ordered[start:stop]


def _read_all(handle: Any, buffer: memoryview) -> None:
    while len(buffer):
        got = handle.readinto(buffer)
        if not got:
            raise ResultsFileError("realigning the candidate: temporary file ended early")
        buffer = buffer[got:]


def _blas_threads(limit: Optional[int]) -> Any:
    """Limit BLAS threads while the workers run (threadpoolctl, when installed). The workers already keep the
    cores busy, and an idle OpenBLAS thread spins: with two workers and two BLAS threads each, a 1M x 384
    comparison used 35% more CPU and ran 40% longer (3.2 s instead of 2.3 s on 2 cores)."""
    if limit is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=limit, user_api="blas")


class _Worker:
    """One thread's accumulators."""

    def __init__(self, plan: _Plan, tol: Tolerance, dtype: np.dtype, queries: Optional[Tuple[np.ndarray, np.ndarray, int]]) -> None:
        self.plan = plan
        self.stats = m.DiffStats(plan.dim, dtype, plan.rows, atol=tol.atol, rtol=tol.rtol,
                                 min_cosine=tol.min_cosine, worst_n=WORST_N)
        self.topk = m.TopKStream(queries[0], queries[1], queries[2], tol.tie_tolerance) if queries else None

    def __call__(self, segment: Segment) -> None:
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # NaN/Inf rows: refused afterwards
            self._add(segment)

    def _add(self, segment: Segment) -> None:
        position, base, cand = segment
        base_sq, diff_sq = self.stats.add(position, base, cand)
        if self.topk is not None:
            docs = np.flatnonzero(self.plan.documents[position : position + len(base)])
            if len(docs) == len(base):
                self.topk.add(position + docs, base, cand, base_sq, diff_sq)
            elif len(docs):
                self.topk.add(position + docs, base[docs], cand[docs], base_sq[docs], diff_sq[docs])


class _Prefetch:
    """Advance ``source`` (which reads the files) in a background thread, ``depth`` items ahead, so that the
    next row group is read while the workers compute on the current one. Errors come out of ``next``."""

    _END = object()

    def __init__(self, source: Iterator[Segment], depth: int, stop: Optional[threading.Event] = None) -> None:
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=max(1, depth))
        self._stop = stop or threading.Event()
        self._thread = threading.Thread(target=self._run, args=(source,), name="harness-compare-read", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, source: Iterator[Segment]) -> None:
        try:
            for item in source:
                if not self._put(item):
                    break
                del item
            self._put(self._END)
        except BaseException as err:  # noqa: BLE001 - handed to the consumers
            self._put(err)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> "_Prefetch":
        return self

    def __next__(self) -> Segment:
        item = self._queue.get()
        if item is self._END:
            self._queue.put(self._END)  # for the other consumers
            raise StopIteration
        if isinstance(item, BaseException):
            self._queue.put(item)
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        while True:  # drop what was read ahead, so that the reader is not blocked
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join()


def _run_segments(segments: Iterator[Segment], workers: List[_Worker]) -> None:
    """Feed ``segments`` to the workers, one thread each: the iterator (which reads) is advanced under a lock,
    the statistics are computed outside it. The first error anywhere stops every thread and is raised."""
    lock = threading.Lock()
    errors: List[BaseException] = []

    def loop(worker: _Worker) -> None:
        while True:
            with lock:
                if errors:
                    return
                try:
                    segment = next(segments)
                except StopIteration:
                    return
                except BaseException as err:  # noqa: BLE001 - handed to the calling thread
                    errors.append(err)
                    return
            try:
                worker(segment)
            except BaseException as err:  # noqa: BLE001
                with lock:
                    errors.append(err)
                return
            finally:
                del segment

    threads = [threading.Thread(target=loop, args=(w,), name=f"harness-compare-{i}", daemon=True)
               for i, w in enumerate(workers[1:], 1)]
    for thread in threads:
        thread.start()
    try:
        loop(workers[0])
    finally:
        for thread in threads:
            thread.join()
        close = getattr(segments, "close", None)
        if close is not None:
            with lock:
                close()
    if errors:
        raise errors[0]


def _compare_embeddings(base: ResultsFile, cand: ResultsFile, model_id: str, tol: Tolerance) -> ModelVerdict:
    plan = _plan(base, cand, model_id, tol)
    dtype = np.result_type(base.vector_spec(model_id)[1], cand.vector_spec(model_id)[1])
    queries = None
    n_docs = int(plan.documents.sum())
    if len(plan.queries) and n_docs:
        cand_q = plan.queries if plan.cand_pos is None else plan.cand_pos[plan.queries]
        queries = (_read_rows(base, model_id, plan.queries), _read_rows(cand, model_id, cand_q), min(tol.topk, n_docs))
    workers = [_Worker(plan, tol, dtype, queries) for _ in range(max(1, COMPARE_THREADS))]
    # With several workers, the next row group pair is read while the workers share the current one: at most
    # two pairs in memory (~0.4 GB at 384 dims), the read overlapping the compute (+30% throughput at 1M).
    budget = _Budget(2) if len(workers) > 1 else None
    segments = (
        _same_order_segments(base, cand, model_id, len(workers), budget)
        if plan.cand_pos is None
        else _realigned_segments(base, cand, model_id, plan.cand_pos, len(workers), budget)
    )
    if budget is not None:
        segments = _Prefetch(segments, depth=len(workers), stop=budget.abandoned)
    with _blas_threads(1 if len(workers) > 1 else None):
        _run_segments(segments, workers)
    first, *others = workers
    for other in others:
        first.stats.merge(other.stats)
        if first.topk is not None and other.topk is not None:
            first.topk.merge(other.topk)
    st = first.stats
    if st.nonfinite_base:
        _refuse_nonfinite(base, model_id, len(st.nonfinite_base), plan.base_ids[min(st.nonfinite_base)].as_py())
    if st.nonfinite_cand:
        cand_rows = np.asarray(st.nonfinite_cand)
        file_rows = cand_rows if plan.cand_pos is None else plan.cand_pos[cand_rows]
        first_row = int(cand_rows[np.argmin(file_rows)])
        _refuse_nonfinite(cand, model_id, len(cand_rows), plan.base_ids[first_row].as_py())
    return _embedding_verdict(model_id, tol, plan, st, first.topk)


def _embedding_verdict(model_id: str, tol: Tolerance, plan: _Plan, st: m.DiffStats,
                       topk: Optional[m.TopKStream]) -> ModelVerdict:
    stats = st.summary()
    total = st.count
    n_bad = st.bad_elements
    min_cos = st.min_cos if plan.rows else 1.0
    checks = [
        Check(
            name="max_abs_diff",
            observed=stats.max_abs,
            limit=tol.atol,
            op="<=",
            passed=n_bad == 0,
            detail=f"{n_bad} / {total} elements ({100.0 * n_bad / max(total, 1):.2f}%) exceed "
                   f"atol={tol.atol:g} + rtol={tol.rtol:g}*|baseline|",
        ),
        Check(
            name="min_cosine",
            observed=min_cos,
            limit=tol.min_cosine,
            op=">=",
            passed=st.below_cosine == 0,
            detail=f"{st.below_cosine} / {plan.rows} texts below cosine {tol.min_cosine}",
        ),
    ]
    metrics: Dict[str, Any] = {
        "texts": plan.rows,
        "dim": plan.dim,
        "max_abs_diff": stats.max_abs,
        "mean_abs_diff": stats.mean_abs,
        "p99_abs_diff": stats.p99_abs,
        "max_rel_diff": stats.max_rel,
        "min_cosine": min_cos,
        "elements_beyond_tolerance": n_bad,
        "texts_beyond_tolerance": st.texts_beyond,
        "abs_diff_histogram": st.histogram(),
    }
    if topk is not None:
        agree = topk.agreement()
        k = agree.k
        metrics.update(
            topk=k,
            topk_order_agreement=agree.share("same_order"),
            topk_set_agreement=agree.share("same_set"),
            topk_raw_order_agreement=agree.share("raw_same_order"),
            topk_mean_overlap=agree.share("overlap"),
        )
        n_q = len(plan.queries)
        checks.append(_ratio_check(
            f"top{k}_order_agreement", agree.share("same_order"), tol.min_topk_order_agreement,
            f"{n_q - int(agree.same_order.sum())} / {n_q} queries changed their top-{k} order (ties within {tol.tie_tolerance:g} ignored)",
        ))
        checks.append(_ratio_check(
            f"top{k}_set_agreement", agree.share("same_set"), tol.min_topk_set_agreement,
            f"{n_q - int(agree.same_set.sum())} / {n_q} queries changed their top-{k} set",
        ))
    offenders = [
        Offender(item_id=str(plan.base_ids[w.position].as_py()), value=w.value, metric="max_abs_diff",
                 detail=f"cosine {w.cosine:.9f}")
        for w in st.worst
        if w.value > 0
    ]
    min_passing = {"atol": stats.max_abs, "min_cosine": metrics["min_cosine"]}
    if "topk" in metrics:
        min_passing.update(
            min_topk_order_agreement=metrics["topk_order_agreement"],
            min_topk_set_agreement=metrics["topk_set_agreement"],
        )
    return _verdict(model_id, "bi-encoder", tol, checks, metrics, offenders, min_passing)


def _log_histogram(diff: np.ndarray) -> Dict[str, List[float]]:
    """Counts of absolute differences per decade (0 counted apart), for the report's distribution plot."""
    flat = diff.ravel()
    zeros = int((flat == 0).sum())
    nonzero = flat[flat > 0]
    edges = list(m.HISTOGRAM_EDGES)
    counts, _ = np.histogram(np.clip(nonzero, edges[0], edges[-1]), bins=edges)
    return {"edges": edges, "counts": [int(c) for c in counts], "zeros": [zeros]}


def _compare_rerank(base: ResultsFile, cand: ResultsFile, model_id: str, tol: Tolerance) -> ModelVerdict:
    b, c = base.rerank(model_id), cand.rerank(model_id)
    _require_clean(base, model_id, b["item_id"], b["score"], "scores")
    _require_clean(cand, model_id, c["item_id"], c["score"], "scores")
    bi, ci, only_b, only_c = m.align(b["item_id"], c["item_id"])
    _missing_verdict(model_id, "cross-encoder", tol, only_b, only_c, cand.path)
    bs = b["score"][bi].astype(np.float64)
    cs = c["score"][ci].astype(np.float64)
    queries = b["query_id"][bi]
    passages = b["passage_id"][bi]
    stats = m.element_stats(bs, cs)
    scores_check, n_bad = _elements_check("max_score_diff", bs, cs, tol.score_atol, tol.score_rtol)
    taus, swaps, topk_same = [], {}, []
    for qid, rows in m.group_rows(queries).items():
        idx = np.asarray(rows)
        taus.append(m.kendall_tau(bs[idx], cs[idx]))
        swaps[qid] = m.significant_swaps(bs[idx], cs[idx], tol.tie_tolerance)
        topk_same.append(bool(m.topk_agreement(bs[idx][None, :], cs[idx][None, :], tol.topk, tol.tie_tolerance).same_order[0]))
    n_q = len(swaps)
    reordered = [q for q, s in swaps.items() if s]
    agreement = 1.0 - len(reordered) / max(n_q, 1)
    checks = [
        scores_check,
        _ratio_check(
            "rerank_order_agreement", agreement, tol.min_rerank_order_agreement,
            f"{len(reordered)} / {n_q} queries reordered beyond score ties of {tol.tie_tolerance:g}",
        ),
    ]
    diff = np.abs(cs - bs)
    metrics: Dict[str, Any] = {
        "pairs": len(bs),
        "queries": n_q,
        "max_abs_diff": stats.max_abs,
        "mean_abs_diff": stats.mean_abs,
        "p99_abs_diff": stats.p99_abs,
        "max_rel_diff": stats.max_rel,
        "elements_beyond_tolerance": n_bad,
        "rerank_order_agreement": agreement,
        "min_kendall_tau": float(min(taus)) if taus else 1.0,
        "mean_kendall_tau": float(np.mean(taus)) if taus else 1.0,
        f"top{tol.topk}_order_agreement": float(np.mean(topk_same)) if topk_same else 1.0,
        "abs_diff_histogram": _log_histogram(diff),
    }
    offenders = [
        Offender(item_id=f"{queries[i]}|{passages[i]}", value=float(diff[i]), metric="score_abs_diff",
                 detail=f"baseline {bs[i]:.7g}, candidate {cs[i]:.7g}")
        for i in np.argsort(-diff, kind="stable")[:WORST_N]
        if diff[i] > 0
    ]
    offenders += [
        Offender(item_id=q, value=float(swaps[q]), metric="significant_swaps", detail="candidate pairs swapped")
        for q in sorted(reordered, key=lambda q: -swaps[q])[:WORST_N]
    ]
    min_passing = {"score_atol": stats.max_abs, "min_rerank_order_agreement": agreement}
    return _verdict(model_id, "cross-encoder", tol, checks, metrics, offenders, min_passing)


def _verdict(model_id: str, kind: str, tol: Tolerance, checks: List[Check], metrics: Dict[str, Any],
             offenders: List[Offender], min_passing: Dict[str, float]) -> ModelVerdict:
    failed = [c for c in checks if not c.passed]
    reason = "; ".join(f"{c.name} {c.observed:.3g} (limit {c.op} {c.limit:g}): {c.detail}" for c in failed)
    return ModelVerdict(
        model_id=model_id,
        kind=kind,
        status=Status.FAIL if failed else Status.PASS,
        tolerance_class=tol.name,
        checks=checks,
        metrics=metrics,
        offenders=offenders,
        reason=reason,
        tolerance=tol.as_dict(),
        min_passing=min_passing,
    )


def _not_run_verdict(model_id: str, info_b: Dict[str, Any], info_c: Dict[str, Any], tol: Tolerance) -> Optional[ModelVerdict]:
    """A model the candidate (or baseline) could not run is incompatible/error, never compared."""
    for side, info in (("candidate", info_c), ("baseline", info_b)):
        status = info.get("status", "ok")
        if status != "ok":
            verdict_status = Status.INCOMPATIBLE if status == "incompatible" else Status.ERROR
            return ModelVerdict(model_id=model_id, kind=info.get("kind", "?"), status=verdict_status,
                                tolerance_class=tol.name, reason=f"{side}: {info.get('reason', status)}",
                                tolerance=tol.as_dict())
    return None


def compare_results(
    base: ResultsFile,
    cand: ResultsFile,
    policy: Optional[Policy] = None,
    *,
    tolerance_class: Optional[str] = None,
    models: Optional[Iterable[str]] = None,
    allow_model_change: bool = False,
    label: Optional[str] = None,
) -> Comparison:
    """Judge every shared model of two opened results files."""
    policy = policy or load_policy()
    model_ids = _check_comparable(base, cand, models, allow_model_change)
    verdicts: List[ModelVerdict] = []
    for model_id in model_ids:
        tol = policy.tolerance(model_id, _choose_class(policy, tolerance_class, base, cand, model_id))
        info_b, info_c = base.models[model_id], cand.models[model_id]
        verdict = _not_run_verdict(model_id, info_b, info_c, tol)
        if verdict is None:
            compare_model = _compare_embeddings if info_b.get("kind") == "bi-encoder" else _compare_rerank
            verdict = compare_model(base, cand, model_id, tol)
        verdicts.append(verdict)
    base_env = {**base.fingerprint, "models": {k: _model_env(base, k) for k in model_ids}}
    cand_env = {**cand.fingerprint, "models": {k: _model_env(cand, k) for k in model_ids}}
    return Comparison(
        baseline=str(base.path),
        candidate=str(cand.path),
        policy=policy.source,
        models=verdicts,
        env_changes=env_changes(base_env, cand_env),
        baseline_env=base.fingerprint,
        candidate_env=cand.fingerprint,
        corpus=base.corpus,
        label=label,
    )


def compare_files(baseline: "str | Path", candidate: "str | Path", policy: Optional[Policy] = None, **kwargs: Any) -> Comparison:
    """Open and compare two results files (see ``compare_results`` for the options)."""
    return compare_results(ResultsFile(baseline), ResultsFile(candidate), policy, **kwargs)
