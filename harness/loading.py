"""Load a resolved model directory with sentence-transformers 2.7 .. newest, and report what was loaded.

Version differences are handled here and nowhere else: constructor keywords are filtered against the
installed signature, and a model saved by a newer sentence-transformers than the installed one is reported as
``incompatible`` (with both versions) instead of crashing deep inside the library.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from harness.errors import ModelLoadError
from harness.registry import ModelSpec, weight_files

__all__ = ["LoadedModel", "Incompatible", "load_model", "saved_versions", "weights_sha256", "DTYPES"]

DTYPES = ("float32", "float16", "bfloat16")


class Incompatible(Exception):
    """The installed libraries cannot load this model; ``reason`` says why (a cell state, not an error)."""

    def __init__(self, reason: str, saved: Dict[str, str]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.saved = saved


@dataclass
class LoadedModel:
    spec: ModelSpec
    directory: Path
    found_via: str
    model: Any
    info: Dict[str, Any] = field(default_factory=dict)


def saved_versions(directory: Path) -> Dict[str, str]:
    """Library versions recorded by whoever saved the model (``config_sentence_transformers.json``)."""
    path = directory / "config_sentence_transformers.json"
    try:
        versions = json.loads(path.read_text(encoding="utf-8")).get("__version__", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return {str(k): str(v) for k, v in versions.items()} if isinstance(versions, dict) else {}


def weights_sha256(directory: Path) -> Dict[str, Any]:
    """SHA-256 over the weight files (relative name + bytes), so a silently changed upload is caught."""
    digest = hashlib.sha256()
    files = weight_files(directory)
    for path in files:
        digest.update(str(path.relative_to(directory)).encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    names = [str(p.relative_to(directory)) for p in files]
    return {
        "weights_sha256": digest.hexdigest(),
        "weight_files": names,
        "weights_format": "safetensors" if any(n.endswith(".safetensors") for n in names) else "pickle",
    }


def _installed_st() -> str:
    import sentence_transformers

    return str(sentence_transformers.__version__)


def _check_compatible(directory: Path) -> Dict[str, str]:
    from packaging.version import InvalidVersion, Version

    saved = saved_versions(directory)
    installed = _installed_st()
    wanted = saved.get("sentence_transformers")
    try:
        newer = wanted is not None and Version(wanted) > Version(installed)
    except InvalidVersion:
        newer = False
    if newer:
        raise Incompatible(
            f"model saved by sentence-transformers {wanted}, installed {installed} is older", saved
        )
    return saved


def _supported_kwargs(cls: Any, wanted: Dict[str, Any]) -> Dict[str, Any]:
    """Keep only the constructor keywords this sentence-transformers version accepts."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return wanted
    return {k: v for k, v in wanted.items() if k in params}


def _hf_model(model: Any) -> Any:
    """The underlying ``transformers.PreTrainedModel`` (its location differs across ST versions).

    A sentence-transformers < 4 ``CrossEncoder`` is not a torch module: it holds the model in ``.model``.
    """
    from transformers import PreTrainedModel

    if isinstance(getattr(model, "model", None), PreTrainedModel):
        return model.model
    for module in model.modules() if hasattr(model, "modules") else ():
        if isinstance(module, PreTrainedModel):
            return module
    return None


def _torch_module(model: Any) -> Any:
    """What to cast and put in eval mode: the wrapper when it is a torch module, else the HF model inside."""
    return model if hasattr(model, "parameters") else _hf_model(model)


def _describe(model: Any, kind: str) -> Dict[str, Any]:
    """Facts about the loaded model that move numbers: dtype, attention kernel, padding, max length."""
    hf = _hf_model(model)
    config = getattr(hf, "config", None)
    tokenizer = getattr(model, "tokenizer", None)
    params = next(iter(_torch_module(model).parameters()), None)
    with warnings.catch_warnings():  # the attribute was renamed across versions; read whichever exists
        warnings.simplefilter("ignore")
        max_len = getattr(model, "max_seq_length", None)
        if max_len is None and kind == "cross-encoder":
            max_len = getattr(model, "max_length", None) or getattr(tokenizer, "model_max_length", None)
    return {
        "architecture": type(hf).__name__ if hf is not None else None,
        "attn_implementation": getattr(config, "_attn_implementation", None),
        "loaded_dtype": str(params.dtype).replace("torch.", "") if params is not None else None,
        "config_dtype": str(getattr(config, "torch_dtype", None) or getattr(config, "dtype", None) or "")
        .replace("torch.", "") or None,
        "max_seq_length": int(max_len) if isinstance(max_len, int) else None,
        "padding_side": getattr(tokenizer, "padding_side", None),
        "tokenizer_class": type(tokenizer).__name__ if tokenizer is not None else None,
        "num_labels": getattr(config, "num_labels", None) if kind == "cross-encoder" else None,
    }


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
    """Load a bi-encoder or cross-encoder from a local directory, offline, on ``device`` in ``dtype``.

    Raises:
        Incompatible: the installed sentence-transformers is older than the one that saved the model.
        ModelLoadError: the model needs remote code that was not allowed, or the files cannot be loaded.
    """
    import torch

    saved = _check_compatible(directory)
    if (spec.trust_remote_code or _needs_remote_code(directory)) and not trust_remote_code:
        raise ModelLoadError(
            f"model '{spec.id}': needs trust_remote_code (custom code in {directory}); "
            "refused, pass --trust-remote-code to allow it"
        )
    from sentence_transformers import CrossEncoder, SentenceTransformer

    cls = SentenceTransformer if spec.kind == "bi-encoder" else CrossEncoder
    wanted: Dict[str, Any] = {"device": device, "local_files_only": True, "trust_remote_code": trust_remote_code}
    if attn_implementation:
        wanted["model_kwargs"] = {"attn_implementation": attn_implementation}
        wanted["automodel_args"] = {"attn_implementation": attn_implementation}  # ST < 3 CrossEncoder
    kwargs = _supported_kwargs(cls, wanted)
    try:
        model = cls(str(directory), **kwargs)
    except (OSError, ValueError, EnvironmentError) as err:
        raise ModelLoadError(f"model '{spec.id}': cannot load {directory} ({_first_line(err)})") from None
    except (AttributeError, TypeError, KeyError, ImportError) as err:
        # Libraries too old or too new for the saved files fail in these ways; it is a cell state, not a bug.
        raise Incompatible(
            f"sentence-transformers {_installed_st()} cannot load this model: {type(err).__name__}: {_first_line(err)}",
            saved,
        ) from err
    before = _describe(model, spec.kind)
    target = getattr(torch, dtype)
    module = _torch_module(model)
    if any(p.dtype != target for p in module.parameters()):
        module.to(target)
    module.eval()
    info = {**before, "loaded_dtype_before_cast": before["loaded_dtype"], **_describe(model, spec.kind)}
    info.update(saved_versions=saved, **weights_sha256(directory))
    return LoadedModel(spec=spec, directory=directory, found_via=found_via, model=model, info=info)


def _needs_remote_code(directory: Path) -> bool:
    """A config with ``auto_map`` or a ``*.py`` file beside the weights means custom code would run."""
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    return bool(config.get("auto_map")) or any(directory.glob("*.py"))


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
