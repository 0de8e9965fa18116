"""The cross-encoder comparison at scale: P (query, passage) pairs over Q queries, time and peak RSS of
``compare_files`` in a fresh process, and the ratios to a bare read of the same two files' columns; then the
same at ``--scale`` times the pairs and queries (memory must not follow the pairs: it is streamed).

    python benchmarks/bench_rerank.py                       # 1M pairs / 10k queries, then 4M / 40k
    python benchmarks/bench_rerank.py --shuffle             # the candidate's pairs in another order
    python benchmarks/bench_rerank.py --pairs 100000 --queries 1000 --big-query 20000 --scale 1

The candidate's scores are the baseline's plus N(0, 1e-7) (fp32 drift). ``--big-query N`` gives the first
query N passages (the rest shared out among the others): one long list, the case a per-query pairwise
matrix would not survive.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_compare import peak_rss_mb

MODEL = "bench-cross-encoder"
CHUNK = 200_000


def write_pair(directory: Path, pairs: int, queries: int, big_query: int, shuffle_candidate: bool = False) -> List[Path]:
    """Baseline and candidate files; with ``shuffle_candidate`` the candidate's pairs are permuted within each
    chunk of ``CHUNK`` (another order: the comparison realigns it by pair id)."""
    from harness.results import ModelRows, ResultsWriter

    directory.mkdir(parents=True, exist_ok=True)
    meta = {"corpus": {"name": "bench", "version": "1", "sha256": "b" * 64}, "fingerprint": {},
            "models": {MODEL: {"kind": "cross-encoder", "status": "ok", "weights_sha256": "a" * 64}}}
    rng = np.random.default_rng(0)
    sizes = np.full(queries, (pairs - big_query) // max(queries - 1, 1) if big_query else pairs // queries)
    if big_query:
        sizes[0] = big_query
    sizes[-1] += pairs - int(sizes.sum())
    query_of = np.repeat(np.arange(queries), sizes)
    paths = [directory / f"rerank-base-{pairs}.parquet", directory / f"rerank-cand-{pairs}.parquet"]
    with ResultsWriter(paths[0], meta, 0) as wb, ResultsWriter(paths[1], meta, 0) as wc:
        for s in range(0, pairs, CHUNK):
            q = query_of[s : s + CHUNK]
            n = len(q)
            qids = [f"q{i:06d}" for i in q]
            pids = [f"p{i:08d}" for i in range(s, s + n)]
            ids = [f"{a}|{b}" for a, b in zip(qids, pids)]
            base = rng.standard_normal(n).astype(np.float32) * 4
            cand = base + rng.standard_normal(n).astype(np.float32) * np.float32(1e-7)
            ranks = np.zeros(n, dtype=np.int32)
            wb.write(ModelRows(MODEL, "rerank", ids, roles=["pair"] * n, query_ids=qids, passage_ids=pids,
                               scores=base, ranks=ranks))
            p = rng.permutation(n) if shuffle_candidate else np.arange(n)
            wc.write(ModelRows(MODEL, "rerank", [ids[i] for i in p], roles=["pair"] * n, query_ids=[qids[i] for i in p],
                               passage_ids=[pids[i] for i in p], scores=cand[p], ranks=ranks))
    return paths


def child_compare(base: str, cand: str) -> Dict:
    from harness.compare.comparator import compare_files

    started = time.perf_counter()
    cpu = time.process_time()
    verdict = compare_files(base, cand, tolerance_class="fp32").models[0]
    return {"wall_s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu, "rss_mb": peak_rss_mb(),
            "status": verdict.status.value, "pairs": verdict.metrics.pairs, "queries": verdict.metrics.queries,
            "agreement": verdict.metrics.rerank_order_agreement}


def child_bare(base: str, cand: str) -> Dict:
    import pyarrow.parquet as pq

    started = time.perf_counter()
    worst = 0.0
    files = [pq.ParquetFile(base), pq.ParquetFile(cand)]
    for i in range(files[0].num_row_groups):
        cols = [f.read_row_group(i, columns=["item_id", "query_id", "score"]) for f in files]
        worst = max(worst, float(np.abs(np.asarray(cols[0].column("score")) - np.asarray(cols[1].column("score"))).max()))
    return {"wall_s": time.perf_counter() - started, "rss_mb": peak_rss_mb(), "max_abs_diff": worst}


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--big-query", type=int, default=0)
    parser.add_argument("--scale", type=int, default=4, help="then SCALE x the pairs and queries (1: once)")
    parser.add_argument("--shuffle", action="store_true", help="the candidate's pairs in another order")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, base, cand = args.child
        print(json.dumps(child_compare(base, cand) if kind == "compare" else child_bare(base, cand)))
        return 0
    runs = [1] + ([args.scale] if args.scale > 1 else [])
    first: Dict = {}
    for factor in runs:
        pairs, queries = args.pairs * factor, args.queries * factor
        load = os.getloadavg()[0]
        with tempfile.TemporaryDirectory(prefix="harness-bench-rerank-") as tmp:
            base, cand = write_pair(Path(tmp), pairs, queries, args.big_query, args.shuffle)
            bare = _spawn_here("bare", base, cand)
            full = _spawn_here("compare", base, cand)
        print(f"# {os.cpu_count()} CPUs (load average {load:.1f}); {pairs} pairs, {queries} queries"
              f"{f', one of {args.big_query} passages' if args.big_query else ''}"
              f"{', candidate in another order' if args.shuffle else ''}")
        print(f"bare read   {bare['wall_s']:7.2f} s  peak RSS {bare['rss_mb']:6.0f} MB")
        print(f"compare     {full['wall_s']:7.2f} s  peak RSS {full['rss_mb']:6.0f} MB  ({full['wall_s'] / bare['wall_s']:.1f}x "
              f"the bare read's time, {full['rss_mb'] / bare['rss_mb']:.2f}x its RSS; CPU {full['cpu_s']:.1f} s; "
              f"{full['status']}: {full['pairs']} pairs and {full['queries']} queries judged, order agreement {full['agreement']})")
        if factor == 1:
            first = full
        else:
            print(f"x{factor} the pairs: {full['wall_s'] / first['wall_s']:.1f}x the time, "
                  f"{full['rss_mb'] / first['rss_mb']:.2f}x the peak RSS of the first run")
    return 0


def _spawn_here(kind: str, base: Path, cand: Path) -> Dict:
    import subprocess

    done = subprocess.run([sys.executable, __file__, "--child", kind, str(base), str(cand)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"child {kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
