"""The numerics flags of one run: TF32 and reduced-precision reductions, set and put back.

:func:`numerics` turns TF32 off for every precision except ``tf32`` (which turns it on),
sets cuBLAS's reduced-precision-reduction switches when asked (``default`` leaves
PyTorch's), and puts every flag back when the run ends, also when it raises. Where torch
has the ``fp32_precision`` attributes only they are used; older torch gets the legacy ones.
See docs/design.md#tf32-and-reduced-precision-flags-of-a-run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from hpo.engine.spec import REDUCED_PRECISION_REDUCTION, TF32_NEEDS_CUDA
from hpo.errors import ConfigError

__all__ = [
    "check_tf32_device",
    "fp32_precision_api",
    "numerics",
    "read_flags",
]

# The cuDNN ops with their own fp32_precision (the new API).
_CUDNN_OPS = ("conv", "rnn")
_REDUCTIONS = ("fp16", "bf16")


def fp32_precision_api() -> bool:
    """Whether this torch has the ``fp32_precision`` TF32 API (2.7+; current from 2.9)."""
    cudnn = torch.backends.cudnn
    return hasattr(torch.backends.cuda.matmul, "fp32_precision") and all(
        hasattr(getattr(cudnn, op, None), "fp32_precision") for op in _CUDNN_OPS
    )


def check_tf32_device(precision: str, device: torch.device | str, requested: str) -> None:
    """Raise :class:`ConfigError` when ``tf32`` would run on anything but CUDA (``device``:
    the resolved device, ``requested``: the spec's ``device``, e.g. ``auto``)."""
    kind = torch.device(device).type
    if precision == "tf32" and kind != "cuda":
        raise ConfigError(
            f"{TF32_NEEDS_CUDA} (device {requested!r} is {kind!r} on this machine); run it "
            "where torch.cuda.is_available() is true, or choose another precision."
        )


@contextlib.contextmanager
def numerics(
    precision: str, reduced_precision_reduction: str = "default", *, api: str | None = None
) -> Iterator[None]:
    """Set the run's numerics flags for the body and put every one back afterwards.

    Args:
        precision: the run's precision name; ``tf32`` turns TF32 on, any other off.
        reduced_precision_reduction: ``default`` (leave PyTorch's), ``on`` or ``off``.
        api: ``fp32_precision`` or ``legacy``; default the newest this torch has.

    Raises:
        ConfigError: an unknown ``reduced_precision_reduction`` (before anything is set).
    """
    if reduced_precision_reduction not in REDUCED_PRECISION_REDUCTION:
        raise ConfigError(
            f"Unknown reduced_precision_reduction {reduced_precision_reduction!r}. Valid "
            f"values are {list(REDUCED_PRECISION_REDUCTION)}."
        )
    new_api = fp32_precision_api() if api is None else api == "fp32_precision"
    saved_tf32 = _save_tf32(new_api)
    saved_reductions = _save_reductions()
    try:
        _set_tf32(new_api, precision == "tf32")
        if reduced_precision_reduction != "default":
            allow = reduced_precision_reduction == "on"
            for kind in _REDUCTIONS:
                setattr(torch.backends.cuda.matmul,
                        f"allow_{kind}_reduced_precision_reduction", allow)
        yield
    finally:
        _restore_reductions(saved_reductions)
        _restore_tf32(new_api, saved_tf32)


def read_flags() -> dict[str, Any]:
    """The TF32 and reduced-precision settings in force now, without changing any.

    ``cuda_matmul_allow_tf32`` / ``cudnn_allow_tf32`` say whether float32 matmuls / cuDNN
    convolutions may use TF32; with the new API ``fp32_precision`` holds the raw settings
    (``none`` inherits: cuDNN's ops from cuDNN, both from the global one; all ``none`` is
    IEEE float32) and ``float32_matmul_precision`` is None (the legacy getter would raise).
    """
    matmul = torch.backends.cuda.matmul
    flags: dict[str, Any] = {}
    if fp32_precision_api():
        raw = {
            "global": torch.backends.fp32_precision,
            "cuda_matmul": matmul.fp32_precision,
            "cudnn": torch.backends.cudnn.fp32_precision,
            **{f"cudnn_{op}": getattr(torch.backends.cudnn, op).fp32_precision
               for op in _CUDNN_OPS},
        }
        if hasattr(torch.backends.mkldnn, "fp32_precision"):
            raw["mkldnn"] = torch.backends.mkldnn.fp32_precision
        flags["cuda_matmul_allow_tf32"] = _effective(raw["cuda_matmul"], raw["global"]) == "tf32"
        conv = _effective(raw["cudnn_conv"], raw["cudnn"], raw["global"])
        flags["cudnn_allow_tf32"] = conv == "tf32"
        flags["float32_matmul_precision"] = None
        flags["fp32_precision"] = raw
    else:
        flags["cuda_matmul_allow_tf32"] = bool(matmul.allow_tf32)
        flags["cudnn_allow_tf32"] = bool(torch.backends.cudnn.allow_tf32)
        flags["float32_matmul_precision"] = torch.get_float32_matmul_precision()
        flags["fp32_precision"] = None
    for kind in _REDUCTIONS:
        name = f"allow_{kind}_reduced_precision_reduction"
        flags[f"{kind}_reduced_precision_reduction"] = bool(getattr(matmul, name))
        split_k = _optional(matmul, f"{name}_split_k")
        flags[f"{kind}_reduced_precision_reduction_split_k"] = split_k
    flags["fp16_accumulation"] = _optional(matmul, "allow_fp16_accumulation")
    return flags


# ----------------------------------------------------------------------------------
def _effective(*levels: str) -> str:
    """The first setting that is not ``none`` (``none`` inherits), else IEEE."""
    return next((level for level in levels if level != "none"), "ieee")


def _optional(obj: Any, name: str) -> bool | None:
    """A flag this torch may lack (cuBLASModule raises AttributeError for unknown ones)."""
    try:
        return bool(getattr(obj, name))
    except AttributeError:
        return None


def _save_tf32(new_api: bool) -> dict[str, Any]:
    if new_api:
        return {
            "matmul": torch.backends.cuda.matmul.fp32_precision,
            **{op: getattr(torch.backends.cudnn, op).fp32_precision for op in _CUDNN_OPS},
        }
    return {
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn": bool(torch.backends.cudnn.allow_tf32),
    }


def _set_tf32(new_api: bool, on: bool) -> None:
    if new_api:
        value = "tf32" if on else "ieee"
        torch.backends.cuda.matmul.fp32_precision = value
        for op in _CUDNN_OPS:
            getattr(torch.backends.cudnn, op).fp32_precision = value
    else:
        # Legacy: "high" is matmul.allow_tf32 = True, "highest" is False.
        torch.set_float32_matmul_precision("high" if on else "highest")
        torch.backends.cudnn.allow_tf32 = on


def _restore_tf32(new_api: bool, saved: dict[str, Any]) -> None:
    if new_api:
        torch.backends.cuda.matmul.fp32_precision = saved["matmul"]
        for op in _CUDNN_OPS:
            getattr(torch.backends.cudnn, op).fp32_precision = saved[op]
    else:
        torch.set_float32_matmul_precision(saved["float32_matmul_precision"])
        torch.backends.cudnn.allow_tf32 = saved["cudnn"]


def _save_reductions() -> dict[str, tuple[bool, bool | None]]:
    matmul = torch.backends.cuda.matmul
    saved = {}
    for kind in _REDUCTIONS:
        name = f"allow_{kind}_reduced_precision_reduction"
        saved[kind] = (bool(getattr(matmul, name)), _optional(matmul, f"{name}_split_k"))
    return saved


def _restore_reductions(saved: dict[str, tuple[bool, bool | None]]) -> None:
    matmul = torch.backends.cuda.matmul
    for kind, (allow, split_k) in saved.items():
        name = f"allow_{kind}_reduced_precision_reduction"
        # torch with the split-K switch takes (allow, split_k); a bool alone would set
        # split_k to True, which may not be what the caller had.
        setattr(matmul, name, allow if split_k is None else (allow, split_k))
