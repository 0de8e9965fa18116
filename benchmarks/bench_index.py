"""The "must I re-embed?" retrieval scenarios (harness.compare.scenarios, .vector_index): their cost at scale as
ratios to the existing top-k pass, and their figures on real results files.

    python benchmarks/bench_index.py                          # 1M x 384 documents, 100 queries, index at 100k
    python benchmarks/bench_index.py --documents 200000 --queries 1000 --index-type hnsw
    python benchmarks/bench_index.py measure BASELINE.parquet CANDIDATE.parquet [--model all-MiniLM-L6-v2]
    python benchmarks/bench_index.py inside --documents 1000000  # harness compare with / without the scenarios

``inside`` writes two results files as ``bench_compare.py`` does (the candidate the baseline plus N(0, 1e-7)) and
times ``compare_files`` on them in fresh processes, alternately without the scenarios (HARNESS_SCENARIOS=0: the
verdict's top-k only) and with them (the default: in the verdict's pass), ``--repeat`` times each.

Scale: documents generated block by block (unit vectors; the candidate the baseline plus N(0, NOISE) per element,
about what bf16 rounding does to MiniLM's vectors), never all in memory, under the comparator's memory budget
(``HARNESS_COMPARE_MEMORY_MB``: the scenarios cut their queries into batches from it). One run, in this order:
the blocks generated alone (``bare``), the existing top-k pass (one ``TopKStream``, re-embed everything, as the
verdict's retrieval pass), the three exact scenarios; then, at ``--index-documents`` (the index holds its
documents: they are in memory), the exact scenarios again and the scenario through a FAISS index. Peak RSS is
the process's high-water mark after each step; the ratios are of CPU seconds (a shared machine's wall time
waits for other processes).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, List, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.compare.scenarios import SCENARIOS, Scenario, decide, rolled
from harness.compare.stats import TopKStream
from harness.compare.stats.topk import add_shared
from harness.compare.vector_index import index_scenario
from harness.config.environment import CompareSettings
from harness.config.project import IndexSettings
from tests.oracles import retrieval_scenarios

NOISE = 3e-4
#: documents generated at a time
BLOCK_ROWS = 16384


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _blocks(n: int, dim: int, seed: int = 0) -> Callable[[], Iterator[Tuple[np.ndarray, List[str], np.ndarray,
                                                                             np.ndarray]]]:
    def blocks() -> Iterator[Tuple[np.ndarray, List[str], np.ndarray, np.ndarray]]:
        for s in range(0, n, BLOCK_ROWS):
            rng = np.random.default_rng([seed, s])
            base = _unit(rng, min(BLOCK_ROWS, n - s), dim)
            yield np.arange(s, s + len(base)), [f"d{i}" for i in range(s, s + len(base))], base, \
                base + rng.normal(0, NOISE, base.shape).astype(np.float32)
    return blocks


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(label: str, run: Callable[[], Any], reference: float = 0.0) -> Tuple[float, Any]:
    """Wall and CPU seconds of ``run()``; the ratio is of CPU seconds (the machine is shared: wall time waits)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    ratio = f"{cpu / reference:>7.2f}" if reference else f"{'':>7}"
    print(f"  {label:<44} {wall:>8.2f} {cpu:>7.2f} {ratio} {_rss_mb():>8.0f}", flush=True)
    return cpu, out


def scale(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(1)
    bq = _unit(rng, args.queries, args.dim)
    cq = bq + rng.normal(0, NOISE, bq.shape).astype(np.float32)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {os.cpu_count()} CPUs (load average {load:.1f}), HARNESS_COMPARE_MEMORY_MB={CompareSettings.from_environment().memory_mb}, "
          f"{args.queries} queries, dim {args.dim}, k {args.k}")
    print(f"  {'step':<44} {'wall s':>8} {'CPU s':>7} {'/ top-k':>7} {'RSS MB':>8}")
    for n in (args.documents, args.index_documents):
        _one_size(args, bq, cq, n)


def _one_size(args: argparse.Namespace, bq: np.ndarray, cq: np.ndarray, n: int) -> None:
    blocks = _blocks(n, args.dim)
    print(f"{n:,} documents", flush=True)
    _timed("bare: the blocks generated", lambda: sum(len(b[0]) for b in blocks()))

    def topk() -> Any:
        stream = TopKStream(bq, cq, args.k, 1e-6)
        for positions, _, base, cand in blocks():
            b, c = base.astype(np.float32), cand.astype(np.float32)
            stream.add(positions, base, cand, np.einsum("ij,ij->i", b, b), np.einsum("ij,ij->i", c - b, c - b))
        return stream.agreement()

    reference, _ = _timed("top-k pass (re-embed everything), bare incl.", topk)
    def three() -> List[Scenario]:  # as the comparator feeds them in its pass: one shared screening product
        streams = [TopKStream(bq, cq, args.k, 1e-6) for _ in SCENARIOS]
        for positions, ids, base, cand in blocks():
            b, c = base.astype(np.float32), cand.astype(np.float32)
            masks = [None, np.zeros(len(base), dtype=bool), rolled(ids, args.share)]
            add_shared(list(zip(streams, masks)), positions, base, cand, np.einsum("ij,ij->i", b, b),
                       np.einsum("ij,ij->i", c - b, c - b))
        return [Scenario(key, title, s.agreement()) for (key, title), s in zip(SCENARIOS.items(), streams)]

    _, found = _timed("three exact scenarios, bare incl.", three, reference)
    for s in found:
        print(f"    {s.title:<56} order {s.share('same_order'):.1%} set {s.share('same_set'):.1%}")
    if n != args.index_documents:
        return
    docs = np.concatenate([b[2] for b in blocks()])
    ids = [f"d{i}" for i in range(n)]
    settings = IndexSettings.model_validate({"type": args.index_type, "threads": args.threads})
    _, through = _timed(f"through a FAISS {args.index_type} (build + search)",
                        lambda: index_scenario(bq, cq, docs, ids, args.k, 1e-6, settings), reference)
    print(f"    order {through.share('same_order'):.1%} set {through.share('same_set'):.1%} "
          f"recall {through.recall:.1%}")


