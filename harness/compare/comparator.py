"""The comparator: load a baseline and a candidate results file, align them, judge each model by its policy.

Stages: open both files -> refuse incomparable inputs -> per model: align rows, compute metrics (``compare``),
apply the tolerance (``policy``) -> a ``Comparison`` (``verdict``). Nothing here imports torch or
sentence-transformers: the comparator runs in the controlling environment so that it cannot drift itself.

Bi-encoders are compared streaming (``harness.compare.streaming``): row group by row group, in two threads, memory
independent of the file size (1M x 384 on 2 cores: ~0.8 GB peak, 460-610 MB/s with 100 queries; measured in
``benchmarks/README.md``). Quantized embeddings (precision int8/uint8/binary/ubinary) are streamed alike and
judged as integers (``harness.compare.quantized``). Cross-encoder scores, one float per pair, are compared in memory.
Nothing here imports pandas either (pyarrow's ``to_numpy`` would: +0.4 s, +50 MB).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np

from harness.compare import metrics as m
from harness.compare import quantized
from harness.compare import streaming
from harness.errors import IncompatibleInputs, ResultsFileError
from harness.compare.policy import Policy, Tolerance, load_policy, select_class
from harness.results.reader import ResultsFile
from harness.compare.verdict import Check, Comparison, EnvChange, ModelVerdict, Offender, Status

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
    record = results.records.get(model_id)
    keys = ("loaded_dtype", "attn_implementation", "max_seq_length", "padding_side", "weights_sha256", "saved_versions")
    return {k: getattr(record, k) for k in keys if record is not None and getattr(record, k) is not None}


def _performance(results: ResultsFile, model_id: str) -> Dict[str, Any]:
    """Speed and memory of one side's run of one model, with the device it ran on (for the reports)."""
    record, fp, run = results.records.get(model_id), results.fingerprint, results.run
    device = str(run.device or fp.get("device") or "?")
    hardware = fp.get("gpu_name") if device.startswith("cuda") else fp.get("cpu_model")
    out = {"device": device, "hardware": hardware,
           **{k: getattr(record, k) for k in ("items_per_s", "items", "compute_s", "cuda_peak_memory_bytes")
              if record is not None and getattr(record, k) is not None}}
    if run.peak_rss_bytes is not None:
        out["peak_rss_bytes"] = run.peak_rss_bytes
    return out


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


class _Worker:
    """One thread's accumulators."""

    def __init__(self, plan: streaming.Plan, tol: Tolerance, dtype: np.dtype, queries: Optional[Tuple[np.ndarray, np.ndarray, int]]) -> None:
        self.plan = plan
        self.stats = m.DiffStats(plan.dim, dtype, plan.rows, atol=tol.atol, rtol=tol.rtol,
                                 min_cosine=tol.min_cosine, worst_n=WORST_N)
        self.topk = m.TopKStream(queries[0], queries[1], queries[2], tol.tie_tolerance) if queries else None

    def __call__(self, segment: streaming.Segment) -> None:
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # NaN/Inf rows: refused afterwards
            self._add(segment)

    def _add(self, segment: streaming.Segment) -> None:
        position, base, cand = segment
        base_sq, diff_sq = self.stats.add(position, base, cand)
        if self.topk is not None:
            docs = np.flatnonzero(self.plan.documents[position : position + len(base)])
            if len(docs) == len(base):
                self.topk.add(position + docs, base, cand, base_sq, diff_sq)
            elif len(docs):
                self.topk.add(position + docs, base[docs], cand[docs], base_sq[docs], diff_sq[docs])


def _query_rows(base: ResultsFile, cand: ResultsFile, model_id: str, plan: streaming.Plan,
                tol: Tolerance) -> Optional[Tuple[np.ndarray, np.ndarray, int]]:
    """Both sides' query vectors (candidate's in baseline order) and k, for the streamed top-k; None when the
    model has no queries or no documents."""
    n_docs = int(plan.documents.sum())
    if not len(plan.queries) or not n_docs:
        return None
    cand_q = plan.queries if plan.cand_pos is None else plan.cand_pos[plan.queries]
    return streaming.read_rows(base, model_id, plan.queries), streaming.read_rows(cand, model_id, cand_q), min(tol.topk, n_docs)


