"""Comparison rules for quantized embeddings (``precision`` int8 / uint8 / binary / ubinary): pure numpy.

Quantized vectors are integers, so "close" means something else than for floats:

* binary / ubinary: packed sign bits (``np.packbits(x > 0)``; ``binary`` stores ``packed - 128`` as int8). The
  distance between two runs is the number of bits that flipped per text (Hamming distance); a float drift of
  1e-7 flips the bit of any element within 1e-7 of zero, so a few flips are normal across environments.
* int8 / uint8: one bucket index per element (``floor((x - min) / step)`` over calibrated ranges). The distance
  is the largest integer difference per text; a float drift moves an element across a bucket edge by one.

``compare_quantized`` applies a tolerance (``max_bit_flips`` or ``max_int_distance`` per text, 0 meaning exact
equality) and returns metrics plus ``passed``. No harness imports: the comparator can call it on any rows.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

__all__ = [
    "BINARY_PRECISIONS",
    "INT_PRECISIONS",
    "PRECISIONS",
    "TOLERANCE_KEYS",
    "bit_flips",
    "compare_quantized",
    "int_distance",
    "is_quantized",
    "limit_key",
    "merge_quantized",
    "scoring_floats",
]

BINARY_PRECISIONS = ("binary", "ubinary")
INT_PRECISIONS = ("int8", "uint8")
PRECISIONS = BINARY_PRECISIONS + INT_PRECISIONS
#: the dtype each precision is stored as in a results file (``vector_dtype``)
STORED_DTYPE = {"binary": np.dtype(np.int8), "ubinary": np.dtype(np.uint8), "int8": np.dtype(np.int8), "uint8": np.dtype(np.uint8)}
#: the policy keys ``compare_quantized`` reads (0 = exact equality; absent = 0)
TOLERANCE_KEYS = ("max_bit_flips", "max_int_distance", "max_changed_fraction")

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def is_quantized(model_info: Mapping[str, Any]) -> bool:
    """Whether a results file's model metadata says its vectors are quantized (``precision`` key)."""
    return model_info.get("precision") in PRECISIONS


def limit_key(precision: str) -> str:
    """The per-text tolerance key a precision is judged by: ``max_bit_flips`` for packed bits, else
    ``max_int_distance`` (also the name of its metric and of the worst texts' value)."""
    return "max_bit_flips" if precision in BINARY_PRECISIONS else "max_int_distance"


def scoring_floats(rows: np.ndarray, precision: str) -> np.ndarray:
    """Quantized rows as the floats retrieval ranks by: packed bits as +-1 per bit (so the dot product is
    ``bits - 2 * hamming`` and cosine ranks exactly as Hamming distance does), int buckets as numbers (uint8
    centred like int8)."""
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
    """Per row, how many bits differ between two packed-bit matrices (int8 ``binary`` or uint8 ``ubinary``).

    ``binary`` is ``packed - 128``, i.e. the packed byte with its top bit inverted, on both sides alike, so the
    XOR of the raw bytes is the XOR of the packed bits either way.
    """
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


