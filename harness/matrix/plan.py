"""Attribution planning by search: the finest walk from a baseline cell to a candidate cell that installs.

A fixed package order fails as soon as it needs an environment no resolver accepts, so each environment is a
subset of the moved factors (2^n for small n), asked of the resolver once, and a shortest path picks:

1. the smallest largest step (single factors wherever any order allows it);
2. the fewest steps that move several factors;
3. torch and python moved alone (the factors users ask about);
4. the fewest factors inside grouped steps;
5. pins added early and removed late (an unpinned numpy floats with every other step: python 3.11 -> 3.10
   silently takes numpy 2.4 -> 2.2, so moving the candidate's ``numpy<2`` first keeps that out of the python
   step);
6. the factors' own order (``attribution.PACKAGE_FACTORS``, then ``extra``), so plans are reproducible.

Runtime factors follow as single steps. Stdlib and ``packaging`` only: nox's own Python imports this module.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import os
import subprocess
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from harness.errors import HarnessError
from harness.matrix import venvs
from harness.matrix.attribution import PACKAGE_FACTORS, RUNTIME_FACTORS, Order, RuntimeSettings, Step
from harness.matrix.spec import Cell

__all__ = [
    "AttributionPlanError",
    "REPLANS",
    "Resolver",
    "Walk",
    "package_factors",
    "plan_path",
    "uv_reason",
    "uv_resolver",
]

#: resolves(cell) -> None when the cell's requirements install together, else the resolver's one-line reason
Resolver = Callable[[Cell], Optional[str]]

#: the factors users ask about most: a plan that moves them inside a group is worse than one that does not
_ISOLATE = ("torch", "python")
#: a uv dry run normally takes seconds; one that hangs (a dead network) must not stall the plan forever
_UV_TIMEOUT_S = 300.0
#: how many times one walk is planned again around a step that installs but does not run: each try costs a
#: virtualenv build and a failed run (minutes), and three cover moving the remaining factors around one that fails
REPLANS = 3


class AttributionPlanError(HarnessError):
    """No walk from the baseline cell to the candidate cell installs (the resolver rejects an end point)."""


def package_factors() -> Tuple[Tuple[str, str], ...]:
    """``(name, Cell attribute)`` of every package factor, in preference order: ``PACKAGE_FACTORS`` + ``extra``."""
    if any(attr == "extra" for _, attr in PACKAGE_FACTORS):
        return tuple(PACKAGE_FACTORS)
    return (*PACKAGE_FACTORS, ("extra", "extra"))


# -- states: which factors have moved, and whether that environment installs ------------------------------------


class _States:
    """Environments as bitmasks over the differing factors; each one's resolver answer asked at most once."""

    def __init__(self, base: Cell, cand: Cell, factors: Sequence[Tuple[str, str]], resolves: Resolver) -> None:
        self.base, self.cand, self.factors = base, cand, tuple(factors)
        self.full = (1 << len(self.factors)) - 1
        self._resolves = resolves
        self._answers: Dict[int, Optional[str]] = {}

    def names(self, mask: int) -> Tuple[str, ...]:
        return tuple(name for i, (name, _) in enumerate(self.factors) if mask >> i & 1)

    def cell(self, mask: int, step_id: Optional[str] = None) -> Cell:
        """The baseline with the factors in ``mask`` set to the candidate's values."""
        moved = {attr: getattr(self.cand, attr) for i, (_, attr) in enumerate(self.factors) if mask >> i & 1}
        return dataclasses.replace(self.base, **moved, id=step_id, matrix="attribute")

    def problem(self, mask: int) -> Optional[str]:
        """None when the environment installs, else the resolver's line (cached: one call per environment)."""
        if mask not in self._answers:
            answer = self._resolves(self.cell(mask))
            self._answers[mask] = None if answer is None else " ".join(str(answer).split()) or "does not install"
        return self._answers[mask]

    def known_bad(self, mask: int) -> bool:
        return self._answers.get(mask, None) is not None

    def unpinned(self, mask: int) -> int:
        """How many factors have no pin in this environment (their version floats with every other change)."""
        cell = self.cell(mask)
        return sum(1 for _, attr in self.factors if not getattr(cell, attr))


# -- the search ---------------------------------------------------------------------------------------------------


def _submasks(mask: int, largest: int) -> List[int]:
    """Every non-empty subset of ``mask`` with at most ``largest`` bits."""
    out, sub = [], mask
    while sub:
        if bin(sub).count("1") <= largest:
            out.append(sub)
        sub = (sub - 1) & mask
    return out


