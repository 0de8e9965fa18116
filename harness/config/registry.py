"""The model registry: model ids mapped to where their files come from (a TOML file, data not code).

Resolution is offline-first: a hub id is looked up in the local cache with ``local_files_only=True`` and the
network is used only when the caller allows it. Nothing here imports torch or sentence-transformers.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple

from harness import paths
from harness.config.schema import Loc, Schema, dotted, one_line_errors, setting, validate
from harness.config.tomlfile import read_toml
from harness.errors import ModelLoadError

__all__ = [
    "BACKENDS",
    "DEFAULT_REGISTRY",
    "ENCODE_KEYS",
    "HTTP_SETTINGS",
    "KINDS",
    "ModelEntry",
    "RegistryFile",
    "PRECISIONS",
    "ModelSpec",
    "Registry",
    "base_model_id",
    "did_you_mean",
    "load_registry",
    "parse_entry",
    "entry_label",
    "weight_files",
]

#: The shipped registry when this module was imported (``paths.default_registry()`` is the current one).
DEFAULT_REGISTRY = paths.default_registry()
KINDS = ("bi-encoder", "cross-encoder")
SOURCES = ("path", "package", "hub", "derived", "served")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".h5", ".msgpack")
BACKENDS = ("torch", "onnx", "openvino", "http")
#: Settings a served model (``backend = "http"``) may set besides its ``http`` table: the server applies the rest
#: (prompts, pooling, normalization, truncation) itself, so setting them here would record what was not applied.
HTTP_SETTINGS = ("backend", "batch_size", "logits")
#: ``precision`` values: float32, or sentence-transformers' quantized outputs (``quantize_embeddings``)
PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")
#: how int8/uint8 ranges are calibrated: "corpus" = quantize_embeddings(calibration_embeddings=the corpus's own
#: float embeddings), "encode" = encode(precision=...), which takes the ranges from each encode() call
QUANTIZATIONS = ("corpus", "encode")

#: Per-model settings that change the numbers (recorded per model, passed to encode()/predict() where the
#: installed sentence-transformers supports them); ``_ONE_KIND``: those that apply to one kind only.
ENCODE_KEYS = ("backend", "batch_size", "max_seq_length", "prompt", "prompt_name", "query_prompt", "query_prompt_name",
               "document_prompt", "document_prompt_name", "normalize_embeddings", "truncate_dim", "precision",
               "quantization", "logits")
_ONE_KIND = {**dict.fromkeys(ENCODE_KEYS[5:13], "bi-encoder"), "logits": "cross-encoder"}
#: Model ids the runner derives from one cross-encoder: ``<id>@logits``, ``<id>@label<i>``, ``<id>@label<i>@logits``.
_DERIVED_ID = re.compile(r"^(?P<base>.+?)@(?:logits|label\d+(?:@logits)?)$")

_TEXT = "be a string"
_FLAG = "be true or false"
_SIZE = "be a positive integer (at most 1048576)"


def _size() -> Any:
    return setting(None, expect=_SIZE, ge=1, le=1 << 20)


def _one_of(choices: Tuple[str, ...]) -> str:
    return f"be one of {', '.join(choices)}"


class ModelEntry(Schema):
    """The keys of one ``[models."<id>"]`` table, each optional here: which ones an entry needs depends on its
    ``source`` (and a project entry may set only settings, over a built-in entry), checked by ``parse_entry``."""

    kind: Optional[Literal[KINDS]] = setting(None, expect=_one_of(KINDS))  # type: ignore[valid-type]  # Literal of a tuple constant (pydantic expands it)
    source: Optional[Literal[SOURCES]] = setting(None, expect=_one_of(SOURCES))  # type: ignore[valid-type]  # Literal of a tuple constant (pydantic expands it)
    path: Optional[str] = setting(None, expect=_TEXT)
    package: Optional[str] = setting(None, expect=_TEXT)
    subdir: Optional[str] = setting(None, expect=_TEXT)
    hub_id: Optional[str] = setting(None, expect=_TEXT)
    cache_dir: Optional[str] = setting(None, expect=_TEXT)
    revision: Optional[str] = setting(None, expect=_TEXT)
    trust_remote_code: Optional[bool] = setting(None, expect=_FLAG)
    base: Optional[str] = setting(None, expect=_TEXT)
    seed: Optional[int] = setting(None, expect="be an integer from 0 to 4294967295", ge=0, le=(1 << 32) - 1)
    note: Optional[str] = setting(None, expect=_TEXT)
    backend: Optional[Literal[BACKENDS]] = setting(None, expect=_one_of(BACKENDS))  # type: ignore[valid-type]  # Literal of a tuple constant (pydantic expands it)
    batch_size: Optional[int] = _size()
    max_seq_length: Optional[int] = _size()
    prompt: Optional[str] = setting(None, expect=_TEXT)
    prompt_name: Optional[str] = setting(None, expect=_TEXT)
    query_prompt: Optional[str] = setting(None, expect=_TEXT)
    query_prompt_name: Optional[str] = setting(None, expect=_TEXT)
    document_prompt: Optional[str] = setting(None, expect=_TEXT)
    document_prompt_name: Optional[str] = setting(None, expect=_TEXT)
    normalize_embeddings: Optional[bool] = setting(None, expect=_FLAG)
    truncate_dim: Optional[int] = _size()
    precision: Optional[Literal[PRECISIONS]] = setting(None, expect=_one_of(PRECISIONS))  # type: ignore[valid-type]  # Literal of a tuple constant (pydantic expands it)
    quantization: Optional[Literal[QUANTIZATIONS]] = setting(None, expect=_one_of(QUANTIZATIONS))  # type: ignore[valid-type]  # Literal of a tuple constant (pydantic expands it)
    logits: Optional[bool] = setting(None, expect=_FLAG)
    # validated by harness.config.http.settings_from_mapping (its own keys and ranges)
    http: Optional[Dict[str, Any]] = setting(None, expect='be a table http = { url = "http://HOST:PORT", api = "..." }')


class RegistryFile(Schema):
    """A registry TOML file (and the registry part of a project config)."""

    models: Optional[Dict[str, ModelEntry]] = None
    sets: Optional[Dict[str, List[str]]] = setting(None, expect="map set names to lists of model ids")


def entry_label(loc: Loc) -> Optional[str]:
    """``("models", "x", ...)`` -> ``model 'x' ...``: the name registry errors have always used for an entry."""
    if len(loc) >= 2 and loc[0] == "models":
        rest = dotted(loc[2:])
        return f"model '{loc[1]}'" + (f" {rest}" if rest else "")
    return None


class ModelSpec(ModelEntry):
    """One checked registry entry: ``ModelEntry``'s keys (one field list for both), its id, kind and source set."""

    id: str
    kind: str
    source: str
    subdir: str = ""
    trust_remote_code: bool = False
    note: str = ""

    def describe(self) -> Dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, "")}


