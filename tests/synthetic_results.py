"""Synthetic results files and a synthetic matrix report for the report, matrix and policy tests.

``write_synthetic_baseline`` writes a small deterministic results file with the real writer; ``perturb_results``
makes a failing candidate from any results file (noise per model, a reorder, fingerprint changes);
``synthetic_matrix`` builds a matrix report with one cell of every status. ``baseline_answers`` gives the committed
tiny baseline's vectors and scores by text, which the served-model stand-ins answer with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from harness.compare.comparator import compare_files
from harness.report.matrix_report import MatrixReport, build_matrix_report
from harness.results import ModelRows, ResultsFile, write_results
from harness.results.schema import rank_within_queries

from conftest import ROOT

BI, CROSS = "tiny-bi-encoder", "tiny-cross-encoder"
N_DOCS, N_QUERIES, DIM, PASSAGES_PER_QUERY = 40, 8, 16, 6
CORPUS = {"name": "synthetic", "version": "1", "sha256": "ab" * 32, "documents": N_DOCS, "queries": N_QUERIES,
          "pairs": N_QUERIES * PASSAGES_PER_QUERY}
NASTY_REASON = "pip: <error> & \"quotes\" | pipe \x1b[31mred\x1b[0m\nsecond line"


# -- synthetic results files ------------------------------------------------------------------------------------


def fingerprint(**changes: Any) -> Dict[str, Any]:
    """A fingerprint shaped like ``collect_fingerprint``'s; ``changes`` use dotted keys (``packages.torch``)."""
    fp: Dict[str, Any] = {
        "python": "3.11.7", "python_implementation": "CPython", "executable": "/usr/bin/python3.11",
        "platform": "Linux-6.1-x86_64-with-glibc2.36", "machine": "x86_64", "cpu_model": "AMD EPYC", "cpu_count": 2,
        "packages": {"torch": "2.13.0+cpu", "transformers": "5.23.0", "sentence-transformers": "6.2.0",
                     "tokenizers": "0.23.3", "numpy": "2.4.6", "pyarrow": "26.0.1"},
        "torch_version": "2.13.0+cpu", "device": "cpu", "device_type": "cpu", "dtype": "float32",
        "gpu_name": None, "tf32_matmul": False, "tf32_cudnn": True, "float32_matmul_precision": "highest",
        "num_threads": 2, "num_interop_threads": 2, "env": {},
    }
    for key, value in changes.items():
        _set_dotted(fp, key, value)
    return fp


