"""The comparator: refuse incomparable inputs (other corpus, models or weights), then per model choose the tolerance
class and hand it to the judge (``harness.compare.judge``), then the environment changes. No torch here (the comparator must not drift
itself), nor pandas (+0.4 s, +50 MB).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from harness.compare import quantized
from harness.compare.judge import ModelPlan, judge_model
from harness.compare.reference import NO_REFERENCE, reference_for
from harness.config.environment import CompareSettings
from harness.config.policy import Policy, choose_class, load_policy
from harness.config.project import IndexSettings
from harness.errors import IncompatibleInputs, ResultsFileError
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


@dataclass(frozen=True)
class _Planned:
    """One model's comparison as the two runs' records decide it, before any vector is read: what the judge is
    given (``ModelPlan``), the precision note, the verdict of a model a side could not run, each side's speed."""

    plan: ModelPlan
    precision_note: str
    not_run: Optional[ModelVerdict]
    performance: Dict[str, SidePerformance]


def _not_run(rec_b: ModelRecord, rec_c: ModelRecord) -> Optional[Tuple[Status, str, str]]:
    """A model the candidate (or baseline) could not run is incompatible/error, never compared: the status, the
    kind that side recorded and why; None when both ran."""
    for side, rec in (("candidate", rec_c), ("baseline", rec_b)):
        if rec.status not in (None, "ok"):  # a record without a status ran (files older than the field)
            status = Status.INCOMPATIBLE if rec.status == Status.INCOMPATIBLE.value else Status.ERROR
            return status, rec.kind or "?", f"{side}: {rec.reason or rec.status}"
    return None


def _quantized_precision(base: ResultsFile, cand: ResultsFile, model_id: str) -> Optional[str]:
    """The quantized precision both files' vectors of a bi-encoder have, None for float vectors; refuses a quantized
    run against another precision, or vectors stored in another dtype than their precision's."""
    precisions = [f.records[model_id].precision or "float32" for f in (base, cand)]
    if base.records[model_id].kind != "bi-encoder" or not set(precisions) & set(quantized.PRECISIONS):
        return None
    if precisions[0] != precisions[1]:
        raise IncompatibleInputs(f"{cand.path}: model '{model_id}' vectors are {precisions[1]}, the baseline's "
                                 f"{precisions[0]}: compare a quantized run only with a baseline of the same precision")
    expected = quantized.STORED_DTYPE[precisions[0]]
    for side in (base, cand):
        stored = side.vector_spec(model_id)[1]
        if stored != expected:
            raise ResultsFileError(f"{side.path}: model '{model_id}' is {precisions[0]} but its vectors are stored as "
                                   f"{stored} (expected {expected})")
    return precisions[0]


def _plan(base: ResultsFile, cand: ResultsFile, model_id: str, policy: Policy, forced: Optional[str]) -> _Planned:
    not_run = _not_run(base.records[model_id], cand.records[model_id])
    precision = None if not_run is not None else _quantized_precision(base, cand, model_id)
    side_b, side_c = base.side(model_id), cand.side(model_id)
    cls, precision_note = choose_class(policy, side_b, side_c, forced=forced)
    tol = policy.tolerance(model_id, cls)
    plan = ModelPlan(model_id, tol, precision, policy.error_scale(model_id, tol, side_b.precision),
                     policy.judge_by == "accuracy", (side_b.served, side_c.served))
    verdict = None
    if not_run is not None:
        status, kind, reason = not_run
        verdict = ModelVerdict(model_id, kind, status, tol.name, reason=reason, tolerance=tol)
    return _Planned(plan, precision_note, verdict,
                    {"baseline": _performance(base, model_id), "candidate": _performance(cand, model_id)})


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
    planned = [_plan(base, cand, model_id, policy, tolerance_class) for model_id in model_ids]
    ref = reference_for(base, reference)
    notes += ([] if ref else [NO_REFERENCE]) + [f"{p.plan.model_id}: {p.precision_note}" for p in planned
                                                 if p.precision_note]
    verdicts: List[ModelVerdict] = []
    for p in planned:  # a model both sides ran goes to the judge, with the facts of its runs read above
        verdict = p.not_run if p.not_run is not None else judge_model(base, cand, p.plan, settings, index, ref)
        verdicts.append(dataclasses.replace(verdict, performance=p.performance, precision_change=p.precision_note))
    changes = environment_changes(base, cand, model_ids)
    return Comparison(str(base.path), str(cand.path), policy.source, verdicts, changes,
                      base.fingerprint, cand.fingerprint, dict(base.meta.get("corpus") or {}), label, notes)


def compare_files(baseline: str | os.PathLike[str], candidate: str | os.PathLike[str], policy: Optional[Policy] = None, **kwargs: Any) -> Comparison:
    """Open and compare two results files (see ``compare_results`` for the options)."""
    return compare_results(ResultsFile(baseline), ResultsFile(candidate), policy, **kwargs)
