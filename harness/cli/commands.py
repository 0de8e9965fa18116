"""``harness run``, ``compare``, ``check`` and ``explain``: run models, judge two results files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harness.cli.options import add_check_options, add_compare_options, add_run_options, rerun_options, run_options
from harness.errors import ExitCode
from harness.cli.outputs import check_outputs, human_stream, write_outputs

__all__ = ["register", "execute_run", "cmd_compare"]


def execute_run(args: argparse.Namespace, out: Path) -> int:
    """``harness run`` (and ``baseline create`` without ``--from``): the options on the command line."""
    return _execute(run_options(args, out), args)


def _execute(options: Any, args: argparse.Namespace, prefix: str = "harness run") -> int:
    """Run with the progress display of ``--progress`` (``harness.cli.progress``) and report each model."""
    import dataclasses

    from harness.cli.progress import make_listener
    from harness.run.runner import run

    listener = make_listener(getattr(args, "progress", None), sys.stderr, prefix)
    try:
        summary = run(dataclasses.replace(options, on_progress=listener))
    finally:
        if listener is not None:
            listener.close()
    for model_id, status in summary.statuses.items():
        reason = summary.reasons.get(model_id)
        print(f"{model_id}: {status}" + (f" ({reason})" if reason else ""), file=sys.stderr)
    print(f"wrote {summary.path}", file=human_stream(args))
    return ExitCode.OK if summary.ok else ExitCode.BAD_INPUT


def cmd_run(args: argparse.Namespace) -> int:
    return execute_run(args, args.out)


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.cli.compare_progress import showing_progress
    from harness.compare.comparator import compare_files
    from harness.compare.policy import load_policy
    from harness.report.text import render_comparison

    check_outputs(args)
    with showing_progress():
        comparison = compare_files(
            args.baseline,
            args.candidate,
            load_policy(args.policy),
            tolerance_class=args.tolerance_class,
            models=args.models,
            allow_model_change=args.allow_model_change,
        )
    data = comparison.serialize()
    write_outputs(args, data, comparison.status)
    hint = (
        f'To accept the candidate as the new baseline: harness baseline update {args.baseline} '
        f'--from {args.candidate} --reason "..."'
    )
    human = human_stream(args)
    print(render_comparison(data, regen_hint=hint), file=human)
    for note in data.get("notes", []):  # the verdict's own notes (a file compared with itself)
        print(f"note: {note}", file=human)
    return ExitCode.OK if comparison else ExitCode.DRIFT


def cmd_check(args: argparse.Namespace) -> int:
    """Run the baseline's models here the way the baseline was made (``harness.baselines.rerun_options``),
    then compare: one command for "did my upgrade move anything?"."""
    from harness.baselines import default_check_path, find_baseline

    baseline = find_baseline(args.baseline)
    out = args.out or default_check_path()
    check_outputs(args)
    code = _execute(rerun_options(args, baseline, out), args, prefix="harness check")
    if code != ExitCode.OK:
        print("note: not every model ran cleanly; see the verdict below", file=sys.stderr)
    args.candidate, args.baseline = out, baseline
    return cmd_compare(args)


def cmd_explain(args: argparse.Namespace) -> int:
    """List the factors that differ between two runs with their known drift, next to the observed drift."""
    from harness.compare.comparator import compare_files
    from harness.compare.explain import explain
    from harness.report.text import render_explanation

    factors = explain(args.baseline, args.candidate)
    comparison = compare_files(args.baseline, args.candidate, allow_model_change=True)
    print(render_explanation(factors, comparison.serialize()))
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
    check.add_argument("baseline", nargs="?", default="default-cpu-float32", help="baseline name or path (default: %(default)s)")
    add_check_options(check)
    add_compare_options(check)
    check.add_argument("--out", type=Path, help="where to keep this run's results (default: reports/checks/check-<time>.parquet)")
    check.set_defaults(func=cmd_check)

    expl = sub.add_parser("explain", help="which environment factors differ between two runs, and their known drift")
    expl.add_argument("baseline", help="baseline results file (path or URI)")
    expl.add_argument("candidate", help="candidate results file (path or URI)")
    expl.set_defaults(func=cmd_explain)
