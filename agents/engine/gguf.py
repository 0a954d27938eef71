"""Read a GGUF file's metadata without loading the model.

`/api/show` and `/api/tags` describe a model (architecture, context length, chat template,
quantization, parameter count) before it is ever loaded, so this module parses the GGUF header
directly: the key/value section and the tensor table. Large arrays (the tokenizer's vocabulary)
are skipped and reported as empty lists, as Ollama does without `verbose`.

Format (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md): magic `GGUF`, version,
tensor count, key/value count, the key/value pairs, then one entry per tensor (name, shape,
type, offset). Everything is little-endian.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

MAGIC = b"GGUF"
MAX_ARRAY_ITEMS = 5  # longer arrays are returned as [] (Ollama's non-verbose `model_info`)

_SCALARS: dict[int, str] = {
    0: "<B",  # uint8
    1: "<b",  # int8
    2: "<H",  # uint16
    3: "<h",  # int16
    4: "<I",  # uint32
    5: "<i",  # int32
    6: "<f",  # float32
    7: "<?",  # bool
    10: "<Q",  # uint64
    11: "<q",  # int64
    12: "<d",  # float64
}
_STRING = 8
_ARRAY = 9

# llama.cpp's `llama_ftype` (general.file_type) as Ollama names it (`quantization_level`).
FILE_TYPES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
}


class GGUFError(ValueError):
    """The file is not a readable GGUF model."""


@dataclass(frozen=True)
class GGUFInfo:
    """What the header of a GGUF file says.

    Attributes:
        version: GGUF format version.
        metadata: Every key/value pair (arrays longer than 5 items shown as []).
        parameter_count: Total number of weights, summed over the tensor table.
        tensor_count: Number of tensors.
        tensor_shapes: Each tensor's shape by name, in GGUF (ggml `ne`) order: the
            innermost dimension first, e.g. `[576, 1536]` for a 576-in, 1536-out matrix.
    """

    version: int
    metadata: dict[str, Any]
    parameter_count: int
    tensor_count: int
    tensor_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def architecture(self) -> str:
        """`general.architecture` (e.g. `llama`), or `unknown`."""
        return str(self.metadata.get("general.architecture") or "unknown")

    @property
    def chat_template(self) -> str:
        """The Jinja chat template the model was trained with, or an empty string."""
        return str(self.metadata.get("tokenizer.chat_template") or "")

    @property
    def context_length(self) -> int | None:
        """The training context length (`<arch>.context_length`), if recorded."""
        value = self.metadata.get(f"{self.architecture}.context_length")
        return int(value) if isinstance(value, int) else None

    @property
    def quantization(self) -> str:
        """The quantization level, e.g. `Q4_1` (`unknown` when not recorded)."""
        file_type = self.metadata.get("general.file_type")
        if isinstance(file_type, int):
            return FILE_TYPES.get(file_type, f"type {file_type}")
        return "unknown"

    @property
    def parameter_size(self) -> str:
        """A short human size such as `135M`: `general.size_label`, else from the count."""
        label = self.metadata.get("general.size_label")
        if isinstance(label, str) and label:
            return label
        return human_number(self.parameter_count)


def human_number(value: int) -> str:
    """Format a count the way Ollama shows parameter sizes (`134.5M`, `7.2B`, `23M`)."""
    for threshold, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if value >= threshold:
            scaled = value / threshold
            if scaled >= 100:
                return f"{int(scaled)}{unit}"
            text = f"{scaled:.1f}" if scaled >= 10 else f"{scaled:.2f}"
            return text.rstrip("0").rstrip(".") + unit
    return str(value)


def _read(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise GGUFError("unexpected end of file in the GGUF header")
    return data


def _read_scalar(stream: BinaryIO, kind: int) -> Any:
    fmt = _SCALARS[kind]
    value = struct.unpack(fmt, _read(stream, struct.calcsize(fmt)))[0]
    if kind == 6:  # float32: show the value a float32 holds (1e-05, not 9.99999974e-06)
        return float(f"{value:.7g}")
    return value


def _read_string(stream: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", _read(stream, 8))
    return _read(stream, length).decode("utf-8", errors="replace")


def _skip_string(stream: BinaryIO) -> None:
    (length,) = struct.unpack("<Q", _read(stream, 8))
    stream.seek(length, 1)


def _read_value(stream: BinaryIO, kind: int) -> Any:
    if kind in _SCALARS:
        return _read_scalar(stream, kind)
    if kind == _STRING:
        return _read_string(stream)
    if kind == _ARRAY:
        item_kind, count = struct.unpack("<IQ", _read(stream, 12))
        if count > MAX_ARRAY_ITEMS:
            if item_kind in _SCALARS:
                stream.seek(count * struct.calcsize(_SCALARS[item_kind]), 1)
            elif item_kind == _STRING:
                for _ in range(count):
                    _skip_string(stream)
            else:
                for _ in range(count):
                    _read_value(stream, item_kind)
            return []
        return [_read_value(stream, item_kind) for _ in range(count)]
    raise GGUFError(f"unknown GGUF value type {kind}")


def read_gguf(path: Path) -> GGUFInfo:
    """Parse the header of a GGUF file.

    Args:
        path: The `.gguf` file.

    Raises:
        GGUFError: The file is missing, not GGUF, or truncated.
    """
    try:
        with path.open("rb") as stream:
            if stream.read(4) != MAGIC:
                raise GGUFError(f"{path} is not a GGUF file")
            version, tensor_count, kv_count = struct.unpack("<IQQ", _read(stream, 20))
            if version < 2:
                raise GGUFError(f"{path} uses GGUF version {version}; version 2 or 3 is needed")
            metadata: dict[str, Any] = {}
            for _ in range(kv_count):
                key = _read_string(stream)
                (kind,) = struct.unpack("<I", _read(stream, 4))
                metadata[key] = _read_value(stream, kind)
            parameters = 0
            shapes: dict[str, tuple[int, ...]] = {}
            for _ in range(tensor_count):
                name = _read_string(stream)
                (dims,) = struct.unpack("<I", _read(stream, 4))
                shape = struct.unpack(f"<{dims}Q", _read(stream, 8 * dims))
                shapes[name] = tuple(shape)
                stream.seek(12, 1)  # tensor type (uint32) and data offset (uint64)
                count = 1
                for dim in shape:
                    count *= dim
                parameters += count
    except OSError as exc:
        raise GGUFError(f"cannot read {path}: {exc.strerror or exc}") from None
    except struct.error as exc:
        raise GGUFError(f"corrupt GGUF header in {path}: {exc}") from None
    return GGUFInfo(
        version=version,
        metadata=metadata,
        parameter_count=parameters,
        tensor_count=tensor_count,
        tensor_shapes=shapes,
    )


@lru_cache(maxsize=32)
def _cached(path: str, size: int, mtime_ns: int) -> GGUFInfo:
    return read_gguf(Path(path))


def gguf_info(path: Path) -> GGUFInfo:
    """Return the header of a GGUF file, cached by path, size and modification time.

    Raises:
        GGUFError: The file is missing or not GGUF.
    """
    try:
        stat = path.stat()
    except OSError as exc:
        raise GGUFError(f"cannot read {path}: {exc.strerror or exc}") from None
    return _cached(str(path), stat.st_size, stat.st_mtime_ns)


def is_gguf(path: Path) -> bool:
    """Whether `path` is a file that starts with the GGUF magic bytes."""
    try:
        with path.open("rb") as stream:
            return stream.read(4) == MAGIC
    except OSError:
        return False


__all__ = [
    "FILE_TYPES",
    "GGUFError",
    "GGUFInfo",
    "gguf_info",
    "human_number",
    "is_gguf",
    "read_gguf",
]
