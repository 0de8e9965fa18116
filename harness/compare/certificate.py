"""The baseline's exact top-(k+1) per query, kept beside the harness's cache so that later comparisons against
the same baseline can prove top-k agreement instead of scoring every query against every document
(``harness.compare.stats.certify``).

A certificate is keyed by the baseline file's content hash (SHA-256 of its bytes), the model and k:
``<cache_dir>/topk-certificates/<sha256>/<sha256 of model id>-k<k>.v2.npy``, written atomically. It is one
``.npy`` array of records (query position, W document positions, W scores), written and read a query batch at a
time (``CertificateWriter``, ``CertificateFile.rows``): memory follows the comparison's query batches, never the
number of queries. Hashing a 1.5 GB file costs seconds, so an index entry per file path remembers the hash with
the file's stat signature (size, mtime, ctime, inode, device), as git's index does; it is trusted only when the
signature is unchanged and the file was last changed well before it was hashed (a change within the same clock
tick would keep the signature). Otherwise the file is hashed again in a background thread while the comparison
streams, and a certificate used meanwhile counts only if the hash it was filed under is confirmed
(``Lookup.confirmed``); if not, the comparison scores every query exactly. A certificate that does not match what
it should describe (queries, documents, shapes, sorted finite scores) is ignored and rebuilt: a cache is never
trusted over the data.

``HARNESS_TOPK_CERTIFICATES=0`` turns it off; comparisons under ``CERTIFY_MIN_PAIRS`` query-document pairs
never use it (scoring them exactly is cheap).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from harness.config.environment import setting
from harness.fsio import atomic_output, write_text
from harness.paths import cache_dir

__all__ = ["CERTIFY_MIN_PAIRS", "EXTRA", "Certificate", "CertificateFile", "CertificateWriter", "Lookup", "enabled",
           "width"]

FORMAT = 2
#: documents kept per query beyond k + 1: a query whose k-th and (k+1)-th scores are too close for the bound is
#: still decided from the certificate when its k-th clears the last of these (by both sides' exact scores of
#: these documents alone, gathered as they stream by)
EXTRA = 10


def width(k: int, documents: int) -> int:
    """Documents a certificate keeps per query: the best k + 1 + ``EXTRA``, or all there are."""
    return min(int(k) + 1 + EXTRA, int(documents))
#: below this many query x document pairs the exact top-k is cheap (100 queries x 500k documents: ~0.4 s)
CERTIFY_MIN_PAIRS = int(setting("HARNESS_TOPK_CERTIFY_MIN_PAIRS"))
#: a stat signature is trusted only if the file's last change is this long before the hash was taken
RACY_NS = 2_000_000_000


def enabled(queries: int, documents: int, path: Any) -> bool:
    """Whether a comparison of this size against this baseline uses certificates (local files only)."""
    return (os.environ.get("HARNESS_TOPK_CERTIFICATES", "1") != "0" and isinstance(path, Path)
            and queries * documents >= CERTIFY_MIN_PAIRS)


@dataclass(frozen=True)
class Certificate:
    """Per query (in the order of the baseline's query rows), the baseline's best ``width(k, documents)``
    documents, best first with ties by position: baseline positions and exact cosines."""

    positions: np.ndarray
    scores: np.ndarray

    @property
    def width(self) -> int:
        return int(self.scores.shape[1]) if self.scores.ndim == 2 else 0

    def rows(self, start: int, stop: int) -> "Certificate":
        """The queries ``start:stop`` (a query batch)."""
        return Certificate(positions=self.positions[start:stop], scores=self.scores[start:stop])


def _records(width: int) -> np.dtype:
    """One query's record in the certificate file."""
    return np.dtype([("query", "<i8"), ("positions", "<i8", (width,)), ("scores", "<f8", (width,))])


#: queries read (or checked) at a time from a certificate file
READ_ROWS = 16384


class CertificateFile:
    """A filed certificate, read a query batch at a time (``rows``); checked whole, in batches, by ``open``."""

    def __init__(self, path: Path, count: int, width: int, offset: int) -> None:
        self.path, self.count, self.width, self.offset = path, count, width, offset
        self.dtype = _records(width)

    @classmethod
    def open(cls, path: Path, queries: np.ndarray, documents: np.ndarray, k: int) -> Optional["CertificateFile"]:
        """The certificate at ``path`` if it is one for exactly these query rows and document rows (k's width);
        None if it is missing, truncated, corrupt or describes something else."""
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version != (1, 0):
                return None
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            offset = handle.tell()
        n_docs = int(documents.sum())
        expected = width(k, n_docs)
        if fortran or shape != (len(queries),) or dtype != _records(expected):
            return None
        cert = cls(path, len(queries), expected, offset)
        if path.stat().st_size != offset + len(queries) * cert.dtype.itemsize:
            return None
        for start in range(0, len(queries), READ_ROWS):
            stop = min(len(queries), start + READ_ROWS)
            records = cert._read(start, stop)
            if not np.array_equal(records["query"], queries[start:stop]):
                return None
            if not _plausible(records["positions"], records["scores"], documents):
                return None
        return cert

    def _read(self, start: int, stop: int) -> np.ndarray:
        with open(self.path, "rb") as handle:
            handle.seek(self.offset + start * self.dtype.itemsize)
            records = np.fromfile(handle, dtype=self.dtype, count=stop - start)
        if len(records) != stop - start:
            raise OSError(f"{self.path}: certificate ended early")
        return records

    def rows(self, start: int, stop: int) -> Certificate:
        """The queries ``start:stop``, in memory."""
        records = self._read(start, stop)
        return Certificate(positions=np.ascontiguousarray(records["positions"]),
                           scores=np.ascontiguousarray(records["scores"]))


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


class CertificateWriter:
    """Writes a certificate a query batch at a time (``append``, in query order) into a temporary file that
    replaces the filed one only when every query was written and the comparison did not fail; a cache write that
    fails is dropped, never a comparison error."""

    def __init__(self, target: Path, queries: np.ndarray, width: int) -> None:
        self.queries, self.width, self.written = np.asarray(queries, dtype=np.int64), int(width), 0
        self.dtype = _records(self.width)
        self._stack = contextlib.ExitStack()
        self._handle: Optional[Any] = None
        try:
            tmp = self._stack.enter_context(atomic_output(target))
            self._handle = self._stack.enter_context(open(tmp, "wb"))
            np.lib.format.write_array_header_1_0(self._handle, {
                "descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                "shape": (len(self.queries),)})
        except OSError:
            self._drop()

    def append(self, cert: Certificate) -> None:
        if self._handle is None:
            return
        count = len(cert.positions)
        records = np.empty(count, dtype=self.dtype)
        records["query"] = self.queries[self.written : self.written + count]
        records["positions"], records["scores"] = cert.positions, cert.scores
        try:
            records.tofile(self._handle)
        except OSError:
            self._drop()
        self.written += count

    def _drop(self) -> None:
        self._handle = None
        with contextlib.suppress(Exception):
            self._stack.__exit__(OSError, OSError("dropped"), None)  # atomic_output removes the temporary file

    def close(self, ok: bool) -> None:
        """File it (``ok`` and complete) or drop it."""
        if self._handle is None:
            return
        if not ok or self.written != len(self.queries):
            self._drop()
            return
        self._handle = None
        with contextlib.suppress(OSError):
            self._stack.close()


def _signature(path: Path) -> Dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino,
            "dev": st.st_dev}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(8 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Lookup:
    """The certificate for one baseline file, model and k: ``certificate`` (None when there is none usable yet),
    ``confirmed()`` (the baseline's content is the one it was filed under), ``save`` (after an exact pass)."""

    def __init__(self, path: Path, model_id: str, k: int, root: Optional[Path] = None) -> None:
        self.path, self.model_id, self.k = path, model_id, int(k)
        self.root = (root or cache_dir()) / "topk-certificates"
        self.index = self.root / "index" / (hashlib.sha256(str(path.resolve()).encode()).hexdigest() + ".json")
        self.certificate: Optional[CertificateFile] = None
        self.filed_under: Optional[str] = None  # the content hash the loaded certificate was filed under
        self._hash: Optional[str] = None
        self._thread: Optional[threading.Thread] = None
        self._hash_error: Optional[BaseException] = None
        known = self._from_index()
        if known is None:
            self._thread = threading.Thread(target=self._hash_now, name="harness-compare-hash", daemon=True)
            self._thread.start()
        self._known = known

    def _from_index(self) -> Optional[str]:
        """The content hash remembered for this file's unchanged stat signature, or None (and the remembered hash,
        trusted or not, in ``self._guess``)."""
        self._guess: Optional[str] = None
        try:
            entry = json.loads(self.index.read_text(encoding="utf-8"))
            self._guess = str(entry["sha256"])
            signature = _signature(self.path)
            if entry["signature"] == signature and signature["ctime_ns"] + RACY_NS < int(entry["hashed_at_ns"]):
                return self._guess
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return None

    def _hash_now(self) -> None:
        try:
            started = time.time_ns()
            before = _signature(self.path)
            digest = _sha256(self.path)
            if _signature(self.path) != before:
                return  # changed while hashing: nothing is remembered, nothing confirmed
            self._hash = digest
            with contextlib.suppress(OSError):
                write_text(self.index, json.dumps({"path": str(self.path.resolve()), "sha256": digest,
                                                   "signature": before, "hashed_at_ns": started}))
        except BaseException as err:  # noqa: BLE001 - an unreadable file just means no certificate
            self._hash_error = err

    def content_hash(self) -> Optional[str]:
        """The baseline's content hash, waiting for the background hash if one runs (None if it failed)."""
        if self._known is not None:
            return self._known
        if self._thread is not None:
            self._thread.join()
        return self._hash

    def _file(self, digest: str) -> Path:
        return self.root / digest / f"{hashlib.sha256(self.model_id.encode()).hexdigest()[:32]}-k{self.k}.v{FORMAT}.npy"

    def load(self, queries: np.ndarray, documents: np.ndarray) -> Optional[CertificateFile]:
        """The certificate filed under the known (or remembered) content hash, if it describes these queries and
        documents; else None. Sets ``certificate``."""
        digest = self._known or self._guess
        if digest is None:
            return None
        try:
            cert = CertificateFile.open(self._file(digest), np.asarray(queries, dtype=np.int64), documents, self.k)
        except Exception:  # noqa: BLE001 - missing, truncated, corrupt or stale: ignored, rebuilt
            cert = None
        self.certificate, self.filed_under = cert, digest if cert is not None else None
        return cert

    def confirmed(self) -> bool:
        """Whether the loaded certificate was filed under the baseline's actual content hash."""
        return self.certificate is not None and self.content_hash() == self.filed_under

    def filed(self) -> bool:
        """Whether a certificate file exists under the baseline's content hash (not validated: ``load`` does)."""
        digest = self.content_hash()
        return digest is not None and self._file(digest).is_file()

    def writer(self, queries: np.ndarray, width: int) -> Optional[CertificateWriter]:
        """A writer filing a new certificate under the content hash (None when the file could not be hashed)."""
        digest = self.content_hash()
        return None if digest is None else CertificateWriter(self._file(digest), queries, width)
