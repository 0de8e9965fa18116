"""Start a model server for a run on 127.0.0.1, wait until it is healthy, and always stop it.

Every wait has a deadline (Ctrl-C is done within 2 s whatever the server does); a SIGKILLed harness takes its
server along (``server_lifetime``). The server's environment is offline: its only network is the loopback
address it listens on. Stdlib only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from harness.errors import HarnessError
from harness.matrix.server_lifetime import TOKEN_VARIABLE, ServerLedger, ServerRecord, default_state_dir, new_token, spawn

__all__ = ["ServerStartError", "ServedModel", "InfinityOptions", "ServerProcess", "free_port", "infinity_executable",
           "infinity_command", "infinity_server", "OFFLINE_ENV"]

HOST = "127.0.0.1"
#: Set for every server the harness starts: no hub access, no usage statistics sent anywhere.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "INFINITY_ANONYMOUS_USAGE_STATS": "0",
}
_PORT_TAKEN = ("address already in use", "errno 98", "errno 48")
INTERRUPT_GRACE_S = 1.0  # infinity-emb exits about 1.3 s after SIGTERM; Ctrl-C must be done within 2 s
KILL_WAIT_S = 5.0  # after SIGKILL: only a process stuck in the kernel takes longer, and then we stop waiting
_POLL_S = 0.02


class ServerStartError(HarnessError):
    """A server process could not be started, exited before it was healthy, or never became healthy."""

    def __init__(self, message: str, log_tail: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.log_tail = list(log_tail)


@dataclass(frozen=True)
class ServedModel:
    """One model directory and the name the server answers to (``--served-model-name``)."""

    directory: Path
    name: str


@dataclass(frozen=True)
class InfinityOptions:
    """Server-side settings that move numbers; each is passed explicitly so a version's default cannot change
    them silently. ``bettertransformer`` stays off: it needs optimum and swaps the attention kernels."""

    batch_size: int = 32
    device: str = "cpu"
    dtype: str = "float32"
    embedding_dtype: str = "float32"
    engine: str = "torch"
    bettertransformer: bool = False
    warmup: bool = False
    url_prefix: str = ""  #: ``"/v1"`` serves the OpenAI routes (``/v1/embeddings``, ``/v1/models``) for ``api = "openai"``
    extra_args: Sequence[str] = ()

    def as_record(self) -> Dict[str, Any]:
        """The options as the cell's record keeps them (JSON: every field, ``extra_args`` a list)."""
        return {**dataclasses.asdict(self), "extra_args": list(self.extra_args)}


def free_port(host: str = HOST) -> int:
    """A port nothing listens on now (the server may still lose a race for it: ``ServerProcess`` retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 20) -> List[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]


def _summary(tail: Sequence[str]) -> str:
    """The log line that says why: the last one naming an error, else the last line."""
    errors = [line for line in tail if re.search(r"(Error|Exception)\b|error:", line) and "startup failed" not in line]
    return (errors or list(tail) or ["(empty log)"])[-1].strip()


def _healthy(url: str, timeout_s: float) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
    try:
        with opener.open(url, timeout=timeout_s) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the process ended, without reaping it: until it is reaped its pid (its group's id) stays ours."""
    if proc.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # reaped elsewhere
        proc.poll()
        return True


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.returncode is not None:  # reaped: its group id may belong to someone else by now
        return
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, sig)


