"""A model server never outlives the harness that started it, and a stop never waits without a deadline.

The kill loop runs the smallest real path: a harness child process starts a stand-in server (a stdlib
``http.server`` that answers ``/health``) through ``ServerProcess``, serves, and writes a results file; the test
kills the child with SIGKILL (what a CI timeout does) at a random point of each phase and then requires that the
server is gone within a bounded wait and that the results file is complete or absent. The sweep tests plant
state records by hand: an orphan whose owner died is killed at the next start; a recorded pid that now belongs
to another process (its start time differs) is left alone.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

from conftest import ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")

#: a server: writes its pid, takes ``delay`` seconds to come up, answers /health; ``stubborn`` ignores SIGTERM
STAND_IN = '''
import http.server, os, signal, sys, time
port, pids, delay, mode = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4]
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(pids, "a") as f:
    f.write(f"{os.getpid()}\\n")
time.sleep(delay)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
'''

#: the harness child: start the server, use it, write results chunk by chunk (a SIGKILL may land anywhere)
DRIVER = '''
import json, os, sys, time, urllib.request
from pathlib import Path
from harness.fsio import locked_output
from harness.matrix.server_process import ServerProcess
work, stand_in, delay, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
def phase(name):
    with open(work / "phases", "a") as f:
        f.write(f"{os.getpid()} {name}\\n")
server = ServerProcess(lambda port: [sys.executable, stand_in, port, work / "server.pids", delay, mode],
                       log_path=work / "server.log", startup_timeout_s=20)
with server:
    phase("serving")
    for _ in range(5):
        urllib.request.urlopen(server.url + "/health", timeout=5).read()
        time.sleep(0.02)
    phase("writing")
    with locked_output(work / "results.json") as tmp:
        with open(tmp, "w") as f:
            f.write("[")
            for i in range(20):
                f.write(json.dumps({"row": i, "text": "x" * 2000}) + ",")
                f.flush()
                time.sleep(0.01)
            f.write('{"row": "end"}]')
    phase("written")
    if mode == "stubborn":
        time.sleep(60)
'''


def _state(pid: int) -> Optional[str]:
    """The process state letter from /proc (None: no such process). A zombie is dead, just not reaped."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return None


def running(pid: int) -> bool:
    return _state(pid) not in (None, "Z", "X")


def group_members(pgid: int) -> List[int]:
    """Live processes in process group ``pgid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    fields = handle.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
                found.append(int(entry))
    return found


def wait_gone(pids: List[int], timeout_s: float) -> Optional[float]:
    """Seconds until none of ``pids`` (nor their process groups) runs, or None if some still do at the deadline."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if not any(running(p) or group_members(p) for p in pids):
            return time.monotonic() - started
        time.sleep(0.02)
    return None


def wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.01)


def pids_in(path: Path) -> List[int]:
    try:
        return [int(line) for line in path.read_text().split()]
    except (OSError, ValueError):
        return []


def phases(work: Path, pid: int) -> List[str]:
    try:
        lines = (work / "phases").read_text().splitlines()
    except OSError:
        return []
    return [line.split()[1] for line in lines if line.split()[0] == str(pid)]


@pytest.fixture
def work(tmp_path: Path) -> Iterator[Path]:
    """A work directory whose stand-in servers are all killed at the end, whatever the test found."""
    (tmp_path / "stand_in.py").write_text(STAND_IN, encoding="utf-8")
    (tmp_path / "driver.py").write_text(DRIVER, encoding="utf-8")
    yield tmp_path
    for pid in pids_in(tmp_path / "server.pids"):
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except OSError:
                pass


def start_driver(work: Path, delay: float, mode: str = "plain") -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HARNESS_CACHE_DIR": str(work / "cache")}
    return subprocess.Popen([sys.executable, str(work / "driver.py"), str(work), str(work / "stand_in.py"), str(delay), mode],
                            env=env, cwd=str(work), stdout=subprocess.DEVNULL, stderr=open(work / "driver.err", "ab"))


