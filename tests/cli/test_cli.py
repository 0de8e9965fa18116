"""The command line as users call it: exit codes 0 (pass), 1 (drift), 2 (bad input), and its messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.testing import add_noise_to_one, perturb_results

from conftest import ROOT


def test_compare_pass_exit_0_and_table(tiny_results: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["compare", str(tiny_results), str(tiny_results)]) == 0
    out = capsys.readouterr().out
    assert "harness compare: PASS" in out and "tiny-bi-encoder" in out and "tiny-cross-encoder" in out


def test_compare_drift_exit_1_explains(tiny_results: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    noisy = perturb_results(tiny_results, tmp_path / "noisy.parquet", "tiny-bi-encoder", vectors=add_noise_to_one(5, 1e-3))
    report = tmp_path / "verdict.json"
    assert main(["compare", str(tiny_results), str(noisy), "--json", str(report)]) == 1
    out = capsys.readouterr().out
    assert "FAIL tiny-bi-encoder (tolerance class fp32)" in out
    assert "max_abs_diff" in out and "exceed atol=1e-05" in out and "worst items" in out
    assert "would pass with" in out and "harness baseline update" in out
    data = json.loads(report.read_text())
    assert data["status"] == "fail"


def test_compare_bad_input_exit_2_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bogus = tmp_path / "bogus.parquet"
    bogus.write_text("hello")
    assert main(["compare", str(bogus), str(bogus)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(bogus) in err and len(err.splitlines()) == 1


def test_compare_and_explain_take_uris(tiny_results: Path, capsys: pytest.CaptureFixture) -> None:
    """Results gathered in object storage are compared where they lie: the CLI hands URIs to pyarrow as they
    are (a ``Path`` would fold ``file:///x`` into ``file:/x``)."""
    uri = tiny_results.resolve().as_uri()
    assert main(["compare", uri, uri]) == 0
    assert "harness compare: PASS" in capsys.readouterr().out
    assert main(["explain", uri, uri]) == 0
    assert main(["compare", uri, "nosuchscheme://bucket/run.parquet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: nosuchscheme://bucket/run.parquet") and len(err.splitlines()) == 1


def test_policy_file_overrides_and_bad_policy(tiny_results: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    noisy = perturb_results(tiny_results, tmp_path / "noisy.parquet", "tiny-bi-encoder", vectors=add_noise_to_one(5, 1e-4))
    loose = tmp_path / "loose.toml"
    loose.write_text('[models."tiny-bi-encoder"]\natol = 1e-2\nmin_cosine = 0.99\nmin_topk_order_agreement = 0.9\nmin_topk_set_agreement = 0.9\n')
    assert main(["compare", str(tiny_results), str(noisy), "--policy", str(loose)]) == 0
    typo = tmp_path / "typo.toml"
    typo.write_text("[classes.fp32]\natoll = 1\n")
    assert main(["compare", str(tiny_results), str(noisy), "--policy", str(typo)]) == 2
    assert "unknown key(s) atoll" in capsys.readouterr().err


def test_python_dash_m_entry_point() -> None:
    out = subprocess.run([sys.executable, "-m", "harness", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "embedding-harness" in out.stdout


def test_run_rejects_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "--models", "tiny", "--batch-size", "0", "--out", str(tmp_path / "x.parquet")]) == 2
    assert "--batch-size: 0 is out of range" in capsys.readouterr().err
    assert main(["run", "--models", "nope", "--out", str(tmp_path / "x.parquet")]) == 2
    assert "unknown model id 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()


@pytest.mark.slow
def test_a_closed_pipe_is_quiet_and_never_the_drift_code() -> None:
    """`harness compare A B | head -1` on a pass: no BrokenPipeError traceback, and not exit 1."""
    tiny = "fixtures/baselines/tiny-cpu-float32.parquet"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "compare", tiny, tiny], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone before the verdict is printed (as `| head -1` after its line)
    err = proc.stderr.read().decode() if proc.stderr else ""
    code = proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert code in (0, 141), code
