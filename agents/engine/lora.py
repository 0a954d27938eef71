"""LoRA adapters on GGUF models: checking them against a base model, and applying them.

`agent models add NAME BASE.gguf --lora ADAPTER.gguf[:scale]` registers a base model with one or
more adapters (like an Ollama Modelfile's `ADAPTER` lines, with a scale each). An adapter is a
GGUF file written by llama.cpp's `convert_lora_to_gguf.py` (or any writer of the same layout):
`general.type = adapter`, `adapter.type = lora`, `adapter.lora.alpha`, and for each adapted
weight `W` of the base a pair `W.lora_a` / `W.lora_b`. The engine computes
`W x + scale * (alpha / rank) * B (A x)`, as llama.cpp does.

Registration checks everything llama.cpp would refuse at load time, without loading the model:
the file type, the architecture, that each adapted tensor exists in the base, and the shapes
(in ggml order a weight `W` is `[n_in, n_out]`, `A` is `[n_in, rank]`, `B` is `[rank, n_out]`;
for `token_embd.weight` A and B are swapped, as llama.cpp expects). The registry keeps each
adapter's SHA-256, so an adapter file changed after registration is noticed (the engine refuses
to load it) and the model's digest always names the exact weights in use.

`llama_cpp` is imported only when adapters are applied.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ollagraph.agents.engine.gguf import GGUFError, GGUFInfo, gguf_info, is_gguf

LORA_A = ".lora_a"
LORA_B = ".lora_b"


@dataclass(frozen=True)
class LoraAdapter:
    """A LoRA adapter registered with a model.

    Attributes:
        path: The adapter's GGUF file (used in place, not copied).
        scale: How strongly it is applied (0 turns it off; 1 is as trained).
        sha256: The hex SHA-256 of the file when it was registered.
    """

    path: Path
    scale: float
    sha256: str

    def to_json(self) -> dict[str, Any]:
        """The registry's JSON form."""
        return {"path": str(self.path), "scale": self.scale, "sha256": self.sha256}

    @classmethod
    def from_json(cls, entry: Any) -> LoraAdapter | None:
        """Read the registry's JSON form (None when it is malformed)."""
        if not isinstance(entry, dict):
            return None
        path, scale, digest = entry.get("path"), entry.get("scale", 1.0), entry.get("sha256")
        if not isinstance(path, str) or not isinstance(digest, str):
            return None
        if not isinstance(scale, int | float) or isinstance(scale, bool):
            return None
        return cls(Path(path), float(scale), digest)


def parse_lora_option(text: str) -> tuple[Path, float]:
    """Split a `--lora` value, `ADAPTER.gguf[:scale]`, into a path and a scale (default 1.0).

    A value naming an existing file is taken whole, so paths containing `:` still work.

    Args:
        text: What the user typed.

    Raises:
        ValueError: The scale is not a finite, non-negative number.
    """
    if Path(text).expanduser().exists() or ":" not in text:
        return Path(text).expanduser(), 1.0
    path, _, scale_text = text.rpartition(":")
    try:
        scale = float(scale_text)
    except ValueError:
        raise ValueError(
            f"--lora {text}: scale {scale_text!r} is not a number "
            "(write ADAPTER.gguf or ADAPTER.gguf:SCALE, e.g. adapter.gguf:0.5)"
        ) from None
    if not math.isfinite(scale) or scale < 0:
        raise ValueError(f"--lora {text}: the scale must be a number ≥ 0, not {scale_text}")
    return Path(path).expanduser(), scale


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(dim) for dim in shape) + "]"