class ServerProcess:
    """One server process on ``127.0.0.1:<port>``. ``command`` is a function of the port, so a port lost to a
    race is replaced by a fresh one (up to ``port_attempts`` times). ``state_dir``: the ledger of started servers
    (``server_lifetime.default_state_dir()``); each start first sweeps what dead harnesses left there."""

    def __init__(self, command: Callable[[int], Sequence[Any]], *, log_path: Path, health_path: str = "/health", env: Optional[Mapping[str, str]] = None,
                 startup_timeout_s: float = 180.0, stop_grace_s: float = 10.0, port_attempts: int = 3,
                 interrupt_grace_s: float = INTERRUPT_GRACE_S, state_dir: Optional[Path] = None) -> None:
        self._command = command
        self.log_path = Path(log_path)
        self.health_path = health_path
        self._env = {**os.environ, **OFFLINE_ENV, **dict(env or {})}
        self.startup_timeout_s = startup_timeout_s
        self.stop_grace_s = stop_grace_s
        self.interrupt_grace_s = interrupt_grace_s
        self.port_attempts = max(1, port_attempts)
        self.ledger = ServerLedger(Path(state_dir) if state_dir is not None else default_state_dir())
        self.port: Optional[int] = None
        self.startup_s: Optional[float] = None
        self.argv: List[str] = []
        self._proc: Optional[subprocess.Popen] = None
        self._record: Optional[ServerRecord] = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the server is not started")
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc is not None else None

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.stop(grace_s=None if exc_type is None else self.interrupt_grace_s)

    def start(self) -> None:
        """Start and wait until ``health_path`` answers 2xx; on any failure (Ctrl-C included) stop it first."""
        self._log(self._sweep())
        for attempt in range(self.port_attempts):
            try:
                self._start_once(free_port())
                return
            except ServerStartError as err:
                self.stop(grace_s=self.interrupt_grace_s)
                taken = any(marker in line.lower() for line in err.log_tail for marker in _PORT_TAKEN)
                if not taken or attempt == self.port_attempts - 1:
                    raise
            except BaseException:
                self.stop(grace_s=self.interrupt_grace_s)
                raise

    def _sweep(self) -> List[str]:
        try:
            return self.ledger.sweep()
        except OSError as err:  # an unreadable ledger must not stop the run; the parent-death signal still holds
            return [f"cannot sweep {self.ledger.directory}: {err}"]

    def _log(self, lines: Sequence[str]) -> None:
        if lines:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a", encoding="utf-8") as log:
                log.writelines(f"--- harness: {line}\n" for line in lines)

    def _start_once(self, port: int) -> None:
        self.port, self.argv = port, [str(a) for a in self._command(port)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started, token = time.monotonic(), new_token()
        with open(self.log_path, "ab") as log:
            log.write(f"\n--- harness: starting {' '.join(self.argv)}\n".encode())
            log.flush()
            try:
                self._proc = spawn(self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   env={**self._env, TOKEN_VARIABLE: token})
            except OSError as err:
                raise ServerStartError(f"cannot start {self.argv[0]}: {err.strerror or err}") from None
        try:
            self._record = self.ledger.add(self._proc.pid, token, self.argv)
        except OSError as err:
            self._log([f"cannot record the server in {self.ledger.directory} ({err}): a harness killed now "
                       "leaves it to the parent-death signal alone"])
        health = self.url + self.health_path
        deadline = started + self.startup_timeout_s
        while True:
            if _exited(self._proc):
                code = self._finish(self._proc)
                raise self._failed(f"{Path(self.argv[0]).name} exited with code {code} before {health} answered")
            if _healthy(health, timeout_s=2.0):
                self.startup_s = round(time.monotonic() - started, 2)
                return
            if time.monotonic() > deadline:
                raise self._failed(f"{health} did not answer within {self.startup_timeout_s:g}s")
            time.sleep(0.25)

    def _failed(self, what: str) -> ServerStartError:
        tail = _tail(self.log_path)
        return ServerStartError(f"{what} (log {self.log_path}): {_summary(tail)}", tail)

    def alive(self) -> bool:
        return self._proc is not None and not _exited(self._proc)

    def stop(self, grace_s: Optional[float] = None) -> Optional[int]:
        """Terminate the process group, kill it after ``grace_s`` (default ``stop_grace_s``); returns the exit
        code (None if never started, or if it did not die within ``KILL_WAIT_S`` of SIGKILL)."""
        proc = self._proc
        if proc is None:
            return None
        grace = self.stop_grace_s if grace_s is None else grace_s
        try:
            if not _exited(proc):
                _signal_group(proc, signal.SIGTERM)
                deadline = time.monotonic() + grace
                while not _exited(proc) and time.monotonic() < deadline:
                    time.sleep(_POLL_S)
        finally:  # a second Ctrl-C while waiting lands here too: the group is killed either way
            code = self._finish(proc)
        return code

    def _finish(self, proc: subprocess.Popen[bytes]) -> Optional[int]:
        """SIGKILL the group (a leader that ignored SIGTERM, stragglers of one that exited), reap the leader
        within ``KILL_WAIT_S``, and forget the server once it is gone."""
        self._proc = None
        _signal_group(proc, signal.SIGKILL)  # the leader is not reaped yet: the group id is still ours
        try:
            proc.wait(timeout=KILL_WAIT_S)
        except subprocess.TimeoutExpired:  # stuck in the kernel: the ledger keeps it for the next sweep
            return None
        if self._record is not None:
            self.ledger.remove(self._record)
            self._record = None
        return proc.returncode

    def record(self) -> Dict[str, Any]:
        """What the fingerprint says about the process (argv has no credentials: none is ever passed)."""
        return {"argv": list(self.argv), "host": HOST, "port": self.port, "startup_s": self.startup_s,
                "log": str(self.log_path)}


def infinity_executable(path: Path) -> Path:
    """``infinity_emb`` from a virtualenv directory, its python, or the executable itself."""
    path = Path(path).expanduser()
    candidates = [path / "bin" / "infinity_emb", path.parent / "infinity_emb", path]
    for candidate in candidates:
        if candidate.is_file() and candidate.name.startswith("infinity_emb") and os.access(candidate, os.X_OK):
            return candidate
    raise ServerStartError(f"{path}: no infinity_emb executable here (give a virtualenv with infinity-emb installed, "
                           "its python, or its bin/infinity_emb)")


def infinity_command(executable: Path, models: Sequence[ServedModel], port: int,
                     options: InfinityOptions = InfinityOptions()) -> List[str]:
    """``infinity_emb v2`` for ``models`` on ``127.0.0.1:port`` with every number-moving option explicit."""
    argv = [str(executable), "v2"]
    for model in models:
        argv += ["--model-id", str(Path(model.directory).resolve()), "--served-model-name", model.name]
    argv += ["--port", str(port), "--host", HOST, "--batch-size", str(options.batch_size), "--device", options.device,
             "--dtype", options.dtype, "--embedding-dtype", options.embedding_dtype, "--engine", options.engine,
             "--bettertransformer" if options.bettertransformer else "--no-bettertransformer",
             "--model-warmup" if options.warmup else "--no-model-warmup", "--no-vector-disk-cache", "--url-prefix", options.url_prefix]
    return argv + [str(a) for a in options.extra_args]


def infinity_server(executable: Path, models: Sequence[ServedModel], *, log_path: Path,
                    options: InfinityOptions = InfinityOptions(), startup_timeout_s: float = 180.0,
                    env: Optional[Mapping[str, str]] = None,
                    state_dir: Optional[Path] = None) -> ServerProcess:
    """A ``ServerProcess`` (use it in ``with``) serving ``models`` from the infinity-emb at ``executable``."""
    if not models:
        raise ServerStartError("infinity_server needs at least one model")
    for model in models:
        if not (Path(model.directory) / "config.json").is_file():
            raise ServerStartError(f"{model.directory}: not a model directory (no config.json)")
    binary = infinity_executable(executable)
    return ServerProcess(lambda port: infinity_command(binary, models, port, options), log_path=log_path,
                         startup_timeout_s=startup_timeout_s, env=env, state_dir=state_dir)  # /health stays unprefixed
