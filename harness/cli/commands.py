"""``harness run``, ``compare``, ``check`` and ``explain``: run models, judge two results files."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from harness.cli.options import add_check_options, add_compare_options, add_run_options, rerun_options, run_options
from harness.cli.outputs import OUTPUT_DESTS, check_outputs, emit_verdict
from harness.compare.reference import reference_path
from harness.errors import ExitCode, HarnessError

__all__ = ["CompareJob", "register", "execute_run", "cmd_compare", "judge"]


def run_inputs(args: argparse.Namespace) -> List[Tuple[str, Any]]:
    """The files a run reads that its outputs must never replace."""
    return [("corpus", getattr(args, "corpus", None)), ("--queries file", getattr(args, "queries", None)),
            ("config", getattr(args, "config", None)), ("registry", getattr(args, "registry", None)),
            ("policy", getattr(args, "policy", None))]


def index_inputs(args: argparse.Namespace) -> List[Tuple[str, Any]]:
    """``--index`` and ``--id-map``: inputs that no output may replace."""
    return [("--index", getattr(args, "index", None)), ("--id-map", getattr(args, "id_map", None))]


def refuse_baseline_target(out: Path) -> None:
    """A run's ``--out`` never replaces a baseline: that is ``harness baseline update``'s job (keeps the old)."""
    if not out.is_file():
        return
    from harness.results.reader import ResultsFile

    try:
        provenance = ResultsFile(out).provenance
    except HarnessError:  # not a results file (or a broken one): an ordinary output
        return
    if provenance is not None:
        raise HarnessError(f"--out {out}: is a baseline; refusing to overwrite it (write the run elsewhere, then "
                           f"'harness baseline update {out} --from RUN --reason ...' keeps the old one)")


def execute_run(args: argparse.Namespace, out: Path, wrote: bool = True) -> bool:
    """``harness run`` (and ``baseline create`` without ``--from``): the options on the command line; True when
    every model ran (without ``--record-incompatible`` a model that did not run is a ``HarnessError``)."""
    check_outputs(args, run_inputs(args), files=[("--out", out)])
    refuse_baseline_target(out)
    return _execute(run_options(args, out), args, wrote=wrote)


def _execute(options: Any, args: argparse.Namespace, prefix: str = "harness run", wrote: bool = True) -> bool:
    """Run with the progress display of ``--progress`` and report each model on stderr, so stdout carries only a
    command's result; ``wrote=False``: the file is an intermediate one."""
    import dataclasses

    from harness.cli.progress import make_listener
    from harness.run.runner import run

    listener = make_listener(getattr(args, "progress", None), sys.stderr, prefix)
    try:
        summary = run(dataclasses.replace(options, on_progress=listener))
    finally:
        if listener is not None:
            listener.close()
    weights = _weights_used(summary.path)
    for model_id, status in summary.statuses.items():
        reason = summary.reasons.get(model_id)
        used = weights.get(model_id) if status == "ok" else None
        print(f"{model_id}: {status}" + (f" ({reason})" if reason else "") + (f" [{used}]" if used else ""),
              file=sys.stderr)
    if wrote:
        print(f"wrote {summary.path}", file=sys.stderr)
    return summary.ok


def weights_line(files: Any, weights_format: Any) -> str:
    """``weights pytorch_model.bin (pickle)``: which files a model was loaded from, in which format."""
    if not files:
        return ""
    return f"weights {', '.join(files)}" + (f" ({weights_format})" if weights_format else "")


def _weights_used(path: Path) -> Dict[str, str]:
    """Model id -> ``weights_line`` of the run just written (a cache holding only ``pytorch_model.bin`` loads
    through the pickle fallback: the per-model line says so, not only "ok")."""
    from harness.results import ResultsFile

    try:
        records = ResultsFile(path).records
    except (HarnessError, OSError):  # the run's own outcome is reported elsewhere; this line is a detail
        return {}
    return {model_id: weights_line(r.weight_files, r.weights_format) for model_id, r in records.items()}


def cmd_run(args: argparse.Namespace) -> int:
    execute_run(args, args.out)
    return ExitCode.OK


@dataclasses.dataclass(frozen=True)
class CompareJob:
    """What ``compare`` and ``check`` judge, built from their options once; ``outputs`` is the namespace of the
    ``--json/--markdown/--junit`` options only (``harness.cli.outputs`` reads them)."""

    baseline: Any
    candidate: Any
    policy: Any
    tolerance_class: Optional[str]
    models: Optional[List[str]]
    allow_model_change: bool
    outputs: argparse.Namespace
    reference: Any = None  # the fp64 reference, opened and checked against the baseline (None: there is none)
    index: Any = None  # the retrieval scenarios' [index] (``index_settings``)

    @classmethod
    def of(cls, args: argparse.Namespace, baseline: Any, candidate: Any) -> CompareJob:
        """The job of ``args`` (policy and fp64 reference checked now: bad ones are refused before any run)."""
        from harness.compare.reference import reference_for
        from harness.config.policy import load_policy
        from harness.results import ResultsFile

        return cls(baseline, candidate, load_policy(args.policy), args.tolerance_class, args.models,
                   args.allow_model_change, argparse.Namespace(**{k: getattr(args, k, None) for k in OUTPUT_DESTS}),
                   reference_for(ResultsFile(baseline), args.reference), index_settings(args))


