"""The runner: embed and rerank the fixed corpus in the current environment, write one results file.

Runs inside matrix cells with old libraries: stdlib, numpy and pyarrow at module level (torch and
sentence-transformers inside functions, and not at all for served models only), nothing from the comparator.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

import harness
from harness import paths
from harness.config.corpus import Corpus, load_corpus
from harness.config.registry import ModelSpec, Registry
from harness.errors import HarnessError, ModelLoadError
from harness.fsio import output_lock
from harness.results.meta import CorpusMeta, ModelRecord, ResultsMeta, RunMeta, path_anchors, portable_metadata
from harness.results.schema import ModelRows, rank_within_queries
from harness.results.writer import write_results
from harness.run.encode import check_corpus_fits, count_tokens, embed_texts, score_pairs
from harness.run.fingerprint import collect_client_fingerprint, collect_fingerprint
from harness.run.load import DTYPES, EncodeSettings, Incompatible, LoadedModel, load_model
from harness.run.progress import ProgressEvent, ProgressListener, notify
from harness.run.resolve import resolve_model_dir
from harness.run.served import is_served, run_served
from harness.run.timings import RunTimings

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
    #: a model that cannot run here (``status = "incompatible"``) is recorded in the results file (a matrix cell,
    #: the library's default) instead of failing the run before anything is written (``harness run``'s default)
    record_incompatible: bool = True
    #: called with a ``ProgressEvent`` as each model starts and finishes (the CLI's progress display); how a run
    #: is shown, not what it computes, so two options that differ only here are equal
    on_progress: Optional[ProgressListener] = field(default=None, compare=False)


@dataclass
class RunSummary:
    path: Path
    statuses: Dict[str, str] = field(default_factory=dict)
    reasons: Dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(s == "ok" for s in self.statuses.values())


#: Module attributes that cache the offline switch at import time (huggingface_hub; transformers 4.x).
_OFFLINE_FLAGS = (("huggingface_hub.constants", "HF_HUB_OFFLINE"), ("transformers.utils.hub", "_is_offline_mode"))


def _go_offline() -> None:
    """Offline by default: libraries imported later read the environment, those already imported (a notebook,
    the pytest plugin) have their cached flags set too."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    for module_name, attr in _OFFLINE_FLAGS:
        module = sys.modules.get(module_name)
        if module is not None and hasattr(module, attr):
            setattr(module, attr, True)


