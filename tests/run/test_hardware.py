"""The hardware facts a results file records: the CPU as kernels see it and the kernel-selecting variables."""

from __future__ import annotations

import pytest

from harness import hardware

_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 85
model name\t: Intel(R) Xeon(R) Gold 6230
stepping\t: 7
microcode\t: 0x5003604
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw avx512vl avx512_vnni ht

processor\t: 1
vendor_id\t: GenuineIntel
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw avx512vl avx512_vnni ht
"""


def test_cpu_facts_keep_the_isa_flags_that_select_kernels(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(_CPUINFO)
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: real_open(info if path == "/proc/cpuinfo" else path, *a, **k))
    facts = hardware.cpu_facts()
    assert facts["vendor"] == "GenuineIntel"
    assert (facts["family"], facts["model"], facts["stepping"]) == ("6", "85", "7")
    assert facts["isa"] == ["avx", "avx2", "avx512_vnni", "avx512bw", "avx512f", "avx512vl", "fma", "sse4_2"]
    assert "fpu" not in facts["isa"] and "ht" not in facts["isa"]
    assert facts["physical_cores"] == 1  # two hyperthreads of one core


def test_isa_env_pins_aten_onednn_and_mkl() -> None:
    env = hardware.isa_env("avx2")
    assert env == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    assert all(hardware.env_group(name) == "kernels" for name in env)
    with pytest.raises(ValueError, match="unknown ISA level"):
        hardware.isa_env("avx1024")


def test_the_fingerprint_records_kernel_variables_and_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    from harness.run.fingerprint import collect_fingerprint

    # variables without effect on a CPU run: a kernel variable set here would pin the whole test session's torch
    monkeypatch.setenv("CUDA_LAUNCH_BLOCKING", "1")
    monkeypatch.setenv("NVIDIA_TF32_OVERRIDE", "0")
    fp = collect_fingerprint("cpu", "float32")
    assert fp["env"]["CUDA_LAUNCH_BLOCKING"] == "1" and fp["env"]["NVIDIA_TF32_OVERRIDE"] == "0"
    assert isinstance(fp["cpu"]["isa"], list) and fp["cpu"]["logical_cpus"]
    assert isinstance(fp["blas_runtime"], list)
    assert fp["torch_build"]["cpu_capability"]  # e.g. AVX2, AVX512, DEFAULT


# -- shown: hardware and kernel changes are a group of their own in every report --------------------------------


def test_cpu_isa_and_kernel_variables_are_the_hardware_group() -> None:
    from harness.explain import factor_of_key, group_changes, group_of
    from harness.verdict import EnvChange

    assert factor_of_key("torch_build.cpu_capability") == "kernels"
    assert factor_of_key("env.ATEN_CPU_CAPABILITY") == "kernels"
    assert factor_of_key("env.OMP_NUM_THREADS") == "threads"
    assert factor_of_key("cpu.model_name") == "cpu" and factor_of_key("cpu_model") == "cpu"
    assert factor_of_key("blas_runtime") == "blas"
    assert group_of("cpu.isa") == "hardware and kernels" and group_of("packages.torch") == "packages"
    groups, hidden = group_changes([
        EnvChange("torch_build.cpu_capability", "AVX2", "AVX512"),
        EnvChange("packages.torch", "2.4.1", "2.13.0"),
        EnvChange("platform", "Linux-a", "Linux-b"),
    ])
    assert [g for g, _ in groups] == ["packages", "hardware and kernels"] and hidden == 1


def test_summary_and_cli_verdict_show_a_cpu_capability_change(tmp_path, tiny_results) -> None:
    """The control cell's case: same packages, another CPU. The change is named, not 'N other differences'."""
    from harness.compare.comparator import compare_files
    from harness.report.markdown import render_markdown
    from harness.report.matrix_report import build_matrix_report
    from harness.report.text import render_comparison
    from harness.testing import perturb_results

    def other_cpu(meta: dict) -> dict:
        fp = dict(meta["fingerprint"])
        fp["torch_build"] = {**fp.get("torch_build", {}), "cpu_capability": "ZVECTOR"}  # never this machine's
        fp["cpu_model"] = "IBM z15"  # with ZVECTOR: never this machine (a CI machine may well be an AMD EPYC)
        return {**meta, "fingerprint": fp}

    base = perturb_results(tiny_results, tmp_path / "base.parquet", "tiny-bi-encoder", meta_update=other_cpu)
    comparison = compare_files(base, tiny_results)
    text = render_comparison(comparison)
    assert "hardware and kernels:" in text and "torch_build.cpu_capability: ZVECTOR ->" in text
    cell = {"cell_id": "control", "status": "pass", "params": {}, "comparison": comparison.serialize()}
    summary = render_markdown(build_matrix_report("m", str(base), [cell]))
    assert "| hardware and kernels | `torch_build.cpu_capability` | ZVECTOR |" in summary
    assert "| hardware and kernels | `cpu_model` | IBM z15 |" in summary


