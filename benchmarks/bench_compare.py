"""Comparator throughput and memory at scale: two results files of N texts x DIM float32, compared by
``harness.compare.comparator.compare_files`` in a fresh subprocess per size (so peak RSS is the comparison's own).

    python benchmarks/bench_compare.py                          # N = 10k, 100k, 1M; layout variant at 200k
    python benchmarks/bench_compare.py --sizes 1000000 --repeat 2
    python benchmarks/bench_compare.py --sizes 10000 --layout-size 0 --queries 10   # quick

The files (2 x N x DIM x 4 bytes, ~3.1 GB at 1M x 384) go to a temporary directory under --workdir (default:
the system temp dir), checked for free space first and removed at the end (--keep keeps them). The candidate
is the baseline plus N(0, 1e-7) noise on every element and N(0, 1e-5) on a few rows (a realistic small
drift: fp32 device noise plus a handful of texts that really moved), the last --queries rows are queries (as
the runner writes them: documents, then queries). Throughput is one side's float32 bytes / wall time of
``compare_files`` (opening both files, ids pass, query read, streamed statistics, exact top-k), measured with
a warm page cache (the files were just written). Targets (issue 5): >= 500 MB/s and peak RSS < 1 GB at 1M x 384.

``--precision int8|binary`` stores the same vectors quantized (int8 buckets over [-0.25, 0.25]; packed sign bits)
and times the comparator's integer path (bits flipped / buckets moved per text, top-k by the quantized scores);
MB/s is then of the stored bytes (4x / 32x fewer than float32), and texts/s compares across precisions.

``--reverse-candidate`` writes the candidate's rows in reverse order, as older versions or other tools could (the
writer's ``canonical=False``): the reader normalizes it once, on its first read of rows, into a canonical copy.

``--floor`` measures ``compare_files`` against the floor on the same files, in one run: reading both files row
group by row group and taking the max |d| (the probe's loop). Per size and per ``--floor-queries`` count it prints
both walls and the ratio floor / compare (target >= 0.9: the comparator costs at most ~10% over the bare read)::

    python benchmarks/bench_compare.py --floor --sizes 1000000 --floor-queries 0 100 --repeat 2

With ``--certified`` the baseline is certified first (the top-k certificate ``harness baseline create`` files:
what a comparison against a stored baseline finds); without it there is none (two files compared as they are, the
top-k screened against every document). Each (size, queries) gets its own certificate cache directory.

The layout variant writes the same vectors as ``fixed_size_list<float32>`` and times the naive read of that
layout (``read_row_group`` + ``values.to_numpy()``, max |d| only) against the same minimal loop over the
``fixed_size_binary`` layout the results schema uses, and reports the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np


def peak_rss_mb() -> float:
    """Peak RSS of this process: VmHWM on Linux. ``ru_maxrss`` is not used there: it survives fork + exec, so a
    child of this (large) generating process would report the parent's size."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20 if sys.platform == "darwin" else 1024)


TARGET_MBPS = 500.0
TARGET_RSS_MB = 1024.0
MODEL = "bench-bi-encoder"
CHUNK = 65_536


