"""The calls: ``encode()`` and ``predict()`` with a registry entry's settings, filtered by the installed signatures.

A setting the installed sentence-transformers lacks is recorded under ``encode.unsupported`` instead of
crashing; what was applied is collected in ``LoadedModel.encode``.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from harness.config.registry import ModelSpec
from harness.errors import ModelLoadError
from harness.run.load import EntryOutput, LoadedModel, hf_model, installed_version

__all__ = ["LOGITS_SUFFIX", "check_corpus_fits", "count_tokens", "embed_texts", "score_pairs"]

#: model id suffix of a cross-encoder's raw logits entry (``<id>@logits``); per label: ``<id>@label<i>``
LOGITS_SUFFIX = "@logits"


def _named_params(fn: Callable[..., Any]) -> Set[str]:
    """Keyword names ``fn`` declares (``**kwargs`` does not count: ST >= 5 rejects unknown ones)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return set()
    skip = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    return {name for name, p in params.items() if p.kind not in skip}



def _to_numpy(values: Any) -> Any:
    """Tensor or array -> numpy; floats (possibly fp16/bf16 on an accelerator) as float32, float64 (an fp64
    reference) as it is, integers as they are."""
    import numpy as np

    if hasattr(values, "detach"):
        tensor = values.detach()
        if tensor.is_floating_point() and tensor.element_size() < 8:
            tensor = tensor.float()
        values = tensor.cpu().numpy()
    array = np.asarray(values)
    if array.dtype.kind == "f":
        return np.ascontiguousarray(array, dtype=np.float64 if array.dtype == np.float64 else np.float32)
    return np.ascontiguousarray(array)