def _compare_embeddings(base: ResultsFile, cand: ResultsFile, model_id: str, tol: Tolerance) -> ModelVerdict:
    plan = streaming.plan(base, cand, model_id)
    dtype = np.result_type(base.vector_spec(model_id)[1], cand.vector_spec(model_id)[1])
    queries = _query_rows(base, cand, model_id, plan, tol)
    workers = [_Worker(plan, tol, dtype, queries) for _ in range(max(1, streaming.COMPARE_THREADS))]
    streaming.stream(base, cand, model_id, plan, workers)
    first, *others = workers
    for other in others:
        first.stats.merge(other.stats)
        if first.topk is not None and other.topk is not None:
            first.topk.merge(other.topk)
    st = first.stats
    if st.nonfinite_base:
        streaming.refuse_nonfinite(base, model_id, len(st.nonfinite_base), plan.base_ids[min(st.nonfinite_base)].as_py())
    if st.nonfinite_cand:
        cand_rows = np.asarray(st.nonfinite_cand)
        file_rows = cand_rows if plan.cand_pos is None else plan.cand_pos[cand_rows]
        first_row = int(cand_rows[np.argmin(file_rows)])
        streaming.refuse_nonfinite(cand, model_id, len(cand_rows), plan.base_ids[first_row].as_py())
    return _embedding_verdict(model_id, tol, plan, st, first.topk)


class _QuantizedWorker:
    """One thread's accumulators for quantized vectors: per-segment ``compare_quantized`` results, and the
    top-k agreement of retrieval by the quantized scores (Hamming distance for bits)."""

    def __init__(self, plan: streaming.Plan, tol: Tolerance, precision: str,
                 queries: Optional[Tuple[np.ndarray, np.ndarray, int]]) -> None:
        self.plan, self.tol, self.precision = plan, tol, precision
        self.parts: List[Dict[str, Any]] = []
        self.topk = (m.TopKStream(quantized.scoring_floats(queries[0], precision), quantized.scoring_floats(queries[1], precision),
                                  queries[2], tol.tie_tolerance) if queries else None)

    def __call__(self, segment: streaming.Segment) -> None:
        position, base, cand = segment
        self.parts.append(quantized.compare_quantized(base, cand, self.precision, self.tol.quantized(),
                                                      worst_n=WORST_N, row_offset=position))
        docs = np.flatnonzero(self.plan.documents[position : position + len(base)]) if self.topk else []
        if len(docs):
            fb = quantized.scoring_floats(base[docs], self.precision)
            fc = quantized.scoring_floats(cand[docs], self.precision)
            self.topk.add(position + docs, fb, fc, np.einsum("ij,ij->i", fb, fb), np.einsum("ij,ij->i", fc - fb, fc - fb))


