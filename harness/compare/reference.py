"""Which fp64 reference a comparison measures accuracy against, and whether it fits: ``NAME.reference.parquet``
beside the baseline unless one is given, refused (``IncompatibleInputs``, exit 2) when it is not an fp64 run of the
baseline's corpus, models, weights, tokenization and truncation. ``harness.reference`` makes one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from harness.errors import IncompatibleInputs
from harness.results import ResultsFile

__all__ = ["NO_REFERENCE", "check_reference", "reference_for", "reference_path"]

#: the note of a comparison without a reference
NO_REFERENCE = "no fp64 reference: accuracy not measured (harness baseline reference NAME makes one)"

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


def reference_for(base: ResultsFile, given: Union[ResultsFile, str, os.PathLike[str], None] = None) -> Optional[ResultsFile]:
    """The reference to use: ``given``, else ``NAME.reference.parquet`` beside the baseline, else None; refused
    (``IncompatibleInputs``, exit 2) when it is not an fp64 run of the baseline's corpus and models."""
    if given is None:
        beside = reference_path(base.path)
        if not beside.is_file():
            return None
        given = beside
    ref = given if isinstance(given, ResultsFile) else ResultsFile(given)
    check_reference(ref, base)
    return ref