def check_results(work: Path) -> None:
    """The results file is complete or absent; a killed writer's temp file is one the next write removes."""
    from harness.fsio import output_lock, stale_temp_files

    results = work / "results.json"
    if results.exists():
        rows = json.loads(results.read_text())
        assert len(rows) == 21 and rows[-1] == {"row": "end"}
    leftovers = [p for p in work.iterdir() if p.name.startswith(".") and p.name not in (".results.json.lock",)]
    assert set(leftovers) <= set(stale_temp_files(results)), leftovers
    with output_lock(results):  # what the next run's write does first
        pass
    assert not stale_temp_files(results)


def test_a_harness_killed_with_sigkill_never_leaves_its_server_running(work: Path) -> None:
    rng = random.Random(20240611)
    kinds = ["starting", "serving", "writing"]
    took: List[float] = []
    for i in range(10):
        kind = kinds[i % 3]
        seen = len(pids_in(work / "server.pids"))
        driver = start_driver(work, delay=0.4)
        try:
            if kind == "starting":  # spawned, not yet healthy (it sleeps 0.4 s first)
                wait_for(lambda seen=seen: len(pids_in(work / "server.pids")) > seen, 15, "the server to be spawned")
                time.sleep(rng.uniform(0.0, 0.3))
            else:
                wait_for(lambda kind=kind, pid=driver.pid: kind in phases(work, pid), 15, f"the driver to reach {kind}")
                time.sleep(rng.uniform(0.0, 0.12))
            finished = "written" in phases(work, driver.pid)
            driver.kill()
            driver.wait(timeout=5)
        finally:
            if driver.poll() is None:
                driver.kill()
        servers = pids_in(work / "server.pids")[seen:]
        assert len(servers) == 1, (kind, servers)
        gone = wait_gone(servers, timeout_s=3.0)
        parent = Path(f"/proc/{servers[0]}/stat").read_text().rsplit(")", 1)[1].split()[1] if gone is None else "-"
        assert gone is not None, f"iteration {i} ({kind}{', finished' if finished else ''}): server {servers[0]} " \
                                 f"outlived its harness (parent now {parent})"
        took.append(gone)
        check_results(work)
    from harness.matrix.server_lifetime import ServerLedger

    ledger = ServerLedger(work / "cache" / "servers")
    assert len(ledger.records()) <= 1  # each start swept the records its killed predecessor left
    ledger.sweep()
    assert not list(ledger.directory.iterdir()), "the next start leaves no record and no temp file behind"
    print(f"\nserver gone {max(took) * 1000:.0f} ms at most after its harness was killed (10 kills)")


def test_ctrl_c_stops_a_server_that_ignores_sigterm_within_two_seconds(work: Path) -> None:
    driver = start_driver(work, delay=0.0, mode="stubborn")
    try:
        wait_for(lambda: "written" in phases(work, driver.pid), 15, "the driver to serve")
        servers = pids_in(work / "server.pids")
        started = time.monotonic()
        driver.send_signal(signal.SIGINT)
        try:
            driver.wait(timeout=4)
        except subprocess.TimeoutExpired:
            pass
        gone = wait_gone(servers, timeout_s=max(0.1, 4 - (time.monotonic() - started)))
        took = time.monotonic() - started
    finally:
        if driver.poll() is None:
            driver.kill()
    assert gone is not None and driver.poll() is not None and took < 2.0, f"Ctrl-C took {took:.2f} s (server gone: {gone})"
    print(f"\nCtrl-C: harness and a SIGTERM-ignoring server gone after {took:.2f} s")


