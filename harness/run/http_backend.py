"""Embeddings and rerank scores from a served model, so that a serving stack is judged like a library upgrade.

``HttpModelClient`` talks to one server in one of the wire formats of ``harness.run.http_wire`` (``openai``,
``infinity``, ``tei``, ``cohere``) and returns float32 arrays in input order plus a ``record()`` for the results
metadata. Every bad answer is a ``ServerError``: one line naming the URL (without credentials or query) and
the problem. Header values come only from environment variables and never appear in a record or an error:
each resolved value (and each URL query value) is replaced by ``***`` in any text the client
hands out.

Retries: only connect errors, timeouts, dropped connections and HTTP 429/502/503/504, at most ``retries``
times, waiting ``backoff_s * 2**n`` (at least ``Retry-After``), never more than ``max_backoff_s``.
httpx is imported inside functions (the runner's import diet). The settings are configuration
(``harness.config.http``) and re-exported here.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from harness.config.http import MAX_RETRIES, HttpSettings, HttpSettingsError, settings_from_mapping
from harness.errors import HarnessError
from harness.run.http_wire import ROUTES, curate_info, embed_body, join_path, read_embeddings, read_scores, rerank_body, shown_url

__all__ = ["HttpSettings", "HttpSettingsError", "ServerError", "HttpModelClient", "settings_from_mapping",
           "embed_texts", "score_pairs", "RETRY_STATUSES", "MAX_RETRIES"]

RETRY_STATUSES = frozenset({429, 502, 503, 504})
_ENV_VALUE = re.compile(r"^(?P<prefix>[^\r\n]*?)env:(?P<var>[A-Za-z_][A-Za-z0-9_]*)$")
#: Response headers kept for the fingerprint (plus any whose name contains "version"); nothing else.
_KEPT_HEADERS = ("server", "x-model-id", "x-compute-type", "openai-model", "openai-version", "via")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ServerError(HarnessError):
    """The server did not answer, or answered something other than the embeddings or scores asked for."""


def _resolve_headers(headers: Mapping[str, str], where: str) -> Tuple[Dict[str, str], List[str]]:
    """Header values read from the environment, and every secret string to scrub from text (longest first)."""
    resolved, secrets = {}, []
    for name, spec in headers.items():
        match = _ENV_VALUE.match(spec) if isinstance(spec, str) else None
        if match is None:  # never echo the value: it may be a pasted token
            raise HttpSettingsError(f"{where}: header {name!r} must be 'env:VARIABLE' or '<prefix>env:VARIABLE' "
                                    "(values come from the environment, never from a config)")
        value = os.environ.get(match["var"], "")
        if not value:
            raise HttpSettingsError(f"{where}: header {name!r} reads environment variable {match['var']}, which is not set")
        resolved[name] = match["prefix"] + value
        secrets += [value, resolved[name]]
    return resolved, sorted(set(secrets), key=len, reverse=True)


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _retry_after(value: Optional[str]) -> Optional[float]:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: the backoff applies


class HttpModelClient:
    """Embeds texts and scores pairs through one server; a context manager that closes its connections.

    ``sleep`` is the backoff wait (tests pass a recorder). Counters are shared by the request threads.
    """

    def __init__(self, settings: HttpSettings, *, sleep: Callable[[float], None] = time.sleep) -> None:
        import httpx

        self.settings = settings
        self.shown = shown_url(settings.url)
        self._routes = ROUTES[settings.api]
        headers, self._secrets = _resolve_headers(settings.headers, self.shown)
        parts = urlsplit(settings.url)  # a query value (``?key=``) may be a secret too
        self._secrets += [v for _, v in parse_qsl(parts.query) if v]
        self._secrets.sort(key=len, reverse=True)
        self._http = httpx.Client(headers=headers, timeout=httpx.Timeout(settings.timeout_s),
                                  trust_env=(parts.hostname or "") not in _LOOPBACK,  # no proxy for loopback
                                  limits=httpx.Limits(max_connections=settings.concurrency))
        self._sleep = sleep
        self._lock = threading.Lock()
        self._stopping = threading.Event()  # set when one request of a batch failed: the others stop retrying
        self._counts = {"requests": 0, "answered": 0, "retries_used": 0, "reordered_responses": 0}
        self._echoed: set = set()
        self._headers: Dict[str, str] = {}
        self._info: Optional[Dict[str, Any]] = None
        self._dim: Optional[int] = settings.expected_dim

    def __enter__(self) -> "HttpModelClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _scrub(self, value: Any) -> Any:
        """Every string the client hands out passes here: resolved header values become ``***``."""
        if isinstance(value, str):
            for secret in self._secrets:
                value = value.replace(secret, "***")
            return value
        if isinstance(value, dict):
            return {self._scrub(k): self._scrub(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._scrub(v) for v in value]
        return value

    def _error(self, route: str, problem: str) -> ServerError:
        return ServerError(self._scrub(f"{shown_url(self.settings.url, route)}: {_one_line(problem, 400)}"))

    def _bump(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def _request(self, method: str, route: str, body: Optional[Dict[str, Any]] = None, *,
                 retries: Optional[int] = None) -> Any:
        """The parsed JSON answer of one request, retrying transient failures a bounded number of times."""
        import httpx

        limit = self.settings.retries if retries is None else retries
        parts = urlsplit(self.settings.url)
        url = parts._replace(path=join_path(parts.path, route)).geturl()
        for attempt in range(limit + 1):
            self._bump("requests")
            wait_s = None
            try:
                response = self._http.request(method, url, json=body)
            except httpx.TimeoutException as err:
                problem = f"no answer within {self.settings.timeout_s:g}s ({type(err).__name__})"
            except httpx.ConnectError as err:
                problem = "connection refused" if "refused" in str(err).lower() else f"cannot connect ({err})"
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as err:
                problem = f"the connection was dropped mid-request ({err})"
            except httpx.HTTPError as err:
                raise self._error(route, f"{type(err).__name__}: {err}") from None
            else:
                if response.status_code < 400:
                    self._bump("answered")
                    self._keep_headers(response.headers)
                    try:
                        return json.loads(response.content)
                    except ValueError:
                        kind = response.headers.get("content-type", "no content-type")
                        raise self._error(route, f"the answer is not JSON ({kind}): {_one_line(response.text)!r}") from None
                problem = f"HTTP {response.status_code} {response.reason_phrase}: {_one_line(response.text)!r}"
                if response.status_code not in RETRY_STATUSES:
                    raise self._error(route, problem)
                wait_s = _retry_after(response.headers.get("retry-after"))
            if attempt == limit or self._stopping.is_set():
                answered = self._counts["answered"]
                died = f"; it had answered {answered} request(s) before: did the server stop mid-run?" if answered else ""
                raise self._error(route, f"{problem} (after {attempt + 1} attempt(s){died})")
            self._bump("retries_used")
            self._sleep(min(self.settings.max_backoff_s, max(self.settings.backoff_s * 2 ** attempt, wait_s or 0.0)))
        raise AssertionError("unreachable")  # pragma: no cover

    def _keep_headers(self, headers: Any) -> None:
        with self._lock:
            for name, value in headers.items():
                name = name.lower()
                if (name in _KEPT_HEADERS or "version" in name) and name not in self._headers:
                    self._headers[name] = _one_line(value, 120)

    def _check_model(self, payload: Any, route: str) -> None:
        echoed = payload.get("model") if isinstance(payload, dict) else None
        if echoed is None:
            return
        with self._lock:
            self._echoed.add(str(echoed))
        asked = self.settings.model
        if asked is not None and self.settings.check_model and echoed != asked:
            raise self._error(route, f"the server answered for model {echoed!r}, not the {asked!r} asked for")

    def _read(self, route: str, read: Callable[[], Tuple[np.ndarray, bool]]) -> np.ndarray:
        """Run a ``http_wire`` reader; its ``ValueError`` (or a shape surprise) becomes a ``ServerError``."""
        try:
            values, reordered = read()
        except ValueError as err:
            raise self._error(route, f"unexpected answer: {err}") from None
        except (KeyError, TypeError, AttributeError) as err:
            raise self._error(route, f"unexpected answer shape ({type(err).__name__}: {err})") from None
        if reordered:
            self._bump("reordered_responses")
        return values

    def _route(self, task: str) -> str:
        route = self._routes.get(task)
        if route is None:
            other = "openai, infinity or tei" if task == "embed" else "infinity, tei or cohere"
            raise HttpSettingsError(f"{self.shown}: api {self.settings.api!r} has no {task} route; use {other}")
        return route

    def _embed_batch(self, texts: List[str]) -> np.ndarray:
        s, route = self.settings, self._route("embed")
        payload = self._request("POST", route, embed_body(s.api, texts, s.model, s.body))
        self._check_model(payload, route)
        vectors = self._read(route, lambda: read_embeddings(s.api, payload, len(texts), s.expected_dim))
        with self._lock:
            dim = self._dim = self._dim or vectors.shape[1]
        if vectors.shape[1] != dim:
            raise self._error(route, f"vectors have {vectors.shape[1]} dimensions, earlier ones in this run {dim}")
        return vectors

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One float32 ``(len(texts), dim)`` array in input order, in requests of ``batch_size`` texts."""
        size = self.settings.batch_size
        parts = self._map(self._embed_batch, [list(texts[i:i + size]) for i in range(0, len(texts), size)])
        return np.concatenate(parts) if parts else np.zeros((0, self._dim or 0), dtype=np.float32)

    def _rerank_batch(self, job: Tuple[str, List[str]]) -> np.ndarray:
        s, route = self.settings, self._route("rerank")
        if s.raw_scores and s.api == "cohere":
            raise HttpSettingsError(f"{self.shown}: api 'cohere' cannot return raw scores (raw_scores = true)")
        query, docs = job
        payload = self._request("POST", route, rerank_body(s.api, query, docs, s.model, s.raw_scores, s.body))
        self._check_model(payload, route)
        return self._read(route, lambda: read_scores(s.api, payload, len(docs)))

    def rerank(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """Scores of ``passages`` for ``query`` (float32, input order), ``batch_size`` passages per request."""
        return self.score_pairs([(query, p) for p in passages])

    def score_pairs(self, pairs: Sequence[Tuple[str, str]]) -> np.ndarray:
        """Scores of ``(query, passage)`` pairs in input order. Pairs are grouped by query, one request per
        query and ``batch_size`` passages (a cross-encoder scores each pair on its own, so grouping is exact)."""
        groups: Dict[str, List[int]] = {}
        for i, (query, _) in enumerate(pairs):
            groups.setdefault(query, []).append(i)
        size = self.settings.batch_size
        jobs = [(q, idx[j:j + size]) for q, idx in groups.items() for j in range(0, len(idx), size)]
        parts = self._map(self._rerank_batch, [(q, [pairs[i][1] for i in idx]) for q, idx in jobs])
        out = np.zeros(len(pairs), dtype=np.float32)
        for (_, idx), scores in zip(jobs, parts):
            out[idx] = scores
        return out

    def _map(self, fn: Callable[[Any], np.ndarray], jobs: List[Any]) -> List[np.ndarray]:
        """``fn`` over ``jobs`` with at most ``concurrency`` requests in flight; the first failure cancels the
        requests not yet sent and is raised (the ones in flight end within ``timeout_s``)."""
        if self.settings.concurrency == 1 or len(jobs) <= 1:
            return [fn(job) for job in jobs]
        pool = ThreadPoolExecutor(max_workers=self.settings.concurrency, thread_name_prefix="harness-http")
        try:
            futures = [pool.submit(fn, job) for job in jobs]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in futures if f in done and f.exception() is not None]
            if failed:
                raise failed[0].exception()  # type: ignore[misc]
            return [f.result() for f in futures]
        finally:
            self._stopping.set()  # also on Ctrl-C: requests in flight end within timeout_s, none is retried
            pool.shutdown(wait=True, cancel_futures=True)
            self._stopping.clear()

    def server_info(self) -> Dict[str, Any]:
        """Best-effort facts for the fingerprint (TEI ``/info``, ``/models``, Infinity's OpenAPI version); an
        endpoint that fails is recorded as its one-line error, never raised."""
        info: Dict[str, Any] = {}
        for route in self._routes["info"]:
            try:
                payload = self._request("GET", route, retries=min(1, self.settings.retries))
                info[route] = curate_info(route, payload, self.settings.model)
            except ServerError as err:
                info[route] = {"error": str(err)}
        self._info = self._scrub(info)
        return self._info

    def record(self) -> Dict[str, Any]:
        """What this client did, for the results metadata: settings, counters, echoes, server facts. No secrets:
        header names only, and every string scrubbed."""
        s = self.settings
        with self._lock:
            rec = {"api": s.api, "url": self.shown, "model": s.model, "models_echoed": sorted(self._echoed),
                   "request_batch_size": s.batch_size, "concurrency": s.concurrency, "timeout_s": s.timeout_s,
                   "max_retries": s.retries, **self._counts, "raw_scores": s.raw_scores,
                   "header_names": sorted(s.headers), "body": dict(s.body), "dim": self._dim,
                   "server": {"info": self._info, "headers": dict(self._headers)}}
        return self._scrub(rec)


def embed_texts(settings: HttpSettings, texts: Sequence[str]) -> Tuple[np.ndarray, Dict[str, Any]]:
    """Served embeddings of ``texts`` and the record of how they were obtained (server facts included)."""
    with HttpModelClient(settings) as client:
        client.server_info()
        return client.embed(texts), client.record()


def score_pairs(settings: HttpSettings, pairs: Sequence[Tuple[str, str]]) -> Tuple[np.ndarray, Dict[str, Any]]:
    """Served rerank scores of ``pairs`` and the record of how they were obtained (server facts included)."""
    with HttpModelClient(settings) as client:
        client.server_info()
        return client.score_pairs(pairs), client.record()
