"""The comparator: refuse incomparable inputs (other corpus, models or weights), then per model choose the tolerance
class and hand it to its kind's judge (``harness.compare.kinds``). No torch here (the comparator must not drift
itself), nor pandas (+0.4 s, +50 MB).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Iterable, List, Optional, Tuple

from harness.compare import accuracy, certify, kinds, quantized
from harness.compare.kinds.embedding import ScenarioRequest
from harness.config.environment import CompareSettings
from harness.config.policy import Policy, Tolerance, choose_class, load_policy
from harness.config.project import IndexSettings
from harness.errors import IncompatibleInputs, UnusableValues
from harness.explain import env_changes, environment_changes
from harness.results import ResultsFile
from harness.results.meta import ModelRecord
from harness.verdict import Comparison, ModelVerdict, SidePerformance, Status

__all__ = ["compare_files", "compare_results", "env_changes", "same_file_note"]

def _performance(results: ResultsFile, model_id: str) -> SidePerformance:
    """Speed and memory of one side's run of one model, with the device it ran on (for the reports)."""
    record, fp, run = results.records.get(model_id), results.fingerprint, results.run
    device = str(run.device or fp.get("device") or "?")
    hardware = fp.get("gpu_name") if device.startswith("cuda") else fp.get("cpu_model")
    return SidePerformance(device, hardware, **{k: getattr(record, k) for k in ("items_per_s", "items", "compute_s",
                           "cuda_peak_memory_bytes") if record is not None}, peak_rss_bytes=run.peak_rss_bytes)


def _check_comparable(base: ResultsFile, cand: ResultsFile, models: Optional[Iterable[str]], allow_model_change: bool) -> List[str]:
    """Refuse different corpora or model sets; return the model ids to compare."""
    bsha, csha = base.corpus_meta.sha256, cand.corpus_meta.sha256
    if bsha != csha:
        raise IncompatibleInputs(f"{cand.path}: corpus differs from baseline {base.path} ({cand.corpus_meta.name} "
                                 f"{str(csha)[:12]} vs {base.corpus_meta.name} {str(bsha)[:12]}); "
                                 "results from different corpora cannot be compared")
    bmodels, cmodels = set(base.records), set(cand.records)
    names = lambda ids: ", ".join(sorted(ids)) or "-"  # noqa: E731
    if not bmodels & cmodels:
        raise IncompatibleInputs(f"{cand.path}: no model in common with baseline {base.path} "
                                 f"(baseline: {names(bmodels)}; candidate: {names(cmodels)})")
    wanted = list(dict.fromkeys(models)) if models else sorted(bmodels)
    if not models and bmodels != cmodels:
        raise IncompatibleInputs(f"{cand.path}: different models than baseline {base.path} (only in baseline: "
                                 f"{names(bmodels - cmodels)}; only in candidate: {names(cmodels - bmodels)}); "
                                 "pass --models to compare a subset")
    for side, have in ((base, bmodels), (cand, cmodels)):  # --models: each must be on both sides
        missing = [x for x in wanted if x not in have]
        if missing:
            raise IncompatibleInputs(f"{side.path}: has no model(s) {', '.join(missing)}")
    for model_id in wanted:  # a served side has no weights hash: it is the registry model its entry names
        bw, cw = base.records[model_id].weights_sha256, cand.records[model_id].weights_sha256
        if bw and cw and bw != cw and not allow_model_change:
            raise IncompatibleInputs(f"{cand.path}: model '{model_id}' weights differ from the baseline's "
                                     f"({cw[:12]} vs {bw[:12]}); pass --allow-model-change to compare anyway")
    return wanted


def same_file_note(baseline: str | Path, candidate: str | Path) -> List[str]:
    """The note a comparison of a file with itself (one path, or two names of it) carries: it proves nothing."""
    try:
        same = os.path.samefile(str(baseline), str(candidate))
    except OSError:  # URIs, files gone since they were opened
        same = str(baseline) == str(candidate)
    if not same:
        return []
    return [f"baseline and candidate are the same file ({candidate}): it passes by construction, "
            "this comparison cannot detect drift"]


def _not_run_verdict(model_id: str, rec_b: ModelRecord, rec_c: ModelRecord, tol: Tolerance) -> Optional[ModelVerdict]:
    """A model the candidate (or baseline) could not run is incompatible/error, never compared."""
    for side, rec in (("candidate", rec_c), ("baseline", rec_b)):
        if rec.status not in (None, "ok"):  # a record without a status ran (files older than the field)
            status = Status.INCOMPATIBLE if rec.status == Status.INCOMPATIBLE.value else Status.ERROR
            return ModelVerdict(model_id, rec.kind or "?", status, tol.name,
                                reason=f"{side}: {rec.reason or rec.status}", tolerance=tol)
    return None