def _plant(directory: Path, pid: int, start: str, owner: int, owner_start: str, token: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"server-{token}.json"
    path.write_text(json.dumps({"pid": pid, "start": start, "pgid": pid, "owner_pid": owner, "owner_start": owner_start,
                                "token": token, "argv": ["planted", str(pid)]}), encoding="utf-8")
    return path


def test_the_next_start_kills_servers_of_dead_harnesses_and_never_a_recycled_pid(work: Path) -> None:
    from harness.matrix.server_lifetime import TOKEN_VARIABLE, new_token, start_time
    from harness.matrix.server_process import ServerProcess

    ledger = work / "servers"
    dead = subprocess.Popen(["true"])
    dead.wait()  # a harness that is gone (and a pid nobody has: the "leader" of a group whose worker survived)
    tokens = {name: new_token() for name in ("orphan", "worker", "stranger", "kept")}

    def sleeper(token: Optional[str] = None) -> subprocess.Popen[bytes]:
        env = {**os.environ, **({TOKEN_VARIABLE: token} if token else {})}
        proc = subprocess.Popen(["sleep", "60"], start_new_session=True, env=env)
        with open(work / "server.pids", "a") as f:  # the fixture kills them whatever happens
            f.write(f"{proc.pid}\n")
        return proc

    orphan, worker, stranger, kept = sleeper(tokens["orphan"]), sleeper(tokens["worker"]), sleeper(), sleeper()
    for proc in (orphan, stranger, kept):
        wait_for(lambda pid=proc.pid: start_time(pid) is not None, 5, "the process to show in /proc")
    me, my_start = os.getpid(), start_time(os.getpid()) or ""
    records = {
        "orphan": _plant(ledger, orphan.pid, start_time(orphan.pid) or "", dead.pid, "1", tokens["orphan"]),
        # a leader already gone, a process of its group (its token in the environment) still up
        "worker": _plant(ledger, dead.pid, "1", dead.pid, "1", tokens["worker"]),
        # the recorded pid now belongs to another process: same pid, different start time
        "stranger": _plant(ledger, stranger.pid, str(int(start_time(stranger.pid) or 0) - 1), dead.pid, "1", tokens["stranger"]),
        # a harness that is alive (this one) stops its own servers
        "kept": _plant(ledger, kept.pid, start_time(kept.pid) or "", me, my_start, tokens["kept"]),
    }
    server = ServerProcess(lambda port: [sys.executable, str(work / "stand_in.py"), port, work / "server.pids", 0, "plain"],
                           log_path=work / "server.log", startup_timeout_s=20, state_dir=ledger)
    with server:
        assert wait_gone([orphan.pid, worker.pid], timeout_s=3.0) is not None, "the orphans of a dead harness survived its sweep"
        assert running(stranger.pid) and running(kept.pid)
        assert not records["orphan"].exists() and not records["worker"].exists() and not records["stranger"].exists()
        assert records["kept"].exists()
        own = [p for p in ledger.glob("server-*.json") if json.loads(p.read_text())["pid"] == server.pid]
        assert len(own) == 1 and json.loads(own[0].read_text())["owner_pid"] == me
        log = (work / "server.log").read_text()
        assert f"killed server planted {orphan.pid} (pid {orphan.pid}) left by dead harness {dead.pid}" in log
        assert f"killed server planted {dead.pid} (pid {worker.pid})" in log
        assert f"forgot server planted {stranger.pid}" in log
    assert not own[0].exists(), "a stopped server stays in the ledger"
    assert running(stranger.pid) and running(kept.pid)


def test_a_server_started_from_a_thread_that_ends_lives_until_it_is_stopped(work: Path) -> None:
    """The parent-death signal follows the thread that forked: a worker thread's server must not die with it."""
    import threading

    from harness.matrix.server_process import ServerProcess

    server = ServerProcess(lambda port: [sys.executable, str(work / "stand_in.py"), port, work / "server.pids", 0, "plain"],
                           log_path=work / "server.log", startup_timeout_s=20, state_dir=work / "servers")
    worker = threading.Thread(target=server.start)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive() and server.pid is not None
    time.sleep(0.3)
    pid = server.pid
    assert server.alive() and running(pid), "the server died with the thread that started it"
    assert server.stop(grace_s=1.0) is not None and wait_gone([pid], timeout_s=3.0) is not None
