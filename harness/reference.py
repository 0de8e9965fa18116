"""fp64 references: a baseline's corpus and models run once at float64 on a CPU, stored beside the baseline.

Two fp32 runs differ by rounding and neither is right; an fp64 run of the same weights and texts says which side
of a drift lost accuracy. ``check_reference`` refuses a reference that does not fit a results file.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple, Optional, Union

from harness import paths
from harness.errors import BaselineExists, HarnessError, IncompatibleInputs
from harness.fsio import output_lock
from harness.results import ResultsFile
from harness.results.meta import path_anchors, portable_metadata
from harness.results.writer import rewrite_metadata

__all__ = ["MadeReference", "check_reference", "make_reference", "reference_path"]

#: what must be equal between a reference and a results file, per model: weights, tokenization, truncation
_RECORD_KEYS = ("weights_sha256", "tokenizer_class", "max_seq_length", "padding_side")
_ENCODE_KEYS = ("max_seq_length", "truncate_dim", "normalize_embeddings", "prompt", "prompt_name", "document_prompt",
                "query_prompt", "default_prompt_name", "activation", "output", "label")

Source = Union[ResultsFile, str, Path]


def reference_path(baseline: Union[str, Path]) -> Path:
    """``DIR/NAME.parquet`` -> ``DIR/NAME.reference.parquet``."""
    path = Path(baseline)
    return path.with_name(f"{path.stem}.reference{path.suffix or '.parquet'}")


def _open(source: Source) -> ResultsFile:
    return source if isinstance(source, ResultsFile) else ResultsFile(source)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_reference(reference: Source, results: Source) -> None:
    """Refuse (``IncompatibleInputs``, one line naming the reference file and the mismatch) a reference that is
    not an fp64 run of ``results``' corpus, models, weights, tokenization and truncation."""
    ref, res = _open(reference), _open(results)
    where = f"{ref.path}: reference for {res.path}"
    if ref.run.dtype != "float64":
        raise IncompatibleInputs(f"{ref.path}: not an fp64 reference (its run's dtype is {ref.run.dtype or 'not recorded'})")
    if ref.corpus_meta.sha256 != res.corpus_meta.sha256:
        raise IncompatibleInputs(f"{where}: corpus differs ({ref.corpus_meta.name} {str(ref.corpus_meta.sha256)[:12]} "
                                 f"vs {res.corpus_meta.name} {str(res.corpus_meta.sha256)[:12]})")
    for model_id, record in res.records.items():
        if str(record.status) != "ok":
            continue
        if model_id not in ref.records:
            raise IncompatibleInputs(f"{where}: has no model '{model_id}' (it has: {', '.join(ref.records) or 'none'})")
        mine, theirs = ref.records[model_id].to_dict(), record.to_dict()
        pairs = [(k, mine.get(k), theirs.get(k)) for k in _RECORD_KEYS]
        pairs += [(f"encode.{k}", (mine.get("encode") or {}).get(k), (theirs.get("encode") or {}).get(k)) for k in _ENCODE_KEYS]
        for key, a, b in pairs:
            if a != b and ("prompt" in key or None not in (a, b)):  # None: not recorded by an older harness
                what = ("weights" if key == "weights_sha256" else "truncation" if "max_seq" in key
                        else "tokenization" if key in _RECORD_KEYS or "prompt" in key else "settings")
                raise IncompatibleInputs(f"{where}: model '{model_id}': {what} differs ({key} {a!r} vs {b!r})")


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
    ``reference`` table (what it was made for); never over an existing one without ``force``."""
    from harness.baselines import _keep_previous, rerun_options
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
