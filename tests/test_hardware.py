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

    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")
    fp = collect_fingerprint("cpu", "float32")
    assert fp["env"]["ATEN_CPU_CAPABILITY"] == "avx2" and fp["env"]["MKL_CBWR"] == "COMPATIBLE"
    assert isinstance(fp["cpu"]["isa"], list) and fp["cpu"]["logical_cpus"]
    assert isinstance(fp["blas_runtime"], list)
    assert fp["torch_build"]["cpu_capability"]  # e.g. AVX2, AVX512, DEFAULT
