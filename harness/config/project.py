"""Project configuration: the user's own models, encode settings and corpus, as data.

``harness.toml``, ``[tool.harness]`` of ``pyproject.toml``, or ``--config FILE``: the registry's shape (entries
extend or override the built-in registry) plus ``[corpus]``, ``[index]``, ``registry`` and ``baselines``
(docs/configuration.md). Stdlib and harness-internal only, so ``harness run --config FILE`` works in old matrix
cells too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple

from pydantic import ConfigDict, field_validator

from harness import paths
from harness.config.corpus import corpus_table
from harness.config.registry import Registry, RegistryFile, entry_label, load_registry, parse_entry
from harness.config.schema import Loc, Schema, one_line_errors, setting, validate, whole_number
from harness.config.tomlfile import read_toml, tomllib
from harness.errors import HarnessError

__all__ = [
    "CONFIG_FILE",
    "IndexSettings",
    "Project",
    "ProjectError",
    "find_config",
    "load_project",
    "project_registry",
    "baseline_dir",
    "BASELINES_DIR",
    "run_inputs",
]

CONFIG_FILE = "harness.toml"
#: a project's baselines directory, relative to its config file, when the config does not name one
BASELINES_DIR = "baselines"
_TOOL = ("tool", "harness")


class ProjectError(HarnessError):
    """A project config (harness.toml / [tool.harness]) is missing or malformed."""


def _count(low: int, high: int, default: Optional[int] = None) -> Any:
    return setting(default, ge=low, le=high, expect=f"be a whole number from {low} to {high}")


class IndexSettings(Schema):
    """``[index]``: the vector index the retrieval scenarios build from the baseline's documents
    (``harness.compare.vector_index``), configured like the user's own, or ``file`` + ``id_map``: the user's
    FAISS index file and its id map (a JSON array: index position -> corpus id), relative to the config file."""

    type: Literal["flat", "hnsw", "ivf-flat", "ivf-pq"] = "hnsw"
    metric: Literal["cosine", "ip", "l2"] = setting("cosine", expect="be \"cosine\" (inner product of unit "
                                                    "vectors, as the harness ranks), \"ip\" or \"l2\"")
    m: int = _count(2, 256, 16)  # HNSW links per node (FAISS's M)
    ef_construction: int = _count(1, 1 << 16, 40)
    ef_search: int = _count(1, 1 << 16, 32)
    nlist: Optional[int] = _count(1, 1 << 20)  # IVF lists; default about 4 sqrt(documents)
    nprobe: int = _count(1, 1 << 20, 8)
    pq_m: int = _count(1, 4096, 8)  # IVF-PQ sub-quantizers (must divide the dimension)
    pq_nbits: int = _count(1, 16, 8)
    rolling_share: float = setting(0.5, ge=0, le=1, expect="be a number from 0 to 1 (share of documents "
                                   "re-embedded in the rolling scenario)")
    threads: int = _count(1, 1024, 1)
    seed: int = _count(0, 2**31 - 1, 0)
    file: Optional[str] = setting(None, min_length=1, expect="be a path to a FAISS index file")
    id_map: Optional[str] = setting(None, min_length=1, expect="be a path to a JSON array of corpus ids")

    @field_validator("m", "ef_construction", "ef_search", "nlist", "nprobe", "pq_m", "pq_nbits", "threads", "seed",
                     mode="before")
    @classmethod
    def whole_floats(cls, value: Any) -> Any:
        return whole_number(value)


class ProjectFile(RegistryFile):
    """``harness.toml`` / ``[tool.harness]``: the registry's tables (entries may set only settings, over a
    built-in entry) plus the corpus (checked by ``harness.config.corpus``) and the registry to extend."""

    corpus: Optional[Dict[str, Any]] = setting(None, expect="be a table [corpus] naming the corpus files")
    registry: Optional[str] = setting(None, expect="be a path to a registry TOML file")
    baselines: Optional[str] = setting(None, min_length=1, expect="be a directory for this project's baselines "
                                       "(relative to this file; default: baselines)")
    index: Optional[IndexSettings] = None


class _Tool(Schema):
    model_config = ConfigDict(extra="allow")
    harness: Optional[ProjectFile] = None


class PyProjectFile(Schema):
    """A ``pyproject.toml``: only ``[tool.harness]`` is ours; every other table belongs to other tools."""

    model_config = ConfigDict(extra="allow")
    tool: Optional[_Tool] = None


def _label(loc: Loc) -> Optional[str]:
    """Entries as ``model 'x'`` (``[tool.harness] model 'x'`` in a pyproject.toml), other tables dotted."""
    if tuple(loc[:2]) == _TOOL and len(loc) > 2:
        inner = entry_label(loc[2:])
        return f"[tool.harness] {inner}" if inner else None
    return entry_label(loc)


@dataclass(frozen=True)
class Project:
    """A parsed project config; ``models`` are the raw ``[models.<id>]`` tables, validated on merge."""

    path: Path
    models: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    sets: Dict[str, List[str]] = field(default_factory=dict)
    has_corpus: bool = False  # a [corpus] table (checked when the corpus is loaded)
    registry_path: Optional[Path] = None
    baselines: str = BASELINES_DIR
    index: Optional[IndexSettings] = None  # None: no [index] table

    @property
    def baselines_dir(self) -> Path:
        """Where this project's baselines live: ``baselines`` relative to the config file."""
        return Path(self.baselines) if os.path.isabs(self.baselines) else self.path.parent / self.baselines

    def registry_file(self) -> Registry:
        """The registry this config's ``registry`` key names (None: the built-in one); a bad one says which config
        named it (the path alone may be far from it)."""
        try:
            return load_registry(self.registry_path)
        except HarnessError as err:
            if self.registry_path is None:
                raise
            raise type(err)(f"{self.path}: registry: {err}") from None

    @one_line_errors
    def registry(self, base: Optional[Registry] = None) -> Registry:
        """The built-in registry (or ``base``) extended and overridden by this project's models and sets."""
        base = base if base is not None else self.registry_file()
        models = dict(base.models)
        for model_id, entry in self.models.items():
            if not isinstance(entry, dict):
                raise ProjectError(f"{self.path}: model '{model_id}' must be a table of keys")
            if "source" not in entry and "kind" not in entry and model_id in base.models:
                inherited = {k: v for k, v in base.models[model_id].__dict__.items() if k != "id" and v not in (None, "")}
                entry = {**inherited, **entry}
            elif "source" not in entry:
                known = "" if model_id not in base.models else " (or only settings, to override the built-in entry)"
                raise ProjectError(f"{self.path}: model '{model_id}' needs 'kind' and 'source'{known}")
            models[model_id] = parse_entry(self.path, model_id, entry)
        for spec in models.values():
            if spec.source == "derived" and spec.base not in models:
                raise ProjectError(f"{self.path}: model '{spec.id}' is derived from unknown model '{spec.base}'")
        sets = {**base.sets, **self.sets}
        if self.models and "default" not in self.sets:
            sets["default"] = list(self.models)
        for name, ids in self.sets.items():
            unknown = [i for i in ids if i not in models]
            if unknown:
                raise ProjectError(f"{self.path}: set '{name}' names unknown model(s) {', '.join(unknown)}")
        return Registry(path=self.path, models=models, sets=sets)


