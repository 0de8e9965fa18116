"""A gate that never lies, against hostile servers: the served-model client and ``harness run --models http://...``.

Each misbehaviour of ``tests/misbehaving_server.py`` must end as one ``HarnessError`` line naming the URL (without
credentials or query), in bounded wall time, with no secret in any text and no results file; never a
traceback, never the drift code. The wire parsers and the settings parser are fuzzed (``fuzz`` marker).
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, List, Optional
from urllib.parse import quote, quote_plus, urlsplit

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("httpx", reason="httpx is not installed (pip install httpx)")

from harness.cli import main
from harness.errors import HarnessError
from harness.run import http_wire
from harness.run.http_backend import HttpModelClient, HttpSettings, HttpSettingsError, settings_from_mapping

from misbehaving_server import Close, Hang, MisbehavingServer, drip, json_response, response

SECRET = "SECRET+a/b=="  # a query value whose raw, quote, quote_plus and decoded forms all differ
TOKEN = "tok-5e6f7a8b9c0d"


@pytest.fixture
def serve():
    servers: List[MisbehavingServer] = []

    def start(script: Callable[[Any], Any]) -> MisbehavingServer:
        servers.append(MisbehavingServer(script))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def embeddings(req: Any, rows: Optional[list] = None) -> bytes:
    texts = req.json["input"]
    rows = rows if rows is not None else [[float(len(t)), 1.0] for t in texts]
    return json_response({"data": [{"index": i, "embedding": r} for i, r in enumerate(rows)], "model": "m"})


def info_then(answer: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``/v1/models`` answers an empty list; the embedding requests get ``answer``."""
    def script(req: Any) -> Any:
        if req.method == "GET":
            return [json_response({"data": []})]
        out = answer(req)
        return [out] if isinstance(out, bytes) else out
    return script


def fails(server: MisbehavingServer, match: str, within_s: float = 10.0, texts: Optional[List[str]] = None,
          url: Optional[str] = None, **kw: Any) -> str:
    """The client's one-line error for ``server`` (embedding ``texts``), checked for shape, secrets and time."""
    settings = HttpSettings(**{"url": url or server.url, "api": "openai", "model": "m", "retries": 0, "timeout_s": 5.0, **kw})
    started = time.monotonic()
    with pytest.raises(HarnessError) as info:
        with HttpModelClient(settings, sleep=lambda s: None) as client:
            client.server_info()
            client.embed(texts or ["a", "bb"])
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{server.url}/"), message
    assert re.search(match, message), message
    assert elapsed < within_s, f"{elapsed:.1f}s: {message}"
    for secret in (SECRET, quote(SECRET, safe=""), quote_plus(SECRET), "SECRET a/b==", TOKEN):
        assert secret not in message
    return message


