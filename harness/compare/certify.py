"""Filing and finding top-k certificates (``stats.certify.Certificate``; docs/explanation/judge.md): built by the
judge's own retrieval code (the baseline streamed against itself, k from the policy's class for its own
environment), keyed by the baseline's identity, the model and k, read a query batch at a time; the comparator reads
them (``hint``), the judge never does, and one that does not describe these queries and documents is not used.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Tuple

import numpy as np

from harness.compare import quantized
from harness.compare.kinds.retrieval import Retrieval, RetrievalWorker, retrieval_k, run_pass
from harness.compare.kinds.source import FilePair
from harness.compare.stats.certify import Certificate, width
from harness.compare.streaming import ZERO_VECTORS, Segment
from harness.config.environment import CompareSettings
from harness.config.policy import Policy, Tolerance, choose_class, load_policy
from harness.fsio import atomic_output
from harness.paths import cache_dir
from harness.results import ModelRecord, ResultsFile

__all__ = ["Certificate", "CertificateFile", "build", "enabled", "file_certificates", "filed", "hint", "identity",
           "save", "width"]

FORMAT = 3


def enabled(queries: int, documents: int, path: Any, settings: CompareSettings) -> bool:
    """Whether a comparison of this size against this baseline uses certificates (local files only)."""
    return settings.certificates and isinstance(path, Path) and queries * documents >= settings.certify_min_pairs


def _records(width: int) -> np.dtype:
    """One query's record in the certificate file."""
    return np.dtype([("query", "<i8"), ("positions", "<i8", (width,)), ("scores", "<f8", (width,))])


#: queries read (or checked) at a time from a certificate file
READ_ROWS = 16384


@dataclass(frozen=True)
class CertificateFile:
    """A filed certificate (a ``.npy`` of records), read a query batch at a time (``rows``): each read maps the
    file anew and lets go of it, so no more than a batch stays in memory."""

    path: Path

    def rows(self, start: int, stop: int) -> Certificate:
        """The queries ``start:stop``, in memory."""
        part = np.load(self.path, mmap_mode="r", allow_pickle=False)[start:stop]
        return Certificate(positions=np.array(part["positions"]), scores=np.array(part["scores"]))


def _plausible(positions: np.ndarray, scores: np.ndarray, documents: np.ndarray) -> bool:
    """Whether these rows could be a baseline's top documents: known document positions, distinct per query,
    finite scores sorted best first."""
    if not len(positions):
        return True
    known = (positions >= 0).all() and (positions < len(documents)).all() and documents[positions].all()
    return bool(known and np.isfinite(scores).all() and not (np.diff(scores, axis=1) > 0).any()
                and not (np.diff(np.sort(positions, axis=1), axis=1) == 0).any())


def identity(path: Path) -> str:
    """The baseline's key: SHA-256 of its size and parquet footer (the footer's length is in the last 8 bytes)."""
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - 8))
        tail = handle.read(8)
        length = int.from_bytes(tail[:4], "little") if len(tail) == 8 else 0
        handle.seek(max(0, size - 8 - length))
        footer = handle.read(length + 8)
    return hashlib.sha256(str(size).encode() + b"\0" + footer).hexdigest()


def location(path: Path, model_id: str, k: int, root: Optional[Path] = None) -> Path:
    """Where the certificate of one baseline file, model and k is filed."""
    model = hashlib.sha256(model_id.encode()).hexdigest()[:32]
    return (root or cache_dir()) / "topk-certificates" / identity(path) / f"{model}-k{int(k)}.v{FORMAT}.npy"


