"""Attribution planning and the waterfall: one factor per step, grouping only where installs forbid it,
and the step that really moved the numbers named as the main cause (on real tiny-model runs)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping, Optional

from pydantic import TypeAdapter

from harness.compare.comparator import compare_files
from harness.matrix.attribution import Drift, Plan, PlannedStep, RuntimeSettings, StepDrift, Waterfall, waterfall
from harness.matrix.plan import plan_path
from harness.matrix.spec import Cell
from harness.verdict import Comparison, Metrics, ModelVerdict, Status

from conftest import run_tiny

OLD = Cell(matrix="m", python="3.9", torch="2.2.2", sentence_transformers="2.7.0", transformers="4.40.2", numpy="<2")
NEW = Cell(matrix="m", python="3.13", torch="2.15.0", sentence_transformers="6.2.0", transformers="5.23.0")


def waterfall_from_dict(data: Mapping[str, Any]) -> Waterfall:
    """An attribution.json as read (was ``Waterfall.from_dict``: only the tests read one back)."""
    def row(d: Mapping[str, Any]) -> StepDrift:
        models = {m: (Drift(**e["step"]), e["cumulative"] and Drift(**e["cumulative"])) for m, e in d["models"].items()}
        planned = {k: v for k, v in d.items() if k not in ("results", "models", "error", "number_of", "includes", "note")}
        step = TypeAdapter(PlannedStep).validate_python({**planned, "note": d.get("note", "")})
        return StepDrift(step, d.get("results"), models, d.get("error"), d.get("number_of"), d.get("includes"), d.get("note", ""))

    plan = data.get("plan")
    return Waterfall([row(s) for s in data["steps"]], TypeAdapter(Plan).validate_python(plan) if plan else None)


def _all_install(cell: Cell) -> Optional[str]:
    return None


def _realistic(cell: Cell) -> Optional[str]:
    """Stand-in for `uv pip compile`: python 3.13 needs torch >= 2.5; ST 6 needs transformers 5."""
    if cell.python == "3.13" and cell.torch.startswith("2.2"):
        return "no torch 2.2.2 wheel for Python 3.13"
    if cell.sentence_transformers.startswith("6") and cell.transformers.startswith("4"):
        return "sentence-transformers 6.2.0 requires transformers>=5"
    return None


def test_one_factor_per_step_when_everything_installs() -> None:
    steps = plan_path(OLD, RuntimeSettings(), NEW, RuntimeSettings(dtype="bfloat16", batch_size=8), _all_install)
    assert [s.name for s in steps] == [
        "baseline", "+python", "+torch", "+transformers", "+sentence-transformers", "+numpy", "+dtype", "+batch_size",
    ]
    assert steps[-1].cell.torch == "2.15.0" and steps[-1].runtime.dtype == "bfloat16"
    assert steps[-1].runtime.run_args()[-2:] == ["--batch-size", "8"]
    assert len({s.step_id for s in steps}) == len(steps)


def test_an_order_that_installs_is_found_where_the_fixed_order_would_group() -> None:
    """python 3.13 cannot take torch 2.2.2, so python first fails; torch first, then python, installs."""
    assert _realistic(dataclasses.replace(OLD, python="3.13")) is not None
    steps = plan_path(OLD, RuntimeSettings(), NEW, RuntimeSettings(), _realistic)
    names = [s.name for s in steps]
    assert names == ["baseline", "+torch", "+python", "+transformers", "+sentence-transformers", "+numpy"]
    assert all(_realistic(s.cell) is None for s in steps)


def test_grouping_with_the_last_factor_falls_back_to_the_candidate() -> None:
    def st_needs_new_tf(cell: Cell) -> Optional[str]:
        if cell.transformers == "5.23.0" and cell.sentence_transformers == "2.7.0":
            return "sentence-transformers 2.7.0 requires transformers<5"
        if cell.transformers == "4.40.2" and cell.sentence_transformers == "6.2.0":
            return "sentence-transformers 6.2.0 requires transformers>=5"
        return None

    base = Cell(matrix="m", python="3.11", torch="2.13.0", sentence_transformers="2.7.0", transformers="4.40.2")
    cand = Cell(matrix="m", python="3.11", torch="2.13.0", sentence_transformers="6.2.0", transformers="5.23.0")
    steps = plan_path(base, RuntimeSettings(), cand, RuntimeSettings(), st_needs_new_tf)
    assert [s.name for s in steps] == ["baseline", "+transformers+sentence-transformers"]
    assert "requires transformers<5" in steps[1].note


def test_waterfall_names_the_step_that_moved(tmp_path: Path, tiny_results: Path) -> None:
    """Runtime steps on the tiny models for real: batch size moves ~1e-7, bfloat16 moves ~1e-3."""
    cell = Cell(matrix="m", python="3.11", torch="2.13.0", sentence_transformers="6.2.0", transformers="5.23.0")
    steps = plan_path(cell, RuntimeSettings(), cell, RuntimeSettings(batch_size=4, dtype="bfloat16"), _all_install)
    assert [s.name for s in steps] == ["baseline", "+dtype", "+batch_size"]
    paths = {steps[0].step_id: tiny_results}
    for step in steps[1:]:
        paths[step.step_id] = run_tiny(tmp_path / f"{step.step_id}.parquet", dtype=step.runtime.dtype,
                                       batch_size=step.runtime.batch_size)
    result = waterfall(steps, paths, lambda a, b: compare_files(a, b, tolerance_class="fp32")).to_dict()
    cause = result["main_cause"]["tiny-bi-encoder"]
    assert cause["step"] == "+dtype" and cause["max_abs_diff"] > 1e-3
    batch_row = result["steps"][2]["models"]["tiny-bi-encoder"]
    assert batch_row["step"]["max_abs_diff"] < cause["max_abs_diff"]
    assert batch_row["cumulative"]["max_abs_diff"] > 1e-3


def test_a_step_known_not_to_move_is_not_blamed(tmp_path: Path, tiny_results: Path) -> None:
    """One CPU thread vs the default: measured to change nothing in fp32 (docs/drift-magnitudes.md)."""
    cell = Cell(matrix="m", python="3.11", torch="2.13.0", sentence_transformers="6.2.0", transformers="5.23.0")
    steps = plan_path(cell, RuntimeSettings(), cell, RuntimeSettings(threads=1), _all_install)
    assert [s.name for s in steps] == ["baseline", "+threads"]
    paths = {steps[0].step_id: tiny_results, steps[1].step_id: run_tiny(tmp_path / "t1.parquet", threads=1)}
    result = waterfall(steps, paths, compare_files).to_dict()
    row = result["steps"][1]["models"]["tiny-bi-encoder"]["step"]
    assert row["status"] == "pass" and row["max_abs_diff"] <= 1e-6


def test_waterfall_renders_in_markdown_json_and_html() -> None:
    from harness.report.attribution import render_attribution_html, render_attribution_json, render_attribution_markdown

    cell = Cell(matrix="m", python="3.11", torch="2.13.0", sentence_transformers="6.2.0", transformers="5.23.0")
    newer = Cell(matrix="m", python="3.11", torch="2.14.1", sentence_transformers="6.2.0", transformers="5.23.0")
    steps = plan_path(cell, RuntimeSettings(), newer, RuntimeSettings(dtype="float16"), _all_install)
    verdict = ModelVerdict("m1", "bi-encoder", Status.FAIL, "fp32",
                           metrics=Metrics(max_abs_diff=4e-4, min_cosine=0.9999, topk_order_agreement=0.9))
    data = waterfall(steps, {s.step_id: Path(f"/r/{s.step_id}") for s in steps},
                     lambda a, b: Comparison(str(a), str(b), "p", [verdict]))
    md = render_attribution_markdown(data)
    assert "| +torch | torch 2.13.0 -> 2.14.1 | m1 | 4.00e-04" in md and "+dtype" in md and "Main cause" in md
    assert '"main_cause"' in render_attribution_json(data)
    written = json.loads(render_attribution_json(data))  # attribution.json reads back into the same waterfall
    assert waterfall_from_dict(written).to_dict() == written and written["main_cause"]["m1"]["step"] == "+torch"
    page = render_attribution_html(data)
    assert page.count("<svg") == 3 and "<script" not in page


def test_a_step_after_one_that_did_not_run_says_its_delta_holds_both(tmp_path: Path, tiny_results: Path) -> None:
    """A step that resolves but cannot run (transformers 5.23 imports fail under torch 2.4.1): the next step is
    compared with the last one that ran, and says that its delta also holds the failed step's change."""
    cell = Cell(matrix="m", python="3.11", torch="2.13.0", sentence_transformers="6.2.0", transformers="5.23.0")
    steps = plan_path(cell, RuntimeSettings(), cell, RuntimeSettings(threads=1, batch_size=4), _all_install)
    assert [s.name for s in steps] == ["baseline", "+batch_size", "+threads"]
    paths = {steps[0].step_id: tiny_results, steps[1].step_id: None,
             steps[2].step_id: run_tiny(tmp_path / "b4t1.parquet", batch_size=4, threads=1)}
    result = waterfall(steps, paths, compare_files, {steps[1].step_id: "run-failed: boom"}).to_dict()
    assert result["steps"][1]["error"] == "run-failed: boom"
    last = result["steps"][2]
    assert last["includes"] == ["+batch_size"] and "also holds the change of +batch_size" in last["note"]
    assert last["number_of"] == ["batch_size", "threads"] and result["steps"][1].get("number_of") is None
    assert last["models"]["tiny-bi-encoder"]["step"]["max_abs_diff"] > 0  # batch size 4 moved it, inside this delta


def test_the_candidate_changes_are_the_to_options_given() -> None:
    from argparse import Namespace

    from harness.cli.matrix_commands import _candidate_runtime

    none = {f"to_{n}": None for n in ("device", "dtype", "attn_implementation", "batch_size", "threads", "cpu_isa", "tf32")}
    base = RuntimeSettings(threads=2)
    assert _candidate_runtime(Namespace(**none), base) == base
    given = _candidate_runtime(Namespace(**{**none, "to_batch_size": 1, "to_tf32": "off", "to_dtype": "bfloat16"}), base)
    assert given == RuntimeSettings(batch_size=1, tf32=False, dtype="bfloat16", threads=2)
    assert _candidate_runtime(Namespace(**{**none, "to_tf32": "on"}), base) == RuntimeSettings(tf32=True, threads=2)
    assert given.run_args()[-4:] == ["--tf32", "off", "--threads", "2"]
