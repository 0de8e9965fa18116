"""The HTTP client of served models against a scripted in-process server (stdlib ``http.server`` on 127.0.0.1).

Covers every wire format (OpenAI, Infinity, TEI, Cohere-style rerank), every bad answer (each a one-line
``ServerError`` naming the URL), bounded retries with backoff, and that no header value ever reaches a record
or an error. The real server is exercised in ``test_served_infinity.py``.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import pytest

pytest.importorskip("httpx", reason="httpx is not installed (pip install httpx)")

from harness.errors import HarnessError
from harness.matrix.server_process import free_port
from harness.run.http_backend import HttpModelClient, HttpSettings, HttpSettingsError, ServerError, settings_from_mapping

SECRET = "tok-9f8e7d6c5b4a3921"


class Reply:
    """One scripted answer: JSON (or raw bytes), a status, headers, an optional delay, or a dropped connection."""

    def __init__(self, body: Any = None, status: int = 200, headers: Optional[Dict[str, str]] = None,
                 delay: float = 0.0, drop: bool = False) -> None:
        self.body, self.status, self.headers, self.delay, self.drop = body, status, headers or {}, delay, drop


class FakeServer:
    """Answers each request with ``handler(request)``; records every request as a dict."""

    def __init__(self, handler: Callable[[Dict[str, Any]], Reply]) -> None:
        self.handler, self.requests, self.inflight, self.max_inflight = handler, [], 0, 0
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def version_string(self) -> str:
                return "fake-server/1.0"

            def _serve(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                path, _, query = self.path.partition("?")
                request = {"method": self.command, "path": path, "query": query, "headers": dict(self.headers),
                           "json": json.loads(raw) if raw else None}
                with owner.lock:
                    owner.requests.append(request)
                    owner.inflight += 1
                    owner.max_inflight = max(owner.max_inflight, owner.inflight)
                try:
                    reply = owner.handler(request)
                    time.sleep(reply.delay)
                finally:
                    with owner.lock:
                        owner.inflight -= 1
                if reply.drop:
                    self.close_connection = True
                    return
                body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                for name, value in {"content-type": "application/json", **reply.headers}.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # a client that gave up (timeout tests) is expected
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def posts(self) -> List[Dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "POST"]


@pytest.fixture
def serve():
    servers: List[FakeServer] = []

    def start(handler: Callable[[Dict[str, Any]], Reply]) -> FakeServer:
        servers.append(FakeServer(handler))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def vec(text: str) -> List[float]:
    """A vector that identifies its text, so order mistakes show."""
    return [float(len(text)), float(sum(map(ord, text)) % 97), 0.5, -1.0]


def openai_reply(req: Dict[str, Any], model: Optional[str] = None, order: Callable[[list], list] = lambda d: d) -> Reply:
    texts = req["json"]["input"]
    data = [{"object": "embedding", "index": i, "embedding": vec(t)} for i, t in enumerate(texts)]
    return Reply({"object": "list", "data": order(data), "model": model or req["json"].get("model")})


def settings(server: FakeServer, **kw: Any) -> HttpSettings:
    return HttpSettings(**{"url": server.url, "api": "openai", "model": "m", "batch_size": 2, "retries": 2, **kw})


def run_embed(server: FakeServer, texts: List[str], sleeps: Optional[list] = None, **kw: Any):
    with HttpModelClient(settings(server, **kw), sleep=(sleeps.append if sleeps is not None else lambda s: None)) as client:
        return client.embed(texts), client.record()


TEXTS = ["alpha", "be", "gamma ray", "d", "epsilon!"]
EXPECTED = np.array([vec(t) for t in TEXTS], dtype=np.float32)


# -- wire formats -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("base", ["", "/v1", "/gateway/v1/"])
def test_openai_embeddings_in_batches_and_input_order(serve, base):
    server = serve(lambda req: openai_reply(req, order=lambda d: d[::-1]))
    vectors, record = run_embed(server, TEXTS, url=server.url + base)
    np.testing.assert_array_equal(vectors, EXPECTED)
    assert vectors.dtype == np.float32
    posts = server.posts()
    assert [p["json"]["input"] for p in posts] == [TEXTS[0:2], TEXTS[2:4], TEXTS[4:5]]
    assert {p["path"] for p in posts} == {base.rstrip("/").replace("/v1", "") + "/v1/embeddings"}
    assert all(p["json"]["model"] == "m" and p["json"]["encoding_format"] == "float" for p in posts)
    assert record["requests"] == 3 and record["reordered_responses"] == 2  # the one-text batch cannot be reordered
    assert record["models_echoed"] == ["m"] and record["request_batch_size"] == 2 and record["dim"] == 4


def test_infinity_embeddings_rerank_and_server_facts(serve):
    def handler(req):
        if req["path"] == "/models":
            return Reply({"data": [{"id": "ce", "created": 1, "stats": {"queue_fraction": 0.3, "batch_size": 8},
                                    "backend": "torch"}, {"id": "other"}]})
        if req["path"] == "/openapi.json":
            return Reply({"info": {"title": "Infinity", "version": "0.0.77"}, "paths": {}})
        if req["path"] == "/embeddings":
            return openai_reply(req)
        docs, query = req["json"]["documents"], req["json"]["query"]
        results = sorted(({"index": i, "relevance_score": len(query) + len(d) / 10} for i, d in enumerate(docs)),
                         key=lambda r: r["relevance_score"])  # ascending: the 3-doc batch comes back reordered
        return Reply({"object": "rerank", "results": results, "model": req["json"]["model"]}, headers={"x-infinity-version": "0.0.77"})

    server = serve(handler)
    with HttpModelClient(settings(server, api="infinity", model="ce", raw_scores=True, batch_size=3)) as client:
        info = client.server_info()
        pairs = [("q", "aaa"), ("qq", "b"), ("q", "cc"), ("q", "d"), ("q", "eeeee")]
        scores = client.score_pairs(pairs)
        record = client.record()
    np.testing.assert_allclose(scores, [len(q) + len(d) / 10 for q, d in pairs], rtol=1e-6)
    assert info["/models"] == [{"id": "ce", "backend": "torch", "batch_size": 8}]
    assert info["/openapi.json"] == {"title": "Infinity", "version": "0.0.77"}
    reranks = [p for p in server.posts() if p["path"] == "/rerank"]
    assert [(p["json"]["query"], p["json"]["documents"]) for p in reranks] == [("q", ["aaa", "cc", "d"]), ("q", ["eeeee"]),
                                                                             ("qq", ["b"])]
    assert all(p["json"]["raw_scores"] is True and p["json"]["return_documents"] is False for p in reranks)
    assert record["server"]["headers"]["x-infinity-version"] == "0.0.77" and record["reordered_responses"] == 1


def test_tei_embed_and_rerank(serve):
    def handler(req):
        if req["path"] == "/info":
            return Reply({"model_id": "BAAI/x", "version": "1.5.0", "max_client_batch_size": 32}, headers={"x-model-id": "BAAI/x"})
        if req["path"] == "/embed":
            return Reply([vec(t) for t in req["json"]["inputs"]])
        texts = req["json"]["texts"]
        return Reply(sorted(({"index": i, "score": float(len(t))} for i, t in enumerate(texts)), key=lambda r: -r["score"]))

    server = serve(handler)
    with HttpModelClient(settings(server, api="tei", model=None)) as client:
        assert client.server_info()["/info"]["version"] == "1.5.0"
        np.testing.assert_array_equal(client.embed(TEXTS), EXPECTED)
        np.testing.assert_array_equal(client.rerank("query", ["a", "bbb", "cc"]), [1.0, 3.0, 2.0])
        assert client.record()["server"]["headers"] == {"server": "fake-server/1.0", "x-model-id": "BAAI/x"}
    assert server.posts()[0]["json"] == {"inputs": TEXTS[:2]}
    assert server.posts()[-1]["json"] == {"query": "query", "texts": ["cc"], "raw_scores": False, "return_text": False}


def test_cohere_rerank(serve):
    server = serve(lambda req: Reply({"results": [{"index": i, "relevance_score": 1.0 / (i + 1)}
                                                  for i in range(len(req["json"]["documents"]))][::-1], "model": "rr"}))
    with HttpModelClient(settings(server, api="cohere", model="rr", batch_size=10)) as client:
        np.testing.assert_allclose(client.rerank("q", ["a", "b", "c"]), [1.0, 0.5, 1 / 3], rtol=1e-6)
        with pytest.raises(HttpSettingsError, match="'cohere' has no embed route"):
            client.embed(["x"])
    assert server.posts()[0]["path"] == "/v1/rerank"
    assert server.posts()[0]["json"] == {"query": "q", "documents": ["a", "b", "c"], "return_documents": False, "model": "rr"}


def test_concurrency_is_bounded_and_keeps_order(serve):
    server = serve(lambda req: Reply(openai_reply(req).body, delay=0.05))
    texts = [f"text number {i}" * (i % 4 + 1) for i in range(20)]
    vectors, record = run_embed(server, texts, batch_size=2, concurrency=3)
    np.testing.assert_array_equal(vectors, np.array([vec(t) for t in texts], dtype=np.float32))
    assert 2 <= server.max_inflight <= 3 and record["requests"] == 10 and record["concurrency"] == 3


def test_a_failed_request_stops_the_retries_of_the_others(serve):
    busy = {"left": 0}

    def handler(req):
        if req["json"]["input"] == ["bad"]:
            return Reply({"error": "no"}, status=400)
        if req["json"]["input"] == ["slow"]:
            return Reply({"busy": True}, status=503, delay=0.2)
        busy["left"] -= 1
        return Reply({}, status=503) if busy["left"] >= 0 else openai_reply(req)

    server = serve(handler)
    sleeps: list = []
    with HttpModelClient(settings(server, batch_size=1, concurrency=2, retries=5), sleep=sleeps.append) as client:
        with pytest.raises(ServerError, match="HTTP 400"):
            client.embed(["bad", "slow"])
        time.sleep(0.4)  # the failure is raised at once; the slow request, if it was sent, ends unretried
        assert sleeps == [] and len(server.posts()) <= 2
        busy["left"] = 1  # the next call retries again as usual
        assert client.embed(["a"]).shape == (1, 4) and sleeps == [0.5]


# -- bad answers: one line, naming the URL and the problem --------------------------------------------------------
def _bad(server: FakeServer, match: str, texts: List[str] = TEXTS, **kw: Any) -> str:
    with pytest.raises(ServerError, match=match) as info:
        run_embed(server, texts, **kw)
    message = str(info.value)
    assert isinstance(info.value, HarnessError) and "\n" not in message
    assert message.startswith(f"{server.url}/v1/embeddings: ") or message.startswith(kw.get("url", "\0")), message
    return message


def _data(req, rows):
    return Reply({"data": rows, "model": "m"})


@pytest.mark.parametrize("answer, match", [
    (lambda req: Reply(b"<html>gateway</html>", headers={"content-type": "text/html"}), r"not JSON \(text/html\): '<html>"),
    (lambda req: Reply({"data": "x"}), "expected an object with a 'data' list"),
    (lambda req: Reply([1, 2]), "expected an object with a 'data' list"),
    (lambda req: _data(req, [{"index": 0}, {"index": 1}]), "objects with 'embedding' and 'index'"),
    (lambda req: _data(req, [{"index": 0, "embedding": ["1", 2]}, {"index": 1, "embedding": [1, 2]}]), "not a non-empty list of numbers"),
    (lambda req: _data(req, [{"index": 0, "embedding": [1, 2]}, {"index": 1, "embedding": [1, 2, 3]}]), r"different dimensions \[2, 3\]"),
    (lambda req: _data(req, [{"index": 0, "embedding": [1.0]}]), "1 vectors for 2 inputs"),
    (lambda req: _data(req, [{"index": i, "embedding": [1.0]} for i in range(3)]), "3 vectors for 2 inputs"),
    (lambda req: _data(req, [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [2.0]}]), r"duplicates \[0\], missing \[1\]"),
    (lambda req: _data(req, [{"index": 0, "embedding": [1.0]}, {"index": 5, "embedding": [2.0]}]), r"missing \[1\]"),
    (lambda req: _data(req, [{"embedding": [1.0], "index": 0}, {"embedding": [2.0]}]), "integer 'index'"),
    (lambda req: _data(req, [{"index": 0, "embedding": [1.0]}, {"index": True, "embedding": [2.0]}]), "integer 'index'"),
    (lambda req: Reply(b'{"data": [{"index": 0, "embedding": [NaN]}, {"index": 1, "embedding": [1]}], "model": "m"}'),
     r"NaN or Inf in 1 vector"),
    (lambda req: _data(req, [{"index": 0, "embedding": [1e39]}, {"index": 1, "embedding": [1.0]}]), "NaN or Inf in 1 vector"),
    (lambda req: openai_reply(req, model="some-other-model"), "answered for model 'some-other-model', not the 'm' asked for"),
])
def test_bad_answers_are_one_line_server_errors(serve, answer, match):
    server = serve(answer)
    _bad(server, match, texts=TEXTS[:2])
    assert len(server.posts()) == 1  # bad answers are not retried


def test_wrong_dimension_expected_and_within_a_run(serve):
    _bad(serve(openai_reply), "vectors have 4 dimensions, expected 8", expected_dim=8)
    calls = []

    def shrinking(req):
        calls.append(1)
        return Reply({"data": [{"index": i, "embedding": [1.0] * (4 if len(calls) == 1 else 3)}
                               for i in range(len(req["json"]["input"]))], "model": "m"})

    _bad(serve(shrinking), "vectors have 3 dimensions, earlier ones in this run 4")


def test_nan_and_inf_scores_are_refused(serve):
    server = serve(lambda req: Reply(b'[{"index": 0, "score": Infinity}, {"index": 1, "score": 0.5}]'))
    with pytest.raises(ServerError, match=r"/rerank: unexpected answer: NaN or Inf in 1 score"):
        with HttpModelClient(settings(server, api="tei")) as client:
            client.rerank("q", ["a", "b"])


def test_http_errors_carry_an_excerpt_and_only_transient_ones_are_retried(serve):
    sleeps: list = []
    message = _bad(serve(lambda req: Reply({"error": {"message": "Invalid model: nope"}}, status=400)),
                   r"HTTP 400 Bad Request: '\{\"error\": \{\"message\": \"Invalid model: nope\"", sleeps=sleeps)
    assert sleeps == [] and "attempt" not in message
    _bad(serve(lambda req: Reply(b"boom " * 200, status=500)), r"HTTP 500 Internal Server Error: 'boom boom .*\.\.\.'$", sleeps=sleeps)
    assert sleeps == []
    server = serve(lambda req: Reply({"detail": "overloaded"}, status=503))
    _bad(server, r"HTTP 503 Service Unavailable: .*overloaded.* \(after 4 attempt\(s\)\)$", sleeps=sleeps,
         retries=3, backoff_s=0.5, max_backoff_s=1.5)
    assert sleeps == [0.5, 1.0, 1.5] and len(server.posts()) == 4


def test_retry_after_is_honoured_but_capped_and_a_recovery_counts_retries(serve):
    answers = iter([Reply({}, status=429, headers={"retry-after": "1.25"}), Reply({}, status=429, headers={"retry-after": "999"}),
                    Reply({}, status=502)])
    server = serve(lambda req: next(answers, None) or openai_reply(req))
    sleeps: list = []
    vectors, record = run_embed(server, TEXTS[:2], sleeps=sleeps, retries=3, backoff_s=0.5, max_backoff_s=4.0)
    np.testing.assert_array_equal(vectors, EXPECTED[:2])
    assert sleeps == [1.25, 4.0, 2.0] and record["retries_used"] == 3 and record["requests"] == 4


def test_connection_refused_is_retried_a_bounded_number_of_times():
    url = f"http://127.0.0.1:{free_port()}"
    sleeps: list = []
    with pytest.raises(ServerError, match=r"/v1/embeddings: connection refused \(after 3 attempt\(s\)\)$") as info:
        with HttpModelClient(HttpSettings(url=url, model="m", retries=2, backoff_s=0.25), sleep=sleeps.append) as client:
            client.embed(["x"])
    assert str(info.value).startswith(url) and sleeps == [0.25, 0.5]


def test_a_timeout_is_an_error_after_the_retries(serve):
    server = serve(lambda req: Reply(openai_reply(req).body, delay=0.6))
    _bad(server, r"no complete answer within 0.15s \(timeout_s, --timeout\) \(after 2 attempt\(s\)\)$", timeout_s=0.15, retries=3)
    assert len(server.requests) == 2  # no complete answer in time: retried once at most


def test_a_server_that_dies_mid_run(serve):
    holder: Dict[str, FakeServer] = {}

    def handler(req):
        if len(holder["server"].posts()) <= 2:
            return openai_reply(req)
        threading.Thread(target=holder["server"].stop).start()
        return Reply(drop=True)

    holder["server"] = server = serve(handler)
    message = _bad(server, r"(connection refused|dropped mid-request).*answered 2 request\(s\) before: did the server stop mid-run\?",
                   retries=2)
    assert "after 3 attempt(s)" in message


# -- credentials never leave the client ---------------------------------------------------------------------------
def test_header_values_come_from_the_environment_and_never_show(serve, monkeypatch):
    monkeypatch.setenv("HARNESS_TEST_TOKEN", SECRET)
    headers = {"Authorization": "Bearer env:HARNESS_TEST_TOKEN", "X-Api-Key": "env:HARNESS_TEST_TOKEN"}

    def handler(req):
        assert req["headers"]["Authorization"] == f"Bearer {SECRET}" and req["headers"]["X-Api-Key"] == SECRET
        if req["path"] == "/v1/models":
            return Reply({"data": [{"id": "m", "owned_by": f"key {SECRET}"}]}, headers={"x-server-version": SECRET})
        if req["json"]["input"] == ["bad"]:
            return Reply({"error": f"invalid key Bearer {SECRET} (key=qs-secret-2)"}, status=401)
        return openai_reply(req)

    server = serve(handler)
    url = server.url + "?key=qs-secret-2"
    with HttpModelClient(settings(server, url=url, headers=headers)) as client:
        client.server_info()
        client.embed(TEXTS)
        with pytest.raises(ServerError) as info:
            client.embed(["bad"])
        record = client.record()
    assert server.posts()[0]["query"] == "key=qs-secret-2"
    assert record["header_names"] == ["Authorization", "X-Api-Key"] and record["url"] == server.url
    text = json.dumps(record) + str(info.value)
    for secret in (SECRET, "qs-secret-2"):
        assert secret not in text
    assert "***" in str(info.value) and record["server"]["headers"]["x-server-version"] == "***"


def test_bad_header_settings_name_the_problem_not_the_value(monkeypatch):
    monkeypatch.delenv("HARNESS_UNSET_VAR", raising=False)
    for headers, match in [({"Authorization": f"Bearer {SECRET}"}, "must be 'env:VARIABLE'"),
                           ({"Authorization": "env:HARNESS_UNSET_VAR"}, "reads environment variable HARNESS_UNSET_VAR, which is not set")]:
        with pytest.raises(HttpSettingsError, match=match) as info:
            HttpModelClient(HttpSettings(url="http://127.0.0.1:9", headers=headers))
        assert SECRET not in str(info.value)


@pytest.mark.parametrize("kw, match", [
    ({"api": "grpc"}, "api must be one of openai, infinity, tei, cohere"),
    ({"url": "ftp://x"}, "url must be http"),
    ({"url": f"http://user:{SECRET}@127.0.0.1:9"}, r"^http://127.0.0.1:9: no credentials in the url"),
    ({"retries": 11}, "retries must be between 0 and 10"),
    ({"retries": -1}, "retries must be between 0 and 10"),
    ({"batch_size": 0}, "batch_size"),
    ({"concurrency": 0}, "concurrency"),
    ({"timeout_s": 0}, "timeout_s"),
    ({"backoff_s": 9.0, "max_backoff_s": 8.0}, "backoff_s <= max_backoff_s"),
    ({"body": {"input": ["x"], "truncate": True}}, "body cannot set input"),
    ({"batch_size": "32"}, "batch_size must be int, not str"),
    ({"retries": True}, "retries must be int, not bool"),
    ({"headers": ["Authorization"]}, "headers must be mapping, not list"),
    ({"model": 7}, "model must be none or str, not int"),
])
def test_settings_are_validated(kw, match):
    with pytest.raises(HttpSettingsError, match=match):
        HttpSettings(**{"url": "http://127.0.0.1:9", **kw})


def test_settings_from_a_config_table():
    table = {"url": "http://127.0.0.1:9/v1", "api": "tei", "batch_size": 8, "headers": {"Authorization": "env:T"}}
    assert settings_from_mapping(table, where="harness.toml [models.x]").batch_size == 8
    with pytest.raises(HttpSettingsError, match=r"harness.toml \[models.x\]: unknown http setting\(s\) tokne"):
        settings_from_mapping({**table, "tokne": "x"}, where="harness.toml [models.x]")
    with pytest.raises(HttpSettingsError, match="needs url"):
        settings_from_mapping({"api": "tei"}, where="harness.toml [models.x]")
    with pytest.raises(HttpSettingsError, match=r"\[models.x\]: http://127.0.0.1:9/v1: concurrency"):
        settings_from_mapping({**table, "concurrency": 100}, where="harness.toml [models.x]")


def test_openai_has_no_rerank_and_cohere_no_raw_scores(serve):
    server = serve(lambda req: Reply({}))
    with HttpModelClient(settings(server)) as client, pytest.raises(HttpSettingsError, match="'openai' has no rerank route"):
        client.rerank("q", ["a"])
    with HttpModelClient(settings(server, api="cohere", raw_scores=True)) as client, pytest.raises(HttpSettingsError, match="raw scores"):
        client.rerank("q", ["a"])
    assert server.requests == []


def test_the_http_settings_are_configuration_and_the_config_never_imports_the_runner():
    """``HttpSettings`` lives in ``harness.config.http`` (re-exported by the client): reading a registry entry
    must not reach up into ``harness.run`` (lazy imports count: an arrow is an arrow)."""
    import ast
    from pathlib import Path

    from harness.config import http as config_http

    config_dir = Path(config_http.__file__).parent
    upward = []
    for path in sorted(config_dir.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            upward += [f"{path.name}:{node.lineno} imports {n}" for n in names if n == "harness.run" or n.startswith("harness.run.")]
    assert not upward
    assert HttpSettings is config_http.HttpSettings and settings_from_mapping is config_http.settings_from_mapping
