"""Filing top-k certificates (``harness.compare.certify`` finds them for the judge): an explicit step at baseline
create and update and a command of its own (``harness baseline certify``), never part of a comparison. A certificate
is the baseline streamed against itself by the judge's own retrieval code, k from the policy's class for the
baseline's own environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from harness.compare import quantized
from harness.compare.certify import enabled, location, record_dtype
from harness.compare.kinds.retrieval import Retrieval, RetrievalWorker, run_pass
from harness.compare.kinds.source import FilePair
from harness.compare.stats.certify import Certificate
from harness.compare.streaming import ZERO_VECTORS, Segment
from harness.config.environment import CompareSettings
from harness.config.policy import Policy, choose_class, load_policy
from harness.fsio import atomic_output
from harness.results import ModelRecord, ResultsFile

__all__ = ["build", "file_certificates", "save"]


def save(path: Path, model_id: str, k: int, queries: np.ndarray, cert: Certificate,
         root: Optional[Path] = None) -> Path:
    """File ``cert`` (the baseline's top ``width(k)`` per query, in the order of ``queries``), atomically."""
    target = location(path, model_id, k, root)
    records = np.empty(len(queries), dtype=record_dtype(cert.width))
    records["query"], records["positions"], records["scores"] = queries, cert.positions, cert.scores
    with atomic_output(target) as tmp, open(tmp, "wb") as handle:
        np.save(handle, records, allow_pickle=False)
    return target


def _certifiable(results: ResultsFile, model_id: str) -> bool:
    info = results.records.get(model_id, ModelRecord())
    return (info.kind == "bi-encoder" and (info.status or "ok") == "ok"
            and info.precision not in quantized.PRECISIONS)


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
        k = pair.retrieval_k(tol.topk)
        if k is None or not enabled(len(pair.queries), int(pair.documents.sum()), results.path, settings):
            continue
        save(Path(results.path), model_id, k, pair.queries, build(pair, k, tol.tie_tolerance))
        filed.append((model_id, len(pair.queries)))
    return filed