@dataclass(frozen=True)
class Registry:
    path: Path
    models: Dict[str, ModelSpec]
    sets: Dict[str, List[str]] = field(default_factory=dict)

    def select(self, names: Optional[List[str]]) -> List[ModelSpec]:
        """Specs for ids, set names or model directories (default: the ``default`` set)."""
        wanted = names or ["default"]
        specs: List[ModelSpec] = []
        for name in wanted:
            if name in self.sets:
                specs.extend(self._get(n) for n in self.sets[name])
            else:
                specs.append(self._get(name))
        seen: Dict[str, ModelSpec] = {}
        for spec in specs:
            seen.setdefault(spec.id, spec)
        return list(seen.values())

    def _get(self, name: str) -> ModelSpec:
        base = base_model_id(name)
        if base != name:  # "<id>@logits" / "<id>@label<i>" come from running "<id>" (e.g. ids read from a baseline)
            if base in self.models or Path(base).is_dir():
                name = base
            elif name in self.models:  # an entry rebuilt from a baseline's recorded source: run its model
                return self.models[name].model_copy(update={"id": base})
        if name in self.models:
            return self.models[name]
        candidate = Path(name)
        if candidate.is_dir():
            return self.directory_spec(candidate)
        known = ", ".join(sorted(self.models)) or "none"
        raise ModelLoadError(
            f"unknown model id '{name}'{did_you_mean(name, [*self.models, *self.sets])} (not in {self.path}, "
            f"not a directory; known: {known}; a project's models need --config FILE or ./harness.toml)"
        )

    def directory_spec(self, directory: Path, model_id: Optional[str] = None) -> ModelSpec:
        """A model directory given on the command line, under an id users can match across runs: ``model_id``
        when given, else the id of the registry entry whose files these are, else the directory's name."""
        resolved = directory.resolve()
        if model_id is None:
            model_id = next((spec.id for spec in self.models.values() if _spec_directory(spec) == resolved), None)
            if model_id is not None:
                return self.models[model_id]
        return ModelSpec(id=model_id or resolved.name, kind=_guess_kind(resolved), source="path", path=str(resolved))

    def with_model_id(self, names: Optional[List[str]], model_id: str) -> Tuple[Registry, List[str]]:
        """``--model DIR --model-id NAME``: the registry with DIR's model entered as NAME, and the names to run."""
        dirs = [n for n in names or [] if n not in self.models and n not in self.sets and Path(n).is_dir()]
        if len(dirs) != 1 or not names or len(names) != 1:
            raise ModelLoadError(f"--model-id {model_id}: needs exactly one --model DIR (a model directory), got "
                                 f"{' '.join(names or []) or 'none'}")
        if "@" in model_id or not model_id.strip():
            raise ModelLoadError(f"--model-id '{model_id}': must be non-empty and must not contain '@'")
        spec = self.directory_spec(Path(dirs[0]), model_id)
        return replace(self, models={**self.models, model_id: spec}), [model_id]


