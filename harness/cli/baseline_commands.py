"""``harness baseline create|update|list|show|diff``: the lifecycle of reference results."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harness.cli.commands import execute_run, run_inputs
from harness.cli.options import _BATCH, _add_check_inputs, add_run_options, device
from harness.cli.outputs import add_output_options, check_outputs, emit_verdict
from harness.errors import ExitCode, HarnessError

__all__ = ["register"]


def _target(args: argparse.Namespace) -> Path:
    """The baseline a command writes: NAME in ``--dir``, else the project's baselines directory, else the shipped."""
    from harness.baselines import baseline_path, baselines_dir

    return baseline_path(args.name, baselines_dir(args.dir, getattr(args, "config", None)))


def cmd_baseline_create(args: argparse.Namespace) -> int:
    from harness.baselines import create_baseline

    target = _target(args)
    check_outputs(args, [("--from file", args.source), *run_inputs(args)], files=[("baseline", target)])
    if target.exists() and not args.force:
        from harness.errors import BaselineExists

        raise BaselineExists(f"{target}: baseline exists; refusing to overwrite (use --force to replace it, keeping the old file)")
    import tempfile

    with tempfile.TemporaryDirectory(prefix="harness-baseline-") as tmp:
        source = args.source
        if source is None:
            source = Path(tmp) / "run.parquet"
            if not execute_run(args, source, wrote=False):  # the temporary file is not what the user gets
                raise HarnessError(f"{target}: not created, the run did not finish cleanly for every model")
        prov = create_baseline(source, target, force=args.force, reason=args.reason)
    kept = f" (previous kept as {prov.previous_file})" if prov.previous_file else ""
    print(f"baseline {target} written{kept}")
    _file_certificates(target)
    return ExitCode.OK


def _file_certificates(target: Path) -> None:
    """The new baseline's top-k certificates, so that the first comparison against it is the certified one."""
    from harness.certificates import file_certificates
    from harness.cli.compare_progress import progress_settings

    try:
        _print_filed(file_certificates(target, settings=progress_settings()))
    except HarnessError as err:  # the baseline is written and complete; the first comparison will say why
        print(f"top-k certificate not filed: {err}", file=sys.stderr)


def _print_filed(filed: Any) -> None:
    for model_id, queries in filed:
        print(f"top-k certificate filed for {model_id} ({queries:,} queries)")


def cmd_baseline_update(args: argparse.Namespace) -> int:
    from harness.baselines import create_baseline

    target = _target(args)
    check_outputs(args, [("--from file", args.source)], files=[("baseline", target)])
    prov = create_baseline(args.source, target, reason=args.reason, action="update")
    print(f"baseline {target} updated (previous kept as {prov.previous_file})")
    _file_certificates(target)
    return ExitCode.OK


def cmd_baseline_reference(args: argparse.Namespace) -> int:
    """Make (or, with --force, remake) a baseline's fp64 reference beside it (``harness.baselines.make_reference``)."""
    from harness.baselines import locate_baseline, make_reference
    from harness.compare.reference import reference_path

    baseline = locate_baseline(args.name, args.dir)
    check_outputs(args, [("baseline", baseline)], files=[("reference", reference_path(baseline))])
    made = make_reference(baseline, force=args.force, device=args.device, batch_size=args.batch_size,
                          config=args.config, registry=args.registry, corpus=args.corpus)
    kept = f" (previous kept as {made.previous_file})" if made.previous_file else ""
    ratio = f", {made.duration_s / made.baseline_duration_s:.1f}x the baseline's run" if made.baseline_duration_s else ""
    print(f"reference {made.path} written in {made.duration_s:.1f} s{ratio}{kept}")
    return ExitCode.OK


def cmd_baseline_certify(args: argparse.Namespace) -> int:
    """File (or refile) a baseline's top-k certificates: the explicit step comparisons read them from."""
    from harness.baselines import locate_baseline
    from harness.certificates import file_certificates
    from harness.cli.compare_progress import progress_settings
    from harness.config.policy import load_policy

    target = locate_baseline(args.name, args.dir)
    filed = file_certificates(target, load_policy(args.policy), progress_settings())
    _print_filed(filed)
    if not filed:
        print(f"{target}: no bi-encoder large enough to need a top-k certificate")
    return ExitCode.OK


def cmd_baseline_list(args: argparse.Namespace) -> int:
    from harness.baselines import baselines_dir, list_baselines

    directory = baselines_dir(args.dir)
    rows = list_baselines(directory)
    if not rows:
        from harness import paths

        print(f"no baselines in {directory or paths.default_baseline_dir()}")
    for row in rows:
        prev = (f", {len(row.previous)} previous" if row.previous else "") + (", fp64 reference" if row.reference else "")
        print(f"{row.name:<28} {row.device or '-':<6} {row.dtype or '-':<9} {row.created_at or '-':<26} "
              f"{', '.join(row.models)}{prev}" + ("" if row.status == "ok" else f"  [{row.status}]"))
    return ExitCode.OK


def cmd_baseline_show(args: argparse.Namespace) -> int:
    from harness.baselines import locate_baseline, provenance

    print(json.dumps(provenance(locate_baseline(args.name, args.dir)), indent=2, default=str))
    return ExitCode.OK


