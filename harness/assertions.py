"""Assertions for tests and release checklists, with failure messages that read like ``numpy.testing``.

This module only adapts inputs (files, tensors, rows aligned by id, NaN/Inf refused): judging is the
comparator's one judge, so a test and ``harness compare`` agree. No torch: the comparator must not drift itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, List, Optional, Sequence, Tuple, Union, cast

import numpy as np

from harness.compare import kinds, quantized
from harness.compare.metrics import align
from harness.config.policy import Policy, Tolerance, choose_class, load_policy
from harness.errors import HarnessError, IncompatibleInputs, ResultsFileError
from harness.results import ResultsFile, SideSettings
from harness.verdict import Comparison, ModelVerdict

__all__ = ["assert_embeddings_close", "assert_rerank_stable", "assert_model_matches", "NonFiniteInput"]

ArrayOrFile = Union[np.ndarray, Sequence[Any], "str", "os.PathLike[str]", ResultsFile]
PolicyLike = Union[Policy, "str", "os.PathLike[str]", None]
_MAX_NAMED = 5


class NonFiniteInput(HarnessError, AssertionError):
    """NaN or Inf in an array given to an assertion: bad input (a ``HarnessError``), which fails a test like
    any assertion does (an ``AssertionError``)."""


# -- inputs ---------------------------------------------------------------------------------------------------


def _as_policy(policy: PolicyLike) -> Policy:
    return policy if isinstance(policy, Policy) else load_policy(policy)


def _as_results(value: Any) -> Optional[ResultsFile]:
    if isinstance(value, ResultsFile):
        return value
    if isinstance(value, (str, os.PathLike)):
        return ResultsFile(value)
    return None


def _only_model(files: List[ResultsFile], kind: str, model_id: Optional[str]) -> str:
    """The model to check: the one given, else the only ``kind`` model the files have."""
    if model_id is not None:
        for results in files:
            if model_id not in results.records:
                raise IncompatibleInputs(f"{results.path}: has no model '{model_id}' (has: {', '.join(results.records) or 'none'})")
        return model_id
    found = sorted({k for r in files for k, v in r.records.items() if v.kind == kind})
    if len(found) != 1:
        where = ", ".join(str(r.path) for r in files)
        raise ValueError(f"model_id= is required: {where} hold {len(found)} {kind} model(s) ({', '.join(found) or 'none'})")
    return found[0]


@dataclass
class _Side:
    """One side of a comparison, as arrays: values (n, dim) or (n,), the ids naming its rows, roles."""

    name: str  # "actual" or "baseline"
    values: np.ndarray
    ids: Optional[np.ndarray]
    roles: Optional[np.ndarray] = None
    results: Optional[ResultsFile] = None
    query_ids: Optional[np.ndarray] = None
    positional: bool = False  # ids are row numbers (two bare arrays), not names

    @property
    def label(self) -> str:
        return f"{self.name} {self.results.path}" if self.results is not None else self.name

    def pick(self, idx: np.ndarray) -> _Side:
        return _Side(self.name, self.values[idx], None if self.ids is None else self.ids[idx],
                     None if self.roles is None else self.roles[idx], self.results,
                     None if self.query_ids is None else self.query_ids[idx], self.positional)


def _array(value: Any, name: str, ndim: int) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor (any device): float32 values, or its integers (quantized)
        value = value.detach().cpu()
        value = (value.float() if value.is_floating_point() else value).numpy()
    try:
        array = np.asarray(value)
    except Exception as err:  # noqa: BLE001 - anything not array-like is a caller error
        raise TypeError(f"{name}: expected an array or a results file, got {type(value).__name__}") from err
    if array.dtype == object or not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"{name}: expected numbers, got dtype {array.dtype}")
    if ndim == 2 and array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {array.shape}")
    return array


def _embedding_side(value: Any, name: str, model_id: str, ids: Optional[Sequence[str]]) -> _Side:
    if isinstance(value, ResultsFile):
        item_ids, roles, vectors = value.embeddings(model_id)
        return _Side(name, vectors, item_ids, roles, value)
    return _Side(name, _array(value, name, 2), None if ids is None else np.asarray(ids, dtype=str))


def _rerank_side(value: Any, name: str, model_id: str, ids: Optional[Sequence[str]], query_ids: Optional[Sequence[str]]) -> _Side:
    if isinstance(value, ResultsFile):
        data = value.rerank(model_id)
        return _Side(name, data["score"].astype(np.float64), data["item_id"], None, value, data["query_id"])
    return _Side(name, _array(value, name, 1), None if ids is None else np.asarray(ids, dtype=str),
                 query_ids=None if query_ids is None else np.asarray(query_ids, dtype=str))


def _fail(title: str, lines: List[str]) -> None:
    __tracebackhide__ = True
    raise AssertionError(f"{title}\n\n" + "\n".join(lines))


def _names(ids: Union[Sequence[Any], np.ndarray]) -> str:
    shown = ", ".join(f"'{i}'" for i in list(ids)[:_MAX_NAMED])
    more = len(ids) - _MAX_NAMED
    return (shown + (f" and {more} more" if more > 0 else "")) or "-"


def _align(title: str, actual: _Side, baseline: _Side, subset: bool = False) -> Tuple[_Side, _Side]:
    """Put both sides in the baseline's row order by id; fail on missing, extra or duplicate ids or shapes
    (``subset``: a few texts may be checked against a full baseline)."""
    __tracebackhide__ = True
    if actual.ids is None and baseline.ids is not None:
        actual.ids = baseline.ids if len(actual.values) == len(baseline.values) else None
    if baseline.ids is None and actual.ids is not None:
        baseline.ids = actual.ids if len(actual.values) == len(baseline.values) else None
    if actual.ids is None or baseline.ids is None:  # two bare arrays: rows correspond by position
        if actual.values.shape != baseline.values.shape:
            _fail(title, [f"The shapes do not match: actual {actual.values.shape} != baseline {baseline.values.shape}"])
        names = np.array([str(i) for i in range(len(baseline.values))])
        actual.ids = baseline.ids = names
        actual.positional = baseline.positional = True
        return actual, baseline
    for side in (actual, baseline):
        side_ids = cast(np.ndarray, side.ids)  # both set: the bare-array case returned above
        if len(side_ids) != len(side.values):
            raise ValueError(f"{side.label}: {len(side_ids)} ids for {len(side.values)} rows")
        unique, counts = np.unique(side_ids, return_counts=True)
        if len(unique) != len(side_ids):
            _fail(title, [f"{side.label} has duplicate id(s): {_names(unique[counts > 1])}"])
    if actual.values.ndim == 2 and actual.values.shape[1] != baseline.values.shape[1]:
        _fail(title, [f"The dimensions do not match: actual {actual.values.shape[1]} != baseline {baseline.values.shape[1]}"])
    bi, ci, only_b, only_a = align(baseline.ids, actual.ids)
    if subset:
        only_b = only_b[:0]
    if len(only_b) or len(only_a):
        _fail(title, [
            f"The ids do not match: {len(only_b)} missing from actual ({_names(only_b)}), "
            f"{len(only_a)} not in baseline ({_names(only_a)})"
        ])
    return actual.pick(ci), baseline.pick(bi)


def _require_finite(side: _Side, model_id: str, what: str) -> None:
    """NaN/Inf is bad input: a file's is named like the comparator names it, an array's by row and dimension."""
    __tracebackhide__ = True
    values = side.values.reshape(len(side.values), -1)
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    row, col = np.argwhere(bad)[0]
    rows = int(bad.any(axis=1).sum())
    if side.results is not None:
        noun = "vector values" if side.values.ndim == 2 else "scores"
        raise ResultsFileError(f"{side.results.path}: model '{model_id}' has non-finite {noun} in {rows} row(s) "
                               f"(first: '{cast(np.ndarray, side.ids)[row]}')")  # a file's side has ids
    where = f"'{side.ids[row]}'" if side.ids is not None else f"row {row}"  # before alignment: real ids only
    dim = f" dim {col}" if side.values.ndim == 2 else ""
    raise NonFiniteInput(f"{side.label} has {int(bad.sum())} non-finite {what}(s) in {rows} row(s); "
                         f"first: {values[row, col]} at {where}{dim}")


def _precision(files: Sequence[ResultsFile], model_id: Optional[str], given: Optional[str], *arrays: np.ndarray) -> Optional[str]:
    """The quantized precision to judge by: given, else the files' model metadata; None for floats."""
    if given is not None and given != "float32":
        if given not in quantized.PRECISIONS:
            raise ValueError(f"precision must be one of float32, {', '.join(quantized.PRECISIONS)}, got {given!r}")
        return given
    recorded = {getattr(f.records.get(model_id or ""), "precision", None) or "float32" for f in files}
    recorded.discard("float32")
    if len(recorded) > 1:
        raise ValueError(f"the results files hold {' and '.join(sorted(recorded))} vectors of '{model_id}': not comparable")
    if recorded:
        return recorded.pop()
    if given is None and any(np.asarray(values).dtype.kind in "iu" for values in arrays):
        raise ValueError("integer embeddings: pass precision='int8', 'uint8', 'binary' or 'ubinary' "
                         "(bits and buckets are compared differently)")
    return None


