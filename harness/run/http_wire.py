"""The wire formats of embedding servers: routes, request bodies, and strict readers of their answers.

Pure functions (no I/O) so that every bad-answer rule is tested without a server. A reader raises
``ValueError`` with the problem; the client adds the URL and turns it into a ``ServerError``.

Order rule: ``index`` fields are required. An answer that lists every index ``0..n-1`` exactly once is put
back in input order (OpenAI's ``index`` is the input position; rerank servers sort by score by design) and
reported as reordered; a missing, duplicate, out-of-range or non-integer index is an error.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from harness.config.http import APIS, RESERVED_BODY_KEYS, join_path, shown_url

__all__ = ["APIS", "ROUTES", "RESERVED_BODY_KEYS", "shown_url", "join_path", "embed_body", "rerank_body",
           "read_embeddings", "read_scores", "curate_info"]

#: Route per task and the informational GETs asked for the fingerprint (paths relative to the base URL).
ROUTES: Dict[str, Dict[str, Any]] = {
    "openai": {"embed": "/v1/embeddings", "info": ("/v1/models",)},
    "infinity": {"embed": "/embeddings", "rerank": "/rerank", "info": ("/models", "/openapi.json")},
    "tei": {"embed": "/embed", "rerank": "/rerank", "info": ("/info",)},
    "cohere": {"rerank": "/v1/rerank", "info": ()},
}


def embed_body(api: str, texts: List[str], model: Optional[str], extra: Mapping[str, Any]) -> Dict[str, Any]:
    """TEI takes ``inputs``; OpenAI and Infinity take ``input`` (floats asked for explicitly: base64 is lossy
    to read back wrongly and Infinity's default may change)."""
    if api == "tei":
        return {"inputs": texts, **extra}
    return {"input": texts, "encoding_format": "float", **({"model": model} if model else {}), **extra}


def rerank_body(api: str, query: str, docs: List[str], model: Optional[str], raw: bool,
                extra: Mapping[str, Any]) -> Dict[str, Any]:
    """TEI: ``query``/``texts``; Infinity and Cohere: ``query``/``documents`` (all passages, no ``top_n``)."""
    if api == "tei":
        return {"query": query, "texts": docs, "raw_scores": raw, "return_text": False, **extra}
    body: Dict[str, Any] = {"query": query, "documents": docs, "return_documents": False}
    if api == "infinity":
        body["raw_scores"] = raw
    return {**body, **({"model": model} if model else {}), **extra}


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _in_order(items: Any, count: int, key: str, what: str) -> Tuple[List[Any], bool]:
    """The ``key`` values of ``items`` ordered by their ``index``; True when the server had reordered them."""
    if not isinstance(items, list) or not all(isinstance(i, dict) and key in i for i in items):
        raise ValueError(f"expected a list of objects with '{key}' and 'index'")
    if len(items) != count:
        raise ValueError(f"{len(items)} {what} for {count} inputs")
    indices = [i.get("index") for i in items]
    if not all(_is_number(i) and isinstance(i, int) for i in indices):
        raise ValueError(f"{what}: every item needs an integer 'index'")
    if sorted(indices) != list(range(count)):
        dup = sorted({i for i in indices if indices.count(i) > 1})
        missing = sorted(set(range(count)) - set(indices))
        raise ValueError(f"{what}: index fields are not 0..{count - 1} once each (duplicates {dup[:5]}, missing {missing[:5]})")
    ordered: List[Any] = [None] * count
    for item in items:
        ordered[item["index"]] = item[key]
    return ordered, indices != list(range(count))


def _matrix(rows: Any, count: int, expected_dim: Optional[int]) -> np.ndarray:
    """Vectors as float32, refusing ragged, non-numeric, non-finite or wrongly sized ones."""
    if not isinstance(rows, list) or len(rows) != count:
        got = len(rows) if isinstance(rows, list) else type(rows).__name__
        raise ValueError(f"{got} vectors for {count} texts")
    if not all(isinstance(r, list) and r and all(_is_number(x) for x in r) for r in rows):
        raise ValueError("a vector is not a non-empty list of numbers")
    dims = sorted({len(r) for r in rows})
    if len(dims) > 1:
        raise ValueError(f"vectors of different dimensions {dims[:5]} in one answer")
    if expected_dim is not None and dims[0] != expected_dim:
        raise ValueError(f"vectors have {dims[0]} dimensions, expected {expected_dim}")
    with np.errstate(over="ignore"):
        out = np.asarray(rows, dtype=np.float32)
    if not np.isfinite(out).all():
        raise ValueError(f"NaN or Inf in {int((~np.isfinite(out)).any(axis=1).sum())} vector(s) (as float32)")
    return out


def read_embeddings(api: str, payload: Any, count: int, expected_dim: Optional[int]) -> Tuple[np.ndarray, bool]:
    """``(count, dim)`` float32 vectors in input order from an embed answer, and whether it was reordered."""
    if api == "tei":
        return _matrix(payload, count, expected_dim), False
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise ValueError("expected an object with a 'data' list")
    rows, reordered = _in_order(payload["data"], count, "embedding", "vectors")
    return _matrix(rows, count, expected_dim), reordered


def read_scores(api: str, payload: Any, count: int) -> Tuple[np.ndarray, bool]:
    """``count`` float32 scores in input order from a rerank answer, and whether it was reordered."""
    if api == "tei":
        values, reordered = _in_order(payload, count, "score", "scores")
    else:
        if not isinstance(payload, dict):
            raise ValueError("expected an object with a 'results' list")
        values, reordered = _in_order(payload.get("results"), count, "relevance_score", "scores")
    if not all(_is_number(v) for v in values):
        raise ValueError("a score is not a number")
    with np.errstate(over="ignore"):
        out = np.asarray(values, dtype=np.float32)
    if not np.isfinite(out).all():
        raise ValueError(f"NaN or Inf in {int((~np.isfinite(out)).sum())} score(s) (as float32)")
    return out, reordered


def curate_info(route: str, payload: Any, model: Optional[str]) -> Any:
    """Keep what identifies the server and its settings; drop timestamps and live queue statistics."""
    if route.endswith("/models") and isinstance(payload, dict) and isinstance(payload.get("data"), list):
        kept = []
        for entry in payload["data"]:
            if not isinstance(entry, dict) or (model is not None and entry.get("id") != model):
                continue
            stats = entry.get("stats") if isinstance(entry.get("stats"), dict) else {}
            kept.append({**{k: v for k, v in entry.items() if k not in ("created", "stats")},
                         **({"batch_size": stats["batch_size"]} if "batch_size" in stats else {})})
        return kept
    if route == "/openapi.json" and isinstance(payload, dict):
        meta = payload.get("info") if isinstance(payload.get("info"), dict) else {}
        return {"title": meta.get("title"), "version": meta.get("version")}
    return payload
