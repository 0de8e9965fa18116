"""Tolerance policies: named classes of limits (data in TOML), chosen per model and per candidate environment.

The built-in classes live in ``harness/data/default_policy.toml`` with the measurements that justify them; a
user's ``--policy`` file overlays it key by key. Everything is validated when the file is loaded, so a typo
fails before any comparison runs.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Dict, Optional

from harness.errors import PolicyError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Tolerance", "Policy", "load_policy", "DEFAULT_POLICY_PATH", "auto_class"]

DEFAULT_POLICY_PATH = Path(__file__).resolve().parent / "data" / "default_policy.toml"


@dataclass(frozen=True)
class Tolerance:
    """The limits one model is judged by. See the default policy file for why each default is what it is."""

    name: str
    description: str = ""
    atol: float = 1e-5
    rtol: float = 0.0
    min_cosine: float = 0.999999
    score_atol: float = 1e-5
    score_rtol: float = 0.0
    topk: int = 10
    tie_tolerance: float = 1e-6
    min_topk_order_agreement: float = 1.0
    min_topk_set_agreement: float = 1.0
    min_rerank_order_agreement: float = 1.0

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


_KEYS = {f.name for f in fields(Tolerance)}
_NUMERIC = _KEYS - {"name", "description"}


def _check_values(where: str, values: Dict[str, Any], allow_class: bool) -> None:
    allowed = _KEYS - {"name"} | ({"class"} if allow_class else set())
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
    for key in _NUMERIC & set(values):
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise PolicyError(f"{where}: '{key}' must be a non-negative number, got {value!r}")
        if key.startswith("min_") and value > 1:
            raise PolicyError(f"{where}: '{key}' must be at most 1, got {value!r}")
    if "topk" in values and (int(values["topk"]) != values["topk"] or values["topk"] < 1):
        raise PolicyError(f"{where}: 'topk' must be a positive integer, got {values['topk']!r}")


@dataclass(frozen=True)
class Policy:
    """Named tolerance classes plus per-model overrides."""

    source: str
    default_class: str
    classes: Dict[str, Dict[str, Any]]
    models: Dict[str, Dict[str, Any]]

    def tolerance(self, model_id: str, class_name: str) -> Tolerance:
        """The tolerance for one model: its class (model override, else ``class_name``) plus its overrides."""
        overrides = dict(self.models.get(model_id, {}))
        chosen = overrides.pop("class", class_name)
        if chosen not in self.classes:
            raise PolicyError(f"{self.source}: unknown tolerance class '{chosen}' (known: {', '.join(self.classes)})")
        return Tolerance(name=chosen, **{**self.classes[chosen], **overrides})

    def as_dict(self) -> Dict[str, Any]:
        return {"source": self.source, "default_class": self.default_class, "classes": self.classes, "models": self.models}


def _read_toml(path: Path) -> Dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(f"{path}: policy file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise PolicyError(f"{path}: invalid TOML ({err})") from None


def load_policy(path: "str | Path | None" = None) -> Policy:
    """The default policy, overlaid with ``path`` when given (classes and models merge key by key)."""
    data = _read_toml(DEFAULT_POLICY_PATH)
    source = "built-in default policy"
    if path is not None:
        user = _read_toml(Path(path))
        unknown = sorted(set(user) - {"policy", "classes", "models"})
        if unknown:
            raise PolicyError(f"{path}: unknown table(s) {', '.join(unknown)} (allowed: policy, classes, models)")
        data = _merge(data, user)
        source = str(path)
    classes = data.get("classes", {})
    for name, values in classes.items():
        _check_values(f"{source}: class '{name}'", values, allow_class=False)
    models = data.get("models", {})
    for name, values in models.items():
        _check_values(f"{source}: model '{name}'", values, allow_class=True)
        if "class" in values and values["class"] not in classes:
            raise PolicyError(f"{source}: model '{name}' names unknown class '{values['class']}'")
    default_class = data.get("policy", {}).get("default_class", "auto")
    if default_class != "auto" and default_class not in classes:
        raise PolicyError(f"{source}: default_class '{default_class}' is not a class")
    return Policy(source=source, default_class=default_class, classes=classes, models=models)


def _merge(base: Dict[str, Any], over: Dict[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def auto_class(fingerprint: Dict[str, Any], model_info: Optional[Dict[str, Any]] = None) -> str:
    """Pick the class the candidate's own settings call for (dtype first, then TF32 on CUDA)."""
    dtype = str((model_info or {}).get("loaded_dtype") or fingerprint.get("dtype") or "float32")
    if dtype == "bfloat16":
        return "bf16"
    if dtype == "float16":
        return "fp16"
    on_cuda = str(fingerprint.get("device_type", "")) == "cuda"
    tf32 = fingerprint.get("tf32_matmul") or fingerprint.get("float32_matmul_precision") in ("high", "medium")
    return "tf32" if on_cuda and tf32 else "fp32"