def measure(args: argparse.Namespace) -> None:
    """The scenarios on two real results files (one bi-encoder with queries), as docs/explanation/reindex.md
    reports them; the policy's limits from ``--class``."""
    from harness.config.policy import load_policy
    from harness.results import read_frame

    def vectors(path: str, role: str) -> Tuple[List[str], np.ndarray]:
        frame = read_frame(path, [args.model])
        rows = frame[frame.role == role].sort_values("item_id")
        return rows.item_id.tolist(), np.stack(rows.vector.to_numpy())

    (ids, bd), (cids, cd) = vectors(args.baseline, "document"), vectors(args.candidate, "document")
    (qids, bq), (cqids, cq) = vectors(args.baseline, "query"), vectors(args.candidate, "query")
    assert ids == cids and qids == cqids, "the two files hold different documents or queries"
    tolerance = load_policy().tolerance(args.model, args.policy_class) if args.policy_class else None
    tie = tolerance.tie_tolerance if tolerance is not None else args.tie
    print(f"# {len(ids)} documents, {len(qids)} queries, top-{args.k}, tie tolerance {tie:g}")
    found = list(retrieval_scenarios(bq, cq, bd, cd, ids, args.k, tie, args.share))
    for kind in ("flat", "hnsw", "ivf-flat", "ivf-pq"):
        table = {"type": kind, "pq_m": 16} if kind == "ivf-pq" else {"type": kind}
        found.append(index_scenario(bq, cq, bd, ids, args.k, tie, IndexSettings.model_validate(table)))
    print(f"  {'scenario':<48} {'same order':>10} {'same set':>9} {'recall':>7}")
    for s in found:
        recall = f"{s.recall:>7.1%}" if s.recall is not None else ""
        print(f"  {s.title:<48} {s.share('same_order'):>10.1%} {s.share('same_set'):>9.1%} {recall}")
    if tolerance is not None:
        print(decide(found, tolerance).text)


def inside(args: argparse.Namespace) -> None:
    import json
    import subprocess
    import tempfile

    from bench_compare import write_pair

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        files = [str(p) for p in write_pair(Path(tmp), args.documents + args.queries, args.dim, args.queries)]
        runs: dict = {"without": [], "with": []}
        for _ in range(args.repeat):
            for how in runs:
                out = subprocess.run([sys.executable, __file__, "child", *files, how], check=True, text=True,
                                     capture_output=True).stdout
                runs[how].append(json.loads(out.splitlines()[-1]))
        print(f"{args.documents:,} documents x {args.dim}, {args.queries} queries, "
              f"HARNESS_COMPARE_MEMORY_MB={CompareSettings.from_environment().memory_mb}: best of {args.repeat}")
        best = {how: min(r, key=lambda x: x["cpu_s"]) for how, r in runs.items()}
        for how, r in best.items():
            print(f"  compare {how:<7} the scenarios: {r['cpu_s']:7.2f} CPU s {r['wall_s']:7.2f} s wall "
                  f"{r['rss_mb']:7.0f} MB peak RSS  ({r['cpu_s'] / best['without']['cpu_s']:.2f}x)")


def child(args: argparse.Namespace) -> None:
    import json

    from harness.compare import comparator

    if args.how == "without":
        os.environ["HARNESS_SCENARIOS"] = "0"  # read by compare_files' settings
    cpu, wall = time.process_time(), time.perf_counter()
    comparator.compare_files(args.baseline, args.candidate)
    print(json.dumps({"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall, "rss_mb": _rss_mb()}))


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--share", type=float, default=0.5, help="rolling re-embed: share of documents done")
    sub = parser.add_subparsers(dest="command")
    real = sub.add_parser("measure", help="the scenarios on a baseline and a candidate results file")
    real.add_argument("baseline")
    real.add_argument("candidate")
    real.add_argument("--model", default="all-MiniLM-L6-v2")
    real.add_argument("--tie", type=float, default=1e-6, help="tie tolerance without --class")
    real.add_argument("--class", dest="policy_class", help="the default policy's class whose limits decide")
    inner = sub.add_parser("inside", help="harness compare's cost with and without the scenarios")
    inner.add_argument("--repeat", type=int, default=2)
    inner.add_argument("--workdir", type=Path, default=Path("/tmp"))
    one = sub.add_parser("child")
    one.add_argument("baseline")
    one.add_argument("candidate")
    one.add_argument("how", choices=["with", "without"])
    parser.add_argument("--documents", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--index-documents", type=int, default=100_000)
    parser.add_argument("--index-type", default="ivf-flat", choices=["flat", "hnsw", "ivf-flat", "ivf-pq"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    {"measure": measure, "inside": inside, "child": child}.get(args.command, scale)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
