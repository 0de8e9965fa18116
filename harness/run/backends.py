"""Non-torch backends (ONNX Runtime, OpenVINO): exported offline into a cache, never into the model's directory.
The export decides the numbers, so it is cached per weights and library versions, and what ran is recorded.
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
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from harness import paths
from harness.config.registry import ModelSpec
from harness.fsio import atomic_directory

__all__ = ["BackendUnavailable", "backend_missing", "backend_record", "prepare_backend"]

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


class BackendUnavailable(Exception):
    """This backend cannot run the model here; ``str()`` says why (the loader records it as incompatible)."""


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


def prepare_backend(spec: ModelSpec, cls: Any, directory: Path, backend: str, dtype: str, weights: str,
                    st_version: str) -> Tuple[Path, Optional[Path]]:
    """The directory to load ``backend`` from, and where to keep the export when one is made now (else None).

    A model that ships its exported files is loaded in place; otherwise it is copied into the cache and exported
    there, so nothing is ever written into a fixture or site-packages (``BackendUnavailable`` when it cannot).
    """
    if "backend" not in inspect.signature(cls.__init__).parameters:
        raise BackendUnavailable(
            f"backend {backend}: {cls.__name__} of sentence-transformers {st_version} has no backend= "
            "(sentence-transformers >= 3.2 for bi-encoders, >= 4.1 for cross-encoders)")
    missing = backend_missing(backend)
    if missing:
        raise BackendUnavailable(missing)
    if dtype != "float32":
        raise BackendUnavailable(f"backend {backend} runs the exported float32 graph; --dtype {dtype} applies to torch only")
    if _backend_files(directory, backend):
        return directory, None
    key = hashlib.sha256(json.dumps([weights, backend, _dist_versions(_BACKEND_DISTS[backend])], sort_keys=True).encode())
    safe_id = "".join(c if c.isalnum() or c in "-_." else "-" for c in spec.id)
    target = paths.cache_dir() / "backends" / f"{safe_id}-{backend}-{key.hexdigest()[:16]}"
    if _backend_files(target, backend):
        return target, None
    if not target.is_dir():
        with atomic_directory(target) as tmp:  # another process copying it first is fine: same bytes
            shutil.copytree(directory, tmp, symlinks=False, dirs_exist_ok=True)
    return target, target


def backend_record(model: Any, load_dir: Path, export_to: Optional[Path], backend: str) -> Dict[str, Any]:
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
                    os.rename(exported, export_to / subdir)  # atomic: the export appears whole or not at all
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
