"""Options shared by the commands that run models and the commands that compare."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from harness.cli.outputs import add_output_options

if TYPE_CHECKING:  # imported lazily at run time (torch-free CLI start)
    from harness.run.runner import RunOptions


__all__ = ["add_run_options", "add_check_options", "add_compare_options", "run_options", "rerun_options", "pin_cpu_isa"]


_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d{1,3})?")


def device(value: str) -> str:
    """``--device``: checked when the command line is read, long before a model loads."""
    if not _DEVICE.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a device (auto, cpu, cuda, cuda:N, mps)")
    return value


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """An argparse type for a whole number in ``[low, high]``."""
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range ({low} to {high})")
        return number

    parse.__name__ = "whole number"
    return parse


_BATCH = whole_number(1, 1_000_000)
_THREADS = whole_number(1, 4096)


def _tf32(value: str) -> Optional[bool]:
    return {"on": True, "off": False, "default": None}[value]


def _add_inputs(parser: argparse.ArgumentParser) -> None:
    """Where models and the corpus are found (``harness run``)."""
    parser.add_argument("--registry", type=Path, help="model registry TOML (default: the shipped fixtures/models/registry.toml)")
    parser.add_argument("--config", type=Path, help="project config: your models, encode settings and corpus (default: ./harness.toml, or [tool.harness] in ./pyproject.toml)")
    parser.add_argument("--corpus", type=Path, help="corpus directory, data file (.jsonl/.csv/.tsv/.parquet with id,text; "
                        "queries: a role=query column or --queries FILE) or TOML with a [corpus] table "
                        "(default: the config's [corpus], else the shipped fixtures/corpus)")
    parser.add_argument("--queries", type=Path, help="queries for a --corpus data file (id,text), so retrieval top-k is judged too")


def _add_check_inputs(parser: argparse.ArgumentParser) -> None:
    """Where the baseline's models and corpus are found on this machine (``harness check``)."""
    parser.add_argument("--registry", type=Path, help="model registry TOML that locates the baseline's models here "
                        "(default: the shipped one; models it lacks are rebuilt from the baseline's record)")
    parser.add_argument("--config", type=Path, help="project config the baseline was made with "
                        "(default: ./harness.toml, or [tool.harness] in ./pyproject.toml)")
    parser.add_argument("--corpus", type=Path, help="where the baseline's corpus lies here (default: the config's "
                        "[corpus], else the shipped fixtures/corpus); another corpus is refused before anything runs")


def _timeout(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not 0 < seconds <= 3600:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 3600 seconds, not {value!r}")
    return seconds


def _add_timeout(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--timeout", type=_timeout, metavar="SECONDS",
                        help="served models (backend = \"http\"): wall-clock deadline of each request, body included "
                             f"({default}); the per-run deadline follows: 60 x SECONDS, at least 600 s, unless the "
                             "http table sets run_timeout_s")


def _add_consent(parser: argparse.ArgumentParser) -> None:
    """Opt-ins that no recorded run switches on by itself, and how the run looks."""
    parser.add_argument("--allow-network", action="store_true", help="allow downloading models not in the local cache")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow models that ship their own code")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="--progress: progress bars; --no-progress: none (default: bars on a terminal, else one line per model start/finish with elapsed time)")
    parser.add_argument("--cell-id", help="matrix cell id recorded in the results")
    parser.add_argument("--cpu-isa", choices=["default", "avx2", "avx512"],
                        help="pin ATen, oneDNN and MKL kernels to this x86 instruction set (sets ATEN_CPU_CAPABILITY, "
                             "ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS for the run; recorded in the fingerprint): "
                             "reproduces a baseline machine's kernel dispatch on this one")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", "--model", nargs="+", metavar="ID", help="model ids, set names, model directories, hub ids ORG/NAME (from the local Hugging Face cache; --allow-network to download) or served models http://HOST:PORT[/PREFIX]/MODEL (default: the registry's 'default' set, or every model of the project config)")
    parser.add_argument("--model-id", metavar="NAME", help="record the one --model DIR under this id (default: the "
                        "registry id when DIR is a registry model's files, else the directory's name)")
    parser.add_argument("--api", default="openai", choices=["openai", "infinity", "tei", "cohere"], help="wire format of --model http://... (default: openai)")
    _add_inputs(parser)
    parser.add_argument("--device", default="auto", type=device, help="auto|cpu|cuda|cuda:N|mps (default: auto)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16", "float64"],
                        help="torch dtype of the weights; float64: an fp64 reference run (CPU, about 3-4x fp32's time)")
    parser.add_argument("--batch-size", type=_BATCH, default=32)
    parser.add_argument("--tf32", choices=["on", "off", "default"], default="default", help="pin TF32 matmul/cuDNN (default: leave torch's default)")
    parser.add_argument("--threads", type=_THREADS, help="torch.set_num_threads")
    parser.add_argument("--attn-implementation", help="eager|sdpa|flash_attention_2 (sentence-transformers >= 3)")
    _add_timeout(parser, "default: the http table's timeout_s, else 20")
    _add_consent(parser)
    parser.add_argument("--record-incompatible", action="store_true",
                        help="a model that cannot run here is recorded in the results as incompatible (exit 0) instead "
                             "of failing the run with nothing written (exit 2); matrix cells use it")


