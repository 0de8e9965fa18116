"""Typed views of a results file's ``harness`` metadata: one place that knows its keys.

``from_dict`` is lenient about missing keys (older files must stay readable) and keeps unknown ones in
``extra`` (a newer file round-trips), but strict about types: a wrong one is a ``ResultsFileError`` naming the
file and field. Stdlib only, besides ``harness.errors``: the runner imports this inside old matrix environments.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import sysconfig
import tempfile
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Type, TypeVar

from harness.errors import ResultsFileError

__all__ = ["CorpusMeta", "RunMeta", "ModelRecord", "Provenance", "ResultsMeta", "SideSettings", "path_anchors",
           "portable_metadata", "portable_path", "local_path"]

T = TypeVar("T", bound="_Record")
_WHAT = {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "an object", list: "a list"}


def _record_class(hint: Any) -> Any:
    return hint if isinstance(hint, type) and issubclass(hint, _Record) else None


def _expected(hint: Any) -> Tuple[type, Any]:
    """``(the JSON type a value must have, the record class of its items, or None)`` for a field's type hint."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        return _expected(args[0])
    if origin is dict:
        return dict, _record_class(args[1]) if len(args) == 2 else None
    if origin in (list, tuple):
        return list, _record_class(args[0]) if args else None
    return hint, None


def _check(value: Any, expected: type, where: str) -> Any:
    """``value`` if it is a JSON value of ``expected`` type (ints are numbers, booleans are not ints)."""
    if value is None:
        return None
    ok = isinstance(value, expected) and not (expected in (int, float) and isinstance(value, bool))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise ResultsFileError(f"{where} must be {_WHAT.get(expected, expected.__name__)}, got {shown}")
    return value


class _Record:
    """``from_dict``/``to_dict`` for the frozen dataclasses below, driven by their type hints."""

    #: fields left out of ``to_dict`` while they are None (keys the runner writes only when they apply)
    _OMIT_NONE: typing.ClassVar[bool] = False

    @classmethod
    def from_dict(cls: Type[T], data: Any, source: str = "results file", section: str = "") -> T:
        """The typed view of ``data`` (None: all defaults); ``source`` and ``section`` name it in errors."""
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            shown = f"metadata '{section}'" if section else "harness metadata"
            raise ResultsFileError(f"{source}: {shown} must be an object, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        values: Dict[str, Any] = {}
        for spec in dataclasses.fields(cls):  # type: ignore[arg-type]
            if spec.name == "extra" or spec.name not in data:
                continue
            name = f"{section}.{spec.name}" if section else spec.name
            expected, nested = _expected(hints[spec.name])
            record = _record_class(expected)
            if record is not None:
                values[spec.name] = record.from_dict(data[spec.name], source, name)
                continue
            value = _check(data[spec.name], expected, f"{source}: metadata '{name}'")
            if value is None:  # JSON null: the field's default (None, or an empty table)
                continue
            if expected is dict and nested is not None:
                value = {key: nested.from_dict(item, source, f"{name}.{key}") for key, item in value.items()}
            elif expected is list:
                value = tuple(value if nested is None else
                              (nested.from_dict(item, source, f"{name}[{i}]") for i, item in enumerate(value)))
            values[spec.name] = value
        known = {spec.name for spec in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})  # type: ignore[call-arg]

    @classmethod
    def of(cls: Type[T], **values: Any) -> T:
        """A record from keyword values the code computed: known keys become fields, the others ``extra``."""
        known = {spec.name for spec in dataclasses.fields(cls)} - {"extra"}  # type: ignore[arg-type]
        extra = {k: v for k, v in values.items() if k not in known}
        return cls(**{k: v for k, v in values.items() if k in known}, extra=extra)  # type: ignore[call-arg]

    def to_dict(self) -> Dict[str, Any]:
        """The JSON the runner writes (unknown keys read from a newer file included)."""
        out: Dict[str, Any] = {}
        for spec in dataclasses.fields(self):  # type: ignore[arg-type]
            if spec.name == "extra":
                continue
            value = getattr(self, spec.name)
            if value is None and self._OMIT_NONE:
                continue
            if isinstance(value, tuple):
                value = [v.to_dict() if isinstance(v, _Record) else v for v in value]
            elif isinstance(value, _Record):
                value = value.to_dict()
            elif isinstance(value, dict):
                value = {k: v.to_dict() if isinstance(v, _Record) else v for k, v in value.items()}
            out[spec.name] = value
        return {**self.extra, **out}  # type: ignore[attr-defined]


