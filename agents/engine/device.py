"""The engine's view of the device policy: `resolve_device` and `resolve_dtype` over `devices`.

The transformers backend asks for `auto`, which reads `$OLLAGRAPH_DEVICE` and
`$OLLAGRAPH_PRECISION` at call time; the rules themselves (cuda > mps > cpu, bf16/fp16 on GPUs,
fp32 on the CPU, downgrades with a note) live in `ollagraph.agents.devices`, shared with the
image workers. Errors are `ValueError`s, which the engine turns into HTTP errors.

torch is imported inside the functions, never when this module is imported.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ollagraph.agents.devices import DeviceCaps, DevicePolicy, resolve_placement
from ollagraph.agents.errors import DeviceError

if TYPE_CHECKING:
    import torch

DEVICE_ENV = "OLLAGRAPH_DEVICE"
PRECISION_ENV = "OLLAGRAPH_PRECISION"


def _from_env(value: str, env: str) -> str:
    value = (value or "auto").strip().lower()
    return (os.environ.get(env, "").strip().lower() or "auto") if value == "auto" else value


def resolve_device(requested: str = "auto") -> str:
    """Return the torch device to use, checking that it exists.

    Args:
        requested: `auto` (then `$OLLAGRAPH_DEVICE`, else cuda > mps > cpu), `cpu`, `mps`,
            `cuda` or `cuda:N`.

    Raises:
        ValueError: The device is unknown or not available on this machine.
    """
    value = _from_env(requested, DEVICE_ENV)
    try:
        policy = DevicePolicy(device=value)
    except DeviceError:
        raise ValueError(
            f"unknown device {value!r} (from {DEVICE_ENV} or the request): "
            "use auto, cpu, mps, cuda or cuda:N"
        ) from None
    try:
        return resolve_placement(policy, DeviceCaps.probe()).device
    except DeviceError as exc:
        raise ValueError(f"{exc.message} ({DEVICE_ENV})") from None


def resolve_dtype(device: str, requested: str = "auto") -> tuple[torch.dtype, str]:
    """Return the precision to load weights in on `device`, and a note when it was changed.

    Args:
        device: A device from `resolve_device`.
        requested: `auto` (then `$OLLAGRAPH_PRECISION`, else the device's default), `fp32`,
            `fp16` or `bf16` (`float32`, `float16`, `half`, `bfloat16` also accepted).

    Returns:
        (torch dtype, note). The note is empty unless the request was downgraded.

    Raises:
        ValueError: The precision is unknown.
    """
    value = _from_env(requested, PRECISION_ENV)
    try:
        policy = DevicePolicy(device=device, precision=value)
    except DeviceError:
        raise ValueError(
            f"unknown precision {value!r} (from {PRECISION_ENV} or the request): "
            "use auto, fp32, fp16 or bf16"
        ) from None
    try:
        placement = resolve_placement(policy, DeviceCaps.probe())
    except DeviceError as exc:
        raise ValueError(exc.message) from None
    return placement.torch_dtype(), "; ".join(placement.notes)


def describe(device: str, dtype: Any) -> str:
    """A short label such as `cuda bf16` or `cpu fp32`, for logs and `agent doctor`."""
    short = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
    name = str(dtype).removeprefix("torch.")
    return f"{device} {short.get(name, name)}"


__all__ = ["DEVICE_ENV", "PRECISION_ENV", "describe", "resolve_device", "resolve_dtype"]