def _peak_rss_bytes() -> Optional[int]:
    """This process's peak resident memory: ``VmHWM`` on Linux (``ru_maxrss`` survives fork + exec, so a large
    parent's size would show), else ``getrusage`` (None without it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB elsewhere


#: what shows an NVIDIA driver (Linux) or a GPU torch may drive as ``cuda`` without one (ROCm, WSL)
_DRIVER_SIGNS = ("/proc/driver/nvidia", "/dev/kfd", "/dev/dxg")


def refuse_absent_cuda(requested: str, signs: Optional[Sequence[str]] = None) -> None:
    """``--device cuda`` where no GPU driver can be there (Linux, none of ``signs``, no ``libcuda``), refused
    before torch is imported; anything else is left to ``pick_device``."""
    if not requested.startswith("cuda") or not sys.platform.startswith("linux"):
        return
    if any(os.path.exists(sign) for sign in (_DRIVER_SIGNS if signs is None else signs)):
        return
    import ctypes.util

    if ctypes.util.find_library("cuda") is not None:
        return
    raise HarnessError(f"--device {requested} requested, but this machine has no NVIDIA driver "
                       "(no /proc/driver/nvidia, no libcuda); use --device cpu or auto")


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


def _tokens(counted: List[Optional[Tuple[np.ndarray, np.ndarray]]]) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """``(tokens, truncated)`` of ``ModelRows`` from the counts of its parts, when every part has them."""
    parts = [c for c in counted if c is not None]
    if not counted or len(parts) < len(counted):
        return None, None
    return np.concatenate([c[0] for c in parts]), np.concatenate([c[1] for c in parts])


def _embed(loaded: LoadedModel, corpus: Corpus, options: RunOptions) -> Tuple[List[ModelRows], int]:
    """Documents and queries in two ``encode`` calls, as a search system embeds them, with the model's
    settings (prompts, normalize, truncate_dim, precision: see ``harness.run.encode.embed_texts``)."""
    vectors = embed_texts(loaded, [t.text for t in corpus.documents], [t.text for t in corpus.queries],
                          batch_size=options.batch_size, progress=options.progress)
    prompts = getattr(loaded.model, "prompts", None) or {}
    enc = loaded.encode
    default = prompts.get(enc.default_prompt_name) if isinstance(prompts, dict) else None
    tokens, truncated = _tokens([count_tokens(loaded, [t.text for t in texts], default if applied is None else applied)
                      for texts, applied in ((corpus.documents, enc.document_prompt), (corpus.queries, enc.query_prompt)) if texts])
    rows = ModelRows.embedded(loaded.spec.id, corpus.documents, corpus.queries, vectors, tokens=tokens,
                              truncated=truncated)
    return [rows], len(rows.item_ids)


def _rerank(loaded: LoadedModel, corpus: Corpus, options: RunOptions) -> Tuple[List[ModelRows], int]:
    """Every (query, candidate) pair in one ``predict`` call; ranks are computed per query. One entry per
    output (``harness.run.encode.score_pairs``): the model's id, ``<id>@logits``, ``<id>@label<i>``."""
    texts = {t.id: t.text for t in corpus.texts()}
    pairs = corpus.pairs
    outputs = score_pairs(loaded, [(texts[p.query_id], texts[p.passage_id]) for p in pairs],
                          batch_size=options.batch_size, progress=options.progress)
    tokens, truncated = _tokens([count_tokens(loaded, [(texts[p.query_id], texts[p.passage_id]) for p in pairs])])
    # scores are numpy already (``score_pairs``): float32, or float64 in an fp64 run
    rows = [ModelRows.reranked(loaded.spec.id + suffix, pairs, scores, tokens=tokens, truncated=truncated)
            for suffix, scores, _ in outputs]
    loaded.encode.entries = {loaded.spec.id + suffix: output for suffix, _, output in outputs}
    return rows, len(pairs)


def _run_model(spec: ModelSpec, corpus: Corpus, options: RunOptions, device: str) -> Tuple[List[ModelRows], Dict[str, ModelRecord]]:
    """The rows and the records of every results entry one registry model produces (see ``_entries``)."""
    import torch

    started = time.perf_counter()
    directory, found_via = resolve_model_dir(spec, allow_network=options.allow_network, registry=options.registry)
    located = ModelRecord(kind=spec.kind, source=spec.describe(), directory=str(directory), found_via=found_via)
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
        return [], {spec.id: dataclasses.replace(located, status="incompatible", reason=err.reason, saved_versions=err.saved)}
    load_s = round(time.perf_counter() - started, 4)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)  # of the device this run uses (cuda:N), not the current one
    compute_started = time.perf_counter()
    with torch.inference_mode():
        rows, count = (_embed if spec.kind == "bi-encoder" else _rerank)(loaded, corpus, options)
    elapsed = time.perf_counter() - compute_started
    record = dataclasses.replace(
        loaded.info, kind=spec.kind, source=located.source, directory=located.directory, found_via=found_via, load_s=load_s, status="ok", compute_s=round(elapsed, 4), items=count,
        items_per_s=round(count / elapsed, 2) if elapsed > 0 else None,
        cuda_peak_memory_bytes=int(torch.cuda.max_memory_allocated(device)) if device.startswith("cuda") else None)
    return rows, _entries(spec, rows, record, loaded.encode)


def _entries(spec: ModelSpec, rows: List[ModelRows], record: ModelRecord, encode: EncodeSettings) -> Dict[str, ModelRecord]:
    """The record of each results entry (``ModelRecord.for_entry``) with the settings applied to it (``encode``)."""
    return {entry.model_id: record.for_entry(entry, spec.id, encode.precision or "float32", encode.to_dict(entry.model_id))
            for entry in rows}


def _import_libraries() -> None:
    """torch and sentence-transformers imported up front, so their import time is a phase of its own rather
    than part of the first model's load; a library that fails to import is reported by ``load_model``."""
    import torch  # noqa: F401

    try:
        import sentence_transformers  # noqa: F401
    except Exception:  # noqa: BLE001 - an old or broken install: load_model says why, per model (incompatible)
        pass


