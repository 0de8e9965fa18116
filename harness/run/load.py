"""Load a resolved model directory with sentence-transformers 2.7 .. newest, and report what was loaded.

Version differences are handled here and nowhere else: keywords filtered against the installed signature, and
a model saved by a newer major/minor release is ``incompatible`` (both versions named) instead of crashing deep
inside the library.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from harness.config.registry import ModelSpec, weight_files
from harness.errors import ModelLoadError, first_line
from harness.results.meta import ModelRecord
from harness.run.backends import BackendUnavailable, backend_record, prepare_backend

__all__ = [
    "DTYPES",
    "EncodeSettings",
    "EntryOutput",
    "Incompatible",
    "LoadedModel",
    "hf_model",
    "installed_version",
    "load_model",
    "saved_versions",
    "weights_sha256",
]

DTYPES = ("float32", "float16", "bfloat16", "float64")  # float64: an fp64 reference (``harness baseline reference``)


class Incompatible(Exception):
    """The installed libraries cannot load this model; ``reason`` says why (a cell state, not an error)."""

    def __init__(self, reason: str, saved: Dict[str, str]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.saved = saved


class EntryOutput(NamedTuple):
    """Which output of a cross-encoder a results entry holds (``activated`` or ``logits``; of which label)."""

    output: str
    label: Optional[int] = None
    label_name: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        """Its keys in the entry's ``encode`` record (JSON out): the label and its name only for a multi-label model."""
        return {"output": self.output, **({"label": self.label, "label_name": self.label_name} if self.label is not None else {})}


@dataclass
class EncodeSettings:
    """The settings applied to a model's calls, filled in as they are applied; each results entry records them as
    its ``encode`` metadata (``to_dict``: a field left at its default was not applied and is not recorded)."""

    backend: str
    #: setting -> why the installed sentence-transformers could not apply it
    unsupported: Dict[str, str] = field(default_factory=dict)
    max_seq_length: Optional[int] = None
    batch_size: Optional[int] = None
    normalize_embeddings: Optional[bool] = None
    truncate_dim: Optional[int] = None
    precision: Optional[str] = None
    quantization: Optional[str] = None
    calibration: Optional[str] = None
    default_prompt_name: Optional[str] = None
    prompt: Optional[str] = None
    prompt_name: Optional[str] = None
    document_prompt: Optional[str] = None
    document_prompt_name: Optional[str] = None
    query_prompt: Optional[str] = None
    query_prompt_name: Optional[str] = None
    #: the activation ``predict`` applied (None: none); "" where nothing was predicted
    activation: Optional[str] = ""
    #: a cross-encoder's results entries (``<id>``, ``<id>@logits``, ``<id>@label<i>``) and the output each holds
    entries: Dict[str, EntryOutput] = field(default_factory=dict)

    def to_dict(self, entry: str = "") -> Dict[str, Any]:
        """The ``encode`` record of results entry ``entry`` (JSON out)."""
        applied = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) != f.default}
        own = self.entries[entry].to_dict() if entry in self.entries else {}
        return {**{k: v for k, v in applied.items() if k != "entries"}, **own}


@dataclass
class LoadedModel:
    spec: ModelSpec
    directory: Path
    found_via: str
    model: Any
    #: what it is and how it loaded (dtype before and after the cast, attention, weights hash, backend, ...)
    info: ModelRecord = field(default_factory=ModelRecord)
    #: the settings applied to this model's calls (recorded as each entry's ``encode`` metadata)
    encode: EncodeSettings = field(default_factory=lambda: EncodeSettings("torch"))


