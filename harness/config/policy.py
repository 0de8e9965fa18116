"""Tolerance policies: named classes of limits (``harness/data/default_policy.toml``, with the measurements behind
them), overlaid by a user's ``--policy`` key by key, validated on load, chosen per model and environment.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Literal, Optional, Tuple

from pydantic import create_model, field_validator

from harness import paths
from harness.config.schema import Schema, one_line_errors, setting, validate, whole_number
from harness.config.tomlfile import read_toml
from harness.errors import PolicyError
from harness.results.meta import SideSettings
from harness.verdict import BUILT_IN_POLICY, Tolerance

__all__ = ["Tolerance", "Policy", "load_policy", "DEFAULT_POLICY_PATH", "PRECISION_ORDER", "choose_class"]

DEFAULT_POLICY_PATH = paths.DEFAULT_POLICY


_LIMIT = "be a finite, non-negative number"
_SHARE = "be a finite, non-negative number at most 1"


def _key(expect: str = _LIMIT, low: float = 0, top: Optional[float] = None) -> Any:
    """A tolerance key's range in a policy file (``ToleranceValues``); its default is ``Tolerance``'s."""
    return setting(None, expect=expect, ge=low, le=top)


#: the keys whose range is not "a finite, non-negative number"
_RANGES: Dict[str, object] = {
    "description": setting(None, expect="be a string"),
    "topk": _key("be a positive whole number at most 100000", low=1, top=100_000),
    "max_bit_flips": _key(f"be a non-negative whole number at most {1 << 24}", top=1 << 24),
    "max_int_distance": _key("be a non-negative whole number at most 255", top=255),
    "precision_error_ratio": _key("be a finite number of at least 1", low=1),
    **{f.name: _key(_SHARE, top=1) for f in fields(Tolerance) if f.name.startswith("min_") or f.name == "max_changed_fraction"},
}


#: The precision classes ``auto`` picks from one side's settings, strictest first (``choose_class``: the baseline's wins).
PRECISION_ORDER = ("fp32", "tf32", "fp16", "bf16")

class ToleranceValues(create_model(  # type: ignore[misc]  # its fields are Tolerance's, each optional
        "ToleranceKeys", __base__=Schema, **{f.name: (Optional[type(f.default)], _RANGES.get(f.name, _key()))
                                             for f in fields(Tolerance) if f.name != "name"})):
    """The tolerance keys of one class (or of one model's overrides): every one optional, each in its range."""

    @field_validator("topk", "max_bit_flips", "max_int_distance", mode="before")
    @classmethod
    def whole_floats(cls, value: Any) -> Any:
        return whole_number(value)


class ModelOverrides(ToleranceValues):
    """``[models."<id>"]``: a forced ``class``, tolerance keys for every class, and per-class ones."""

    class_: Optional[str] = setting(None, alias="class", expect="be a string naming a class")
    classes: Optional[Dict[str, ToleranceValues]] = None


class PolicySettings(Schema):
    default_class: Optional[str] = setting(None, expect="be a string: \"auto\" or a class name")
    precision_change: Optional[Literal["baseline", "candidate"]] = setting(None, expect='be "baseline" or "candidate"')
    judge_by: Optional[Literal["tolerances", "accuracy"]] = setting(None, expect='be "tolerances" or "accuracy"')


class PolicyFile(Schema):
    """A policy TOML file: ``[policy]``, ``[device_classes]``, ``[classes.<name>]``, ``[models."<id>"]``."""

    policy: Optional[PolicySettings] = None
    classes: Optional[Dict[str, ToleranceValues]] = None
    models: Optional[Dict[str, ModelOverrides]] = None
    device_classes: Optional[Dict[str, str]] = None


@dataclass(frozen=True)
class Policy:
    """Named tolerance classes plus per-model overrides."""

    source: str
    default_class: str
    classes: Dict[str, ToleranceValues]
    models: Dict[str, ModelOverrides]
    #: ``"<device type>-vs-<device type>"`` -> class for full-precision comparisons (order-insensitive)
    device_classes: Dict[str, str] = field(default_factory=dict)
    #: a candidate at lower precision is judged at the baseline's class ("baseline") or at its own ("candidate")
    precision_change: str = "baseline"
    #: with an fp64 reference, what decides a status: the checks and the accuracy ratio, or the ratio alone
    judge_by: str = "tolerances"

    def tolerance(self, model_id: str, class_name: str) -> Tolerance:
        """The tolerance for one model: its class (model override, else ``class_name``) plus its overrides
        (``[models."<id>"]`` in every class, ``[models."<id>".classes.<class>]`` in that one)."""
        overrides = self.models.get(model_id) or ModelOverrides()
        chosen = overrides.class_ or class_name
        if chosen not in self.classes:
            raise PolicyError(f"{self.source}: unknown tolerance class '{chosen}' (known: {', '.join(self.classes)})")
        layers = (self.classes[chosen], overrides, (overrides.classes or {}).get(chosen) or ToleranceValues())
        return Tolerance(name=chosen, **{k: v for layer in layers for k, v in
                                         layer.model_dump(exclude_unset=True, exclude={"class_", "classes"}).items()})

    def error_scale(self, model_id: str, judged: Tolerance, own_class: str) -> float:
        """How much larger an error against fp64 the ``judged`` tolerance's class expects than the baseline's own
        (``precision_error_ratio`` over ``precision_error_ratio``; 1 when the same, or when the policy has no class
        for the baseline's precision: no expected loss known)."""
        try:
            return max(judged.precision_error_ratio / self.tolerance(model_id, own_class).precision_error_ratio, 1.0)
        except PolicyError:
            return 1.0

    def device_class(self, a: str, b: str) -> Optional[str]:
        """The class ``[device_classes]`` names for this pair of device types (either order), if any."""
        return self.device_classes.get(f"{a}-vs-{b}") or self.device_classes.get(f"{b}-vs-{a}")


def _read_policy(path: Path, source: str) -> Dict[str, Any]:
    """One policy file validated by ``PolicyFile``, as the TOML tables it set (to merge key by key, then type)."""
    data = read_toml(path, PolicyError, "policy file not found", shown=source)
    model = validate(PolicyFile, data, source=source, error=PolicyError)
    return model.model_dump(exclude_unset=True, by_alias=True)


@one_line_errors
def load_policy(path: str | os.PathLike[str] | None = None) -> Policy:
    """The default policy, overlaid with ``path`` when given (classes and models merge key by key)."""
    data = _read_policy(DEFAULT_POLICY_PATH, str(DEFAULT_POLICY_PATH))
    source = BUILT_IN_POLICY if path is None else str(path)
    if path is not None:
        data = _merge(data, _read_policy(Path(path), source))
    merged = validate(PolicyFile, data, source=source, error=PolicyError)
    classes, models, settings = merged.classes or {}, merged.models or {}, merged.policy or PolicySettings()
    for name, values in models.items():
        if values.class_ is not None and values.class_ not in classes:
            raise PolicyError(f"{source}: model '{name}' names unknown class '{values.class_}'")
        for class_name in values.classes or {}:  # in file order: the message names the first
            if class_name not in classes:
                raise PolicyError(f"{source}: model '{name}' has overrides for unknown class '{class_name}'")
    default_class = settings.default_class or "auto"
    if default_class != "auto" and default_class not in classes:
        raise PolicyError(f"{source}: default_class '{default_class}' is not a class")
    device_classes = merged.device_classes or {}
    for pair, class_name in device_classes.items():
        if len(pair.split("-vs-")) != 2 or not all(pair.split("-vs-")):
            raise PolicyError(f"{source}: device_classes key '{pair}' must look like \"cpu-vs-cuda\"")
        if class_name not in classes:
            raise PolicyError(f"{source}: device_classes '{pair}' names unknown class '{class_name}'")
    return Policy(source, default_class, classes, models, device_classes, settings.precision_change or "baseline",
                  settings.judge_by or "tolerances")


def _merge(base: Dict[str, Any], over: Dict[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _rank(precision: str) -> int:
    return PRECISION_ORDER.index(precision) if precision in PRECISION_ORDER else 0


def choose_class(policy: Policy, baseline: SideSettings, candidate: SideSettings,
                 forced: Optional[str] = None) -> Tuple[str, str]:
    """The tolerance class for one model of a (baseline, candidate) pair, and a note when the candidate ran at
    lower precision than its baseline (empty otherwise).

    A forced class wins, then a ``default_class`` other than ``auto``. ``auto`` holds a candidate of lower
    precision to the baseline's class (a downgrade never passes silently) unless ``precision_change =
    "candidate"``; at full precision it is the ``[device_classes]`` entry (else ``fp32``), or ``served`` when
    either side was served: the server's batching, not the device, sets that drift.
    """
    base_precision, cand_precision = baseline.precision, candidate.precision
    downgrade = _rank(cand_precision) > _rank(base_precision)
    explicit = forced or (policy.default_class if policy.default_class != "auto" else None)
    if explicit:
        how = "forced by --class" if forced else f"the policy's default_class ({policy.source})"
        note = (f"the candidate ran at {cand_precision}, the baseline at {base_precision}: judged at {explicit} "
                f"({how})") if downgrade else ""
        return explicit, note
    if downgrade and policy.precision_change == "candidate":
        return cand_precision, (f"the candidate ran at {cand_precision}, the baseline at {base_precision}: judged at "
                                f"{cand_precision}, its own precision (precision_change = \"candidate\" in {policy.source})")
    precision = max(base_precision, cand_precision, key=_rank) if not downgrade else base_precision
    if precision != "fp32":
        chosen = precision
    elif "served" in policy.classes and (baseline.served or candidate.served):
        chosen = "served"
    else:
        chosen = policy.device_class(baseline.device, candidate.device) or "fp32"
    if not downgrade:
        return chosen, ""
    return chosen, (f"precision change: the candidate ran at {cand_precision}, the baseline at {base_precision}; judged at "
                    f"the baseline's class {chosen}. To judge it at {cand_precision}, pass --class {cand_precision} "
                    f"or set precision_change = \"candidate\" under [policy] in a --policy file")
