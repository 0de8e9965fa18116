"""Finding top-k certificates (``stats.certify.Certificate``; docs/explanation/judge.md), filed by
``harness.certificates``: keyed by the baseline's identity, the model and k, read a query batch at a time; the judge
is handed one (``hint``) and never reads the cache itself, and one that does not describe these queries and
documents is not used.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from harness.compare.kinds.source import FilePair
from harness.compare.stats.certify import Certificate, width
from harness.config.environment import CompareSettings
from harness.config.policy import Tolerance
from harness.paths import cache_dir

__all__ = ["FORMAT", "Certificate", "CertificateFile", "enabled", "filed", "hint", "identity", "location",
           "record_dtype", "width"]

FORMAT = 3


def enabled(queries: int, documents: int, path: Any, settings: CompareSettings) -> bool:
    """Whether a comparison of this size against this baseline uses certificates (local files only)."""
    return settings.certificates and isinstance(path, Path) and queries * documents >= settings.certify_min_pairs


def record_dtype(width: int) -> np.dtype:
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
        if records.shape != (len(queries),) or records.dtype != record_dtype(width(k, int(documents.sum()))):
            return None
        for start in range(0, len(queries), READ_ROWS):
            part = records[start : start + READ_ROWS]
            if not (np.array_equal(part["query"], queries[start : start + READ_ROWS])
                    and _plausible(np.asarray(part["positions"]), np.asarray(part["scores"]), documents)):
                return None
    except Exception:  # noqa: BLE001 - a cache: anything wrong with it means no certificate
        return None
    return CertificateFile(target)


def hint(pair: FilePair, tol: Tolerance) -> Optional[CertificateFile]:
    """The certificate filed for the pair's baseline at this tolerance's k, if there is a usable one."""
    k = pair.retrieval_k(tol.topk)
    return None if k is None else filed(pair.base.path, pair.model_id, k, pair.queries, pair.documents, pair.settings)
