"""The float vectors' checks on what the judge's pass measured (``DiffStats``): every element within
``atol + rtol * |baseline|``, every text's cosine above ``min_cosine``; the evidence of where the elements moved and
the worst texts.
"""

from __future__ import annotations

from typing import List

from harness.compare.kinds.common import NAMED, Checked, share, significant
from harness.compare.kinds.source import EmbeddingPair
from harness.compare.stats import DiffStats
from harness.config.policy import Tolerance
from harness.measured import At
from harness.verdict import Check, Evidence, Metrics, Offender

__all__ = ["float_checks"]


def _evidence(pair: EmbeddingPair, tol: Tolerance, st: DiffStats) -> Evidence:
    """Where the elements moved: the worst element, the largest relative difference, the lowest cosine (each
    the first in baseline order among equals, as numpy's argmax/argmin name them), the texts beyond atol."""
    max_abs = max_rel = min_cosine = None
    if st.worst:
        w = st.worst[0]
        max_abs = At(pair.item_id(w.position), w.position, max(w.dim, 0), float(w.value), actual=float(w.cand_value),
                     baseline=float(w.base_value))
        row = st.max_rel_position if st.max_rel_position >= 0 else 0  # nothing moved relatively: the first
        max_rel = At(pair.item_id(row), row, max(st.max_rel_dim, 0), float(st.max_rel))
    if pair.rows:
        row = st.min_cos_position if st.min_cos_position >= 0 else 0  # every cosine exactly 1: the first
        min_cosine = At(pair.item_id(row), row, value=float(st.min_cos), below=int(st.below_cosine))
    beyond = [At(pair.item_id(w.position), w.position, value=float(w.value)) for w in st.worst if w.value > tol.atol]
    return Evidence("embedding", elements=st.count, max_abs=max_abs, max_rel=max_rel, min_cosine=min_cosine,
                    texts_beyond=beyond[:NAMED])


def float_checks(tol: Tolerance, pair: EmbeddingPair, st: DiffStats) -> Checked:
    """The float vectors' checks on ``st`` (the pass's statistics): elements within tolerance, cosines."""
    stats, n_bad = st.summary(), st.bad_elements
    min_cos = st.min_cos if pair.rows else 1.0
    checks: List[Check] = [
        Check("max_abs_diff", stats.max_abs, tol.atol, "<=", n_bad == 0, f"{share(n_bad, st.count)} elements exceed "
              f"atol={significant(tol.atol, stats.max_abs)} + rtol={significant(tol.rtol)}*|baseline|"),
        Check("min_cosine", min_cos, tol.min_cosine, ">=", st.below_cosine == 0,
              f"{st.below_cosine} / {pair.rows} texts below cosine {significant(tol.min_cosine, min_cos)}"),
    ]
    metrics = Metrics(texts=pair.rows, dim=pair.dim, max_abs_diff=stats.max_abs, mean_abs_diff=stats.mean_abs,
                      p99_abs_diff=stats.p99_abs, max_rel_diff=stats.max_rel, min_cosine=min_cos,
                      elements_beyond_tolerance=n_bad, texts_beyond_tolerance=st.texts_beyond,
                      abs_diff_histogram=st.histogram())
    offenders = [Offender(pair.item_id(w.position), w.value, "max_abs_diff",
                          f"cosine {significant(w.cosine, tol.min_cosine)}") for w in st.worst if w.value > 0]
    return Checked(checks, metrics, _evidence(pair, tol, st), {"atol": stats.max_abs, "min_cosine": min_cos}, offenders)
