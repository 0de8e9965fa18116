"""Attribution planning by search (``harness.matrix.plan``): the finest walk any order allows, one resolver call
per environment, a note that quotes the resolver for every finer alternative, a clear error when nothing
installs, and the uv dry run that answers for the cells (a stand-in uv executable here: no network)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Callable, Dict, FrozenSet, List, Optional, Sequence, Set, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import HarnessError
from harness.matrix import plan
from harness.matrix.attribution import RuntimeSettings
from harness.matrix.plan import AttributionPlanError, package_factors, plan_path, uv_reason, uv_resolver
from harness.matrix.spec import Cell

# the issue's two cells (matrix.toml, matrix "default")
NEW = Cell(matrix="default", python="3.11", torch="2.13.0", sentence_transformers="6.2.0", transformers="5.23.0")
OLD = Cell(matrix="default", python="3.10", torch="2.4.1", sentence_transformers="3.0.1", transformers="4.41.2",
           numpy="<2")
ST6_NEEDS_TF5 = "Because sentence-transformers>=6.2.0 depends on transformers>=5.0.0,<6.0.0 (st6)"
ST3_NEEDS_TF4 = "Because sentence-transformers==3.0.1 depends on transformers>=4.34.0,<5.0.0 (st3)"
TF5_NEEDS_PY311 = "Because transformers==5.23.0 depends on Python>=3.11.0 (tf5)"


def _like_uv(cell: Cell) -> Optional[str]:
    """What the real `uv pip compile` says about every environment between NEW and OLD (checked by hand)."""
    if cell.sentence_transformers == "6.2.0" and cell.transformers != "5.23.0":
        return ST6_NEEDS_TF5
    if cell.sentence_transformers == "3.0.1" and cell.transformers != "4.41.2":
        return ST3_NEEDS_TF4
    if cell.transformers == "5.23.0" and cell.python == "3.10":
        return TF5_NEEDS_PY311
    return None


class Recorder:
    """A resolver that counts its calls per environment (pins and python, not the step id)."""

    def __init__(self, answer: Callable[[Cell], Optional[str]]) -> None:
        self.answer = answer
        self.calls: Counter = Counter()
        self.answers: Dict[Tuple, Optional[str]] = {}

    @staticmethod
    def key(cell: Cell) -> Tuple:
        return (cell.python, tuple(cell.pins()))

    def __call__(self, cell: Cell) -> Optional[str]:
        self.calls[self.key(cell)] += 1
        self.answers[self.key(cell)] = self.answer(cell)
        return self.answers[self.key(cell)]


def test_the_fixed_order_groups_but_another_order_gives_single_steps() -> None:
    """torch 2.13.0 has no Python 3.10 wheel here: python first fails, torch first then python works."""
    base = dataclasses.replace(NEW)
    cand = dataclasses.replace(NEW, python="3.10", torch="2.4.1")

    def no_cp310_torch_2_13(cell: Cell) -> Optional[str]:
        return "no torch 2.13.0 wheel for cp310" if (cell.python, cell.torch) == ("3.10", "2.13.0") else None

    assert no_cp310_torch_2_13(dataclasses.replace(base, python="3.10")) is not None  # python first cannot work
    steps = plan_path(base, RuntimeSettings(), cand, RuntimeSettings(), no_cp310_torch_2_13)
    assert [s.name for s in steps] == ["baseline", "+torch", "+python"]
    assert [s.step_id for s in steps] == ["step00-baseline", "step01-torch", "step02-python"]
    assert (steps[1].cell.python, steps[1].cell.torch) == ("3.11", "2.4.1")
    assert steps[2].cell.pins() == cand.pins() and steps[2].cell.python == "3.10"
    assert all(s.note == "" for s in steps) and {s.cell.matrix for s in steps} == {"attribute"}


def test_the_issue_walk_isolates_torch_and_python_and_groups_only_st_with_transformers() -> None:
    steps = plan_path(NEW, RuntimeSettings(), OLD, RuntimeSettings(), _like_uv)
    # numpy<2 first: torch 2.4.1 never meets numpy 2, and the python step cannot silently move numpy
    assert [s.name for s in steps] == ["baseline", "+numpy", "+torch", "+transformers+sentence-transformers", "+python"]
    assert steps[-1].cell.pins() == OLD.pins() and steps[-1].cell.python == OLD.python
    note = steps[3].note
    assert note == (f"grouped: transformers alone does not install ({ST6_NEEDS_TF5}); "
                    f"sentence-transformers alone does not install ({ST3_NEEDS_TF4})")


def test_only_a_group_is_possible_and_the_note_quotes_each_alternative_tried() -> None:
    """Three factors that install only together: every finer alternative is named with the resolver's line."""
    cand = dataclasses.replace(OLD, python="3.11", numpy=None)  # torch, sentence-transformers, transformers

    def all_or_nothing(cell: Cell) -> Optional[str]:
        moved = [n for n, a in package_factors() if getattr(cell, a) != getattr(NEW, a)]
        return None if len(moved) in (0, 3) else f"conflict: {'/'.join(moved)}"

    steps = plan_path(NEW, RuntimeSettings(), cand, RuntimeSettings(), all_or_nothing)
    assert [s.name for s in steps] == ["baseline", "+torch+transformers+sentence-transformers"]
    alternatives = ["torch", "transformers", "sentence-transformers", "torch + transformers",
                    "torch + sentence-transformers", "transformers + sentence-transformers"]
    expected = "; ".join(f"{a} alone does not install (conflict: {a.replace(' + ', '/')})" for a in alternatives)
    assert steps[1].note == "grouped: " + expected


