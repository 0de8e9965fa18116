"""Filing a baseline's top-k certificates: the explicit step (``harness baseline certify``, and after
``harness baseline create/update``) that makes later comparisons against a large baseline prove most queries'
top-k instead of scoring every query against every document (``harness.compare.certificate``).

The certificate is built by the judge's own retrieval code (``kinds.retrieval.Retrieval`` with ``collect``): the
baseline streamed against itself, every query scored exactly, its best ``width(k)`` documents kept, with k from the
policy's class for the baseline's own environment. A comparison that selects a class with another k finds no
certificate and scores exactly (the same verdict). The comparator reads certificates (``hint``); the judge never
does.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from harness.compare import certificate as certs
from harness.compare import quantized
from harness.compare.kinds.embedding import retrieval_k
from harness.compare.kinds.retrieval import Retrieval, Source
from harness.compare.kinds.source import FilePair
from harness.compare.policy import Policy, Tolerance, choose_class, load_policy
from harness.compare.streaming import ZERO_VECTORS
from harness.config.environment import CompareSettings
from harness.results import ResultsFile

__all__ = ["build", "file_certificates", "hint"]


def _certifiable(results: ResultsFile, model_id: str) -> bool:
    info = results.models.get(model_id, {})
    return (info.get("kind") == "bi-encoder" and info.get("status", "ok") == "ok"
            and not quantized.is_quantized(info))


def hint(pair: FilePair, tol: Tolerance) -> Optional[Source]:
    """The certificate filed for the pair's baseline at this tolerance's k, if there is a usable one."""
    k = retrieval_k(pair, tol.topk)
    if k is None:
        return None
    return certs.find(pair.base.path, pair.model_id, k, pair.queries, pair.documents, pair.settings)


def build(pair: FilePair, k: int, tie_tolerance: float) -> certs.Certificate:
    """The baseline's best ``width(k)`` documents per query, by one exact pass per query batch over ``pair``;
    rows without a direction (NaN/Inf, all zeros) are refused as the judge refuses them."""
    retrieval = Retrieval(pair, k, tie_tolerance, collect=True)
    accumulators = [retrieval.accumulators() for _ in range(max(1, pair.threads))]
    nonfinite: List[int] = []
    zeros: List[int] = []

    def worker(acc: object) -> object:
        def add(segment: Tuple[int, np.ndarray, np.ndarray]) -> None:
            position, rows = segment[0], segment[1]
            nonfinite.extend((position + np.flatnonzero(~np.isfinite(rows).all(axis=1))).tolist())
            zeros.extend((position + np.flatnonzero(~rows.any(axis=1))).tolist())
            with np.errstate(invalid="ignore", over="ignore"):
                retrieval.add_segment(acc, *segment)  # type: ignore[arg-type]
        return add

    pair.feed([worker(a) for a in accumulators], held_bytes=retrieval.held_bytes,  # type: ignore[misc]
              what=retrieval.pass_name(0))
    if nonfinite:
        pair.refuse_nonfinite(nonfinite, [])
    if zeros:
        pair.refuse_nonfinite(zeros, [], problem=ZERO_VECTORS)
    first, *others = accumulators
    for other in others:
        first.merge(other)
    retrieval.finish(first)
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
    for model_id in sorted(results.models):
        if not _certifiable(results, model_id):
            continue
        pair = FilePair(results, results, model_id, settings)
        info = results.models[model_id]
        tol = policy.tolerance(model_id, choose_class(policy, results.fingerprint, info, results.fingerprint, info)[0])
        k = retrieval_k(pair, tol.topk)
        if k is None or not certs.enabled(len(pair.queries), int(pair.documents.sum()), results.path, settings):
            continue
        cert = build(pair, k, tol.tie_tolerance)
        certs.save(Path(results.path), model_id, k, pair.queries, cert)
        filed.append((model_id, len(pair.queries)))
    return filed
