"""The baseline's exact top-(k+1+EXTRA) per query, filed by an explicit step (``harness baseline certify``, and
``harness baseline create/update``: ``harness.compare.certify``) so that comparisons against that baseline can prove
top-k agreement instead of scoring every query against every document (``harness.compare.stats.certify``).

The judge never files or looks up a certificate: the comparator reads the one filed for a baseline (``find``) and
hands it to the judge as a hint; without one the judge scores every query exactly (same verdict, slower).

A certificate is keyed by the baseline's identity (``identity``: SHA-256 of the file's size and parquet footer, a few
KB read: the footer holds every row group's offsets, sizes and column statistics and the ``harness`` metadata with
its creation time, so any rewrite of the file gives another key), the model and k:
``<cache_dir>/topk-certificates/<identity>/<sha256 of model id>-k<k>.v3.npy``, written atomically, one ``.npy``
array of records (query position, W document positions, W scores), read a query batch at a time
(``CertificateFile.rows``). Nothing hashes the whole baseline. A certificate is also checked against the data
while the comparison streams: a query whose W documents' baseline scores are not the certificate's is scored
exactly (``CertifyStream.certified``), and one that does not describe these queries and documents (shapes,
positions, sorted finite scores) is not used: a cache is never trusted over the data.

``CompareSettings.certificates`` (``HARNESS_TOPK_CERTIFICATES=0``) turns the lookup off; comparisons under its
``certify_min_pairs`` query-document pairs never use one (scoring them exactly is cheap).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from harness.config.environment import CompareSettings
from harness.fsio import atomic_output
from harness.paths import cache_dir

__all__ = ["EXTRA", "Certificate", "CertificateFile", "enabled", "find", "identity", "save", "width"]

FORMAT = 3
#: documents kept per query beyond k + 1: a query whose k-th and (k+1)-th scores are too close for the bound is
#: still decided from the certificate when its k-th clears the last of these (by both sides' exact scores of
#: these documents alone, gathered as they stream by)
EXTRA = 10


def width(k: int, documents: int) -> int:
    """Documents a certificate keeps per query: the best k + 1 + ``EXTRA``, or all there are."""
    return min(int(k) + 1 + EXTRA, int(documents))


def enabled(queries: int, documents: int, path: Any, settings: CompareSettings) -> bool:
    """Whether a comparison of this size against this baseline uses certificates (local files only)."""
    return settings.certificates and isinstance(path, Path) and queries * documents >= settings.certify_min_pairs


@dataclass(frozen=True)
class Certificate:
    """Per query (in the order of the baseline's query rows), the baseline's best ``width(k, documents)``
    documents, best first with ties by position: baseline positions and exact cosines."""

    positions: np.ndarray
    scores: np.ndarray

    @property
    def width(self) -> int:
        return int(self.scores.shape[1]) if self.scores.ndim == 2 else 0

    def rows(self, start: int, stop: int) -> Certificate:
        """The queries ``start:stop`` (a query batch)."""
        return Certificate(positions=self.positions[start:stop], scores=self.scores[start:stop])


def _records(width: int) -> np.dtype:
    """One query's record in the certificate file."""
    return np.dtype([("query", "<i8"), ("positions", "<i8", (width,)), ("scores", "<f8", (width,))])


#: queries read (or checked) at a time from a certificate file
READ_ROWS = 16384


class CertificateFile:
    """A filed certificate (a ``.npy`` of records), read a query batch at a time (``rows``): each read maps the
    file anew and lets go of it, so no more than a batch stays in memory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def open(cls, path: Path, queries: np.ndarray, documents: np.ndarray, k: int) -> Optional[CertificateFile]:
        """The certificate at ``path`` if it is one for exactly these query rows and document rows (k's width);
        None if it describes something else (a missing, truncated or corrupt file raises: ``find`` says None)."""
        records = np.load(path, mmap_mode="r", allow_pickle=False)
        if records.shape != (len(queries),) or records.dtype != _records(width(k, int(documents.sum()))):
            return None
        for start in range(0, len(queries), READ_ROWS):
            part = records[start : start + READ_ROWS]
            if not np.array_equal(part["query"], queries[start : start + READ_ROWS]):
                return None
            if not _plausible(np.asarray(part["positions"]), np.asarray(part["scores"]), documents):
                return None
        return cls(path)

    def rows(self, start: int, stop: int) -> Certificate:
        """The queries ``start:stop``, in memory."""
        part = np.load(self.path, mmap_mode="r", allow_pickle=False)[start:stop]
        return Certificate(positions=np.array(part["positions"]), scores=np.array(part["scores"]))


def _plausible(positions: np.ndarray, scores: np.ndarray, documents: np.ndarray) -> bool:
    """Whether these rows could be a baseline's top documents: known document positions, distinct per query,
    finite scores sorted best first."""
    if not len(positions):
        return True
    if not np.isfinite(scores).all() or (np.diff(scores, axis=1) > 0).any():
        return False
    if (positions < 0).any() or (positions >= len(documents)).any() or not documents[positions].all():
        return False
    return not (np.diff(np.sort(positions, axis=1), axis=1) == 0).any()


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


def find(path: Any, model_id: str, k: int, queries: np.ndarray, documents: np.ndarray, settings: CompareSettings,
         root: Optional[Path] = None) -> Optional[CertificateFile]:
    """The certificate filed for this baseline, model and k if there is one that describes these query rows and
    document rows; None otherwise (missing, unreadable, truncated, stale or turned off: the judge then scores)."""
    n_docs = int(np.asarray(documents).sum())
    if not enabled(len(queries), n_docs, path, settings):
        return None
    try:
        return CertificateFile.open(location(path, model_id, k, root), np.asarray(queries, dtype=np.int64), documents, k)
    except Exception:  # noqa: BLE001 - a cache: anything wrong with it means no certificate
        return None


def save(path: Path, model_id: str, k: int, queries: np.ndarray, cert: Certificate,
         root: Optional[Path] = None) -> Path:
    """File ``cert`` (the baseline's top ``width(k)`` per query, in the order of ``queries``), atomically."""
    target = location(path, model_id, k, root)
    records = np.empty(len(queries), dtype=_records(cert.width))
    records["query"], records["positions"], records["scores"] = queries, cert.positions, cert.scores
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(target) as tmp, open(tmp, "wb") as handle:
        np.save(handle, records, allow_pickle=False)
    return target
