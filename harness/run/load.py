"""Load a resolved model directory with sentence-transformers 2.7 .. newest, run it, and report what was done.

Version differences are handled here and nowhere else: constructor and ``encode()``/``predict()`` keywords are
filtered against the installed signatures (a setting the installed version lacks is recorded under
``encode.unsupported`` instead of crashing), and a model saved by a newer sentence-transformers than the
installed one is reported as ``incompatible`` (with both versions) instead of crashing deep inside the library.

The per-model settings of a registry or project entry (``ModelSpec``: prompts, normalize_embeddings,
truncate_dim, max_seq_length, batch_size, precision, backend, logits) are applied here: ``load_model`` for
those that act on loading, ``embed_texts`` and ``score_pairs`` for those of the calls themselves. What was
applied is collected in ``LoadedModel.encode``, which the runner records per model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from harness.errors import ModelLoadError, first_line
from harness.config.registry import ModelSpec, weight_files

__all__ = [
    "DTYPES",
    "LOGITS_SUFFIX",
    "Incompatible",
    "LoadedModel",
    "backend_cache_root",
    "backend_missing",
    "check_corpus_fits",
    "embed_texts",
    "load_model",
    "saved_versions",
    "score_pairs",
    "weights_sha256",
]

DTYPES = ("float32", "float16", "bfloat16")
#: model id suffix of a cross-encoder's raw logits entry (``<id>@logits``); per label: ``<id>@label<i>``
LOGITS_SUFFIX = "@logits"
#: importable modules each non-torch backend needs (what sentence-transformers imports for it)
_BACKEND_MODULES = {"onnx": ("onnxruntime", "optimum.onnxruntime"), "openvino": ("openvino", "optimum.intel")}
_BACKEND_INSTALL = {"onnx": "onnxruntime/optimum (sentence-transformers[onnx])",
                    "openvino": "openvino/optimum-intel (sentence-transformers[openvino])"}
#: where a backend keeps its exported files inside a model directory, and how to recognise them
_BACKEND_FILES = {"onnx": ("onnx", "*.onnx"), "openvino": ("openvino", "openvino*.xml")}
#: distributions whose versions decide what an export produces (part of the export cache key)
_BACKEND_DISTS = {
    "onnx": ("torch", "transformers", "sentence-transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime"),
    "openvino": ("torch", "transformers", "sentence-transformers", "optimum", "optimum-intel", "openvino"),
}


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
    #: the settings applied to this model's calls (recorded as the model's ``encode`` metadata), with
    #: ``unsupported``: setting -> why the installed sentence-transformers could not apply it
    encode: Dict[str, Any] = field(default_factory=dict)


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
    """What to cast and put in eval mode: the wrapper when it is a torch module, else the HF model inside
    (None for an ONNX Runtime / OpenVINO backed model of sentence-transformers < 4)."""
    return model if hasattr(model, "parameters") else _hf_model(model)


def _describe(model: Any, kind: str) -> Dict[str, Any]:
    """Facts about the loaded model that move numbers: dtype, attention kernel, padding, max length."""
    hf = _hf_model(model)
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
    hashes = weights_sha256(directory)
    backend = spec.backend or "torch"
    load_dir, export_to = directory, None
    if backend != "torch":
        load_dir, export_to = _prepare_backend(spec, cls, directory, backend, dtype, hashes["weights_sha256"], saved)
        wanted["backend"] = backend
        wanted.pop("model_kwargs", None)  # attention kernels are a torch setting
    kwargs = _supported_kwargs(cls, wanted)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # export chatter ("Saving the exported ONNX model is recommended")
            model = cls(str(load_dir), **kwargs)
    except (OSError, ValueError, EnvironmentError) as err:
        raise ModelLoadError(f"model '{spec.id}': cannot load {directory} ({first_line(err)})") from None
    except (AttributeError, TypeError, KeyError, ImportError) as err:
        # Libraries too old or too new for the saved files fail in these ways; it is a cell state, not a bug.
        raise Incompatible(
            f"sentence-transformers {_installed_st()} cannot load this model: {type(err).__name__}: {first_line(err)}",
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
    encode: Dict[str, Any] = {"backend": backend, "unsupported": {}}
    if spec.max_seq_length is not None:
        _apply_max_length(model, spec, encode)
    info = {**before, "loaded_dtype_before_cast": before["loaded_dtype"], **_describe(model, spec.kind)}
    info.update(saved_versions=saved, **hashes, backend=backend)
    if backend != "torch":
        info.update(_backend_record(model, load_dir, export_to, backend))
    return LoadedModel(spec=spec, directory=directory, found_via=found_via, model=model, info=info, encode=encode)


# -- backends (ONNX Runtime, OpenVINO): exported offline into a cache, never into the model's own directory -----


def backend_missing(backend: str) -> Optional[str]:
    """Why ``backend`` cannot run here (its packages are not installed), or None."""
    for module in _BACKEND_MODULES.get(backend, ()):
        top = module.split(".")[0]
        try:
            found = importlib.util.find_spec(top) is not None and importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return f"backend {backend} needs {_BACKEND_INSTALL[backend]}; '{module}' is not installed"
    return None


def backend_cache_root() -> Path:
    """Where exported backend models live: ``$HARNESS_CACHE_DIR``, else ``$XDG_CACHE_HOME/embedding-harness``."""
    explicit = os.environ.get("HARNESS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "embedding-harness"


def _backend_files(directory: Path, backend: str) -> List[Path]:
    subdir, pattern = _BACKEND_FILES[backend]
    return sorted([*directory.glob(pattern), *(directory / subdir).glob(pattern)])


def _dist_versions(names: Sequence[str]) -> Dict[str, Optional[str]]:
    from importlib import metadata

    out: Dict[str, Optional[str]] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _prepare_backend(spec: ModelSpec, cls: Any, directory: Path, backend: str, dtype: str, weights: str,
                     saved: Dict[str, str]) -> Tuple[Path, Optional[Path]]:
    """The directory to load ``backend`` from, and where to keep the export when one is made now (else None).

    A model that ships its exported files is loaded in place. Otherwise the model directory is copied into
    the cache (keyed by weights and library versions, because the exporter decides the numbers) and
    sentence-transformers exports it there, so nothing is ever written into a fixture or site-packages.
    """
    if "backend" not in inspect.signature(cls.__init__).parameters:
        raise Incompatible(
            f"backend {backend}: {cls.__name__} of sentence-transformers {_installed_st()} has no backend= "
            "(sentence-transformers >= 3.2 for bi-encoders, >= 4.1 for cross-encoders)", saved)
    missing = backend_missing(backend)
    if missing:
        raise Incompatible(missing, saved)
    if dtype != "float32":
        raise Incompatible(f"backend {backend} runs the exported float32 graph; --dtype {dtype} applies to torch only", saved)
    if _backend_files(directory, backend):
        return directory, None
    key = hashlib.sha256(json.dumps([weights, backend, _dist_versions(_BACKEND_DISTS[backend])], sort_keys=True).encode())
    safe_id = "".join(c if c.isalnum() or c in "-_." else "-" for c in spec.id)
    target = backend_cache_root() / "backends" / f"{safe_id}-{backend}-{key.hexdigest()[:16]}"
    if _backend_files(target, backend):
        return target, None
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=str(target.parent)))
        try:
            shutil.copytree(directory, tmp / "model", symlinks=False)
            try:
                os.rename(tmp / "model", target)
            except OSError:  # another process copied it first: same bytes
                if not target.is_dir():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target, target


def _backend_record(model: Any, load_dir: Path, export_to: Optional[Path], backend: str) -> Dict[str, Any]:
    """Keep a fresh export in the cache (so later runs load it), and record which graph ran."""
    if export_to is not None and not _backend_files(export_to, backend):
        subdir = _BACKEND_FILES[backend][0]
        tmp = Path(tempfile.mkdtemp(prefix=".export.", dir=str(export_to.parent)))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.save_pretrained(str(tmp))
            exported = tmp / subdir
            if exported.is_dir() and not (export_to / subdir).exists():
                try:
                    os.rename(exported, export_to / subdir)
                except OSError:  # a concurrent run saved the same export first
                    pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    files = _backend_files(load_dir, backend)
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(load_dir)).encode() + b"\0" + path.read_bytes())
    return {
        "backend_dir": str(load_dir),
        "backend_exported_now": export_to is not None,
        "backend_files": [str(p.relative_to(load_dir)) for p in files],
        "backend_sha256": digest.hexdigest() if files else None,
        "backend_versions": _dist_versions(_BACKEND_DISTS[backend]),
    }


# -- the calls: encode() and predict() with the entry's settings, filtered by the installed signatures -------------


def _named_params(fn: Callable[..., Any]) -> Set[str]:
    """Keyword names ``fn`` declares (``**kwargs`` does not count: ST >= 5 rejects unknown ones)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return set()
    skip = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    return {name for name, p in params.items() if p.kind not in skip}


