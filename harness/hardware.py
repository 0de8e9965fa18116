"""What the kernels see: the CPU as numerics see it, and every environment variable known to change kernels.
One table (``ENV_VAR_GROUPS``) for the runner's record and the comparator's grouping, so such a change is never
hidden behind "other differences". Stdlib only.
"""

from __future__ import annotations

import os
import platform
from typing import Any, Dict, List, Optional, Tuple

__all__ = ["ENV_VAR_GROUPS", "NUMERICS_ENV_VARS", "KERNEL_ISA_FLAGS", "cpu_facts", "env_group", "ISA_LEVELS", "isa_env"]

#: Environment variable -> the group of factors it belongs to. One list: the runner records every one that is
#: set, the reports group their changes by it. ``kernels``: which instruction set / code path BLAS, oneDNN and
#: ATen dispatch to; ``threads``: how work is split (changes reduction order); ``cuda``: GPU math modes.
ENV_VAR_GROUPS: Dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "kernels",
    "ONEDNN_MAX_CPU_ISA": "kernels",
    "DNNL_MAX_CPU_ISA": "kernels",
    "ONEDNN_DEFAULT_FPMATH_MODE": "kernels",
    "DNNL_DEFAULT_FPMATH_MODE": "kernels",
    "MKL_ENABLE_INSTRUCTIONS": "kernels",
    "MKL_CBWR": "kernels",
    "MKL_DEBUG_CPU_TYPE": "kernels",
    "OPENBLAS_CORETYPE": "kernels",
    "OMP_NUM_THREADS": "threads",
    "MKL_NUM_THREADS": "threads",
    "OPENBLAS_NUM_THREADS": "threads",
    "MKL_DYNAMIC": "threads",
    "OMP_DYNAMIC": "threads",
    "OMP_PROC_BIND": "threads",
    "KMP_AFFINITY": "threads",
    "CUBLAS_WORKSPACE_CONFIG": "cuda",
    "NVIDIA_TF32_OVERRIDE": "cuda",
    "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "cuda",
    "CUDA_LAUNCH_BLOCKING": "cuda",
    "TORCH_BLAS_PREFER_CUBLASLT": "cuda",
    "DISABLE_ADDMM_CUDA_LT": "cuda",
    "PYTORCH_ENABLE_MPS_FALLBACK": "device",
    "HF_HUB_OFFLINE": "loading",
    "TRANSFORMERS_OFFLINE": "loading",
}
NUMERICS_ENV_VARS: Tuple[str, ...] = tuple(ENV_VAR_GROUPS)

#: /proc/cpuinfo flags that select kernels (x86 ISA extensions, Arm vector units); the rest are noise
KERNEL_ISA_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "asimd", "asimddp", "sve", "sve2",
    "bf16", "i8mm",
)

#: an ISA level a run can be pinned to on x86 -> the variables that pin ATen, oneDNN and MKL to it
ISA_LEVELS: Dict[str, Dict[str, str]] = {
    "default": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "MKL_ENABLE_INSTRUCTIONS": "AVX512"},
}


def env_group(name: str) -> Optional[str]:
    """The group of an environment variable the fingerprint records (None for one it does not)."""
    return ENV_VAR_GROUPS.get(name)


def isa_env(level: str) -> Dict[str, str]:
    """The environment that pins ATen, oneDNN and MKL kernels to ``level`` (``avx2``, ``avx512``, ``default``)."""
    if level not in ISA_LEVELS:
        raise ValueError(f"unknown ISA level {level!r} (known: {', '.join(ISA_LEVELS)})")
    return dict(ISA_LEVELS[level])


def _cpuinfo() -> List[Dict[str, str]]:
    """``/proc/cpuinfo`` as one dict per logical CPU (empty where the file does not exist)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return []
    cpus = []
    for block in text.strip().split("\n\n"):
        entry: Dict[str, str] = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                entry[key.strip().lower()] = value.strip()
        if entry:
            cpus.append(entry)
    return cpus


def cpu_facts() -> Dict[str, Any]:
    """The CPU as numerics see it: vendor, model, family/model/stepping, kernel-selecting ISA flags, core counts."""
    cpus = _cpuinfo()
    first = cpus[0] if cpus else {}
    flags = set((first.get("flags") or first.get("features") or "").split())
    cores = {(c.get("physical id"), c.get("core id")) for c in cpus if "core id" in c}
    try:
        usable: Optional[int] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    return {
        "vendor": first.get("vendor_id") or first.get("cpu implementer"),
        "model_name": first.get("model name") or platform.processor() or platform.machine(),
        "family": first.get("cpu family") or first.get("cpu architecture"),
        "model": first.get("model") or first.get("cpu part"),
        "stepping": first.get("stepping") or first.get("cpu variant"),
        "microcode": first.get("microcode"),
        "isa": sorted(f for f in KERNEL_ISA_FLAGS if f in flags),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "physical_cores": len(cores) or None,
    }
