"""Runner overhead: ``harness run`` against a bare script doing the same ``encode``/``predict`` calls.

    python benchmarks/bench_runner_overhead.py                      # tiny and default model sets, 3 rounds
    python benchmarks/bench_runner_overhead.py --sets default --repeat 5 --threads 2

Both sides run in fresh subprocesses of the same interpreter, with the same environment, the same torch
thread count (``--threads``; the harness gets ``--threads``, the bare script ``torch.set_num_threads``), device
cpu, float32, the same batch size and the same texts (the default corpus: documents and queries in two
``encode`` calls, every rerank pair in one ``predict``, as the runner does). Both include interpreter start,
imports and model loading; the harness also reads and hashes the corpus, hashes the weights, collects the
environment fingerprint and writes the results parquet file. Rounds alternate harness/bare (so drift in
machine load hits both), and the medians are compared: overhead = harness / bare - 1 (target < 5%).
``--profile`` also writes a cProfile of one harness run per set next to a printed summary of its top entries.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.05

BARE = r'''
import json, sys, time
started = time.perf_counter()
spec = json.loads(sys.argv[1])
import torch
torch.set_num_threads(spec["threads"])
from sentence_transformers import CrossEncoder, SentenceTransformer

def lines(name):
    with open(f"{spec['corpus']}/{name}", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]

documents, queries, pairs = lines("documents.jsonl"), lines("queries.jsonl"), lines("rerank.jsonl")
texts = {t["id"]: t["text"] for t in documents + queries}
for kind, directory in spec["models"]:
    if kind == "bi-encoder":
        model = SentenceTransformer(directory, device="cpu", local_files_only=True)
        for part in (documents, queries):
            model.encode([t["text"] for t in part], batch_size=spec["batch_size"], convert_to_tensor=True)
    else:
        model = CrossEncoder(directory, device="cpu", local_files_only=True)
        model.predict([(texts[p["query_id"]], texts[p["passage_id"]]) for p in pairs],
                      batch_size=spec["batch_size"], convert_to_tensor=True)
print(json.dumps({"inner_s": time.perf_counter() - started}))
'''


def _models(model_set: str) -> List[Tuple[str, str]]:
    from harness.config.registry import load_registry
    from harness.run.resolve import resolve_model_dir

    registry = load_registry()
    return [(spec.kind, str(resolve_model_dir(spec, allow_network=False)[0])) for spec in registry.select([model_set])]


def _env() -> Dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("HARNESS_COMPARE_THREADS", None)
    return env


def _timed(cmd: List[str]) -> Tuple[float, float]:
    """Wall and CPU (user + system, all threads) seconds of one child process."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=ROOT)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed:\n{done.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run_set(model_set: str, args: argparse.Namespace, out: Path) -> Dict[str, object]:
    from harness.config.corpus import DEFAULT_CORPUS_DIR

    spec = {"threads": args.threads, "batch_size": args.batch_size, "corpus": str(DEFAULT_CORPUS_DIR),
            "models": _models(model_set)}
    harness_cmd = [sys.executable, "-m", "harness", "run", "--models", model_set, "--device", "cpu",
                   "--dtype", "float32", "--batch-size", str(args.batch_size), "--threads", str(args.threads),
                   "--no-progress", "--out", str(out / f"{model_set}.parquet")]
    bare_cmd = [sys.executable, "-c", BARE, json.dumps(spec)]
    _timed(bare_cmd)  # warm the page cache (weights, libraries) for both sides
    _timed(harness_cmd)
    times: Dict[str, List[float]] = {"harness": [], "bare": []}
    cpu: Dict[str, List[float]] = {"harness": [], "bare": []}
    for _ in range(args.repeat):
        for side, cmd in (("harness", harness_cmd), ("bare", bare_cmd)):
            wall, used = _timed(cmd)
            times[side].append(wall)
            cpu[side].append(used)
    h, b = statistics.median(times["harness"]), statistics.median(times["bare"])
    hc, bc = statistics.median(cpu["harness"]), statistics.median(cpu["bare"])
    result = {"set": model_set, "harness_s": times["harness"], "bare_s": times["bare"], "harness_median": h,
              "bare_median": b, "overhead": h / b - 1, "overhead_min": min(times["harness"]) / min(times["bare"]) - 1,
              "harness_cpu": hc, "bare_cpu": bc, "overhead_cpu": hc / bc - 1}
    if args.profile:
        prof = out / f"{model_set}.prof"
        subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "harness", *harness_cmd[3:]],
                       capture_output=True, env=_env(), cwd=ROOT, check=True)
        result["profile"] = str(prof)
    return result


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=["tiny", "default"], help="registry model sets")
    parser.add_argument("--repeat", type=int, default=3, help="alternating rounds per set (median)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on both sides")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--profile", action="store_true", help="also cProfile one harness run per set")
    args = parser.parse_args(argv)
    print(f"# {os.cpu_count()} CPUs, torch threads {args.threads}, batch size {args.batch_size}, "
          f"{args.repeat} alternating rounds, medians")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# load average {load:.1f}; overhead = median harness / median bare - 1 (wall); also from the fastest "
          "round of each (min) and from median CPU seconds (user + system)")
    header = (f"{'set':<8} {'harness s':>10} {'bare s':>8} {'overhead':>9} {'/ 5%':>6} {'min':>7} {'CPU':>7}  "
              "rounds wall s (harness | bare)")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="harness-overhead-") as tmp:
        for model_set in args.sets:
            r = run_set(model_set, args, Path(tmp))
            rounds = " ".join(f"{x:.2f}" for x in r["harness_s"]) + " | " + " ".join(f"{x:.2f}" for x in r["bare_s"])
            print(f"{model_set:<8} {r['harness_median']:>10.2f} {r['bare_median']:>8.2f} {100 * r['overhead']:>8.1f}% "
                  f"{r['overhead'] / TARGET:>6.2f} {100 * r['overhead_min']:>6.1f}% {100 * r['overhead_cpu']:>6.1f}%  "
                  f"{rounds}", flush=True)
            if "profile" in r:
                import pstats

                print(f"  profile of one harness run ({r['profile']}), top cumulative entries under harness/:")
                stats = pstats.Stats(r["profile"])
                stats.sort_stats("cumulative").print_stats("harness/", 12)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