def check_adapter(adapter: Path, base: GGUFInfo) -> GGUFInfo:
    """Check that `adapter` is a GGUF LoRA adapter that fits the base model.

    Args:
        adapter: The adapter file.
        base: The base model's GGUF header.

    Returns:
        The adapter's GGUF header.

    Raises:
        ValueError: The file is missing or is not a LoRA adapter for this base; the message
            names the file and what does not fit.
    """
    if not adapter.is_file():
        raise ValueError(f"LoRA adapter {adapter} does not exist or is not a file")
    if not is_gguf(adapter):
        raise ValueError(f"LoRA adapter {adapter} is not a GGUF file")
    try:
        info = gguf_info(adapter)
    except GGUFError as exc:
        raise ValueError(f"LoRA adapter {adapter}: {exc}") from None
    kind = info.metadata.get("general.type")
    adapter_type = info.metadata.get("adapter.type")
    if kind != "adapter" or adapter_type != "lora":
        raise ValueError(
            f"{adapter} is not a GGUF LoRA adapter (general.type={kind!r}, "
            f"adapter.type={adapter_type!r}; expected 'adapter' and 'lora': convert a PEFT "
            "adapter with llama.cpp's convert_lora_to_gguf.py)"
        )
    if info.architecture != base.architecture:
        raise ValueError(
            f"LoRA adapter {adapter} is for the {info.architecture!r} architecture, "
            f"but the base model is {base.architecture!r}"
        )
    pairs: dict[str, dict[str, tuple[int, ...]]] = {}
    for name, shape in info.tensor_shapes.items():
        for suffix in (LORA_A, LORA_B):
            if name.endswith(suffix):
                pairs.setdefault(name.removesuffix(suffix), {})[suffix] = shape
                break
        else:
            raise ValueError(
                f"LoRA adapter {adapter}: tensor {name!r} is neither a .lora_a nor a .lora_b"
            )
    if not pairs:
        raise ValueError(f"LoRA adapter {adapter} has no LoRA tensors")
    for target, parts in sorted(pairs.items()):
        _check_pair(adapter, base, target, parts)
    return info


def _check_pair(
    adapter: Path, base: GGUFInfo, target: str, parts: dict[str, tuple[int, ...]]
) -> None:
    """Check one `W.lora_a` / `W.lora_b` pair against the base weight `W`."""
    if LORA_A not in parts or LORA_B not in parts:
        missing = LORA_B if LORA_A in parts else LORA_A
        raise ValueError(f"LoRA adapter {adapter}: {target}{missing} is missing")
    weight = base.tensor_shapes.get(target)
    if weight is None:
        raise ValueError(
            f"LoRA adapter {adapter}: the base model has no tensor {target!r} "
            "(is this adapter for another model?)"
        )
    a, b = parts[LORA_A], parts[LORA_B]
    if len(weight) != 2 or len(a) != 2 or len(b) != 2:
        raise ValueError(f"LoRA adapter {adapter}: {target} is not a matrix adapter")
    if target == "token_embd.weight":  # llama.cpp takes A and B transposed here
        fits = weight[0] == b[1] and weight[1] == a[1] and a[0] == b[0]
    else:
        fits = weight[0] == a[0] and weight[1] == b[1] and a[1] == b[0]
    if not fits:
        raise ValueError(
            f"LoRA adapter {adapter}: shapes of {target} do not fit the base model "
            f"(base {_shape(weight)}, lora_a {_shape(a)}, lora_b {_shape(b)}; "
            "is this adapter for another model size?)"
        )


def identity_digest(base_digest: str, adapters: Sequence[tuple[str, float]]) -> str:
    """The digest of a base model with adapters: changes when any adapter or scale changes.

    Args:
        base_digest: The hex SHA-256 of the base model.
        adapters: Each adapter's current hex SHA-256 and its scale, in order.
    """
    if not adapters:
        return base_digest
    text = f"base {base_digest}\n" + "".join(
        f"adapter {digest} {scale!r}\n" for digest, scale in adapters
    )
    return hashlib.sha256(text.encode()).hexdigest()


def apply_adapters(llm: Any, adapters: Sequence[LoraAdapter]) -> None:
    """Load adapters into a loaded `llama_cpp.Llama` and set them, with their scales.

    The adapters are freed with the model (`llm.close()`).

    Args:
        llm: The loaded model.
        adapters: The adapters, in order.

    Raises:
        RuntimeError: llama.cpp could not load or set an adapter (the message names the file).
    """
    if not adapters:
        return
    import llama_cpp

    handles = []
    for adapter in adapters:
        handle = llama_cpp.llama_adapter_lora_init(llm._model.model, str(adapter.path).encode())
        if not handle:
            raise RuntimeError(f"llama.cpp could not load the LoRA adapter {adapter.path}")
        handles.append(handle)
        llm._stack.callback(llama_cpp.llama_adapter_lora_free, handle)
    array = (llama_cpp.llama_adapter_lora_p_ctypes * len(handles))(*handles)
    scales = (ctypes.c_float * len(adapters))(*(adapter.scale for adapter in adapters))
    if llama_cpp.llama_set_adapters_lora(llm._ctx.ctx, array, len(handles), scales) != 0:
        raise RuntimeError(
            "llama.cpp could not set the LoRA adapters "
            + ", ".join(str(adapter.path) for adapter in adapters)
        )


__all__ = [
    "LoraAdapter",
    "apply_adapters",
    "check_adapter",
    "identity_digest",
    "parse_lora_option",
]
