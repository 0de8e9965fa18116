"""What differs between two runs' environments, which factor each difference belongs to, and its group: one table
for every report and ``harness explain``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple

from harness.hardware import env_group
from harness.verdict import EnvChange

if TYPE_CHECKING:
    from harness.results import ResultsFile

__all__ = ["FACTOR_GROUPS", "GROUP_ORDER", "UNORDERED_KEYS", "env_changes", "environment_changes", "factor_of_key",
           "group_of", "group_changes", "same_setting"]

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


def group_changes(changes: Sequence[Mapping[str, Any]]) -> Tuple[List[Tuple[str, List[Mapping[str, Any]]]], int]:
    """Env changes (serialized ``EnvChange`` dicts) by group in ``GROUP_ORDER``, and how many belong to no factor
    (platform strings, paths: left out of the reports, kept in report.json)."""
    groups: Dict[str, List[Mapping[str, Any]]] = {}
    unclassified = 0
    for change in changes:
        if same_setting(str(change["key"]), change.get("baseline"), change.get("candidate")):
            continue  # the same libraries in another order (a file from before the fingerprint sorted them)
        group = group_of(str(change["key"]), change.get("baseline"), change.get("candidate"))
        if group is None:
            unclassified += 1
        else:
            groups.setdefault(group, []).append(change)
    return [(g, groups[g]) for g in GROUP_ORDER if g in groups], unclassified
