"""What a model server says about a model (`/api/show`), parsed and cached per model digest.

`parse_show` turns a `/api/show` reply into a `ModelInfo` (capabilities, context length, family,
size, quantization). `recall` / `remember` keep them in memory and on disk under
`$OLLAGRAPH_HOME/cache/model_info/<digest>.json`, keyed by the digest the server reports, so a
model that is pulled again and changes is read again. `readiness.model_info` asks the server.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from ollagraph.agents.paths import state_path

INFO_CACHE_VERSION = 1
KNOWN_CAPABILITIES = frozenset({"completion", "tools", "vision", "embedding", "thinking", "insert"})


def normalize_model_name(name: str) -> str:
    """Give a model name Ollama's default tag: `qwen2.5` → `qwen2.5:latest`.

    Args:
        name: A model name, optionally with a namespace (`library/x`) and a tag (`x:3b`).
    """
    name = name.strip()
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


@dataclass(frozen=True)
class ModelInfo:
    """What `/api/show` says about a model.

    Attributes:
        name: The model name with tag.
        digest: The digest from `/api/tags` this was read for.
        capabilities: Any of `completion`, `tools`, `vision`, `embedding`, `thinking`, `insert`.
        context_length: The longest context the model was trained for (tokens), if reported.
        family: Model family (`llama`, `qwen2`).
        parameter_size: As reported (`135M`, `3.1B`).
        quantization: Quantization level (`Q4_K_M`, `Q8_0`).
        inferred: True when the server reported no capabilities and they were guessed from the
            chat template (servers before Ollama 0.6).
    """

    name: str
    digest: str
    capabilities: frozenset[str]
    context_length: int | None = None
    family: str = ""
    parameter_size: str = ""
    quantization: str = ""
    inferred: bool = False

    @property
    def supports_tools(self) -> bool:
        """Whether the model takes native `tools`."""
        return "tools" in self.capabilities

    @property
    def parameters(self) -> float | None:
        """The parameter count from `parameter_size` (`135M` → 1.35e8), or None if unknown."""
        return parameter_count(self.parameter_size)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the disk cache's format)."""
        data = asdict(self)
        data["capabilities"] = sorted(self.capabilities)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelInfo:
        """Rebuild from `to_json` output."""
        length = data.get("context_length")
        return cls(
            name=str(data["name"]),
            digest=str(data["digest"]),
            capabilities=frozenset(str(c) for c in data.get("capabilities") or ()),
            context_length=int(length) if length is not None else None,
            family=str(data.get("family") or ""),
            parameter_size=str(data.get("parameter_size") or ""),
            quantization=str(data.get("quantization") or ""),
            inferred=bool(data.get("inferred", False)),
        )


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMBT]?)\s*$", re.I)
_SCALE = {"": 1.0, "K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}


def parameter_count(size: str) -> float | None:
    """Read a parameter size as Ollama reports it (`135M`, `3.1B`, `8x7B` is not understood).

    Args:
        size: The `details.parameter_size` text.

    Returns:
        The number of parameters, or None when the text is empty or not a plain size.
    """
    match = _SIZE.match(size or "")
    if not match:
        return None
    return float(match.group(1)) * _SCALE[match.group(2).upper()]


def parse_show(name: str, digest: str, show: Mapping[str, Any]) -> ModelInfo:
    """Build a `ModelInfo` from an `/api/show` response body.

    The context length is `model_info["<arch>.context_length"]`, where `<arch>` is
    `model_info["general.architecture"]`. A server that sends no `capabilities` gets them inferred:
    `completion`, plus `tools` when the chat template renders tools, plus `vision` when the model
    has a vision projector.

    Args:
        name: The model name.
        digest: Its digest from `/api/tags`.
        show: The response body (as JSON).
    """
    info = show.get("model_info") or show.get("modelinfo") or {}
    details = show.get("details") or {}
    arch = str(info.get("general.architecture") or "")
    length = info.get(f"{arch}.context_length") if arch else None
    if length is None:
        length = next(
            (v for k, v in info.items() if k.endswith(".context_length") and v is not None), None
        )
    reported = show.get("capabilities")
    inferred = reported is None
    if reported is None:
        template = str(show.get("template") or "")
        caps = {"completion"}
        if re.search(r"\.Tools\b|\.ToolCalls\b|\btools\b", template):
            caps.add("tools")
        if any(".vision." in key or key.startswith("clip.") for key in info):
            caps.add("vision")
    else:
        caps = {str(c).lower() for c in reported}
    return ModelInfo(
        name=normalize_model_name(name),
        digest=digest,
        capabilities=frozenset(caps),
        context_length=int(length) if isinstance(length, int | float) and length > 0 else None,
        family=str(details.get("family") or arch),
        parameter_size=str(details.get("parameter_size") or ""),
        quantization=str(details.get("quantization_level") or ""),
        inferred=inferred,
    )


def _cache_file(digest: str) -> str:
    safe = re.sub(r"[^0-9A-Za-z]", "", digest)[:128]
    return str(state_path("cache", "model_info", f"{safe}.json"))


def _read_disk(digest: str, name: str) -> ModelInfo | None:
    try:
        with open(_cache_file(digest), encoding="utf-8") as handle:
            data = json.load(handle)
        if data.get("version") != INFO_CACHE_VERSION or data.get("digest") != digest:
            return None
        return replace(ModelInfo.from_json(data), name=name)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_disk(info: ModelInfo) -> None:
    path = _cache_file(info.digest)
    data = {"version": INFO_CACHE_VERSION, **info.to_json()}
    with contextlib.suppress(OSError):
        folder = os.path.dirname(path)
        fd, tmp = tempfile.mkstemp(prefix=".info-", suffix=".json", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, indent=1)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


_info_cache: dict[str, ModelInfo] = {}
_cache_lock = threading.Lock()


def recall(digest: str, name: str) -> ModelInfo | None:
    """The cached facts of the model with `digest`, from memory, else from disk.

    Args:
        digest: The digest `/api/tags` reports.
        name: The model's normalized name (a digest can have several).
    """
    with _cache_lock:
        cached = _info_cache.get(digest)
    if cached is not None:
        return replace(cached, name=name)
    from_disk = _read_disk(digest, name)
    if from_disk is not None:
        with _cache_lock:
            _info_cache[digest] = from_disk
    return from_disk


def remember(info: ModelInfo) -> None:
    """Cache `info` in memory and on disk, under its digest."""
    with _cache_lock:
        _info_cache[info.digest] = info
    _write_disk(info)


def forget_in_process() -> None:
    """Forget the in-memory cache (the disk cache stays)."""
    with _cache_lock:
        _info_cache.clear()
