"""One verdict whichever door: the same pairs of results judged by every way in, with the same outcome.

Doors: ``harness compare`` (exit code and ``--json``), ``harness check`` (re-runs a baseline's models; slow), the
pytest plugin (``--harness-baseline B --harness-candidate C``), ``assert_embeddings_close`` /
``assert_rerank_stable`` on the two files and on arrays read from them, and the matrix report (a cell directory
with ``cell.json`` + ``results.parquet``). Per model, every door must give the same status; doors that show a
class, limits, worst offender and "would pass with" (the JSON verdicts, the assertion messages) must show the
same ones; NaN and another corpus are bad input everywhere (exit 2, a ``HarnessError``, an ``error`` cell).

Pairs: identical; 5e-6 noise on every vector; 2e-5 on one element; two near-neighbour documents' vectors
swapped (a query's top-k order changes); one bit flipped in a binary model; two rerank scores swapped; a NaN;
another corpus. The fast grid uses small synthetic files (written as the runner writes them); the slow one
(``harness check``) perturbs the shipped tiny baseline and re-runs the tiny models against it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import pytest

from harness.assertions import assert_embeddings_close, assert_rerank_stable
from harness.errors import HarnessError
from harness.matrix import spec as hm
from harness.matrix.cells import CellState, write_cell_state
from harness.matrix.collect import collect_matrix
from harness.results import ModelRows, ResultsFile, write_results
from harness.testing import bf16_round, perturb_results

from conftest import ROOT

pytest_plugins = ["pytester"]

BI, CE, QB = "bi", "ce", "qb"
TINY = ROOT / "fixtures" / "baselines" / "tiny-cpu-float32.parquet"
TBI, TCE = "tiny-bi-encoder", "tiny-cross-encoder"
N_DOCS, N_QUERIES, DIM, BITS = 40, 6, 16, 64
BAD = "bad-input"


# -- outcomes as each door shows them ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One model's outcome through one door; ``None`` where the door does not show it (a passing assertion)."""

    status: str  # pass, fail, bad-input
    cls: Optional[str] = None
    limits: Optional[Dict[str, str]] = None  # as the Tolerance line prints them: key -> f"{value:g}"
    worst: Optional[str] = None
    would: Optional[Dict[str, float]] = None
    text: str = ""  # the message (bad input: the error)
    scenarios: Optional[str] = None  # the retrieval scenarios as the JSON verdict holds them (doors that show them)


def _from_json(model: Dict[str, Any]) -> Outcome:
    return Outcome(
        status=model["status"], cls=model["tolerance_class"],
        limits={k: f"{float(v):g}" for k, v in model["tolerance"].items() if k not in ("name", "description")},
        worst=model["offenders"][0]["item_id"] if model["offenders"] else None,
        would={k: float(v) for k, v in model["min_passing"].items()},
        scenarios=json.dumps(model.get("scenarios"), sort_keys=True),
    )


_TOLERANCE = re.compile(r"^Tolerance: class (\S+)(?: for model '[^']*')? \([^)]*\): (.*)$", re.M)
_WORST = re.compile(r"^(?:Greatest absolute difference: \S+ at (?:text|pair) '([^']*)'|  text '([^']*)': )", re.M)
_WOULD = re.compile(r"^Would pass with: (.*)$", re.M)


def _from_message(text: str) -> Outcome:
    """What an assertion message says: the class and limits (Tolerance line), the worst offender (the greatest
    absolute difference, or the first text that moved most), the limits it would pass with."""
    tol = _TOLERANCE.search(text)
    assert tol, text
    limits = dict(pair.split("=") for pair in tol.group(2).split(", "))
    worst = _WORST.search(text)
    would = _WOULD.search(text)
    return Outcome(
        status="fail", cls=tol.group(1), limits=limits, worst=next(g for g in worst.groups() if g) if worst else None,
        would={k: float(v) for k, v in (item.rsplit(" ", 1) for item in would.group(1).split(", "))} if would else None,
        text=text,
    )


def _assertion(check: Callable[[], None]) -> Outcome:
    try:
        check()
    except HarnessError as err:  # NaN in an array is both: bad input first
        return Outcome(BAD, text=str(err))
    except AssertionError as err:
        return _from_message(str(err))
    return Outcome("pass")


