"""``backend = "http"`` models through ``harness run``, ``compare`` and ``explain``, against a scripted Infinity.

The stand-in answers with the committed tiny baseline's own vectors and scores (looked up by text), so the
served run must reproduce the baseline through the whole stack: config -> client -> results file -> verdict.
The real server is in ``test_served_infinity.py`` (the same commands against infinity-emb).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest

pytest.importorskip("httpx", reason="httpx is not installed (pip install httpx)")

from test_http_backend import FakeServer, Reply

from harness.cli import main
from harness.results import ModelRecord, ResultsFile, SideSettings

from conftest import ROOT
from synthetic_results import baseline_answers

BASELINE = ROOT / "fixtures" / "baselines" / "tiny-cpu-float32.parquet"
CORPUS = ROOT / "fixtures" / "corpus"


def infinity_like(vectors: Dict[str, list], scores: Dict[Tuple[str, str], float], break_it: str = ""):
    def handler(req: Dict[str, Any]) -> Reply:
        body = req["json"] or {}
        if req["path"] == "/models":
            return Reply({"data": [{"id": "tiny-bi-encoder", "backend": "torch", "stats": {"batch_size": 32}}]},
                         headers={"x-infinity-version": "0.0.77-stand-in"})
        if req["path"] == "/embeddings":
            data = [{"index": i, "embedding": vectors[t]} for i, t in enumerate(body["input"])]
            if break_it == "nan":
                data[0]["embedding"] = [float("nan")] * len(data[0]["embedding"])
            return Reply({"data": data, "model": body["model"]})
        if req["path"] == "/rerank":
            results = [{"index": i, "relevance_score": scores[(body["query"], d)]} for i, d in enumerate(body["documents"])]
            return Reply({"results": sorted(results, key=lambda r: -r["relevance_score"]), "model": body["model"]})
        return Reply({"detail": "Not Found"}, status=404)
    return handler


def config(tmp_path: Path, url: str, extra: str = "") -> Path:
    path = tmp_path / "harness.toml"
    path.write_text(f'''
[models.tiny-bi-encoder]
backend = "http"
http = {{ url = "{url}", api = "infinity", batch_size = 16, headers = {{ Authorization = "Bearer env:SERVED_TOKEN" }} }}
{extra}
[models.tiny-cross-encoder]
backend = "http"
http = {{ url = "{url}", api = "infinity", concurrency = 2 }}
''', encoding="utf-8")
    return path


@pytest.fixture
def serve():
    servers = []

    def start(handler):
        servers.append(FakeServer(handler))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def answers():
    return baseline_answers()


def test_a_served_run_reproduces_the_baseline_and_compare_judges_it_as_served(serve, answers, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SERVED_TOKEN", "s3cret-token-value")
    server = serve(infinity_like(*answers))
    out = tmp_path / "served.parquet"
    assert main(["run", "--config", str(config(tmp_path, server.url)), "--out", str(out)]) == 0
    assert "s3cret-token-value" not in out.read_bytes().decode("latin-1")
    results = ResultsFile(out)
    record = results.meta["models"]["tiny-bi-encoder"]
    assert record["backend"] == "http" and "weights_sha256" not in record and record["found_via"] == "server"
    assert record["http"]["model"] == "tiny-bi-encoder" and record["http"]["request_batch_size"] == 16
    assert record["http"]["header_names"] == ["Authorization"] and record["source"]["source"] == "path"
    assert results.meta["models"]["tiny-cross-encoder"]["http"]["reordered_responses"] > 0
    served = results.fingerprint["served"]
    assert served["tiny-bi-encoder"]["server"]["headers"]["x-infinity-version"] == "0.0.77-stand-in"
    assert "url" not in served["tiny-bi-encoder"] and results.fingerprint["device"] == "http"
    capsys.readouterr()
    report = tmp_path / "verdict.json"
    assert main(["compare", str(BASELINE), str(out), "--json", str(report)]) == 0
    verdicts = json.loads(report.read_text(encoding="utf-8"))["models"]
    assert {v["model_id"]: v["tolerance_class"] for v in verdicts} == {"tiny-bi-encoder": "served", "tiny-cross-encoder": "served"}
    assert main(["explain", str(BASELINE), str(out)]) == 0
    explained = capsys.readouterr().out
    assert "server" in explained and "weights" not in explained.split("server", 1)[0].splitlines()[-1]


def _error_lines(err: str) -> str:
    """stderr without the run's progress lines (``harness run: [1/2] ... started``): what the error said."""
    return "\n".join(line for line in err.strip().splitlines()
                     if not re.match(r"harness (run|check): \[\d+/\d+\] ", line))