def _apply_max_length(model: Any, spec: ModelSpec, encode: Dict[str, Any]) -> None:
    """``max_seq_length`` on a bi-encoder, ``max_length`` on a cross-encoder (all versions have a setter)."""
    attr = "max_seq_length" if spec.kind == "bi-encoder" else "max_length"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not hasattr(model, attr):
            encode["unsupported"]["max_seq_length"] = f"{type(model).__name__} has no '{attr}' to set"
            return
        setattr(model, attr, spec.max_seq_length)
        encode["max_seq_length"] = getattr(model, attr)


def _to_numpy(values: Any) -> Any:
    """Tensor or array -> numpy; floats (possibly fp16/bf16 on an accelerator) as float32, integers as they are."""
    import numpy as np

    if hasattr(values, "detach"):
        tensor = values.detach()
        if tensor.is_floating_point():
            tensor = tensor.float()
        values = tensor.cpu().numpy()
    array = np.asarray(values)
    return np.ascontiguousarray(array, dtype=np.float32) if array.dtype.kind == "f" else np.ascontiguousarray(array)


def _quantize_function() -> Optional[Callable[..., Any]]:
    """sentence-transformers' ``quantize_embeddings`` (2.6+; its module moved across versions)."""
    for module in ("sentence_transformers.util.quantization", "sentence_transformers.quantization", "sentence_transformers.util"):
        try:
            found = getattr(importlib.import_module(module), "quantize_embeddings", None)
        except ImportError:
            continue
        if found is not None:
            return found
    return None


