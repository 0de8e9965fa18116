"""The wire formats of embedding servers: routes, request bodies, and strict readers of their answers.

Pure functions, so every bad-answer rule is tested (and fuzzed) without a server; a reader raises only
``WireError``, and ``parse_json`` bounds what a server can make the client build (depth, integer size).
``index`` fields are required: a permutation of ``0..n-1`` is put back in input order (reported as reordered),
anything else is an error.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple
from urllib.parse import urljoin

import numpy as np

from harness.config.http import APIS, RESERVED_BODY_KEYS, join_path, shown_url
from harness.errors import HarnessError, squeeze

__all__ = ["APIS", "ROUTES", "Routes", "RESERVED_BODY_KEYS", "shown_url", "join_path", "embed_body", "rerank_body",
           "read_embeddings", "read_scores", "curate_info", "parse_json", "WireError", "NotJson", "MAX_JSON_DEPTH", "retry_after",
           "RETRY_STATUSES", "status_problem", "transport_problem"]

#: Statuses retried (with the connect and dropped-connection failures): the server may answer on a later try.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: Deepest nesting accepted in an answer (a wire answer needs 4; an OpenAPI document about 20).
MAX_JSON_DEPTH = 64
#: Longest integer literal accepted (float32 ends near 3.4e38: a longer integer can only be an attack or a bug).
MAX_INT_DIGITS = 40
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class WireError(HarnessError, ValueError):
    """An answer that is not what the wire format promises (one line, without the URL: the client adds it)."""


class NotJson(WireError):
    """The bytes of an answer are not JSON at all."""


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise WireError(f"an integer of {len(text.lstrip('-'))} digits")
    return int(text)


def _depth_over(value: Any, limit: int) -> bool:
    """Whether ``value`` nests deeper than ``limit`` (iterative: a deep value cannot exhaust the stack here)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def parse_json(raw: bytes) -> Any:
    """The JSON value of an answer's bytes, or a ``WireError``: not JSON (``NotJson``), nested deeper than
    ``MAX_JSON_DEPTH``, or an integer longer than ``MAX_INT_DIGITS`` digits. NaN/Infinity literals parse (the
    readers refuse non-finite values with a clearer message)."""
    try:
        value = json.loads(raw, parse_int=_parse_int)
    except RecursionError:
        raise WireError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except WireError:
        raise
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, int() limits
        raise NotJson(str(err).splitlines()[0][:120] if str(err) else type(err).__name__) from None
    if _depth_over(value, MAX_JSON_DEPTH):
        raise WireError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return value

class Routes(NamedTuple):
    """An API's route per task (None: it has none) and the GETs asked for the fingerprint, relative to the base URL."""

    embed: Optional[str]
    rerank: Optional[str]
    info: Tuple[str, ...]


ROUTES: Dict[str, Routes] = {
    "openai": Routes("/v1/embeddings", None, ("/v1/models",)),
    "infinity": Routes("/embeddings", "/rerank", ("/models", "/openapi.json")),
    "tei": Routes("/embed", "/rerank", ("/info",)),
    "cohere": Routes(None, "/v1/rerank", ()),
}


def retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds of a ``Retry-After`` header (None for an HTTP date, garbage or NaN)."""
    try:
        wait = float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: the backoff applies
    return max(0.0, wait) if wait is not None and wait == wait else None



def transport_problem(err: BaseException, timeout_s: float) -> Tuple[str, str]:
    """``(problem, retry class)`` of an exception raised by a request: ``"silence"`` (retried once at most),
    ``"transient"`` (retried) or ``"final"``; any exception is named, none escapes."""
    import httpx

    if isinstance(err, httpx.TimeoutException):
        return f"no complete answer within {timeout_s:g}s ({type(err).__name__})", "silence"
    if isinstance(err, httpx.ConnectError):
        return ("connection refused" if "refused" in str(err).lower() else f"cannot connect ({err})"), "transient"
    if isinstance(err, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return f"the connection was dropped mid-request ({err})", "transient"
    if isinstance(err, httpx.DecodingError):
        return f"the answer's content-encoding cannot be decoded ({err})", "final"
    return f"{type(err).__name__}: {err}", "final"


def status_problem(status: int, reason: str, headers: Mapping[str, str], text: str, url: str) -> Tuple[str, str]:
    """``(problem, retry class)`` of an answer's status; ``("", "")`` for a success. A redirect is refused,
    naming where it pointed (shown without credentials or query): its body is not the answer asked for."""
    if 300 <= status < 400:
        location = headers.get("location", "")
        try:
            target = shown_url(urljoin(url, location)) if location else "nowhere (no Location header)"
        except ValueError:
            target = "an invalid Location"
        return f"HTTP {status} redirect to {target} (redirects are not followed: set the url to the final address)", "final"
    if status >= 400:
        return f"HTTP {status} {reason}: {squeeze(text)!r}", ("transient" if status in RETRY_STATUSES else "final")
    return "", ""


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
    """A JSON number: bool is not one, nor an integer beyond float32's range (a float beyond it becomes inf and
    is refused as non-finite)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    return isinstance(x, float) or -_FLOAT32_MAX <= x <= _FLOAT32_MAX


def _huge_int(values: Any) -> bool:
    return any(isinstance(x, int) and not isinstance(x, bool) and not _is_number(x) for x in values)


