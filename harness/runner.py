"""The runner: embed and rerank the fixed corpus in the current environment, write one results file.

Stages: load corpus -> configure torch -> for each model: resolve, load, embed or rerank -> write results.
Runs inside matrix cells with old libraries, so it imports only the stdlib, numpy and pyarrow at module level
(torch and sentence-transformers inside functions) and nothing from the comparator.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

import harness
from harness.corpus import Corpus, load_corpus
from harness.errors import HarnessError
from harness.fingerprint import collect_fingerprint
from harness.loading import DTYPES, Incompatible, LoadedModel, load_model
from harness.registry import ModelSpec, Registry, resolve_model_dir
from harness.results import ModelRows, write_results

__all__ = ["RunOptions", "RunSummary", "run", "pick_device", "rank_within_queries"]


@dataclass(frozen=True)
class RunOptions:
    """Everything a user can pin for a run; each is recorded in the results metadata."""

    out: Path
    corpus_dir: Path
    registry: Registry
    models: Optional[List[str]] = None
    device: str = "auto"
    dtype: str = "float32"
    batch_size: int = 32
    tf32: Optional[bool] = None  # None: leave torch's default alone (and record it)
    threads: Optional[int] = None
    attn_implementation: Optional[str] = None
    allow_network: bool = False
    trust_remote_code: bool = False
    progress: bool = False
    cell_id: Optional[str] = None


@dataclass
class RunSummary:
    path: Path
    statuses: Dict[str, str] = field(default_factory=dict)
    reasons: Dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(s == "ok" for s in self.statuses.values())


def pick_device(requested: str) -> str:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit device that is absent is an input error."""
    import torch

    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if requested == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if requested.startswith("cuda") and not cuda:
        raise HarnessError("--device cuda requested, but torch reports no CUDA device")
    if requested == "mps" and not mps:
        raise HarnessError("--device mps requested, but torch reports no MPS device")
    return requested


def _configure_torch(options: RunOptions) -> None:
    import torch

    if options.threads:
        torch.set_num_threads(options.threads)
    if options.tf32 is not None:
        torch.backends.cuda.matmul.allow_tf32 = options.tf32
        torch.backends.cudnn.allow_tf32 = options.tf32


def rank_within_queries(query_ids: Sequence[str], scores: np.ndarray) -> np.ndarray:
    """1-based rank of each candidate within its query by descending score; ties keep file order."""
    ranks = np.zeros(len(scores), dtype=np.int32)
    groups: Dict[str, List[int]] = {}
    for i, qid in enumerate(query_ids):
        groups.setdefault(qid, []).append(i)
    for rows in groups.values():
        idx = np.asarray(rows)
        order = idx[np.argsort(-scores[idx], kind="stable")]
        ranks[order] = np.arange(1, len(idx) + 1, dtype=np.int32)
    return ranks


def _to_float32(values: Any) -> np.ndarray:
    """Tensor or array (possibly fp16/bf16 on an accelerator) -> float32 numpy, losslessly."""
    if hasattr(values, "detach"):
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float32)


def _embed(loaded: LoadedModel, corpus: Corpus, options: RunOptions) -> Tuple[ModelRows, int]:
    """Documents and queries in two ``encode`` calls, as a search system embeds them."""
    parts = []
    for texts in (corpus.documents, corpus.queries):
        encoded = loaded.model.encode(
            [t.text for t in texts],
            batch_size=options.batch_size,
            show_progress_bar=options.progress,
            convert_to_tensor=True,
        )
        parts.append(_to_float32(encoded))
    vectors = np.concatenate(parts)
    ids = [t.id for t in corpus.documents] + [t.id for t in corpus.queries]
    roles = ["document"] * len(corpus.documents) + ["query"] * len(corpus.queries)
    return ModelRows(model_id=loaded.spec.id, task="embed", item_ids=ids, roles=roles, vectors=vectors), len(ids)


