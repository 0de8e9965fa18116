"""Baselines: results files promoted to references, never overwritten silently, and re-run the way they were made.

A replaced baseline is kept beside the new one with a timestamp. ``rerun_options`` is the one way to repeat a
baseline's run here: ``harness check``, the pytest plugin and ``make_reference`` (a baseline's fp64 reference) use it.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import getpass
import hashlib
import shlex
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, NamedTuple, Optional, Sequence

from harness import paths
from harness.errors import BaselineExists, BaselineMissing, HarnessError, IncompatibleInputs, ModelLoadError
from harness.fsio import atomic_output, output_lock
from harness.results import ResultsFile
from harness.results.meta import Provenance, local_path, path_anchors, portable_metadata
from harness.results.writer import rewrite_metadata

if TYPE_CHECKING:  # the runner pulls in the registry and corpus loaders: imported when a re-run is built
    from harness.config.registry import ModelSpec
    from harness.run.runner import RunOptions

__all__ = [
    "DEFAULT_BASELINE_DIR",
    "BaselineEntry",
    "baseline_path",
    "baselines_dir",
    "locate_baseline",
    "create_baseline",
    "default_check_path",
    "find_baseline",
    "list_baselines",
    "MadeReference",
    "make_reference",
    "provenance",
    "rerun_options",
]

#: The shipped baselines' directory when this module was imported (``paths.default_baseline_dir()`` is current).
DEFAULT_BASELINE_DIR = paths.default_baseline_dir()


def baseline_path(name: str, directory: str | Path | None = None) -> Path:
    """``NAME`` -> ``<dir>/NAME.parquet``; a name that already is a path is used as it is (``paths.baseline_path``)."""
    return paths.baseline_path(name, directory)


def baselines_dir(directory: str | Path | None = None, config: str | Path | None = None) -> Optional[Path]:
    """Where baselines named on the command line live: ``--dir``, else the project's (``baselines`` in its
    ``harness.toml`` / ``[tool.harness]``, relative to that file, default ``baselines`` beside it; ``config`` or
    the working directory's), else None: the shipped ``paths.default_baseline_dir()``."""
    if directory is not None:
        return Path(directory)
    from harness.config.project import baseline_dir

    return baseline_dir(config)


def locate_baseline(name: str, directory: str | Path | None = None, config: str | Path | None = None) -> Path:
    """An existing baseline to read, by name or path: in ``baselines_dir(directory, config)``; a name the project
    does not have is looked up among the shipped baselines too (``harness check`` against ``default-cpu-float32``
    from a project)."""
    where = baselines_dir(directory, config)
    if directory is None and where is not None and not baseline_path(name, where).is_file():
        shipped = baseline_path(name)
        if shipped.is_file():
            return shipped
    return find_baseline(name, where)


def find_baseline(name: str, directory: str | Path | None = None) -> Path:
    """An existing baseline by name or path; a missing one is a one-line ``BaselineMissing`` saying where it
    was looked for (a shipped baseline missing from this install says so, and how to point at a checkout)."""
    path = baseline_path(name, directory)
    if path.is_file():
        return path
    is_name = path.name == f"{name}.parquet"
    if is_name and path.parent.is_dir():  # a name in an existing baseline directory: a near miss, or a new name
        from harness.config.registry import did_you_mean

        known = sorted(p.stem for p in path.parent.glob("*.parquet") if "." not in p.stem)
        listing = "harness baseline list" + (f" --dir {directory}" if directory is not None else "")
        raise BaselineMissing(f"{path}: baseline '{name}' not found{did_you_mean(name, known)} "
                              f"('{listing}' shows the baselines there; 'harness baseline create {name}' makes one)")
    if directory is None and path.parent == paths.default_baseline_dir():
        raise BaselineMissing(paths.missing_message(path, f"baseline '{name}'"))
    raise BaselineMissing(f"{path}: no such baseline")


