"""How llama.cpp is set up on this machine: threads, flash attention and weight buffers.

Read when a model loads (by the engine, and by the engine bench's peer so both load alike).
`llama_cpp` is imported on first use, never when this module is imported.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from ollagraph.agents.engine.protocol import APIError


def llama_cpp_module() -> Any:
    """Import llama_cpp, with a clear error if it is missing."""
    try:
        import llama_cpp
    except ImportError:
        raise APIError(
            500,
            "llama-cpp-python is not installed; the embedded engine needs it for GGUF models "
            "(pip install llama-cpp-python)",
        ) from None
    return llama_cpp


def flash_attention() -> bool:
    """Whether llama.cpp computes attention with flash attention: `$OLLAMA_FLASH_ATTENTION`.

    Off unless set to 1 (as in Ollama). Measured on a 2-core CPU with SmolLM2-135M, both ways
    in turn: 135 instead of 112 tokens/s, a 23-token prompt read in 89 ms instead of 108, at
    0.46% higher perplexity (its kernel accumulates in half precision), hence not the default.
    """
    value = os.environ.get("OLLAMA_FLASH_ATTENTION", "").strip().lower()
    return value in ("1", "true", "yes", "on")


def default_threads() -> int:
    """CPU threads for llama.cpp: `$OLLAGRAPH_ENGINE_THREADS`, else the physical cores.

    Ollama also uses one thread per physical core; hyperthreads slow llama.cpp down.
    """
    configured = os.environ.get("OLLAGRAPH_ENGINE_THREADS", "").strip()
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    cores: set[tuple[str, str]] = set()
    physical = core = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "physical id":
                    physical = value.strip()
                elif key.strip() == "core id":
                    core = value.strip()
                    cores.add((physical, core))
    except OSError:
        pass
    return len(cores) or os.cpu_count() or 1


def _cpu_has_amx() -> bool:
    """Whether the CPU advertises Intel AMX (tile) instructions."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    return "amx_tile" in line.split()
    except OSError:
        return False
    return False


def use_extra_buffers() -> bool:
    """Whether llama.cpp may use its extra weight buffers (repacking, AMX).

    A llama.cpp built for the local CPU uses AMX when the CPU advertises it, and some virtual
    machines advertise AMX without enabling it, which crashes the process (SIGSEGV in
    `ggml_backend_amx_mul_mat`). So extra buffers are off on AMX CPUs unless
    `OLLAGRAPH_ENGINE_EXTRA_BUFFERS=1`; `=0` turns them off everywhere.
    """
    setting = os.environ.get("OLLAGRAPH_ENGINE_EXTRA_BUFFERS", "").strip().lower()
    if setting in ("1", "true", "yes", "on"):
        return True
    if setting in ("0", "false", "no", "off"):
        return False
    return not _cpu_has_amx()


@contextlib.contextmanager
def model_params(extra_buffers: bool) -> Iterator[None]:
    """Make `Llama(...)` load with `use_extra_bufts` set (its constructor has no argument)."""
    llama_cpp_module()
    if extra_buffers:
        yield
        return
    import llama_cpp.llama_cpp as bindings  # what `Llama.__init__` calls

    original = bindings.llama_model_default_params

    def params() -> Any:
        value = original()
        value.use_extra_bufts = False
        return value

    bindings.llama_model_default_params = params
    try:
        yield
    finally:
        bindings.llama_model_default_params = original


__all__ = [
    "default_threads",
    "flash_attention",
    "llama_cpp_module",
    "model_params",
    "use_extra_buffers",
]