def filed(path: Any, model_id: str, k: int, queries: np.ndarray, documents: np.ndarray, settings: CompareSettings,
         root: Optional[Path] = None) -> Optional[CertificateFile]:
    """The certificate filed for this baseline, model and k if there is one for exactly these query rows and
    document rows; None otherwise (missing, unreadable, truncated, stale or turned off: the judge then scores)."""
    if not enabled(len(queries), int(np.asarray(documents).sum()), path, settings):
        return None
    try:
        target, queries = location(path, model_id, k, root), np.asarray(queries, dtype=np.int64)
        records = np.load(target, mmap_mode="r", allow_pickle=False)
        if records.shape != (len(queries),) or records.dtype != _records(width(k, int(documents.sum()))):
            return None
        for start in range(0, len(queries), READ_ROWS):
            part = records[start : start + READ_ROWS]
            if not (np.array_equal(part["query"], queries[start : start + READ_ROWS])
                    and _plausible(np.asarray(part["positions"]), np.asarray(part["scores"]), documents)):
                return None
    except Exception:  # noqa: BLE001 - a cache: anything wrong with it means no certificate
        return None
    return CertificateFile(target)


def save(path: Path, model_id: str, k: int, queries: np.ndarray, cert: Certificate,
         root: Optional[Path] = None) -> Path:
    """File ``cert`` (the baseline's top ``width(k)`` per query, in the order of ``queries``), atomically."""
    target = location(path, model_id, k, root)
    records = np.empty(len(queries), dtype=_records(cert.width))
    records["query"], records["positions"], records["scores"] = queries, cert.positions, cert.scores
    with atomic_output(target) as tmp, open(tmp, "wb") as handle:
        np.save(handle, records, allow_pickle=False)
    return target


def _certifiable(results: ResultsFile, model_id: str) -> bool:
    info = results.records.get(model_id, ModelRecord())
    return (info.kind == "bi-encoder" and (info.status or "ok") == "ok"
            and info.precision not in quantized.PRECISIONS)


def hint(pair: FilePair, tol: Tolerance) -> Optional[CertificateFile]:
    """The certificate filed for the pair's baseline at this tolerance's k, if there is a usable one."""
    k = retrieval_k(pair, tol.topk)
    return None if k is None else filed(pair.base.path, pair.model_id, k, pair.queries, pair.documents, pair.settings)


def build(pair: FilePair, k: int, tie_tolerance: float) -> Certificate:
    """The baseline's best ``width(k)`` documents per query, by one exact pass per query batch over ``pair``;
    rows without a direction (NaN/Inf, all zeros) are refused as the judge refuses them."""
    retrieval = Retrieval(pair, k, tie_tolerance, collect=True)
    nonfinite: List[int] = []
    zeros: List[int] = []

    def check(segment: Segment) -> None:  # every segment, in the reading thread
        position, base, _ = segment
        nonfinite.extend((position + np.flatnonzero(~np.isfinite(base).all(axis=1))).tolist())
        zeros.extend((position + np.flatnonzero(~base.any(axis=1))).tolist())

    first = run_pass(pair, [RetrievalWorker(retrieval) for _ in range(max(1, pair.threads))], retrieval, check)
    if nonfinite:
        pair.refuse_nonfinite(nonfinite, [])
    if zeros:
        pair.refuse_nonfinite(zeros, [], problem=ZERO_VECTORS)
    assert first.topk is not None
    retrieval.finish(first.topk)
    cert = retrieval.certificate()
    assert cert is not None, "certify: an exact pass kept no top documents"
    return cert


def file_certificates(path: str | Path, policy: Optional[Policy] = None,
                      settings: Optional[CompareSettings] = None) -> List[Tuple[str, int]]:
    """File the certificates of every float bi-encoder in the baseline ``path`` large enough to use one; returns
    (model id, queries) of those filed. Small ones are left alone (nothing read past their ids and roles)."""
    results = ResultsFile(Path(path))
    policy = policy or load_policy()
    settings = settings or CompareSettings.from_environment()
    filed = []
    for model_id in sorted(results.records):
        if not _certifiable(results, model_id):
            continue
        pair = FilePair(results, results, model_id, settings)
        tol = policy.tolerance(model_id, choose_class(policy, results.side(model_id), results.side(model_id))[0])
        k = retrieval_k(pair, tol.topk)
        if k is None or not enabled(len(pair.queries), int(pair.documents.sum()), results.path, settings):
            continue
        save(Path(results.path), model_id, k, pair.queries, build(pair, k, tol.tie_tolerance))
        filed.append((model_id, len(pair.queries)))
    return filed