def _rerank(loaded: LoadedModel, corpus: Corpus, options: RunOptions) -> Tuple[ModelRows, int]:
    """Every (query, candidate) pair in one ``predict`` call; ranks are computed per query."""
    texts = {t.id: t.text for t in corpus.texts()}
    pairs = corpus.pairs
    scores = _to_float32(
        loaded.model.predict(
            [(texts[p.query_id], texts[p.passage_id]) for p in pairs],
            batch_size=options.batch_size,
            show_progress_bar=options.progress,
            convert_to_tensor=True,
        )
    )
    if scores.ndim > 1:
        scores = scores[:, 0] if scores.shape[1] == 1 else scores.max(axis=1)
    query_ids = [p.query_id for p in pairs]
    rows = ModelRows(
        model_id=loaded.spec.id,
        task="rerank",
        item_ids=[f"{p.query_id}|{p.passage_id}" for p in pairs],
        query_ids=query_ids,
        passage_ids=[p.passage_id for p in pairs],
        scores=scores,
        ranks=rank_within_queries(query_ids, scores),
    )
    return rows, len(pairs)


def _run_model(spec: ModelSpec, corpus: Corpus, options: RunOptions, device: str) -> Tuple[Optional[ModelRows], Dict[str, Any]]:
    import torch

    info: Dict[str, Any] = {"kind": spec.kind, "source": spec.describe()}
    started = time.perf_counter()
    directory, found_via = resolve_model_dir(spec, allow_network=options.allow_network, registry=options.registry)
    info.update(directory=str(directory), found_via=found_via)
    try:
        loaded = load_model(
            spec,
            directory,
            found_via,
            device=device,
            dtype=options.dtype,
            attn_implementation=options.attn_implementation,
            trust_remote_code=options.trust_remote_code,
        )
    except Incompatible as err:
        info.update(status="incompatible", reason=err.reason, saved_versions=err.saved)
        return None, info
    info.update(loaded.info, load_s=round(time.perf_counter() - started, 4))
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    compute_started = time.perf_counter()
    with torch.inference_mode():
        rows, count = (_embed if spec.kind == "bi-encoder" else _rerank)(loaded, corpus, options)
    elapsed = time.perf_counter() - compute_started
    info.update(
        status="ok",
        compute_s=round(elapsed, 4),
        items=count,
        items_per_s=round(count / elapsed, 2) if elapsed > 0 else None,
    )
    if rows.vectors is not None:
        info.update(dim=int(rows.vectors.shape[1]), vector_dtype="float32")
    if device.startswith("cuda"):
        info["cuda_peak_memory_bytes"] = int(torch.cuda.max_memory_allocated())
    return rows, info


def run(options: RunOptions) -> RunSummary:
    """Run every selected model over the corpus and write the results file atomically."""
    if options.dtype not in DTYPES:
        raise HarnessError(f"--dtype must be one of {', '.join(DTYPES)}, got '{options.dtype}'")
    if options.batch_size < 1:
        raise HarnessError(f"--batch-size must be >= 1, got {options.batch_size}")
    if not options.allow_network:
        # Offline by default: nothing in transformers or huggingface_hub may reach for the network.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
    corpus = load_corpus(options.corpus_dir)
    specs = options.registry.select(options.models)
    device = pick_device(options.device)
    _configure_torch(options)
    started = _dt.datetime.now(_dt.timezone.utc)
    fingerprint = collect_fingerprint(device, options.dtype)
    all_rows: List[ModelRows] = []
    models: Dict[str, Dict[str, Any]] = {}
    for spec in specs:
        rows, info = _run_model(spec, corpus, options, device)
        models[spec.id] = info
        if rows is not None:
            all_rows.append(rows)
    metadata = {
        "harness_version": harness.__version__,
        "created_at": started.isoformat(timespec="seconds"),
        "cell_id": options.cell_id,
        "corpus": {
            "name": corpus.name,
            "version": corpus.version,
            "sha256": corpus.sha256,
            "documents": len(corpus.documents),
            "queries": len(corpus.queries),
            "pairs": len(corpus.pairs),
        },
        "run": {
            "device": device,
            "device_requested": options.device,
            "dtype": options.dtype,
            "batch_size": options.batch_size,
            "tf32_requested": options.tf32,
            "threads_requested": options.threads,
            "attn_implementation_requested": options.attn_implementation,
            "allow_network": options.allow_network,
            "duration_s": round((_dt.datetime.now(_dt.timezone.utc) - started).total_seconds(), 3),
        },
        "fingerprint": fingerprint,
        "models": models,
    }
    path = write_results(options.out, all_rows, metadata)
    return RunSummary(
        path=path,
        statuses={k: v["status"] for k, v in models.items()},
        reasons={k: v.get("reason", "") for k, v in models.items()},
    )