def _metadata(n: int, dim: int, queries: int, precision: str = "float32") -> Dict:
    stored = {"float32": (dim, "float32"), "int8": (dim, "int8"), "binary": (dim // 8, "int8")}[precision]
    return {
        "corpus": {"name": "bench", "version": "1", "sha256": "b" * 64, "documents": n - queries, "queries": queries},
        "fingerprint": {},
        "models": {MODEL: {"kind": "bi-encoder", "status": "ok", "dim": stored[0], "vector_dtype": stored[1],
                           "precision": precision, "weights_sha256": "a" * 64}},
    }


def quantize(vectors: np.ndarray, precision: str) -> np.ndarray:
    """Stored form of ``vectors`` (unit rows) for a precision, by sentence-transformers' rules with fixed ranges."""
    if precision == "float32":
        return vectors
    if precision == "binary":
        return (np.packbits(vectors > 0, axis=1).astype(np.int16) - 128).astype(np.int8)
    buckets = np.floor((vectors + np.float32(0.25)) / np.float32(0.5 / 255))
    return (np.clip(buckets, 0, 255) - 128).astype(np.int8)


def _chunk(n: int, dim: int, queries: int, bad_rows: set, seed: int, start: int):
    """Rows start .. start + CHUNK: (ids, roles, base, cand), the same every time it is asked for."""
    stop = min(n, start + CHUNK)
    rng = np.random.default_rng([seed, start])
    base = rng.standard_normal((stop - start, dim), dtype=np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    cand = base + rng.standard_normal(base.shape, dtype=np.float32) * np.float32(1e-7)
    for row in sorted(r for r in bad_rows if start <= r < stop):
        cand[row - start] += rng.standard_normal(dim, dtype=np.float32) * np.float32(1e-5)
    ids = [f"t{i:08d}" for i in range(start, stop)]
    roles = ["query" if i >= n - queries else "document" for i in range(start, stop)]
    return ids, roles, base, cand


def _chunks(n: int, dim: int, queries: int, perturbed: int, seed: int, reverse: bool = False):
    bad_rows = set(np.random.default_rng(seed + 1).choice(n, size=min(perturbed, n), replace=False).tolist())
    starts = range(0, n, CHUNK)
    for start in (reversed(starts) if reverse else starts):
        yield _chunk(n, dim, queries, bad_rows, seed, start)


def write_pair(directory: Path, n: int, dim: int, queries: int, perturbed: int = 5, seed: int = 0,
               reverse: bool = False, precision: str = "float32") -> List[Path]:
    """Baseline and candidate; with ``reverse`` the candidate's rows are in the opposite order (its ids no
    longer line up with the baseline's: the comparator's realignment path)."""
    from harness.results import ModelRows, ResultsWriter

    tag = "" if precision == "float32" else f"-{precision}"
    paths = [directory / f"base-{n}{tag}.parquet", directory / f"cand-{n}{tag}{'-reversed' if reverse else ''}.parquet"]
    meta = _metadata(n, dim, queries, precision)
    width = meta["models"][MODEL]["dim"] * (4 if precision == "float32" else 1)
    if not reverse:
        with ResultsWriter(paths[0], meta, width) as wb, ResultsWriter(paths[1], meta, width) as wc:
            for ids, roles, base, cand in _chunks(n, dim, queries, perturbed, seed):
                wb.write(ModelRows(MODEL, "embed", ids, roles=roles, vectors=quantize(base, precision)))
                wc.write(ModelRows(MODEL, "embed", ids, roles=roles, vectors=quantize(cand, precision)))
        return paths
    for path, reverse_side in ((paths[0], False), (paths[1], True)):
        with ResultsWriter(path, meta, width, canonical=not reverse_side) as writer:  # the way other tools write
            for ids, roles, base, cand in _chunks(n, dim, queries, perturbed, seed, reverse=reverse_side):
                if reverse_side:
                    writer.write(ModelRows(MODEL, "embed", ids[::-1], roles=roles[::-1], vectors=quantize(cand[::-1], precision)))
                else:
                    writer.write(ModelRows(MODEL, "embed", ids, roles=roles, vectors=quantize(base, precision)))
    return paths


def recompress(path: Path, codec: str) -> None:
    """Rewrite a results file with ``codec`` (snappy: as harness versions before the uncompressed writer, and other
    tools' defaults, wrote them), row group by row group, schema metadata and page checksums kept."""
    import pyarrow.parquet as pq

    source = pq.ParquetFile(str(path))
    tmp = path.with_suffix(".recompressed")
    with pq.ParquetWriter(str(tmp), source.schema_arrow, compression=codec, write_page_checksum=True) as writer:
        for group in range(source.num_row_groups):
            writer.write_table(source.read_row_group(group), row_group_size=source.metadata.row_group(group).num_rows)
    tmp.replace(path)


def write_list_pair(directory: Path, n: int, dim: int, seed: int = 0) -> List[Path]:
    """The same vectors with the vector column as fixed_size_list<float32, dim> (everything else alike)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = [directory / f"list-base-{n}.parquet", directory / f"list-cand-{n}.parquet"]
    schema = pa.schema([("item_id", pa.string()), ("vector", pa.list_(pa.float32(), dim))])
    writers = [pq.ParquetWriter(str(p), schema, compression="none") for p in paths]
    try:
        for ids, _, base, cand in _chunks(n, dim, 0, 5, seed):
            for writer, vectors in zip(writers, (base, cand)):
                column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim)
                writer.write_table(pa.table({"item_id": ids, "vector": column}, schema=schema), row_group_size=CHUNK)
    finally:
        for writer in writers:
            writer.close()
    return paths


# -- children (fresh processes: clean RSS) -------------------------------------------------------------------


def child_compare(base: str, cand: str) -> Dict:
    started = time.perf_counter()
    from harness.compare.comparator import compare_files

    imported = time.perf_counter()
    cpu = time.process_time()
    comparison = compare_files(base, cand, tolerance_class="fp32")
    wall = time.perf_counter() - imported
    cpu = time.process_time() - cpu
    verdict = comparison.models[0]
    metrics = verdict.metrics
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "import_s": imported - started,
        "rss_mb": peak_rss_mb(),
        "status": verdict.status.value,
        "texts": metrics.texts,
        "max_abs_diff": next((v for v in (metrics.max_abs_diff, metrics.max_int_distance, metrics.max_bit_flips)
                              if v is not None), None),
        "texts_beyond_tolerance": metrics.rows_changed if metrics.quantized else metrics.texts_beyond_tolerance,
        "topk_order_agreement": metrics.topk_order_agreement,
        "certified": verdict.evidence.topk and verdict.evidence.topk.certified,
        "scored_exactly": verdict.evidence.topk and verdict.evidence.topk.scored_exactly,
        "offenders": [o.item_id for o in verdict.offenders],
    }


def child_certify(base: str) -> Dict:
    """The explicit certifying step on ``base`` (what ``harness baseline certify`` runs)."""
    from harness.certificates import file_certificates

    started, cpu = time.perf_counter(), time.process_time()
    filed = file_certificates(base)
    return {"wall_s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu, "rss_mb": peak_rss_mb(),
            "certified": None, "scored_exactly": sum(q for _, q in filed)}


def child_minimal(base: str, cand: str, layout: str) -> Dict:
    """Read both files row group by row group and compute max |d| only: the layout's own cost."""
    import pyarrow.parquet as pq

    started, cpu = time.perf_counter(), time.process_time()
    files = [pq.ParquetFile(base, pre_buffer=False), pq.ParquetFile(cand, pre_buffer=False)]
    worst, count = 0.0, 0
    for i in range(files[0].num_row_groups):
        arrays = []
        for f in files:
            column = f.read_row_group(i, columns=["vector"]).column(0).combine_chunks()
            if layout == "list":
                arrays.append(column.values.to_numpy())  # the naive read: flatten the list values
            else:
                arrays.append(np.frombuffer(column.buffers()[1], dtype=np.float32))
        worst = max(worst, float(np.abs(arrays[1] - arrays[0]).max()))
        count += arrays[0].size
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"wall_s": wall, "cpu_s": cpu, "bytes": count * 4, "max_abs_diff": worst, "rss_mb": peak_rss_mb()}


#: what the timed children run under (``--child-prefix``)
CHILD_PREFIX: List[str] = []


def _spawn(*args: str, threads: int = 0, env_extra: Dict[str, str] | None = None) -> Dict:
    env = {**os.environ, **(env_extra or {})}
    if threads:
        env["HARNESS_COMPARE_THREADS"] = str(threads)
    done = subprocess.run([*CHILD_PREFIX, sys.executable, __file__, "--child", *args], capture_output=True, text=True,
                          env=env)
    if done.returncode:
        raise SystemExit(f"child {args} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=100, help="rows with role query (top-k agreement)")
    parser.add_argument("--repeat", type=int, default=1, help="comparisons per size (fresh process each)")
    parser.add_argument("--threads", type=int, default=0, help="HARNESS_COMPARE_THREADS for the child (0: default)")
    parser.add_argument("--layout-size", type=int, default=200_000, help="N for the layout variant (0: skip)")
    parser.add_argument("--reverse-candidate", action="store_true",
                        help="write the candidate's rows in reverse order (ids out of line: the realignment path)")
    parser.add_argument("--precision", choices=("float32", "int8", "binary"), default="float32",
                        help="store the vectors quantized: times the comparator's integer path")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--floor", action="store_true", help="ratio of the bare read (floor) to compare, one run")
    parser.add_argument("--floor-queries", type=int, nargs="+", default=[0, 100], help="query counts for --floor")
    parser.add_argument("--compression", choices=("none", "snappy"), default="none",
                        help="--floor: the files' codec (none: as the writer writes; snappy: as older versions did)")
    parser.add_argument("--certified", action="store_true",
                        help="--floor: certify the baseline first, as `harness baseline create` does (warm top-k)")
    parser.add_argument("--perturbed", type=int, default=5, help="--floor: candidate rows moved by N(0, 1e-5), "
                        "beyond the fp32 tolerance (0: a comparison that passes)")
    parser.add_argument("--child-prefix", default="", help="a command the timed children run under, e.g. "
                        "'chrt -f 10' (Linux, root): other jobs on a shared machine stay out of the timings")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    CHILD_PREFIX[:] = args.child_prefix.split()
    if args.child:
        kind, *rest = args.child
        children = {"compare": child_compare, "certify": child_certify, "minimal": child_minimal}
        print(json.dumps(children[kind](*rest)))
        return 0
    if args.floor:
        return floor(args)

    need = 2 * max(args.sizes + [args.layout_size]) * args.dim * 4 * 1.05 + (64 << 20)
    free = shutil.disk_usage(args.workdir).free
    if free < need:
        raise SystemExit(f"{args.workdir}: {free / 1e9:.1f} GB free, the largest pair needs {need / 1e9:.1f} GB")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {os.cpu_count()} CPUs (load average {load:.1f}), dim {args.dim} {args.precision}, {args.queries} queries, threads "
          f"{args.threads or 'default'}, workdir {args.workdir} ({free / 1e9:.0f} GB free)")
    header = (f"{'N':>9} {'file MB':>8} {'wall s':>7} {'CPU s':>6} {'MB/s':>7} {'texts/s':>9} {'peak RSS MB':>11} "
              f"{'MB/s / 500':>10} {'RSS / 1GB':>9}  status")
    print(header)
    print("-" * len(header))
    results = []
    tmp = Path(tempfile.mkdtemp(prefix="harness-bench-", dir=args.workdir))
    try:
        for n in args.sizes:
            started = time.perf_counter()
            base, cand = write_pair(tmp, n, args.dim, min(args.queries, n // 2), reverse=args.reverse_candidate,
                                    precision=args.precision)
            written = time.perf_counter() - started
            for _ in range(args.repeat):
                r = _spawn("compare", str(base), str(cand), threads=args.threads)
                mb = n * args.dim * {"float32": 4, "int8": 1, "binary": 1 / 8}[args.precision] / 1e6
                mbps = mb / r["wall_s"]
                print(f"{n:>9} {base.stat().st_size / 1e6:>8.0f} {r['wall_s']:>7.2f} {r['cpu_s']:>6.1f} {mbps:>7.0f} "
                      f"{n / r['wall_s']:>9.0f} {r['rss_mb']:>11.0f} "
                      f"{mbps / TARGET_MBPS:>10.2f} {r['rss_mb'] / TARGET_RSS_MB:>9.2f}  {r['status']} "
                      f"(max drift {r['max_abs_diff']:.3g}, {r['texts_beyond_tolerance']} texts beyond/changed, "
                      f"top-k order {r['topk_order_agreement']}; written in {written:.0f} s)", flush=True)
                results.append({"n": n, **r})
            if not args.keep:
                base.unlink()
                cand.unlink()
        if args.layout_size:
            n = args.layout_size
            print(f"\n# layout: fixed_size_list<float32> read naively vs fixed_size_binary (ours), N={n}, max |d| only")
            base, cand = write_pair(tmp, n, args.dim, 0)
            lbase, lcand = write_list_pair(tmp, n, args.dim)
            ours = _spawn("minimal", str(base), str(cand), "binary")
            naive = _spawn("minimal", str(lbase), str(lcand), "list")
            full = _spawn("compare", str(base), str(cand), threads=args.threads)
            mb = n * args.dim * 4 / 1e6
            for name, r in (("fixed_size_list, naive", naive), ("fixed_size_binary, same loop", ours),
                            ("fixed_size_binary, full comparator", full)):
                print(f"{name:<36} {mb / r['wall_s']:>7.0f} MB/s  {r['wall_s']:>6.2f} s  peak RSS {r['rss_mb']:>5.0f} MB")
            print(f"binary / list throughput ratio (same loop): {naive['wall_s'] / ours['wall_s']:.2f}x")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"# files kept in {tmp}")
    return 0


def floor(args: argparse.Namespace) -> int:
    """``compare_files`` against the bare read of the same files (both in fresh processes, alternating)."""
    print(f"# {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}), dim {args.dim}, files as the writer "
          f"writes them ({args.compression}, {CHUNK}-row groups), baseline "
          f"{'certified (as baseline create leaves it)' if args.certified else 'not certified'}, "
          f"{args.perturbed} rows beyond the tolerance{' (passes)' if not args.perturbed else ''}"
          f"{f', children under {args.child_prefix!r}' if args.child_prefix else ''}; "
          "ratio = floor wall / compare wall (target >= 0.9); "
          "CPU s: all threads (on a shared machine the CPU ratio is the steadier one)")
    print(f"{'N':>9} {'queries':>7} {'floor s':>8} {'compare s':>9} {'ratio':>6} {'floor CPU':>9} {'compare CPU':>11} "
          f"{'CPU ratio':>9} {'RSS MB':>7} {'load':>5}  verdict")
    tmp = Path(tempfile.mkdtemp(prefix="harness-bench-floor-", dir=args.workdir))
    try:
        for n in args.sizes:
            for queries in args.floor_queries:
                base, cand = write_pair(tmp, n, args.dim, min(queries, n // 2), perturbed=args.perturbed)
                os.sync()  # the 3 GB just written go to disk now, not during the timed runs
                if args.compression != "none":
                    recompress(base, args.compression)
                    recompress(cand, args.compression)
                env = {"HARNESS_CACHE_DIR": str(tmp / f"cache-{n}-{queries}")}  # no certificate unless --certified
                if args.certified and queries:
                    _spawn("certify", str(base), env_extra=env)
                for _ in range(args.repeat):
                    bare = _spawn("minimal", str(base), str(cand), "binary")
                    r = _spawn("compare", str(base), str(cand), threads=args.threads, env_extra=env)
                    print(f"{n:>9} {queries:>7} {bare['wall_s']:>8.2f} {r['wall_s']:>9.2f} "
                          f"{bare['wall_s'] / r['wall_s']:>6.2f} {bare['cpu_s']:>9.2f} {r['cpu_s']:>11.2f} "
                          f"{bare['cpu_s'] / r['cpu_s']:>9.2f} {r['rss_mb']:>7.0f} {os.getloadavg()[0]:>5.1f}  "
                          f"{r['status']} (top-k order "
                          f"{r['topk_order_agreement']}, certified {r['certified']}, scored {r['scored_exactly']})",
                          flush=True)
                base.unlink()
                cand.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
