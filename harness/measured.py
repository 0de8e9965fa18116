"""What a verdict measured, where, and the limits it was judged by, typed: one field per metric (``Metrics``), per
tolerance key (``Tolerance``), per speed figure (``SidePerformance``), per piece of evidence (``Evidence``). Their
JSON is the report's (``harness.verdict`` re-exports them); no numpy, pydantic only to read: the noxfile imports them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, is_dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

__all__ = ["Histogram", "Tolerance", "Metrics", "SidePerformance", "Evidence", "At", "Named", "TopKEvidence", "NotJudged", "Swap",
           "TauAt", "present", "adapter", "not_judged_note"]


def not_judged_note(why: str) -> str:
    """The words every report uses for retrieval that no check judged (``metrics["topk_not_judged"]``)."""
    return f"retrieval not judged: {why}"


@dataclass(frozen=True)
class Histogram:
    """Counts of |candidate - baseline| per decade (``edges``, values outside clipped into the end bins), the
    exactly equal values apart: ``zeros`` is one count, a list in the report JSON since its first version."""

    edges: List[float]
    counts: List[int]
    zeros: List[int]

    @property
    def equal(self) -> int:
        return int(sum(self.zeros))


@dataclass(frozen=True)
class Tolerance:
    """The limits one model is judged by (``harness.config.policy`` validates and chooses them). See the default
    policy file for why each default is what it is."""

    name: str
    description: str = ""
    atol: float = 1e-5
    rtol: float = 0.0
    min_cosine: float = 0.999999
    score_atol: float = 1e-5
    score_rtol: float = 0.0
    topk: int = 10
    tie_tolerance: float = 1e-6
    min_topk_order_agreement: float = 1.0
    min_topk_set_agreement: float = 1.0
    min_rerank_order_agreement: float = 1.0
    # quantized embeddings (``harness.compare.quantized``): integers; top-k by quantized scores is coarser
    max_bit_flips: int = 2
    max_int_distance: int = 1
    max_changed_fraction: float = 1.0
    min_quantized_topk_order_agreement: float = 1.0
    min_quantized_topk_set_agreement: float = 1.0
    # the fp64 reference (``harness.compare.accuracy``): the RMSE ratio allowed, and this class's error
    # relative to fp32's (measured), which scales it for a downgrade
    max_accuracy_ratio: float = 2.0
    precision_error_ratio: float = 1.0


def present(data: Any, keep: Tuple[str, ...] = ()) -> Any:
    """A dataclass as JSON, in field order, None values left out at every depth (but the top level's ``keep``)."""
    data = asdict(data) if is_dataclass(data) and not isinstance(data, type) else data
    if isinstance(data, dict):
        return {k: present(v) for k, v in data.items() if v is not None or k in keep}
    return [present(v) for v in data] if isinstance(data, list) else data


_ADAPTERS: Dict[type, Any] = {}


def adapter(cls: type) -> Any:
    """A pydantic adapter building ``cls`` and everything nested in it from its ``asdict`` form (unknown keys
    ignored, lists where tuples were); pydantic is imported only to read a report or type the judge's evidence."""
    from pydantic import TypeAdapter

    if cls not in _ADAPTERS:
        _ADAPTERS[cls] = TypeAdapter(cls)
    return _ADAPTERS[cls]


@dataclass(frozen=True)
class Metrics:
    """What the judge measured, one field per metric, named as in the JSON; None where the kind has no such
    metric (float differences: bi- and cross-encoders; bits or buckets: quantized embeddings; ranks: rerankers;
    top-k: retrieval)."""

    texts: Optional[int] = None
    dim: Optional[int] = None
    pairs: Optional[int] = None
    queries: Optional[int] = None
    max_abs_diff: Optional[float] = None
    mean_abs_diff: Optional[float] = None
    p99_abs_diff: Optional[float] = None
    max_rel_diff: Optional[float] = None
    min_cosine: Optional[float] = None
    elements_beyond_tolerance: Optional[int] = None
    texts_beyond_tolerance: Optional[int] = None
    abs_diff_histogram: Optional[Histogram] = None
    rerank_order_agreement: Optional[float] = None
    min_kendall_tau: Optional[float] = None
    mean_kendall_tau: Optional[float] = None
    precision: Optional[str] = None
    rows: Optional[int] = None
    bits_per_row: Optional[int] = None
    max_bit_flips: Optional[int] = None
    mean_bit_flips: Optional[float] = None
    total_bit_flips: Optional[int] = None
    flipped_bit_fraction: Optional[float] = None
    max_int_distance: Optional[int] = None
    elements: Optional[int] = None
    elements_changed: Optional[int] = None
    elements_changed_fraction: Optional[float] = None
    rows_changed: Optional[int] = None
    rows_changed_fraction: Optional[float] = None
    topk: Optional[int] = None
    topk_order_agreement: Optional[float] = None
    topk_set_agreement: Optional[float] = None
    topk_raw_order_agreement: Optional[float] = None
    topk_mean_overlap: Optional[float] = None
    #: why no top-k check ran ("no queries"), for a bi-encoder judged without one
    topk_not_judged: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        """The metrics as report JSON: the kind's own keys only."""
        return present(self)

    @property
    def quantized(self) -> bool:
        """Judged in bits or buckets (quantized embeddings), not in float differences."""
        return self.max_bit_flips is not None or self.max_int_distance is not None

    @property
    def moved(self) -> str:
        """A quantized verdict's largest move in its unit, "3 bit(s)" or "1 bucket(s)"; "" for float differences."""
        if self.max_bit_flips is not None:
            return f"{self.max_bit_flips} bit(s)"
        return f"{self.max_int_distance} bucket(s)" if self.max_int_distance is not None else ""

    def order_agreement(self) -> Tuple[str, Optional[float]]:
        """The headline rank metric and its label: the tie-aware reorder rate for rerankers, else top-k order."""
        if self.rerank_order_agreement is not None:  # a cross-encoder's top-k order is reported, not its headline
            return "rerank order", self.rerank_order_agreement
        if self.topk_order_agreement is not None:
            return f"top-{self.topk} order", self.topk_order_agreement
        return "", None

    def retrieval_note(self) -> Optional[str]:
        """Why no retrieval check ran ("retrieval not judged: no queries"); None when it ran or does not apply."""
        return not_judged_note(self.topk_not_judged) if self.topk_not_judged else None


@dataclass(frozen=True)
class SidePerformance:
    """How fast one side ran a model, on what (reported, never judged); None: not recorded."""

    device: str
    hardware: Optional[str] = None
    items_per_s: Optional[float] = None
    items: Optional[int] = None
    compute_s: Optional[float] = None
    cuda_peak_memory_bytes: Optional[int] = None
    peak_rss_bytes: Optional[int] = None


@dataclass(frozen=True)
class At:
    """Where the evidence points: a text, pair or query (``id``, its baseline ``row``, the dimension) and the value
    there; the worst element also both sides' values, the lowest cosine how many texts are below the limit, a
    quantized text where it moved (``dims``)."""

    id: str
    row: int
    dim: Optional[int] = None
    value: Union[int, float] = 0
    actual: Optional[float] = None
    baseline: Optional[float] = None
    below: Optional[int] = None
    dims: Optional[List[int]] = None


@dataclass(frozen=True)
class Named:
    """How many queries changed, and the first few of them by id."""

    count: int
    ids: List[str]


@dataclass(frozen=True)
class TopKEvidence:
    """The top-k checks' queries and those that changed; with a certificate, how many it proved."""

    k: int
    queries: int
    order_changed: Named
    set_changed: Named
    certified: Optional[int] = None
    scored_exactly: Optional[int] = None


@dataclass(frozen=True)
class NotJudged:
    """Why no top-k check ran, with the counts that say so."""

    why: str
    queries: int
    documents: int


@dataclass(frozen=True)
class Swap:
    """A reranked query's example swap: ``above`` was above ``below`` in the baseline, below it in the candidate."""

    query: str
    swaps: int
    above: str
    above_row: int
    below: str
    below_row: int
    baseline: List[float]
    actual: List[float]


@dataclass(frozen=True)
class TauAt:
    """A query's Kendall tau."""

    query: str
    value: float


@dataclass(frozen=True)
class Evidence:
    """Where the drift is, for messages that quote it (``harness.report.assertion``): a few entries each. ``kind``
    says which judge wrote it (``embedding``, ``quantized``, ``rerank``; None: not compared); None where that
    judge has no such entry."""

    kind: Optional[str] = None
    elements: Optional[int] = None
    pairs: Optional[int] = None
    precision: Optional[str] = None
    limit_key: Optional[str] = None
    max_abs: Optional[At] = None
    max_rel: Optional[At] = None
    min_cosine: Optional[At] = None
    texts_beyond: Optional[List[At]] = None
    worst: Optional[List[At]] = None
    queries: Optional[int] = None
    reordered_count: Optional[int] = None
    reordered: Optional[List[Swap]] = None
    min_kendall_tau: Optional[TauAt] = None
    topk: Optional[TopKEvidence] = None
    topk_not_judged: Optional[NotJudged] = None

    def to_json(self) -> Dict[str, Any]:
        """The evidence as report JSON: the judge's own entries only."""
        return present(self)