# -- judging --------------------------------------------------------------------------------------------------


def _settings(side: _Side, other: _Side, model_id: str) -> SideSettings:
    """What ``choose_class`` reads of one side; an array's device is unknown, so it is taken to be the other's."""
    if side.results is not None:
        return side.results.side(model_id)
    return SideSettings(other.results.side(model_id).device if other.results is not None else "cpu",
                        "float16" if side.values.dtype == np.float16 else "float32")


def _array_tolerance(policy: Policy, model_id: str, forced: Optional[str], actual: _Side,
                     baseline: _Side) -> Tuple[Tolerance, str]:
    """The tolerance (``policy.choose_class``, as the comparator chooses) and its precision-change note."""
    name, note = choose_class(policy, _settings(baseline, actual, model_id), _settings(actual, baseline, model_id),
                              forced=forced)
    return policy.tolerance(model_id, name), note


def _raise(title: str, verdict: ModelVerdict, policy: Policy, positional: bool = False,
           comparison: Optional[Comparison] = None) -> None:
    __tracebackhide__ = True
    from harness.report.assertion import render_failure

    raise AssertionError(render_failure(title, verdict, policy=policy.source,
                                        positional=positional, comparison=comparison))


def _judge_files(title: str, actual: ResultsFile, baseline: ResultsFile, policy: Policy, model_id: str,
                 tolerance_class: Optional[str]) -> None:
    """Two results files: the comparator decides, everything included (corpus, weights, environment)."""
    __tracebackhide__ = True
    from harness.compare.comparator import compare_results

    comparison = compare_results(baseline, actual, policy, tolerance_class=tolerance_class, models=[model_id])
    verdict = comparison.models[0]
    if not verdict:
        _raise(title, verdict, policy, comparison=comparison)


