"""Where torch models run and at what precision: one policy for every torch backend.

`resolve_device` picks the accelerator (CUDA, then Apple's MPS, then the CPU) or checks the one
asked for; `resolve_dtype` picks the precision that device runs well (bf16 on CUDA cards that
support it, fp16 on other CUDA cards and on MPS, fp32 on the CPU, where half precision is slow
and poorly supported). Both read their setting at call time from `$OLLAGRAPH_DEVICE` and
`$OLLAGRAPH_PRECISION` when the caller asks for `auto`.

torch is imported inside the functions, never when this module is imported.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

DEVICE_ENV = "OLLAGRAPH_DEVICE"
PRECISION_ENV = "OLLAGRAPH_PRECISION"

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_PRECISIONS = {
    "fp32": "float32",
    "float32": "float32",
    "fp16": "float16",
    "float16": "float16",
    "half": "float16",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
}


def _torch() -> Any:
    """Import torch, with a clear error when it is missing."""
    try:
        import torch
    except ImportError:
        raise ValueError("torch is not installed; pip install torch") from None
    return torch


def _mps_available(torch: Any) -> bool:
    backend = getattr(getattr(torch, "backends", None), "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(requested: str = "auto") -> str:
    """Return the torch device to use, checking that it exists.

    Args:
        requested: `auto` (then `$OLLAGRAPH_DEVICE`, else cuda > mps > cpu), `cpu`, `mps`,
            `cuda` or `cuda:N`.

    Returns:
        A torch device string: `cuda`, `cuda:N`, `mps` or `cpu`.

    Raises:
        ValueError: The device is unknown or not available on this machine.
    """
    value = (requested or "auto").strip().lower()
    if value == "auto":
        value = os.environ.get(DEVICE_ENV, "").strip().lower() or "auto"
    if not _DEVICE.match(value):
        raise ValueError(
            f"unknown device {value!r} (from {DEVICE_ENV} or the request): "
            "use auto, cpu, mps, cuda or cuda:N"
        )
    torch = _torch()
    cuda = bool(torch.cuda.is_available())
    if value == "auto":
        if cuda:
            return "cuda"
        return "mps" if _mps_available(torch) else "cpu"
    if value == "cpu":
        return "cpu"
    if value == "mps":
        if not _mps_available(torch):
            raise ValueError(
                f"device 'mps' is not available on this machine ({DEVICE_ENV}): use cpu or auto"
            )
        return "mps"
    if not cuda:
        raise ValueError(
            f"device {value!r} is not available: torch sees no CUDA GPU ({DEVICE_ENV}); "
            "use cpu or auto"
        )
    if ":" in value:
        index = int(value.split(":", 1)[1])
        count = int(torch.cuda.device_count())
        if index >= count:
            raise ValueError(
                f"device {value!r} is not available: this machine has {count} CUDA "
                f"device(s) (cuda:0..cuda:{count - 1})"
            )
    return value


def resolve_dtype(device: str, requested: str = "auto") -> tuple[torch.dtype, str]:
    """Return the precision to load weights in on `device`, and a note when it was changed.

    Args:
        device: A device from `resolve_device`.
        requested: `auto` (then `$OLLAGRAPH_PRECISION`, else the device's default), `fp32`,
            `fp16` or `bf16` (`float32`, `float16`, `half`, `bfloat16` also accepted).

    Returns:
        (torch dtype, note). The note is empty unless the request was downgraded, e.g.
        fp16 on the CPU becomes fp32.

    Raises:
        ValueError: The precision is unknown.
    """
    value = (requested or "auto").strip().lower()
    if value == "auto":
        value = os.environ.get(PRECISION_ENV, "").strip().lower() or "auto"
    if value != "auto" and value not in _PRECISIONS:
        raise ValueError(
            f"unknown precision {value!r} (from {PRECISION_ENV} or the request): "
            "use auto, fp32, fp16 or bf16"
        )
    torch = _torch()
    kind = device.split(":", 1)[0]
    if value == "auto":
        if kind == "cuda":
            with_bf16 = bool(torch.cuda.is_bf16_supported())
            return (torch.bfloat16 if with_bf16 else torch.float16), ""
        if kind == "mps":
            return torch.float16, ""
        return torch.float32, ""
    name = _PRECISIONS[value]
    if kind == "cpu" and name != "float32":
        short = "bf16" if name == "bfloat16" else "fp16"
        return torch.float32, (
            f"{short} requested on the CPU: using fp32 instead "
            "(half precision is slow and poorly supported on CPUs)"
        )
    if kind == "cuda" and name == "bfloat16" and not torch.cuda.is_bf16_supported():
        return torch.float16, "bf16 requested but this GPU does not support it: using fp16"
    if kind == "mps" and name == "bfloat16":
        return torch.float16, "bf16 requested on MPS: using fp16 (better supported)"
    return getattr(torch, name), ""


def describe(device: str, dtype: Any) -> str:
    """A short label such as `cuda bf16` or `cpu fp32`, for logs and `agent doctor`."""
    short = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
    name = str(dtype).removeprefix("torch.")
    return f"{device} {short.get(name, name)}"


__all__ = ["DEVICE_ENV", "PRECISION_ENV", "describe", "resolve_device", "resolve_dtype"]