def _set_dotted(data: Dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[leaf] = value


def _model_info(kind: str, **extra: Any) -> Dict[str, Any]:
    info = {"kind": kind, "status": "ok", "loaded_dtype": "float32", "attn_implementation": "sdpa",
            "weights_sha256": ("c5" if kind == "bi-encoder" else "be") * 32, "max_seq_length": 128}
    if kind == "bi-encoder":
        info.update(dim=DIM, vector_dtype="float32")
    info.update(extra)
    return info


def write_synthetic_baseline(path: Path) -> Path:
    """A deterministic results file with one bi-encoder and one cross-encoder."""
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((N_DOCS + N_QUERIES, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"d{i:03d}" for i in range(N_DOCS)] + [f"q{i:03d}" for i in range(N_QUERIES)]
    roles = ["document"] * N_DOCS + ["query"] * N_QUERIES
    query_ids = [f"q{q:03d}" for q in range(N_QUERIES) for _ in range(PASSAGES_PER_QUERY)]
    passage_ids = [f"d{(q * 5 + p) % N_DOCS:03d}" for q in range(N_QUERIES) for p in range(PASSAGES_PER_QUERY)]
    scores = rng.uniform(-4, 4, len(query_ids)).astype(np.float32)
    rows = [
        ModelRows(model_id=BI, task="embed", item_ids=ids, roles=roles, vectors=vectors),
        ModelRows(model_id=CROSS, task="rerank", item_ids=[f"{q}|{p}" for q, p in zip(query_ids, passage_ids)],
                  query_ids=query_ids, passage_ids=passage_ids, scores=scores, ranks=rank_within_queries(query_ids, scores)),
    ]
    meta = {"harness_version": "0.1.0", "created_at": "2026-11-23T14:00:00+00:00", "cell_id": None, "corpus": CORPUS,
            "run": {"device": "cpu", "dtype": "float32", "batch_size": 32}, "fingerprint": fingerprint(),
            "models": {BI: _model_info("bi-encoder"), CROSS: _model_info("cross-encoder")}}
    return write_results(path, rows, meta)


def perturb_results(
    src: Path,
    dst: Path,
    *,
    noise: Optional[Dict[str, float]] = None,
    swap_first_pair: bool = False,
    fingerprint_changes: Optional[Dict[str, Any]] = None,
    incompatible: Optional[Dict[str, str]] = None,
    seed: int = 0,
) -> Path:
    """Copy a results file, adding Gaussian noise per model (``{model_id: sigma}``) and optionally changing
    fingerprint entries; ``swap_first_pair`` swaps the top two scores of the first rerank query (a real reorder);
    ``incompatible`` (``{model_id: reason}``) marks models as not run, as the runner does."""
    source = ResultsFile(src)
    rng = np.random.default_rng(seed)
    rows = []
    meta = {k: v for k, v in source.meta.items() if k != "schema_version"}
    for model_id, reason in (incompatible or {}).items():
        meta["models"][model_id] = {"kind": meta["models"][model_id]["kind"], "status": "incompatible", "reason": reason}
    for model_id, info in meta["models"].items():
        if info.get("status", "ok") != "ok":
            continue
        sigma = (noise or {}).get(model_id, 0.0)
        if info["kind"] == "bi-encoder":
            ids, roles, vectors = source.embeddings(model_id)
            vectors = (vectors.astype(np.float64) + sigma * rng.standard_normal(vectors.shape)).astype(np.float32)
            rows.append(ModelRows(model_id=model_id, task="embed", item_ids=list(ids), roles=list(roles), vectors=vectors))
        else:
            data = source.rerank(model_id)
            scores = (data["score"].astype(np.float64) + sigma * rng.standard_normal(len(data["score"]))).astype(np.float32)
            if swap_first_pair:
                first = np.flatnonzero(data["query_id"] == data["query_id"][0])
                top2 = first[np.argsort(-scores[first])[:2]]
                scores[top2] = scores[top2[::-1]]
            qids = list(data["query_id"])
            rows.append(ModelRows(model_id=model_id, task="rerank", item_ids=list(data["item_id"]), query_ids=qids,
                                  passage_ids=list(data["passage_id"]), scores=scores, ranks=rank_within_queries(qids, scores)))
    for key, value in (fingerprint_changes or {}).items():
        _set_dotted(meta["fingerprint"], key, value)
    return write_results(dst, rows, meta)


def synthetic_matrix(tmp: Path, created_at: str = "2026-11-23T15:00:00+00:00") -> MatrixReport:
    """Pass, fail (noise + reorder + torch upgrade), incompatible, install-failed and run-failed cells."""
    base = write_synthetic_baseline(tmp / "baseline.parquet")
    ok = perturb_results(base, tmp / "ok.parquet", noise={BI: 5e-8, CROSS: 5e-8}, seed=1)
    bad = perturb_results(
        base, tmp / "bad.parquet", noise={BI: 1e-4}, swap_first_pair=True, seed=2,
        fingerprint_changes={"packages.torch": "2.14.0+cpu", "torch_version": "2.14.0+cpu",
                             "packages.sentence-transformers": "6.3.0", "platform": "Linux-6.2", "num_threads": 4},
    )
    cells = [
        {"cell_id": "py3.11-torch2.13.0-st6.2.0", "status": "pass", "reason": "", "setup_s": 12.3, "run_s": 30.1,
         "params": {"python": "3.11", "torch": "2.13.0", "sentence-transformers": "6.2.0", "transformers": "5.23.0"},
         "results": str(ok), "comparison": compare_files(base, ok).serialize()},
        {"cell_id": "py3.11-torch2.14.0-st6.3.0", "status": "fail", "reason": "2 model(s) drifted", "setup_s": 14.0,
         "run_s": 31.5, "params": {"python": "3.11", "torch": "2.14.0", "sentence-transformers": "6.3.0", "transformers": "5.23.0"},
         "results": str(bad), "comparison": compare_files(base, bad)},
        {"cell_id": "py3.13-torch1.13.1-st2.7.0", "status": "incompatible", "setup_s": None, "run_s": None,
         "reason": "torch 1.13.1 has no wheel for python 3.13", "results": None, "comparison": None,
         "params": {"python": "3.13", "torch": "1.13.1", "sentence-transformers": "2.7.0", "transformers": "4.40.0"}},
        {"cell_id": "py3.12-torch2.4.0-st3.0.0", "status": "install-failed", "setup_s": 40.2, "run_s": None,
         "reason": NASTY_REASON, "results": None, "comparison": None,
         "params": {"python": "3.12", "torch": "2.4.0", "sentence-transformers": "3.0.0", "transformers": "4.41.0"}},
        {"cell_id": "py3.12-torch2.5.1-st3.3.0", "status": "run-failed", "setup_s": 20.0, "run_s": 3.2,
         "reason": "harness run exited 2: tiny-bi-encoder: RuntimeError: CUDA out of memory", "results": None,
         "comparison": None, "params": {"python": "3.12", "torch": "2.5.1", "sentence-transformers": "3.3.0"}},
    ]
    return build_matrix_report("smoke", base, cells, created_at=created_at)


def baseline_answers() -> Tuple[Dict[str, list], Dict[Tuple[str, str], float]]:
    """text -> the baseline's vector of it; (query text, passage text) -> the baseline's score."""
    import pyarrow.parquet as pq

    texts = {}
    for name in ("documents.jsonl", "queries.jsonl"):
        for line in (ROOT / "fixtures" / "corpus" / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                texts[row["id"]] = row["text"]
    table = pq.read_table(ROOT / "fixtures" / "baselines" / "tiny-cpu-float32.parquet").to_pylist()
    vectors = {texts[r["item_id"]]: np.frombuffer(r["vector"], dtype="<f4").tolist()
               for r in table if r["model_id"] == "tiny-bi-encoder"}
    scores = {(texts[r["query_id"]], texts[r["passage_id"]]): r["score"] for r in table if r["model_id"] == "tiny-cross-encoder"}
    return vectors, scores
