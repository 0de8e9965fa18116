"""A model server dies with the harness that started it; one a dead harness left behind dies at the next start.

A SIGKILLed harness runs no ``finally``, so two layers (docs/server-lifetime.md), because either can be missed:
the kernel's parent-death signal (Linux; the "parent" is the forking *thread*, hence one long-lived spawner
thread), and a sweep of ``ServerLedger`` records whose owner is dead, killing a server only while its pid and
start time still match (never a recycled pid), and any process carrying its token.

Stdlib only: nox's own Python runs the matrix cells.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple

__all__ = ["TOKEN_VARIABLE", "spawn", "start_time", "new_token", "ServerRecord",
           "ServerLedger", "default_state_dir"]

#: put into every server's environment: names the processes of one server, children included
TOKEN_VARIABLE = "HARNESS_SERVER_TOKEN"
_PR_SET_PDEATHSIG = 1
_SIGKILL = int(signal.SIGKILL)
_SPAWN_TIMEOUT_S = 60.0  # forking is milliseconds; a spawner that does not answer in a minute is wedged


def _load_prctl() -> Optional[Callable[..., int]]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _load_prctl()  # resolved before any fork: the child only calls it


def _child_setup(parent: int) -> Callable[[], None]:
    """Run in the forked child before exec (after ``setsid``): arm the parent-death signal, then make sure
    the parent did not die before it was armed (the child would then have been reparented already)."""

    def setup() -> None:
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(111)

    return setup


class _Spawner:
    """One daemon thread that forks every server asked for from another thread than the main one: it lives as
    long as the process, so the parent-death signal fires when the process dies, not when a worker thread ends."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[Tuple[Callable[[], Any], concurrent.futures.Future]] = queue.Queue()
        threading.Thread(target=self._serve, name="harness-server-spawner", daemon=True).start()

    def _serve(self) -> None:
        while True:
            job, future = self._jobs.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(job())
                except Exception as err:  # handed to the caller, who raises it
                    future.set_exception(err)

    def call(self, job: Callable[[], Any]) -> Any:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._jobs.put((job, future))
        try:
            return future.result(timeout=_SPAWN_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            if future.cancel():
                raise OSError("the server spawner thread did not answer") from None
            return future.result()  # it started forking after all: forking finishes


_spawner: Optional[_Spawner] = None
_spawner_lock = threading.Lock()


def spawn(argv: Sequence[str], **popen: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(argv)`` as the leader of a new process group, killed by the kernel if this process dies."""
    global _spawner
    kwargs = dict(popen, start_new_session=True, preexec_fn=_child_setup(os.getpid()))
    if _PRCTL is None or threading.current_thread() is threading.main_thread():
        return subprocess.Popen(list(argv), **kwargs)
    with _spawner_lock:
        if _spawner is None:
            _spawner = _Spawner()
    return _spawner.call(lambda: subprocess.Popen(list(argv), **kwargs))


def start_time(pid: int) -> Optional[str]:
    """When ``pid`` started (Linux: clock ticks since boot, field 22 of ``/proc/<pid>/stat``; elsewhere ``ps``'s
    start time), or None when no such process runs. With the pid it names one process: pids are reused."""
    if sys.platform.startswith("linux"):
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return None if fields[0] in (b"Z", b"X") else fields[19].decode()  # a zombie is dead, just not reaped
    try:
        out = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def new_token() -> str:
    return uuid.uuid4().hex


def _token_holders(token: str) -> List[int]:
    """Processes whose environment carries ``token`` (Linux; ours only: others' environments are unreadable)."""
    if not sys.platform.startswith("linux"):
        return []
    needle = f"{TOKEN_VARIABLE}={token}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/environ", "rb") as handle:
                    if needle in handle.read().split(b"\0"):
                        found.append(int(entry))
            except OSError:
                continue
    return found


def default_state_dir() -> Path:
    """``<cache>/servers`` (``HARNESS_CACHE_DIR``, else ``~/.cache/embedding-harness``): one ledger per user,
    so a run anywhere sweeps what a killed run elsewhere left."""
    from harness.paths import cache_dir

    return cache_dir() / "servers"


@dataclass(frozen=True)
class ServerRecord:
    """One started server, as the sweep needs it to find it again without ever hitting someone else's process."""

    pid: int
    start: str
    pgid: int
    owner_pid: int
    owner_start: str
    token: str
    argv: List[str]

    @property
    def file_name(self) -> str:
        return f"server-{self.token}.json"


def _safe(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "_", text)


class ServerLedger:
    """The servers this user's harnesses started and have not seen die: one JSON file each in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def add(self, pid: int, token: str, argv: Sequence[str]) -> ServerRecord:
        """Record a server just started by this process (raises ``OSError`` when the ledger is not writable)."""
        owner = os.getpid()
        record = ServerRecord(pid=pid, start=start_time(pid) or "", pgid=pid, owner_pid=owner,
                              owner_start=start_time(owner) or "", token=token, argv=[str(a) for a in argv])
        self.directory.mkdir(parents=True, exist_ok=True)
        # the temp file names its writer, so a sweep can tell a dead writer's leftover from a live one's
        tmp = self.directory / f".{record.file_name}.{owner}_{_safe(record.owner_start)}.tmp"
        tmp.write_text(json.dumps(asdict(record)) + "\n", encoding="utf-8")
        os.replace(tmp, self.directory / record.file_name)
        return record

    def remove(self, record: ServerRecord) -> None:
        (self.directory / record.file_name).unlink(missing_ok=True)

    def records(self) -> List[Tuple[Path, Optional[ServerRecord]]]:
        """Every record file and what it says (None: unreadable, which a rename-written record never is)."""
        found: List[Tuple[Path, Optional[ServerRecord]]] = []
        for path in sorted(self.directory.glob("server-*.json")):
            try:
                found.append((path, ServerRecord(**json.loads(path.read_text(encoding="utf-8")))))
            except FileNotFoundError:
                continue
            except (OSError, ValueError, TypeError):
                found.append((path, None))
        return found

    def sweep(self) -> List[str]:
        """Kill the recorded servers whose harness is dead and drop their records; one line per thing done.

        A record whose owner lives is left alone (that harness stops its own server). A recorded pid whose
        start time differs now belongs to another process: it is not touched, only the record goes."""
        done: List[str] = []
        if not self.directory.is_dir():
            return done
        for path, record in self.records():
            if record is not None and start_time(record.owner_pid) == record.owner_start:
                continue
            if record is not None:
                done.append(_kill_orphan(record))
            path.unlink(missing_ok=True)
        for tmp in self.directory.glob(".server-*.tmp"):
            writer = tmp.name.rsplit(".", 2)[-2]
            pid, _, start = writer.partition("_")
            if not pid.isdigit() or _safe(start_time(int(pid)) or "-") != start:
                tmp.unlink(missing_ok=True)
        return done


def _kill_orphan(record: ServerRecord) -> str:
    """SIGKILL an orphaned server's group if its leader is still the process recorded, and its token's holders."""
    killed: List[int] = []
    if record.start and start_time(record.pid) == record.start:
        with contextlib.suppress(OSError):
            os.killpg(record.pgid, signal.SIGKILL)  # a live leader's group is its own: nobody can reuse the id
            killed.append(record.pid)
    for pid in _token_holders(record.token):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    command = " ".join(record.argv[:2])
    if killed:
        return f"killed server {command} (pid {', '.join(map(str, sorted(set(killed))))}) left by dead harness {record.owner_pid}"
    return f"forgot server {command} (pid {record.pid}) of dead harness {record.owner_pid}: no longer running"
