"""Start a model server for a run on 127.0.0.1, wait until it is healthy, and always stop it.

``ServerProcess`` is a context manager around one server process: it starts it in its own process group
with its output in a log file, polls a health URL with a bounded timeout (a process that exits first is a
``ServerStartError`` carrying the log's last lines), and on leaving (normally, on an error or on Ctrl-C)
terminates the group, then kills it after a grace period. ``infinity_server`` builds the command for
infinity-emb (``infinity_emb v2``) from a virtualenv's executable. The server's environment is offline (no
hub downloads, no telemetry): the only network it is given is the loopback address it listens on.
Imports only the stdlib.
"""

from __future__ import annotations

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
        return {"batch_size": self.batch_size, "device": self.device, "dtype": self.dtype,
                "embedding_dtype": self.embedding_dtype, "engine": self.engine,
                "bettertransformer": self.bettertransformer, "warmup": self.warmup, "url_prefix": self.url_prefix,
                "extra_args": list(self.extra_args)}


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


class ServerProcess:
    """One server process on ``127.0.0.1:<port>``. ``command`` is a function of the port, so a port lost to a
    race is replaced by a fresh one (up to ``port_attempts`` times)."""

    def __init__(self, command: Callable[[int], Sequence[Any]], *, log_path: Path, health_path: str = "/health", env: Optional[Mapping[str, str]] = None,
                 startup_timeout_s: float = 180.0, stop_grace_s: float = 10.0, port_attempts: int = 3) -> None:
        self._command = command
        self.log_path = Path(log_path)
        self.health_path = health_path
        self._env = {**os.environ, **OFFLINE_ENV, **dict(env or {})}
        self.startup_timeout_s = startup_timeout_s
        self.stop_grace_s = stop_grace_s
        self.port_attempts = max(1, port_attempts)
        self.port: Optional[int] = None
        self.startup_s: Optional[float] = None
        self.argv: List[str] = []
        self._proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the server is not started")
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc is not None else None

    def __enter__(self) -> "ServerProcess":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        """Start and wait until ``health_path`` answers 2xx; on any failure (Ctrl-C included) stop it first."""
        for attempt in range(self.port_attempts):
            try:
                self._start_once(free_port())
                return
            except ServerStartError as err:
                self.stop()
                taken = any(marker in line.lower() for line in err.log_tail for marker in _PORT_TAKEN)
                if not taken or attempt == self.port_attempts - 1:
                    raise
            except BaseException:
                self.stop()
                raise

    def _start_once(self, port: int) -> None:
        self.port, self.argv = port, [str(a) for a in self._command(port)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            log.write(f"\n--- harness: starting {' '.join(self.argv)}\n".encode())
            log.flush()
            try:
                self._proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                              env=self._env, start_new_session=True)
            except OSError as err:
                raise ServerStartError(f"cannot start {self.argv[0]}: {err.strerror or err}") from None
        health = self.url + self.health_path
        deadline = started + self.startup_timeout_s
        while True:
            code = self._proc.poll()
            if code is not None:
                tail = _tail(self.log_path)
                raise ServerStartError(f"{Path(self.argv[0]).name} exited with code {code} before {health} answered "
                                       f"(log {self.log_path}): {_summary(tail)}", tail)
            if _healthy(health, timeout_s=2.0):
                self.startup_s = round(time.monotonic() - started, 2)
                return
            if time.monotonic() > deadline:
                tail = _tail(self.log_path)
                raise ServerStartError(f"{health} did not answer within {self.startup_timeout_s:g}s "
                                       f"(log {self.log_path}): {_summary(tail)}", tail)
            time.sleep(0.25)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> Optional[int]:
        """Terminate the process group, kill it after ``stop_grace_s``; returns the exit code (None if never started)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        for sig, grace in ((signal.SIGTERM, self.stop_grace_s), (signal.SIGKILL, 10.0)):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group (workers) once the leader is gone
        except (ProcessLookupError, PermissionError):
            pass
        return proc.poll()

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
                    env: Optional[Mapping[str, str]] = None) -> ServerProcess:
    """A ``ServerProcess`` (use it in ``with``) serving ``models`` from the infinity-emb at ``executable``."""
    if not models:
        raise ServerStartError("infinity_server needs at least one model")
    for model in models:
        if not (Path(model.directory) / "config.json").is_file():
            raise ServerStartError(f"{model.directory}: not a model directory (no config.json)")
    binary = infinity_executable(executable)
    return ServerProcess(lambda port: infinity_command(binary, models, port, options), log_path=log_path,
                         startup_timeout_s=startup_timeout_s, env=env)  # /health stays unprefixed