def test_two_pairs_beat_the_four_factor_jump() -> None:
    """{python, torch} and {transformers, sentence-transformers} each move only as pairs: two steps of two."""
    cand = dataclasses.replace(OLD, numpy=None)

    def pairs(cell: Cell) -> Optional[str]:
        py_torch = (cell.python == "3.10") == (cell.torch == "2.4.1")
        st_tf = (cell.transformers == "4.41.2") == (cell.sentence_transformers == "3.0.1")
        return None if py_torch and st_tf else "pairs only"

    steps = plan_path(NEW, RuntimeSettings(), cand, RuntimeSettings(), pairs)
    assert [s.name for s in steps] == ["baseline", "+python+torch", "+transformers+sentence-transformers"]
    assert steps[1].note == "grouped: python alone does not install (pairs only); torch alone does not install (pairs only)"
    assert steps[2].note.startswith("grouped: transformers alone does not install (pairs only); sentence-transformers")


def test_nothing_installs_is_one_line_naming_both_cells_and_the_resolver() -> None:
    def candidate_never(cell: Cell) -> Optional[str]:
        return "no torch 2.4.1 wheel for cp310" if cell.python == "3.10" and cell.torch == "2.4.1" else None

    with pytest.raises(AttributionPlanError) as caught:
        plan_path(NEW, RuntimeSettings(), OLD, RuntimeSettings(), candidate_never)
    message = str(caught.value)
    assert isinstance(caught.value, HarnessError) and "\n" not in message
    assert NEW.cell_id in message and OLD.cell_id in message
    assert "the candidate does not install (no torch 2.4.1 wheel for cp310)" in message

    with pytest.raises(AttributionPlanError, match=r"the baseline does not install \(old box\)"):
        plan_path(NEW, RuntimeSettings(), OLD, RuntimeSettings(),
                  lambda c: "old box" if c.torch == "2.13.0" and c.python == "3.11" and not c.numpy else None)


def test_a_multi_line_resolver_reason_is_kept_on_one_line() -> None:
    with pytest.raises(AttributionPlanError) as caught:
        plan_path(NEW, RuntimeSettings(), OLD, RuntimeSettings(), lambda c: "first\n  second" if c.numpy else None)
    assert "(first second)" in str(caught.value) and "\n" not in str(caught.value)


