"""``harness explain``: which environment factors differ between two runs, and the drift each is known to cause
(``harness/data/drift_magnitudes.toml``): a 1e-4 drift cannot come from a change known to cause 3e-7.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from harness import paths
from harness.compare.factors import FACTOR_GROUPS, environment_changes, factor_of_key
from harness.config.tomlfile import tomllib
from harness.results import ResultsFile
from harness.verdict import EnvChange

__all__ = ["Factor", "explain", "factor_of", "load_magnitudes", "MAGNITUDES_PATH"]

MAGNITUDES_PATH = paths.DRIFT_MAGNITUDES

@dataclass(frozen=True)
class Factor:
    """One factor that differs, the fingerprint entries behind it, and its known drift."""

    name: str
    changes: List[EnvChange]
    known: Dict[str, Any] = field(default_factory=dict)

    @property
    def group(self) -> str:
        """The report group (``harness.compare.factors.FACTOR_GROUPS``): packages, hardware and kernels, ..."""
        return FACTOR_GROUPS.get(self.name, "other")

    @property
    def known_max_abs(self) -> Optional[float]:
        value = self.known.get("max_abs")
        return float(value) if value is not None else None

    def can_explain(self, observed_max_abs: float) -> Optional[bool]:
        """Whether this factor alone is known to move numbers as far as observed (None: unbounded/unknown)."""
        known = self.known_max_abs  # within 10x: the same order of magnitude (measurements are per model)
        return None if known is None else observed_max_abs <= 10 * known


def load_magnitudes(path: str | Path | None = None) -> Dict[str, Dict[str, Any]]:
    data = tomllib.loads(Path(path or MAGNITUDES_PATH).read_text(encoding="utf-8"))
    return dict(data.get("factors", {}))


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


def explain(baseline: str | Path, candidate: str | Path, magnitudes: Optional[Dict[str, Dict[str, Any]]] = None) -> List[Factor]:
    """Factors that differ between two results files, largest known drift first."""
    table = magnitudes if magnitudes is not None else load_magnitudes()
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
    factors = [Factor(name=name, changes=items, known=table.get(name, {})) for name, items in grouped.items()]
    return sorted(factors, key=lambda f: -(f.known_max_abs if f.known_max_abs is not None else float("inf")))