def assert_embeddings_close(
    actual: ArrayOrFile,
    baseline: ArrayOrFile,
    policy: PolicyLike = None,
    *,
    model_id: Optional[str] = None,
    ids: Optional[Sequence[str]] = None,
    tolerance_class: Optional[str] = None,
    roles: Optional[Sequence[str]] = None,
    precision: Optional[str] = None,
) -> None:
    """Assert that embeddings match a baseline within the tolerance policy.

    Args:
        actual, baseline: an ``(n, dim)`` array (numpy, or anything ``np.asarray`` takes; a torch tensor is
            read as float32) or a results file (path or ``ResultsFile``).
        policy: a ``Policy``, a policy TOML path (overlaying the defaults), or ``None`` for the defaults.
        model_id: the bi-encoder to check in results files (optional when a file holds only one); also picks
            the policy's per-model overrides for arrays.
        ids: the text ids of an array's rows, in order. Without them, an array's rows must be in the same
            order as the other side's. With them, an array may hold any subset of a baseline file's texts.
        tolerance_class: force a class (``fp32``, ``cpu-vs-cuda``, ``tf32``, ...). Default: the policy's
            ``default_class``; ``auto`` picks from both files' settings, or from the arrays' dtype.
        roles: ``"document"``/``"query"`` per row of an array, to check top-k retrieval as well.
        precision: ``int8``/``uint8``/``binary``/``ubinary`` for quantized arrays (results files record it):
            judged as integers, by bits flipped or buckets moved per text (``max_bit_flips``,
            ``max_int_distance``, ``max_changed_fraction``, ``min_quantized_topk_*``), not by atol.

    Raises:
        AssertionError: with a numpy.testing-style report of what differs and where.
        HarnessError: an unreadable file, NaN/Inf (``NonFiniteInput`` for arrays, also an ``AssertionError``),
            or files that cannot be compared (other corpus, other weights).
    """
    __tracebackhide__ = True
    title = "Embeddings are not close!"
    pol = _as_policy(policy)
    a_file, b_file = _as_results(actual), _as_results(baseline)
    files = [f for f in (a_file, b_file) if f is not None]
    if files:
        model_id = _only_model(files, "bi-encoder", model_id)
    if a_file is not None and b_file is not None:
        _precision(files, model_id, precision)
        _judge_files(title, a_file, b_file, pol, cast(str, model_id), tolerance_class)  # set by _only_model
        return
    a_side = _embedding_side(actual if a_file is None else a_file, "actual", model_id or "", ids)
    b_side = _embedding_side(baseline if b_file is None else b_file, "baseline", model_id or "", None)
    if roles is not None:
        for side in (a_side, b_side):
            if side.results is None and len(side.values) == len(roles):
                side.roles = np.asarray(roles, dtype=str)
    kind = _precision(files, model_id, precision, a_side.values, b_side.values)
    for side in (a_side, b_side) if kind is None else ():
        _require_finite(side, model_id or "", "value")
    a_side, b_side = _align(title, a_side, b_side, subset=ids is not None and a_file is None and b_file is not None)
    tol, note = _array_tolerance(pol, model_id or "", tolerance_class, a_side, b_side)
    pair = kinds.ArrayPair(cast(np.ndarray, b_side.ids), b_side.roles if b_side.roles is not None else a_side.roles, b_side.values,
                           a_side.values, labels=(b_side.label, a_side.label), model_id=model_id or "")
    verdict = kinds.judge_embeddings(model_id or "", tol, pair, kind)
    if not verdict:
        _raise(title, replace(verdict, precision_change=note), pol, positional=a_side.positional)