def _step_cost(states: _States, sub: int, target: int) -> Tuple[int, int, int, int]:
    """Additive cost of one step: (grouped step?, torch/python inside a group, factors grouped, unpinned after)."""
    size = bin(sub).count("1")
    grouped = size > 1
    isolated_lost = sum(1 for n in states.names(sub) if n in _ISOLATE) if grouped else 0
    floating = states.unpinned(target) if target != states.full else 0
    return (int(grouped), isolated_lost, size if grouped else 0, floating)


def _best_path(states: _States, largest: int) -> Optional[List[int]]:
    """The cheapest walk whose steps move at most ``largest`` factors each (Dijkstra; states asked when popped)."""
    heap: List[Tuple[int, int, int, int, Tuple[Tuple[int, ...], ...], Tuple[int, ...]]] = [(0, 0, 0, 0, (), (0,))]
    settled = set()
    while heap:
        *cost, order, path = heapq.heappop(heap)
        mask = path[-1]
        if mask in settled:
            continue
        settled.add(mask)
        if mask == states.full:
            return list(path)
        if mask and states.problem(mask) is not None:
            continue
        rest = states.full & ~mask
        for sub in _submasks(rest, largest):
            target = mask | sub
            if target in settled or states.known_bad(target):
                continue
            step = _step_cost(states, sub, target)
            key = tuple(i for i in range(len(states.factors)) if sub >> i & 1)
            heapq.heappush(heap, (*(a + b for a, b in zip(cost, step)), order + (key,), path + (target,)))  # type: ignore[misc]  # 4 costs, unpacked: mypy cannot count them
    return None


def _group_note(states: _States, before: int, sub: int) -> str:
    """Why ``sub`` moves together: every finer alternative from ``before`` (none installs on a best walk), with
    the resolver's own line."""
    alternatives = sorted(_submasks(sub, bin(sub).count("1") - 1),
                          key=lambda s: (bin(s).count("1"), [i for i in range(len(states.factors)) if s >> i & 1]))
    reasons = []
    for alt in alternatives:
        problem = states.problem(before | alt)
        if problem is not None:
            why = problem if problem.startswith("installs but") else f"does not install ({problem})"
            reasons.append(f"{' + '.join(states.names(alt))} alone {why}")
    return "grouped: " + "; ".join(reasons)


def _check_ends(states: _States) -> None:
    base_id, cand_id = states.base.cell_id, states.cand.cell_id
    for mask, which in ((states.full, "the candidate"), (0, "the baseline")):
        problem = states.problem(mask)
        if problem is not None:
            raise AttributionPlanError(
                f"cannot plan attribution {base_id} -> {cand_id}: {which} does not install ({problem})")


def plan_path(
    base: Cell,
    base_runtime: RuntimeSettings,
    cand: Cell,
    cand_runtime: RuntimeSettings,
    resolves: Resolver,
    start: int = 0,
) -> List[Step]:
    """The walk from baseline to candidate with the finest steps any order allows, numbered from ``start``;
    ``AttributionPlanError`` when the resolver rejects either end's own pins."""
    steps = [Step(start, (), dataclasses.replace(base, id=f"step{start:02d}-baseline", matrix="attribute"), base_runtime)]
    differing = [(n, a) for n, a in package_factors() if getattr(base, a) != getattr(cand, a)]
    current = steps[0].cell
    if differing:
        states = _States(base, cand, differing, resolves)
        _check_ends(states)
        path: Optional[List[int]] = None
        for largest in range(1, len(differing) + 1):
            path = _best_path(states, largest)
            if path is not None:
                break
        assert path is not None  # the one step straight to the (installable) candidate always exists
        for before, after in zip(path, path[1:]):
            sub = after & ~before
            names = states.names(sub)
            step_id = f"step{start + len(steps):02d}-" + "-".join(names)
            note = _group_note(states, before, sub) if len(names) > 1 else ""
            current = states.cell(after, step_id)
            steps.append(Step(start + len(steps), names, current, base_runtime, note))
    runtime = base_runtime
    for name in RUNTIME_FACTORS:
        if getattr(base_runtime, name) == getattr(cand_runtime, name):
            continue
        runtime = dataclasses.replace(runtime, **{name: getattr(cand_runtime, name)})
        steps.append(Step(start + len(steps), (name,), current, runtime))
    return steps


