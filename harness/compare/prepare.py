"""Filing a new baseline's top-k certificates when it is created (``harness baseline create``), so that the first
comparison against it is already the certified one instead of paying the exact pass (``harness.compare.certificate``).

The certificate is built by the one judge: the baseline compared with itself, which for a bi-encoder large enough
to use certificates scores every query exactly and files the baseline's best ``width(k)`` documents per query
(with k from the policy's class for the baseline's own environment; a later comparison that selects a class with
another k builds its own lazily, as before).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from harness.compare import certificate as certs
from harness.compare.comparator import compare_results
from harness.compare.policy import Policy
from harness.results import ResultsFile

__all__ = ["file_certificates"]


def _sizes(results: ResultsFile, model_id: str) -> Tuple[int, int]:
    """Queries and documents of one bi-encoder (its role column only)."""
    roles = np.asarray(results.model_columns(model_id, ["role"])["role"].to_pylist(), dtype=object)
    return int((roles == "query").sum()), int((roles == "document").sum())


def file_certificates(path: "str | Path", policy: Optional[Policy] = None) -> List[Tuple[str, int]]:
    """File the certificates of every bi-encoder in the baseline ``path`` that is large enough to use one;
    returns (model id, queries) of those filed. Nothing is done (and nothing read past the roles) for small ones."""
    results = ResultsFile(Path(path))
    large = []
    for model_id, info in results.models.items():
        if info.get("kind") != "bi-encoder" or info.get("status", "ok") != "ok":
            continue
        queries, documents = _sizes(results, model_id)
        if queries and documents and certs.enabled(queries, documents, results.path):
            large.append((model_id, queries))
    if not large:
        return []
    comparison = compare_results(results, results, policy, models=[m for m, _ in large])
    filed = []
    for verdict in comparison.models:
        k = verdict.metrics.get("topk")
        if k is None:
            continue
        lookup = certs.Lookup(results.path, verdict.model_id, int(k))
        if lookup.filed():
            filed.append(next((m, q) for m, q in large if m == verdict.model_id))
    return filed
