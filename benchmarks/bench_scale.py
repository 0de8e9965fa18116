"""The comparator against many queries: time and peak RSS of ``compare_files`` on N x DIM float32 files with
Q queries, as ratios to a bare parquet read of the same two files (both read row group by row group, max |d|
only: what any comparison has to pay), for each Q of --queries.

    python benchmarks/bench_scale.py                       # 1M documents, Q = 100, 10k, 80k (80k cold: ~25 min)
    python benchmarks/bench_scale.py --queries 100 10000 --workdir /tmp/harness-scale --keep
    python benchmarks/bench_scale.py --size 100000 --queries 100 1000   # quick: 100k rows per file in all
    python benchmarks/bench_scale.py --queries 10000 --keep --workdir W --cache C --warm-only   # warm again, no cold

Per Q, in fresh processes: the bare read; ``exact`` (certificates off: every query scored against every
document, the queries tiled in a fixed byte budget); ``cold`` (no certificate yet: the same exact pass; the judge
files nothing); ``certify`` (the explicit step, ``harness baseline certify``: the baseline's top-(k+1+10) filed in a
fresh cache directory); ``warm`` (the certificate proves most queries' top-k, the rest are scored exactly). ``--skip-exact`` leaves ``exact`` out
(``cold`` costs the same). The files (generated as in ``bench_compare.py``: unit vectors, the candidate the
baseline plus N(0, 1e-7) noise and N(0, 1e-5) on 5 rows; the last Q rows are queries) are kept under
``--workdir`` with ``--keep`` and reused by later runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_compare import _spawn, write_pair


def _files(workdir: Path, n: int, dim: int, queries: int) -> List[Path]:
    directory = workdir / f"scale-{n}x{dim}-q{queries}"
    paths = [directory / f"base-{n}.parquet", directory / f"cand-{n}.parquet"]
    if all(p.exists() for p in paths):
        return paths
    directory.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    paths = write_pair(directory, n, dim, queries)
    print(f"# wrote {directory} in {time.perf_counter() - started:.0f} s", flush=True)
    return paths


def _row(label: str, r: Dict, bare: Dict) -> str:
    counts = "" if r.get("certified") is None else f"{r['certified']:>9} {r['scored_exactly']:>9}"
    return (f"  {label:<6} {r['wall_s']:>8.2f} {r.get('cpu_s', float('nan')):>7.1f} {r['wall_s'] / bare['wall_s']:>8.2f} "
            f"{r['rss_mb']:>8.0f} {counts}  {r.get('status', '')}")


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=1_000_000, help="documents per file (the Q queries added)")
    parser.add_argument("--size", type=int, help="rows per file (documents + queries), instead of --documents")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, nargs="+", default=[100, 10_000, 80_000])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) the generated files")
    parser.add_argument("--skip-exact", action="store_true", help="leave out the certificates-off run")
    parser.add_argument("--warm-only", action="store_true", help="only the bare read and warm runs (certifying first "
                        "unless --cache already holds a certificate): warm timings without the cold passes")
    parser.add_argument("--cache", type=Path, help="certificate cache directory, kept (default: a fresh one per Q, "
                        "removed); with a certificate already there, 'cold' is warm too")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = (f"{args.size} rows" if args.size else f"{args.documents} documents + Q queries") + f" x {args.dim}"
    print(f"# {os.cpu_count()} CPUs (load average {load:.1f}), {rows} float32, workdir {args.workdir}")
    print(f"  {'run':<6} {'wall s':>8} {'CPU s':>7} {'/ bare':>8} {'RSS MB':>8} {'certified':>9} {'exact':>9}")
    for q in args.queries:
        base, cand = _files(args.workdir, args.size or args.documents + q, args.dim, q)
        cache = args.cache or Path(tempfile.mkdtemp(prefix="harness-bench-cache-", dir=args.workdir))
        try:
            print(f"Q = {q} ({base.stat().st_size / 1e6:.0f} MB per file)", flush=True)
            bare = _spawn("minimal", str(base), str(cand), "binary")
            print(f"  {'bare':<6} {bare['wall_s']:>8.2f} {'':>7} {1.0:>8.2f} {bare['rss_mb']:>8.0f}", flush=True)
            runs = [] if args.skip_exact or args.warm_only else [("exact", {"HARNESS_TOPK_CERTIFICATES": "0"})]
            runs += [] if args.warm_only else [("cold", {"HARNESS_CACHE_DIR": str(cache)})]
            runs += [("warm", {"HARNESS_CACHE_DIR": str(cache)})]
            filed = args.warm_only and any((cache / "topk-certificates").glob("*/*.npy"))
            for label, env in runs:
                if label == "warm" and not filed:
                    print(_row("certify", _spawn("certify", str(base), env_extra=env), bare), flush=True)
                print(_row(label, _spawn("compare", str(base), str(cand), env_extra=env), bare), flush=True)
        finally:
            if not args.cache:
                shutil.rmtree(cache, ignore_errors=True)
            if not args.keep:
                shutil.rmtree(base.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