def _in_order(items: Any, count: int, key: str, what: str) -> Tuple[List[Any], bool]:
    """The ``key`` values of ``items`` ordered by their ``index``; True when the server had reordered them."""
    if not isinstance(items, list) or not all(isinstance(i, dict) and key in i for i in items):
        raise WireError(f"expected a list of objects with '{key}' and 'index'")
    if len(items) != count:
        raise WireError(f"{len(items)} {what} for {count} inputs")
    indices = [i.get("index") for i in items]
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
        raise WireError(f"{what}: every item needs an integer 'index'")
    if sorted(indices) != list(range(count)):
        seen = Counter(indices)
        dup = sorted(i for i, n in seen.items() if n > 1 and 0 <= i < count)
        missing = sorted(set(range(count)) - set(indices))
        raise WireError(f"{what}: index fields are not 0..{count - 1} once each (duplicates {dup[:5]}, missing {missing[:5]})")
    ordered: List[Any] = [None] * count
    for item in items:
        ordered[item["index"]] = item[key]
    return ordered, indices != list(range(count))


def _matrix(rows: Any, count: int, expected_dim: Optional[int]) -> np.ndarray:
    """Vectors as float32, refusing ragged, non-numeric, non-finite or wrongly sized ones."""
    if not isinstance(rows, list) or len(rows) != count:
        got = len(rows) if isinstance(rows, list) else type(rows).__name__
        raise WireError(f"{got} vectors for {count} texts")
    if count == 0:
        return np.zeros((0, expected_dim or 0), dtype=np.float32)
    if any(isinstance(r, list) and _huge_int(r) for r in rows):
        raise WireError("a vector holds an integer beyond the float32 range")
    if not all(isinstance(r, list) and r and all(_is_number(x) for x in r) for r in rows):
        raise WireError("a vector is not a non-empty list of numbers")
    dims = sorted({len(r) for r in rows})
    if len(dims) > 1:
        raise WireError(f"vectors of different dimensions {dims[:5]} in one answer")
    if expected_dim is not None and dims[0] != expected_dim:
        raise WireError(f"vectors have {dims[0]} dimensions, expected {expected_dim}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.asarray(rows, dtype=np.float32)
    if not np.isfinite(out).all():
        raise WireError(f"NaN or Inf in {int((~np.isfinite(out)).any(axis=1).sum())} vector(s) (as float32)")
    return out


def read_embeddings(api: str, payload: Any, count: int, expected_dim: Optional[int]) -> Tuple[np.ndarray, bool]:
    """``(count, dim)`` float32 vectors in input order from an embed answer, and whether it was reordered."""
    if api == "tei":
        return _matrix(payload, count, expected_dim), False
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise WireError("expected an object with a 'data' list")
    rows, reordered = _in_order(payload["data"], count, "embedding", "vectors")
    return _matrix(rows, count, expected_dim), reordered


def read_scores(api: str, payload: Any, count: int) -> Tuple[np.ndarray, bool]:
    """``count`` float32 scores in input order from a rerank answer, and whether it was reordered."""
    if api == "tei":
        values, reordered = _in_order(payload, count, "score", "scores")
    else:
        if not isinstance(payload, dict):
            raise WireError("expected an object with a 'results' list")
        values, reordered = _in_order(payload.get("results"), count, "relevance_score", "scores")
    if _huge_int(values):
        raise WireError("a score is an integer beyond the float32 range")
    if not all(_is_number(v) for v in values):
        raise WireError("a score is not a number")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.asarray(values, dtype=np.float32)
    if not np.isfinite(out).all():
        raise WireError(f"NaN or Inf in {int((~np.isfinite(out)).sum())} score(s) (as float32)")
    return out, reordered


_DROP = object()


def _fact(value: Any, depth: int = 0) -> Any:
    """``value`` if it is a small JSON fact (short strings, finite numbers, booleans, null, shallow lists and
    objects of those), else ``_DROP``: server facts are best-effort and a non-conforming part is left out."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2 ** 53 else _DROP
    if isinstance(value, float):
        return value if math.isfinite(value) else _DROP
    if isinstance(value, str):
        return value[:200]
    if depth >= 3 or not isinstance(value, (list, dict)) or len(value) > 100:
        return _DROP
    if isinstance(value, list):
        kept = [_fact(v, depth + 1) for v in value]
        return [v for v in kept if v is not _DROP]
    facts = {str(k)[:80]: _fact(v, depth + 1) for k, v in value.items()}
    return {k: v for k, v in facts.items() if v is not _DROP}


def curate_info(route: str, payload: Any, model: Optional[str]) -> Any:
    """Keep what identifies the server and its settings; drop timestamps and live queue statistics, and
    anything that does not conform (never raises: the result is plain, finite, shallow JSON)."""
    if route.endswith("/models") and isinstance(payload, dict) and isinstance(payload.get("data"), list):
        kept = []
        for entry in payload["data"][:100]:
            if not isinstance(entry, dict) or (model is not None and entry.get("id") != model):
                continue
            stats: Any = entry.get("stats") if isinstance(entry.get("stats"), dict) else {}
            fact = _fact({**{k: v for k, v in entry.items() if k not in ("created", "stats")},
                          **({"batch_size": stats["batch_size"]} if "batch_size" in stats else {})})
            if fact is not _DROP:
                kept.append(fact)
        return kept
    if route == "/openapi.json" and isinstance(payload, dict):
        meta: Any = payload.get("info") if isinstance(payload.get("info"), dict) else {}
        return {k: v for k in ("title", "version") for v in [_fact(meta.get(k), 3)] if v is not _DROP}
    fact = _fact(payload)
    return None if fact is _DROP else fact