def assert_rerank_stable(
    actual_scores: ArrayOrFile,
    baseline_scores: ArrayOrFile,
    query_ids: Optional[Sequence[str]] = None,
    policy: PolicyLike = None,
    *,
    model_id: Optional[str] = None,
    ids: Optional[Sequence[str]] = None,
    tolerance_class: Optional[str] = None,
) -> None:
    """Assert that cross-encoder scores match a baseline, and that no query's ranking changed beyond ties.

    Args:
        actual_scores, baseline_scores: ``(n,)`` score arrays in the same pair order, or results files.
        query_ids: the query of each pair (array inputs), to check each query's order; files carry their own.
        policy, model_id, tolerance_class: as for ``assert_embeddings_close``.
        ids: a name per pair (e.g. ``"q1|d7"``) for the message and for aligning an array with a file.
    """
    __tracebackhide__ = True
    title = "Rerank scores are not stable!"
    pol = _as_policy(policy)
    a_file, b_file = _as_results(actual_scores), _as_results(baseline_scores)
    files = [f for f in (a_file, b_file) if f is not None]
    if files:
        model_id = _only_model(files, "cross-encoder", model_id)
    if a_file is not None and b_file is not None:
        _judge_files(title, a_file, b_file, pol, cast(str, model_id), tolerance_class)  # set by _only_model
        return
    a_side = _rerank_side(actual_scores if a_file is None else a_file, "actual", model_id or "", ids, query_ids)
    b_side = _rerank_side(baseline_scores if b_file is None else b_file, "baseline", model_id or "", None, None)
    if b_side.results is None and query_ids is not None and len(b_side.values) == len(query_ids):
        b_side.query_ids = np.asarray(query_ids, dtype=str)
    for side in (a_side, b_side):
        _require_finite(side, model_id or "", "score")
    a_side, b_side = _align(title, a_side, b_side, subset=ids is not None and a_file is None and b_file is not None)
    tol, note = _array_tolerance(pol, model_id or "", tolerance_class, a_side, b_side)
    queries = b_side.query_ids if b_side.query_ids is not None else a_side.query_ids
    verdict = kinds.judge_rerank(model_id or "", tol, cast(np.ndarray, b_side.ids), queries, b_side.values, a_side.values)
    if not verdict:
        _raise(title, replace(verdict, precision_change=note), pol, positional=a_side.positional)


def assert_model_matches(
    candidate: str | os.PathLike[str] | ResultsFile,
    baseline: str | os.PathLike[str] | ResultsFile,
    model_id: str,
    policy: PolicyLike = None,
    *,
    tolerance_class: Optional[str] = None,
) -> None:
    """One model of a candidate results file against a baseline, whatever its kind (what the plugin runs)."""
    __tracebackhide__ = True
    cand, base = _as_results(candidate), _as_results(baseline)
    assert cand is not None and base is not None, "candidate and baseline must be results files"
    _only_model([base, cand], "", model_id)
    for side, results in (("candidate", cand), ("baseline", base)):
        record = results.records[model_id]
        if (record.status or "ok") != "ok":
            _fail(f"Model '{model_id}' did not run!", [f"{side} {results.path}: {record.status}: {record.reason or ''}".rstrip(": ")])
    kind = base.records[model_id].kind
    if kind == "bi-encoder":
        assert_embeddings_close(cand, base, policy, model_id=model_id, tolerance_class=tolerance_class)
    else:
        assert_rerank_stable(cand, base, policy=policy, model_id=model_id, tolerance_class=tolerance_class)