def count_tokens(loaded: LoadedModel, inputs: Sequence[Any], prompt: Optional[str] = None) -> Optional[Tuple[Any, Any]]:
    """``(token counts, truncated flags)`` of texts (or ``(query, passage)`` pairs) as the model's tokenizer splits
    them without truncation (``prompt`` prepended, special tokens included), a flag where a count exceeds the
    max length the model cuts at; None where the model has no tokenizer or no max length to say it."""
    import numpy as np

    tokenizer, limit = getattr(loaded.model, "tokenizer", None), loaded.info.max_seq_length
    if not callable(tokenizer) or not isinstance(limit, int):
        return None
    counts: Any = np.zeros(len(inputs), dtype=np.int32)
    for start in range(0, len(inputs), 1024):  # bounded: one block's token ids at a time
        part = list(inputs[start : start + 1024])
        texts = [[p[0] for p in part], [p[1] for p in part]] if part and isinstance(part[0], tuple) else [
            [(prompt or "") + t for t in part]]
        try:
            ids = tokenizer(*texts, truncation=False, verbose=False)["input_ids"] if part else []
        except Exception:  # noqa: BLE001 - a tokenizer that cannot be called this way: counts are optional
            return None
        counts[start : start + len(part)] = [len(i) for i in ids]
    return counts, counts > limit


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
    """Embed documents then queries (two ``encode`` calls, as a search system does) with the entry's settings:
    float32, or int8/uint8 for a quantized ``precision`` (binary: packed bits)."""
    import numpy as np

    spec, model, enc = loaded.spec, loaded.model, loaded.encode
    unsupported = enc.unsupported
    params = _named_params(model.encode)
    version = installed_version()

    def supported(key: str) -> bool:
        if key in params:
            return True
        unsupported[key] = f"SentenceTransformer.encode() of sentence-transformers {version} has no '{key}'"
        return False

    size = spec.batch_size or batch_size
    common: Dict[str, Any] = {"batch_size": size, "show_progress_bar": progress, "convert_to_tensor": True}
    enc.batch_size = size
    if spec.normalize_embeddings is not None and supported("normalize_embeddings"):
        common["normalize_embeddings"] = enc.normalize_embeddings = spec.normalize_embeddings
    if spec.truncate_dim is not None:
        if "truncate_dim" in params:
            common["truncate_dim"] = enc.truncate_dim = spec.truncate_dim
        elif hasattr(model, "truncate_dim"):  # sentence-transformers 2.7: a model attribute encode() reads
            model.truncate_dim = enc.truncate_dim = spec.truncate_dim
        else:
            supported("truncate_dim")
    precision = spec.precision or "float32"
    quantize = None
    if precision != "float32":
        mode = spec.quantization or "corpus"
        if mode == "encode":
            if supported("precision"):
                common["precision"] = enc.precision = precision
                enc.quantization = "encode"
                enc.calibration = ("int8/uint8 ranges from each encode() call (documents and queries apart)"
                                   if precision.endswith("int8") else "sign (no calibration)")
        else:
            quantize = _quantize_function()
            if quantize is None:
                unsupported["precision"] = f"sentence-transformers {version} has no quantize_embeddings (needs >= 2.6)"
            else:
                enc.precision, enc.quantization = precision, "corpus"
                enc.calibration = ("quantize_embeddings(calibration_embeddings=float embeddings of the whole corpus)"
                                   if precision.endswith("int8") else "sign (no calibration)")
    enc.default_prompt_name = getattr(model, "default_prompt_name", None) or None
    parts = []
    for role, texts in (("document", documents), ("query", queries)):
        kwargs = dict(common)
        own = getattr(spec, f"{role}_prompt"), getattr(spec, f"{role}_prompt_name")
        prompt, name = own if own != (None, None) else (spec.prompt, spec.prompt_name)
        if prompt is not None and supported("prompt"):
            kwargs["prompt"] = prompt
            setattr(enc, f"{role}_prompt", prompt)  # document_prompt, query_prompt
        if name is not None and supported("prompt_name"):
            _check_prompt_name(spec, model, name)
            kwargs["prompt_name"] = name
            setattr(enc, f"{role}_prompt_name", name)
            setattr(enc, f"{role}_prompt", (_prompt_names(model) or {}).get(name))
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
                progress: bool = False) -> List[Tuple[str, Any, EntryOutput]]:
    """Score every pair with ``predict``: ``(id suffix, scores, settings)`` per results entry, so ``@logits``
    and each ``@label<i>`` of a multi-label model is compared on its own."""
    import torch

    spec, model, enc = loaded.spec, loaded.model, loaded.encode
    unsupported = enc.unsupported
    params = _named_params(model.predict)
    version = installed_version()
    size = spec.batch_size or batch_size
    kwargs: Dict[str, Any] = {"batch_size": size, "show_progress_bar": progress, "convert_to_tensor": True}
    enc.batch_size = size
    for key in ("prompt", "prompt_name"):
        value = getattr(spec, key)
        if value is None:
            continue
        if key not in params:
            unsupported[key] = f"CrossEncoder.predict() of sentence-transformers {version} has no '{key}'"
            continue
        if key == "prompt_name":
            _check_prompt_name(spec, model, value)
        kwargs[key] = value
        setattr(enc, key, value)  # prompt, prompt_name
    enc.activation = _callable_name(_activation(model))
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
        entries = [("", activated, EntryOutput("activated"))]
        if raw is not None:
            entries.append((LOGITS_SUFFIX, raw, EntryOutput("logits")))
        return entries
    labels = _label_names(model, activated.shape[1])
    entries = []
    for i in range(activated.shape[1]):
        entries.append((f"@label{i}", activated[:, i], EntryOutput("activated", i, labels[i])))
        if raw is not None:
            entries.append((f"@label{i}{LOGITS_SUFFIX}", raw[:, i], EntryOutput("logits", i, labels[i])))
    return entries


def _label_names(model: Any, count: int) -> List[Optional[str]]:
    config = getattr(hf_model(model), "config", None) or getattr(model, "config", None)
    id2label = getattr(config, "id2label", None) or {}
    return [id2label.get(i, id2label.get(str(i))) for i in range(count)]