def _provenance_line(label: str, path: Path) -> str:
    from harness.results import ResultsFile

    results = ResultsFile(path)
    prov = results.provenance
    action = (prov.action if prov is not None else None) or "run"
    when = (prov.created_at if prov is not None else None) or results.created_at or "?"
    who = f" by {prov.created_by}" if prov is not None and prov.created_by else ""
    why = f": {prov.reason}" if prov is not None and prov.reason else ""
    return f"{label} {path}: {action} {when}{who}, harness {results.harness_version or '?'}{why}"


def cmd_baseline_diff(args: argparse.Namespace) -> int:
    """Compare two baselines (A as the reference, B as the candidate): what moved, and what changed."""
    from harness.baselines import locate_baseline
    from harness.cli.compare_progress import progress_settings
    from harness.compare.comparator import compare_files
    from harness.config.policy import load_policy
    from harness.report.text import render_comparison

    first, second = locate_baseline(args.a, args.dir), locate_baseline(args.b, args.dir)
    check_outputs(args, [("baseline A", first), ("baseline B", second), ("policy", args.policy)])
    comparison = compare_files(first, second, load_policy(args.policy), tolerance_class=args.tolerance_class,
                               models=args.models, allow_model_change=args.allow_model_change,
                               label=f"baseline diff {first.stem} {second.stem}", settings=progress_settings())
    return emit_verdict(args, comparison, render_comparison(comparison).replace("harness compare:", "harness baseline diff:", 1),
                        head=[_provenance_line("A", first), _provenance_line("B", second), ""])


_DIR_HELP = ("baseline directory for names (default: the project's, when a harness.toml / [tool.harness] is in use: "
             "its 'baselines' key, relative to it, default ./baselines beside it; else the shipped fixtures/baselines)")


def register(sub: Any) -> None:
    base = sub.add_parser("baseline", help="create, update, list, show and diff baselines")
    bsub = base.add_subparsers(dest="baseline_command", required=True)
    create = bsub.add_parser("create", help="write a new baseline (refuses to overwrite without --force)")
    create.add_argument("name", help="baseline name (DIR/NAME.parquet, DIR as --dir says) or a .parquet path")
    create.add_argument("--from", dest="source", type=Path, help="promote this results file instead of running now")
    create.add_argument("--force", action="store_true", help="replace an existing baseline, keeping the old file")
    create.add_argument("--reason", help="why this baseline exists (recorded)")
    create.add_argument("--dir", type=Path, help=_DIR_HELP)
    add_run_options(create)
    create.set_defaults(func=cmd_baseline_create)
    update = bsub.add_parser("update", help="replace a baseline with a results file, keeping the old one")
    update.add_argument("name")
    update.add_argument("--from", dest="source", type=Path, required=True)
    update.add_argument("--reason", required=True)
    update.add_argument("--dir", type=Path, help=_DIR_HELP)
    update.set_defaults(func=cmd_baseline_update)
    ref = bsub.add_parser("reference", help="run a baseline's corpus and models at float64 on the CPU and store the "
                          "fp64 reference beside it (NAME.reference.parquet; refuses to overwrite without --force)")
    ref.add_argument("name", help="baseline name or .parquet path")
    ref.add_argument("--dir", type=Path, help=_DIR_HELP)
    ref.add_argument("--force", action="store_true", help="replace an existing reference, keeping the old file")
    ref.add_argument("--device", default="cpu", type=device, help="where the float64 run runs (default: cpu)")
    ref.add_argument("--batch-size", type=_BATCH, help="encode/predict batch size (default: the baseline's)")
    _add_check_inputs(ref)
    ref.set_defaults(func=cmd_baseline_reference)
    certify = bsub.add_parser("certify", help="file a baseline's top-k certificates (large retrieval comparisons)")
    certify.add_argument("name", help="baseline name or .parquet path")
    certify.add_argument("--dir", type=Path, help=_DIR_HELP)
    certify.add_argument("--policy", type=Path, help="tolerance policy TOML (its class for the baseline gives k)")
    certify.set_defaults(func=cmd_baseline_certify)
    lst = bsub.add_parser("list", help="list baselines")
    lst.add_argument("--dir", type=Path, help=_DIR_HELP)
    lst.set_defaults(func=cmd_baseline_list)
    show = bsub.add_parser("show", help="print a baseline's provenance and environment")
    show.add_argument("name")
    show.add_argument("--dir", type=Path, help=_DIR_HELP)
    show.set_defaults(func=cmd_baseline_show)
    diff = bsub.add_parser("diff", help="compare two baselines: verdict per model and environment changes (exit 0/1/2)")
    diff.add_argument("a", help="reference baseline (name or .parquet path)")
    diff.add_argument("b", help="baseline compared with it (name or .parquet path)")
    diff.add_argument("--dir", type=Path, help=_DIR_HELP)
    diff.add_argument("--policy", type=Path, help="tolerance policy TOML overlaying the defaults")
    diff.add_argument("--class", dest="tolerance_class", help="force a tolerance class (fp32, cpu-vs-cuda, tf32, ...)")
    diff.add_argument("--models", nargs="+", help="compare only these models")
    diff.add_argument("--allow-model-change", action="store_true", help="compare even if model weights differ")
    add_output_options(diff)
    diff.set_defaults(func=cmd_baseline_diff)
