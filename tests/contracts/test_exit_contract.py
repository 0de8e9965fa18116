"""The exit-code contract, door by door: 0 pass, 1 drift (only a verdict), 2 bad input (one line, nothing
written), 3 a bug (one line + a crash file), 130 interrupted. And no output ever replaces an input, a baseline,
a link or a device node.

Every case asserts the whole contract: the code, exactly one ``error:`` line on stderr, no traceback, and the
inputs byte-identical afterwards (``_unchanged``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from harness.cli import main
from harness.testing import perturb_results

from conftest import ROOT

pytest_plugins = ["pytester"]

TINY = ROOT / "fixtures" / "baselines" / "tiny-cpu-float32.parquet"
BI, CE = "tiny-bi-encoder", "tiny-cross-encoder"
RUN_PREFIXES = ("harness run: ", "harness check: ", "tiny-", "wrote ")


def _digests(*paths: Path) -> Dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.is_file()}


def _one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if not line.startswith(RUN_PREFIXES)]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err, err
    return lines[0]


def _bad_input(argv: List[str], capsys: pytest.CaptureFixture, *fragments: str) -> str:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, (code, captured.out, captured.err)
    line = _one_error_line(captured.err)
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


@pytest.fixture()
def pair(tmp_path: Path) -> Dict[str, Path]:
    """A baseline, a drifted candidate and a policy: copies, so the test can prove they are left untouched."""
    base = shutil.copy(TINY, tmp_path / "baseline.parquet")
    cand = perturb_results(TINY, tmp_path / "candidate.parquet", BI, vectors=lambda v: v + 1e-4)
    policy = tmp_path / "policy.toml"
    policy.write_text("[classes.fp32]\natol = 1e-5\n")
    return {"baseline": Path(base), "candidate": cand, "policy": policy}


# -- outputs never replace an input, a link or a device ------------------------------------------------------


@pytest.mark.parametrize("option,target", [("--json", "baseline"), ("--markdown", "candidate"), ("--junit", "policy")])
def test_an_output_onto_an_input_is_refused_before_any_work(option: str, target: str, pair: Dict[str, Path],
                                                            capsys: pytest.CaptureFixture) -> None:
    before = _digests(*pair.values())
    _bad_input(["compare", str(pair["baseline"]), str(pair["candidate"]), "--policy", str(pair["policy"]),
                option, str(pair[target])], capsys, option, "refusing to overwrite an input")
    assert _digests(*pair.values()) == before


def test_an_output_through_another_name_of_an_input_is_refused(pair: Dict[str, Path], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    hard = tmp_path / "other-name.json"
    os.link(pair["baseline"], hard)
    before = _digests(pair["baseline"])
    _bad_input(["compare", str(pair["baseline"]), str(pair["candidate"]), "--json", str(hard)], capsys, "is also the baseline")
    assert _digests(pair["baseline"]) == before


def test_run_out_onto_its_own_corpus_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text('{"id": "a", "text": "one"}\n{"id": "b", "text": "two"}\n')
    before = _digests(corpus)
    _bad_input(["run", "--models", "tiny", "--device", "cpu", "--corpus", str(corpus), "--out", str(corpus)], capsys,
               "is also the corpus")
    assert _digests(corpus) == before


def test_a_symlink_output_is_refused_and_left_a_link(pair: Dict[str, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    real = tmp_path / "real.json"
    real.write_text("keep me")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    _bad_input(["compare", str(pair["baseline"]), str(pair["candidate"]), "--json", str(link)], capsys, "symbolic link")
    assert link.is_symlink() and real.read_text() == "keep me"


@pytest.mark.parametrize("kind", ["character-device", "fifo"])
def test_a_device_node_output_is_refused_and_left_a_device(kind: str, pair: Dict[str, Path], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    """A node of our own (never /dev/null itself: a regression would replace the machine's device)."""
    node = tmp_path / "node"
    if kind == "fifo":
        os.mkfifo(node)
    else:
        try:
            os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # what /dev/null is
        except PermissionError:
            pytest.skip("making a device node needs root")
    _bad_input(["compare", str(pair["baseline"]), str(pair["candidate"]), "--json", str(node)], capsys, "not a regular file")
    mode = node.lstat().st_mode
    assert stat.S_ISCHR(mode) if kind != "fifo" else stat.S_ISFIFO(mode)


def test_atomic_output_never_renames_onto_a_link(tmp_path: Path) -> None:
    """The writers' own last line of defence, whatever door was used."""
    from harness.fsio import OutputRefused, write_text

    real = tmp_path / "real.txt"
    real.write_text("keep")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    with pytest.raises(OutputRefused):
        write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "keep" and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("where", ["directory", "under-a-file", "two-outputs-one-file"])
def test_unwritable_outputs_are_refused_before_the_verdict(where: str, pair: Dict[str, Path], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    argv = {"directory": ["--json", str(tmp_path)],
            "under-a-file": ["--json", str(plain / "report.json")],
            "two-outputs-one-file": ["--json", str(tmp_path / "o.txt"), "--markdown", str(tmp_path / "o.txt")]}[where]
    _bad_input(["compare", str(pair["baseline"]), str(pair["candidate"]), *argv], capsys)
    assert not (tmp_path / "o.txt").exists() and plain.read_text() == "x"


def test_run_never_replaces_a_baseline(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    baseline = tmp_path / "b.parquet"
    assert main(["baseline", "create", str(baseline), "--from", str(TINY), "--reason", "test"]) == 0
    capsys.readouterr()
    before = _digests(baseline)
    _bad_input(["run", "--models", "tiny", "--device", "cpu", "--out", str(baseline)], capsys, "is a baseline")
    assert _digests(baseline) == before


# -- inputs are checked before any model loads ---------------------------------------------------------------


@pytest.mark.parametrize("flags,fragment", [(["--device", "tpu"], "not a device"), (["--threads", "-1"], "out of range"),
                                            (["--batch-size", "0"], "out of range"), (["--threads", "x"], "not a whole number")])
def test_run_flags_are_checked_when_read(flags: List[str], fragment: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "r.parquet"
    _bad_input(["run", "--models", "tiny", *flags, "--out", str(out)], capsys, fragment)
    assert not out.exists()


@pytest.mark.slow
def test_a_bad_setting_is_refused_before_the_run_of_check(tmp_path: Path) -> None:
    """Was: refused only after the whole run, with the candidate written."""
    out = tmp_path / "check.parquet"
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "harness", "check", str(TINY), "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HARNESS_COMPARE_MEMORY_MB": "abc"})
    assert proc.returncode == 2, proc.stderr
    assert "HARNESS_COMPARE_MEMORY_MB" in _one_error_line(proc.stderr)
    assert not out.exists() and time.perf_counter() - started < 30  # no model loaded (a run takes longer)


def test_check_refuses_a_bad_policy_before_its_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text("[classes.fp32\n")
    out = tmp_path / "check.parquet"
    _bad_input(["check", str(TINY), "--policy", str(policy), "--out", str(out)], capsys, str(policy))
    assert not out.exists()


def test_a_model_that_cannot_run_writes_nothing_unless_recorded(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    future = tmp_path / "from-the-future"
    shutil.copytree(ROOT / "fixtures" / "models" / BI, future)
    config = future / "config_sentence_transformers.json"
    data = json.loads(config.read_text())
    data["__version__"]["sentence_transformers"] = "99.0.0"
    config.write_text(json.dumps(data))
    out = tmp_path / "r.parquet"
    argv = ["run", "--models", str(future), CE, "--device", "cpu", "--out", str(out)]
    _bad_input(argv, capsys, "from-the-future: incompatible", "nothing written")
    assert not out.exists()
    assert main([*argv, "--record-incompatible"]) == 0
    capsys.readouterr()
    assert out.is_file()


# -- wrong passes -------------------------------------------------------------------------------------------


def test_zeros_against_zeros_is_bad_input_not_a_pass(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    zeros = perturb_results(TINY, tmp_path / "zeros.parquet", BI, vectors=np.zeros_like)
    _bad_input(["compare", str(zeros), str(zeros), "--models", BI], capsys, "all-zero vectors", str(zeros))


def test_a_candidate_of_zeros_is_drift(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    zeros = perturb_results(TINY, tmp_path / "zeros.parquet", BI, vectors=np.zeros_like)
    assert main(["compare", str(TINY), str(zeros), "--models", BI]) == 1
    capsys.readouterr()


# -- a bug is exit 3 with a crash file, never exit 1 -----------------------------------------------------------

_BUG = """
import sys
import harness.compare.comparator as comparator
from harness import cli

def broken(*args, **kwargs):
    raise ZeroDivisionError("boom at http://alice:s3cret@example.com/x?api_key=SECRET-VALUE&x=1 " + sys.argv[-1])

comparator.compare_files = broken
sys.argv = ["harness", "compare", sys.argv[1], sys.argv[1]]
cli.entrypoint()
"""


def test_a_bug_is_exit_3_with_one_line_and_a_scrubbed_crash_file(tmp_path: Path) -> None:
    env = {**os.environ, "HARNESS_CRASH_DIR": str(tmp_path / "crashes"), "MY_API_TOKEN": "tok-123456789"}
    proc = subprocess.run([sys.executable, "-c", _BUG, str(TINY), "tok-123456789"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("internal error") and "ZeroDivisionError" in lines[0], proc.stderr
    crash = Path(lines[0].rsplit("details in ", 1)[1].split(";")[0])
    assert crash.parent == tmp_path / "crashes"
    text = crash.read_text()
    assert "Traceback" in text and "ZeroDivisionError" in text
    for secret in ("s3cret", "SECRET-VALUE", "tok-123456789"):
        assert secret not in text and secret not in proc.stderr, secret


def test_a_bug_in_process_is_3_not_1(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    import harness.compare.comparator as comparator

    monkeypatch.setenv("HARNESS_CRASH_DIR", str(tmp_path))
    monkeypatch.setattr(comparator, "compare_files", lambda *a, **k: [][1])
    assert main(["compare", str(TINY), str(TINY)]) == 3
    err = capsys.readouterr().err
    assert err.startswith("internal error") and "IndexError" in err and len(list(tmp_path.iterdir())) == 1


@pytest.mark.slow
@pytest.mark.parametrize("after_s", [0.3, 3.0])  # the CLI still importing numpy/pyarrow; torch importing, models loading
def test_ctrl_c_during_a_run_is_130_without_a_traceback(tmp_path: Path, after_s: float) -> None:
    out = tmp_path / "r.parquet"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "--models", "tiny", "--device", "cpu",
                             "--out", str(out), "--no-progress"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    time.sleep(after_s)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, err
    assert "Traceback" not in err and not out.exists(), err


_LOST_IN_A_CALLBACK = """
import sys, time, weakref
{hook}
class Thing: pass
def callback(ref): raise KeyboardInterrupt  # as a Ctrl-C landing in importlib's weakref callback does
thing = Thing(); ref = weakref.ref(thing, callback); del thing
time.sleep(0.2)
print("carried on")
"""


@pytest.mark.parametrize("hooked", [True, False])
def test_a_ctrl_c_lost_in_a_callback_is_raised_again(hooked: bool) -> None:
    """Python drops a KeyboardInterrupt raised in a callback run from C ("Exception ignored"): a Ctrl-C at that
    moment let `harness run` finish and exit 0; the CLI's hook sends it again."""
    hook = "from harness.cli import _interrupt_again; sys.unraisablehook = _interrupt_again(sys.unraisablehook)"
    proc = subprocess.run([sys.executable, "-c", _LOST_IN_A_CALLBACK.format(hook=hook if hooked else "")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    if hooked:
        assert "carried on" not in proc.stdout and proc.returncode == -signal.SIGINT, proc.stderr
    else:  # the failure the hook exists for, still there in Python itself
        assert "carried on" in proc.stdout and proc.returncode == 0, proc.stderr


# -- the plugin door -------------------------------------------------------------------------------------------


def test_plugin_says_when_the_baseline_is_judged_against_itself(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("-m", "harness", f"--harness-baseline={TINY}", f"--harness-candidate={TINY}")
    result.assert_outcomes(passed=2, warnings=2)
    result.stdout.fnmatch_lines(["*the same file*cannot detect drift*"])


def test_plugin_reports_a_bug_as_an_error_not_a_failed_comparison(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makeconftest("""
        import harness.assertions as assertions

        def _broken(*args, **kwargs):
            raise ZeroDivisionError("a bug")

        assertions.assert_model_matches = _broken
    """)
    cand = perturb_results(TINY, tmp_path / "c.parquet", BI, vectors=lambda v: v + 1e-4)
    # a process of its own: the conftest's patch must not outlive this test
    result = pytester.runpytest_subprocess("-m", "harness", f"--harness-baseline={TINY}", f"--harness-candidate={cand}")
    result.assert_outcomes(errors=2)


# -- the matrix door ---------------------------------------------------------------------------------------------


def test_matrix_report_into_a_file_is_refused_before_any_cell_is_judged(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    plain = tmp_path / "report"
    plain.write_text("not a directory")
    _bad_input(["matrix", "report", "--matrix", "smoke", "--runs", str(tmp_path / "runs"), "--out", str(plain)], capsys,
               "--out", "not a directory")
    assert plain.read_text() == "not a directory"


@pytest.mark.parametrize("text", ["[classes]\nfp32 = 5\n", "default_clas = 'fp16'\n", "[classes.fp32]\natol = nan\n"])
def test_matrix_file_and_policy_typos_are_one_line(text: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A policy of the wrong shape, a typo or a NaN limit: one line naming the file, never a pass (was: a traceback,
    a silently ignored key, and a PASS of a 1e-4 drift)."""
    policy = tmp_path / "policy.toml"
    policy.write_text(text)
    cand = perturb_results(TINY, tmp_path / "c.parquet", BI, vectors=lambda v: v + 1e-4)
    _bad_input(["compare", str(TINY), str(cand), "--policy", str(policy)], capsys, str(policy))


@pytest.mark.parametrize("text,fragment", [("[matrix.x]\nmodels = 5\n", "models"),
                                           ("[matrix.x]\nmodels = ['tiny']\nbaseline = 'b'\n[[matrix.x.cells]]\ntorhc = '2.4'\n", "torhc")])
def test_matrix_door_refuses_a_bad_matrix_file_in_one_line(text: str, fragment: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    matrix = tmp_path / "matrix.toml"
    matrix.write_text(text)
    _bad_input(["matrix", "list", "--matrix", "x", "--file", str(matrix)], capsys, str(matrix), fragment)


def test_plugin_reports_a_nan_policy_as_an_error(pytester: pytest.Pytester, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("[classes.fp32]\natol = nan\n")
    cand = perturb_results(TINY, tmp_path / "c.parquet", BI, vectors=lambda v: v + 1e-4)
    result = pytester.runpytest("-m", "harness", f"--harness-baseline={TINY}", f"--harness-candidate={cand}",
                                f"--harness-policy={policy}")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*harness error: *policy.toml*"])


def test_assertions_api_refuses_a_nan_policy(tmp_path: Path) -> None:
    from harness.assertions import assert_embeddings_close
    from harness.errors import HarnessError

    policy = tmp_path / "policy.toml"
    policy.write_text("[classes.fp32]\nmin_cosine = nan\n")
    base = np.eye(4, dtype=np.float32)
    with pytest.raises(HarnessError, match="policy.toml"):
        assert_embeddings_close(base + 1e-4, base, str(policy))


def test_a_writer_waits_for_another_writer_with_a_deadline(tmp_path: Path) -> None:
    """Every wait has a deadline: a writer that hangs holding the lock makes the next one give up, in one line."""
    import multiprocessing

    from harness.fsio import OutputRefused, output_lock

    target = tmp_path / "r.parquet"
    held = multiprocessing.get_context("fork").Event()

    def hold() -> None:
        with output_lock(target):
            held.set()
            time.sleep(30)

    holder = multiprocessing.get_context("fork").Process(target=hold, daemon=True)
    holder.start()
    try:
        assert held.wait(20)
        started = time.monotonic()
        with pytest.raises(OutputRefused, match="another process"):
            with output_lock(target, timeout_s=0.5):
                pass
        assert time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.join(10)
    with output_lock(target, timeout_s=5):  # the kernel dropped the killed holder's lock
        pass


def test_no_form_of_a_secret_reaches_the_error_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """The CLI's last line of defence scrubs every form the HTTP client knows (raw, percent-encoded, JSON-escaped,
    any case) of every secret-named variable, and URL credentials, from the one error line."""
    from urllib.parse import quote

    import harness.compare.comparator as comparator
    from harness.errors import HarnessError

    secret = "s3cr3t/Tok+en=="
    monkeypatch.setenv("GATEWAY_TOKEN", secret)

    def refuse(*args: object, **kwargs: object) -> None:
        raise HarnessError(f"server said: {secret} {quote(secret, safe='')} {quote(secret, safe='').lower()} "
                           f"{secret.replace('/', chr(92) + '/')} http://user:pw@host/x")

    monkeypatch.setattr(comparator, "compare_files", refuse)
    line = _bad_input(["compare", str(TINY), str(TINY)], capsys, "server said")
    for leak in (secret, quote(secret, safe=""), quote(secret, safe="").lower(), "Tok", "user:pw"):
        assert leak not in line, (leak, line)