def _prompt_names(model: Any) -> Optional[Dict[str, str]]:
    prompts = getattr(model, "prompts", None)
    return dict(prompts) if isinstance(prompts, dict) else None


def _check_prompt_name(spec: ModelSpec, model: Any, name: str) -> None:
    prompts = _prompt_names(model)
    if prompts is not None and name not in prompts:
        known = ", ".join(sorted(prompts)) or "none"
        raise ModelLoadError(f"model '{spec.id}': prompt_name '{name}' is not one of the model's prompts ({known})")


def embed_texts(loaded: LoadedModel, documents: Sequence[str], queries: Sequence[str], *, batch_size: int,
                progress: bool = False) -> Any:
    """Embed documents then queries (two ``encode`` calls, as a search system does) with the entry's settings.

    Returns one ``(len(documents) + len(queries), dim)`` array: float32, or int8/uint8 for a quantized
    ``precision`` (binary/ubinary: packed bits, ``dim / 8`` bytes). ``loaded.encode`` records what was applied.
    """
    import numpy as np

    spec, model, enc = loaded.spec, loaded.model, loaded.encode
    unsupported = enc.setdefault("unsupported", {})
    params = _named_params(model.encode)
    version = _installed_st()

    def supported(key: str) -> bool:
        if key in params:
            return True
        unsupported[key] = f"SentenceTransformer.encode() of sentence-transformers {version} has no '{key}'"
        return False

    size = spec.batch_size or batch_size
    common: Dict[str, Any] = {"batch_size": size, "show_progress_bar": progress, "convert_to_tensor": True}
    enc["batch_size"] = size
    if spec.normalize_embeddings is not None and supported("normalize_embeddings"):
        common["normalize_embeddings"] = enc["normalize_embeddings"] = spec.normalize_embeddings
    if spec.truncate_dim is not None:
        if "truncate_dim" in params:
            common["truncate_dim"] = enc["truncate_dim"] = spec.truncate_dim
        elif hasattr(model, "truncate_dim"):  # sentence-transformers 2.7: a model attribute encode() reads
            model.truncate_dim = enc["truncate_dim"] = spec.truncate_dim
        else:
            supported("truncate_dim")
    precision = spec.precision or "float32"
    quantize = None
    if precision != "float32":
        mode = spec.quantization or "corpus"
        if mode == "encode":
            if supported("precision"):
                common["precision"] = precision
                enc.update(precision=precision, quantization="encode",
                           calibration="int8/uint8 ranges from each encode() call (documents and queries apart)"
                           if precision.endswith("int8") else "sign (no calibration)")
        else:
            quantize = _quantize_function()
            if quantize is None:
                unsupported["precision"] = f"sentence-transformers {version} has no quantize_embeddings (needs >= 2.6)"
            else:
                enc.update(precision=precision, quantization="corpus",
                           calibration="quantize_embeddings(calibration_embeddings=float embeddings of the whole corpus)"
                           if precision.endswith("int8") else "sign (no calibration)")
    default_name = getattr(model, "default_prompt_name", None)
    if default_name:
        enc["default_prompt_name"] = default_name
    parts = []
    for role, texts in (("document", documents), ("query", queries)):
        kwargs = dict(common)
        own = getattr(spec, f"{role}_prompt"), getattr(spec, f"{role}_prompt_name")
        prompt, name = own if own != (None, None) else (spec.prompt, spec.prompt_name)
        if prompt is not None and supported("prompt"):
            kwargs["prompt"] = enc[f"{role}_prompt"] = prompt
        if name is not None and supported("prompt_name"):
            _check_prompt_name(spec, model, name)
            kwargs["prompt_name"] = enc[f"{role}_prompt_name"] = name
            enc[f"{role}_prompt"] = (_prompt_names(model) or {}).get(name)
        if len(texts):
            parts.append(_to_numpy(model.encode(list(texts), **kwargs)))
    vectors = np.concatenate(parts) if len(parts) > 1 else parts[0]
    if quantize is not None:
        floats = np.ascontiguousarray(vectors, dtype=np.float32)
        qkw: Dict[str, Any] = {"precision": precision}
        if precision.endswith("int8") and "calibration_embeddings" in _named_params(quantize):
            qkw["calibration_embeddings"] = floats
        vectors = np.ascontiguousarray(quantize(floats, **qkw))
    return vectors


