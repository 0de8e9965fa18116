"""Ad hoc served models: ``harness run --model http://HOST:PORT[/PREFIX]/MODEL --api infinity``.

The last path segment is the model name (and results id): a registry model keeps its entry's kind and source,
so ``compare`` judges it as that model. A URL is checked before it is split and shown without credentials or
query. Stdlib only.
"""

from __future__ import annotations

from dataclasses import replace
from typing import List, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

from harness.config.http import shown_url, url_problem
from harness.config.registry import Registry, parse_entry
from harness.errors import ModelLoadError

__all__ = ["is_url", "with_served_urls", "with_timeout"]


def is_url(name: str) -> bool:
    return name.startswith(("http://", "https://"))


def _split(url: str) -> Tuple[str, str]:
    problem = url_problem(url)
    if problem:
        raise ModelLoadError(f"--model {shown_url(url)}: {problem}")
    parts = urlsplit(url)
    base, _, model = parts.path.rstrip("/").rpartition("/")
    if not model or not parts.hostname:
        raise ModelLoadError(f"--model {shown_url(url)}: a served model is "
                             "http://HOST:PORT[/PREFIX]/MODEL (the last segment names the model)")
    return urlunsplit(parts._replace(path=base)), model


def with_served_urls(registry: Registry, names: Optional[List[str]], api: str) -> Tuple[Registry, Optional[List[str]]]:
    """The registry with one served entry per URL among ``names``, and the names with each URL replaced by its id."""
    if not names or not any(is_url(n) for n in names):
        return registry, names
    models, out = dict(registry.models), []
    for name in names:
        if not is_url(name):
            out.append(name)
            continue
        url, model = _split(name)
        known = registry.models.get(model)
        kind = known.kind if known else ("cross-encoder" if api == "cohere" else "bi-encoder")
        entry = {"kind": kind, "backend": "http", "http": {"url": url, "api": api, "model": model}}
        if known is not None and known.source != "served":
            keep = {k: v for k, v in known.__dict__.items() if k in ("source", "path", "package", "subdir", "hub_id",
                                                                     "revision", "note") and v not in (None, "")}
            entry = {**keep, **entry}
        models[model] = parse_entry(registry.path, model, entry)
        out.append(model)
    return replace(registry, models=models), out


def with_timeout(registry: Registry, timeout_s: Optional[float]) -> Registry:
    """The registry with ``http.timeout_s`` of every served entry set to ``--timeout`` (None: unchanged). The
    per-run deadline follows it unless the entry sets ``run_timeout_s`` (``HttpSettings.deadline_s``)."""
    if timeout_s is None:
        return registry
    models = {mid: spec.model_copy(update={"http": {**spec.http, "timeout_s": timeout_s}})
              if spec.backend == "http" and spec.http else spec for mid, spec in registry.models.items()}
    return replace(registry, models=models)
