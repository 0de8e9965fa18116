"""Server cells of the version matrix: ``matrix.toml`` keys, ``harness.matrix.served_cell``, and one real run.

The fast tests run a cell through ``cellrun.run_cell`` with a prepared (reused) virtualenv whose ``bin`` holds
wrappers around this interpreter's ``python`` and ``harness`` and a stand-in ``infinity_emb``: a stdlib HTTP
server that takes infinity's ``v2`` argv and answers with the committed tiny baseline's vectors and scores, so
the cell's results must pass ``harness compare`` against that baseline. The ``matrix``-marked test builds the
real ``[matrix.served]`` (a library cell and infinity-emb cells) with ``nox -s matrix``.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List

import pytest

import harness.matrix.spec as hm
from harness.matrix import cellrun, served_cell, venvs
from harness.matrix.cells import StageStatus, read_cell_state
from harness.matrix.pythons import find_python
from harness.verdict import CellStatus

from conftest import ROOT, pid_gone

pytest.importorskip("httpx", reason="httpx is not installed (pip install httpx)")
from synthetic_results import baseline_answers

BASELINE = ROOT / "fixtures" / "baselines" / "tiny-cpu-float32.parquet"

STAND_IN = '''
import http.server, json, os, sys
argv = sys.argv[1:]
assert argv[0] == "v2", argv
def values(flag):
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]
port, batch = int(values("--port")[0]), int(values("--batch-size")[0])
models = dict(zip(values("--served-model-name"), values("--model-id")))
with open(os.environ["STAND_IN_SEEN"] + ".tmp", "w") as f:  # renamed into place: a reader never sees it empty
    json.dump({"argv": argv, "pid": os.getpid()}, f)
os.replace(os.environ["STAND_IN_SEEN"] + ".tmp", os.environ["STAND_IN_SEEN"])
if os.environ.get("STAND_IN_MODE") == "crash":
    sys.exit("OSError: stand-in cannot load " + ", ".join(models))
import time
time.sleep(float(os.environ.get("STAND_IN_DELAY", "0")))
for name, directory in models.items():
    assert os.path.isfile(os.path.join(directory, "config.json")), directory
answers = json.load(open(os.environ["STAND_IN_ANSWERS"]))
class H(http.server.BaseHTTPRequestHandler):
    def reply(self, code, payload):
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        if self.path == "/health":
            return self.reply(200, {"unix": 0})
        if self.path == "/models":
            return self.reply(200, {"data": [{"id": m, "stats": {"batch_size": batch}} for m in models]})
        return self.reply(404, {"detail": "Not Found"})
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if body.get("model") not in models:
            return self.reply(400, {"detail": "unknown model"})
        if self.path == "/embeddings":
            data = [{"index": i, "embedding": answers["vectors"][t]} for i, t in enumerate(body["input"])]
            return self.reply(200, {"data": data, "model": body["model"]})
        if self.path == "/rerank":
            scores = [answers["scores"][body["query"] + "\\u0000" + d] for d in body["documents"]]
            return self.reply(200, {"results": [{"index": i, "relevance_score": s} for i, s in enumerate(scores)],
                                    "model": body["model"]})
        return self.reply(404, {"detail": "Not Found"})
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
'''


def _script(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


_gone = pid_gone


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    vectors, scores = baseline_answers()
    path = tmp_path_factory.mktemp("answers") / "answers.json"
    path.write_text(json.dumps({"vectors": vectors, "scores": {f"{q}\x00{p}": s for (q, p), s in scores.items()}}), encoding="utf-8")
    return path


FAKE_LOCK = "infinity-emb==0.0.77\ntorch==2.13.0\n"
FAKE_UV = f"""import sys
from pathlib import Path
args = sys.argv[1:]
if args[:2] == ["pip", "compile"]:
    Path(args[args.index("-o") + 1]).write_text({FAKE_LOCK!r})
elif args[:2] == ["pip", "freeze"]:
    print({FAKE_LOCK!r}, end="")
else:
    sys.exit(f"stand-in uv: {{args[:2]}} not expected (the cell must be reused)")
