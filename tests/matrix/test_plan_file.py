"""Reading plan.json (``attribution_run.load_plan``): any document gives a typed ``Plan`` that writes back as it
was read, or one ``MatrixError`` line naming the file, never another exception (a traceback exits 3).

Documents are shaped like what ``run_attribution`` writes: a valid step whose keys are dropped, replaced by junk
of every JSON type, or joined by unknown keys. The budget comes from the hypothesis profile (tests/conftest.py).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Dict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.matrix.attribution_run import load_plan
from harness.matrix.spec import MatrixError

STEP: Dict[str, Any] = {
    "index": 0, "name": "baseline", "step_id": "step00-baseline", "factors": [],
    "params": {"python": "3.11", "torch": "2.13.0", "server-batch-size": 8, "extra": ["faiss-cpu==1.8.0"]},
    "runtime": {"device": "cpu", "dtype": "float32", "attn_implementation": None, "tf32": None, "batch_size": 32,
                "threads": None, "cpu_isa": None},
    "note": "", "results": "results.parquet",
}
PLAN: Dict[str, Any] = {"matrix": "m", "baseline_cell": "a", "candidate_cell": "b", "models": ["tiny"],
                        "runtime_from": "", "steps": [STEP], "orders": [{"order": ["+torch"], "rejected": ""}]}
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70), st.floats(allow_nan=False),
                    st.text(max_size=6), st.sampled_from(["cpu", "3.11", "+torch", "torch", "step00-baseline"]))
JUNK = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                     st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=6)


def _mutated(base: Dict[str, Any]) -> st.SearchStrategy[Dict[str, Any]]:
    """``base`` with some keys dropped, some replaced by junk, and perhaps an unknown one."""
    keys = sorted(base)
    return st.tuples(st.sets(st.sampled_from(keys)), st.dictionaries(st.sampled_from(keys + ["zz"]), JUNK)).map(
        lambda dropped_new: {**{k: v for k, v in base.items() if k not in dropped_new[0]}, **dropped_new[1]})


def _step() -> st.SearchStrategy[Any]:
    runtime = _mutated(STEP["runtime"])
    return st.one_of(_mutated(STEP), runtime.map(lambda r: {**STEP, "runtime": r}), JUNK)


def _read(document: Any) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "plan.json"
        path.write_text(json.dumps(document), encoding="utf-8")
        return load_plan(path)


@pytest.mark.fuzz
@given(st.one_of(_mutated(PLAN).flatmap(lambda plan: st.lists(_step(), max_size=3).map(lambda s: {**plan, "steps": s})),
                 _mutated(PLAN), JUNK))
def test_any_plan_document_is_a_plan_or_one_line(document: Any) -> None:
    try:
        plan = _read(document)
    except MatrixError as err:
        assert str(err).startswith(str(Path(tempfile.gettempdir()))) and "\n" not in str(err), str(err)
        return
    assert _read(plan.to_dict()) == plan  # what it writes reads back the same


def test_a_written_plan_reads_back_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(PLAN, indent=2) + "\n", encoding="utf-8")
    plan = load_plan(path)
    assert plan.steps[0].runtime.batch_size == 32 and plan.steps[0].factors == () and plan.orders
    assert json.dumps(plan.to_dict(), indent=2) + "\n" == path.read_text(encoding="utf-8")


@pytest.mark.parametrize(("change", "fragment"), [
    ({"index": "0"}, "step 1: index: input should be a valid integer"),
    ({"runtime": {**STEP["runtime"], "batch_size": 32.0}}, "step 1: runtime.batch_size: input should be a valid integer"),
    ({"factors": ["torch", 3]}, "step 1: factors[1]: input should be a valid string"),
    ({"params": {"torch": None}}, "step 1: params.torch: input should be a valid"),
])
def test_a_wrong_type_in_a_step_is_one_line_naming_it(tmp_path: Path, change: Dict[str, Any], fragment: str) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({**PLAN, "steps": [{**STEP, **change}]}), encoding="utf-8")
    with pytest.raises(MatrixError) as err:
        load_plan(path)
    assert str(err.value).startswith(f"{path}: {fragment}"), str(err.value)
