"""Embeddings and rerank scores from a served model, so that a serving stack is judged like a library upgrade.

Every failure is one ``HarnessError`` line naming the URL; secrets (header values, URL query values) become
``***`` in every text the client hands out, raw, percent-encoded and decoded. A gate must not hang: a caller
waits at most ``timeout_s`` per request and never past the run deadline, request threads are never joined
(Ctrl-C is never waited on), oversized answers and redirects are refused. Retries and limits:
docs/served-endpoints.md. httpx is imported inside functions (the runner's import diet).
"""

from __future__ import annotations

import queue
import re
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

import numpy as np

from harness.config.http import (MAX_RETRIES, HttpSettings, HttpSettingsError, query_secrets, resolve_headers,
                                 settings_from_mapping)
from harness.errors import HarnessError, squeeze
from harness.run.http_wire import (RETRY_STATUSES, ROUTES, NotJson, WireError, curate_info, embed_body, join_path,
                                   parse_json, read_embeddings, read_scores, rerank_body, retry_after,
                                   shown_url, status_problem, transport_problem)

__all__ = ["HttpSettings", "HttpSettingsError", "ServerError", "NoAnswer", "HttpModelClient", "settings_from_mapping",
           "RETRY_STATUSES", "MAX_RETRIES"]

#: Response headers kept for the fingerprint (plus any whose name contains "version"); nothing else.
_KEPT_HEADERS = ("server", "x-model-id", "x-compute-type", "openai-model", "openai-version", "via")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_MIB = 1024 * 1024
_ERROR_EXCERPT_BYTES = 64 * 1024  # of an error answer, only an excerpt is shown
_INFO_TIMEOUT_S = 10.0  # server facts are best-effort: a slow /info does not hold the run for a full timeout_s
_TICK_S = 0.25  # how often a waiting worker looks whether its batch was stopped


class ServerError(HarnessError):
    """The server did not answer, or answered something other than the embeddings or scores asked for."""


class NoAnswer(ServerError):
    """No complete answer: refused or dropped connection, or a deadline passed."""


class _Attempt:
    """What one exchange produced; filled by its request thread, read by the waiting caller once ``done``."""

    def __init__(self) -> None:
        self.done, self.cancelled, self.too_big = threading.Event(), False, False
        self.status, self.reason, self.body = 0, "", b""
        self.headers: Dict[str, str] = {}
        self.error: Optional[BaseException] = None


