"""One way to re-run a baseline: ``harness check`` and ``pytest --harness-baseline`` build the same run from it.

The runner is replaced by a recorder (it writes a copy of the baseline, so the comparison that follows passes),
so these tests see exactly the ``RunOptions`` each door would run, in milliseconds.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any, List

import pytest

import harness.assertions  # imported here once: pytester drops modules an inner run imports first
import harness.compare.comparator  # noqa: F401
import harness.run.runner as runner
from harness.cli import main
from harness.errors import IncompatibleInputs
from harness.results import ResultsFile, rewrite_metadata

from conftest import ROOT

pytest_plugins = ["pytester"]

TINY = ROOT / "fixtures" / "baselines" / "tiny-cpu-float32.parquet"
BI, CE = "tiny-bi-encoder", "tiny-cross-encoder"


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    """The tiny baseline as if made with TF32 on, 2 threads, eager attention, batch 8, and a prompted bi-encoder."""
    meta = ResultsFile(TINY).meta
    run = {**meta["run"], "tf32_requested": True, "threads_requested": 2, "attn_implementation_requested": "eager",
           "batch_size": 8}
    source = {**meta["models"][BI]["source"], "query_prompt": "query: ", "batch_size": 4}
    models = {**meta["models"], BI: {**meta["models"][BI], "source": source}}
    return rewrite_metadata(TINY, tmp_path / "recorded.parquet", {**meta, "run": run, "models": models})


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> List[Any]:
    """Every ``RunOptions`` handed to the runner; each "run" writes a copy of the tiny baseline."""
    seen: List[Any] = []

    def record(options: Any) -> Any:
        seen.append(options)
        Path(options.out).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(TINY, options.out)
        return runner.RunSummary(path=Path(options.out), statuses={BI: "ok", CE: "ok"})

    monkeypatch.setattr(runner, "run", record)
    monkeypatch.chdir(tmp_path)  # no harness.toml here: both doors use the shipped registry and corpus
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    return seen


def _same_but_out(options: Any) -> Any:
    return dataclasses.replace(options, out=Path("candidate.parquet"))


def test_check_and_plugin_build_the_same_run(recorded: Path, runs: List[Any], tmp_path: Path,
                                             pytester: pytest.Pytester, capsys: pytest.CaptureFixture) -> None:
    assert main(["check", str(recorded), "--out", str(tmp_path / "check.parquet")]) == 0
    assert "harness compare: PASS" in capsys.readouterr().out
    pytester.runpytest("-m", "harness", "--harness-baseline", str(recorded)).assert_outcomes(passed=2)
    assert len(runs) == 2
    cli, plugin = runs
    assert _same_but_out(cli) == _same_but_out(plugin)
    assert (cli.device, cli.dtype, cli.batch_size, cli.tf32, cli.threads, cli.attn_implementation) == (
        "cpu", "float32", 8, True, 2, "eager")
    assert sorted(cli.models) == [BI, CE] and not cli.allow_network and not cli.trust_remote_code
    spec = cli.registry.models[BI]
    assert spec.query_prompt == "query: " and spec.batch_size == 4  # the model's recorded settings
    assert spec.path == str(ROOT / "fixtures" / "models" / BI)  # found where this checkout keeps it


def test_check_flags_override_what_the_baseline_recorded(recorded: Path, runs: List[Any], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "check.parquet"
    assert main(["check", str(recorded), "--out", str(out), "--device", "cuda", "--dtype", "float16",
                 "--tf32", "default", "--models", BI]) == 0
    options = runs[0]
    assert (options.device, options.dtype, options.tf32, options.threads, options.models) == ("cuda", "float16", None, 2, [BI])
    assert f"{BI}" in capsys.readouterr().out
    # a new --out: this test's fake run copied a baseline (with its provenance) to the first, which --out never replaces
    assert main(["check", str(recorded), "--out", str(tmp_path / "check2.parquet"), "--models", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {recorded}: the baseline has no model(s) nope") and len(err.splitlines()) == 1
    assert len(runs) == 1


def test_check_help_names_the_baseline_as_the_default(capsys: pytest.CaptureFixture) -> None:
    assert main(["check", "--help"]) == 0  # main returns argparse's exit code; only entrypoint() exits
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--device", "--dtype", "--batch-size", "--tf32", "--threads", "--attn-implementation"):
        assert f"{flag}" in text
    assert text.count("as the baseline recorded") >= 6
    assert "default: auto" not in text and "(default: 32)" not in text


def test_a_corpus_other_than_the_baselines_is_refused_before_running(tmp_path: Path, runs: List[Any],
                                                                      capsys: pytest.CaptureFixture) -> None:
    from harness.baselines import rerun_options

    meta = ResultsFile(TINY).meta
    other = rewrite_metadata(TINY, tmp_path / "other.parquet", {**meta, "corpus": {**meta["corpus"], "sha256": "0" * 64}})
    with pytest.raises(IncompatibleInputs, match="corpus differs: the baseline embedded harness-corpus 000000000000"):
        rerun_options(other, tmp_path / "x.parquet")
    assert main(["check", str(other), "--out", str(tmp_path / "x.parquet")]) == 2
    assert "pass the baseline's corpus with --corpus" in capsys.readouterr().err
    assert runs == [] and not (tmp_path / "x.parquet").exists()


def test_missing_baseline_by_name_says_where_it_looked(tmp_path: Path, runs: List[Any], capsys: pytest.CaptureFixture) -> None:
    assert main(["check", "no-such-baseline"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no-such-baseline.parquet: baseline 'no-such-baseline' not found" in err
    assert len(err.splitlines()) == 1 and runs == []


def test_check_verdict_is_the_first_line_of_stdout(recorded: Path, runs: List[Any], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    """Issue 26: ``harness check | head -1`` is the verdict; per-model and ``wrote`` lines are progress (stderr)."""
    out = tmp_path / "check.parquet"
    assert main(["check", str(recorded), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0].startswith("harness compare: PASS"), captured.out
    assert "wrote" not in captured.out
    assert f"wrote {out}" in captured.err
    assert main(["run", "--models", "tiny-bi-encoder", "--out", str(tmp_path / "run.parquet")]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "wrote " in captured.err


@pytest.mark.parametrize("bad", ["lots", -3, 2.5])
def test_a_recorded_setting_of_the_wrong_type_is_refused_before_running(tmp_path: Path, runs: List[Any], bad: Any,
                                                                       capsys: pytest.CaptureFixture) -> None:
    """A registry model's recorded encode settings are validated like the registry's own (a tampered baseline)."""
    meta = ResultsFile(TINY).meta
    source = {**meta["models"][BI]["source"], "batch_size": bad}
    tampered = rewrite_metadata(TINY, tmp_path / "tampered.parquet",
                                {**meta, "models": {**meta["models"], BI: {**meta["models"][BI], "source": source}}})
    assert main(["check", str(tampered), "--out", str(tmp_path / "c.parquet")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {tampered}") and "batch_size" in err and len(err.splitlines()) == 1
    assert not runs and not (tmp_path / "c.parquet").exists()
