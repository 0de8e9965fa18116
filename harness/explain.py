"""What differs between two runs' environments, which factor each difference belongs to, and the drift each factor
is known to cause (``harness/data/drift_magnitudes.toml``): one table for the comparator's environment diff, every
report's grouping and ``harness explain`` (a 1e-4 drift cannot come from a change known to cause 3e-7). It reads
fingerprints, never vectors: the comparator and the reports both use it, neither owns it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from harness import paths
from harness.config.tomlfile import tomllib
from harness.hardware import env_group
from harness.verdict import EnvChange

if TYPE_CHECKING:
    from harness.results import ResultsFile

__all__ = ["FACTOR_GROUPS", "GROUP_ORDER", "MAGNITUDES_PATH", "UNORDERED_KEYS", "Factor", "env_changes",
           "KnownDrift", "environment_changes", "explain", "factor_of", "factor_of_key", "group_changes", "group_of",
           "load_magnitudes", "same_setting"]

MAGNITUDES_PATH = paths.DRIFT_MAGNITUDES

#: flattened fingerprint key prefix -> factor name (first match wins; more specific keys first)
_KEY_FACTORS: Tuple[Tuple[str, str], ...] = tuple((prefix, factor) for factor, prefixes in (
    ("sentence-transformers", "packages.sentence-transformers"), ("transformers", "packages.transformers"),
    ("torch", "packages.torch torch_version"), ("tokenizers", "packages.tokenizers"), ("numpy", "packages.numpy"),
    ("packages", "packages."), ("python", "python_implementation python"),
    ("device", "device gpu_ cuda_ torch_cuda cudnn"), ("dtype", "dtype"), ("tf32", "tf32 float32_matmul_precision"),
    ("threads", "num_threads num_interop_threads"), ("kernels", "torch_build.cpu_capability cpu.isa"),
    ("blas", "torch_build blas_runtime"), ("cpu", "cpu. cpu_model cpu_count"), ("batch_size", "run.batch_size"),
    ("server", "served."),
) for prefix in prefixes.split())
_MODEL_FACTORS = {
    "loaded_dtype": "dtype",
    "attn_implementation": "attention",
    "weights_sha256": "weights",
    "max_seq_length": "max_seq_length",
    "padding_side": "padding_side",
    "saved_versions": "weights",
    "backend": "server",
}
#: fingerprint keys that differ between any two machines without meaning anything for the numbers
_VOLATILE_KEYS = ("executable", "env.HF_HUB_OFFLINE", "env.TRANSFORMERS_OFFLINE")
_ENV_GROUP_FACTORS = {"kernels": "kernels", "threads": "threads", "cuda": "device", "device": "device"}

#: factor -> the group a report shows it under
FACTOR_GROUPS: Dict[str, str] = {
    **{f: "packages" for f in ("torch", "transformers", "sentence-transformers", "tokenizers", "numpy", "python", "packages")},
    **{f: "device and precision" for f in ("device", "dtype", "dtype_bf16", "tf32", "attention")},
    **{f: "hardware and kernels" for f in ("cpu", "kernels", "blas", "threads")},
    **{f: "run settings" for f in ("batch_size", "max_seq_length", "padding_side")},
    "weights": "model files",
    "server": "serving",
}
GROUP_ORDER = ("packages", "serving", "device and precision", "hardware and kernels", "run settings", "model files")


#: fingerprint keys whose value is a list in no meaningful order (BLAS libraries in load order): compared as sets,
#: so that files written before the fingerprint sorted them stay comparable
UNORDERED_KEYS = ("blas_runtime",)


def _canonical(value: Any) -> Any:
    if not isinstance(value, list):
        return value
    return sorted(value, key=lambda entry: json.dumps(entry, sort_keys=True, default=str))


def same_setting(key: str, baseline: Any, candidate: Any) -> bool:
    """Whether a fingerprint entry is the same on both sides (order-insensitive for ``UNORDERED_KEYS``)."""
    if key in UNORDERED_KEYS:
        return _canonical(baseline) == _canonical(candidate)
    return baseline == candidate


def _flatten(data: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    flat: Dict[str, Any] = {}
    for key, value in data.items():
        flat.update(_flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return flat


def env_changes(baseline: Dict[str, Any], candidate: Dict[str, Any]) -> List[EnvChange]:
    """Fingerprint entries that differ (package versions, device, dtype, flags, threads, ...)."""
    fb, fc = _flatten(baseline), _flatten(candidate)
    return [EnvChange(k, fb.get(k), fc.get(k)) for k in sorted({*fb, *fc})
            if not same_setting(k, fb.get(k), fc.get(k)) and k not in _VOLATILE_KEYS]


def environment_changes(base: ResultsFile, cand: ResultsFile, models: Optional[Sequence[str]] = None,
                        batch_size: bool = False) -> List[EnvChange]:
    """What differs between two runs: fingerprints and the facts of ``models`` (None: each side's own), with the
    batch size if asked; less what a run of served models only (``device = "http"``) cannot have: it loaded
    nothing, what its servers did is under ``served``."""
    def environment(results: ResultsFile) -> Dict[str, Any]:
        records = {m: results.records.get(m) for m in (results.records if models is None else models)}
        return {**results.fingerprint, **({"run": {"batch_size": results.run.batch_size}} if batch_size else {}),
                "models": {m: {k: getattr(r, k) for k in _MODEL_FACTORS if r is not None and getattr(r, k) is not None}
                           for m, r in records.items()}}

    served = [i for i, f in enumerate((base, cand)) if str(f.fingerprint.get("device_type")) == "http"]
    return [c for c in env_changes(environment(base), environment(cand)) if not served or c.key.startswith("served.")
            or c.key in ("device", "device_type") or not any((c.baseline, c.candidate)[i] is None for i in served)]


def factor_of_key(key: str, baseline: Any = None, candidate: Any = None) -> Optional[str]:
    """The factor of one flattened fingerprint key (None for entries that do not move numbers, and for an
    unordered entry whose two sides hold the same items in another order: no change at all)."""
    if key in UNORDERED_KEYS and baseline is not None and candidate is not None and same_setting(key, baseline, candidate):
        return None
    bf16 = "bfloat16" in (str(baseline), str(candidate))
    if key.startswith("models."):
        leaf = key.split(".")[2] if key.count(".") >= 2 else key
        factor = _MODEL_FACTORS.get(leaf)
        return "dtype_bf16" if factor == "dtype" and bf16 else factor
    if key.startswith("env."):
        group = env_group(key[4:])
        return _ENV_GROUP_FACTORS.get(group or "")
    for prefix, factor in _KEY_FACTORS:
        if key.startswith(prefix):
            return "dtype_bf16" if factor == "dtype" and bf16 else factor
    return None


def group_of(key: str, baseline: Any = None, candidate: Any = None) -> Optional[str]:
    factor = factor_of_key(key, baseline, candidate)
    return FACTOR_GROUPS.get(factor) if factor else None


def group_changes(changes: Sequence[EnvChange]) -> Tuple[List[Tuple[str, List[EnvChange]]], int]:
    """Env changes by group in ``GROUP_ORDER``, and how many belong to no factor (platform strings, paths: left
    out of the reports, kept in report.json)."""
    groups: Dict[str, List[EnvChange]] = {}
    unclassified = 0
    for change in changes:
        if same_setting(change.key, change.baseline, change.candidate):
            continue  # the same libraries in another order (a file from before the fingerprint sorted them)
        group = group_of(change.key, change.baseline, change.candidate)
        if group is None:
            unclassified += 1
        else:
            groups.setdefault(group, []).append(change)
    return [(g, groups[g]) for g in GROUP_ORDER if g in groups], unclassified


@dataclass(frozen=True)
class KnownDrift:
    """What one factor is known to cause (an entry of ``harness/data/drift_magnitudes.toml``): the largest element
    difference, the lowest cosine, the share of top-10 lists reordered, and the measurement that says so."""

    description: str = ""
    max_abs: Optional[float] = None
    min_cosine: Optional[float] = None
    topk_reordered: Optional[float] = None
    source: Optional[str] = None


@dataclass(frozen=True)
class Factor:
    """One factor that differs, the fingerprint entries behind it, and its known drift."""

    name: str
    changes: List[EnvChange]
    known: KnownDrift = field(default_factory=KnownDrift)

    @property
    def group(self) -> str:
        """The report group (``FACTOR_GROUPS``): packages, hardware and kernels, ..."""
        return FACTOR_GROUPS.get(self.name, "other")

    def can_explain(self, observed_max_abs: float) -> Optional[bool]:
        """Whether this factor alone is known to move numbers as far as observed (None: unbounded/unknown)."""
        known = self.known.max_abs  # within 10x: the same order of magnitude (measurements are per model)
        return None if known is None else observed_max_abs <= 10 * known


def load_magnitudes(path: str | Path | None = None) -> Dict[str, KnownDrift]:
    """The table of known drift per factor (the package's own data: an entry it cannot type is a bug, exit 3)."""
    data = tomllib.loads(Path(path or MAGNITUDES_PATH).read_text(encoding="utf-8"))
    return {str(name): KnownDrift(**entry) for name, entry in data.get("factors", {}).items()}


def factor_of(change: EnvChange) -> Optional[str]:
    """The factor a flattened fingerprint key belongs to (None for keys that do not affect numbers)."""
    return factor_of_key(change.key, change.baseline, change.candidate)


def _part_of_serving(change: EnvChange, served: set[str]) -> bool:
    """A difference that only says one side was served: its ``device = "http"``, or a served model's weights
    (absent on the server's side)."""
    if change.key in ("device", "device_type"):
        return "http" in (change.baseline, change.candidate)
    parts = change.key.split(".")
    return len(parts) >= 3 and parts[0] == "models" and parts[1] in served and parts[2] in ("weights_sha256", "saved_versions")


def explain(baseline: str | Path, candidate: str | Path, magnitudes: Optional[Dict[str, KnownDrift]] = None) -> List[Factor]:
    """Factors that differ between two results files, largest known drift first."""
    table = magnitudes if magnitudes is not None else load_magnitudes()
    from harness.results import ResultsFile

    base, cand = ResultsFile(baseline), ResultsFile(candidate)
    changes = environment_changes(base, cand, batch_size=True)
    served = {c.key.split(".")[1] for c in changes if c.key.startswith("models.") and c.key.endswith(".backend")
              and "http" in (c.baseline, c.candidate)}
    grouped: Dict[str, List[EnvChange]] = {}
    for change in changes:
        factor = factor_of(change)
        if served and _part_of_serving(change, served):
            factor = "server"  # the served side has no local device or weights hash: the server stands for both
        if factor:
            grouped.setdefault(factor, []).append(change)
    factors = [Factor(name=name, changes=items, known=table.get(name, KnownDrift())) for name, items in grouped.items()]
    return sorted(factors, key=lambda f: -(f.known.max_abs if f.known.max_abs is not None else float("inf")))