@dataclass(frozen=True)
class CorpusMeta(_Record):
    """Which corpus a run embedded: its name, version, and the hash that makes two runs comparable."""

    name: Optional[str] = None
    version: Optional[str] = None
    sha256: Optional[str] = None
    documents: Optional[int] = None
    queries: Optional[int] = None
    pairs: Optional[int] = None
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunMeta(_Record):
    """How a run was made (the ``run`` table): what a re-run of a baseline restores, and what it cost."""

    device: Optional[str] = None
    device_requested: Optional[str] = None
    dtype: Optional[str] = None
    batch_size: Optional[int] = None
    tf32_requested: Optional[bool] = None
    threads_requested: Optional[int] = None
    attn_implementation_requested: Optional[str] = None
    allow_network: Optional[bool] = None
    duration_s: Optional[float] = None
    peak_rss_bytes: Optional[int] = None
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelRecord(_Record):
    """One results entry's record (``models.<id>``): what ran, how it was loaded and called, how fast.

    ``source`` is the registry entry it ran from, which a re-run elsewhere rebuilds it from.
    """

    _OMIT_NONE: typing.ClassVar[bool] = True

    kind: Optional[str] = None
    status: Optional[str] = None
    reason: Optional[str] = None
    source: Optional[Dict[str, Any]] = None
    directory: Optional[str] = None
    found_via: Optional[str] = None
    weights_sha256: Optional[str] = None
    weight_files: Optional[Tuple[str, ...]] = None
    weights_format: Optional[str] = None
    saved_versions: Optional[Dict[str, Any]] = None
    backend: Optional[str] = None
    architecture: Optional[str] = None
    attn_implementation: Optional[str] = None
    loaded_dtype: Optional[str] = None
    loaded_dtype_before_cast: Optional[str] = None
    config_dtype: Optional[str] = None
    max_seq_length: Optional[int] = None
    padding_side: Optional[str] = None
    num_labels: Optional[int] = None
    encode: Optional[Dict[str, Any]] = None
    dim: Optional[int] = None
    vector_dtype: Optional[str] = None
    precision: Optional[str] = None
    derived_from: Optional[str] = None
    load_s: Optional[float] = None
    compute_s: Optional[float] = None
    items: Optional[int] = None
    items_per_s: Optional[float] = None
    cuda_peak_memory_bytes: Optional[int] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def for_entry(self, rows: Any, model_id: str, precision: str, encode: Dict[str, Any]) -> ModelRecord:
        """This record for one results entry (``rows``: its ``ModelRows``) of model ``model_id``: the entry's
        settings, its stored vectors' width and dtype (``dim`` is the packed length for binary precisions) and,
        for ``<id>@logits``/``<id>@label<i>`` entries, the model they were derived from."""
        vectors = rows.vectors
        stored = (int(vectors.shape[1]), str(vectors.dtype), precision) if vectors is not None else (None, None, None)
        return dataclasses.replace(self, encode=encode, dim=stored[0], vector_dtype=stored[1], precision=stored[2],
                                   derived_from=model_id if rows.model_id != model_id else None)


class SideSettings(typing.NamedTuple):
    """One side's settings its tolerance class is chosen from (``harness.config.policy.choose_class``): its device
    type, the dtype the model ran in, whether float32 matmuls ran in TF32 on CUDA, whether it was served."""

    device: str = "cpu"
    dtype: str = "float32"
    tf32: bool = False
    served: bool = False

    @classmethod
    def of(cls, fingerprint: Mapping[str, Any], record: Optional[ModelRecord] = None) -> SideSettings:
        """From a results file's fingerprint (an open JSON table; older ones lack ``device_type``) and a model's record."""
        tf32 = fingerprint.get("tf32_matmul") or fingerprint.get("float32_matmul_precision") in ("high", "medium")
        return cls(str(fingerprint.get("device_type") or fingerprint.get("device") or "cpu").split(":")[0],
                   str(record and record.loaded_dtype or fingerprint.get("dtype") or "float32"),
                   str(fingerprint.get("device_type", "")) == "cuda" and bool(tf32), bool(record and record.backend == "http"))

    @property
    def precision(self) -> str:
        """The precision class these settings call for (dtype first, then TF32 on CUDA)."""
        return {"bfloat16": "bf16", "float16": "fp16"}.get(self.dtype) or ("tf32" if self.tf32 else "fp32")


@dataclass(frozen=True)
class Provenance(_Record):
    """Why a baseline exists (the ``baseline`` table ``harness.baselines.create_baseline`` writes)."""

    name: Optional[str] = None
    action: Optional[str] = None
    created_at: Optional[str] = None
    created_by: Optional[str] = None
    reason: Optional[str] = None
    source_file: Optional[str] = None
    previous_file: Optional[str] = None
    history: Tuple[Provenance, ...] = ()
    extra: Dict[str, Any] = field(default_factory=dict)

    def without_history(self) -> Provenance:
        return dataclasses.replace(self, history=())