# -- the doors ----------------------------------------------------------------------------------------------------


def door_compare(base: Path, cand: Path, out: Path, capsys: pytest.CaptureFixture) -> Tuple[int, Dict[str, Outcome]]:
    """``harness compare BASE CAND --json``: the exit code, and each model's verdict from the JSON."""
    from harness.cli import main

    report = out / "compare.json"
    code = main(["compare", str(base), str(cand), "--json", str(report)])
    captured = capsys.readouterr()
    if code == 2:
        return code, {"*": Outcome(BAD, text=captured.err)}
    return code, {m["model_id"]: _from_json(m) for m in json.loads(report.read_text())["models"]}


def door_matrix(base: Path, cand: Path, out: Path) -> Tuple[str, Dict[str, Outcome]]:
    """The matrix report of one cell whose results are ``cand``: the cell status and its models' verdicts."""
    out.mkdir(parents=True, exist_ok=True)
    toml = out / "matrix.toml"
    toml.write_text('[matrix.m]\nmodels = "tiny"\nbaseline = "tiny-cpu-float32"\n\n[[matrix.m.cells]]\npython = "3.11"\n'
                    'torch = "2.13.0"\nsentence-transformers = "6.2.0"\ntransformers = "5.23.0"\n', encoding="utf-8")
    matrix = hm.load_matrix_file(toml).select("m")
    cell_dir = out / "runs" / matrix.cells[0].cell_id
    write_cell_state(cell_dir, CellState.from_dict({"status": "ok", "setup_s": 1.0, "run_s": 1.0}))
    shutil.copy(cand, cell_dir / "results.parquet")
    report = collect_matrix(matrix, out / "runs", baseline=base)
    cell = report.cells[0]
    if cell.comparison is None:
        return cell.status.value, {"*": Outcome(BAD, text=cell.reason)}
    return cell.status.value, {m["model_id"]: _from_json(m) for m in cell.comparison["models"]}


def door_files(base: Path, cand: Path, models: Dict[str, str]) -> Dict[str, Outcome]:
    """The assertions on the two files, one model at a time."""
    out = {}
    for model, kind in models.items():
        check = assert_rerank_stable if kind == "rerank" else assert_embeddings_close
        out[model] = _assertion(functools.partial(check, str(cand), str(base), model_id=model))
    return out


def door_arrays(base: Path, cand: Path, models: Dict[str, str]) -> Dict[str, Outcome]:
    """The assertions on arrays read from the two files (ids, roles and query ids passed along)."""
    out = {}
    b, c = ResultsFile(base), ResultsFile(cand)
    for model, kind in models.items():
        if kind == "rerank":
            rb, rc = b.rerank(model), c.rerank(model)
            order = np.argsort(rc["item_id"])[np.argsort(np.argsort(rb["item_id"]))]  # candidate in baseline order
            out[model] = _assertion(functools.partial(assert_rerank_stable, rc["score"][order], rb["score"],
                                                      rb["query_id"], ids=rb["item_id"], model_id=model))
            continue
        ids, roles, vb = b.embeddings(model)
        cids, _, vc = c.embeddings(model)
        order = np.argsort(cids)[np.argsort(np.argsort(ids))]
        out[model] = _assertion(functools.partial(assert_embeddings_close, vc[order], vb, model_id=model, ids=ids,
                                                  roles=list(roles), precision=b.meta["models"][model].get("precision")))
    return out


def door_plugin(pytester: pytest.Pytester, base: Path, cand: Path) -> Tuple[int, Dict[str, Outcome]]:
    """``pytest -m harness --harness-baseline BASE --harness-candidate CAND``: exit code, one item per model."""
    result = pytester.runpytest("-m", "harness", "--harness-baseline", str(base), "--harness-candidate", str(cand))
    out = {}
    for report in result.reprec.getreports("pytest_runtest_logreport"):
        model = report.nodeid.split("::")[-1]
        text = str(report.longrepr) if report.failed else ""
        if report.when == "setup" and report.failed:  # bad input is an error of the item (its setup), not a failure
            assert text.startswith("harness error: "), text
            out[model] = Outcome(BAD, text=text)
            continue
        if report.when != "call":
            continue
        if report.passed:
            out[model] = Outcome("pass")
        elif text.startswith("harness error: "):
            out[model] = Outcome(BAD, text=text)
        else:
            out[model] = _from_message(text)
    return int(result.ret), out


