"""Drift of one device against the CPU baseline, per precision setting: the check issue 5 asks of a GPU.

    python benchmarks/device_drift.py --device cuda            # on a GPU machine: fp32, TF32, fp16, bf16
    python benchmarks/device_drift.py --device cpu             # here: fp32, fp16, bf16 (TF32 is CUDA-only)

For each setting it runs ``harness run`` (the baseline's models, batch size and corpus) on ``--device`` and
compares with the baseline twice: with the class ``auto`` picks from the fingerprint (``cpu-vs-cuda`` for fp32
on CUDA, ``tf32``, ``fp16``, ``bf16``), and forced to ``fp32``. What must hold, and is checked (exit 1 if not):

* fp32 (TF32 off) passes its automatic class;
* every reduced-precision setting is detected (its automatic class is its own: tf32 / fp16 / bf16), passes that
  class, and fails the fp32 class on the bi-encoder (the drift the harness must catch).

It prints per setting and model: the class, both verdicts, max abs diff, min cosine, top-10 order agreement,
texts/s and the CUDA peak memory the runner recorded, so the numbers can go into the README's tolerance table.
Runs take minutes on CPU (fp16 matmuls there are slow); the results stay in --out.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
#: setting -> (extra `harness run` options, the class auto must pick on CUDA / elsewhere)
SETTINGS: Dict[str, Tuple[List[str], str]] = {
    "fp32": (["--dtype", "float32", "--tf32", "off"], "fp32"),
    "tf32": (["--dtype", "float32", "--tf32", "on"], "tf32"),
    "fp16": (["--dtype", "float16"], "fp16"),
    "bf16": (["--dtype", "bfloat16"], "bf16"),
}


def _run(baseline: Path, device: str, setting: str, out: Path) -> float:
    from harness.baselines import rerun_options

    recorded = rerun_options(baseline, out, device=device)
    models = recorded.models or ["default"]
    command = [sys.executable, "-m", "harness", "run", "--device", device, "--models", *models,
               "--batch-size", str(recorded.batch_size), "--out", str(out), "--no-progress",
               *SETTINGS[setting][0]]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    return time.perf_counter() - started


def _fmt(value: Optional[float], cosine: bool = False) -> str:
    if value is None:
        return "-"
    if cosine:
        return "1" if value >= 1 else f"1 - {1 - value:.1e}"
    return f"{value:.2e}" if value and abs(value) < 1e-2 else f"{value:.3g}"


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda | cuda:N | mps | cpu")
    parser.add_argument("--baseline", type=Path, default=ROOT / "fixtures" / "baselines" / "default-cpu-float32.parquet")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), help="default: all that apply to the device")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "device-drift")
    args = parser.parse_args(argv)

    from harness.compare.comparator import compare_files

    on_cuda = args.device.startswith("cuda")
    settings = args.settings or [s for s in SETTINGS if on_cuda or s != "tf32"]
    args.out.mkdir(parents=True, exist_ok=True)
    problems: List[str] = []
    rows = [("setting", "model", "auto class", "auto", "fp32 class", "max abs diff", "min cosine", "top-10 order",
             "texts/s", "CUDA peak MB")]
    for setting in settings:
        out = args.out / f"{args.device.replace(':', '-')}-{setting}.parquet"
        seconds = _run(args.baseline, args.device, setting, out)
        print(f"# {setting}: harness run {seconds:.0f} s -> {out}", flush=True)
        auto = compare_files(args.baseline, out)
        strict = {v.model_id: v for v in compare_files(args.baseline, out, tolerance_class="fp32").models}
        for verdict in auto.models:
            metrics = verdict.metrics
            cand = verdict.performance.get("candidate")
            peak, rate = (cand.cuda_peak_memory_bytes, cand.items_per_s) if cand else (None, None)
            order = metrics.topk_order_agreement if metrics.topk_order_agreement is not None else metrics.rerank_order_agreement
            rows.append((setting, verdict.model_id, verdict.tolerance_class, verdict.status.value,
                         strict[verdict.model_id].status.value, _fmt(metrics.max_abs_diff),
                         _fmt(metrics.min_cosine, cosine=True), "-" if order is None else f"{100 * order:.1f}%",
                         _fmt(rate), "-" if peak is None else f"{peak / 2**20:.0f}"))
            expected = "cpu-vs-cuda" if setting == "fp32" and on_cuda else SETTINGS[setting][1]
            if verdict.tolerance_class != expected:
                problems.append(f"{setting} {verdict.model_id}: judged by class {verdict.tolerance_class}, expected {expected}")
            if verdict.status.value != "pass":
                problems.append(f"{setting} {verdict.model_id}: {verdict.status.value} in its own class: {verdict.reason}")
            if setting != "fp32" and verdict.kind == "bi-encoder" and strict[verdict.model_id].status.value == "pass":
                problems.append(f"{setting} {verdict.model_id}: passes the fp32 class, so fp32 would not catch it")
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print("OK: every setting detected and judged by its own class" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