def test_a_bad_answer_is_exit_2_with_one_line_and_no_results_file(serve, answers, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SERVED_TOKEN", "tok-abcdef123")
    server = serve(infinity_like(*answers, break_it="nan"))
    out = tmp_path / "served.parquet"
    assert main(["run", "--config", str(config(tmp_path, server.url)), "--out", str(out)]) == 2
    err = _error_lines(capsys.readouterr().err)
    assert f"{server.url}/embeddings: unexpected answer: NaN or Inf in 1 vector(s)" in err and "\n" not in err
    assert not out.exists() and not list(tmp_path.glob("*.parquet*"))


def test_nothing_listens_is_exit_2_and_no_file(tmp_path, monkeypatch, capsys):
    from harness.matrix.server_process import free_port

    monkeypatch.setenv("SERVED_TOKEN", "tok-abcdef123")
    url = f"http://127.0.0.1:{free_port()}"
    path = tmp_path / "harness.toml"
    path.write_text(f'[models.tiny-bi-encoder]\nbackend = "http"\nhttp = {{ url = "{url}", api = "infinity", retries = 0 }}\n',
                    encoding="utf-8")
    assert main(["run", "--config", str(path), "--out", str(tmp_path / "r.parquet")]) == 2
    assert "connection refused" in capsys.readouterr().err and not (tmp_path / "r.parquet").exists()


@pytest.mark.parametrize("entry, match", [
    ('backend = "http"', r"backend = \"http\" needs a table http = "),
    ('http = { url = "http://127.0.0.1:1" }', r"an 'http' table needs backend = \"http\""),
    ('backend = "http"\nhttp = { url = "http://127.0.0.1:1", api = "grpc" }', r"api must be one of openai, infinity, tei, cohere"),
    ('backend = "http"\nhttp = { url = "http://127.0.0.1:1", speed = 3 }', r"unknown http setting\(s\) speed"),
    ('backend = "http"\nhttp = { url = "http://127.0.0.1:1", headers = { X = "literal" } }', None),
    ('backend = "http"\nprompt = "q: "\nhttp = { url = "http://127.0.0.1:1" }', r"prompt cannot be set for backend = \"http\""),
])
def test_bad_http_entries_are_one_line_errors_naming_file_and_model(tmp_path, capsys, entry, match):
    path = tmp_path / "harness.toml"
    path.write_text(f"[models.tiny-bi-encoder]\n{entry}\n", encoding="utf-8")
    code = main(["run", "--config", str(path), "--out", str(tmp_path / "r.parquet")])
    err = _error_lines(capsys.readouterr().err)
    assert code == 2 and "\n" not in err and not (tmp_path / "r.parquet").exists()
    if match is None:  # a literal header value is refused when the client starts, and never echoed
        assert "header 'X' must be 'env:VARIABLE'" in err and "literal" not in err
    else:
        import re
        assert re.search(match, err) and f"{path}: model 'tiny-bi-encoder'" in err, err


def test_the_served_class_is_chosen_at_full_precision_only():
    import dataclasses

    from harness.config.policy import choose_class, load_policy

    policy, cpu, http = load_policy(), {"device_type": "cpu", "dtype": "float32"}, {"device_type": "http", "dtype": "float32"}
    served = SideSettings.of(http, ModelRecord(backend="http"))
    library = SideSettings.of(cpu, ModelRecord(loaded_dtype="float32"))
    assert served.served and not library.served
    assert choose_class(policy, library, served)[0] == "served"
    assert choose_class(policy, served, library)[0] == "served"
    half = SideSettings.of(cpu, ModelRecord(loaded_dtype="float16"))
    assert choose_class(policy, half, served)[0] == "fp16"  # reduced precision dominates
    assert choose_class(policy, library, library)[0] == "fp32"
    without = dataclasses.replace(policy, classes={k: v for k, v in policy.classes.items() if k != "served"})
    assert choose_class(without, library, served)[0] == "fp32"


def test_an_ad_hoc_served_model_url_names_the_registry_model(serve, answers, tmp_path, capsys):
    server = serve(infinity_like(*answers))
    out = tmp_path / "adhoc.parquet"
    assert main(["run", "--model", f"{server.url}/tiny-bi-encoder", "--api", "infinity", "--out", str(out)]) == 0
    record = ResultsFile(out).meta["models"]["tiny-bi-encoder"]
    assert record["backend"] == "http" and record["source"]["source"] == "path" and record["http"]["url"] == server.url
    assert main(["compare", str(BASELINE), str(out), "--models", "tiny-bi-encoder"]) == 0
    capsys.readouterr()
    assert main(["run", "--model", "http://127.0.0.1:1", "--out", str(tmp_path / "x.parquet")]) == 2
    assert "the last segment names the model" in capsys.readouterr().err


def test_a_url_query_value_never_reaches_the_results_file(serve, answers, tmp_path, capsys):
    """A gateway key in the URL (``?api_key=...``) is sent, but the results record the URL without its query."""
    server = serve(infinity_like(*answers))
    path = tmp_path / "harness.toml"
    path.write_text(f'[models.tiny-bi-encoder]\nbackend = "http"\nhttp = {{ url = "{server.url}?api_key=query-secret-77", '
                    'api = "infinity" }\n', encoding="utf-8")
    out = tmp_path / "served.parquet"
    assert main(["run", "--config", str(path), "--out", str(out)]) == 0
    assert server.posts()[0]["query"] == "api_key=query-secret-77"  # it was used
    assert b"query-secret-77" not in out.read_bytes()
    assert ResultsFile(out).meta["models"]["tiny-bi-encoder"]["source"]["http"]["url"] == server.url
    assert "query-secret-77" not in capsys.readouterr().out


def test_harness_check_of_a_served_baseline_reaches_the_server_through_its_config_or_says_how(
        serve, answers, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SERVED_TOKEN", "tok-check-1")
    server = serve(infinity_like(*answers))
    served_config = config(tmp_path, server.url)
    baseline = tmp_path / "served-baseline.parquet"
    assert main(["run", "--config", str(served_config), "--out", str(baseline)]) == 0
    before = len(server.posts())
    # through the config that served it: the same server, judged as served, passing
    again = tmp_path / "again.parquet"
    assert main(["check", str(baseline), "--config", str(served_config), "--out", str(again)]) == 0
    assert len(server.posts()) > before and ResultsFile(again).fingerprint["device"] == "http"
    assert "served  PASS" in capsys.readouterr().out
    # without it (the shipped registry has no server for these ids): one line that says how, no file
    monkeypatch.chdir(tmp_path / "..")
    lost = tmp_path / "lost.parquet"
    assert main(["check", str(baseline), "--out", str(lost)]) == 2
    err = _error_lines(capsys.readouterr().err)
    assert "\n" not in err and "model 'tiny-bi-encoder': backend = \"http\" needs url" in err
    assert "harness check BASELINE --config harness.toml" in err and not lost.exists()
    # the server is gone: exit 2, one line naming its URL, no file
    server.stop()
    gone = tmp_path / "gone.parquet"
    assert main(["check", str(baseline), "--config", str(served_config), "--out", str(gone)]) == 2
    err = _error_lines(capsys.readouterr().err).splitlines()
    assert len(err) == 1 and f"{server.url}" in err[0] and "connection refused" in err[0] and not gone.exists()


def test_timeout_reaches_every_served_model_of_run_and_check(serve, answers, tmp_path, monkeypatch, capsys):
    """``--timeout`` sets each served model's request deadline (recorded), and the per-run deadline follows it."""
    monkeypatch.setenv("SERVED_TOKEN", "tok-timeout-1")
    server = serve(infinity_like(*answers))
    served_config = config(tmp_path, server.url)
    baseline = tmp_path / "served-baseline.parquet"
    assert main(["run", "--config", str(served_config), "--timeout", "7", "--out", str(baseline)]) == 0
    records = ResultsFile(baseline).meta["models"]
    assert {m: (r["http"]["timeout_s"], r["http"]["run_timeout_s"]) for m, r in records.items()} == {
        "tiny-bi-encoder": (7.0, 600.0), "tiny-cross-encoder": (7.0, 600.0)}
    again = tmp_path / "again.parquet"
    assert main(["check", str(baseline), "--config", str(served_config), "--timeout", "30", "--out", str(again)]) == 0
    assert ResultsFile(again).meta["models"]["tiny-bi-encoder"]["http"]["run_timeout_s"] == 1800.0
    capsys.readouterr()