# -- agreement ----------------------------------------------------------------------------------------------------


def assert_agree(doors: Dict[str, Dict[str, Outcome]], models: List[str], bad_phrases: Tuple[str, ...] = ()) -> None:
    """Every door gives each model the same status; every door that shows class, limits, worst offender and
    would-pass limits shows the same ones (limits: each one a message prints equals the JSON's)."""
    for model in models:
        seen = {door: found.get(model, found.get("*")) for door, found in doors.items()}
        assert all(o is not None for o in seen.values()), (model, seen)
        statuses = {door: o.status for door, o in seen.items()}
        assert len(set(statuses.values())) == 1, (model, statuses)
        if statuses["compare"] == BAD:
            for door, outcome in seen.items():
                for phrase in bad_phrases:
                    assert phrase in outcome.text, (model, door, phrase, outcome.text)
            continue
        reference = seen["compare"]
        for door, outcome in seen.items():
            if outcome.cls is None:  # a passing assertion shows nothing more
                continue
            assert outcome.cls == reference.cls, (model, door, outcome.cls, reference.cls)
            if outcome.scenarios is not None:  # "must I re-embed?": the same through every door that shows it
                assert outcome.scenarios == reference.scenarios, (model, door, outcome.scenarios, reference.scenarios)
            assert outcome.worst == reference.worst, (model, door, outcome.worst, reference.worst)
            for key, value in outcome.limits.items():
                assert reference.limits[key] == value, (model, door, key, value, reference.limits[key])
            assert set(outcome.would) == set(reference.would), (model, door, outcome.would, reference.would)
            for key, value in outcome.would.items():
                assert value == pytest.approx(reference.would[key], rel=6e-3, abs=1e-12), (model, door, key)


def assert_exit_codes(compare: int, plugin: int, matrix: str, check: Optional[int] = None) -> None:
    """One outcome, spelled in each door's own words: 0/1/2, pytest's 0/1, a cell's pass/fail/error."""
    assert plugin == (0 if compare == 0 else 1), (compare, plugin)
    assert matrix == {0: "pass", 1: "fail", 2: "error"}[compare], (compare, matrix)
    if check is not None:
        assert check == compare, (compare, check)


