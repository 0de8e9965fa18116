"""The pytest plugin (``--harness-baseline``) and the assertions it is built on, as a release checklist uses them.

Plugin runs go through ``pytester`` in-process, on the tiny models: one real runner run for the pass/fail
test, one for --harness-regen; everything else judges an existing candidate (``--harness-candidate``).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from harness.assertions import assert_embeddings_close, assert_model_matches, assert_rerank_stable
from harness.errors import IncompatibleInputs
from harness.results import ModelRecord, ResultsFile, SideSettings
from harness.testing import add_noise_to_one, perturb_results, tf32_round

from conftest import ROOT

pytest_plugins = ["pytester"]

TINY = ROOT / "fixtures" / "baselines" / "tiny-cpu-float32.parquet"
BI, CE = "tiny-bi-encoder", "tiny-cross-encoder"


@pytest.fixture(autouse=True)
def _autoload(monkeypatch: pytest.MonkeyPatch, tiny_results: Path) -> None:
    """The plugin is found through its pytest11 entry point, as in a user's environment.

    ``tiny_results`` makes this process import torch, tokenizers and sentence-transformers (and run the
    runner once) before any in-process pytester run: pytester drops the modules an inner run imported, and
    torch or a PyO3 extension imported a second time into the same interpreter crashes it.
    """
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)


def _swap_first_two(scores: np.ndarray) -> np.ndarray:
    out = scores.copy()
    out[0], out[1] = scores[1], scores[0]
    return out


# -- the plugin -----------------------------------------------------------------------------------------------


def test_options_are_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    for option in ("--harness-baseline", "--harness-policy", "--harness-class", "--harness-candidate", "--harness-regen"):
        result.stdout.fnmatch_lines([f"*{option}*"])


def test_one_item_per_model_selectable_with_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_other="def test_unrelated():\n    pass\n")
    result = pytester.runpytest("--collect-only", "-q", "-m", "harness", f"--harness-baseline={TINY}")
    result.stdout.fnmatch_lines([f"*tiny-cpu-float32.parquet::{BI}", f"*tiny-cpu-float32.parquet::{CE}"])
    result.stdout.no_fnmatch_line("*test_unrelated*")
    result.stdout.fnmatch_lines(["*2/3 tests collected (1 deselected)*"])


def test_no_baseline_option_adds_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_other="def test_unrelated():\n    pass\n")
    result = pytester.runpytest("-q")
    result.assert_outcomes(passed=1)


def test_runs_models_once_passes_and_explains_a_failure(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """A real run here, shared by two baselines with the same run options; the perturbed one fails."""
    perturbed = perturb_results(TINY, tmp_path / "perturbed.parquet", BI, vectors=add_noise_to_one(12, 1e-4))
    tiny = Path(shutil.copy(TINY, tmp_path / TINY.name))  # the run is kept beside its baseline: not in the checkout
    ids = ResultsFile(TINY).embeddings(BI)[0]
    result = pytester.runpytest("-m", "harness", f"--harness-baseline={tiny}", f"--harness-baseline={perturbed}")
    result.assert_outcomes(passed=3, failed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "*Embeddings are not close!*",
        "Mismatched elements: * / 23904 (*%)",
        f"Greatest absolute difference: *e-04 at text '{ids[12]}' dim * (up to 1e-05 allowed)",
        "Greatest relative difference: * (up to 0 allowed)",
        "actual value *, baseline value *",
        f"Texts beyond atol: 1 / 747 (0.1%): text '{ids[12]}' (*)",
        "Tolerance: class fp32 for model 'tiny-bi-encoder' (built-in default policy): atol=1e-05*",
        f"*harness baseline update*perturbed.parquet --from {tmp_path / 'perturbed.obtained.parquet'}*",
    ])
    assert (tmp_path / "perturbed.obtained.parquet").is_file() and (tmp_path / "tiny-cpu-float32.obtained.parquet").is_file()
    summary = [line for line in out.splitlines() if line.startswith("candidate ") and "cpu float32" in line]
    assert len(summary) == 1, out  # one run for both baselines: same models and run options
    assert "Traceback" not in out and "harness/assertions.py" not in out  # __tracebackhide__ / repr_failure


def test_candidate_option_judges_an_existing_file(pytester: pytest.Pytester, tmp_path: Path, tiny_results: Path) -> None:
    swapped = perturb_results(TINY, tmp_path / "swapped.parquet", CE, scores=_swap_first_two)
    result = pytester.runpytest("-m", "harness", f"--harness-baseline={swapped}", f"--harness-candidate={tiny_results}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*Rerank scores are not stable!*",
        "Mismatched scores: 2 / 1758 (0.11%)",
        "Greatest absolute difference: * at pair '*|*' (up to 1e-05 allowed)",
        "Queries reordered: 1 / 60 (1.7%) beyond score ties of 1e-06*",
        "  query '*': * pair(s) swapped, e.g. pair '*' above pair '*' in baseline (*), below it in actual (*)",
    ])
    assert "candidate /" not in result.stdout.str()  # nothing was run


def test_policy_and_class_options(pytester: pytest.Pytester, tmp_path: Path) -> None:
    rounded = perturb_results(TINY, tmp_path / "tf32.parquet", BI, vectors=tf32_round)
    common = ["-m", "harness", f"--harness-baseline={TINY}", f"--harness-candidate={rounded}"]
    pytester.runpytest(*common).assert_outcomes(passed=1, failed=1)
    pytester.runpytest(*common, "--harness-class", "tf32").assert_outcomes(passed=2)
    loose = tmp_path / "loose.toml"
    loose.write_text('[models."tiny-bi-encoder"]\natol = 1e-3\nmin_cosine = 0.999\nmin_topk_order_agreement = 0.5\nmin_topk_set_agreement = 0.5\n'
                     'max_accuracy_ratio = 1e4\n')  # TF32 rounding is less accurate than fp32's (the fp64 reference)
    pytester.runpytest(*common, f"--harness-policy={loose}").assert_outcomes(passed=2)
    bad = pytester.runpytest(*common, "--harness-class", "nope")
    bad.assert_outcomes(errors=2)  # bad input is an error of the item, never a failed comparison
    bad.stdout.fnmatch_lines(["harness error: *unknown tolerance class 'nope'*"])


def test_baseline_policy_and_class_from_the_ini(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """``[tool.pytest.ini_options]`` holds what a project checks: paths relative to the config file, ids too."""
    data = pytester.mkdir("checks")
    shutil.copyfile(TINY, data / "tiny.parquet")
    rounded = perturb_results(TINY, tmp_path / "tf32.parquet", BI, vectors=tf32_round)
    (data / "loose.toml").write_text('[models."tiny-bi-encoder"]\natol = 1e-3\nmin_cosine = 0.999\n'
                                     'min_topk_order_agreement = 0.5\nmin_topk_set_agreement = 0.5\n')
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\nharness_baseline = ["checks/tiny.parquet"]\n')
    sub = pytester.mkdir("sub")  # run from elsewhere: the ini's paths are the config file's, not the cwd's
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(sub)
        listed = pytester.runpytest("--collect-only", "-q", "-m", "harness", "--rootdir", str(pytester.path))
    listed.stdout.fnmatch_lines([f"checks/tiny.parquet::{BI}", f"checks/tiny.parquet::{CE}"])
    moved = pytester.runpytest("-m", "harness", "--harness-candidate", str(rounded))  # a path outside: warned
    moved.stdout.fnmatch_lines(["*PytestConfigWarning: a harness path option moved pytest's rootdir to *"
                                "write --harness-baseline=PATH*"])
    assert "collected 0 items" in moved.stdout.str()  # the project's ini (its baselines) was lost: hence the warning
    common = ["-m", "harness", f"--harness-candidate={rounded}"]
    pytester.runpytest(*common).assert_outcomes(passed=1, failed=1)
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\nharness_baseline = ["checks/tiny.parquet"]\nharness_class = "tf32"\n')
    pytester.runpytest(*common).assert_outcomes(passed=2)
    pytester.runpytest(*common, "--harness-class", "fp32").assert_outcomes(passed=1, failed=1)  # the option wins
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\nharness_baseline = ["checks/tiny.parquet"]\n'
                               'harness_policy = "checks/loose.toml"\n')
    result = pytester.runpytest(*common)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([f"harness: baselines checks/tiny.parquet; *policy: {data / 'loose.toml'};*"])


def test_a_baseline_outside_the_rootdir_gets_an_id_that_exists_and_a_moved_rootdir_is_named(
        pytester: pytest.Pytester, tmp_path: Path, tiny_results: Path) -> None:
    outside = tmp_path / "elsewhere" / "tiny.parquet"
    outside.parent.mkdir()
    shutil.copyfile(TINY, outside)
    pytester.makepyprojecttoml("[tool.pytest.ini_options]\n")
    result = pytester.runpytest("--collect-only", "-q", "-m", "harness", f"--harness-baseline={outside}")
    ids = [line for line in result.stdout.lines if "::" in line]
    assert ids == [f"{outside.as_posix()}::{BI}", f"{outside.as_posix()}::{CE}"]  # not '../elsewhere/...'
    assert all(Path(i.split("::")[0]).is_file() for i in ids)
    header = pytester.runpytest("--collect-only", "-m", "harness", f"--harness-baseline={outside}")
    header.stdout.fnmatch_lines([f"rootdir: {pytester.path}*"])
    spaced = pytester.runpytest("--collect-only", "-m", "harness", "--harness-baseline", str(outside))
    spaced.stdout.fnmatch_lines(["*moved pytest's rootdir*--harness-baseline=PATH*"])  # warned, with the fix named
    assert "moved pytest's rootdir" not in header.stdout.str()


def test_missing_baseline_fails_with_instructions(pytester: pytest.Pytester, tmp_path: Path) -> None:
    missing = tmp_path / "nope.parquet"
    result = pytester.runpytest("-m", "harness", f"--harness-baseline={missing}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"Baseline {missing} does not exist.", "*harness baseline create*--harness-regen*"])
    assert not missing.exists()


def test_regen_creates_missing_baseline_from_candidate_then_passes(pytester: pytest.Pytester, tmp_path: Path, tiny_results: Path) -> None:
    target = tmp_path / "new" / "fresh.parquet"
    args = ["-m", "harness", f"--harness-baseline={target}", f"--harness-candidate={tiny_results}"]
    first = pytester.runpytest(*args, "--harness-regen")
    first.assert_outcomes(failed=1)  # a new baseline is never a pass: it has to be reviewed first
    first.stdout.fnmatch_lines([f"Baseline {target} did not exist and was created from {tiny_results.resolve()}.", "Review it*"])
    assert ResultsFile(target).meta["baseline"]["reason"] == "created by pytest --harness-regen"
    pytester.runpytest(*args, "--harness-regen").assert_outcomes(passed=2)  # existing baselines are never rewritten
    before = target.read_bytes()
    pytester.runpytest(*args).assert_outcomes(passed=2)
    assert target.read_bytes() == before


def test_regen_without_candidate_runs_the_models(pytester: pytest.Pytester, tmp_path: Path) -> None:
    target = tmp_path / "regen.parquet"
    result = pytester.runpytest("-m", "harness", f"--harness-baseline={target}", "--harness-regen", "--harness-models", "tiny")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*was created from*candidate.parquet.*"])
    assert sorted(ResultsFile(target).records) == [BI, CE]


def test_unreadable_baseline_is_an_error_and_never_regenerated(pytester: pytest.Pytester, tmp_path: Path) -> None:
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"PAR1 this is not parquet")
    result = pytester.runpytest("-m", "harness", f"--harness-baseline={junk}", "--harness-regen")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"harness error: {junk}: not a readable parquet file*"])
    assert junk.read_bytes() == b"PAR1 this is not parquet"


def test_run_that_cannot_start_errors_every_item_with_one_line(pytester: pytest.Pytester, tmp_path: Path) -> None:
    def unknown_model(meta: dict) -> dict:
        models = {"no-such-model": {**meta["models"][BI], "source": {}}, CE: meta["models"][CE]}
        return {**meta, "models": models}

    odd = perturb_results(TINY, tmp_path / "odd.parquet", BI, meta_update=unknown_model)
    result = pytester.runpytest("-m", "harness", f"--harness-baseline={odd}")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["harness error: *model 'no-such-model' is not in the registry*does not record where it came from"])


def test_fixtures_for_own_checks(pytester: pytest.Pytester, tiny_results: Path) -> None:
    pytester.makepyfile(test_release=f"""
        from harness.assertions import assert_embeddings_close, assert_rerank_stable

        def test_bi_encoder(harness_candidate_for, harness_policy, harness_baselines):
            assert [p.name for p in harness_baselines] == ["tiny-cpu-float32.parquet"]
            candidate = harness_candidate_for(r"{TINY}")
            assert_embeddings_close(candidate, r"{TINY}", harness_policy, model_id="{BI}")
            assert_rerank_stable(candidate, r"{TINY}", policy=harness_policy)
    """)
    result = pytester.runpytest("test_release.py", f"--harness-baseline={TINY}", f"--harness-candidate={tiny_results}")
    result.assert_outcomes(passed=3)  # the user's test and the two generated model checks


# -- the assertions -------------------------------------------------------------------------------------------


def test_arrays_close_pass_and_numpy_style_failure() -> None:
    rng = np.random.default_rng(0)
    base = rng.standard_normal((64, 384)).astype(np.float32)
    assert_embeddings_close(base + np.float32(1e-7), base)
    moved = base.copy()
    moved[12, 17] += np.float32(1.2e-4)
    moved[3, 5] += np.float32(2e-5)
    ids = [f"d{i:04d}" for i in range(64)]
    with pytest.raises(AssertionError) as info:
        assert_embeddings_close(moved, base, ids=ids)
    text = str(info.value)
    assert text.startswith("Embeddings are not close!\n\nMismatched elements: 2 / 24576 (0.01%)\n")
    assert "Greatest absolute difference: 1.20e-04 at text 'd0012' dim 17 (up to 1e-05 allowed)" in text
    assert f"actual value {moved[12, 17]:.9g}, baseline value {base[12, 17]:.9g}" in text
    assert "Texts beyond atol: 2 / 64 (3.1%): text 'd0012' (1.20e-04), text 'd0003' (2.00e-05)" in text
    with pytest.raises(AssertionError, match=r"at index \(12, 17\)"):
        assert_embeddings_close(moved, base)  # no ids: positions, like numpy


def test_array_shape_and_non_finite_are_named() -> None:
    base = np.eye(4, dtype=np.float32)
    with pytest.raises(AssertionError, match=r"The shapes do not match: actual \(3, 4\) != baseline \(4, 4\)"):
        assert_embeddings_close(base[:3], base)
    with pytest.raises(AssertionError, match="non-finite value"):
        bad = base.copy()
        bad[1, 2] = np.nan
        assert_embeddings_close(bad, base)


def test_array_against_results_file_aligns_by_id(tiny_results: Path) -> None:
    ids, roles, vectors = ResultsFile(tiny_results).embeddings(BI)
    perm = np.random.default_rng(1).permutation(len(ids))
    assert_embeddings_close(vectors[perm], tiny_results, ids=ids[perm])
    assert_embeddings_close(vectors, tiny_results)  # same order as the file
    assert_embeddings_close(vectors[5:9], tiny_results, ids=ids[5:9])  # a few texts against the full baseline
    with pytest.raises(AssertionError, match=r"The ids do not match: 0 missing from actual \(-\), 1 not in baseline \('new'\)"):
        assert_embeddings_close(vectors[5:9], tiny_results, ids=[*ids[5:8], "new"])
    with pytest.raises(AssertionError, match=r"The shapes do not match: actual \(746, 32\) != baseline \(747, 32\)"):
        assert_embeddings_close(vectors[1:], tiny_results)  # no ids: rows must match the file's one to one
    swapped = vectors.copy()
    q = np.flatnonzero(roles == "query")[0]
    swapped[q] = -swapped[q]  # one query now retrieves the opposite documents
    with pytest.raises(AssertionError, match=r"Top-10 retrieval order agreement: 98.3% \(1 / 60 queries changed: '"):
        assert_embeddings_close(swapped, tiny_results)


def test_rerank_arrays_swap_is_named() -> None:
    base = np.array([0.9, 0.5, 0.1, 0.7, 0.6], dtype=np.float32)
    queries = ["q1", "q1", "q1", "q2", "q2"]
    assert_rerank_stable(base + np.float32(1e-7), base, queries)
    tie = np.array([0.9, 0.5, 0.1, 0.6500001, 0.65], dtype=np.float32)
    assert_rerank_stable(tie, tie[[0, 1, 2, 4, 3]], queries)  # a near-tie that swaps is noise, not a reorder
    moved = base.copy()
    moved[1], moved[0] = base[0], base[1]
    with pytest.raises(AssertionError) as info:
        assert_rerank_stable(moved, base, queries, ids=["q1|a", "q1|b", "q1|c", "q2|a", "q2|b"])
    text = str(info.value)
    assert text.startswith("Rerank scores are not stable!\n\nMismatched scores: 2 / 5 (40.0%)")
    assert "Queries reordered: 1 / 2 (50.0%)" in text
    assert "query 'q1': 1 pair(s) swapped, e.g. pair 'q1|a' above pair 'q1|b' in baseline (0.9 > 0.5), below it in actual (0.5 < 0.9)" in text
    assert "Lowest Kendall tau: 0.333333 at query 'q1'" in text


def test_files_are_judged_by_the_comparator(tiny_results: Path, tmp_path: Path) -> None:
    assert_model_matches(tiny_results, TINY, BI)
    assert_model_matches(tiny_results, TINY, CE)
    with pytest.raises(ValueError, match="model_id= is required"):
        two = perturb_results(TINY, tmp_path / "two.parquet", BI, meta_update=lambda m: {
            **m, "models": {**m["models"], "other": {**m["models"][BI]}}})
        assert_embeddings_close(two, TINY)
    rounded = perturb_results(TINY, tmp_path / "tf32.parquet", BI, vectors=tf32_round)
    with pytest.raises(AssertionError, match="Would pass with: atol 2.44e-04"):
        assert_embeddings_close(rounded, TINY)
    assert_embeddings_close(rounded, TINY, tolerance_class="tf32")

    def other_corpus(meta: dict) -> dict:
        return {**meta, "corpus": {**meta["corpus"], "sha256": "0" * 64}}

    with pytest.raises(IncompatibleInputs, match="corpus differs"):
        assert_embeddings_close(perturb_results(TINY, tmp_path / "c.parquet", BI, meta_update=other_corpus), TINY)


def test_model_that_did_not_run_fails(tmp_path: Path) -> None:
    def incompatible(meta: dict) -> dict:
        models = {**meta["models"], CE: {"kind": "cross-encoder", "status": "incompatible", "reason": "saved by 9.0"}}
        return {**meta, "models": models}

    cell = perturb_results(TINY, tmp_path / "inc.parquet", CE, meta_update=incompatible)
    with pytest.raises(AssertionError, match=r"Model 'tiny-cross-encoder' did not run!\n\ncandidate .*inc.parquet: incompatible: saved by 9.0"):
        assert_model_matches(cell, TINY, CE)


def test_assertions_hide_their_frames(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_hide="""
        import numpy as np
        from harness.assertions import assert_embeddings_close

        def test_fails():
            assert_embeddings_close(np.zeros((2, 3)), np.ones((2, 3)))
    """)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E *AssertionError: Embeddings are not close!", "E *Mismatched elements: 6 / 6 (100.0%)"])
    assert "harness/assertions.py" not in result.stdout.str()


def test_copying_a_baseline_is_a_pass(tmp_path: Path) -> None:
    copy = tmp_path / "copy.parquet"
    shutil.copy(TINY, copy)
    assert_model_matches(copy, TINY, BI)


# -- device classes (harness.config.policy.choose_class, used by the plugin and the assertions) ---------------------


def _on(device: str, **extra: object) -> Callable[[dict], dict]:
    def update(meta: dict) -> dict:
        return {**meta, "fingerprint": {**meta["fingerprint"], "device": device, "device_type": device.split(":")[0], **extra}}

    return update


def test_choose_class_by_device_pair_and_precision() -> None:
    from harness.config.policy import choose_class, load_policy

    policy = load_policy()
    cpu, cuda = SideSettings("cpu"), SideSettings("cuda")
    tf32, bf16 = SideSettings.of({"device_type": "cuda", "tf32_matmul": True}), SideSettings.of({"device_type": "cuda"},
                                                                                                 ModelRecord(loaded_dtype="bfloat16"))
    assert (tf32.precision, bf16.precision, SideSettings.of({"device_type": "cpu", "tf32_matmul": True}).precision) == (
        "tf32", "bf16", "fp32"), "TF32 only counts on CUDA"
    assert choose_class(policy, cpu, cpu)[0] == "fp32"
    assert choose_class(policy, cpu, cuda)[0] == choose_class(policy, cuda, cpu)[0] == "cpu-vs-cuda"
    assert choose_class(policy, cuda, cuda)[0] == "fp32"
    assert choose_class(policy, cpu, SideSettings("mps"))[0] == "fp32"  # not measured: no device class
    # a lower-precision candidate is judged at the baseline's class (never passed silently at its own) ...
    assert choose_class(policy, cpu, tf32)[0] == "cpu-vs-cuda"
    assert choose_class(policy, cpu, bf16)[0] == "cpu-vs-cuda"
    # ... a lower-precision baseline sets the class: its own rounding dominates the drift
    assert choose_class(policy, tf32, cpu)[0] == "tf32"
    assert choose_class(policy, bf16, cpu)[0] == "bf16"
    assert choose_class(policy, cpu, cuda, forced="fp16")[0] == "fp16"
    assert policy.tolerance("m", "cpu-vs-cuda").atol == policy.tolerance("m", "fp32").atol == 1e-5


def test_policy_file_device_classes_and_per_model_class_overrides(tmp_path: Path) -> None:
    from harness.config.policy import choose_class, load_policy
    from harness.errors import PolicyError

    path = tmp_path / "p.toml"
    path.write_text(
        '[device_classes]\n"mps-vs-cpu" = "tf32"\n\n'
        '[models."m".classes.cpu-vs-cuda]\natol = 3e-5\n\n'
        '[models."m"]\nmin_cosine = 0.99999\n'
    )
    policy = load_policy(path)
    assert choose_class(policy, SideSettings.of({"device": "cpu"}), SideSettings.of({"device": "mps"}))[0] == "tf32"
    assert policy.tolerance("m", "cpu-vs-cuda").atol == 3e-5 and policy.tolerance("m", "fp32").atol == 1e-5
    assert policy.tolerance("m", "fp32").min_cosine == 0.99999 == policy.tolerance("m", "cpu-vs-cuda").min_cosine
    assert policy.tolerance("other", "cpu-vs-cuda").atol == 1e-5
    for text, problem in [
        ('[device_classes]\n"cpu-vs-cuda" = "nope"\n', "names unknown class 'nope'"),
        ('[device_classes]\n"cpu" = "fp32"\n', 'must look like "cpu-vs-cuda"'),
        ('[models."m".classes.nope]\natol = 1\n', "overrides for unknown class 'nope'"),
        ('[models."m".classes.fp32]\natoll = 1\n', "unknown key(s) atoll"),
    ]:
        path.write_text(text)
        with pytest.raises(PolicyError, match=re.escape(problem)):
            load_policy(path)


def test_cpu_vs_cuda_is_picked_and_reported(tmp_path: Path) -> None:
    """The assertions (and so the plugin) pick the device class for a CUDA candidate against a CPU baseline."""
    on_cuda = perturb_results(TINY, tmp_path / "cuda.parquet", BI, vectors=add_noise_to_one(3, 1e-3), meta_update=_on("cuda:0"))
    with pytest.raises(AssertionError, match="Tolerance: class cpu-vs-cuda for model 'tiny-bi-encoder'"):
        assert_model_matches(on_cuda, TINY, BI)
    assert_model_matches(on_cuda, TINY, CE)


def test_cpu_vs_cuda_class_can_be_forced_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from harness.cli import main

    noisy = perturb_results(TINY, tmp_path / "noisy.parquet", BI, vectors=add_noise_to_one(3, 1e-3))
    assert main(["compare", str(TINY), str(noisy), "--class", "cpu-vs-cuda"]) == 1
    assert "FAIL tiny-bi-encoder (tolerance class cpu-vs-cuda)" in capsys.readouterr().out


def test_comparator_auto_picks_cpu_vs_cuda(tmp_path: Path) -> None:
    from harness.compare.comparator import compare_files

    on_cuda = perturb_results(TINY, tmp_path / "cuda.parquet", BI, meta_update=_on("cuda:0"))
    assert {v.tolerance_class for v in compare_files(TINY, on_cuda).models} == {"cpu-vs-cuda"}
