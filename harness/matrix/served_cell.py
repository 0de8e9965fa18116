"""Run a server cell: start the cell's server on its model directories, run ``harness run`` through it, stop it.

The model directories are found by the cell's own Python (a ``package`` model is the copy installed there); the
server's batch and the request batch are both recorded; the server stops on every path (docs/served-endpoints.md).
A server that does not start is a failed run with the log's last lines as its reason. Stdlib only: nox's own
Python runs the matrix cells.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Sequence, Tuple

from harness.fsio import write_text
from harness.matrix.server_process import InfinityOptions, ServedModel, ServerStartError, infinity_server
from harness.matrix.servers import SERVERS
from harness.matrix.spec import Cell, Matrix

__all__ = ["SERVER_LOG", "SERVER_RECORD", "STARTUP_TIMEOUT_S", "model_directories", "served_run_args", "run"]

SERVER_LOG = "server.log"
SERVER_RECORD = "server.json"
STARTUP_TIMEOUT_S = 300.0  # a cold start of torch + the server on a busy 2-core machine took up to ~60 s

#: Run by the cell's Python: the matrix's models and where their files are in that cell (one JSON line). A module
#: of the package, run by name: the matrix never imports the runner.
MODEL_DIRS_MODULE = "harness.run.model_dirs"
MODEL_DIRS_TIMEOUT_S = 600.0  # imports and, for a derived model, a build: minutes at worst on a busy machine

HarnessRun = Callable[[List[str]], Tuple[int, str]]


class _CellProblem(Exception):
    """A step of the served cell failed before ``harness run``: its exit code and output tail."""

    def __init__(self, code: int, tail: str) -> None:
        super().__init__(tail)
        self.code, self.tail = code, tail


def model_directories(python: Path, matrix: Matrix, env: Mapping[str, str], cwd: Path, log: Path) -> Dict[str, Path]:
    """The matrix's model ids and their directories as the cell resolves them (``_CellProblem`` when it cannot)."""
    cmd = [str(python), "-m", MODEL_DIRS_MODULE, str(matrix.config or ""), *matrix.models]
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=dict(env), capture_output=True, text=True, errors="replace",
                              timeout=MODEL_DIRS_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise _CellProblem(1, f"error: {' '.join(cmd[:3])} did not finish within {MODEL_DIRS_TIMEOUT_S:g} s") from None
    with open(log, "a", encoding="utf-8") as handle:  # beside the run's own output
        handle.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    if proc.returncode != 0:
        raise _CellProblem(proc.returncode, (proc.stdout + proc.stderr).strip() or "no output")
    try:
        found = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise _CellProblem(1, f"error: the model directories could not be read from {proc.stdout[-300:]!r}") from None
    return {model_id: Path(directory) for model_id, directory in found.items()}


def served_run_args(matrix: Matrix, cell: Cell, url: str, model_ids: Sequence[str]) -> List[str]:
    """``harness run`` options of a server cell: each model as ``URL/<id>`` (a registry id keeps its kind and
    source, so it is judged as that model), the server's api, and the matrix's batch as the request batch."""
    config = ["--config", str(matrix.config)] if matrix.config else []
    return [*config, "--models", *(f"{url}/{m}" for m in model_ids), "--api", SERVERS[cell.server or ""].api,
            "--batch-size", str(matrix.batch_size)]


def server_options(matrix: Matrix, cell: Cell) -> InfinityOptions:
    """The server's own settings: its batch (``server_batch_size``, else the matrix's), device and dtype."""
    return InfinityOptions(batch_size=cell.server_batch_size or matrix.batch_size, device=matrix.device, dtype=matrix.dtype)


def run(matrix: Matrix, cell: Cell, venv: Path, run_dir: Path, env: Mapping[str, str], harness: HarnessRun,
        *, bin_dir: Path, cwd: Path, say: Callable[[str], None] = lambda _: None,
        startup_timeout_s: float = STARTUP_TIMEOUT_S) -> Tuple[int, str]:
    """Serve the matrix's models from the cell at ``venv`` and call ``harness(run_args)`` while the server is up:
    its exit code and output tail, or the failing step's; the server is stopped before this returns or raises."""
    kind = SERVERS[cell.server or ""]
    log = run_dir / "run.log"
    try:
        directories = model_directories(bin_dir / "python", matrix, env, cwd, log)
        models = [ServedModel(directory, model_id) for model_id, directory in directories.items()]
        options = server_options(matrix, cell)
        server = infinity_server(bin_dir / kind.executable, models, log_path=run_dir / SERVER_LOG, options=options,
                                 startup_timeout_s=startup_timeout_s, env=env)
        say(f"starting {kind.package} {cell.server_version} from {venv} (log {run_dir / SERVER_LOG})")
        with server:
            say(f"{kind.package} {cell.server_version} healthy on {server.url} after {server.startup_s} s (pid {server.pid})")
            record = {"server": kind.package, "version": cell.server_version, "options": options.as_record(),
                      "models": {m.name: str(m.directory) for m in models}, **server.record()}
            write_text(run_dir / SERVER_RECORD, json.dumps(record, indent=2) + "\n")
            return harness(served_run_args(matrix, cell, server.url, list(directories)))
    except _CellProblem as problem:
        return problem.code, problem.tail
    except ServerStartError as err:
        return 1, "\n".join([*err.log_tail, f"ServerStartError: {err}"])
