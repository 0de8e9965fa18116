"""``cell.json``: what the runner stage of one matrix cell did, written by the cell runner, read by the report.

The stage knows only whether it got as far as results (the verdict comes later, in the controlling
environment). Plain JSON, so files from older runs read. Stdlib only at import time: nox's own Python writes
these files.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

from harness import jsontext
from harness.fsio import write_text
from harness.matrix.spec import MatrixError, Pins
from harness.verdict import CellStatus

__all__ = ["CELL_FILE", "StageStatus", "CellState", "read_cell_state", "write_cell_state", "parse_cell_state"]

CELL_FILE = "cell.json"
#: ``scheme://`` as ``harness.results.storage.is_uri`` reads it (importing that package would import pyarrow)
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


class StageStatus(str, enum.Enum):
    """How far a cell's runner stage got; a failed stage is already the cell's final ``CellStatus``."""

    OK = "ok"
    INSTALL_FAILED = CellStatus.INSTALL_FAILED.value
    RUN_FAILED = CellStatus.RUN_FAILED.value

    @property
    def cell_status(self) -> Optional[CellStatus]:
        """The cell's status when the stage decided it; None when the comparison decides (``ok``)."""
        return None if self is StageStatus.OK else CellStatus(self.value)


@dataclass
class CellState:
    """The record of one cell's runner stage (``cell.json``); every field but ``status`` may be unknown."""

    status: StageStatus
    reason: str = ""
    cell_id: str = ""
    matrix: str = ""
    params: Pins = field(default_factory=dict)
    models: List[str] = field(default_factory=list)
    baseline: str = ""
    backend: str = ""
    venv: str = ""
    started_at: str = ""
    setup_s: Optional[float] = None
    run_s: Optional[float] = None
    setup_cpu_s: Optional[float] = None
    run_cpu_s: Optional[float] = None
    cleanup_s: Optional[float] = None
    reused_venv: bool = False
    #: why the virtualenv was reused or built (``reused: ...``, ``built: --fresh``, ``built: the pins ... changed``)
    setup_note: str = ""
    #: the model compute part of ``run_s`` (encode/predict calls, summed over models), as the run measured it
    compute_s: Optional[float] = None
    #: the run's own breakdown (``harness.run.timings``): startup, imports, model loads, compute, write; JSON as the
    #: run wrote it (a cell's harness may be older or newer), kept for cell.json, of which only ``compute_s`` is read
    timings: Dict[str, Any] = field(default_factory=dict)
    #: the thread pools' limit the run had (``--jobs`` gives each cell a share of the cores); None: not limited
    threads: Optional[int] = None
    run_exit_code: Optional[int] = None
    #: the last lines of a failed (or not fully clean) command's output
    output_tail: str = ""

    @property
    def ran_cleanly(self) -> bool:
        """Installed, ran, and ``harness run`` exited 0 (every model ok)."""
        return self.status is StageStatus.OK and not self.run_exit_code

    def to_dict(self) -> Dict[str, Any]:
        data = dataclasses.asdict(self)
        data["status"] = self.status.value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = CELL_FILE) -> CellState:
        """A state from ``cell.json`` data; keys this version does not know are ignored (newer writers)."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "status" not in values:
            raise MatrixError(f"{where}: no 'status' (not a cell state)")
        try:
            values["status"] = StageStatus(values["status"])
        except ValueError:
            choices = ", ".join(s.value for s in StageStatus)
            raise MatrixError(f"{where}: status {data.get('status')!r} is not one of {choices}") from None
        values["reason"] = values.get("reason") or ""
        values["output_tail"] = values.get("output_tail") or ""
        values["setup_note"] = values.get("setup_note") or ""
        values.update({k: values.get(k) if isinstance(values.get(k), dict) else {} for k in ("params", "timings")})
        return cls(**values)


def parse_cell_state(text: str, where: str) -> CellState:
    """``cell.json`` text as a state; bad JSON or a non-object is a one-line ``MatrixError`` naming ``where``."""
    try:
        data = jsontext.loads(text)
    except ValueError as err:
        raise MatrixError(f"{where}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise MatrixError(f"{where}: not a cell state object")
    return CellState.from_dict(data, where)


def _is_uri(location: str | os.PathLike[str]) -> bool:
    return isinstance(location, str) and bool(_URI.match(location))


def read_cell_state(run_dir: str | os.PathLike[str]) -> Optional[CellState]:
    """A cell's ``cell.json`` (None if the cell never ran); ``run_dir`` may be a URI (``s3://.../<cell-id>``)."""
    where: Union[str, Path]
    if _is_uri(run_dir):
        from harness.results import storage

        where = storage.join(run_dir, CELL_FILE)
        text = storage.read_text(where)
    else:
        where = Path(run_dir) / CELL_FILE
        text = where.read_text(encoding="utf-8") if where.is_file() else None
    return None if text is None else parse_cell_state(text, str(where))


def write_cell_state(run_dir: str | os.PathLike[str], state: CellState) -> Path:
    """Write ``cell.json`` atomically (a killed run leaves the old file or the new one, not half of one)."""
    target = Path(run_dir) / CELL_FILE
    return write_text(target, json.dumps(state.to_dict(), indent=2, sort_keys=True, default=str) + "\n")