# -- bad answers --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("answer, match", [
    (lambda r: json_response({"error": "bad"}, status=400), "HTTP 400"),
    (lambda r: json_response({"error": "boom"}, status=500), "HTTP 500"),
    (lambda r: response(200, b"{not json", {"content-type": "text/plain"}), r"not JSON \(text/plain\)"),
    (lambda r: response(200, b"\xff\xfe\x00garbage"), "not JSON"),
    (lambda r: embeddings(r, [[1.0]]), "1 vectors for 2 inputs"),
    (lambda r: embeddings(r, [[1.0, 2.0], [1.0]]), "different dimensions"),
    (lambda r: embeddings(r, [[True, 1.0], [1.0, 1.0]]), "not a non-empty list of numbers"),
    (lambda r: embeddings(r, [["1", 1.0], [1.0, 1.0]]), "not a non-empty list of numbers"),
    (lambda r: response(200, b'{"data": [{"index": 0, "embedding": [NaN]}, {"index": 1, "embedding": [1]}]}'), "NaN or Inf"),
    (lambda r: embeddings(r, [[10 ** 400, 1.0], [1.0, 1.0]]), "integer"),
    (lambda r: embeddings(r, [[1e300, 1.0], [1.0, 1.0]]), "NaN or Inf"),
    (lambda r: response(200, b'{"data": [{"index": 0, "embedding": [1e400]}, {"index": 1, "embedding": [1]}]}'), "NaN or Inf"),
    (lambda r: response(200, b"[" * 100_000 + b"]" * 100_000), "nested"),
    (lambda r: response(200, b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"), "nested"),
    (lambda r: json_response({"data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [1.0]}]}), r"duplicates \[0\]"),
    (lambda r: json_response({"data": [{"index": 1.0, "embedding": [1.0]}, {"index": 0, "embedding": [1.0]}]}), "integer 'index'"),
    (lambda r: json_response({"data": [{"index": 0, "embedding": [1.0]}, {"index": 10 ** 400, "embedding": [1.0]}]}), "integer"),
    (lambda r: response(200, b"this is not gzip at all", {"content-encoding": "gzip"}), "decode|gzip|encoding"),
    (lambda r: [response(200, b'{"data": [{"index": 0', length=5000), Close()], "dropped|closed|incomplete"),
    (lambda r: response(200, b" " * (3 * 1024 * 1024) + b"[]"), "larger than 2 MiB"),
    (lambda r: response(200, gzip.compress(b" " * (3 * 1024 * 1024) + b"[]"), {"content-encoding": "gzip"}), "larger than 2 MiB"),
])
def test_a_bad_answer_is_one_line_naming_the_url(serve, answer, match):
    fails(serve(info_then(answer)), match, max_response_mb=2)


def test_reordered_indices_are_put_back(serve):
    def answer(req):
        rows = [{"index": i, "embedding": [float(i), 1.0]} for i in range(len(req.json["input"]))]
        return json_response({"data": rows[::-1], "model": "m"})

    server = serve(info_then(answer))
    with HttpModelClient(HttpSettings(url=server.url, model="m")) as client:
        np.testing.assert_array_equal(client.embed(["a", "b", "c"]), [[0, 1], [1, 1], [2, 1]])
        assert client.record()["reordered_responses"] == 1


@pytest.mark.parametrize("info", [
    {"data": [{"id": "m", "meta": json.loads("[" * 500 + "]" * 500)}]},
    {"data": [{"id": {"nested": ["x"]}, "created": [1]}, "junk", 10 ** 400]},
    {"data": "x", "object": [[[[[[[[[[[[1]]]]]]]]]]]]},
    b"[" * 50_000 + b"]" * 50_000,
    {"data": [{"id": "m", "owned_by": 10 ** 400, "x": float("inf")}]},
])
def test_server_facts_that_do_not_conform_are_ignored(serve, info):
    def script(req):
        if req.method == "GET":
            return [response(200, info) if isinstance(info, bytes) else response(200, json.dumps(info).encode())]
        return [embeddings(req)]

    server = serve(script)
    with HttpModelClient(HttpSettings(url=server.url, model="m")) as client:
        facts = client.server_info()
        assert client.embed(["a", "bb"]).shape == (2, 2)
        json.dumps(client.record(), allow_nan=False)
    assert set(facts) == {"/v1/models"}


# -- redirects ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize("target", ["same", "other"])
def test_a_redirect_is_refused_naming_both_urls(serve, status, target):
    other = serve(lambda req: [embeddings(req)])
    location = "/elsewhere/v1/embeddings?k=1" if target == "same" else f"http://user:pw@127.0.0.1:{other.port}/v1/embeddings?k=1"

    def answer(req):  # the redirect's body is a valid answer: it must not be taken
        body = embeddings(req).split(b"\r\n\r\n", 1)[1]
        return response(status, body, {"location": location})

    server = serve(info_then(answer))
    message = fails(server, f"HTTP {status} redirect to ")
    shown = f"{server.url}/elsewhere/v1/embeddings" if target == "same" else f"{other.url}/v1/embeddings"
    assert shown in message and "pw" not in message and "k=1" not in message
    assert other.posts() == []


# -- time: deadlines hold whatever the server does -------------------------------------------------------------------
def test_a_drip_ends_at_the_request_deadline(serve):
    head = response(200, b"", length=200).split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    server = serve(info_then(lambda req: drip(head, b'{"data": []}' + b" " * 188, every_s=0.3)))
    fails(server, r"no complete answer within 1s", within_s=2.5, timeout_s=1.0)


def test_silence_ends_at_the_deadlines_and_is_retried_once_at_most(serve):
    server = serve(info_then(lambda req: [Hang()]))
    fails(server, r"no complete answer within 1s.*after 2 attempt", within_s=2 * 1 + 1.5, timeout_s=1.0, retries=3)
    assert len(server.posts()) == 2
    run_bound = serve(info_then(lambda req: [Hang()]))
    fails(run_bound, r"run deadline of 1.5s", within_s=1.5 + 1.0, timeout_s=1.0, retries=3, run_timeout_s=1.5)


def test_headers_then_silence_and_a_slow_connect_are_bounded(serve):
    head = response(200, b"", length=100).split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    server = serve(info_then(lambda req: [head, Hang()]))
    fails(server, "no complete answer", within_s=2 * 0.5 + 1.5, timeout_s=0.5, retries=3)


def test_the_defaults_fail_a_dead_server_well_within_a_minute():
    s = HttpSettings(url="http://127.0.0.1:9")
    worst = s.timeout_s * 2 + s.backoff_s  # silence is retried once
    assert s.timeout_s == 20 and worst <= 45 and s.deadline_s() >= worst


# -- secrets --------------------------------------------------------------------------------------------------------
def test_secrets_are_scrubbed_in_every_form(serve, monkeypatch):
    monkeypatch.setenv("HOSTILE_TOKEN", TOKEN)
    forms = [SECRET, quote(SECRET, safe=""), quote_plus(SECRET), quote(SECRET), "SECRET a/b==",
             quote(SECRET, safe="").lower(), json.dumps(SECRET).replace("/", "\\/"), TOKEN, quote(f"Bearer {TOKEN}")]

    def answer(req):
        return json_response({"error": " | ".join(forms), "query": req.query}, status=401)

    server = serve(info_then(answer))
    url = f"{server.url}/?api_key={quote_plus(SECRET)}"
    message = fails(server, "HTTP 401", url=url, headers={"Authorization": "Bearer env:HOSTILE_TOKEN"})
    assert server.posts()[0].query == f"api_key={quote_plus(SECRET)}" and "***" in message


@pytest.mark.parametrize("value, problem", [
    (TOKEN + "\n", "line break"),
    (TOKEN + "\u00e9", "ASCII"),
    ("tok\x01en", "control"),
])
def test_a_header_value_that_cannot_be_sent_is_refused_without_showing_it(monkeypatch, value, problem):
    monkeypatch.setenv("HOSTILE_TOKEN", value)
    with pytest.raises(HttpSettingsError, match=problem) as info:
        HttpModelClient(HttpSettings(url="http://127.0.0.1:9", headers={"Authorization": "Bearer env:HOSTILE_TOKEN"}))
    assert TOKEN not in str(info.value) and "HOSTILE_TOKEN" in str(info.value)


@pytest.mark.parametrize("headers, problem", [
    ({"Authorization": "B\u00e9arer env:X"}, "ASCII"),
    ({"Authori zation": "env:X"}, "header name"),
    ({"X-Key": "\r\nInjected: 1 env:X"}, "must be 'env:VARIABLE'|line break|control"),
])
def test_header_settings_are_checked_when_the_config_is_read(headers, problem):
    with pytest.raises(HttpSettingsError, match=problem) as info:
        settings_from_mapping({"url": "http://127.0.0.1:9", "headers": headers}, where="harness.toml [models.x]")
    assert "\n" not in str(info.value) and "Injected" not in str(info.value)


@pytest.mark.parametrize("url, match", [
    ("http://127.0.0.1:99999/m", "port"),
    ("http://[::1/m", "not a valid URL"),
    ("http://127.0.0.1:9/m\x00x", "control"),
    ("http://127.0.0.1:9/m x", "control|space"),
    ("http://user:hunter2@127.0.0.1:9/m", "no credentials"),
])
def test_bad_urls_are_one_line_without_credentials(url, match):
    with pytest.raises(HttpSettingsError, match=match) as info:
        HttpSettings(url=url)
    assert "hunter2" not in str(info.value) and "\n" not in str(info.value)


def _error_lines(err: str) -> List[str]:
    return [line for line in err.strip().splitlines() if not re.match(r"harness (run|check): \[\d+/\d+\] ", line)]


@pytest.mark.parametrize("url, match", [
    ("http://127.0.0.1:99999/m", "port"),
    ("http://[::1/m", "not a valid URL"),
    ("http://127.0.0.1:9/m\x01", "control"),
    ("http://user:hunter2@127.0.0.1:9/m?key=hunter2", "no credentials"),
    ("http://user:hunter2@[::1/m", "not a valid URL"),
])
def test_the_cli_door_refuses_bad_urls_in_one_line(tmp_path, capsys, url, match):
    out = tmp_path / "r.parquet"
    assert main(["run", "--models", url, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    lines = _error_lines(captured.err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(match, lines[0]), captured.err
    assert "hunter2" not in captured.err + captured.out and "Traceback" not in captured.err and not out.exists()


def test_a_config_body_that_is_not_json_is_refused(tmp_path, capsys):
    path = tmp_path / "harness.toml"
    path.write_text('[models.m]\nkind = "bi-encoder"\nsource = "served"\nbackend = "http"\nhttp = { url = "http://127.0.0.1:9", body = { x = nan } }\n', encoding="utf-8")
    assert main(["run", "--config", str(path), "--out", str(tmp_path / "r.parquet")]) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "body" in lines[0] and "model 'm'" in lines[0]


def test_the_cli_door_with_timeout_a_drip_and_a_secret(serve, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOSTILE_TOKEN", TOKEN)
    head = response(200, b"", length=100).split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    server = serve(info_then(lambda req: drip(head, (SECRET + TOKEN).encode() * 10, every_s=0.2)))
    path = tmp_path / "harness.toml"
    path.write_text(f'[models.m]\nkind = "bi-encoder"\nsource = "served"\nbackend = "http"\nhttp = {{ url = "{server.url}?api_key={quote_plus(SECRET)}", '
                    'headers = { Authorization = "Bearer env:HOSTILE_TOKEN" }, concurrency = 2, batch_size = 2 }\n',
                    encoding="utf-8")
    out = tmp_path / "r.parquet"
    started = time.monotonic()
    assert main(["run", "--config", str(path), "--timeout", "1", "--out", str(out)]) == 2
    assert time.monotonic() - started < 2 * 1 + 2.5
    captured = capsys.readouterr()
    lines = _error_lines(captured.err)
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert f"{server.url}/v1/embeddings: no complete answer within 1s" in lines[0]
    written = "".join(p.read_text("latin-1") for p in tmp_path.rglob("*") if p.is_file() and p != path)
    for secret in (SECRET, quote(SECRET, safe=""), quote_plus(SECRET), "SECRET a/b==", TOKEN):
        assert secret not in captured.err + captured.out + written
    assert not out.exists() and not list(tmp_path.glob("*.parquet*"))


def test_ctrl_c_stops_a_concurrent_run_within_two_seconds(serve, tmp_path):
    server = serve(info_then(lambda req: [Hang()]))
    path = tmp_path / "harness.toml"
    path.write_text(f'[models.m]\nkind = "bi-encoder"\nsource = "served"\nbackend = "http"\nhttp = {{ url = "{server.url}", concurrency = 2, batch_size = 2, '
                    'timeout_s = 300 }\n', encoding="utf-8")
    import harness

    code = Path(harness.__file__).resolve().parent.parent  # the harness under test, not necessarily this checkout
    env = {**os.environ, "PYTHONPATH": str(code) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "--config", str(path), "--out", str(tmp_path / "r.parquet"),
                             "--no-progress"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        limit = time.monotonic() + 60
        while len(server.posts()) < 2 and time.monotonic() < limit and proc.poll() is None:
            time.sleep(0.05)
        assert len(server.posts()) == 2, proc.poll()
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        signalled = time.monotonic()
        _, err = proc.communicate(timeout=10)
        took = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and took < 2.0, (proc.returncode, took, err)
    assert b"Traceback" not in err and not (tmp_path / "r.parquet").exists()


# -- fuzzing --------------------------------------------------------------------------------------------------------
_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10 ** 500), max_value=10 ** 500),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
_json_like = st.recursive(_scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=5), st.dictionaries(st.sampled_from(["index", "embedding", "score", "relevance_score", "data",
                                                                 "results", "model", "id", "x"]), kids, max_size=5)),
    max_leaves=40)
_index_item = st.fixed_dictionaries({"index": _json_like, "embedding": _json_like, "score": _json_like,
                                     "relevance_score": _json_like})
_payload = st.one_of(_json_like, st.lists(_index_item, max_size=4), st.fixed_dictionaries({"data": st.lists(_index_item, max_size=4)}),
                     st.fixed_dictionaries({"results": st.lists(_index_item, max_size=4)}),
                     st.lists(st.lists(_scalars, max_size=4), max_size=4))


@pytest.mark.fuzz
@given(api=st.sampled_from(http_wire.APIS), payload=_payload, count=st.integers(0, 4), dim=st.one_of(st.none(), st.integers(1, 4)))
def test_fuzz_the_wire_readers(api, payload, count, dim):
    for read in (lambda: http_wire.read_embeddings(api, payload, count, dim), lambda: http_wire.read_scores(api, payload, count)):
        try:
            values, reordered = read()
        except HarnessError as err:
            assert "\n" not in str(err)
            continue
        assert values.dtype == np.float32 and len(values) == count and np.isfinite(values).all()
        assert isinstance(reordered, bool)
        if values.ndim == 2 and dim is not None and count:
            assert values.shape[1] == dim


@pytest.mark.fuzz
@given(raw=st.one_of(st.binary(max_size=200), _json_like.map(lambda v: json.dumps(v).encode())),
       route=st.sampled_from(["/info", "/models", "/v1/models", "/openapi.json"]), model=st.one_of(st.none(), st.text(max_size=3)))
def test_fuzz_json_and_server_facts(raw, route, model):
    try:
        payload = http_wire.parse_json(raw)
    except HarnessError as err:
        assert "\n" not in str(err)
        return
    json.dumps(http_wire.curate_info(route, payload, model), allow_nan=False)


_toml_like = st.recursive(
    st.one_of(st.booleans(), st.integers(), st.floats(), st.text(max_size=10), st.datetimes(),
              st.sampled_from(["http://127.0.0.1:9", "https://[::1]:8/v1", "env:X", "Bearer env:HOME", "http://[::1/x",
                               "http://h:99999/", "openai", "tei"])),
    lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(st.text(max_size=6), kids, max_size=3)), max_leaves=10)


_URLS = st.sampled_from(["http://127.0.0.1:9", "http://127.0.0.1:99999/m", "http://[::1/m", "http://h/m\x01",
                         "http://u:p@h/", "https://h:0/", "http://h/m x", "http://h:abc/"])


@pytest.mark.fuzz
@given(url=_URLS, fuzzed=st.dictionaries(st.sampled_from(sorted(HttpSettings.__dataclass_fields__) + ["other"]), _toml_like,
                                         max_size=2),
       body=st.dictionaries(st.text(max_size=4), _toml_like, max_size=2))
def test_fuzz_the_settings_parser(url, fuzzed, body):
    entry = {"url": url, "body": body, **fuzzed}  # mostly valid, one or two settings anything
    try:
        settings = settings_from_mapping(entry, where="harness.toml [models.x]")
    except HttpSettingsError as err:
        assert "\n" not in str(err)
        return
    assert math.isfinite(settings.timeout_s) and math.isfinite(settings.deadline_s()) and settings.url.startswith("http")
    assert urlsplit(settings.url).port != 0 and "\n" not in http_wire.shown_url(settings.url)  # a port parses
    json.dumps(dict(settings.body), allow_nan=False)