def compare_quantized(
    base: np.ndarray,
    cand: np.ndarray,
    precision: str,
    tolerance: Optional[Mapping[str, Any]] = None,
    ids: Optional[Sequence[str]] = None,
    worst_n: int = 10,
    row_offset: int = 0,
) -> Dict[str, Any]:
    """Judge quantized vectors of the same texts in the same row order (align them first).

    ``tolerance`` keys (each optional, default 0 = exact equality):

    * ``max_bit_flips``: binary/ubinary, the most bits one text may flip;
    * ``max_int_distance``: int8/uint8, the largest bucket difference one element may show;
    * ``max_changed_fraction``: the share of texts that may differ at all (default 1: not limited, the per-text
      limit decides) — set it below 1 to also bound how widespread changes are.

    Returns ``metrics`` (per precision: max/mean bit flips or max integer distance, rows and elements changed),
    ``checks`` (name, observed, limit, passed), ``worst`` (the texts that moved most) and ``passed``.

    Per-text figures do not depend on other rows, so a streaming caller may call this per row group (with
    ``row_offset`` = the group's first row, so ``worst`` names file rows) and combine with ``merge_quantized``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"compare_quantized: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    tolerance = dict(tolerance or {})
    unknown = sorted(set(tolerance) - set(TOLERANCE_KEYS))
    if unknown:
        raise ValueError(f"compare_quantized: unknown tolerance key(s) {', '.join(unknown)} (known: {', '.join(TOLERANCE_KEYS)})")
    base, cand = np.asarray(base), np.asarray(cand)
    per_row = bit_flips(base, cand) if precision in BINARY_PRECISIONS else int_distance(base, cand)
    key = limit_key(precision)
    counts = {"rows": len(base), "rows_changed": int(np.count_nonzero(per_row)), key: int(per_row.max(initial=0)),
              "bits_per_row": base.shape[1] * 8, "total_bit_flips": int(per_row.sum()), "elements": int(base.size),
              "elements_changed": int(np.count_nonzero(base != cand))}
    order = np.argsort(-per_row, kind="stable")[: max(0, worst_n)]
    worst = [
        {"row": int(i) + row_offset, "id": (str(ids[i]) if ids is not None else None), key: int(per_row[i]),
         "dims": _where(base[i], cand[i], precision)}
        for i in order
        if per_row[i] > 0
    ]
    return _verdict(precision, _metrics(precision, [counts]), worst, tolerance)


def _where(base: np.ndarray, cand: np.ndarray, precision: str, most: int = 8) -> List[int]:
    """Where one text moved: the flipped bit positions (binary), or the elements (dimensions) that moved most
    (int), largest first; at most ``most``. Dimensions that keep moving across texts point at the calibration
    (e.g. a dimension the model leaves near zero, whose tiny range turns noise into many buckets)."""
    if precision in BINARY_PRECISIONS:
        xor = np.bitwise_xor(base.view(np.uint8), cand.view(np.uint8))
        return [int(b) for b in np.flatnonzero(np.unpackbits(xor))[:most]]
    moved = np.abs(base.astype(np.int16) - cand.astype(np.int16))
    order = np.argsort(-moved, kind="stable")[:most]
    return [int(d) for d in order if moved[d] > 0]


def _verdict(precision: str, metrics: Dict[str, Any], worst: List[Dict[str, Any]], tolerance: Mapping[str, Any]) -> Dict[str, Any]:
    key = limit_key(precision)
    limit = tolerance.get(key, 0)
    fraction_limit = tolerance.get("max_changed_fraction", 1.0)
    checks = [
        {"name": key, "observed": metrics[key], "limit": limit, "passed": metrics[key] <= limit},
        {"name": "rows_changed_fraction", "observed": metrics["rows_changed_fraction"], "limit": fraction_limit,
         "passed": metrics["rows_changed_fraction"] <= fraction_limit},
    ]
    return {"precision": precision, "metrics": metrics, "checks": checks, "worst": worst,
            "passed": all(c["passed"] for c in checks)}


def merge_quantized(parts: Sequence[Mapping[str, Any]], tolerance: Optional[Mapping[str, Any]] = None,
                    worst_n: int = 10) -> Dict[str, Any]:
    """Combine ``compare_quantized`` results of consecutive row groups into the verdict over all of them."""
    if not parts:
        raise ValueError("merge_quantized: nothing to merge")
    precision = parts[0]["precision"]
    if any(p["precision"] != precision for p in parts):
        raise ValueError("merge_quantized: parts of different precisions")
    key = limit_key(precision)
    worst = sorted((w for p in parts for w in p["worst"]), key=lambda w: (-w[key], w["row"]))[: max(0, worst_n)]
    return _verdict(precision, _metrics(precision, [p["metrics"] for p in parts]), worst, dict(tolerance or {}))


def _metrics(precision: str, parts: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """The metrics of consecutive row groups from their counts (one segment's, or the metrics of several)."""
    rows, changed = sum(m["rows"] for m in parts), sum(m["rows_changed"] for m in parts)
    metrics: Dict[str, Any] = {"precision": precision, "rows": rows}
    if precision in BINARY_PRECISIONS:
        bits, total = parts[0]["bits_per_row"], sum(m["total_bit_flips"] for m in parts)
        metrics.update(bits_per_row=bits, max_bit_flips=max(m["max_bit_flips"] for m in parts),
                       mean_bit_flips=total / rows if rows else 0.0, total_bit_flips=total,
                       flipped_bit_fraction=total / (rows * bits) if rows and bits else 0.0)
    else:
        elements, size = sum(m["elements_changed"] for m in parts), sum(m["elements"] for m in parts)
        metrics.update(max_int_distance=max(m["max_int_distance"] for m in parts), elements=size,
                       elements_changed=elements, elements_changed_fraction=elements / size if size else 0.0)
    return {**metrics, "rows_changed": changed, "rows_changed_fraction": changed / rows if rows else 0.0}
