"""A results file as one tidy pandas DataFrame, for notebooks and ad hoc analysis.

pandas is imported here only, when a frame is asked for. The whole selection is read into memory: it is meant
for corpus-sized files (the comparator streams instead).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from harness.errors import HarnessError
from harness.results.schema import COLUMNS

__all__ = ["to_frame"]


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:  # pandas lives in the compare/report environment, not in old matrix cells
        raise HarnessError("a results DataFrame needs pandas: pip install pandas") from None
    return pandas


def _model_rows(results: Any, model_id: str) -> Dict[str, np.ndarray]:
    """One model's rows as column arrays (object arrays of per-row vectors for bi-encoders)."""
    if results.records[model_id].kind != "bi-encoder":
        cols = results.rerank(model_id)
        n = len(cols["item_id"])
        return {"model_id": np.full(n, model_id, dtype=object), "task": np.full(n, "rerank", dtype=object),
                "role": np.full(n, "pair", dtype=object), "item_id": cols["item_id"], "query_id": cols["query_id"],
                "passage_id": cols["passage_id"], "vector": np.full(n, None, dtype=object),
                "score": np.asarray(cols["score"], dtype=np.float32), "rank": cols["rank"]}
    ids, roles, vectors = results.embeddings(model_id)
    n = len(ids)
    column: np.ndarray = np.empty(n, dtype=object)
    for i in range(n):  # an array per row (a copy: the reader's buffers may be read-only views)
        column[i] = np.array(vectors[i])
    return {"model_id": np.full(n, model_id, dtype=object), "task": np.full(n, "embed", dtype=object),
            "role": roles, "item_id": ids, "query_id": np.full(n, None, dtype=object),
            "passage_id": np.full(n, None, dtype=object), "vector": column,
            "score": np.full(n, np.nan, dtype=np.float32), "rank": np.full(n, None, dtype=object)}


def to_frame(results: Any, models: Optional[Sequence[str]] = None) -> Any:
    """The rows of ``models`` (default: every model, in the metadata's order) of an open ``ResultsFile`` as one
    ``pandas.DataFrame``; a model that did not run (incompatible) has no rows."""
    pd = _pandas()
    wanted = list(models) if models is not None else list(results.records)
    unknown = [m for m in wanted if m not in results.records]
    if unknown:
        raise HarnessError(f"{results.path}: has no model(s) {', '.join(unknown)} (it has: {', '.join(results.records) or 'none'})")
    parts: List[Dict[str, np.ndarray]] = [_model_rows(results, m) for m in wanted if results.model_row_groups(m)]
    data = {c: np.concatenate([p[c] for p in parts]) if parts else np.array([], dtype=object) for c in COLUMNS}
    frame = pd.DataFrame({c: data[c] for c in COLUMNS if c not in ("score", "rank")})
    frame["score"] = pd.array(data["score"].astype(np.float32) if parts else [], dtype="float32")
    ranks = [None if r is None or (isinstance(r, float) and np.isnan(r)) else int(r) for r in data["rank"]]
    frame["rank"] = pd.array(ranks, dtype="Int32")
    for name in ("model_id", "task", "role", "item_id", "query_id", "passage_id"):
        frame[name] = frame[name].astype("string")
    return frame
