"""Which kernels produced a result: the platform record stored beside every number.

Whether a pre-activation lands exactly on a kink depends on how the matrix products
accumulate, and that depends on the CPU's instruction set, the BLAS/oneDNN build, the thread
count and, on a GPU, the device and its TF32 / reduced-precision switches. Two results are
comparable bitwise only when their records agree on :data:`COMPARED_KEYS`.

Everything here is read through public PyTorch calls (``torch.backends.*``,
``torch.__config__.show()``, ``torch.cuda.*``); nothing is changed.
"""

from __future__ import annotations

import functools
import platform as _stdlib_platform
import re
from collections.abc import Mapping
from typing import Any

import torch

from hpo.engine.numerics.flags import read_flags

__all__ = ["COMPARED_KEYS", "cpu_model", "platform_record", "platform_summary"]

# The keys that decide which kernels ran; a difference in any of them may change bits.
COMPARED_KEYS = (
    "torch",
    "cpu_model",
    "cpu_capability",
    "blas",
    "mkldnn",
    "num_threads",
    "device",
    "cuda_device",
    "cuda_capability",
    "cuda",
    "cudnn",
    "flags",
)


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return _stdlib_platform.processor() or _stdlib_platform.machine() or "unknown"


@functools.lru_cache(maxsize=1)
def _build_info() -> dict[str, str | None]:
    text = torch.__config__.show()

    def setting(key: str) -> str | None:
        match = re.search(rf"\b{key}=([^,\s]+)", text)
        return match.group(1) if match else None

    onednn = re.search(r"MKL-DNN v(\S+)", text)
    return {
        "blas": setting("BLAS_INFO"),
        "lapack": setting("LAPACK_INFO"),
        "mkldnn": f"oneDNN {onednn.group(1)}" if onednn else None,
    }


def _flags() -> dict[str, Any]:
    # TF32 and reduced-precision settings through the API this torch wants read
    # (numerics.read_flags: a legacy getter raises once the new API has been used).
    return {
        **read_flags(),
        "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
    }


def platform_record(device: torch.device | str | None = None) -> dict[str, Any]:
    """A JSON-ready description of the kernels a run on ``device`` uses, read now.

    Holds the torch and Python versions, the CPU model and ``cpu_capability``
    (:func:`torch.backends.cpu.get_cpu_capability`), the BLAS and oneDNN builds, the thread
    count, the numerics flags (TF32, reduced-precision reductions, determinism) and, when
    ``device`` is a CUDA device, its name, compute capability and the CUDA and cuDNN
    versions (``None`` on a CPU run).
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    build = _build_info()
    record: dict[str, Any] = {
        "torch": torch.__version__,
        "python": _stdlib_platform.python_version(),
        "os": f"{_stdlib_platform.system()} {_stdlib_platform.machine()}",
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "blas": build["blas"],
        "lapack": build["lapack"],
        "mkldnn": build["mkldnn"] if torch.backends.mkldnn.is_available() else None,
        "num_threads": torch.get_num_threads(),
        "device": dev.type,
        "cuda_device": None,
        "cuda_capability": None,
        "cuda": None,
        "cudnn": None,
        "flags": _flags(),
    }
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        record.update(
            cuda_device=torch.cuda.get_device_name(index),
            cuda_capability=f"{major}.{minor}",
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        )
    return record


def platform_summary(record: Mapping[str, Any] | None) -> str:
    """One line for humans: ``torch 2.x | AMD EPYC (AVX512) | mkl | 2 threads [| GPU ...]``;
    ``not recorded`` for a result that carries no record (None or empty)."""
    if not record:
        return "not recorded"
    parts = [
        f"torch {record.get('torch')}",
        f"{record.get('cpu_model')} ({record.get('cpu_capability')})",
        f"{record.get('blas')}",
        f"{record.get('num_threads')} threads",
    ]
    if record.get("cuda_device"):
        parts.append(
            f"{record['cuda_device']} (sm {record.get('cuda_capability')}, CUDA "
            f"{record.get('cuda')}, cuDNN {record.get('cudnn')})"
        )
    return " | ".join(parts)