@dataclass(frozen=True)
class ResultsMeta(_Record):
    """The whole ``harness`` metadata of a results file, as the runner writes it."""

    harness_version: Optional[str] = None
    created_at: Optional[str] = None
    cell_id: Optional[str] = None
    corpus: CorpusMeta = field(default_factory=CorpusMeta)
    run: RunMeta = field(default_factory=RunMeta)
    fingerprint: Dict[str, Any] = field(default_factory=dict)
    models: Dict[str, ModelRecord] = field(default_factory=dict)
    extra: Dict[str, Any] = field(default_factory=dict)


# -- paths a results file records: relative to where they lie, never the machine's absolute ones ----------------

#: (prefix, directory) pairs: a recorded path under ``directory`` is written ``<prefix>/<rest>``
Anchors = Sequence[Tuple[str, str]]


def path_anchors(project_root: str | os.PathLike[str] | None = None) -> List[Tuple[str, str]]:
    """Where recorded paths are made relative to, most specific first: the checkout (plain relative paths),
    the installed packages (``site-packages/...``), the temp directory (``<tmp>/...``), the home (``~/...``)."""
    found = [("site-packages", sysconfig.get_paths()[key]) for key in ("purelib", "platlib")]
    found += [("site-packages", entry) for entry in sys.path if entry.endswith(("site-packages", "dist-packages"))]
    found += [("<tmp>", tempfile.gettempdir()), ("~", str(Path.home()))]
    if project_root is not None:
        found.append(("", str(project_root)))
    unique: Dict[str, str] = {}
    for prefix, directory in found:
        unique.setdefault(os.path.realpath(directory), prefix)
    return sorted(((prefix, d) for d, prefix in unique.items()), key=lambda a: -len(a[1]))


def portable_path(path: Optional[str], anchors: Anchors) -> Optional[str]:
    """``path`` relative to the first anchor that holds it (``fixtures/models/tiny-bi-encoder``, ``site-packages/pkg/model``,
    ``~/models/x``); a relative path, a URL, or one under no anchor is returned as it is."""
    if not isinstance(path, str) or not os.path.isabs(path):
        return path
    real = os.path.realpath(path)
    for prefix, directory in anchors:
        for candidate in (path, real):
            if candidate == directory or candidate.startswith(directory.rstrip(os.sep) + os.sep):
                rest = Path(os.path.relpath(candidate, directory)).as_posix()
                rest = "" if rest == "." else rest
                return f"{prefix}/{rest}".rstrip("/") if prefix else (rest or ".")
    return path


def local_path(recorded: str, anchors: Anchors) -> str:
    """The inverse of ``portable_path`` on this machine: the first anchor of the recorded prefix where it exists."""
    if os.path.isabs(recorded) or "://" in recorded:
        return recorded
    head, _, rest = recorded.partition("/")
    options = [d for prefix, d in anchors if prefix == head] if head in {p for p, _ in anchors if p} else []
    if not options:
        options, rest = [d for prefix, d in anchors if prefix == ""], recorded
    for directory in options:
        candidate = os.path.join(directory, rest)
        if os.path.exists(candidate):
            return candidate
    return os.path.join(options[0], rest) if options else recorded


def portable_metadata(meta: Mapping[str, Any], anchors: Anchors) -> Dict[str, Any]:
    """A copy of a results file's metadata with every machine path it records made portable (model sources and
    directories, the baseline's files and its history's, the fingerprint's ``executable``); nothing else changes."""
    def port(table: Any, keys: Tuple[str, ...]) -> Any:  # a JSON object's ``keys`` made portable; anything else as it is
        return {k: portable_path(v, anchors) if k in keys else v for k, v in table.items()} if isinstance(table, dict) else table

    def model(record: Any) -> Any:
        record = port(record, ("directory",))
        source = port(record.get("source"), ("path", "cache_dir")) if isinstance(record, dict) else None
        return {**record, "source": source} if isinstance(source, dict) else record

    def provenance(entry: Any) -> Any:
        entry = port(entry, ("source_file", "previous_file"))
        history = entry.get("history") if isinstance(entry, dict) else None
        return {**entry, "history": [provenance(h) for h in history]} if isinstance(history, list) else entry

    out = dict(meta)
    if isinstance(out.get("models"), dict):
        out["models"] = {model_id: model(record) for model_id, record in out["models"].items()}
    if "fingerprint" in out:
        out["fingerprint"] = port(out["fingerprint"], ("executable",))
    if out.get("baseline") is not None:
        out["baseline"] = provenance(out["baseline"])
    return out