def index_settings(args: argparse.Namespace) -> Any:
    """The ``[index]`` of ``--config`` (else ./harness.toml or [tool.harness]), with ``--index`` and ``--id-map``
    over its ``file`` and ``id_map``; None when neither says anything (exact scenarios only)."""
    from harness.config.project import IndexSettings, find_config, load_project

    config = getattr(args, "config", None) or find_config()
    index = load_project(config).index if config is not None else None
    if (args.index is None) != (args.id_map is None):
        raise HarnessError("--index and --id-map go together: an index file needs its id map (JSON array of corpus ids)")
    for flag, path in (("--index", args.index), ("--id-map", args.id_map)):  # before any run: a typo costs nothing
        if path is not None and not path.is_file():
            raise HarnessError(f"{flag} {path}: no such file, or not a regular file")
    if args.index is not None:
        index = (index or IndexSettings()).model_copy(update={"file": str(args.index), "id_map": str(args.id_map)})
    return index


def cmd_compare(args: argparse.Namespace) -> int:
    check_outputs(args, [("baseline", args.baseline), ("candidate", args.candidate), ("policy", args.policy),
                         ("reference", args.reference or reference_path(args.baseline)), *index_inputs(args)])
    return judge(CompareJob.of(args, args.baseline, args.candidate))


def judge(job: CompareJob) -> int:
    """Judge ``job.candidate`` against ``job.baseline``, write the outputs asked for, print the verdict."""
    from harness.cli.compare_progress import progress_settings
    from harness.compare.comparator import compare_files
    from harness.report.text import render_comparison

    comparison = compare_files(job.baseline, job.candidate, job.policy, tolerance_class=job.tolerance_class,
                               models=job.models, allow_model_change=job.allow_model_change,
                               settings=progress_settings(), reference=job.reference, index=job.index)
    hint = (f'To accept the candidate as the new baseline: harness baseline update {job.baseline} '
            f'--from {job.candidate} --reason "..."')
    return emit_verdict(job.outputs, comparison, render_comparison(comparison, regen_hint=hint))


def cmd_check(args: argparse.Namespace) -> int:
    """Run the baseline's models here the way the baseline was made (``harness.baselines.rerun_options``),
    then compare: one command for "did my upgrade move anything?"."""
    from harness.baselines import default_check_path, locate_baseline

    baseline = locate_baseline(args.baseline, config=args.config)
    out = args.out or default_check_path()
    # everything the comparison needs is checked before the run, not after it
    check_outputs(args, [*run_inputs(args), ("baseline", baseline), *index_inputs(args),
                          ("reference", args.reference or reference_path(baseline))], files=[("--out", out)])
    refuse_baseline_target(out)
    job = CompareJob.of(args, baseline, out)
    if not _execute(rerun_options(args, baseline, out), args, prefix="harness check"):
        print("note: not every model ran cleanly; see the verdict below", file=sys.stderr)
    return judge(job)


def cmd_explain(args: argparse.Namespace) -> int:
    """List the factors that differ between two runs with their known drift, next to the observed drift."""
    from harness.compare.comparator import compare_files
    from harness.explain import explain
    from harness.report.text import render_explanation

    factors = explain(args.baseline, args.candidate)
    comparison = compare_files(args.baseline, args.candidate, allow_model_change=True)
    print(render_explanation(factors, comparison))
    return ExitCode.OK


def register(sub: Any) -> None:
    run = sub.add_parser("run", help="embed and rerank the corpus, write a results parquet file")
    add_run_options(run)
    run.add_argument("--out", type=Path, required=True, help="results file to write (atomically)")
    run.set_defaults(func=cmd_run)

    cmp_ = sub.add_parser("compare", help="compare a candidate results file with a baseline")
    # Strings, not Paths: results files may be URIs (s3://, gs://, file://) that pyarrow opens.
    cmp_.add_argument("baseline", help="baseline results file (path or URI such as s3://bucket/key.parquet)")
    cmp_.add_argument("candidate", help="candidate results file (path or URI)")
    cmp_.add_argument("--models", nargs="+", help="compare only these models")
    add_compare_options(cmp_)
    cmp_.set_defaults(func=cmd_compare)

    check = sub.add_parser(
        "check", help="run a baseline's models here (as the baseline was made) and compare",
        description="Re-run a baseline's models in this environment with the settings the baseline recorded "
                    "(models and their encode settings, device, dtype, batch size, TF32, threads, attention), "
                    "then compare. A run flag given here overrides the recorded setting.")
    check.add_argument("baseline", nargs="?", default="default-cpu-float32", help="baseline name or path; a name is looked up in the project's baselines directory, then among the shipped ones (default: %(default)s)")
    add_check_options(check)
    add_compare_options(check)
    check.add_argument("--out", type=Path, help="where to keep this run's results (default: reports/checks/check-<time>.parquet)")
    check.set_defaults(func=cmd_check)

    expl = sub.add_parser("explain", help="which environment factors differ between two runs, and their known drift")
    expl.add_argument("baseline", help="baseline results file (path or URI)")
    expl.add_argument("candidate", help="candidate results file (path or URI)")
    expl.set_defaults(func=cmd_explain)