def did_you_mean(name: str, known: List[str]) -> str:
    """``"; did you mean 'x'?"`` for a near miss among ``known`` (difflib), else ``""``."""
    close = difflib.get_close_matches(name, sorted(set(known)), n=2, cutoff=0.8)
    if not close:
        lowered = {k.lower(): k for k in known}
        close = [lowered[name.lower()]] if name.lower() in lowered else []
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _spec_directory(spec: ModelSpec) -> Optional[Path]:
    """Where a registry entry's files lie when that is known without resolving anything (path, package)."""
    if spec.source == "path" and spec.path:
        return Path(spec.path).resolve()
    if spec.source == "package" and spec.package:
        import importlib.util

        try:
            found = importlib.util.find_spec(spec.package)
        except (ImportError, ValueError):
            return None
        locations = list(found.submodule_search_locations or []) if found is not None else []
        return (Path(locations[0]) / spec.subdir).resolve() if locations else None
    return None


def base_model_id(model_id: str) -> str:
    """The model a results entry came from: ``"x@logits"`` and ``"x@label1"`` -> ``"x"``; others unchanged."""
    match = _DERIVED_ID.match(model_id)
    return match.group("base") if match else model_id


def _guess_kind(directory: Path) -> str:
    """A model directory with ``modules.json`` is a sentence-transformers bi-encoder; else a cross-encoder."""
    return "bi-encoder" if (directory / "modules.json").is_file() else "cross-encoder"


@one_line_errors
def load_registry(path: str | os.PathLike[str] | None = None) -> Registry:
    """Read and validate a registry TOML file; relative paths in it are relative to the file."""
    if path is None:
        reg_path = paths.default_registry()
        if not reg_path.is_file():
            raise ModelLoadError(paths.missing_message(reg_path, "model registry"))
    else:
        reg_path = Path(path)
    data = read_toml(reg_path, ModelLoadError, "model registry not found")
    validate(RegistryFile, data, source=str(reg_path), error=ModelLoadError, label=entry_label)
    models: Dict[str, ModelSpec] = {}
    for model_id, entry in (data.get("models") or {}).items():
        models[model_id] = parse_entry(reg_path, model_id, entry)
    sets = {name: list(ids) for name, ids in (data.get("sets") or {}).items()}
    for spec in models.values():
        if spec.source == "derived" and (spec.base not in models or not spec.path):
            raise ModelLoadError(f"{reg_path}: model '{spec.id}' is derived from unknown model '{spec.base}' or has no path")
    for name, ids in sets.items():
        unknown = [i for i in ids if i not in models]
        if unknown:
            raise ModelLoadError(f"{reg_path}: set '{name}' names unknown model(s) {', '.join(unknown)}")
    return Registry(path=reg_path, models=models, sets=sets)