def test_the_resolver_is_asked_once_per_environment() -> None:
    resolver = Recorder(_like_uv)
    plan_path(NEW, RuntimeSettings(), OLD, RuntimeSettings(), resolver)
    assert resolver.calls and max(resolver.calls.values()) == 1
    assert len(resolver.calls) <= 2 ** 5  # five differing factors


def test_nothing_to_move_asks_nothing_and_runtime_steps_use_the_last_environment() -> None:
    resolver = Recorder(_like_uv)
    steps = plan_path(NEW, RuntimeSettings(), NEW, RuntimeSettings(dtype="bfloat16", threads=1), resolver)
    assert [s.name for s in steps] == ["baseline", "+dtype", "+threads"] and not resolver.calls
    steps = plan_path(NEW, RuntimeSettings(), OLD, RuntimeSettings(batch_size=8), _like_uv)
    assert steps[-1].name == "+batch_size" and steps[-1].cell == steps[-2].cell
    assert steps[-1].runtime.batch_size == 8 and all(s.runtime.batch_size == 32 for s in steps[:-1])


def test_where_everything_installs_every_factor_is_a_step_in_the_factors_order() -> None:
    """Single steps in PACKAGE_FACTORS order (a removed pin last), then the runtime steps in the last venv."""
    old = Cell(matrix="m", python="3.9", torch="2.2.2", sentence_transformers="2.7.0", transformers="4.40.2", numpy="<2")
    new = Cell(matrix="m", python="3.13", torch="2.15.0", sentence_transformers="6.2.0", transformers="5.23.0")
    runtime = RuntimeSettings(dtype="bfloat16", batch_size=8)
    steps = plan_path(old, RuntimeSettings(), new, runtime, lambda c: None)
    assert [s.name for s in steps] == [
        "baseline", "+python", "+torch", "+transformers", "+sentence-transformers", "+numpy", "+dtype", "+batch_size",
    ]
    assert [s.index for s in steps] == list(range(len(steps))) and len({s.step_id for s in steps}) == len(steps)
    assert steps[-1].cell == steps[-3].cell and steps[-1].runtime == runtime


def test_extra_requirement_lines_are_a_factor_of_their_own() -> None:
    cand = dataclasses.replace(NEW, torch="2.14.1", extra=("huggingface-hub<0.26",))
    steps = plan_path(NEW, RuntimeSettings(), cand, RuntimeSettings(), lambda c: None)
    assert [s.name for s in steps] == ["baseline", "+extra", "+torch"]  # a pin added first, as numpy<2
    assert steps[-1].cell.pins() == cand.pins()


# -- property: the plan is a real walk, and no order has a smaller largest step -----------------------------------

#: a (baseline value, candidate value) per factor, so any subset of factors can differ
_VALUES = {
    "python": ("3.11", "3.10"), "torch": ("2.13.0", "2.4.1"), "transformers": ("5.23.0", "4.41.2"),
    "sentence_transformers": ("6.2.0", "3.0.1"), "numpy": (None, "<2"), "tokenizers": ("0.23.3", None),
    "extra": ((), ("huggingface-hub<0.26",)),
}


def _cost(blocks: Sequence[FrozenSet[str]]) -> Tuple[int, int, int]:
    """(largest step, grouped steps, torch/python inside groups): what the planner minimises first."""
    grouped = [b for b in blocks if len(b) > 1]
    return (max(len(b) for b in blocks), len(grouped), sum(len(b & {"torch", "python"}) for b in grouped))


