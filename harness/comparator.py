"""The comparator: load a baseline and a candidate results file, align them, judge each model by its policy.

Stages: open both files -> refuse incomparable inputs -> per model: align rows, compute metrics (``compare``),
apply the tolerance (``policy``) -> a ``Comparison`` (``verdict``). Nothing here imports torch or
sentence-transformers: the comparator runs in the controlling environment so that it cannot drift itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np

from harness import compare as m
from harness.errors import IncompatibleInputs, ResultsFileError
from harness.policy import Policy, Tolerance, auto_class, load_policy
from harness.results import ResultsFile
from harness.verdict import Check, Comparison, EnvChange, ModelVerdict, Offender, Status

__all__ = ["compare_files", "compare_results", "env_changes", "WORST_N"]

WORST_N = 5
_CLASS_ORDER = ("fp32", "tf32", "fp16", "bf16")
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
    picks = [
        auto_class(r.fingerprint, r.models.get(model_id)) for r in (base, cand)
    ]
    return max(picks, key=lambda c: _CLASS_ORDER.index(c) if c in _CLASS_ORDER else 0)


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


def _missing_verdict(model_id: str, kind: str, tol: Tolerance, only_base: np.ndarray, only_cand: np.ndarray) -> Optional[ModelVerdict]:
    if not len(only_base) and not len(only_cand):
        return None
    reason = (
        f"{len(only_base)} id(s) missing from candidate (e.g. {', '.join(only_base[:3]) or '-'}), "
        f"{len(only_cand)} extra (e.g. {', '.join(only_cand[:3]) or '-'})"
    )
    return ModelVerdict(model_id=model_id, kind=kind, status=Status.FAIL, tolerance_class=tol.name, reason=reason, tolerance=tol.as_dict())


def _compare_embeddings(base: ResultsFile, cand: ResultsFile, model_id: str, tol: Tolerance) -> ModelVerdict:
    b_ids, b_roles, b_vec = base.embeddings(model_id)
    c_ids, _, c_vec = cand.embeddings(model_id)
    _require_clean(base, model_id, b_ids, b_vec, "vector values")
    _require_clean(cand, model_id, c_ids, c_vec, "vector values")
    if b_vec.shape[1] != c_vec.shape[1]:
        raise IncompatibleInputs(
            f"{cand.path}: model '{model_id}' vectors have dim {c_vec.shape[1]}, baseline {b_vec.shape[1]}"
        )
    bi, ci, only_b, only_c = m.align(b_ids, c_ids)
    missing = _missing_verdict(model_id, "bi-encoder", tol, only_b, only_c)
    if missing:
        return missing
    ids, roles, bv, cv = b_ids[bi], b_roles[bi], b_vec[bi], c_vec[ci]
    stats = m.element_stats(bv, cv)
    cosine = m.row_cosine(bv, cv)
    per_row = m.row_max_abs(bv, cv)
    elements, n_bad = _elements_check("max_abs_diff", bv, cv, tol.atol, tol.rtol)
    checks = [
        elements,
        Check(
            name="min_cosine",
            observed=float(cosine.min()) if len(cosine) else 1.0,
            limit=tol.min_cosine,
            op=">=",
            passed=bool((cosine >= tol.min_cosine).all()),
            detail=f"{int((cosine < tol.min_cosine).sum())} / {len(cosine)} texts below cosine {tol.min_cosine}",
        ),
    ]
    metrics: Dict[str, Any] = {
        "texts": len(ids),
        "dim": int(bv.shape[1]),
        "max_abs_diff": stats.max_abs,
        "mean_abs_diff": stats.mean_abs,
        "p99_abs_diff": stats.p99_abs,
        "max_rel_diff": stats.max_rel,
        "min_cosine": float(cosine.min()) if len(cosine) else 1.0,
        "elements_beyond_tolerance": n_bad,
        "texts_beyond_tolerance": int((per_row > tol.atol).sum()),
        "abs_diff_histogram": _log_histogram(np.abs(cv.astype(np.float64) - bv.astype(np.float64))),
    }
    q = roles == "query"
    d = roles == "document"
    if q.any() and d.any():
        agree = m.topk_agreement(_cosine_matrix(bv[q], bv[d]), _cosine_matrix(cv[q], cv[d]), tol.topk, tol.tie_tolerance)
        k = agree.k
        metrics.update(
            topk=k,
            topk_order_agreement=agree.share("same_order"),
            topk_set_agreement=agree.share("same_set"),
            topk_raw_order_agreement=agree.share("raw_same_order"),
            topk_mean_overlap=agree.share("overlap"),
        )
        n_q = int(q.sum())
        checks.append(_ratio_check(
            f"top{k}_order_agreement", agree.share("same_order"), tol.min_topk_order_agreement,
            f"{n_q - int(agree.same_order.sum())} / {n_q} queries changed their top-{k} order (ties within {tol.tie_tolerance:g} ignored)",
        ))
        checks.append(_ratio_check(
            f"top{k}_set_agreement", agree.share("same_set"), tol.min_topk_set_agreement,
            f"{n_q - int(agree.same_set.sum())} / {n_q} queries changed their top-{k} set",
        ))
    worst = np.argsort(-per_row, kind="stable")[:WORST_N]
    offenders = [
        Offender(item_id=str(ids[i]), value=float(per_row[i]), metric="max_abs_diff", detail=f"cosine {cosine[i]:.9f}")
        for i in worst
        if per_row[i] > 0
    ]
    min_passing = {"atol": stats.max_abs, "min_cosine": metrics["min_cosine"]}
    if "topk" in metrics:
        min_passing.update(
            min_topk_order_agreement=metrics["topk_order_agreement"],
            min_topk_set_agreement=metrics["topk_set_agreement"],
        )
    return _verdict(model_id, "bi-encoder", tol, checks, metrics, offenders, min_passing)


def _cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-30)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-30)
    return a @ b.T


def _log_histogram(diff: np.ndarray) -> Dict[str, List[float]]:
    """Counts of absolute differences per decade (0 counted apart), for the report's distribution plot."""
    flat = diff.ravel()
    zeros = int((flat == 0).sum())
    nonzero = flat[flat > 0]
    edges = [10.0 ** e for e in range(-12, 2)]
    counts, _ = np.histogram(np.clip(nonzero, edges[0], edges[-1]), bins=edges)
    return {"edges": edges, "counts": [int(c) for c in counts], "zeros": [zeros]}


def _compare_rerank(base: ResultsFile, cand: ResultsFile, model_id: str, tol: Tolerance) -> ModelVerdict:
    b, c = base.rerank(model_id), cand.rerank(model_id)
    _require_clean(base, model_id, b["item_id"], b["score"], "scores")
    _require_clean(cand, model_id, c["item_id"], c["score"], "scores")
    bi, ci, only_b, only_c = m.align(b["item_id"], c["item_id"])
    missing = _missing_verdict(model_id, "cross-encoder", tol, only_b, only_c)
    if missing:
        return missing
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