class HttpModelClient:
    """Embeds texts and scores pairs through one server; a context manager that closes its connections.
    ``sleep`` is the backoff wait (tests pass a recorder); the run deadline starts when the client is made."""

    def __init__(self, settings: HttpSettings, *, sleep: Optional[Callable[[float], None]] = None) -> None:
        import httpx

        self.settings = settings
        self.shown = shown_url(settings.url)
        self._routes = ROUTES[settings.api]
        headers, secrets = resolve_headers(settings.headers, self.shown)
        parts = urlsplit(settings.url)
        secrets = sorted(set(secrets + query_secrets(parts.query)), key=len, reverse=True)
        self._secret_re = re.compile("|".join(map(re.escape, secrets)), re.IGNORECASE) if secrets else None
        try:
            httpx.URL(settings.url)
        except (httpx.InvalidURL, ValueError) as err:
            raise HttpSettingsError(self._scrub(f"{self.shown}: url is not a valid URL ({squeeze(err, 120)})")) from None
        self._http = httpx.Client(headers=headers, timeout=httpx.Timeout(settings.timeout_s), follow_redirects=False,
                                  trust_env=(parts.hostname or "") not in _LOOPBACK,  # no proxy for loopback
                                  # uncapped: a request abandoned at its deadline must not block the retry
                                  limits=httpx.Limits(max_connections=None, max_keepalive_connections=settings.concurrency))
        self._sleep = sleep or self._pause
        self._lock = threading.Lock()
        self._local = threading.local()  # .stop: the batch of a worker thread was stopped (another request failed)
        self._run_deadline = time.monotonic() + settings.deadline_s()
        self._counts = {"requests": 0, "answered": 0, "retries_used": 0, "reordered_responses": 0}
        self._echoed: set = set()
        self._headers: Dict[str, str] = {}
        self._info: Optional[Dict[str, Any]] = None
        self._dim: Optional[int] = settings.expected_dim

    def __enter__(self) -> HttpModelClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections without waiting on a request thread still blocked in a read (Ctrl-C)."""
        closer = threading.Thread(target=self._http.close, daemon=True, name="harness-http-close")
        closer.start()
        closer.join(1.0)

    def _scrub(self, value: Any) -> Any:
        """Every string the client hands out passes here: secrets, in any of their forms, become ``***``."""
        if isinstance(value, str):
            return self._secret_re.sub("***", value) if self._secret_re is not None else value
        if isinstance(value, dict):
            return {self._scrub(k): self._scrub(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._scrub(v) for v in value]
        return value

    def _error(self, route: str, problem: str, kind: type = ServerError) -> ServerError:
        return kind(self._scrub(f"{shown_url(self.settings.url, route)}: {squeeze(problem, 400)}"))

    def _bump(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def _pause(self, seconds: float) -> None:
        """The default backoff wait: interruptible, and cut short when the worker's batch was stopped."""
        stop = getattr(self._local, "stop", None)
        stop.wait(seconds) if stop is not None else time.sleep(seconds)

    def _exchange(self, attempt: _Attempt, method: str, url: str, body: Optional[Dict[str, Any]], deadline: float) -> None:
        """One request, run in its own thread: the status, headers and body (capped as bytes arrive)."""
        cap = self.settings.max_response_mb * _MIB
        try:
            with self._http.stream(method, url, json=body) as response:
                attempt.status, attempt.reason = response.status_code, response.reason_phrase
                attempt.headers = {k.lower(): v for k, v in response.headers.items()}
                limit = cap if attempt.status < 300 else _ERROR_EXCERPT_BYTES
                declared = attempt.headers.get("content-length", "")
                if attempt.status < 300 and declared.isdigit() and int(declared) > cap:
                    attempt.too_big = True
                    return
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > limit:
                        attempt.too_big = attempt.status < 300
                        break
                    chunks.append(chunk)
                    if attempt.cancelled or time.monotonic() > deadline:
                        return
                attempt.body = b"".join(chunks)
        except BaseException as err:  # handed to the caller, which turns it into one line
            attempt.error = err
        finally:
            attempt.done.set()

    def _wait(self, attempt: _Attempt, deadline: float) -> bool:
        """Whether ``attempt`` finished by ``deadline``; Ctrl-C and a stopped batch end the wait at once."""
        stop = getattr(self._local, "stop", None)
        try:
            while not attempt.done.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                attempt.done.wait(min(left, _TICK_S))
                if stop is not None and stop.is_set() and not attempt.done.is_set():
                    return False
            return True
        finally:
            attempt.cancelled = not attempt.done.is_set()

    def _failure(self, attempt: _Attempt, url: str) -> Tuple[str, str]:
        """``(problem, retry class)`` of a finished attempt (``http_wire.transport_problem``/``status_problem``)."""
        if attempt.error is not None:
            return transport_problem(attempt.error, self.settings.timeout_s)
        if attempt.too_big:
            return f"the answer is larger than {self.settings.max_response_mb} MiB (max_response_mb)", "final"
        text = self._scrub(attempt.body.decode("utf-8", "replace"))  # before repr() escapes a secret's form
        return status_problem(attempt.status, attempt.reason, attempt.headers, text, url)

    def _request(self, method: str, route: str, body: Optional[Dict[str, Any]] = None, *,
                 retries: Optional[int] = None, timeout_s: Optional[float] = None) -> Any:
        """The parsed JSON answer of one request, within its deadlines, retrying transient failures a bounded
        number of times (a request that got no complete answer in time: once at most)."""
        limit = self.settings.retries if retries is None else retries
        timeout_s = timeout_s or self.settings.timeout_s
        parts = urlsplit(self.settings.url)
        url = parts._replace(path=join_path(parts.path, route)).geturl()
        silences = 0
        for attempt_no in range(limit + 1):
            now = time.monotonic()
            if now >= self._run_deadline:
                raise self._error(route, f"the run deadline of {self.settings.deadline_s():g}s passed (run_timeout_s)", NoAnswer)
            self._bump("requests")
            deadline, wait_s = min(now + timeout_s, self._run_deadline), None
            attempt = _Attempt()
            threading.Thread(target=self._exchange, args=(attempt, method, url, body, deadline), daemon=True,
                             name="harness-http-request").start()
            if not self._wait(attempt, deadline):
                if deadline >= self._run_deadline:
                    raise self._error(route, f"no complete answer before the run deadline of "
                                             f"{self.settings.deadline_s():g}s (run_timeout_s)", NoAnswer)
                problem, retry = f"no complete answer within {timeout_s:g}s (timeout_s, --timeout)", "silence"
            else:
                problem, retry = self._failure(attempt, url)
            if not retry:
                self._bump("answered")
                self._keep_headers(attempt.headers)
                try:
                    return parse_json(attempt.body)
                except NotJson:
                    kind = attempt.headers.get("content-type", "no content-type")
                    text = attempt.body[:4096].decode("utf-8", "replace")
                    raise self._error(route, f"the answer is not JSON ({kind}): {squeeze(text)!r}") from None
                except WireError as err:
                    raise self._error(route, f"unexpected answer: {err}") from None
            if retry == "final":
                raise self._error(route, problem)
            silences += retry == "silence"
            if retry == "transient":
                wait_s = retry_after(attempt.headers.get("retry-after"))
            pause = min(self.settings.max_backoff_s, max(self.settings.backoff_s * 2 ** attempt_no, wait_s or 0.0))
            stop = getattr(self._local, "stop", None)
            no_time = time.monotonic() + pause >= self._run_deadline
            if attempt_no == limit or silences > 1 or (stop is not None and stop.is_set()) or no_time:
                answered = self._counts["answered"]
                died = f"; it had answered {answered} request(s) before: did the server stop mid-run?" if answered else ""
                if no_time and attempt_no < limit:
                    died += f"; no retry: the run deadline of {self.settings.deadline_s():g}s (run_timeout_s) is too near"
                error_kind = NoAnswer if retry == "silence" or attempt.status == 0 else ServerError
                raise self._error(route, f"{problem} (after {attempt_no + 1} attempt(s){died})", error_kind)
            self._bump("retries_used")
            self._sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    def _keep_headers(self, headers: Any) -> None:
        with self._lock:
            for name, value in headers.items():
                name = name.lower()
                if (name in _KEPT_HEADERS or "version" in name) and name not in self._headers:
                    self._headers[name] = squeeze(value, 120)

    def _check_model(self, payload: Any, route: str) -> None:
        echoed = payload.get("model") if isinstance(payload, dict) else None
        if echoed is None:
            return
        asked = self.settings.model
        if not isinstance(echoed, str):
            if asked is not None and self.settings.check_model:
                raise self._error(route, f"the answer's 'model' is a {type(echoed).__name__}, not a name")
            return
        with self._lock:
            self._echoed.add(squeeze(echoed, 120))
        if asked is not None and self.settings.check_model and echoed != asked:
            raise self._error(route, f"the server answered for model {squeeze(echoed, 120)!r}, not the {asked!r} asked for")

    def _read(self, route: str, read: Callable[[], Tuple[np.ndarray, bool]]) -> np.ndarray:
        """Run a ``http_wire`` reader; its ``ValueError`` (or a shape surprise) becomes a ``ServerError``."""
        try:
            values, reordered = read()
        except WireError as err:
            raise self._error(route, f"unexpected answer: {err}") from None
        if reordered:
            self._bump("reordered_responses")
        return values

    def _route(self, task: str) -> str:
        route = getattr(self._routes, task)
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
        """``fn`` over ``jobs`` with at most ``concurrency`` requests in flight, in daemon threads. The first
        failure (or Ctrl-C) is raised at once: the batch is stopped (no retry, no new request) and no thread is
        waited on; one blocked in a read ends by its own deadline."""
        if self.settings.concurrency == 1 or len(jobs) <= 1:
            return [fn(job) for job in jobs]
        stop, outcomes, lock = threading.Event(), queue.Queue(), threading.Lock()  # type: ignore[var-annotated]
        pending = iter(enumerate(jobs))

        def worker() -> None:
            self._local.stop = stop
            while not stop.is_set():
                with lock:
                    item = next(pending, None)
                if item is None:
                    return
                try:
                    outcomes.put((item[0], fn(item[1]), None))
                except BaseException as err:  # handed to the caller
                    outcomes.put((item[0], None, err))
                    return

        for _ in range(min(self.settings.concurrency, len(jobs))):
            threading.Thread(target=worker, daemon=True, name="harness-http").start()
        results: List[Any] = [None] * len(jobs)
        try:
            for _ in jobs:
                while True:
                    try:
                        index, value, err = outcomes.get(timeout=_TICK_S)  # a timed wait: Ctrl-C gets through
                        break
                    except queue.Empty:
                        continue
                if err is not None:
                    raise err
                results[index] = value
            return results
        finally:
            stop.set()

    def server_info(self) -> Dict[str, Any]:
        """Best-effort facts for the fingerprint (TEI ``/info``, ``/models``, Infinity's OpenAPI version); an
        endpoint that fails is recorded as its one-line error, never raised; after one that got no answer the
        others are not asked (a dead server costs one short deadline here, not one per route)."""
        info: Dict[str, Any] = {}
        silent: Optional[str] = None
        for route in self._routes.info:
            if silent is not None:
                info[route] = {"error": f"not asked: {silent} got no answer"}
                continue
            try:
                payload = self._request("GET", route, retries=0, timeout_s=min(_INFO_TIMEOUT_S, self.settings.timeout_s))
                info[route] = curate_info(route, payload, self.settings.model)
            except NoAnswer as err:
                info[route], silent = {"error": str(err)}, route
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
                   "run_timeout_s": s.deadline_s(), "max_response_mb": s.max_response_mb,
                   "max_retries": s.retries, **self._counts, "raw_scores": s.raw_scores,
                   "header_names": sorted(s.headers), "body": dict(s.body), "dim": self._dim,
                   "server": {"info": self._info, "headers": dict(self._headers)}}
        return self._scrub(rec)