def _brute_force(names: Sequence[str], installable: Set[FrozenSet[str]]) -> Tuple[int, int, int]:
    """The best cost over every ordered split of the factors into steps (permutations x cut points)."""
    best = None
    for order in itertools.permutations(names):
        for cuts in itertools.product((False, True), repeat=len(names) - 1):
            blocks, current = [], [order[0]]
            for name, cut in zip(order[1:], cuts):
                if cut:
                    blocks.append(frozenset(current))
                    current = []
                current.append(name)
            blocks.append(frozenset(current))
            moved: FrozenSet[str] = frozenset()
            ok = True
            for block in blocks[:-1]:
                moved |= block
                ok = ok and moved in installable
            if ok:
                best = _cost(blocks) if best is None else min(best, _cost(blocks))
    assert best is not None
    return best


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_plan_is_an_installable_walk_with_the_smallest_largest_step(data: st.DataObject) -> None:
    attrs = data.draw(st.lists(st.sampled_from(sorted(_VALUES)), min_size=1, max_size=5, unique=True), label="factors")
    base = dataclasses.replace(NEW, **{a: _VALUES[a][0] for a in attrs})
    cand = dataclasses.replace(NEW, **{a: _VALUES[a][1] for a in attrs})
    name_of = {a: n for n, a in package_factors()}
    names = [name_of[a] for a in attrs]
    subsets = [frozenset(c) for r in range(1, len(names)) for c in itertools.combinations(names, r)]
    installable = {frozenset(), frozenset(names)} | set(data.draw(st.lists(st.sampled_from(subsets) if subsets else st.nothing(),
                                                                           unique=True), label="installable"))

    def moved(cell: Cell) -> FrozenSet[str]:
        return frozenset(name_of[a] for a in attrs if getattr(cell, a) == getattr(cand, a))

    resolver = Recorder(lambda c: None if moved(c) in installable else f"not {sorted(moved(c))}")
    steps = plan_path(base, RuntimeSettings(), cand, RuntimeSettings(), resolver)

    assert max(resolver.calls.values()) == 1 and len(resolver.calls) <= 2 ** len(names)
    assert steps[0].factors == () and steps[-1].cell.pins() == cand.pins() and steps[-1].cell.python == cand.python
    for before, step in zip(steps, steps[1:]):
        changed = {name_of[a] for a in attrs if getattr(before.cell, a) != getattr(step.cell, a)}
        assert changed == set(step.factors) and step.factors
        assert resolver.answers[Recorder.key(step.cell)] is None  # asked, and it said "installs"
        assert (step.note != "") == (len(step.factors) > 1)
    assert _cost([frozenset(s.factors) for s in steps[1:]]) == _brute_force(names, installable)


# -- the uv dry run ------------------------------------------------------------------------------------------------

UV_STDERR = """error: No solution found when resolving dependencies
  cause: Because sentence-transformers==3.0.1 depends on transformers>=4.34.0,<5.0.0 and you require sentence-transformers==3.0.1, we can conclude that you require transformers>=4.34.0,<5.0.0.
         And because you require transformers==5.23.0, we can conclude that your requirements are unsatisfiable.

hint: The `--python-version` value (>=3.10) includes Python versions that are not supported.
"""


def test_uv_reason_keeps_the_cause_line() -> None:
    assert uv_reason(UV_STDERR, 1) == ("Because sentence-transformers==3.0.1 depends on transformers>=4.34.0,<5.0.0 "
                                       "and you require sentence-transformers==3.0.1, we can conclude that you "
                                       "require transformers>=4.34.0,<5.0.0.")
    assert uv_reason("error: Failed to fetch\n  Caused by: dns error\nhint: offline?\n", 2) == "Caused by: dns error"
    assert uv_reason("", 2) == "uv pip compile exited 2"


