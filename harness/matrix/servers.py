"""Server cells of a matrix: which embedding servers a cell may install, and what each needs besides its package.

Data plus validation: a ``ValueError`` with the problem, to which ``harness.matrix.spec`` adds file and cell.
Stdlib only: nox's own Python imports it (through ``spec``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

__all__ = ["SERVER_KEYS", "ServerKind", "SERVERS", "parse_server_keys"]

#: the cell keys that make a cell a server cell (``server`` and ``server_version`` go together)
SERVER_KEYS: Tuple[str, ...] = ("server", "server_version", "server_batch_size")


@dataclass(frozen=True)
class ServerKind:
    """One server the matrix knows how to install and start."""

    package: str  #: the PyPI distribution
    extras: str  #: its extras for a CPU server (``server,torch``)
    requirements: Tuple[str, ...]  #: further lines every such cell needs, each with why (``note``)
    api: str  #: the wire format ``harness run --api`` speaks to it
    executable: str  #: the console script in the cell's ``bin``
    note: str = ""

    def requirement(self, version: str) -> str:
        return f"{self.package}[{self.extras}]=={version}" if self.extras else f"{self.package}=={version}"


SERVERS: Dict[str, ServerKind] = {
    "infinity-emb": ServerKind(
        package="infinity-emb", extras="server,torch", api="infinity", executable="infinity_emb",
        # typer 0.12 (infinity's pin) breaks on click >= 8.2; httpx is the harness client's (the cell runs
        # `harness run` against its own server)
        requirements=("click==8.1.8", "httpx>=0.27"),
        note="Infinity (michaelfeil/infinity): pins sentence-transformers < 4 and numpy < 2 itself",
    ),
}


def parse_server_keys(data: Mapping[str, Any]) -> Dict[str, Optional[Any]]:
    """``server``, ``server_version`` and ``server_batch_size`` of a cell table (all None for a library cell);
    ``ValueError`` naming the key when one is wrong or given without ``server``."""
    from packaging.version import InvalidVersion, Version

    server, version, batch = data.get("server"), data.get("server_version"), data.get("server_batch_size")
    if server is None:
        present = [k for k in SERVER_KEYS if data.get(k) is not None]
        if present:
            raise ValueError(f"'{present[0]}' needs 'server' (one of: {', '.join(SERVERS)})")
        return {"server": None, "server_version": None, "server_batch_size": None}
    if not isinstance(server, str) or server not in SERVERS:
        raise ValueError(f"'server' must be one of {', '.join(SERVERS)}, got {server!r}")
    if not isinstance(version, str) or not version.strip():
        raise ValueError(f"'server_version' must be the exact {server} version to install, like '0.0.77', got {version!r}")
    try:
        Version(version.strip())
    except InvalidVersion:
        raise ValueError(f"'server_version' must be one exact version like '0.0.77', got {version!r}") from None
    if batch is not None and (not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= 4096):
        raise ValueError(f"'server_batch_size' must be an integer between 1 and 4096, got {batch!r}")
    return {"server": server, "server_version": version.strip(), "server_batch_size": batch}
