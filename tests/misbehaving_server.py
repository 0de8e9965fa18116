"""A loopback HTTP server that misbehaves on purpose, for the hostile-server tests of the served-model client.

Raw sockets in daemon threads (``127.0.0.1`` only), so that a test can script what no well-behaved framework
would send: a drip of one byte per second, silence, a body cut short, gzip garbage, a redirect. Each connection
serves one request and runs a script of steps (bytes to send, a pause, silence until the server stops, an abrupt
close). Every loop is bounded: the accept loop polls a stop flag, reads have timeouts and byte limits, and a
``hang`` ends when the server stops (or after ``HANG_LIMIT_S``).
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

__all__ = ["Request", "MisbehavingServer", "Pause", "Hang", "Close", "Step", "response", "json_response", "drip"]

HANG_LIMIT_S = 60.0
_MAX_HEAD = 64 * 1024
_MAX_BODY = 8 * 1024 * 1024


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: Dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass(frozen=True)
class Pause:
    seconds: float


@dataclass(frozen=True)
class Hang:
    """Say nothing more until the server stops."""


@dataclass(frozen=True)
class Close:
    """Close the connection now (no clean end of the answer)."""


Step = Union[bytes, Pause, Hang, Close]


def response(status: int, body: bytes = b"", headers: Optional[Dict[str, str]] = None, reason: str = "X",
             length: Optional[int] = None) -> bytes:
    """A complete HTTP/1.1 answer; ``length`` overrides the content-length (a body cut short)."""
    head = {"content-type": "application/json", "connection": "close", **(headers or {})}
    head["content-length"] = str(len(body) if length is None else length)
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in head.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def json_response(value: Any, status: int = 200, headers: Optional[Dict[str, str]] = None) -> bytes:
    return response(status, json.dumps(value).encode(), headers)


def drip(head: bytes, body: bytes, every_s: float = 1.0) -> List[Step]:
    """Headers at once, then the body one byte every ``every_s`` seconds (a connection that never times out a read)."""
    steps: List[Step] = [head]
    for i in range(len(body)):
        steps += [body[i:i + 1], Pause(every_s)]
    return steps


@dataclass
class MisbehavingServer:
    """Answers each request with the steps ``script(request)`` returns; records the requests it read."""

    script: Callable[[Request], Sequence[Step]]
    requests: List[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _read_request(self, conn: socket.socket) -> Optional[Request]:
        conn.settimeout(5.0)
        data = b""
        while b"\r\n\r\n" not in data and len(data) < _MAX_HEAD:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = (lines[0].split(" ") + ["", ""])[:3]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = min(int(headers.get("content-length") or 0), _MAX_BODY)
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            rest += chunk
        path, _, query = target.partition("?")
        return Request(method, path, query, headers, rest[:length])

    def _serve(self, conn: socket.socket) -> None:
        try:
            request = self._read_request(conn)
            if request is None:
                return
            with self._lock:
                self.requests.append(request)
            for step in self.script(request):
                if self._stop.is_set():
                    return
                if isinstance(step, Pause):
                    self._stop.wait(step.seconds)
                elif isinstance(step, Hang):
                    self._stop.wait(HANG_LIMIT_S)
                    return
                elif isinstance(step, Close):
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    return
                else:
                    conn.sendall(step)
        except OSError:
            pass  # the client gave up (a deadline): expected here
        finally:
            conn.close()

    def posts(self) -> List[Request]:
        with self._lock:
            return [r for r in self.requests if r.method == "POST"]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self._sock.close()