def default_check_path(root: str | Path | None = None) -> Path:
    """Where a check's candidate results go when ``--out`` is not given (kept, so a drift can be studied)."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path(root or paths.default_check_dir()) / f"check-{stamp}.parquet"


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
    source: str | Path,
    target: str | Path,
    *,
    force: bool = False,
    reason: Optional[str] = None,
    action: str = "create",
) -> Provenance:
    """Promote a results file to a baseline; returns the provenance recorded (its paths local, not portable)."""
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
        history: List[Provenance] = []
        if target.exists():
            old = ResultsFile(target).provenance
            history = list(old.history) + [old.without_history()] if old is not None else []
            previous = _keep_previous(target)
        prov = Provenance(
            name=target.stem,
            action=action if previous else "create",
            created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            created_by=_who(),
            reason=reason or "",
            source_file=str(Path(source).resolve()),
            previous_file=str(previous) if previous else None,
            history=tuple(history),
        )
        try:
            anchors = path_anchors(paths.project_root())
            rewrite_metadata(results, target, portable_metadata({**results.meta, "baseline": prov.to_dict()}, anchors))
        except BaseException:
            if previous is not None:  # the baseline is unchanged: its kept copy would only be clutter
                previous.unlink()
            raise
    return prov  # local paths, for the caller's messages; the file records them portable


def provenance(path: str | Path) -> Dict[str, Any]:
    """What ``harness baseline show`` prints: provenance, corpus, models, environment summary."""
    results = ResultsFile(path)
    prov = results.provenance
    return {
        "path": str(results.path),
        "baseline": prov.to_dict() if prov is not None else {},
        "created_at": results.created_at,
        "harness_version": results.harness_version,
        "schema_version": results.meta.get("schema_version"),
        "corpus": results.corpus_meta.to_dict(),
        "run": results.run.to_dict(),
        "models": {
            model_id: {key: getattr(record, key) for key in ("kind", "status", "weights_sha256", "weight_files",
                                                             "weights_format", "loaded_dtype", "attn_implementation",
                                                             "dim")}
            for model_id, record in results.records.items()
        },
        "fingerprint": results.fingerprint,
    }


@dataclasses.dataclass(frozen=True)
class BaselineEntry:
    """One line of ``harness baseline list``: a current baseline, its kept previous versions and fp64 reference."""

    name: str
    path: str
    status: str = "ok"  # or "unreadable: <why>"
    models: List[str] = dataclasses.field(default_factory=list)
    device: Optional[str] = None
    dtype: Optional[str] = None
    created_at: Optional[str] = None
    previous: List[str] = dataclasses.field(default_factory=list)
    reference: Optional[str] = None


def list_baselines(directory: str | Path | None = None) -> List[BaselineEntry]:
    """Current baselines in a directory (kept previous versions are listed under ``previous``)."""
    files = sorted(Path(directory or paths.default_baseline_dir()).glob("*.parquet"))
    out = []
    for path in (f for f in files if "." not in f.stem):
        reference = f"{path.stem}.reference.parquet"
        entry = BaselineEntry(path.stem, str(path), reference=reference if path.with_name(reference).is_file() else None,
                              previous=[f.name for f in files if f.stem.startswith(path.stem + ".")  # fp64 references apart
                                        and not f.stem.startswith(path.stem + ".reference")])
        try:
            results = ResultsFile(path)
            prov = results.provenance
            entry = dataclasses.replace(entry, models=sorted(results.records), device=results.run.device,
                                        dtype=results.run.dtype,
                                        created_at=(prov.created_at if prov is not None else None) or results.created_at)
        except HarnessError as err:
            entry = dataclasses.replace(entry, status=f"unreadable: {err}")
        out.append(entry)
    return out


# -- re-running a baseline here ------------------------------------------------------------------------------


def _spec_for(results: ResultsFile, model_id: str, known: Dict[str, ModelSpec], registry_path: Path) -> Optional[ModelSpec]:
    """The spec that re-runs ``model_id`` with the settings the baseline recorded (None: nothing to change): a
    model the registry knows where the registry says (paths differ between machines), else from the recorded
    source."""
    from harness.config.registry import ENCODE_KEYS, ModelSpec, base_model_id, entry_label
    from harness.config.schema import validate

    fields = set(ModelSpec.model_fields) - {"id"}
    source = results.records[model_id].source
    recorded = {k: v for k, v in (source or {}).items() if k in fields}
    local = known.get(base_model_id(model_id)) or known.get(model_id)
    if local is not None:
        if source is None or recorded.get("kind") != local.kind:
            return None  # nothing recorded (or another model by that id here): the registry's entry as it is
        recorded = {**local.model_dump(exclude_unset=True), **{k: recorded.get(k) for k in ENCODE_KEYS}, "id": local.id}
    elif not recorded.get("kind") or not recorded.get("source"):
        raise ModelLoadError(
            f"{results.path}: model '{model_id}' is not in the registry {registry_path} "
            "and the baseline does not record where it came from"
        )
    for key in ("path", "cache_dir"):  # recorded relative to the checkout, site-packages or home (portable_path)
        if local is None and isinstance(recorded.get(key), str):
            recorded[key] = local_path(recorded[key], path_anchors(paths.project_root()))
    return validate(ModelSpec, {"id": model_id, **recorded}, source=str(results.path), error=ModelLoadError,
                    at=("models", model_id), label=entry_label)


def _check_corpus(results: ResultsFile, corpus_source: Path) -> None:
    """Refuse, before any model runs, a corpus other than the one the baseline embedded."""
    from harness.config.corpus import load_corpus

    recorded = results.corpus_meta
    if not recorded.sha256:
        return
    here = load_corpus(corpus_source)
    if here.sha256 != recorded.sha256:
        raise IncompatibleInputs(
            f"{results.path}: corpus differs: the baseline embedded {recorded.name} {recorded.sha256[:12]}, the corpus "
            f"here ({corpus_source}) is {here.name} {here.sha256[:12]}; pass the baseline's corpus with --corpus"
        )


def rerun_options(
    path: str | Path,
    out: str | Path,
    *,
    device: Optional[str] = None,
    models: Optional[Sequence[str]] = None,
    config: str | Path | None = None,
    registry: str | Path | None = None,
    corpus: str | Path | None = None,
) -> RunOptions:
    """``RunOptions`` that repeat a baseline's run here: its models with the settings they ran with, and its
    device, dtype, batch size, TF32, threads and attention implementation.

    Inputs are found as ``harness run`` finds them; ``device`` overrides the recorded one. The network stays off
    and remote code refused whatever the baseline was made with: callers opt in with ``dataclasses.replace``.
    """
    from harness.config.project import run_inputs
    from harness.config.registry import Registry
    from harness.run.runner import RunOptions

    results = ResultsFile(path)
    wanted = list(results.records)
    if models:
        unknown = [m for m in models if m not in results.records]
        if unknown:
            raise HarnessError(f"{results.path}: the baseline has no model(s) {', '.join(unknown)} "
                               f"(it has: {', '.join(results.records) or 'none'})")
        wanted = list(dict.fromkeys(models))
    base, corpus_source, _ = run_inputs(config, registry, corpus)
    specs = dict(base.models)
    for model_id in wanted:
        spec = _spec_for(results, model_id, base.models, base.path)
        if spec is not None:
            specs[spec.id] = spec
    _check_corpus(results, corpus_source)
    run = results.run
    return RunOptions(
        out=Path(out),
        corpus_dir=Path(corpus_source),
        registry=Registry(path=base.path, models=specs, sets=dict(base.sets)),
        models=wanted,
        device=device or run.device or "auto",
        dtype=run.dtype or "float32",
        batch_size=run.batch_size or 32,
        tf32=run.tf32_requested,
        threads=run.threads_requested,
        attn_implementation=run.attn_implementation_requested,
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class MadeReference(NamedTuple):
    """What ``make_reference`` wrote (its ``reference`` table, recorded in the file, holds the rest)."""

    path: str
    previous_file: Optional[str]
    duration_s: float
    baseline_duration_s: Optional[float]


def make_reference(baseline: Path, *, force: bool = False, device: str = "cpu", batch_size: Optional[int] = None,
                   command: Optional[str] = None, config: str | Path | None = None, registry: str | Path | None = None,
                   corpus: str | Path | None = None) -> MadeReference:
    """Run ``baseline``'s corpus and models at float64 on ``device`` and store the reference beside it, with a
    ``reference`` table (what it was made for); never over an existing one without ``force``. Two fp32 runs differ
    by rounding and neither is right; an fp64 run of the same weights and texts says which side of a drift lost
    accuracy (``harness.compare.reference`` finds it for a comparison and refuses one that does not fit)."""
    from harness.compare.reference import check_reference, reference_path
    from harness.run.runner import run

    target = reference_path(baseline)
    if target.exists() and not force:
        raise BaselineExists(f"{target}: reference exists; refusing to overwrite (use --force to replace it, "
                             "keeping the old file)")
    base = ResultsFile(baseline)
    with tempfile.TemporaryDirectory(prefix="harness-reference-") as tmp:
        options = rerun_options(baseline, Path(tmp) / "reference.parquet", device=device, config=config,
                                registry=registry, corpus=corpus)
        options = dataclasses.replace(options, dtype="float64", batch_size=batch_size or options.batch_size)
        started = time.perf_counter()
        summary = run(options)
        seconds = round(time.perf_counter() - started, 3)
        if not summary.ok:
            raise HarnessError(f"{target}: not made, a model did not run ({'; '.join(summary.reasons.values())})")
        made = ResultsFile(summary.path, shown=target)
        check_reference(made, base)
        table = {
            "baseline": base.provenance.name if base.provenance is not None and base.provenance.name else baseline.stem,
            "baseline_file": baseline.name,
            "baseline_sha256": _sha256(baseline),
            "corpus_sha256": made.corpus_meta.sha256,
            "models": {m: {k: r.to_dict().get(k) for k in ("weights_sha256", "tokenizer_class", "max_seq_length")}
                       for m, r in made.records.items()},
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": command or shlex.join(["harness", *sys.argv[1:]]),
            "duration_s": seconds,
            "baseline_duration_s": base.run.duration_s,
            "versions": {k: v for k, v in made.fingerprint.items() if k in ("python", "torch_version", "packages")},
        }
        with output_lock(target):
            previous = _keep_previous(target) if target.exists() else None
            anchors = path_anchors(paths.project_root())
            rewrite_metadata(made, target, portable_metadata({**made.meta, "reference": table}, anchors))
    return MadeReference(str(target), str(previous) if previous else None, seconds, base.run.duration_s)
