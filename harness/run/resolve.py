"""Where a registry model's files are on this machine: a path, an installed package, the hub cache (the network
only when allowed), or a derived model built from its base. Part of running: the registry only describes.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import List, Optional, Tuple

from harness.config.registry import ModelSpec, Registry, weight_files
from harness.config.registry import _guess_kind as guess_kind
from harness.errors import ModelLoadError
from harness.run.derive import DERIVED_SEED, build_derived_cross_encoder

__all__ = ["resolve_model_dir", "with_hub_ids"]


def _package_dir(spec: ModelSpec) -> Optional[Path]:
    found = importlib.util.find_spec(spec.package) if spec.package else None
    if found is None or not found.submodule_search_locations:
        return None
    return Path(list(found.submodule_search_locations)[0]) / spec.subdir


def _hub_snapshot(spec: ModelSpec, allow_network: bool) -> Tuple[Path, str]:
    """Resolve a hub id to a local snapshot directory: cache first, the network only if allowed."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ModelLoadError(f"model '{spec.id}': huggingface_hub is not installed, cannot resolve '{spec.hub_id}'") from None
    cache = spec.cache_dir or _default_hub_cache()
    try:
        return Path(snapshot_download(spec.hub_id, revision=spec.revision, cache_dir=cache, local_files_only=True)), "cache"
    except Exception as err:  # noqa: BLE001 - hub raises several types for "not cached"
        if not allow_network:
            raise ModelLoadError(
                f"model '{spec.id}': hub id '{spec.hub_id}' is not in the local cache {cache} "
                f"({type(err).__name__}); pass --allow-network to download it, or point HF_HOME (or HF_HUB_CACHE) "
                f"at the cache that holds it, or give it a registry entry (source = \"hub\", cache_dir = ...)"
            ) from None
    try:
        return Path(snapshot_download(spec.hub_id, revision=spec.revision, cache_dir=cache)), "network"
    except Exception as err:  # noqa: BLE001
        raise ModelLoadError(f"model '{spec.id}': download of '{spec.hub_id}' failed ({type(err).__name__}: {err})") from None


#: ``org/name``: what a hub id looks like on the command line (a URL has a ':', a path that exists is a path)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def with_hub_ids(registry: Registry, names: Optional[List[str]],
                 allow_network: bool = False) -> Tuple[Registry, Optional[List[str]]]:
    """``--models org/name``: a hub id the registry does not know. An entry with that ``hub_id`` runs under its
    own id; any other is resolved offline-first (the network only with ``allow_network``) and entered under it."""
    if not names:
        return registry, names
    models, chosen = dict(registry.models), []
    for name in names:
        if name in models or name in registry.sets or "@" in name or Path(name).exists() or not _HUB_ID.match(name):
            chosen.append(name)
            continue
        known = next((spec.id for spec in models.values() if spec.hub_id == name), None)
        if known is None:
            spec = ModelSpec(id=name, kind="bi-encoder", source="hub", hub_id=name)
            try:
                directory, _ = _hub_snapshot(spec, allow_network)
            except ModelLoadError as err:
                raise ModelLoadError(f"'{name}' is not a model id, set or directory here, and as a "
                                     f"{str(err).split(': ', 1)[1]}") from None
            known = name
            models[name] = spec.model_copy(update={"kind": guess_kind(directory)})
        chosen.append(known)
    return Registry(path=registry.path, models=models, sets=dict(registry.sets)), chosen


def _default_hub_cache() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except (ImportError, AttributeError):  # pragma: no cover - very old huggingface_hub
        return os.path.expanduser("~/.cache/huggingface/hub")


def resolve_model_dir(spec: ModelSpec, allow_network: bool = False, registry: Optional[Registry] = None) -> Tuple[Path, str]:
    """The local directory holding the model's files, and how it was found (path/package/cache/network/derived)."""
    if spec.source == "derived":
        if registry is None or spec.base not in registry.models:
            raise ModelLoadError(f"model '{spec.id}': base model '{spec.base}' is not in the registry")
        base_dir, _ = resolve_model_dir(registry.models[spec.base], allow_network, registry)
        out = build_derived_cross_encoder(base_dir, Path(spec.path or ""), spec.seed or DERIVED_SEED)
        return out, "derived"
    if spec.source == "path":
        directory, how = Path(spec.path or ""), "path"
    elif spec.source == "package":
        package_dir = _package_dir(spec)
        if package_dir is None:
            if not spec.hub_id:
                raise ModelLoadError(f"model '{spec.id}': package '{spec.package}' is not installed")
            try:
                return _hub_snapshot(spec, allow_network)
            except ModelLoadError as err:
                raise ModelLoadError(
                    f"model '{spec.id}': package '{spec.package}' is not installed "
                    f"(pip install {spec.package.replace('_', '-')}), and {str(err).split(': ', 1)[1]}"  # type: ignore[union-attr]  # set for source "package"
                ) from None
        directory, how = package_dir, "package"
    else:
        directory, how = _hub_snapshot(spec, allow_network)
    if not directory.is_dir():
        raise ModelLoadError(f"model '{spec.id}': directory {directory} does not exist")
    if not weight_files(directory):
        raise ModelLoadError(f"model '{spec.id}': {directory} holds no weights (no *.safetensors or *.bin file)")
    return directory, how