"""


@pytest.fixture
def workspace(tmp_path: Path, answers: Path, monkeypatch: pytest.MonkeyPatch):
    """A workspace whose one server cell has a ready virtualenv (stamp matches: no install) with a stand-in server."""
    matrix = hm.load_matrix_file().select("served")
    cell = next(c for c in matrix.cells if c.server)
    # a stand-in uv: the cell resolves to one lock and lists the packages recorded at its install (so it is reused)
    fake_uv = tmp_path / "uv"
    _script(fake_uv, f"#!{sys.executable}\n{FAKE_UV}")
    ws = cellrun.Workspace(root=ROOT, runs=tmp_path / "runs", venvs=tmp_path / "venvs", backend="uv", uv=str(fake_uv),
                           reuse_venvs=True)
    venv = ws.venvs / matrix.name / cell.cell_id
    bin_dir = venvs.bin_dir(venv)
    bin_dir.mkdir(parents=True)
    here = Path(sys.executable).parent
    _script(bin_dir / "python", f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    _script(bin_dir / "harness", f'#!/bin/sh\nexec "{here / "harness"}" "$@"\n')
    _script(bin_dir / "infinity_emb", f"#!{sys.executable}\n{STAND_IN}")
    python = find_python(cell.python)
    assert python, f"no Python {cell.python}"
    stamp = venvs.install_stamp(os.path.realpath(python), ws.backend, cell.requirements(), matrix.model_packages())
    key = venvs.lock_key(f"{stamp} {venv.resolve()}", FAKE_LOCK)
    (venv / venvs.STAMP_FILE).write_text(key + "\n", encoding="utf-8")
    (venv / venvs.FREEZE_FILE).write_text(FAKE_LOCK, encoding="utf-8")
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))  # the server ledger (server_lifetime)
    monkeypatch.setenv("STAND_IN_ANSWERS", str(answers))
    monkeypatch.setenv("STAND_IN_SEEN", str(tmp_path / "seen.json"))
    return ws, matrix, cell, tmp_path / "seen.json"


# -- matrix.toml: server cells ---------------------------------------------------------------------------------

def test_the_served_matrix_has_a_library_cell_and_infinity_cells_with_their_own_pins() -> None:
    matrix = hm.load_matrix_file().select("served")
    library, *servers = matrix.cells
    assert library.server is None and len(servers) >= 2 and {c.server for c in servers} == {"infinity-emb"}
    newest = servers[0]
    assert newest.cell_id == "infinity-emb-0.0.77_torch-2.13.0_py3.11"
    assert newest.params["server-version"] == "0.0.77" and "server" in newest.params
    lines = newest.requirements(["numpy>=1.21", "pyarrow>=14", "httpx>=0.27"])
    assert lines[0] == "infinity-emb[server,torch]==0.0.77" and "torch==2.13.0" in lines
    assert "sentence-transformers==3.4.1" in lines and "click==8.1.8" in lines
    assert "numpy==1.26.4,>=1.21" in lines and "pyarrow<26,>=14" in lines  # numpy 1 cell: pyarrow capped
    assert len({line.split("[")[0].split("=")[0].split("<")[0].split(">")[0] for line in lines}) == len(lines)


def _cells_file(tmp_path: Path, cell: str) -> Path:
    path = tmp_path / "matrix.toml"
    path.write_text(textwrap.dedent('''
        [matrix.m]
        models = "tiny"
        baseline = "tiny-cpu-float32"
        [[matrix.m.cells]]
        python = "3.11"
        ''') + textwrap.dedent(cell), encoding="utf-8")
    return path


@pytest.mark.parametrize("cell, problem", [
    ('server = "tei"\nserver_version = "1.5"\ntorch = "2.13.0"\n', r"'server' must be one of infinity-emb, got 'tei'"),
    ('server = "infinity-emb"\ntorch = "2.13.0"\n', r"'server_version' must be the exact infinity-emb version"),
    ('server = "infinity-emb"\nserver_version = "latest"\ntorch = "2.13.0"\n', r"'server_version' must be one exact version"),
    ('server = "infinity-emb"\nserver_version = "0.0.77"\ntorch = "2.13.0"\nserver_batch_size = 0\n',
     r"'server_batch_size' must be an integer between 1 and 4096, got 0"),
    ('server = "infinity-emb"\nserver_version = "0.0.77"\n', r"missing 'torch'"),
    ('server = "infinity-emb"\nserver_version = "0.0.77"\ntorch = "<3"\n', r"'torch' must be one exact version"),
    ('server_version = "0.0.77"\ntorch = "2.13.0"\nsentence-transformers = "3.4.1"\ntransformers = "4.57.6"\n',
     r"'server_version' needs 'server'"),
    ('torch = "2.13.0"\nsentence-transformers = "<4"\ntransformers = "4.57.6"\n', r"'sentence-transformers' must be one exact version"),
])
def test_bad_server_cell_keys_name_the_file_the_cell_and_the_key(tmp_path: Path, cell: str, problem: str) -> None:
    path = _cells_file(tmp_path, cell)
    with pytest.raises(hm.MatrixError, match=rf"^{path}: matrix 'm' cell 1: {problem}") as info:
        hm.load_matrix_file(path)
    assert "\n" not in str(info.value)


def test_a_server_cell_may_leave_the_library_pins_to_the_server(tmp_path: Path) -> None:
    path = _cells_file(tmp_path, 'server = "infinity-emb"\nserver_version = "0.0.77"\ntorch = "2.13.0"\n'
                                 'sentence-transformers = "<4"\nserver_batch_size = 8\n')
    cell = hm.load_matrix_file(path).select("m").cells[0]
    assert cell.pins() == ["infinity-emb[server,torch]==0.0.77", "torch==2.13.0", "sentence-transformers<4",
                           "click==8.1.8", "httpx>=0.27"]
    assert cell.params == {"python": "3.11", "server": "infinity-emb", "server-version": "0.0.77", "server-batch-size": 8,
                           "torch": "2.13.0", "sentence-transformers": "<4"}


# -- served_cell through cellrun.run_cell, against the stand-in ----------------------------------------------

def test_a_server_cell_serves_the_models_runs_through_the_server_and_stops_it(workspace, capsys) -> None:
    from harness.cli import main
    from harness.results import ResultsFile

    ws, matrix, cell, seen_file = workspace
    state = cellrun.run_cell(ws, matrix, cell)
    run_dir = ws.run_dir(matrix.name, cell.cell_id)
    assert state.status is StageStatus.OK and state.reused_venv and state.run_exit_code == 0, state.reason
    seen = json.loads(seen_file.read_text(encoding="utf-8"))
    argv: List[str] = seen["argv"]
    flags = [(a, argv[i + 1]) for i, a in enumerate(argv[:-1]) if a.startswith("--")]
    served: Dict[str, str] = dict(zip([v for f, v in flags if f == "--served-model-name"], [v for f, v in flags if f == "--model-id"]))
    assert served == {"tiny-bi-encoder": str(ROOT / "fixtures" / "models" / "tiny-bi-encoder"),
                      "tiny-cross-encoder": str(ROOT / "fixtures" / "models" / "tiny-cross-encoder")}
    assert argv[argv.index("--host") + 1] == "127.0.0.1" and argv[argv.index("--batch-size") + 1] == str(matrix.batch_size)
    assert _gone(seen["pid"]), "the server outlived its cell"
    record = json.loads((run_dir / served_cell.SERVER_RECORD).read_text(encoding="utf-8"))
    assert record["version"] == "0.0.77" and record["options"]["batch_size"] == matrix.batch_size
    results = ResultsFile(run_dir / cellrun.RESULTS_FILE)
    facts = results.fingerprint["served"]["tiny-bi-encoder"]
    assert facts["request_batch_size"] == matrix.batch_size and facts["api"] == "infinity"
    assert facts["server"]["info"]["/models"] == [{"id": "tiny-bi-encoder", "batch_size": matrix.batch_size}]
    assert main(["compare", str(BASELINE), str(run_dir / cellrun.RESULTS_FILE)]) == 0
    assert "served" in capsys.readouterr().out


def test_a_server_that_does_not_start_fails_the_cell_with_its_log_line(workspace, monkeypatch) -> None:
    ws, matrix, cell, seen_file = workspace
    monkeypatch.setenv("STAND_IN_MODE", "crash")
    state = cellrun.run_cell(ws, matrix, cell)
    assert state.status is StageStatus.RUN_FAILED
    headline = state.reason.splitlines()[0]
    assert headline.startswith("`harness run` (no results written) exited 1: ServerStartError: infinity_emb exited with code 1")
    assert "OSError: stand-in cannot load tiny-bi-encoder, tiny-cross-encoder" in headline
    assert _gone(json.loads(seen_file.read_text(encoding="utf-8"))["pid"])


def test_ctrl_c_during_the_run_stops_the_server(workspace, monkeypatch) -> None:
    ws, matrix, cell, seen_file = workspace

    def interrupted(*args, **kwargs):
        pid = json.loads(seen_file.read_text(encoding="utf-8"))["pid"]
        assert not _gone(pid)  # the server is up while the cell's `harness run` runs
        raise KeyboardInterrupt

    monkeypatch.setattr(cellrun, "_run_harness", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cellrun.run_cell(ws, matrix, cell)
    assert _gone(json.loads(seen_file.read_text(encoding="utf-8"))["pid"])


def test_a_failed_harness_run_still_stops_the_server_and_keeps_its_exit_code(workspace, monkeypatch) -> None:
    ws, matrix, cell, seen_file = workspace
    monkeypatch.setattr(cellrun, "_run_harness", lambda *a, **k: cellrun.Ran(2, "harness run: error: http://127.0.0.1:1/x: refused", 0.0))
    state = cellrun.run_cell(ws, matrix, cell)
    assert state.status is StageStatus.RUN_FAILED and state.run_exit_code == 2 and "refused" in state.reason
    assert _gone(json.loads(seen_file.read_text(encoding="utf-8"))["pid"])


def test_a_model_the_cell_cannot_find_is_the_reason_and_no_server_starts(workspace, monkeypatch) -> None:
    ws, matrix, cell, seen_file = workspace
    import dataclasses

    broken = dataclasses.replace(matrix, models=("no-such-model",))
    monkeypatch.setattr(hm.Matrix, "model_packages", lambda self, registry=None: [])  # the cell's lookup decides
    state = cellrun.run_cell(ws, broken, cell)
    assert state.status is StageStatus.RUN_FAILED and "no-such-model" in state.reason.splitlines()[0]
    assert not seen_file.exists()


def _children(pid: int) -> List[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                if entry.isdigit() and int(handle.read().rsplit(b")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")
@pytest.mark.parametrize("when", ["starting", "serving"])
def test_a_matrix_process_killed_with_sigkill_takes_its_cells_server_along(workspace, tmp_path: Path, when: str) -> None:
    """nox's process runs the cell (``cellrun.run_cell``) and is killed -9 (a CI timeout): the cell's server goes too,
    and the results file is complete or absent."""
    import pickle
    import time

    from test_server_lifetime import running, wait_for, wait_gone

    from harness.results import ResultsFile

    ws, matrix, cell, seen_file = workspace
    (tmp_path / "cell.pickle").write_bytes(pickle.dumps((ws, matrix, cell)))
    driver = "import pickle, sys\nfrom harness.matrix import cellrun\ncellrun.run_cell(*pickle.load(open(sys.argv[1], 'rb')))\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), "HARNESS_CACHE_DIR": str(tmp_path / "cache")}
    if when == "starting":
        env["STAND_IN_DELAY"] = "1"
    harness = subprocess.Popen([sys.executable, "-c", driver, str(tmp_path / "cell.pickle")], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = None
    try:
        wait_for(seen_file.exists, 60, "the cell's server to start")
        server = json.loads(seen_file.read_text(encoding="utf-8"))["pid"]
        if when == "serving":
            run_log = ws.run_dir(matrix.name, cell.cell_id) / "run.log"
            wait_for(lambda: "harness run" in run_log.read_text(encoding="utf-8"), 60, "the served harness run")
        time.sleep(0.1)
        assert running(server)
        children = _children(harness.pid)
        started = time.monotonic()
        harness.kill()
        harness.wait(timeout=10)
        gone = wait_gone([server], timeout_s=3.0)
        assert gone is not None, f"the cell's server {server} outlived the matrix process"
        print(f"\ncell's server gone {(time.monotonic() - started) * 1000:.0f} ms after the matrix process was killed ({when})")
        wait_gone(children, timeout_s=30.0)  # the orphaned `harness run` fails on its vanished server, or finishes
        results = ws.run_dir(matrix.name, cell.cell_id) / cellrun.RESULTS_FILE
        assert not results.exists() or ResultsFile(results).fingerprint["served"]
    finally:
        if harness.poll() is None:
            harness.kill()
        if server is not None and running(server):
            os.kill(server, 9)


# -- the real thing: nox -s matrix -- --matrix served ----------------------------------------------------------

def _wanted(config: pytest.Config) -> bool:
    expr = config.getoption("markexpr") or ""
    return os.environ.get("HARNESS_MATRIX_TESTS") == "1" or ("matrix" in expr and "not matrix" not in expr)


@pytest.mark.matrix
@pytest.mark.slow
def test_the_served_matrix_judges_the_library_and_infinity_cells_in_one_report(request, tmp_path: Path) -> None:
    """Real virtualenvs (infinity-emb from PyPI at each cell's version), real servers, one report."""
    if not _wanted(request.config):
        pytest.skip("builds virtualenvs (minutes): select with -m matrix or HARNESS_MATRIX_TESTS=1")
    pytest.importorskip("nox")
    matrix = hm.load_matrix_file().select("served")
    env = {**os.environ, "HARNESS_REPORTS_DIR": str(tmp_path / "reports")}
    proc = subprocess.run([sys.executable, "-m", "nox", "--noxfile", str(ROOT / "noxfile.py"), "-s", "matrix", "--",
                           "--matrix", "served"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600,
                          check=False)
    output = proc.stdout + proc.stderr
    report = json.loads((tmp_path / "reports" / "latest" / "report.json").read_text(encoding="utf-8"))
    cells = {c["cell_id"]: c for c in report["cells"]}
    assert list(cells) == [c.cell_id for c in matrix.cells], output[-5000:]
    for cell in matrix.cells:
        judged = cells[cell.cell_id]
        assert judged["status"] == CellStatus.PASS.value, (judged.get("reason"), output[-5000:])
        classes = {m["model_id"]: m["tolerance_class"] for m in judged["comparison"]["models"]}
        assert set(classes.values()) == ({"served"} if cell.server else {"fp32"}), classes
        state = read_cell_state(tmp_path / "reports" / "runs" / "served" / cell.cell_id)
        assert state is not None and state.status is StageStatus.OK
        if cell.server:
            record = json.loads((tmp_path / "reports" / "runs" / "served" / cell.cell_id / "server.json").read_text())
            assert record["version"] == cell.server_version and record["host"] == "127.0.0.1"
            assert f"infinity-emb {cell.server_version} healthy on http://127.0.0.1:" in output
    assert proc.returncode == 0, output[-5000:]


def test_the_server_gets_every_number_moving_option_explicitly() -> None:
    """The server's batch is ``server_batch_size`` (else the matrix's), device/dtype the matrix's; an OpenAI-style
    prefix is a server option too (``/v1``: infinity then serves ``/v1/embeddings``)."""
    import dataclasses

    from harness.matrix.server_process import InfinityOptions, ServedModel, infinity_command

    matrix = hm.load_matrix_file().select("served")
    cell = next(c for c in matrix.cells if c.server)
    assert served_cell.server_options(matrix, cell) == InfinityOptions(batch_size=32, device="cpu", dtype="float32")
    assert served_cell.server_options(matrix, dataclasses.replace(cell, server_batch_size=4)).batch_size == 4
    argv = infinity_command(Path("/x/bin/infinity_emb"), [ServedModel(Path("/m"), "m")], 1234, InfinityOptions(url_prefix="/v1"))
    pairs = dict(zip(argv[2::1], argv[3::1]))
    assert pairs["--url-prefix"] == "/v1" and pairs["--port"] == "1234" and pairs["--host"] == "127.0.0.1"
    assert pairs["--dtype"] == "float32" and "--no-bettertransformer" in argv and "--no-model-warmup" in argv
    args = served_cell.served_run_args(matrix, cell, "http://127.0.0.1:1234", ["tiny-bi-encoder", "tiny-cross-encoder"])
    assert args == ["--models", "http://127.0.0.1:1234/tiny-bi-encoder", "http://127.0.0.1:1234/tiny-cross-encoder",
                    "--api", "infinity", "--batch-size", "32"]


# -- issue 27: the cell's model lookup is a module of the package, not a program kept in a string ---------------

def test_no_matrix_module_keeps_a_python_program_in_a_string() -> None:
    """A program in a string escapes the linter and the 'matrix never imports the runner' architecture test."""
    import ast

    offending = []
    for path in sorted((ROOT / "harness" / "matrix").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and not _is_docstring(node, path)
                    and any(marker in node.value for marker in ("import harness", "from harness", "import json, sys"))):
                offending.append(f"{path.name}:{node.lineno}")
    assert not offending


def _is_docstring(node, path: Path) -> bool:
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    bodies = [tree.body] + [n.body for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))]
    return any(body and isinstance(body[0], ast.Expr) and body[0].value is node for body in bodies)


def test_the_model_lookup_module_prints_the_directories_or_one_error_line() -> None:
    import importlib.util

    assert importlib.util.find_spec(served_cell.MODEL_DIRS_MODULE) is not None
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    found = subprocess.run([sys.executable, "-m", served_cell.MODEL_DIRS_MODULE, "", "tiny-bi-encoder"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout) == {"tiny-bi-encoder": str(ROOT / "fixtures" / "models" / "tiny-bi-encoder")}
    missing = subprocess.run([sys.executable, "-m", served_cell.MODEL_DIRS_MODULE, "", "no-such-model"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.startswith("error: ") and "no-such-model" in missing.stderr and missing.stderr.count("\n") == 1