def add_check_options(parser: argparse.ArgumentParser) -> None:
    """``harness check``: every run setting defaults to what the baseline recorded; a flag given overrides it."""
    recorded = "default: as the baseline recorded"
    parser.add_argument("--models", "--model", nargs="+", metavar="ID", help="check only these of the baseline's models (default: all of them)")
    _add_check_inputs(parser)
    parser.add_argument("--device", type=device, help=f"auto|cpu|cuda|cuda:N|mps ({recorded}; e.g. cuda against a CPU baseline)")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], help=f"torch dtype of the weights ({recorded})")
    parser.add_argument("--batch-size", type=_BATCH, help=f"encode/predict batch size ({recorded})")
    parser.add_argument("--tf32", choices=["on", "off", "default"], help=f"pin TF32 matmul/cuDNN ({recorded})")
    parser.add_argument("--threads", type=_THREADS, help=f"torch.set_num_threads ({recorded})")
    parser.add_argument("--attn-implementation", help=f"eager|sdpa|flash_attention_2 ({recorded})")
    _add_timeout(parser, recorded)
    _add_consent(parser)

def add_compare_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", type=Path, help="tolerance policy TOML overlaying the defaults")
    parser.add_argument("--class", dest="tolerance_class", help="force a tolerance class (fp32, tf32, fp16, bf16, ...)")
    parser.add_argument("--allow-model-change", action="store_true", help="compare even if model weights differ")
    parser.add_argument("--reference", type=Path, metavar="PATH",
                        help="fp64 reference of the baseline (default: NAME.reference.parquet beside it, when there is one)")
    parser.add_argument("--index", type=Path, metavar="PATH", help="your FAISS index file of the baseline's documents: "
                        "the retrieval scenarios search it with the candidate's queries (needs --id-map; other "
                        "[index] settings from ./harness.toml or [tool.harness])")
    parser.add_argument("--id-map", type=Path, metavar="PATH", help="JSON array of corpus ids, one per --index position")
    add_output_options(parser)


def pin_cpu_isa(args: argparse.Namespace) -> None:
    """Set the kernel-pinning variables of ``--cpu-isa`` before torch loads (they are read once, at import)."""
    level = getattr(args, "cpu_isa", None)
    if not level:
        return
    from harness.errors import HarnessError
    from harness.hardware import isa_env

    if "torch" in sys.modules:
        raise HarnessError("--cpu-isa: torch is already imported in this process, so its kernels are chosen; "
                           "set ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA and MKL_ENABLE_INSTRUCTIONS before starting it")
    os.environ.update(isa_env(level))


def _progress(args: argparse.Namespace) -> bool:
    return sys.stderr.isatty() if args.progress is None else args.progress


def run_options(args: argparse.Namespace, out: Path) -> RunOptions:
    from harness.config.project import run_inputs
    from harness.config.served import with_served_urls, with_timeout
    from harness.run.resolve import with_hub_ids
    from harness.run.runner import RunOptions

    pin_cpu_isa(args)
    corpus: Any  # a path, or with --queries the DataFiles pair
    registry, corpus, _ = run_inputs(args.config, args.registry, args.corpus)
    registry, models = with_served_urls(registry, args.models, getattr(args, "api", "openai"))
    registry, models = with_hub_ids(registry, models, getattr(args, "allow_network", False))
    registry = with_timeout(registry, getattr(args, "timeout", None))
    if getattr(args, "model_id", None):
        registry, models = registry.with_model_id(models, args.model_id)
    if getattr(args, "queries", None):
        from harness.config.corpus.user import DataFiles

        corpus = DataFiles(Path(corpus), args.queries)
    return RunOptions(out=out, corpus_dir=corpus, registry=registry, models=models, device=args.device,
                      dtype=args.dtype, batch_size=args.batch_size, tf32=_tf32(args.tf32), threads=args.threads,
                      attn_implementation=args.attn_implementation, allow_network=args.allow_network,
                      trust_remote_code=args.trust_remote_code, progress=_progress(args), cell_id=args.cell_id,
                      record_incompatible=args.record_incompatible)


def rerun_options(args: argparse.Namespace, baseline: Path, out: Path) -> RunOptions:
    """``harness check``: the baseline's own run (``harness.baselines.rerun_options``), plus the flags given."""
    import dataclasses

    from harness.baselines import rerun_options as recorded

    pin_cpu_isa(args)
    options = recorded(baseline, out, device=args.device, models=args.models, config=args.config,
                       registry=args.registry, corpus=args.corpus)
    explicit = {"dtype": args.dtype, "batch_size": args.batch_size, "threads": args.threads,
                "attn_implementation": args.attn_implementation}
    overrides = {k: v for k, v in explicit.items() if v is not None}
    if args.tf32 is not None:
        overrides["tf32"] = _tf32(args.tf32)
    from harness.config.served import with_timeout

    overrides["registry"] = with_timeout(options.registry, getattr(args, "timeout", None))
    return dataclasses.replace(options, **overrides, allow_network=args.allow_network,
                               trust_remote_code=args.trust_remote_code, progress=_progress(args), cell_id=args.cell_id,
                               record_incompatible=True)  # a model that no longer runs here is the check's finding