def _witness(verdict: ModelVerdict, tol: Tolerance) -> Optional[List[str]]:
    """The rows whose pages prove a failure: the row of the largest difference when that element is itself beyond
    its allowance (``atol + rtol * |baseline|``): a corrupted page elsewhere changes no verdict then, its bytes move
    a row less or that row would be the largest. None for any other failure (every page): with ``rtol`` the failing
    element need not be the largest difference."""
    at = verdict.evidence.max_abs
    failed = any(c.name == "max_abs_diff" for c in verdict.failed_checks)
    if failed and at is not None and at.baseline is not None and at.value > tol.atol + tol.rtol * abs(at.baseline):
        return [at.id]
    return None


def _judge(base: ResultsFile, cand: ResultsFile, model_id: str, tol: Tolerance, policy: Policy,
           settings: CompareSettings, index: Optional[IndexSettings], ref: Optional[ResultsFile], own_class: str,
           served: Tuple[bool, bool]) -> ModelVerdict:
    """The kind's judge for one model that both sides ran, with the accuracy against ``ref`` (fp64) its pass feeds
    (none for quantized vectors, judged in bits); ``own_class``, ``served``: the runs' facts, read by the caller.
    Vectors are streamed without their page checksums: verified before a difference is called drift."""
    rec_b, rec_c = base.records[model_id], cand.records[model_id]
    quantized_run = rec_b.precision in quantized.PRECISIONS or rec_c.precision in quantized.PRECISIONS
    tap = accuracy.Tap(ref, base, cand, model_id, own_class, served) if ref and not quantized_run else None
    if rec_b.kind != "bi-encoder":
        verdict = kinds.judge_rerank_files(base, cand, model_id, tol, tap)
    else:
        try:
            if quantized_run:
                precision = kinds.file_precision(base, cand, model_id)
                verdict = kinds.judge_quantized(model_id, tol, kinds.FilePair(base, cand, model_id, settings), precision)
            else:
                pair = kinds.FilePair(base, cand, model_id, settings)
                verdict = kinds.judge_embeddings(model_id, tol, pair, certificate=certify.hint(pair, tol),  # a hint
                                                 scenarios=ScenarioRequest(index, served[1]), tap=tap)
        except UnusableValues:  # non-finite or zero rows: a corrupted page is named as such
            for results in (base, cand):
                results.verify_vectors(model_id)
            raise
        if verdict.status is Status.FAIL:  # bit rot reads as a broken file (exit 2), never as drift
            witness = _witness(verdict, tol)
            for results in (base, cand):
                results.verify_vectors(model_id, witness)
    return accuracy.apply(verdict, tap, tol, policy)


def compare_results(base: ResultsFile, cand: ResultsFile, policy: Optional[Policy] = None, *,
                    tolerance_class: Optional[str] = None, models: Optional[Iterable[str]] = None,
                    allow_model_change: bool = False, label: Optional[str] = None,
                    settings: Optional[CompareSettings] = None,
                    reference: Optional[ResultsFile | str | os.PathLike[str]] = None,
                    index: Optional[IndexSettings] = None) -> Comparison:
    """Judge every shared model of two opened results files (``settings``: by default read from the environment
    now; ``reference``: by default ``NAME.reference.parquet`` beside the baseline; ``index``: the ``[index]`` the
    retrieval scenarios search through, None: exact scenarios only)."""
    policy = policy or load_policy()
    settings = settings or CompareSettings.from_environment()
    model_ids = _check_comparable(base, cand, models, allow_model_change)
    notes = same_file_note(base.path, cand.path)
    ref = accuracy.find(base, reference)
    notes += [] if ref else [accuracy.NO_REFERENCE]
    verdicts: List[ModelVerdict] = []
    sides = (("baseline", base), ("candidate", cand))
    for model_id in model_ids:  # the facts of the model's two runs, read once, handed down
        side_b, side_c = base.side(model_id), cand.side(model_id)
        cls, precision_note = choose_class(policy, side_b, side_c, forced=tolerance_class)
        own_class, served = side_b.precision, (side_b.served, side_c.served)
        notes += [f"{model_id}: {precision_note}"] if precision_note else []
        tol = policy.tolerance(model_id, cls)
        verdict = _not_run_verdict(model_id, base.records[model_id], cand.records[model_id], tol)
        if verdict is None:
            verdict = _judge(base, cand, model_id, tol, policy, settings, index, ref, own_class, served)
        verdicts.append(dataclasses.replace(verdict, performance={side: _performance(f, model_id) for side, f in sides},
                                            precision_change=precision_note))
    changes = environment_changes(base, cand, model_ids)
    return Comparison(str(base.path), str(cand.path), policy.source, verdicts, changes,
                      base.fingerprint, cand.fingerprint, dict(base.meta.get("corpus") or {}), label, notes)


def compare_files(baseline: str | os.PathLike[str], candidate: str | os.PathLike[str], policy: Optional[Policy] = None, **kwargs: Any) -> Comparison:
    """Open and compare two results files (see ``compare_results`` for the options)."""
    return compare_results(ResultsFile(baseline), ResultsFile(candidate), policy, **kwargs)