def saved_versions(directory: Path) -> Dict[str, str]:
    """Library versions recorded by whoever saved the model (``config_sentence_transformers.json``)."""
    path = directory / "config_sentence_transformers.json"
    try:
        versions = json.loads(path.read_text(encoding="utf-8")).get("__version__", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return {str(k): str(v) for k, v in versions.items()} if isinstance(versions, dict) else {}


class WeightsHash(NamedTuple):
    """What a model's weights are: their SHA-256, files and format (recorded as the model's ``weights_*``)."""

    weights_sha256: str
    weight_files: List[str]
    weights_format: str  # "safetensors" when any weight file is one, else "pickle"


def weights_sha256(directory: Path) -> WeightsHash:
    """SHA-256 over the weight files (relative name + bytes), so a silently changed upload is caught."""
    digest = hashlib.sha256()
    files = weight_files(directory)
    for path in files:
        digest.update(str(path.relative_to(directory)).encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    names = [str(p.relative_to(directory)) for p in files]
    return WeightsHash(digest.hexdigest(), names, "safetensors" if any(n.endswith(".safetensors") for n in names) else "pickle")


def installed_version() -> str:
    """The installed sentence-transformers version (what messages and ``incompatible`` reasons name). A library
    that installs but does not import here (transformers 5.23 under torch 2.4.1: ``NameError``) makes every model
    ``Incompatible`` with the import error as its reason, not an internal error of the harness."""
    try:
        import sentence_transformers
    except Exception as err:  # noqa: BLE001 - any failure of a third-party import is this environment's
        reason = f"sentence-transformers does not import in this environment: {type(err).__name__}: {err}"
        raise Incompatible(" ".join(reason.split())[:400], {}) from None
    return str(sentence_transformers.__version__)


def _check_compatible(directory: Path, model_id: str = "") -> Tuple[Dict[str, str], Optional[str]]:
    """The saved versions, and a note when a newer patch release saved the model: that one is tried with a
    warning (it rarely changes the files); a newer major/minor release is ``incompatible`` without trying."""
    from packaging.version import InvalidVersion, Version

    saved = saved_versions(directory)
    installed = installed_version()
    wanted = saved.get("sentence_transformers")
    if wanted is None or installed is None:  # nothing recorded, or no library to compare with (loading will say)
        return saved, None
    try:
        newer = Version(wanted) > Version(installed)
        same_minor = newer and Version(wanted).release[:2] == Version(installed).release[:2]
    except InvalidVersion:
        newer = same_minor = False
    if not newer:
        return saved, None
    note = f"model saved by sentence-transformers {wanted}, installed {installed} is older"
    if not same_minor:
        raise Incompatible(note, saved)
    print(f"warning: model '{model_id}': {note} (a patch release); trying to load it", file=sys.stderr)
    return saved, note


def _supported_kwargs(cls: Any, wanted: Dict[str, Any]) -> Dict[str, Any]:
    """Keep only the constructor keywords this sentence-transformers version accepts."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return wanted
    return {k: v for k, v in wanted.items() if k in params}


def hf_model(model: Any) -> Any:
    """The underlying ``transformers.PreTrainedModel`` (a sentence-transformers < 4 ``CrossEncoder`` holds it in
    ``.model``)."""
    from transformers import PreTrainedModel

    if isinstance(getattr(model, "model", None), PreTrainedModel):
        return model.model
    for module in model.modules() if hasattr(model, "modules") else ():
        if isinstance(module, PreTrainedModel):
            return module
    return None


def _torch_module(model: Any) -> Any:
    """What to cast and put in eval mode: the wrapper when it is a torch module, else the HF model inside
    (None for an ONNX Runtime / OpenVINO backed model of sentence-transformers < 4)."""
    return model if hasattr(model, "parameters") else hf_model(model)


def _describe(model: Any, kind: str) -> Dict[str, Any]:
    """Facts about the loaded model that move numbers: dtype, attention kernel, padding, max length."""
    hf = hf_model(model)
    config = getattr(hf, "config", None)
    tokenizer = getattr(model, "tokenizer", None)
    module = _torch_module(model)
    params = next(iter(module.parameters()), None) if module is not None else None
    with warnings.catch_warnings():  # the attribute was renamed across versions; read whichever exists
        warnings.simplefilter("ignore")
        max_len = getattr(model, "max_seq_length", None)
        if max_len is None and kind == "cross-encoder":
            max_len = getattr(model, "max_length", None) or getattr(tokenizer, "model_max_length", None)
    return {
        "architecture": type(hf).__name__ if hf is not None else None,
        "attn_implementation": getattr(config, "_attn_implementation", None),
        "loaded_dtype": str(params.dtype).replace("torch.", "") if params is not None else None,
        "config_dtype": str(getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or "")
        .replace("torch.", "") or None,
        "max_seq_length": int(max_len) if isinstance(max_len, int) else None,
        "padding_side": getattr(tokenizer, "padding_side", None),
        "tokenizer_class": type(tokenizer).__name__ if tokenizer is not None else None,
        "num_labels": getattr(config, "num_labels", None) if kind == "cross-encoder" else None,
    }


def _quiet_weight_loading() -> None:
    """transformers 5 draws a "Loading weights" bar per model on stderr (carriage returns in a CI log); the
    harness reports progress itself, so the library's own bar is turned off where the version has the switch."""
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:
        return
    disable = getattr(transformers_logging, "disable_progress_bar", None)
    if disable is not None:
        disable()


def load_model(
    spec: ModelSpec,
    directory: Path,
    found_via: str,
    *,
    device: str,
    dtype: str,
    attn_implementation: Optional[str] = None,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load a bi-encoder or cross-encoder from a local directory, offline, on ``device`` in ``dtype``
    (``Incompatible`` or ``ModelLoadError`` when it cannot)."""
    import torch

    saved, patch_note = _check_compatible(directory, spec.id)
    if (spec.trust_remote_code or _needs_remote_code(directory)) and not trust_remote_code:
        raise ModelLoadError(
            f"model '{spec.id}': needs trust_remote_code (custom code in {directory}); "
            "refused, pass --trust-remote-code to allow it"
        )
    from sentence_transformers import CrossEncoder, SentenceTransformer

    _quiet_weight_loading()
    cls = SentenceTransformer if spec.kind == "bi-encoder" else CrossEncoder
    wanted: Dict[str, Any] = {"device": device, "local_files_only": True, "trust_remote_code": trust_remote_code}
    if attn_implementation:
        wanted["model_kwargs"] = {"attn_implementation": attn_implementation}
        wanted["automodel_args"] = {"attn_implementation": attn_implementation}  # ST < 3 CrossEncoder
    hashes = weights_sha256(directory)
    backend = spec.backend or "torch"
    load_dir, export_to = directory, None
    if backend != "torch":
        try:
            load_dir, export_to = prepare_backend(spec, cls, directory, backend, dtype, hashes.weights_sha256,
                                                  installed_version())
        except BackendUnavailable as err:
            raise Incompatible(str(err), saved) from None
        wanted["backend"] = backend
        wanted.pop("model_kwargs", None)  # attention kernels are a torch setting
    kwargs = _supported_kwargs(cls, wanted)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # export chatter ("Saving the exported ONNX model is recommended")
            model = cls(str(load_dir), **kwargs)
    except (OSError, ValueError) as err:
        if patch_note:  # tried, and loading showed it: the newer patch release is the likeliest cause
            raise Incompatible(f"{patch_note}, and loading failed: {type(err).__name__}: {first_line(err)}", saved) from None
        raise ModelLoadError(f"model '{spec.id}': cannot load {directory} ({first_line(err)})") from None
    except (AttributeError, TypeError, KeyError, ImportError) as err:
        # Libraries too old or too new for the saved files fail in these ways; it is a cell state, not a bug.
        raise Incompatible(
            f"{patch_note + ': ' if patch_note else ''}sentence-transformers {installed_version()} cannot load this "
            f"model: {type(err).__name__}: {first_line(err)}",
            saved,
        ) from err
    except Exception as err:  # noqa: BLE001 - a backend whose packages import but do not work (optimum vs transformers)
        if backend == "torch":
            raise
        raise Incompatible(f"backend {backend} failed to load: {type(err).__name__}: {first_line(err)}", saved) from err
    before = _describe(model, spec.kind)
    target = getattr(torch, dtype)
    module = _torch_module(model)
    if module is not None:
        if any(p.dtype != target for p in module.parameters()):
            module.to(target)
        module.eval()
    encode = EncodeSettings(backend)
    if spec.max_seq_length is not None:
        _apply_max_length(model, spec, encode)
    info = {**before, "loaded_dtype_before_cast": before["loaded_dtype"], **_describe(model, spec.kind)}
    info.update(saved_versions=saved, **hashes._asdict(), backend=backend)
    if backend != "torch":
        info.update(backend_record(model, load_dir, export_to, backend))
    return LoadedModel(spec, directory, found_via, model, ModelRecord.of(**info), encode)


def _apply_max_length(model: Any, spec: ModelSpec, encode: EncodeSettings) -> None:
    """``max_seq_length`` on a bi-encoder, ``max_length`` on a cross-encoder (all versions have a setter)."""
    attr = "max_seq_length" if spec.kind == "bi-encoder" else "max_length"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not hasattr(model, attr):
            encode.unsupported["max_seq_length"] = f"{type(model).__name__} has no '{attr}' to set"
            return
        setattr(model, attr, spec.max_seq_length)
        encode.max_seq_length = getattr(model, attr)


def _needs_remote_code(directory: Path) -> bool:
    """A config with ``auto_map`` or a ``*.py`` file beside the weights means custom code would run."""
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    return bool(config.get("auto_map")) or any(directory.glob("*.py"))