def check_corpus_fits(specs: Sequence[ModelSpec], corpus: Any) -> None:
    """Refuse, before anything runs, a cross-encoder on a corpus without rerank pairs (nothing to score)."""
    for spec in specs:
        if spec.kind == "cross-encoder" and not corpus.pairs:
            raise ModelLoadError(
                f"model '{spec.id}' is a cross-encoder, but corpus '{corpus.name}' ({corpus.path}) has no rerank "
                "pairs: add a pairs file to its [corpus] table, or leave the model out (--models)"
            )


def _activation(model: Any) -> Any:
    """The activation ``predict`` applies by default (``activation_fn`` in ST >= 4, older names before)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the old names are deprecated aliases in ST >= 4
        for attr in ("activation_fn", "default_activation_function", "activation_fct"):
            found = getattr(model, attr, None)
            if found is not None:
                return found
    return None


def _callable_name(fn: Any) -> Optional[str]:
    if fn is None:
        return None
    return type(fn).__name__ if not inspect.isfunction(fn) else f"{fn.__module__}.{fn.__qualname__}"


def score_pairs(loaded: LoadedModel, pairs: Sequence[Tuple[str, str]], *, batch_size: int,
                progress: bool = False) -> List[Tuple[str, Any, Dict[str, Any]]]:
    """Score every pair with ``predict``; returns ``(id suffix, scores, per-entry settings)`` per results entry.

    One label: ``("", activated scores)`` and, with ``logits = true``, ``("@logits", raw logits)`` from a second
    ``predict`` with an identity activation. ``num_labels > 1``: ``("@label<i>", activated[:, i])`` per label
    (and ``"@label<i>@logits"``), so each label is compared on its own.
    """
    import torch

    spec, model, enc = loaded.spec, loaded.model, loaded.encode
    unsupported = enc.setdefault("unsupported", {})
    params = _named_params(model.predict)
    version = _installed_st()
    size = spec.batch_size or batch_size
    kwargs: Dict[str, Any] = {"batch_size": size, "show_progress_bar": progress, "convert_to_tensor": True}
    enc["batch_size"] = size
    for key in ("prompt", "prompt_name"):
        value = getattr(spec, key)
        if value is None:
            continue
        if key not in params:
            unsupported[key] = f"CrossEncoder.predict() of sentence-transformers {version} has no '{key}'"
            continue
        if key == "prompt_name":
            _check_prompt_name(spec, model, value)
        kwargs[key] = enc[key] = value
    activation = _activation(model)
    enc["activation"] = _callable_name(activation)
    inputs = [tuple(p) for p in pairs]
    activated = _to_numpy(model.predict(inputs, **kwargs))
    raw = None
    if spec.logits:
        name = next((n for n in ("activation_fn", "activation_fct") if n in params), None)
        if name is None:
            unsupported["logits"] = f"CrossEncoder.predict() of sentence-transformers {version} takes no activation function"
        else:
            raw = _to_numpy(model.predict(inputs, **kwargs, **{name: torch.nn.Identity()}))
    if activated.ndim > 1 and activated.shape[1] == 1:
        activated = activated[:, 0]
        raw = raw[:, 0] if raw is not None else None
    if activated.ndim == 1:
        entries = [("", activated, {"output": "activated"})]
        if raw is not None:
            entries.append((LOGITS_SUFFIX, raw, {"output": "logits"}))
        return entries
    labels = _label_names(model, activated.shape[1])
    entries = []
    for i in range(activated.shape[1]):
        entries.append((f"@label{i}", activated[:, i], {"output": "activated", "label": i, "label_name": labels[i]}))
        if raw is not None:
            entries.append((f"@label{i}{LOGITS_SUFFIX}", raw[:, i], {"output": "logits", "label": i, "label_name": labels[i]}))
    return entries


def _label_names(model: Any, count: int) -> List[Optional[str]]:
    config = getattr(_hf_model(model), "config", None) or getattr(model, "config", None)
    id2label = getattr(config, "id2label", None) or {}
    return [id2label.get(i, id2label.get(str(i))) for i in range(count)]


def _needs_remote_code(directory: Path) -> bool:
    """A config with ``auto_map`` or a ``*.py`` file beside the weights means custom code would run."""
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    return bool(config.get("auto_map")) or any(directory.glob("*.py"))