def run(options: RunOptions) -> RunSummary:
    """Run every selected model over the corpus and write the results file atomically."""
    timings = RunTimings()
    if options.dtype not in DTYPES:
        raise HarnessError(f"--dtype must be one of {', '.join(DTYPES)}, got '{options.dtype}'")
    if options.batch_size < 1:
        raise HarnessError(f"--batch-size must be >= 1, got {options.batch_size}")
    if not options.allow_network:
        _go_offline()
    corpus = load_corpus(options.corpus_dir)
    specs = options.registry.select(options.models)
    check_corpus_fits(specs, corpus)
    local = [spec for spec in specs if not is_served(spec)]
    if local:
        refuse_absent_cuda(options.device)
        with timings.phase("import"):
            _import_libraries()
    device = pick_device(options.device) if local else "http"
    if local:
        _configure_torch(options)
    started = _dt.datetime.now(_dt.timezone.utc)
    with timings.phase("fingerprint"):
        fingerprint = collect_fingerprint(device, options.dtype) if local else collect_client_fingerprint(options.dtype)
    all_rows: List[ModelRows] = []
    records: Dict[str, ModelRecord] = {}
    served: Dict[str, Dict[str, object]] = {}
    for index, spec in enumerate(specs, 1):
        roles = ((("document", len(corpus.documents)), ("query", len(corpus.queries))) if spec.kind == "bi-encoder"
                 else (("pair", len(corpus.pairs)),))
        event = ProgressEvent("start", spec.id, spec.kind, index, len(specs), roles=roles)
        notify(options.on_progress, event)
        model_started = time.perf_counter()
        if is_served(spec):  # a ServerError propagates: no results file is written
            rows, entries, served[spec.id] = run_served(spec, corpus, options.batch_size)
        else:
            rows, entries = _run_model(spec, corpus, options, device)
        first = next(iter(entries.values()), None)
        notify(options.on_progress, dataclasses.replace(
            event, stage="finish", status=str(first.status) if first else None, items_per_s=first.items_per_s if first else None,
            elapsed_s=round(time.perf_counter() - model_started, 3)))
        timings.model(spec.id, first.load_s if first else None, first.compute_s if first else None)
        records.update(entries)
        all_rows.extend(rows)
    if served:
        fingerprint = {**fingerprint, "served": served}
    failed = [(k, r) for k, r in records.items() if str(r.status) != "ok"]
    if failed and not options.record_incompatible:
        model_id, record = failed[0]
        raise ModelLoadError(f"{model_id}: {record.status}: {record.reason or 'did not run'}; nothing written "
                             f"({len(failed)} of {len(records)} model(s) did not run; --record-incompatible writes "
                             "the results with them recorded as such)")
    metadata = ResultsMeta(
        harness_version=harness.__version__,
        created_at=started.isoformat(timespec="seconds"),
        cell_id=options.cell_id,
        corpus=CorpusMeta(name=corpus.name, version=corpus.version, sha256=corpus.sha256, documents=len(corpus.documents),
                          queries=len(corpus.queries), pairs=len(corpus.pairs)),
        run=RunMeta(
            device=device,
            device_requested=options.device,
            dtype=options.dtype,
            batch_size=options.batch_size,
            tf32_requested=options.tf32,
            threads_requested=options.threads,
            attn_implementation_requested=options.attn_implementation,
            allow_network=options.allow_network,
            duration_s=round((_dt.datetime.now(_dt.timezone.utc) - started).total_seconds(), 3),
            peak_rss_bytes=_peak_rss_bytes(),
        ),
        fingerprint=fingerprint,
        models=records,
    )
    with timings.phase("write"), output_lock(options.out):  # one writer per file; removes temp files of dead writers
        # recorded paths relative to the checkout, site-packages or home: a committed file names no machine's paths
        path = write_results(options.out, all_rows, portable_metadata(metadata.to_dict(), path_anchors(paths.project_root())))
    timings.write()
    return RunSummary(
        path=path,
        statuses={k: str(r.status) for k, r in records.items()},
        reasons={k: r.reason or "" for k, r in records.items()},
    )