# -- the fast grid: synthetic results files, no model runs ---------------------------------------------------------


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@dataclasses.dataclass
class Run:
    """One run's arrays: a float bi-encoder, a binary bi-encoder over the same texts, a cross-encoder."""

    ids: List[str]
    roles: List[str]
    vectors: np.ndarray
    bits: np.ndarray
    pairs: List[str]
    pair_queries: List[str]
    scores: np.ndarray
    corpus: str = "c" * 64
    dtype: str = "float32"

    def copy(self, **changes: Any) -> Run:
        return dataclasses.replace(self, vectors=self.vectors.copy(), bits=self.bits.copy(), scores=self.scores.copy(),
                                   **changes)

    def write(self, path: Path) -> Path:
        rows = [
            ModelRows(BI, "embed", self.ids, roles=self.roles, vectors=self.vectors),
            ModelRows(QB, "embed", self.ids, roles=self.roles, vectors=self.bits),
            ModelRows(CE, "rerank", self.pairs, query_ids=self.pair_queries,
                      passage_ids=[p.split("|")[1] for p in self.pairs], scores=self.scores,
                      ranks=np.tile(np.arange(1, 6, dtype=np.int32), len(self.pairs) // 5)),
        ]
        meta = {
            "corpus": {"name": "judge", "version": "1", "sha256": self.corpus},
            "fingerprint": {"device": "cpu", "device_type": "cpu", "dtype": self.dtype, "python": "3.11",
                            "packages": {"torch": "2.13.0", "sentence-transformers": "6.2.0"}},
            "run": {"device": "cpu", "dtype": self.dtype, "batch_size": 32},
            "models": {
                BI: {"kind": "bi-encoder", "status": "ok", "dim": DIM, "vector_dtype": "float32"},
                QB: {"kind": "bi-encoder", "status": "ok", "dim": BITS // 8, "vector_dtype": "int8", "precision": "binary"},
                CE: {"kind": "cross-encoder", "status": "ok"},
            },
        }
        return write_results(path, rows, meta)


def _hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    xor = np.bitwise_xor(a.view(np.uint8)[:, None], b.view(np.uint8)[None, :])
    return np.unpackbits(xor, axis=-1).sum(axis=-1).astype(np.int64)


def _base_run() -> Run:
    rng = np.random.default_rng(11)
    docs = rng.standard_normal((N_DOCS, DIM))
    queries = rng.standard_normal((N_QUERIES, DIM))
    docs[0] = queries[0] + 0.05 * rng.standard_normal(DIM)  # d000 and d001: query q00's two nearest documents,
    docs[1] = docs[0] + 0.01 * rng.standard_normal(DIM)  # near each other (scores ~1e-3 apart, far above ties)
    floats = rng.standard_normal((N_DOCS + N_QUERIES, BITS))
    packed = (np.packbits(floats > 0, axis=1).astype(np.int16) - 128).astype(np.int8)
    pair_queries = [f"q{q:02d}" for q in range(4) for _ in range(5)]
    scores = rng.permutation(np.linspace(-4.0, 4.0, 20)).astype(np.float32)
    return Run(ids=[f"d{i:03d}" for i in range(N_DOCS)] + [f"q{i:02d}" for i in range(N_QUERIES)],
               roles=["document"] * N_DOCS + ["query"] * N_QUERIES, vectors=_unit(np.vstack([docs, queries])),
               bits=packed, pairs=[f"{q}|p{i % 5}" for i, q in enumerate(pair_queries)], pair_queries=pair_queries,
               scores=scores)


def _far_document(run: Run, k: int = 10) -> int:
    """A document no query ranks near its top-k by Hamming distance: one bit flipped there changes no list."""
    d = _hamming(run.bits[:N_DOCS], run.bits[N_DOCS:])  # (documents, queries)
    kth = np.sort(d, axis=0)[k - 1]
    margin = (d - kth[None, :]).min(axis=1)
    row = int(np.argmax(margin))
    assert margin[row] >= 2, margin
    return row


def _noise(run: Run) -> Run:
    out = run.copy()
    out.vectors = (out.vectors + np.random.default_rng(5).uniform(-5e-6, 5e-6, out.vectors.shape)).astype(np.float32)
    return out


def _one_element(run: Run) -> Run:
    out = run.copy()
    out.vectors[5, 3] += np.float32(2e-5)
    return out


def _swap_neighbours(run: Run) -> Run:
    out = run.copy()
    out.vectors[[0, 1]] = out.vectors[[1, 0]]
    return out


def _flip_bit(run: Run) -> Run:
    out = run.copy()
    out.bits[_far_document(run), 0] ^= np.int8(1)
    return out


def _swap_scores(run: Run) -> Run:
    out = run.copy()
    out.scores[[0, 1]] = out.scores[[1, 0]]
    return out


def _nan(run: Run) -> Run:
    out = run.copy()
    out.vectors[3, 2] = np.nan
    return out


def _bf16_run(run: Run) -> Run:
    """The same model run at bfloat16: every float output rounded to bf16 and the run's dtype recorded as such."""
    out = run.copy(dtype="bfloat16")
    out.vectors, out.scores = bf16_round(out.vectors), bf16_round(out.scores)
    return out


KINDS = {BI: "embedding", QB: "quantized", CE: "rerank"}
#: case -> (candidate from the baseline run, expected status per model, models compared, bad-input phrases)
GRID: Dict[str, Tuple[Callable[[Run], Run], Dict[str, str], List[str], Tuple[str, ...]]] = {
    "identical": (lambda r: r.copy(), {BI: "pass", QB: "pass", CE: "pass"}, [BI, QB, CE], ()),
    "noise-5e-6": (_noise, {BI: "pass", QB: "pass", CE: "pass"}, [BI, QB, CE], ()),
    "one-element-2e-5": (_one_element, {BI: "fail", QB: "pass", CE: "pass"}, [BI, QB, CE], ()),
    "near-neighbours-swapped": (_swap_neighbours, {BI: "fail"}, [BI, QB, CE], ()),
    "one-bit-flipped": (_flip_bit, {QB: "pass"}, [BI, QB, CE], ()),
    "rerank-pair-swapped": (_swap_scores, {CE: "fail", BI: "pass"}, [BI, QB, CE], ()),
    "nan": (_nan, {BI: BAD}, [BI], ("non-finite", "'d003'")),
    # a precision downgrade is judged at the baseline's class (fp32) through every door, never passed at bf16
    "bf16-downgrade": (_bf16_run, {BI: "fail", CE: "fail"}, [BI, CE], ()),
    "other-corpus": (lambda r: r.copy(corpus="0" * 64), {BI: BAD, QB: BAD, CE: BAD}, [BI, QB, CE], ("corpus differs",)),
}


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """The baseline and every case's candidate, written once; the doors that need no pytester, run once."""
    root = tmp_path_factory.mktemp("one-judge")
    run = _base_run()
    base = run.write(root / "baseline.parquet")
    cases = {}
    for name, (change, _, _, _) in GRID.items():
        (root / name).mkdir()
        cases[name] = change(run).write(root / name / "candidate.parquet")
    return {"root": root, "base": base, "cases": cases, "run": run}


def test_the_grid_is_what_it_says(grid: Dict[str, Any]) -> None:
    """The pairs differ as described: the swapped documents are q00's two nearest, ~1e-3 apart."""
    run: Run = grid["run"]
    scores = run.vectors[N_DOCS] @ run.vectors[:N_DOCS].T
    assert set(np.argsort(-scores)[:2]) == {0, 1} and 1e-5 < abs(scores[0] - scores[1]) < 5e-2
    flipped = ResultsFile(grid["cases"]["one-bit-flipped"]).embeddings(QB)[2]
    assert int(np.unpackbits(flipped.view(np.uint8) ^ run.bits.view(np.uint8)).sum()) == 1


@pytest.mark.parametrize("case", list(GRID))
def test_every_door_gives_one_verdict(case: str, grid: Dict[str, Any], pytester: pytest.Pytester,
                                      monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)  # the plugin by its entry point
    _, expected, models, phrases = GRID[case]
    base, cand = grid["base"], grid["cases"][case]
    out = cand.parent
    code, compare = door_compare(base, cand, out, capsys)
    cell, matrix = door_matrix(base, cand, out / "matrix")
    plugin_code, plugin = door_plugin(pytester, base, cand)
    wanted = {m: KINDS[m] for m in models}
    doors = {"compare": compare, "matrix": matrix, "plugin": plugin, "files": door_files(base, cand, wanted),
             "arrays": door_arrays(base, cand, wanted)}
    if case == "other-corpus":
        del doors["arrays"]  # arrays carry no corpus: nothing to refuse
    assert_agree(doors, models, phrases)
    assert_exit_codes(code, plugin_code, cell)
    for model, status in expected.items():
        assert doors["files"][model].status == status, (case, model, doors["files"][model])
    if case in ("one-element-2e-5", "near-neighbours-swapped", "rerank-pair-swapped"):
        model = {"rerank-pair-swapped": CE}.get(case, BI)
        assert compare[model].worst == {"one-element-2e-5": "d005", "near-neighbours-swapped": "d000",
                                        "rerank-pair-swapped": "q00|p0"}[case]
    if case == "near-neighbours-swapped":
        assert "Top-10 retrieval order agreement" in doors["arrays"][BI].text and "'q00'" in doors["arrays"][BI].text
    if case == "one-bit-flipped":
        assert compare[QB].worst == f"d{_far_document(grid['run']):03d}"


# -- the fp64 reference: the accuracy check through every door ------------------------------------------------------


FP32_ERROR = 3e-8  # the size of an fp32 run's error against fp64 (all-MiniLM-L6-v2: 3.3e-8 RMSE)


def _reference(run: Run) -> Tuple[np.ndarray, np.ndarray]:
    """The "exact" values the baseline run rounded: its vectors and scores off by fp32-sized errors."""
    rng = np.random.default_rng(17)
    return (run.vectors.astype(np.float64) + rng.normal(0, FP32_ERROR, run.vectors.shape),
            run.scores.astype(np.float64) + rng.normal(0, FP32_ERROR, run.scores.shape))


def _write_reference(run: Run, path: Path) -> Path:
    """An fp64 reference of ``run`` beside it (float64 vectors and scores, run dtype float64)."""
    vectors, scores = _reference(run)
    fp64 = dataclasses.replace(run, vectors=vectors, scores=scores, dtype="float64")
    rows = [ModelRows(BI, "embed", run.ids, roles=run.roles, vectors=vectors),
            ModelRows(QB, "embed", run.ids, roles=run.roles, vectors=run.bits),
            ModelRows(CE, "rerank", run.pairs, query_ids=run.pair_queries, passage_ids=[p.split("|")[1] for p in run.pairs],
                      scores=scores, ranks=np.tile(np.arange(1, 6, dtype=np.int32), len(run.pairs) // 5))]
    meta = ResultsFile(fp64.write(path.with_name("tmp.parquet"))).meta
    meta["models"][BI]["vector_dtype"] = "float64"
    return write_results(path, rows, meta)


def _rounded_again(run: Run) -> Run:
    """Another fp32 run: the reference rounded with errors of the baseline's own size (as accurate)."""
    vectors, scores = _reference(run)
    rng = np.random.default_rng(23)
    out = run.copy()
    out.vectors = (vectors + rng.normal(0, FP32_ERROR, vectors.shape)).astype(np.float32)
    out.scores = (scores + rng.normal(0, FP32_ERROR, scores.shape)).astype(np.float32)
    return out


def _planted_loss(run: Run) -> Run:
    """A loss atol 1e-5 lets through: +-3e-6 on every seventh dimension, +3e-6 on every score (no reorder)."""
    out = run.copy()
    signs = np.random.default_rng(29).choice([-1.0, 1.0], out.vectors.shape) * (np.arange(DIM) % 7 == 0)
    out.vectors = (out.vectors + 3e-6 * signs).astype(np.float32)
    out.scores = (out.scores + np.float32(3e-6)).astype(np.float32)
    return out


@pytest.mark.parametrize("case,change,expected", [("rounded-again", _rounded_again, "pass"),
                                                  ("planted-loss", _planted_loss, "fail")])
def test_every_door_judges_accuracy_against_the_reference(case: str, change: Callable[[Run], Run], expected: str,
                                                          tmp_path: Path, pytester: pytest.Pytester,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture) -> None:
    """With an fp64 reference beside the baseline every door runs the accuracy check: noise at the baseline's own
    level passes, a loss within atol fails (``accuracy_ratio``). Arrays carry no reference: that door is left out."""
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    run = _base_run()
    base = run.write(tmp_path / "baseline.parquet")
    _write_reference(run, tmp_path / "baseline.reference.parquet")
    (tmp_path / case).mkdir()
    cand = change(run).write(tmp_path / case / "candidate.parquet")
    code, compare = door_compare(base, cand, tmp_path / case, capsys)
    cell, matrix = door_matrix(base, cand, tmp_path / case / "matrix")
    plugin_code, plugin = door_plugin(pytester, base, cand)
    wanted = {BI: "embedding", CE: "rerank"}
    doors = {"compare": compare, "matrix": matrix, "plugin": plugin, "files": door_files(base, cand, wanted)}
    assert_agree(doors, [BI, CE])
    assert_exit_codes(code, plugin_code, cell)
    report = json.loads((tmp_path / case / "compare.json").read_text())
    for model in (BI, CE):
        assert doors["files"][model].status == expected, (case, model, doors["files"][model])
        verdict = next(m for m in report["models"] if m["model_id"] == model)
        ratio = next(c for c in verdict["checks"] if c["name"] == "accuracy_ratio")
        assert ratio["passed"] == (expected == "pass") and verdict["accuracy"]["measured"]["ratio"] == ratio["observed"]
        if expected == "fail":  # the tolerances alone would have passed it
            assert [c["name"] for c in verdict["checks"] if not c["passed"]] == ["accuracy_ratio"]
            assert "max_accuracy_ratio" in doors["files"][model].would and "Accuracy against fp64" in doors["files"][model].text


# -- the slow grid: harness check re-runs the tiny models against a perturbed copy of the tiny baseline ------------


def _uniform_noise(values: np.ndarray) -> np.ndarray:
    return (values + np.random.default_rng(3).uniform(-5e-6, 5e-6, values.shape)).astype(np.float32)


def _bump_one(values: np.ndarray) -> np.ndarray:
    out = values.copy()
    out[7, 4] += np.float32(2e-5)
    return out


def _swap_nearest_of_first_query(values: np.ndarray) -> np.ndarray:
    ids, roles, _ = ResultsFile(TINY).embeddings(TBI)
    docs, query = np.flatnonzero(roles == "document"), np.flatnonzero(roles == "query")[0]
    near = docs[np.argsort(-(values[docs] @ values[query]))[:2]]
    out = values.copy()
    out[near] = out[near[::-1]]
    return out


def _swap_first_two(scores: np.ndarray) -> np.ndarray:
    out = scores.copy()
    out[[0, 1]] = out[[1, 0]]
    return out


def _poison(values: np.ndarray) -> np.ndarray:
    out = values.copy()
    out[2, 0] = np.nan
    return out


def _other_corpus(meta: dict) -> dict:
    return {**meta, "corpus": {**meta["corpus"], "sha256": "0" * 64}}


#: case -> (perturb_results arguments for the baseline, models compared, bad-input phrases)
CHECKS: Dict[str, Tuple[Dict[str, Any], List[str], Tuple[str, ...]]] = {
    "identical": ({}, [TBI, TCE], ()),
    "noise-5e-6": ({"vectors": _uniform_noise}, [TBI, TCE], ()),
    "one-element-2e-5": ({"vectors": _bump_one}, [TBI, TCE], ()),
    "near-neighbours-swapped": ({"vectors": _swap_nearest_of_first_query}, [TBI, TCE], ()),
    "rerank-pair-swapped": ({"model_id": TCE, "scores": _swap_first_two}, [TBI, TCE], ()),
    "nan": ({"vectors": _poison}, [TBI], ("non-finite",)),
    "other-corpus": ({"meta_update": _other_corpus}, [TBI, TCE], ("corpus differs",)),
}


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """``harness check`` of every perturbed baseline (the tiny models run once per case, --out keeps the run)."""
    from harness.cli import main

    root = tmp_path_factory.mktemp("one-judge-check")
    done = {}
    for name, (change, _, _) in CHECKS.items():
        (root / name).mkdir()
        kwargs = dict(change)
        model = kwargs.pop("model_id", TBI)
        base = perturb_results(TINY, root / name / "baseline.parquet", model, **kwargs)
        cand, report, err = root / name / "candidate.parquet", root / name / "check.json", io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = main(["check", str(base), "--out", str(cand), "--json", str(report)])
        models = ({m["model_id"]: _from_json(m) for m in json.loads(report.read_text())["models"]} if code != 2
                  else {"*": Outcome(BAD, text=err.getvalue())})
        if not cand.exists():  # refused before running (another corpus): the other doors judge a clean run
            assert code == 2, (name, err.getvalue())
            shutil.copy(TINY, cand)
        done[name] = {"base": base, "cand": cand, "code": code, "models": models}
    return done


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CHECKS))
def test_harness_check_gives_the_same_verdict(case: str, checked: Dict[str, Any], pytester: pytest.Pytester,
                                              monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    _, models, phrases = CHECKS[case]
    run = checked[case]
    base, cand = run["base"], run["cand"]
    capsys.readouterr()
    code, compare = door_compare(base, cand, cand.parent, capsys)
    cell, matrix = door_matrix(base, cand, cand.parent / "matrix")
    plugin_code, plugin = door_plugin(pytester, base, cand)
    wanted = {TBI: "embedding", TCE: "rerank"}
    wanted = {m: wanted[m] for m in models}
    doors = {"compare": compare, "check": run["models"], "matrix": matrix, "plugin": plugin,
             "files": door_files(base, cand, wanted), "arrays": door_arrays(base, cand, wanted)}
    if case == "other-corpus":
        del doors["arrays"]
    assert_agree(doors, models, phrases)
    assert_exit_codes(code, plugin_code, cell, run["code"])
    expected = {"identical": 0, "one-element-2e-5": 1, "rerank-pair-swapped": 1, "near-neighbours-swapped": 1,
                "nan": 2, "other-corpus": 2}
    if case in expected:
        assert code == expected[case], (case, code)