@pytest.fixture()
def fake_uv(tmp_path: Path) -> Tuple[str, Path]:
    """An executable that logs how it was called and fails, like uv, for sentence-transformers 3 on transformers 5."""
    log = tmp_path / "uv-calls.jsonl"
    script = tmp_path / "uv"
    script.write_text(f"""#!{sys.executable}
import json, os, sys
data = sys.stdin.read()
with open({str(log)!r}, "a") as handle:
    handle.write(json.dumps({{"argv": sys.argv[1:], "stdin": data, "find_links": os.environ.get("UV_FIND_LINKS")}}) + "\\n")
if "sentence-transformers==3.0.1" in data and "transformers==5.23.0" in data:
    sys.stderr.write({UV_STDERR!r})
    sys.exit(1)
""", encoding="utf-8")
    script.chmod(0o755)
    return str(script), log


def _calls(log: Path) -> List[Dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_uv_resolver_compiles_the_cells_requirements_for_its_python(fake_uv, monkeypatch) -> None:
    uv, log = fake_uv
    monkeypatch.delenv("HARNESS_TORCH_INDEX_URL", raising=False)
    monkeypatch.setenv("UV_FIND_LINKS", "/somewhere/wheels")
    resolves = uv_resolver(uv=uv)
    assert resolves(OLD) is None
    bad = dataclasses.replace(OLD, transformers="5.23.0")
    assert resolves(bad).startswith("Because sentence-transformers==3.0.1 depends on transformers>=4.34.0,<5.0.0")
    first, second = _calls(log)
    assert first["argv"] == ["pip", "compile", "-", "--quiet", "--python-version", "3.10", "--no-header"]
    assert first["stdin"].splitlines() == OLD.requirements() and first["find_links"] == "/somewhere/wheels"
    assert second["stdin"].splitlines() == bad.requirements()


def test_uv_resolver_uses_the_torch_index_and_the_local_wheels_as_the_cells_do(fake_uv, monkeypatch, tmp_path) -> None:
    uv, log = fake_uv
    monkeypatch.setenv("HARNESS_TORCH_INDEX_URL", "https://download.pytorch.org/whl/cpu")
    monkeypatch.delenv("UV_FIND_LINKS", raising=False)
    monkeypatch.setattr(plan.venvs, "LOCAL_WHEELS", str(tmp_path))
    uv_resolver(uv=uv)(NEW)
    monkeypatch.setattr(plan.venvs, "LOCAL_WHEELS", str(tmp_path / "absent"))
    monkeypatch.delenv("HARNESS_TORCH_INDEX_URL")
    uv_resolver(uv=uv)(NEW)
    with_index, without = _calls(log)
    assert with_index["argv"][-2:] == ["--index", "https://download.pytorch.org/whl/cpu"]
    assert with_index["find_links"] == str(tmp_path)
    assert "--index" not in without["argv"] and without["find_links"] is None


def test_uv_resolver_answers_each_environment_once_per_index(fake_uv, monkeypatch) -> None:
    uv, log = fake_uv
    monkeypatch.delenv("HARNESS_TORCH_INDEX_URL", raising=False)
    cache: Dict[str, Optional[str]] = {}
    resolves = uv_resolver(cache, uv=uv)
    assert resolves(OLD) is None and resolves(dataclasses.replace(OLD, id="step03-x", matrix="attribute")) is None
    assert uv_resolver(cache, uv=uv)(OLD) is None  # a shared cache serves a second resolver too
    assert len(_calls(log)) == 1
    monkeypatch.setenv("HARNESS_TORCH_INDEX_URL", "https://example.invalid/simple")
    resolves(OLD)
    assert len(_calls(log)) == 2


def test_uv_resolver_without_uv_says_try_it(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(plan.venvs, "find_uv", lambda: None)
    assert uv_resolver()(OLD) is None
    assert uv_resolver(uv=str(tmp_path / "no-such-uv"))(OLD) is None


def test_uv_resolver_that_hangs_is_a_reason_not_a_stall(tmp_path) -> None:
    script = tmp_path / "uv"
    script.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(30)\n", encoding="utf-8")
    script.chmod(0o755)
    assert uv_resolver(uv=str(script), timeout_s=0.5)(OLD) == "uv pip compile did not finish in 0.5 s"