@one_line_errors
def parse_entry(reg_path: Path, model_id: str, entry: Dict[str, Any]) -> ModelSpec:
    """Validate one ``[models."<id>"]`` table (registry or project config); relative paths are made absolute."""
    where = f"{reg_path}: model '{model_id}'"
    validate(ModelEntry, entry, source=str(reg_path), error=ModelLoadError, at=("models", model_id), label=entry_label)
    if "@" in model_id or not model_id.strip():
        raise ModelLoadError(f"{where}: model ids must be non-empty and must not contain '@' (reserved for <id>@logits)")
    if entry.get("kind") not in KINDS:
        raise ModelLoadError(f"{where}: 'kind' must be one of {', '.join(KINDS)}")
    if entry.get("backend") == "http" and "source" not in entry:
        entry = {**entry, "source": "served"}  # a model known only by its server
    if entry.get("source") not in SOURCES:
        raise ModelLoadError(f"{where}: 'source' must be one of {', '.join(SOURCES)}")
    required = {"path": "path", "package": "package", "hub": "hub_id", "derived": "base", "served": "http"}[entry["source"]]
    if not entry.get(required):
        raise ModelLoadError(f"{where}: source '{entry['source']}' needs '{required}'")
    _check_settings(where, entry)
    _check_http(where, model_id, entry)
    values = dict(entry)
    for key in ("path", "cache_dir"):
        if values.get(key) and not os.path.isabs(values[key]):
            base = reg_path.parent
            if key == "path" and entry["source"] == "derived" and paths.is_shipped(reg_path):
                base = paths.cache_dir()  # built on first use: into the cache, never into the installed package
            values[key] = str((base / values[key]).resolve())
    return ModelSpec(id=model_id, **values)


def _check_settings(where: str, entry: Dict[str, Any]) -> None:
    """Which kinds each encode setting applies to, and settings that exclude each other (types and ranges
    are ``ModelEntry``'s), each problem as one line naming the key."""
    kind = entry["kind"]
    for key, only in _ONE_KIND.items():
        if key in entry and kind != only:
            raise ModelLoadError(f"{where}: '{key}' applies to {only}s only, this is a {kind}")
    for prefix in ("", "query_", "document_"):
        if f"{prefix}prompt" in entry and f"{prefix}prompt_name" in entry:
            raise ModelLoadError(f"{where}: set '{prefix}prompt' or '{prefix}prompt_name', not both")
    if "quantization" in entry and entry.get("precision", "float32") == "float32":
        raise ModelLoadError(f"{where}: 'quantization' needs a quantized 'precision' (int8, uint8, binary, ubinary)")


def _check_http(where: str, model_id: str, entry: Dict[str, Any]) -> None:
    """A served model: ``backend = "http"`` with an ``http`` table of client settings, and no library setting
    the server would not apply. The table is validated by ``harness.config.http.settings_from_mapping``."""
    served, table = entry.get("backend") == "http", entry.get("http")
    if table is not None and not served:
        raise ModelLoadError(f"{where}: an 'http' table needs backend = \"http\"")
    if not served:
        return
    if not isinstance(table, dict):
        raise ModelLoadError(f"{where}: backend = \"http\" needs a table http = {{ url = \"http://host:port\", api = \"...\" }}")
    applied_by_server = sorted(k for k in ENCODE_KEYS if k in entry and k not in HTTP_SETTINGS)
    if applied_by_server:
        raise ModelLoadError(f"{where}: {', '.join(applied_by_server)} cannot be set for backend = \"http\" "
                             "(the server applies its own; set them on the server)")
    from harness.config.http import settings_from_mapping

    settings_from_mapping({"model": model_id, **table}, where=where)


def weight_files(directory: Path) -> List[Path]:
    """Weight files of a model directory (all sub-modules), sorted so that hashes are stable."""
    return sorted(
        p for p in directory.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES and "onnx" not in p.parts
    )
