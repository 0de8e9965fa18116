"""Comparison rules for quantized embeddings (precision int8 / uint8 / binary / ubinary), and their checks: pure numpy.

Quantized vectors are integers: for packed sign bits the distance is the number of bits flipped per text (a
float drift flips any element near zero, so a few flips are normal); for int buckets it is the largest bucket
move per text (a drift moves an element across a bucket edge by one).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, List

import numpy as np

from harness.compare.kinds.common import Checked
from harness.measured import At
from harness.verdict import Check, Evidence, Metrics, Offender

if TYPE_CHECKING:
    from harness.compare.kinds.source import EmbeddingPair
    from harness.config.policy import Tolerance

__all__ = ["BINARY_PRECISIONS", "INT_PRECISIONS", "PRECISIONS", "QuantizedStats", "QuantizedWorst", "bit_flips",
           "int_distance", "limit_key", "quantized_checks", "scoring_floats"]

BINARY_PRECISIONS = ("binary", "ubinary")
INT_PRECISIONS = ("int8", "uint8")
PRECISIONS = BINARY_PRECISIONS + INT_PRECISIONS
#: the dtype each precision is stored as in a results file (``vector_dtype``)
STORED_DTYPE = {p: np.dtype(np.int8 if p in ("binary", "int8") else np.uint8) for p in PRECISIONS}

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def limit_key(precision: str) -> str:
    """The per-text tolerance key a precision is judged by: ``max_bit_flips`` for packed bits, else
    ``max_int_distance`` (also the name of its metric and of the worst texts' value)."""
    return "max_bit_flips" if precision in BINARY_PRECISIONS else "max_int_distance"


def scoring_floats(rows: np.ndarray, precision: str) -> np.ndarray:
    """Quantized rows as the floats retrieval ranks by: packed bits as +-1 (cosine ranks as Hamming distance
    does), int buckets as numbers (uint8 centred like int8)."""
    if precision in BINARY_PRECISIONS:
        packed = rows.view(np.uint8) ^ np.uint8(0x80) if precision == "binary" else rows.view(np.uint8)
        return np.unpackbits(packed, axis=1).astype(np.float32) * 2 - 1
    floats = rows.astype(np.float32)
    return floats - 128 if precision == "uint8" else floats


def _pair(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes differ ({a.shape} vs {b.shape})")
    if a.ndim != 2:
        raise ValueError(f"{what}: expected (rows, bytes) matrices, got {a.ndim} dimension(s)")
    if a.dtype.itemsize != 1 or b.dtype.itemsize != 1 or a.dtype.kind not in "iu" or b.dtype.kind not in "iu":
        raise ValueError(f"{what}: expected int8/uint8 arrays, got {a.dtype} and {b.dtype}")


def bit_flips(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row, how many bits differ between two packed-bit matrices (``binary``, ``packed - 128``, inverts the
    top bit of both sides alike: the XOR of the raw bytes is that of the packed bits)."""
    a, b = np.asarray(a), np.asarray(b)
    _pair(a, b, "bit_flips")
    xor = np.bitwise_xor(a.view(np.uint8), b.view(np.uint8))
    return _POPCOUNT[xor].sum(axis=1, dtype=np.int64)


def int_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row, the largest absolute integer difference between two int8 (or two uint8) matrices."""
    a, b = np.asarray(a), np.asarray(b)
    _pair(a, b, "int_distance")
    if a.dtype != b.dtype:
        raise ValueError(f"int_distance: dtypes differ ({a.dtype} vs {b.dtype}); int8 and uint8 buckets are offset by 128")
    if not a.shape[1]:
        return np.zeros(len(a), dtype=np.int64)
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=1).astype(np.int64)


@dataclass
class QuantizedWorst:
    """One of the texts that moved most: its row, bits flipped or buckets moved, and where (``_where``)."""

    row: int
    value: int
    dims: List[int]


@dataclass
class QuantizedStats:
    """Per-text figures of quantized rows, accumulated: ``add`` row groups (any order, ``position`` = the group's
    first row), ``merge`` another instance's, ``metrics`` of all of them; ``worst`` names file rows."""

    precision: str
    bits_per_row: int = 0
    worst_n: int = 10
    rows: int = 0
    rows_changed: int = 0
    most: int = 0
    total: int = 0
    elements: int = 0
    elements_changed: int = 0
    worst: List[QuantizedWorst] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"quantized: precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    def add(self, position: int, base: np.ndarray, cand: np.ndarray) -> None:
        base, cand = np.asarray(base), np.asarray(cand)
        per_row = bit_flips(base, cand) if self.precision in BINARY_PRECISIONS else int_distance(base, cand)
        self.rows += len(base)
        self.rows_changed += int(np.count_nonzero(per_row))
        self.most = max(self.most, int(per_row.max(initial=0)))
        self.total += int(per_row.sum())
        self.elements += int(base.size)
        self.elements_changed += int(np.count_nonzero(base != cand))
        order = np.argsort(-per_row, kind="stable")[: max(0, self.worst_n)]
        self._keep([QuantizedWorst(int(i) + position, int(per_row[i]), _where(base[i], cand[i], self.precision))
                    for i in order if per_row[i] > 0])

    def _keep(self, more: List[QuantizedWorst]) -> None:
        self.worst = sorted(self.worst + more, key=lambda w: (-w.value, w.row))[: max(0, self.worst_n)]

    def merge(self, other: QuantizedStats) -> None:
        for name in ("rows", "rows_changed", "total", "elements", "elements_changed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.most = max(self.most, other.most)
        self._keep(other.worst)

    def metrics(self) -> Metrics:
        """The verdict's metrics: bits flipped (binary) or buckets moved (int), texts changed."""
        rows, bits, total = self.rows, self.bits_per_row, self.total
        common = Metrics(precision=self.precision, rows=rows, rows_changed=self.rows_changed,
                         rows_changed_fraction=self.rows_changed / rows if rows else 0.0)
        if self.precision in BINARY_PRECISIONS:
            return replace(common, bits_per_row=bits, max_bit_flips=self.most, mean_bit_flips=total / rows if rows
                           else 0.0, total_bit_flips=total, flipped_bit_fraction=total / (rows * bits) if rows and bits
                           else 0.0)
        return replace(common, max_int_distance=self.most, elements=self.elements, elements_changed=self.elements_changed,
                       elements_changed_fraction=self.elements_changed / self.elements if self.elements else 0.0)


def _where(base: np.ndarray, cand: np.ndarray, precision: str, most: int = 8) -> List[int]:
    """Where one text moved: the flipped bits (binary), or the dimensions that moved most (int), at most ``most``
    (dimensions that keep moving across texts point at the calibration)."""
    if precision in BINARY_PRECISIONS:
        xor = np.bitwise_xor(base.view(np.uint8), cand.view(np.uint8))
        return [int(b) for b in np.flatnonzero(np.unpackbits(xor))[:most]]
    moved = np.abs(base.astype(np.int16) - cand.astype(np.int16))
    order = np.argsort(-moved, kind="stable")[:most]
    return [int(d) for d in order if moved[d] > 0]


def quantized_checks(tol: Tolerance, pair: EmbeddingPair, stats: QuantizedStats, precision: str) -> Checked:
    """The quantized vectors' checks on ``stats`` (the pass's): the most bits flipped or buckets moved in one text,
    the share of texts changed."""
    key = limit_key(precision)
    limit = getattr(tol, key)
    bits = key == "max_bit_flips"
    unit = "bits flipped" if bits else "bucket(s) moved"
    metrics = replace(stats.metrics(), texts=pair.rows, dim=pair.dim)
    changed, fraction = stats.rows_changed, float(metrics.rows_changed_fraction or 0.0)
    checks = [
        Check(key, float(stats.most), float(limit), "<=", stats.most <= limit,
              f"{changed} / {pair.rows} texts changed; the most in one text: {stats.most} {unit}"),
        Check("changed_fraction", fraction, tol.max_changed_fraction, "<=", fraction <= tol.max_changed_fraction,
              f"{changed} / {pair.rows} texts differ in at least one {'bit' if bits else 'element'}"),
    ]
    evidence = Evidence("quantized", precision=precision, limit_key=key,
                        worst=[At(pair.item_id(w.row), w.row, value=w.value, dims=w.dims) for w in stats.worst])
    where = "bit(s)" if bits else "dimension(s)"
    offenders = [Offender(pair.item_id(w.row), float(w.value), key,
                          f"{unit}; {where} {', '.join(map(str, w.dims))}") for w in stats.worst]
    return Checked(checks, metrics, evidence, {key: float(stats.most), "max_changed_fraction": fraction}, offenders)