def find_config(directory: str | os.PathLike[str] | None = None) -> Optional[Path]:
    """``harness.toml`` in ``directory`` (default: the working directory), else a ``pyproject.toml`` with a
    ``[tool.harness]`` table, else None."""
    root = Path(directory) if directory is not None else Path.cwd()
    candidate = root / CONFIG_FILE
    if candidate.is_file():
        return candidate
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError, RecursionError):
            return None  # not ours to judge; an explicit --config pyproject.toml reports it
        if isinstance(data.get("tool"), dict) and "harness" in data["tool"]:
            return pyproject
    return None


@one_line_errors
def load_project(path: str | os.PathLike[str]) -> Project:
    """Parse and check the shape of a project config (entries are validated against the registry on merge)."""
    path = Path(path)
    data = read_toml(path, ProjectError, "project config not found")
    table: Any = data
    if path.name == "pyproject.toml":
        validate(PyProjectFile, data, source=str(path), error=ProjectError, label=_label)
        table = (data.get("tool") or {}).get("harness")
        if not isinstance(table, dict):
            raise ProjectError(f"{path}: no [tool.harness] table")
    else:
        validate(ProjectFile, data, source=str(path), error=ProjectError, label=_label)
    registry = table.get("registry")
    return Project(path=path, models=dict(table.get("models") or {}),
                   sets={name: list(ids) for name, ids in (table.get("sets") or {}).items()},
                   has_corpus=corpus_table(path, data) is not None,
                   registry_path=(path.parent / registry) if registry else None,  # an absolute one stays itself
                   baselines=table.get("baselines") or BASELINES_DIR, index=_index(path, table.get("index")))


def _index(path: Path, table: Any) -> Optional[IndexSettings]:
    """``[index]`` validated (again, on its own: the file's check already passed), its files relative to ``path``."""
    if table is None:
        return None
    settings = IndexSettings.model_validate(table or {})
    if (settings.file is None) != (settings.id_map is None):
        raise ProjectError(f"{path}: index: 'file' and 'id_map' go together (an index file needs its id map)")
    rebase = {k: str(path.parent / v) for k in ("file", "id_map") if (v := getattr(settings, k)) and not os.path.isabs(v)}
    return settings.model_copy(update=rebase)


def baseline_dir(config: str | os.PathLike[str] | None = None) -> Optional[Path]:
    """The project's baselines directory (``--config``, else the working directory's config); None without one."""
    path = Path(config) if config is not None else find_config()
    return None if path is None else load_project(path).baselines_dir


def _registry_and_project(config: str | os.PathLike[str] | None,
                          registry: str | os.PathLike[str] | None) -> Tuple[Registry, Optional[Project]]:
    """The registry with ``config``'s models merged in (None: the working directory's config, if any)."""
    path = Path(config) if config is not None else find_config()
    if path is None:
        return load_registry(registry), None
    project = load_project(path)
    return project.registry(load_registry(registry) if registry is not None else project.registry_file()), project


@one_line_errors
def project_registry(config: str | os.PathLike[str] | None = None,
                     registry: str | os.PathLike[str] | None = None) -> Registry:
    """The registry a run with ``--config config`` (and ``--registry registry``) sees; for matrix code."""
    return _registry_and_project(config, registry)[0]


@one_line_errors
def run_inputs(config: str | os.PathLike[str] | None, registry: str | os.PathLike[str] | None,
               corpus: str | os.PathLike[str] | None) -> Tuple[Registry, Path, Optional[Project]]:
    """What ``harness run/check/baseline create`` run with: the merged registry, the corpus source (``--corpus``,
    else the project's ``[corpus]``, else the shipped fixture corpus), and the project."""
    merged, project = _registry_and_project(config, registry)
    if corpus is not None:
        return merged, Path(corpus), project
    return merged, project.path if project is not None and project.has_corpus else _shipped_corpus(), project


def _shipped_corpus() -> Path:
    """The fixture corpus (``paths.default_corpus_dir()``); missing, a one-line error saying how to supply one."""
    return paths.require(paths.default_corpus_dir(), "corpus (documents.jsonl, queries.jsonl, rerank.jsonl)")

