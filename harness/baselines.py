"""Baselines: results files promoted to references, never overwritten silently.

A baseline is a results file plus provenance (who, when, why, from which file) in its metadata. Creating one
refuses to replace an existing file unless forced; a forced create or an update first keeps the previous file
beside it with a timestamp, then writes the new one atomically.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import shutil
import socket
from pathlib import Path
from typing import Any, Dict, List, Optional

from harness import paths
from harness.errors import BaselineExists, BaselineMissing, HarnessError
from harness.fsio import atomic_output, output_lock
from harness.results.reader import ResultsFile
from harness.results.writer import rewrite_metadata

__all__ = ["DEFAULT_BASELINE_DIR", "baseline_path", "create_baseline", "list_baselines", "provenance", "rerun_options"]

DEFAULT_BASELINE_DIR = paths.default_baseline_dir()


def baseline_path(name: str, directory: "str | Path | None" = None) -> Path:
    """``NAME`` -> ``<dir>/NAME.parquet``; a name that already is a path is used as it is (``paths.baseline_path``)."""
    return paths.baseline_path(name, directory or DEFAULT_BASELINE_DIR)


def _timestamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _keep_previous(target: Path) -> Path:
    """Copy the current baseline aside (``NAME.<timestamp>.parquet``, atomically) so nothing is ever lost."""
    kept = target.with_name(f"{target.stem}.{_timestamp()}{target.suffix}")
    with atomic_output(kept) as tmp:
        shutil.copy2(target, tmp)
    return kept


def create_baseline(
    source: "str | Path",
    target: "str | Path",
    *,
    force: bool = False,
    reason: Optional[str] = None,
    action: str = "create",
) -> Dict[str, Any]:
    """Promote a results file to a baseline; returns the provenance recorded.

    Raises:
        BaselineExists: ``target`` exists and neither ``force`` nor an update was asked for.
        BaselineMissing: an update of a baseline that does not exist.
    """
    results = ResultsFile(source)  # validates the source before anything is touched
    target = Path(target)
    previous: Optional[Path] = None
    if action == "update":
        if not target.exists():
            raise BaselineMissing(f"{target}: no baseline to update (use 'harness baseline create')")
        if not reason:
            raise HarnessError(f"{target}: 'baseline update' needs --reason")
    elif target.exists() and not force:
        raise BaselineExists(f"{target}: baseline exists; refusing to overwrite (use --force to replace it, keeping the old file)")
    with output_lock(target):  # one writer of this baseline at a time, from keeping the old file to the rename
        history: List[Dict[str, Any]] = []
        if target.exists():
            old = ResultsFile(target)
            old_prov = old.meta.get("baseline", {})
            history = list(old_prov.get("history", [])) + ([_strip(old_prov)] if old_prov else [])
            previous = _keep_previous(target)
        prov = {
            "name": target.stem,
            "action": action if previous else "create",
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "created_by": _who(),
            "reason": reason or "",
            "source_file": str(Path(source).resolve()),
            "previous_file": str(previous) if previous else None,
            "history": history,
        }
        try:
            rewrite_metadata(results, target, {**results.meta, "baseline": prov})
        except BaseException:
            if previous is not None:  # the baseline is unchanged: its kept copy would only be clutter
                previous.unlink()
            raise
    return prov


def _strip(prov: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in prov.items() if k != "history"}


def provenance(path: "str | Path") -> Dict[str, Any]:
    """What ``harness baseline show`` prints: provenance, corpus, models, environment summary."""
    results = ResultsFile(path)
    return {
        "path": str(results.path),
        "baseline": results.meta.get("baseline", {}),
        "created_at": results.meta.get("created_at"),
        "harness_version": results.meta.get("harness_version"),
        "schema_version": results.meta.get("schema_version"),
        "corpus": results.corpus,
        "run": results.meta.get("run", {}),
        "models": {
            k: {key: v.get(key) for key in ("kind", "status", "weights_sha256", "loaded_dtype", "attn_implementation", "dim")}
            for k, v in results.models.items()
        },
        "fingerprint": results.fingerprint,
    }


def list_baselines(directory: "str | Path | None" = None) -> List[Dict[str, Any]]:
    """Current baselines in a directory (kept previous versions are listed under ``previous``)."""
    root = Path(directory or DEFAULT_BASELINE_DIR)
    files = sorted(root.glob("*.parquet"))
    current = [f for f in files if "." not in f.stem]
    out = []
    for path in current:
        try:
            results = ResultsFile(path)
            status = "ok"
            meta = results.meta
        except HarnessError as err:
            status, meta = f"unreadable: {err}", {}
        out.append({
            "name": path.stem,
            "path": str(path),
            "status": status,
            "models": sorted(meta.get("models", {})),
            "device": meta.get("run", {}).get("device"),
            "dtype": meta.get("run", {}).get("dtype"),
            "created_at": meta.get("baseline", {}).get("created_at") or meta.get("created_at"),
            "previous": [f.name for f in files if f.stem.startswith(path.stem + ".")],
        })
    return out


def rerun_options(
    path: "str | Path",
    out: "str | Path",
    *,
    device: Optional[str] = None,
    registry: Any = None,
    corpus_dir: "str | Path | None" = None,
) -> Any:
    """``RunOptions`` that repeat a baseline's run here: its models, device, dtype, batch size and flags.

    Models are looked up in the registry by id; one the registry does not know is rebuilt from the source
    the baseline recorded for it. ``device`` overrides the recorded device (e.g. ``cuda`` against a CPU
    baseline). The network stays off and remote code stays refused, whatever the baseline was made with.
    """
    from harness.config.corpus import DEFAULT_CORPUS_DIR
    from harness.errors import ModelLoadError
    from harness.config.registry import ModelSpec, Registry, load_registry
    from harness.run.runner import RunOptions

    results = ResultsFile(path)
    registry = registry if registry is not None else load_registry()
    known = dict(registry.models)
    fields = set(ModelSpec.__dataclass_fields__)
    for model_id, info in results.models.items():
        if model_id in known:
            continue
        source = {k: v for k, v in (info.get("source") or {}).items() if k in fields and k != "id"}
        if not source.get("kind") or not source.get("source"):
            raise ModelLoadError(
                f"{results.path}: model '{model_id}' is not in the registry {registry.path} "
                "and the baseline does not record where it came from"
            )
        known[model_id] = ModelSpec(id=model_id, **source)
    run = results.meta.get("run", {})
    return RunOptions(
        out=Path(out),
        corpus_dir=Path(corpus_dir) if corpus_dir else DEFAULT_CORPUS_DIR,
        registry=Registry(path=registry.path, models=known, sets=dict(registry.sets)),
        models=list(results.models),
        device=device or run.get("device") or "auto",
        dtype=run.get("dtype") or "float32",
        batch_size=int(run.get("batch_size") or 32),
        tf32=run.get("tf32_requested"),
        threads=run.get("threads_requested"),
        attn_implementation=run.get("attn_implementation_requested"),
    )
