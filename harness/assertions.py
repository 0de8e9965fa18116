"""Assertions for tests and release checklists, with failure messages that read like ``numpy.testing``.

``assert_embeddings_close`` and ``assert_rerank_stable`` take numpy arrays or results files (paths or
``ResultsFile``) on either side. They judge by the same tolerance policy as ``harness compare``: when both
sides are results files the comparator itself decides (corpus and weights checks included); for arrays the
same rules are applied here (``|actual - baseline| <= atol + rtol * |baseline|`` per element, cosine per
text, top-k retrieval order and set, rerank order beyond score ties). On failure they raise ``AssertionError``::

    Embeddings are not close!

    Mismatched elements: 7 / 24576 (0.03%)
    Greatest absolute difference: 1.20e-04 at text 'd0012' dim 17 (up to 1e-05 allowed)
    Greatest relative difference: 3.41e-03 at text 'd0012' dim 17 (up to 0 allowed)
    actual value 0.0352200121, baseline value 0.0351000014
    ...

Only numpy, pyarrow and the comparator are imported: no torch (the comparator must not drift itself).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from harness.compare import metrics as m
from harness.compare import quantized
from harness.errors import IncompatibleInputs
from harness.compare.policy import Policy, Tolerance, load_policy, select_class
from harness.results.reader import ResultsFile

__all__ = ["assert_embeddings_close", "assert_rerank_stable", "assert_model_matches"]

ArrayOrFile = Union[np.ndarray, Sequence[Any], "str", "os.PathLike[str]", ResultsFile]
PolicyLike = Union[Policy, "str", "os.PathLike[str]", None]
_MAX_NAMED = 5


# -- inputs ---------------------------------------------------------------------------------------------------


def _as_policy(policy: PolicyLike) -> Policy:
    if isinstance(policy, Policy):
        return policy
    return load_policy(policy)


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
            if model_id not in results.models:
                raise IncompatibleInputs(f"{results.path}: has no model '{model_id}' (has: {', '.join(results.models) or 'none'})")
        return model_id
    found = sorted({k for r in files for k, v in r.models.items() if v.get("kind") == kind})
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

    def row(self, index: int, unit: str) -> str:
        return f"row {index}" if self.positional else f"{unit} '{self.ids[index]}'"

    @property
    def label(self) -> str:
        return f"{self.name} {self.results.path}" if self.results is not None else self.name


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
    results = value if isinstance(value, ResultsFile) else None
    if results is not None:
        item_ids, roles, vectors = results.embeddings(model_id)
        return _Side(name, vectors, item_ids, roles, results)
    return _Side(name, _array(value, name, 2), None if ids is None else np.asarray(ids, dtype=str))


def _rerank_side(value: Any, name: str, model_id: str, ids: Optional[Sequence[str]], query_ids: Optional[Sequence[str]]) -> _Side:
    results = value if isinstance(value, ResultsFile) else None
    if results is not None:
        data = results.rerank(model_id)
        return _Side(name, data["score"].astype(np.float64), data["item_id"], None, results, data["query_id"])
    return _Side(
        name,
        _array(value, name, 1),
        None if ids is None else np.asarray(ids, dtype=str),
        query_ids=None if query_ids is None else np.asarray(query_ids, dtype=str),
    )


def _fail(title: str, lines: List[str]) -> None:
    __tracebackhide__ = True
    raise AssertionError(f"{title}\n\n" + "\n".join(lines))


def _align(title: str, actual: _Side, baseline: _Side, subset: bool = False) -> Tuple[_Side, _Side]:
    """Put both sides in the baseline's row order by id; fail on missing, extra or duplicate ids or shapes.

    With ``subset`` (an array whose ids were given, against a results file), baseline rows the array does not
    name are left out instead of failing: checking a few texts against a full baseline is allowed.
    """
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
        if len(side.ids) != len(side.values):
            raise ValueError(f"{side.label}: {len(side.ids)} ids for {len(side.values)} rows")
        unique, counts = np.unique(side.ids, return_counts=True)
        if len(unique) != len(side.ids):
            _fail(title, [f"{side.label} has duplicate id(s): {_names(unique[counts > 1])}"])
    if actual.values.ndim == 2 and actual.values.shape[1] != baseline.values.shape[1]:
        _fail(title, [f"The dimensions do not match: actual {actual.values.shape[1]} != baseline {baseline.values.shape[1]}"])
    bi, ci, only_b, only_a = m.align(baseline.ids, actual.ids)
    if subset:
        only_b = only_b[:0]
    if len(only_b) or len(only_a):
        _fail(title, [
            f"The ids do not match: {len(only_b)} missing from actual ({_names(only_b)}), "
            f"{len(only_a)} not in baseline ({_names(only_a)})"
        ])

    def pick(side: _Side, idx: np.ndarray) -> _Side:
        return _Side(
            side.name,
            side.values[idx],
            side.ids[idx],
            None if side.roles is None else side.roles[idx],
            side.results,
            None if side.query_ids is None else side.query_ids[idx],
        )


    return pick(actual, ci), pick(baseline, bi)


def _require_finite(title: str, side: _Side, what: str) -> None:
    __tracebackhide__ = True
    values = side.values.reshape(len(side.values), -1)
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        where = f"'{side.ids[row]}'" if side.ids is not None else f"row {row}"  # before alignment: real ids only
        dim = f" dim {col}" if side.values.ndim == 2 else ""
        _fail(title, [
            f"{side.label} has {int(bad.sum())} non-finite {what}(s) in {int(bad.any(axis=1).sum())} row(s); "
            f"first: {values[row, col]} at {where}{dim}"
        ])


# -- formatting -----------------------------------------------------------------------------------------------


def _g(value: float) -> str:
    """Numbers as drift is read: scientific when small (1.22e-04), plain otherwise."""
    value = float(value)
    if value == 0 or not np.isfinite(value):
        return "0" if value == 0 else str(value)
    if abs(value) < 1e-3 or abs(value) >= 1e5:
        return f"{value:.2e}"
    return f"{value:.6g}"


def _limit(value: float) -> str:
    return f"{float(value):g}"


def _names(ids: Sequence[Any]) -> str:
    shown = ", ".join(f"'{i}'" for i in list(ids)[:_MAX_NAMED])
    more = len(ids) - _MAX_NAMED
    return (shown + (f" and {more} more" if more > 0 else "")) or "-"


def _pct(count: int, total: int) -> str:
    return f"{count} / {total} ({100.0 * count / max(total, 1):.{2 if total >= 1000 else 1}f}%)"


def _tolerance_line(tol: Tolerance, model_id: Optional[str], policy: Policy, keys: Sequence[str]) -> str:
    limits = ", ".join(f"{k}={_limit(getattr(tol, k))}" for k in keys)
    model = f" for model '{model_id}'" if model_id else ""
    return f"Tolerance: class {tol.name}{model} ({policy.source}): {limits}"


def _env_lines(comparison: Any) -> List[str]:
    if comparison is None:
        return []
    from harness.report.text import format_env

    lines = [
        f"actual:   {comparison.candidate} [{format_env(comparison.candidate_env)}]",
        f"baseline: {comparison.baseline} [{format_env(comparison.baseline_env)}]",
    ]
    changes = comparison.env_changes
    if changes:
        shown = "; ".join(f"{c.key}: {c.baseline} -> {c.candidate}" for c in changes[:8])
        more = f"; ... {len(changes) - 8} more" if len(changes) > 8 else ""
        lines.append(f"Environment changes ({len(changes)}): {shown}{more}")
    return lines


def _hint(comparison: Any) -> List[str]:
    if comparison is None:
        return []
    return [
        "If this change is intended, accept it: harness baseline update "
        f"{comparison.baseline} --from {comparison.candidate} --reason \"...\""
    ]


def _element_lines(actual: _Side, baseline: _Side, atol: float, rtol: float, unit: str, noun: str) -> Tuple[List[str], int]:
    """Mismatched count, greatest absolute and relative difference with their location and values."""
    a = actual.values.astype(np.float64)
    b = baseline.values.astype(np.float64)
    diff = np.abs(a - b)
    rel = diff / np.maximum(np.abs(b), 1e-12)
    bad = diff > atol + rtol * np.abs(b)
    n_bad, total = int(bad.sum()), int(diff.size)

    def where(flat_index: int) -> str:
        if diff.ndim == 1:
            return f"index ({flat_index},)" if baseline.positional else baseline.row(flat_index, unit)
        row, col = np.unravel_index(flat_index, diff.shape)
        return f"index ({row}, {col})" if baseline.positional else f"{baseline.row(int(row), unit)} dim {col}"

    lines = [f"Mismatched {noun}: {_pct(n_bad, total)}"]
    if total:
        i_abs, i_rel = int(np.argmax(diff)), int(np.argmax(rel))
        lines += [
            f"Greatest absolute difference: {_g(float(diff.flat[i_abs]))} at {where(i_abs)} (up to {_limit(atol)} allowed)",
            f"Greatest relative difference: {_g(float(rel.flat[i_rel]))} at {where(i_rel)} (up to {_limit(rtol)} allowed)",
            f"actual value {float(a.flat[i_abs]):.9g}, baseline value {float(b.flat[i_abs]):.9g}",
        ]
    return lines, n_bad


# -- embeddings -----------------------------------------------------------------------------------------------


def _embedding_checks(actual: _Side, baseline: _Side, tol: Tolerance) -> Tuple[List[str], bool]:
    lines, n_bad = _element_lines(actual, baseline, tol.atol, tol.rtol, "text", "elements")
    passed = n_bad == 0
    cosine = m.row_cosine(baseline.values, actual.values)
    if len(cosine):
        low = int(np.argmin(cosine))
        below = int((cosine < tol.min_cosine).sum())
        passed &= below == 0
        lines.append(
            f"Lowest cosine similarity: {cosine[low]:.9f} at {baseline.row(low, 'text')} "
            f"(at least {tol.min_cosine:g} required; {_pct(below, len(cosine))} texts below)"
        )
        per_row = m.row_max_abs(baseline.values, actual.values)
        beyond = np.flatnonzero(per_row > tol.atol)
        if len(beyond):
            worst = beyond[np.argsort(-per_row[beyond], kind="stable")]
            named = ", ".join(f"{baseline.row(int(i), 'text')} ({_g(float(per_row[i]))})" for i in worst[:_MAX_NAMED])
            lines.append(f"Texts beyond atol: {_pct(len(beyond), len(per_row))}: {named}")
    more, topk_passed = _topk_lines(actual, baseline, tol, tol.min_topk_order_agreement, tol.min_topk_set_agreement)
    return lines + more, bool(passed and topk_passed)


def _topk_lines(actual: _Side, baseline: _Side, tol: Tolerance, order_limit: float, set_limit: float,
                scores: Any = None) -> Tuple[List[str], bool]:
    """Top-k retrieval agreement (when the rows have roles), scored by ``scores(values)`` (default: as given)."""
    roles = baseline.roles if baseline.roles is not None else actual.roles
    lines: List[str] = []
    passed = True
    if roles is None:
        return lines, passed
    q, d = roles == "query", roles == "document"
    if not (q.any() and d.any()):
        return lines, passed
    as_scores = scores or (lambda values: values)
    agree = m.topk_agreement(
        m.cosine_matrix(as_scores(baseline.values[q]), as_scores(baseline.values[d])),
        m.cosine_matrix(as_scores(actual.values[q]), as_scores(actual.values[d])),
        tol.topk,
        tol.tie_tolerance,
    )
    n_q, k = int(q.sum()), agree.k
    queries = baseline.ids[q]
    for label, field, limit in (("order", "same_order", order_limit), ("set", "same_set", set_limit)):
        same = getattr(agree, field)
        share = agree.share(field)
        passed &= share >= limit
        changed = queries[~same]
        lines.append(
            f"Top-{k} retrieval {label} agreement: {100 * share:.1f}% ({len(changed)} / {n_q} queries changed"
            + (f": {_names(changed)}" if len(changed) else "")
            + f"; at least {100 * limit:g}% required, ties within {tol.tie_tolerance:g} ignored)"
        )
    return lines, bool(passed)


def _quantized_checks(precision: str) -> Any:
    """Checks for quantized embeddings (``harness.compare.quantized``): integers, judged in bits or buckets."""

    def checks(actual: _Side, baseline: _Side, tol: Tolerance) -> Tuple[List[str], bool]:
        result = quantized.compare_quantized(baseline.values, actual.values, precision, tol.quantized(), worst_n=_MAX_NAMED)
        metrics = result["metrics"]
        key = quantized.limit_key(precision)
        unit, where = ("bit(s) flipped", "bits") if key == "max_bit_flips" else ("bucket(s) moved", "dims")
        lines = [
            f"Texts changed ({precision}): {_pct(metrics['rows_changed'], metrics['rows'])} "
            f"(at most {100 * tol.max_changed_fraction:g}% may change)",
            f"Most {unit} in one text: {metrics[key]} (up to {getattr(tol, key)} allowed)",
        ]
        lines += [f"  {baseline.row(w['row'], 'text')}: {w[key]} {unit}, {where} {', '.join(map(str, w['dims']))}"
                  for w in result["worst"]]
        more, topk_passed = _topk_lines(actual, baseline, tol, tol.min_quantized_topk_order_agreement,
                                        tol.min_quantized_topk_set_agreement,
                                        scores=lambda values: quantized.scoring_floats(values, precision))
        return lines + more, bool(result["passed"] and topk_passed)

    return checks


def _precision(files: Sequence[ResultsFile], model_id: Optional[str], given: Optional[str], *arrays: np.ndarray) -> Optional[str]:
    """The quantized precision to judge by: given, else the files' model metadata; None for floats."""
    if given is not None and given != "float32":
        if given not in quantized.PRECISIONS:
            raise ValueError(f"precision must be one of float32, {', '.join(quantized.PRECISIONS)}, got {given!r}")
        return given
    recorded = {f.models.get(model_id or "", {}).get("precision", "float32") for f in files}
    recorded.discard("float32")
    if len(recorded) > 1:
        raise ValueError(f"the results files hold {' and '.join(sorted(recorded))} vectors of '{model_id}': not comparable")
    if recorded:
        return recorded.pop()
    if given is None and any(np.asarray(values).dtype.kind in "iu" for values in arrays):
        raise ValueError("integer embeddings: pass precision='int8', 'uint8', 'binary' or 'ubinary' "
                         "(bits and buckets are compared differently)")
    return None


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
        HarnessError: an unreadable file, or files that cannot be compared (other corpus, other weights).
    """
    __tracebackhide__ = True
    title = "Embeddings are not close!"
    pol = _as_policy(policy)
    a_file, b_file = _as_results(actual), _as_results(baseline)
    files = [f for f in (a_file, b_file) if f is not None]
    if files:
        model_id = _only_model(files, "bi-encoder", model_id)
    a_side = _embedding_side(actual if a_file is None else a_file, "actual", model_id or "", ids)
    b_side = _embedding_side(baseline if b_file is None else b_file, "baseline", model_id or "", None)
    if roles is not None:
        for side in (a_side, b_side):
            if side.results is None and len(side.values) == len(roles):
                side.roles = np.asarray(roles, dtype=str)
    kind = _precision(files, model_id, precision, a_side.values, b_side.values)
    if kind is None:
        _require_finite(title, a_side, "value")
        _require_finite(title, b_side, "value")
    a_side, b_side = _align(title, a_side, b_side, subset=ids is not None and a_file is None and b_file is not None)
    if kind is None:
        _judge(title, a_side, b_side, pol, model_id, tolerance_class, _embedding_checks,
               ("atol", "rtol", "min_cosine", "min_topk_order_agreement", "min_topk_set_agreement"))
    else:
        _judge(title, a_side, b_side, pol, model_id, tolerance_class, _quantized_checks(kind),
               (quantized.limit_key(kind), "max_changed_fraction", "min_quantized_topk_order_agreement", "min_quantized_topk_set_agreement"))


# -- rerank ---------------------------------------------------------------------------------------------------


def _rerank_checks(actual: _Side, baseline: _Side, tol: Tolerance) -> Tuple[List[str], bool]:
    lines, n_bad = _element_lines(actual, baseline, tol.score_atol, tol.score_rtol, "pair", "scores")
    passed = n_bad == 0
    queries = baseline.query_ids if baseline.query_ids is not None else actual.query_ids
    if queries is None:
        return lines, bool(passed)
    bs = baseline.values.astype(np.float64)
    cs = actual.values.astype(np.float64)
    reordered: List[Tuple[str, int, str]] = []
    taus: List[Tuple[float, str]] = []
    groups = m.group_rows(queries)
    for qid, rows in groups.items():
        idx = np.asarray(rows)
        taus.append((m.kendall_tau(bs[idx], cs[idx]), qid))
        swaps = m.significant_swaps(bs[idx], cs[idx], tol.tie_tolerance)
        if swaps:
            reordered.append((qid, swaps, _worst_swap([baseline.row(int(i), 'pair') for i in idx], bs[idx], cs[idx], tol.tie_tolerance)))
    n_q = len(groups)
    agreement = 1.0 - len(reordered) / max(n_q, 1)
    passed &= agreement >= tol.min_rerank_order_agreement
    lines.append(
        f"Queries reordered: {_pct(len(reordered), n_q)} beyond score ties of {tol.tie_tolerance:g} "
        f"(at least {100 * tol.min_rerank_order_agreement:g}% must keep their order)"
    )
    for qid, swaps, example in sorted(reordered, key=lambda r: -r[1])[:_MAX_NAMED]:
        lines.append(f"  query '{qid}': {swaps} pair(s) swapped, e.g. {example}")
    if taus:
        low, qid = min(taus)
        lines.append(f"Lowest Kendall tau: {low:.6g} at query '{qid}'")
    return lines, bool(passed)


def _worst_swap(labels: Sequence[str], base: np.ndarray, cand: np.ndarray, tie: float) -> str:
    """The swapped pair with the largest baseline score gap, spelled out."""
    gap = base[:, None] - base[None, :]
    flipped = (np.sign(gap) * np.sign(cand[:, None] - cand[None, :]) < 0) & (np.abs(gap) > tie)
    i, j = np.unravel_index(int(np.argmax(np.where(flipped, np.abs(gap), -1.0))), gap.shape)
    hi, lo = (i, j) if base[i] > base[j] else (j, i)
    return (
        f"{labels[hi]} above {labels[lo]} in baseline ({base[hi]:.7g} > {base[lo]:.7g}), "
        f"below it in actual ({cand[hi]:.7g} < {cand[lo]:.7g})"
    )


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
    a_side = _rerank_side(actual_scores if a_file is None else a_file, "actual", model_id or "", ids, query_ids)
    b_side = _rerank_side(baseline_scores if b_file is None else b_file, "baseline", model_id or "", None, None)
    if b_side.results is None and query_ids is not None and len(b_side.values) == len(query_ids):
        b_side.query_ids = np.asarray(query_ids, dtype=str)
    _require_finite(title, a_side, "score")
    _require_finite(title, b_side, "score")
    a_side, b_side = _align(title, a_side, b_side, subset=ids is not None and a_file is None and b_file is not None)
    _judge(title, a_side, b_side, pol, model_id, tolerance_class, _rerank_checks,
           ("score_atol", "score_rtol", "tie_tolerance", "min_rerank_order_agreement"))


# -- judging --------------------------------------------------------------------------------------------------


def _judge(title: str, actual: _Side, baseline: _Side, policy: Policy, model_id: Optional[str],
           tolerance_class: Optional[str], checks: Any, keys: Sequence[str]) -> None:
    """Decide (the comparator when both sides are files, else the checks here) and explain a failure."""
    __tracebackhide__ = True
    comparison = None
    if actual.results is not None and baseline.results is not None and model_id:
        from harness.compare.comparator import compare_results

        cls = select_class(
            policy,
            baseline.results.fingerprint,
            baseline.results.models.get(model_id),
            actual.results.fingerprint,
            actual.results.models.get(model_id),
            forced=tolerance_class,
        )
        comparison = compare_results(baseline.results, actual.results, policy, tolerance_class=cls, models=[model_id])
        verdict = comparison.models[0]
        tol = policy.tolerance(model_id, verdict.tolerance_class)
        lines, _ = checks(actual, baseline, tol)
        if verdict:
            return
        if verdict.reason and not verdict.checks:  # not compared at all (e.g. ids missing): say why
            lines.insert(0, verdict.reason)
        would = ", ".join(f"{k} {v:.9g}" if k.startswith("min_") else f"{k} {_g(v)}" for k, v in verdict.min_passing.items())
        if would:
            lines.append(f"Would pass with: {would}")
    else:
        cls = tolerance_class or policy.default_class
        if cls == "auto":
            dtypes = {actual.values.dtype, baseline.values.dtype}
            cls = "fp16" if np.dtype(np.float16) in dtypes else "fp32"
        tol = policy.tolerance(model_id or "", cls)
        lines, passed = checks(actual, baseline, tol)
        if passed:
            return
    lines.append(_tolerance_line(tol, model_id, policy, keys))
    _fail(title, lines + _env_lines(comparison) + _hint(comparison))


def assert_model_matches(
    candidate: "str | os.PathLike[str] | ResultsFile",
    baseline: "str | os.PathLike[str] | ResultsFile",
    model_id: str,
    policy: PolicyLike = None,
    *,
    tolerance_class: Optional[str] = None,
) -> None:
    """One model of a candidate results file against a baseline, whatever its kind (what the plugin runs)."""
    __tracebackhide__ = True
    cand = _as_results(candidate)
    base = _as_results(baseline)
    assert cand is not None and base is not None, "candidate and baseline must be results files"
    _only_model([base, cand], "", model_id)
    for side, results in (("candidate", cand), ("baseline", base)):
        info = results.models[model_id]
        if info.get("status", "ok") != "ok":
            _fail(f"Model '{model_id}' did not run!", [
                f"{side} {results.path}: {info.get('status')}: {info.get('reason', '')}".rstrip(": ")
            ])
    kind = base.models[model_id].get("kind")
    if kind == "bi-encoder":
        assert_embeddings_close(cand, base, policy, model_id=model_id, tolerance_class=tolerance_class)
    else:
        assert_rerank_stable(cand, base, policy=policy, model_id=model_id, tolerance_class=tolerance_class)
