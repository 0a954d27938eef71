"""One device and precision policy for every torch model: the image workers and the engine.

A `DevicePolicy` is what the user asked for (settings, per-task overrides, CLI flags); a
`DeviceCaps` is what the machine has (probed from torch, or built by hand in tests to simulate
GPUs this machine lacks); `resolve_placement` turns the two into a `Placement`: the device, the
weight precision, how to spread a model (accelerate's `device_map`), quantization, and notes that
say what was changed and why. Nothing here imports torch at module import time.

The rules:
- device `auto` is cuda > mps > cpu; an explicit device that is missing is an error.
- precision `auto` is bf16 on CUDA cards that support it, fp16 on other CUDA cards and on MPS,
  fp32 on the CPU. fp16/bf16 asked for on the CPU is downgraded to fp32 with a note (half
  precision on CPUs is slow and many kernels lack it); bf16 on a card without it becomes fp16.
- device_mode `auto` spreads a model over the CUDA GPUs (accelerate's `device_map="auto"`);
  without CUDA it falls back to one device with a note.
- quantization int8/int4/nf4 needs bitsandbytes and CUDA; elsewhere it is an error.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from typing import Any

from ollagraph.agents.errors import DeviceError

DEVICE_MODES = ("single", "auto")
QUANTIZATIONS = ("none", "int8", "int4", "nf4")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_PRECISIONS = {
    "auto": "auto",
    "fp32": "float32",
    "float32": "float32",
    "fp16": "float16",
    "float16": "float16",
    "half": "float16",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
}
_SHORT = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


@dataclass(frozen=True)
class DevicePolicy:
    """What the user asked for; every field accepts `auto` where it makes sense.

    Attributes:
        device: auto, cpu, mps, cuda or cuda:N.
        device_mode: single (one device) or auto (spread a large model over the GPUs).
        precision: auto, float32/fp32, float16/fp16 or bfloat16/bf16.
        quantization: none, int8, int4 or nf4 (bitsandbytes, CUDA only).
        batch_size: Most requests one forward pass serves.
        low_cpu_mem_usage: Load weights without a second full copy in RAM.
    """

    device: str = "auto"
    device_mode: str = "single"
    precision: str = "auto"
    quantization: str = "none"
    batch_size: int = 8
    low_cpu_mem_usage: bool = True

    def __post_init__(self) -> None:
        device = (self.device or "auto").strip().lower()
        precision = (self.precision or "auto").strip().lower()
        mode = (self.device_mode or "single").strip().lower()
        quantization = (self.quantization or "none").strip().lower()
        if not _DEVICE.match(device):
            raise DeviceError(
                f"Unknown device {self.device!r}: use auto, cpu, mps, cuda or cuda:N."
            )
        if precision not in _PRECISIONS:
            raise DeviceError(
                f"Unknown precision {self.precision!r}: use auto, float32, float16 or bfloat16."
            )
        if mode not in DEVICE_MODES:
            raise DeviceError(f"Unknown device_mode {self.device_mode!r}: use single or auto.")
        if quantization not in QUANTIZATIONS:
            raise DeviceError(
                f"Unknown quantization {self.quantization!r}: use none, int8, int4 or nf4."
            )
        if self.batch_size < 1:
            raise DeviceError(f"batch_size must be at least 1, got {self.batch_size}.")
        object.__setattr__(self, "device", device)
        object.__setattr__(self, "precision", _PRECISIONS[precision])
        object.__setattr__(self, "device_mode", mode)
        object.__setattr__(self, "quantization", quantization)


@dataclass(frozen=True)
class Gpu:
    """One CUDA card as torch reports it."""

    name: str = "GPU"
    bf16: bool = True
    memory_gib: float = 0.0


@dataclass(frozen=True)
class DeviceCaps:
    """What this machine can run. Tests build one by hand to simulate GPUs.

    Attributes:
        cuda: The CUDA cards, in index order.
        mps: Apple's Metal backend is available.
        bitsandbytes: The bitsandbytes package is installed (for quantization).
        accelerate: The accelerate package is installed (for device_map spreading).
    """

    cuda: tuple[Gpu, ...] = ()
    mps: bool = False
    bitsandbytes: bool = False
    accelerate: bool = False

    @classmethod
    def probe(cls) -> DeviceCaps:
        """Ask torch what this machine has.

        Raises:
            DeviceError: torch is not installed.
        """
        try:
            import torch
        except ImportError:
            raise DeviceError("torch is not installed: pip install torch") from None
        cards: list[Gpu] = []
        if torch.cuda.is_available():
            bf16 = bool(torch.cuda.is_bf16_supported())
            for index in range(int(torch.cuda.device_count())):
                try:
                    props = torch.cuda.get_device_properties(index)
                    name, memory = str(props.name), round(props.total_memory / 2**30, 1)
                except (RuntimeError, AssertionError):  # a card torch lists but cannot query
                    name, memory = f"cuda:{index}", 0.0
                cards.append(Gpu(name=name, bf16=bf16, memory_gib=memory))
        mps = getattr(getattr(torch, "backends", None), "mps", None)
        return cls(
            cuda=tuple(cards),
            mps=bool(mps is not None and mps.is_available()),
            bitsandbytes=importlib.util.find_spec("bitsandbytes") is not None,
            accelerate=importlib.util.find_spec("accelerate") is not None,
        )


@dataclass(frozen=True)
class Placement:
    """Where and how a model runs, resolved from a policy on a machine.

    Attributes:
        device: cpu, mps, cuda or cuda:N (the first GPU when `device_map` spreads the model).
        dtype: float32, float16 or bfloat16 (the compute precision under quantization).
        device_map: "auto" when accelerate spreads the model over GPUs, else None.
        quantization: none, int8, int4 or nf4.
        batch_size: Most requests one forward pass serves.
        low_cpu_mem_usage: Load weights without a second full copy in RAM.
        notes: What was changed from the request and why, for logs, `-v` and `agent doctor`.
    """

    device: str
    dtype: str
    device_map: str | None = None
    quantization: str = "none"
    batch_size: int = 8
    low_cpu_mem_usage: bool = True
    notes: tuple[str, ...] = field(default=())

    @property
    def label(self) -> str:
        """A short description such as `cuda bf16`, `cpu fp32` or `cuda fp16 nf4 spread`."""
        parts = [self.device, _SHORT.get(self.dtype, self.dtype)]
        if self.quantization != "none":
            parts.append(self.quantization)
        if self.device_map:
            parts.append("spread")
        return " ".join(parts)

    def torch_dtype(self) -> Any:
        """The torch dtype object for `dtype` (imports torch)."""
        import torch

        return getattr(torch, self.dtype)

    @property
    def placed_by_loader(self) -> bool:
        """True when `from_pretrained` places the weights itself (device_map, quantization).

        Such a model must not be moved with `.to(device)` afterwards.
        """
        return self.device_map is not None or self.quantization != "none"

    def pretrained_options(self) -> dict[str, Any]:
        """Keyword arguments for a transformers `from_pretrained` under this placement.

        `dtype`, `low_cpu_mem_usage`, and `device_map` / `quantization_config` when set.
        """
        options: dict[str, Any] = {
            "dtype": self.torch_dtype(),
            "low_cpu_mem_usage": self.low_cpu_mem_usage,
        }
        if self.device_map:
            options["device_map"] = self.device_map
        quantization = self.quantization_config()
        if quantization is not None:
            options["quantization_config"] = quantization
        return options

    def quantization_config(self) -> Any:
        """A transformers `BitsAndBytesConfig` for the quantization, or None."""
        if self.quantization == "none":
            return None
        from transformers import BitsAndBytesConfig

        if self.quantization == "int8":
            return BitsAndBytesConfig(load_in_8bit=True)
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4" if self.quantization == "nf4" else "fp4",
            bnb_4bit_compute_dtype=self.torch_dtype(),
        )


def _resolve_device(requested: str, caps: DeviceCaps) -> str:
    if requested == "auto":
        if caps.cuda:
            return "cuda"
        return "mps" if caps.mps else "cpu"
    if requested == "cpu":
        return "cpu"
    if requested == "mps":
        if not caps.mps:
            raise DeviceError(
                "Device 'mps' is not available on this machine.", hint="Use device cpu or auto."
            )
        return "mps"
    if not caps.cuda:
        raise DeviceError(
            f"Device {requested!r} is not available: torch sees no CUDA GPU.",
            hint="Use device cpu or auto (set OLLAGRAPH_DEVICE, the config file or --device).",
        )
    if ":" in requested:
        index = int(requested.split(":", 1)[1])
        if index >= len(caps.cuda):
            raise DeviceError(
                f"Device {requested!r} is not available: this machine has {len(caps.cuda)} "
                f"CUDA device(s) (cuda:0..cuda:{len(caps.cuda) - 1})."
            )
    return requested


def _card(device: str, caps: DeviceCaps) -> Gpu:
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    return caps.cuda[index]


def _resolve_dtype(device: str, requested: str, caps: DeviceCaps) -> tuple[str, str]:
    kind = device.split(":", 1)[0]
    if requested == "auto":
        if kind == "cuda":
            return ("bfloat16" if _card(device, caps).bf16 else "float16"), ""
        return ("float16" if kind == "mps" else "float32"), ""
    if kind == "cpu" and requested != "float32":
        return "float32", (
            f"{_SHORT[requested]} requested on the CPU: using fp32 instead "
            "(half precision is slow and poorly supported on CPUs)"
        )
    if kind == "cuda" and requested == "bfloat16" and not _card(device, caps).bf16:
        return "float16", "bf16 requested but this GPU does not support it: using fp16"
    if kind == "mps" and requested == "bfloat16":
        return "float16", "bf16 requested on MPS: using fp16 (better supported)"
    return requested, ""


def resolve_placement(policy: DevicePolicy, caps: DeviceCaps | None = None) -> Placement:
    """Decide where and how a model runs.

    Args:
        policy: What the user asked for.
        caps: What the machine has; probed from torch when None.

    Returns:
        The placement, with notes for every request that was downgraded.

    Raises:
        DeviceError: The device does not exist here, or quantization cannot run here.
    """
    caps = DeviceCaps.probe() if caps is None else caps
    device = _resolve_device(policy.device, caps)
    dtype, note = _resolve_dtype(device, policy.precision, caps)
    notes = [note] if note else []
    device_map: str | None = None
    if policy.device_mode == "auto":
        if device.startswith("cuda") and caps.accelerate:
            device_map = "auto"
        elif device.startswith("cuda"):
            raise DeviceError(
                "device_mode auto needs the accelerate package to spread a model over GPUs.",
                hint="pip install accelerate, or use device_mode single.",
            )
        else:
            notes.append(f"device_mode auto spreads models over CUDA GPUs: using {device} only")
    if policy.quantization != "none":
        if not device.startswith("cuda"):
            raise DeviceError(
                f"Quantization {policy.quantization} needs a CUDA GPU (bitsandbytes); "
                f"this run is on {device}.",
                hint="Use quantization none on this machine.",
            )
        if not caps.bitsandbytes:
            raise DeviceError(
                f"Quantization {policy.quantization} needs the bitsandbytes package.",
                hint="pip install bitsandbytes, or use quantization none.",
            )
    return Placement(
        device=device,
        dtype=dtype,
        device_map=device_map,
        quantization=policy.quantization,
        batch_size=policy.batch_size,
        low_cpu_mem_usage=policy.low_cpu_mem_usage,
        notes=tuple(notes),
    )


__all__ = [
    "DEVICE_MODES",
    "QUANTIZATIONS",
    "DeviceCaps",
    "DevicePolicy",
    "Gpu",
    "Placement",
    "resolve_placement",
]