# -- planning again around an environment that installs but does not run ----------------------------------------


def _environment(cell: Cell) -> Tuple[str, Tuple[str, ...]]:
    return cell.python, tuple(cell.requirements())


class Walk:
    """The steps still to run, planned again (at most ``REPLANS`` times) around a package step that installs but
    does not run: the resolver cannot see an undeclared incompatibility. ``orders`` keeps each order tried and why."""

    def __init__(self, base: Cell, base_runtime: RuntimeSettings, cand: Cell, cand_runtime: RuntimeSettings,
                 resolves: Resolver, replans: int = REPLANS) -> None:
        self._failed: Dict[Tuple[str, Tuple[str, ...]], str] = {}
        self._args = (cand, cand_runtime)
        self._resolves, self._left = resolves, replans
        self.steps = plan_path(base, base_runtime, cand, cand_runtime, self.resolves)
        self.orders = [Order(self._order())]

    def resolves(self, cell: Cell) -> Optional[str]:
        """The resolver's answer, or why an environment that installed did not run."""
        return self._failed.get(_environment(cell)) or self._resolves(cell)

    def _order(self) -> List[str]:
        return [s.name for s in self.steps[1:]]

    def failed(self, index: int, reason: str) -> bool:
        """Step ``index`` installed but did not run: True when the rest was planned again around it (never for the
        baseline, the candidate's environment, a runtime step, or with no re-plan left)."""
        step, cand = self.steps[index], self._args[0]
        if index == 0 or step.factors[0] in RUNTIME_FACTORS or _environment(step.cell) == _environment(cand):
            return False
        problem = f"installs but does not run ({(reason.strip().splitlines() or ['no reason given'])[0]})"
        if self._left <= 0:
            self.orders[-1].rejected = f"{step.name} {problem}; no re-plan left, so its change is in the next step's number"
            return False
        self._left -= 1
        self._failed[_environment(step.cell)] = problem
        self.orders[-1].rejected = f"{step.name} {problem}"
        before = self.steps[index - 1]
        self.steps = self.steps[:index] + plan_path(before.cell, before.runtime, *self._args, self.resolves, index - 1)[1:]
        self.orders.append(Order(self._order()))
        return True


# -- the resolver: a `uv pip compile` dry run, installing nothing ------------------------------------------------


def uv_reason(stderr: str, returncode: int) -> str:
    """The one line of a failed ``uv pip compile`` that names the conflict (its ``cause:``, not the summary)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        text = line.lstrip("╰─▶ ").strip()
        if text.startswith("cause: "):
            return text[len("cause: "):].strip()
        if text.startswith("Because "):
            return text
    plain = [line for line in lines if not line.startswith("hint:")]
    if plain or lines:
        return (plain or lines)[-1]
    return f"uv pip compile exited {returncode}"


def uv_resolver(
    cache: Optional[Dict[str, Optional[str]]] = None,
    *,
    uv: Optional[str] = None,
    timeout_s: float = _UV_TIMEOUT_S,
) -> Resolver:
    """``uv pip compile`` of a cell's requirements against the index and wheels cells install from: None when
    they resolve (or uv is missing: the install decides), else uv's reason; ``cache`` may be shared."""
    answers: Dict[str, Optional[str]] = {} if cache is None else cache

    def resolves(cell: Cell) -> Optional[str]:
        exe = uv or venvs.find_uv()
        if exe is None:
            return None
        index = os.environ.get(venvs.TORCH_INDEX_VARIABLE)
        env = dict(os.environ)
        if Path(venvs.LOCAL_WHEELS).is_dir():
            env.setdefault("UV_FIND_LINKS", venvs.LOCAL_WHEELS)
        requirements = cell.requirements()
        key = json.dumps([cell.python, requirements, index, env.get("UV_FIND_LINKS")])
        if key in answers:
            return answers[key]
        cmd = [exe, "pip", "compile", "-", "--quiet", "--python-version", cell.python, "--no-header",
               *(["--index", index] if index else [])]
        try:
            proc = subprocess.run(cmd, input="\n".join(requirements) + "\n", capture_output=True, text=True,
                                  env=env, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            answers[key] = f"uv pip compile did not finish in {timeout_s:g} s"
            return answers[key]
        except OSError:
            return None  # uv vanished or cannot run: as if missing, let the install decide
        answers[key] = None if proc.returncode == 0 else uv_reason(proc.stderr, proc.returncode)
        return answers[key]

    return resolves
