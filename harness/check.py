"""``harness check``: re-run a baseline's models in this environment, the way the baseline was made, and judge.

This is the one-command answer to "did my upgrade move anything?": the run options (models, device, dtype,
batch size) come from the baseline's own metadata, so the comparison isolates the environment change.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any, Dict, Optional

from harness.results.reader import ResultsFile

__all__ = ["options_from_baseline", "default_check_path"]


def options_from_baseline(baseline: ResultsFile, device: Optional[str] = None) -> Dict[str, Any]:
    """Run options that reproduce the baseline's run (models it ran, dtype, batch size, device)."""
    run = baseline.meta.get("run", {})
    return {
        "models": sorted(baseline.models),
        "device": device or run.get("device") or "auto",
        "dtype": run.get("dtype") or "float32",
        "batch_size": int(run.get("batch_size") or 32),
    }


def default_check_path(root: "str | Path" = "reports/checks") -> Path:
    """Where a check's candidate results go when ``--out`` is not given (kept, so a drift can be studied)."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path(root) / f"check-{stamp}.parquet"