def _compare_quantized(base: ResultsFile, cand: ResultsFile, model_id: str, tol: Tolerance) -> ModelVerdict:
    """Quantized embeddings are judged as integers (``harness.compare.quantized``): bits flipped or buckets moved per
    text, how many texts changed at all, and the top-k agreement of retrieval by the quantized scores."""
    precisions = [f.models[model_id].get("precision", "float32") for f in (base, cand)]
    if precisions[0] != precisions[1]:
        raise IncompatibleInputs(
            f"{cand.path}: model '{model_id}' vectors are {precisions[1]}, the baseline's {precisions[0]}: "
            "compare a quantized run only with a baseline of the same precision"
        )
    precision = precisions[0]
    expected = quantized.STORED_DTYPE[precision]
    for side in (base, cand):
        stored = side.vector_spec(model_id)[1]
        if stored != expected:
            raise ResultsFileError(f"{side.path}: model '{model_id}' is {precision} but its vectors are stored as "
                                   f"{stored} (expected {expected})")
    plan = streaming.plan(base, cand, model_id)
    queries = _query_rows(base, cand, model_id, plan, tol)
    workers = [_QuantizedWorker(plan, tol, precision, queries) for _ in range(max(1, streaming.COMPARE_THREADS))]
    streaming.stream(base, cand, model_id, plan, workers)
    parts = [part for w in workers for part in w.parts]
    result = (quantized.merge_quantized(parts, tol.quantized(), worst_n=WORST_N) if parts
              else quantized.compare_quantized(np.zeros((0, 1), np.int8), np.zeros((0, 1), np.int8), precision, tol.quantized()))
    topk = workers[0].topk
    for other in workers[1:]:
        if topk is not None and other.topk is not None:
            topk.merge(other.topk)
    limit_key = quantized.limit_key(precision)
    unit = "bits flipped" if limit_key == "max_bit_flips" else "bucket(s) moved"
    metrics: Dict[str, Any] = {"texts": plan.rows, "dim": plan.dim, **result["metrics"]}
    rows_changed = metrics["rows_changed"]
    checks = [
        Check(name=limit_key, observed=float(metrics[limit_key]), limit=float(getattr(tol, limit_key)), op="<=",
              passed=metrics[limit_key] <= getattr(tol, limit_key),
              detail=f"{rows_changed} / {plan.rows} texts changed; the most in one text: {metrics[limit_key]} {unit}"),
        Check(name="changed_fraction", observed=metrics["rows_changed_fraction"], limit=tol.max_changed_fraction,
              op="<=", passed=metrics["rows_changed_fraction"] <= tol.max_changed_fraction,
              detail=f"{rows_changed} / {plan.rows} texts differ in at least one {'bit' if limit_key == 'max_bit_flips' else 'element'}"),
    ]
    checks += _topk_checks(tol, plan, topk, metrics, quantized_scores=True)
    where = "bit(s)" if limit_key == "max_bit_flips" else "dimension(s)"
    offenders = [Offender(item_id=str(plan.base_ids[w["row"]].as_py()), value=float(w[limit_key]), metric=limit_key,
                          detail=f"{unit}; {where} {', '.join(map(str, w['dims']))}") for w in result["worst"]]
    min_passing: Dict[str, float] = {limit_key: float(metrics[limit_key]),
                                     "max_changed_fraction": metrics["rows_changed_fraction"]}
    if "topk" in metrics:
        min_passing.update(min_quantized_topk_order_agreement=metrics["topk_order_agreement"],
                           min_quantized_topk_set_agreement=metrics["topk_set_agreement"])
    return _verdict(model_id, "bi-encoder", tol, checks, metrics, offenders, min_passing)


def _topk_checks(tol: Tolerance, plan: streaming.Plan, topk: Optional[m.TopKStream], metrics: Dict[str, Any],
                 quantized_scores: bool = False) -> List[Check]:
    """Top-k retrieval agreement: metrics added to ``metrics``, the two checks returned (none without queries)."""
    if topk is None:
        return []
    order_limit, set_limit = (
        (tol.min_quantized_topk_order_agreement, tol.min_quantized_topk_set_agreement) if quantized_scores
        else (tol.min_topk_order_agreement, tol.min_topk_set_agreement)
    )
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
    return [
        _ratio_check(
            f"top{k}_order_agreement", agree.share("same_order"), order_limit,
            f"{n_q - int(agree.same_order.sum())} / {n_q} queries changed their top-{k} order (ties within {tol.tie_tolerance:g} ignored)",
        ),
        _ratio_check(
            f"top{k}_set_agreement", agree.share("same_set"), set_limit,
            f"{n_q - int(agree.same_set.sum())} / {n_q} queries changed their top-{k} set",
        ),
    ]


def _embedding_verdict(model_id: str, tol: Tolerance, plan: streaming.Plan, st: m.DiffStats,
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
    checks += _topk_checks(tol, plan, topk, metrics)
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
    streaming.refuse_id_mismatch(model_id, only_b, only_c, cand.path)
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
            if info_b.get("kind") != "bi-encoder":
                compare_model = _compare_rerank
            elif quantized.is_quantized(info_b) or quantized.is_quantized(info_c):
                compare_model = _compare_quantized
            else:
                compare_model = _compare_embeddings
            verdict = compare_model(base, cand, model_id, tol)
        verdict = dataclasses.replace(verdict, performance={"baseline": _performance(base, model_id),
                                                            "candidate": _performance(cand, model_id)})
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
