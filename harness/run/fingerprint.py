"""The environment fingerprint recorded in every results file: everything known to move embedding numbers, so
a drift can be traced to what changed. Imports torch lazily; a flag an old version lacks is ``None``.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from typing import Any, Callable, Dict, List, Optional

from harness.hardware import NUMERICS_ENV_VARS, cpu_facts

__all__ = ["collect_fingerprint", "collect_client_fingerprint", "package_versions", "cpu_model", "FINGERPRINT_ENV_VARS"]

#: Environment variables that change numerics or loading; recorded verbatim when set (one list: harness.hardware).
FINGERPRINT_ENV_VARS = NUMERICS_ENV_VARS

_PACKAGES = (
    "torch",
    "transformers",
    "sentence-transformers",
    "tokenizers",
    "huggingface-hub",
    "safetensors",
    "numpy",
    "pyarrow",
    "scipy",
    "onnxruntime",
    "optimum",
    "openvino",
)


def _safe(fn: Callable[[], Any]) -> Any:
    """Call a probe; a flag an old torch lacks becomes ``None`` instead of an error."""
    try:
        return fn()
    except Exception:  # noqa: BLE001 - a missing probe must never fail a run
        return None


def package_versions() -> Dict[str, Optional[str]]:
    """Installed distribution versions (``None`` when not installed), read without importing the packages."""
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - python < 3.8
        return {}
    out: Dict[str, Optional[str]] = {}
    for name in _PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str:
    """Human-readable CPU model (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _torch_build(torch: Any) -> Dict[str, Any]:
    """BLAS, LAPACK and oneDNN as torch reports them (``torch.__config__.show()``)."""
    text = _safe(torch.__config__.show) or ""
    found: Dict[str, Any] = {}
    for key in ("BLAS_INFO", "LAPACK_INFO", "USE_MKLDNN", "USE_CUDNN"):
        match = re.search(rf"{key}=([^,\n]*)", text)
        if match:
            found[key.lower()] = match.group(1).strip()
    onednn = re.search(r"(?:Intel\(R\) )?(?:MKL-DNN|oneDNN|oneAPI Deep Neural Network Library \(oneDNN\)) v?([\w.\-+]+)", text)
    found["onednn"] = onednn.group(1) if onednn else None
    mkl = re.search(r"Intel\(R\) (?:oneAPI )?Math Kernel Library Version ([\d.]+)", text)
    found["mkl"] = mkl.group(1) if mkl else None
    found["cpu_capability"] = _safe(lambda: torch.backends.cpu.get_cpu_capability())
    return found


def blas_runtime() -> List[Dict[str, Any]]:
    """The BLAS/OpenMP libraries loaded in this process as threadpoolctl sees them: which one, which version,
    which kernel architecture it dispatched to (e.g. OpenBLAS ``SkylakeX`` vs ``Haswell``), and its threads.
    torch's own MKL is linked statically and invisible here: ``torch_build`` and ``cpu_capability`` cover it."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("user_api", "internal_api", "version", "architecture", "num_threads", "threading_layer")
    found = [{"library": os.path.basename(str(info.get("filepath", ""))), **{k: info[k] for k in keys if info.get(k) is not None}}
             for info in (_safe(threadpool_info) or [])]
    # sorted: threadpoolctl lists libraries in load order, which import order changes without changing anything
    return sorted(found, key=lambda entry: json.dumps(entry, sort_keys=True, default=str))


def _torch_flags(torch: Any) -> Dict[str, Any]:
    cuda = torch.backends.cuda
    cudnn = torch.backends.cudnn
    return {
        "tf32_matmul": _safe(lambda: bool(cuda.matmul.allow_tf32)),
        "tf32_cudnn": _safe(lambda: bool(cudnn.allow_tf32)),
        "float32_matmul_precision": _safe(torch.get_float32_matmul_precision),
        "fp16_reduced_precision_reduction": _safe(lambda: bool(cuda.matmul.allow_fp16_reduced_precision_reduction)),
        "bf16_reduced_precision_reduction": _safe(lambda: bool(cuda.matmul.allow_bf16_reduced_precision_reduction)),
        "deterministic_algorithms": _safe(torch.are_deterministic_algorithms_enabled),
        "cudnn_deterministic": _safe(lambda: bool(cudnn.deterministic)),
        "cudnn_benchmark": _safe(lambda: bool(cudnn.benchmark)),
        "sdpa_flash": _safe(lambda: bool(cuda.flash_sdp_enabled())),
        "sdpa_mem_efficient": _safe(lambda: bool(cuda.mem_efficient_sdp_enabled())),
        "sdpa_math": _safe(lambda: bool(cuda.math_sdp_enabled())),
        "num_threads": _safe(torch.get_num_threads),
        "num_interop_threads": _safe(torch.get_num_interop_threads),
    }


def _gpu(torch: Any, device: str) -> Dict[str, Any]:
    info: Dict[str, Any] = {
        "cuda_available": _safe(torch.cuda.is_available),
        "mps_available": _safe(lambda: torch.backends.mps.is_available()),
        "torch_cuda": _safe(lambda: torch.version.cuda),
        "cudnn": _safe(lambda: torch.backends.cudnn.version()),
        "gpu_name": None,
        "gpu_capability": None,
        "gpu_count": _safe(torch.cuda.device_count),
    }
    if device.startswith("cuda") and info["cuda_available"]:
        info["gpu_name"] = _safe(lambda: torch.cuda.get_device_name(device))
        info["gpu_capability"] = _safe(lambda: ".".join(map(str, torch.cuda.get_device_capability(device))))
        info["cuda_driver"] = _safe(lambda: torch._C._cuda_getDriverVersion())
    return info


def _process() -> Dict[str, Any]:
    """The interpreter and platform of this process (every run records them, served or not)."""
    return {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def collect_fingerprint(device: str, dtype: str) -> Dict[str, Any]:
    """Everything about this process that can move the numbers, as a flat-ish JSON-able dict."""
    import torch

    return {
        **_process(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu": cpu_facts(),
        "blas_runtime": blas_runtime(),
        "packages": package_versions(),
        "torch_version": torch.__version__,
        "torch_build": _torch_build(torch),
        "device": device,
        "device_type": device.split(":")[0],
        "dtype": dtype,
        **_gpu(torch, device),
        **_torch_flags(torch),
        "env": {k: os.environ[k] for k in FINGERPRINT_ENV_VARS if k in os.environ},
    }


def collect_client_fingerprint(dtype: str) -> Dict[str, Any]:
    """The fingerprint of a run whose models are all served (``backend = "http"``): this process only sends
    texts, so no torch facts (torch need not be installed); the servers' facts are added under ``served``."""
    return {
        **_process(),
        "packages": package_versions(),
        "device": "http",
        "device_type": "http",
        "dtype": dtype,
    }