# -- proven by experiment: kernels pinned to an instruction set, as a run option and an attribution step ---------


@pytest.mark.slow
def test_harness_run_cpu_isa_pins_the_kernels_and_records_it(tmp_path) -> None:
    import subprocess
    import sys

    from harness.results import ResultsFile

    out = tmp_path / "avx2.parquet"
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--models", "tiny-bi-encoder", "--device", "cpu",
                           "--cpu-isa", "avx2", "--out", str(out), "--no-progress"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    fp = ResultsFile(out).fingerprint
    assert fp["env"]["ATEN_CPU_CAPABILITY"] == "avx2" and fp["env"]["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert fp["torch_build"]["cpu_capability"] in ("AVX2", "DEFAULT")  # never above the pinned level


def test_cpu_isa_is_a_runtime_step_of_attribution() -> None:
    from harness.matrix.attribution import RuntimeSettings
    from harness.matrix.plan import plan_path
    from harness.matrix.spec import Cell

    cell = Cell(matrix="m", python="3.11", torch="2.13.0", sentence_transformers="6.2.0", transformers="5.23.0")
    steps = plan_path(cell, RuntimeSettings(), cell, RuntimeSettings(cpu_isa="avx2", threads=1), lambda c: None)
    assert [s.name for s in steps] == ["baseline", "+threads", "+cpu_isa"]
    assert steps[-1].runtime.run_args()[-2:] == ["--cpu-isa", "avx2"]


# -- blas_runtime: the same libraries in another order are no change -----------------------------------------------


def test_blas_runtime_is_recorded_in_one_order(monkeypatch: pytest.MonkeyPatch) -> None:
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from harness.run import fingerprint

    libs = [{"filepath": "/x/libopenblas.so", "user_api": "blas", "internal_api": "openblas", "version": "0.3.27"},
            {"filepath": "/x/libgomp.so", "user_api": "openmp", "internal_api": "openmp", "num_threads": 4}]
    monkeypatch.setattr(threadpoolctl, "threadpool_info", lambda: libs)
    first = fingerprint.blas_runtime()
    monkeypatch.setattr(threadpoolctl, "threadpool_info", lambda: libs[::-1])
    assert fingerprint.blas_runtime() == first and [e["library"] for e in first] == ["libopenblas.so", "libgomp.so"]


def test_a_reordered_blas_runtime_is_no_change_even_in_old_files() -> None:
    from harness.explain import factor_of_key, group_changes, same_setting
    from harness.verdict import EnvChange

    a = [{"library": "libgomp.so", "user_api": "openmp"}, {"library": "libopenblas.so", "user_api": "blas"}]
    change = EnvChange("blas_runtime", a, a[::-1])  # what comparing two old files lists
    assert same_setting("blas_runtime", a, a[::-1]) and not same_setting("blas_runtime", a, a[:1])
    assert factor_of_key("blas_runtime", a, a[::-1]) is None and factor_of_key("blas_runtime", a, a[:1]) == "blas"
    assert group_changes([change]) == ([], 0)
    groups, _ = group_changes([EnvChange("blas_runtime", a, a[:1])])
    assert [g for g, _ in groups] == ["hardware and kernels"]
    assert not same_setting("cpu.isa", ["avx2", "avx512f"], ["avx512f", "avx2"])  # other lists keep their order


def test_the_comparator_lists_no_change_for_a_reordered_blas_runtime() -> None:
    from harness.compare.comparator import env_changes

    a = [{"library": "libgomp.so", "user_api": "openmp"}, {"library": "libopenblas.so", "user_api": "blas"}]
    assert env_changes({"blas_runtime": a}, {"blas_runtime": a[::-1]}) == []
    assert [c.key for c in env_changes({"blas_runtime": a}, {"blas_runtime": a[:1]})] == ["blas_runtime"]
