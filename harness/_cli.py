"""The ``harness`` command line: parses arguments, calls the library, prints, and maps errors to exit codes.

Only this module prints or exits. Heavy imports (torch, sentence-transformers) happen inside the commands
that need them, so ``harness compare`` starts fast and works where torch is not installed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from harness import __version__
from harness.errors import ExitCode, HarnessError

__all__ = ["main", "entrypoint"]


def _tf32(value: str) -> Optional[bool]:
    return {"on": True, "off": False, "default": None}[value]


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    from harness.corpus import DEFAULT_CORPUS_DIR

    parser.add_argument("--models", "--model", nargs="+", metavar="ID", help="model ids, set names or model directories (default: the registry's 'default' set, or every model of the project config)")
    parser.add_argument("--registry", type=Path, help="model registry TOML (default: fixtures/models/registry.toml)")
    parser.add_argument("--config", type=Path, help="project config: your models, encode settings and corpus (default: ./harness.toml, or [tool.harness] in ./pyproject.toml)")
    parser.add_argument("--corpus", type=Path, help=f"corpus directory, data file (.jsonl/.csv/.tsv/.parquet with id,text: documents only) or TOML with a [corpus] table (default: the config's [corpus], else {DEFAULT_CORPUS_DIR})")
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda|cuda:N|mps (default: auto)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--tf32", choices=["on", "off", "default"], default="default", help="pin TF32 matmul/cuDNN (default: leave torch's default)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    parser.add_argument("--attn-implementation", help="eager|sdpa|flash_attention_2 (sentence-transformers >= 3)")
    parser.add_argument("--allow-network", action="store_true", help="allow downloading models not in the local cache")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow models that ship their own code")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bars (default: when stderr is a terminal)")
    parser.add_argument("--cell-id", help="matrix cell id recorded in the results")


def _add_compare_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", type=Path, help="tolerance policy TOML overlaying the defaults")
    parser.add_argument("--class", dest="tolerance_class", help="force a tolerance class (fp32, tf32, fp16, bf16, ...)")
    parser.add_argument("--allow-model-change", action="store_true", help="compare even if model weights differ")
    parser.add_argument("--json", type=Path, help="also write the full verdict as JSON")


def _run_options(args: argparse.Namespace, out: Path):  # noqa: ANN202 - RunOptions imported lazily
    from harness.project import run_inputs
    from harness.runner import RunOptions

    registry, corpus, _ = run_inputs(args.config, args.registry, args.corpus)
    return RunOptions(
        out=out,
        corpus_dir=corpus,
        registry=registry,
        models=args.models,
        device=args.device,
        dtype=args.dtype,
        batch_size=args.batch_size,
        tf32=_tf32(args.tf32),
        threads=args.threads,
        attn_implementation=args.attn_implementation,
        allow_network=args.allow_network,
        trust_remote_code=args.trust_remote_code,
        progress=sys.stderr.isatty() if args.progress is None else args.progress,
        cell_id=args.cell_id,
    )


def _execute_run(args: argparse.Namespace, out: Path) -> int:
    from harness.runner import run

    summary = run(_run_options(args, out))
    for model_id, status in summary.statuses.items():
        reason = summary.reasons.get(model_id)
        print(f"{model_id}: {status}" + (f" ({reason})" if reason else ""), file=sys.stderr)
    print(f"wrote {summary.path}")
    return ExitCode.OK if summary.ok else ExitCode.BAD_INPUT


def cmd_run(args: argparse.Namespace) -> int:
    return _execute_run(args, args.out)


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.comparator import compare_files
    from harness.policy import load_policy
    from harness.report.text import render_comparison

    comparison = compare_files(
        args.baseline,
        args.candidate,
        load_policy(args.policy),
        tolerance_class=args.tolerance_class,
        models=args.models,
        allow_model_change=args.allow_model_change,
    )
    data = comparison.serialize()
    if args.json:
        from harness.results import atomic_output

        with atomic_output(args.json) as tmp:
            tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    hint = (
        f'To accept the candidate as the new baseline: harness baseline update {args.baseline} '
        f'--from {args.candidate} --reason "..."'
    )
    print(render_comparison(data, regen_hint=hint))
    return ExitCode.OK if comparison else ExitCode.DRIFT


def cmd_check(args: argparse.Namespace) -> int:
    """Run the baseline's models here with the baseline's options, then compare (one command)."""
    from harness.baseline import baseline_path
    from harness.check import default_check_path, options_from_baseline
    from harness.results import ResultsFile

    baseline = ResultsFile(baseline_path(args.baseline))
    recorded = options_from_baseline(baseline, device=None if args.device == "auto" else args.device)
    for key, value in recorded.items():
        if key == "device" and args.device != "auto":
            continue
        setattr(args, key, value)
    out = args.out or default_check_path()
    code = _execute_run(args, out)
    if code != ExitCode.OK:
        print("note: not every model ran cleanly; see the verdict below", file=sys.stderr)
    args.candidate, args.baseline = out, baseline.path
    return cmd_compare(args)


def cmd_explain(args: argparse.Namespace) -> int:
    """List the factors that differ between two runs with their known drift, next to the observed drift."""
    from harness.comparator import compare_files
    from harness.explain import explain
    from harness.report.text import render_explanation

    factors = explain(args.baseline, args.candidate)
    comparison = compare_files(args.baseline, args.candidate, allow_model_change=True)
    print(render_explanation(factors, comparison.serialize()))
    return ExitCode.OK


def cmd_baseline_create(args: argparse.Namespace) -> int:
    from harness.baseline import baseline_path, create_baseline

    target = baseline_path(args.name, args.dir)
    if target.exists() and not args.force:
        from harness.errors import BaselineExists

        raise BaselineExists(f"{target}: baseline exists; refusing to overwrite (use --force to replace it, keeping the old file)")
    source = args.source
    if source is None:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="harness-baseline-") as tmp:
            source = Path(tmp) / "run.parquet"
            code = _execute_run(args, source)
            if code != ExitCode.OK:
                raise HarnessError(f"{target}: not created, the run did not finish cleanly for every model")
            prov = create_baseline(source, target, force=args.force, reason=args.reason)
    else:
        prov = create_baseline(source, target, force=args.force, reason=args.reason)
    kept = f" (previous kept as {prov['previous_file']})" if prov.get("previous_file") else ""
    print(f"baseline {target} written{kept}")
    return ExitCode.OK


def cmd_baseline_update(args: argparse.Namespace) -> int:
    from harness.baseline import baseline_path, create_baseline

    target = baseline_path(args.name, args.dir)
    prov = create_baseline(args.source, target, reason=args.reason, action="update")
    print(f"baseline {target} updated (previous kept as {prov['previous_file']})")
    return ExitCode.OK


def cmd_baseline_list(args: argparse.Namespace) -> int:
    from harness.baseline import list_baselines

    rows = list_baselines(args.dir)
    if not rows:
        print(f"no baselines in {args.dir or 'fixtures/baselines'}")
    for row in rows:
        prev = f", {len(row['previous'])} previous" if row["previous"] else ""
        print(f"{row['name']:<28} {row['device'] or '-':<6} {row['dtype'] or '-':<9} {row['created_at'] or '-':<26} "
              f"{', '.join(row['models'])}{prev}" + ("" if row["status"] == "ok" else f"  [{row['status']}]"))
    return ExitCode.OK


def cmd_baseline_show(args: argparse.Namespace) -> int:
    from harness.baseline import baseline_path, provenance

    print(json.dumps(provenance(baseline_path(args.name, args.dir)), indent=2, default=str))
    return ExitCode.OK


def _provenance_line(label: str, path: Path) -> str:
    from harness.results import ResultsFile

    meta = ResultsFile(path).meta
    prov = meta.get("baseline", {})
    when = prov.get("created_at") or meta.get("created_at") or "?"
    who = f" by {prov['created_by']}" if prov.get("created_by") else ""
    why = f": {prov['reason']}" if prov.get("reason") else ""
    return f"{label} {path}: {prov.get('action', 'run')} {when}{who}, harness {meta.get('harness_version', '?')}{why}"


def cmd_baseline_diff(args: argparse.Namespace) -> int:
    """Compare two baselines (A as the reference, B as the candidate): what moved, and what changed."""
    from harness.baseline import baseline_path
    from harness.comparator import compare_files
    from harness.errors import BaselineMissing
    from harness.policy import load_policy
    from harness.report.text import render_comparison

    first, second = baseline_path(args.a, args.dir), baseline_path(args.b, args.dir)
    for path in (first, second):
        if not path.is_file():
            raise BaselineMissing(f"{path}: no such baseline")
    comparison = compare_files(
        first,
        second,
        load_policy(args.policy),
        tolerance_class=args.tolerance_class,
        models=args.models,
        allow_model_change=args.allow_model_change,
        label=f"baseline diff {first.stem} {second.stem}",
    )
    data = comparison.serialize()
    if args.json:
        from harness.lock import locked_output

        with locked_output(args.json) as tmp:
            tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    print(_provenance_line("A", first))
    print(_provenance_line("B", second))
    print()
    print(render_comparison(data).replace("harness compare:", "harness baseline diff:", 1))
    return ExitCode.OK if comparison else ExitCode.DRIFT


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description="Embedding and reranking consistency harness.")
    parser.add_argument("--version", action="version", version=f"embedding-harness {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="embed and rerank the corpus, write a results parquet file")
    _add_run_options(run)
    run.add_argument("--out", type=Path, required=True, help="results file to write (atomically)")
    run.set_defaults(func=cmd_run)

    cmp_ = sub.add_parser("compare", help="compare a candidate results file with a baseline")
    # Strings, not Paths: results files may be URIs (s3://, gs://, file://) that pyarrow opens.
    cmp_.add_argument("baseline", help="baseline results file (path or URI such as s3://bucket/key.parquet)")
    cmp_.add_argument("candidate", help="candidate results file (path or URI)")
    cmp_.add_argument("--models", nargs="+", help="compare only these models")
    _add_compare_options(cmp_)
    cmp_.set_defaults(func=cmd_compare)

    check = sub.add_parser("check", help="run a baseline's models here (as the baseline was made) and compare")
    check.add_argument("baseline", nargs="?", default="default-cpu-float32", help="baseline name or path (default: %(default)s)")
    _add_run_options(check)
    _add_compare_options(check)
    check.add_argument("--out", type=Path, help="where to keep this run's results (default: reports/checks/check-<time>.parquet)")
    check.set_defaults(func=cmd_check)

    expl = sub.add_parser("explain", help="which environment factors differ between two runs, and their known drift")
    expl.add_argument("baseline", help="baseline results file (path or URI)")
    expl.add_argument("candidate", help="candidate results file (path or URI)")
    expl.set_defaults(func=cmd_explain)

    base = sub.add_parser("baseline", help="create, update, list, show and diff baselines")
    bsub = base.add_subparsers(dest="baseline_command", required=True)
    create = bsub.add_parser("create", help="write a new baseline (refuses to overwrite without --force)")
    create.add_argument("name", help="baseline name (fixtures/baselines/NAME.parquet) or a .parquet path")
    create.add_argument("--from", dest="source", type=Path, help="promote this results file instead of running now")
    create.add_argument("--force", action="store_true", help="replace an existing baseline, keeping the old file")
    create.add_argument("--reason", help="why this baseline exists (recorded)")
    create.add_argument("--dir", type=Path, help="baseline directory (default: fixtures/baselines)")
    _add_run_options(create)
    create.set_defaults(func=cmd_baseline_create)
    update = bsub.add_parser("update", help="replace a baseline with a results file, keeping the old one")
    update.add_argument("name")
    update.add_argument("--from", dest="source", type=Path, required=True)
    update.add_argument("--reason", required=True)
    update.add_argument("--dir", type=Path)
    update.set_defaults(func=cmd_baseline_update)
    lst = bsub.add_parser("list", help="list baselines")
    lst.add_argument("--dir", type=Path)
    lst.set_defaults(func=cmd_baseline_list)
    show = bsub.add_parser("show", help="print a baseline's provenance and environment")
    show.add_argument("name")
    show.add_argument("--dir", type=Path)
    show.set_defaults(func=cmd_baseline_show)
    diff = bsub.add_parser("diff", help="compare two baselines: verdict per model and environment changes (exit 0/1/2)")
    diff.add_argument("a", help="reference baseline (name or .parquet path)")
    diff.add_argument("b", help="baseline compared with it (name or .parquet path)")
    diff.add_argument("--dir", type=Path, help="baseline directory for names (default: fixtures/baselines)")
    diff.add_argument("--policy", type=Path, help="tolerance policy TOML overlaying the defaults")
    diff.add_argument("--class", dest="tolerance_class", help="force a tolerance class (fp32, cpu-vs-cuda, tf32, ...)")
    diff.add_argument("--models", nargs="+", help="compare only these models")
    diff.add_argument("--allow-model-change", action="store_true", help="compare even if model weights differ")
    diff.add_argument("--json", type=Path, help="also write the full verdict as JSON")
    diff.set_defaults(func=cmd_baseline_diff)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI; returns the exit code (0 pass, 1 drift, 2 bad input, 130 interrupted)."""
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED


def entrypoint() -> None:
    sys.exit(main(sys.argv[1:]))
