"""Settings for a graph served by LangGraph's server (`langgraph dev`, `langgraph up`, its image).

The server builds each run's context as `Settings(**context)`: the dataclass defaults plus what
the run or its assistant set. Those defaults know nothing of the deployment's configuration, which
comes from the environment (`OLLAGRAPH_*`, `OLLAMA_HOST`) and the config file. So a served run's
settings are made in two layers:

1. The base: the configured settings, `load_settings()` (defaults < config file < environment),
   loaded once and loaded again only when those variables or the config file change (checked when
   a run starts: a run keeps the settings it started with).
2. On top, every field of the run's context whose value differs from the field's default (the run
   or assistant set it, e.g. `model` in Studio's assistant panel).

A consequence to know: a run cannot put a field back to its default when the environment or the
config file changed it (the context cannot say "I set this to the default"); change the
deployment's environment instead.
"""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import fields, replace
from typing import Any

from ollagraph.agents.config import Settings, config_file_path, load_settings

_lock = threading.Lock()
_base: tuple[Any, Settings] | None = None
_defaults: dict[str, Any] | None = None
_merged: dict[int, tuple[weakref.ref[Settings], Settings]] = {}
MERGED_CACHE_SIZE = 256  # contexts of runs in flight; older entries are dropped


def _source_key() -> Any:
    """What the configured settings depend on: the variables and the config file's version."""
    env = tuple(
        sorted(
            (name, value)
            for name, value in os.environ.items()
            if name.startswith("OLLAGRAPH_") or name == "OLLAMA_HOST"
        )
    )
    path = config_file_path()
    try:
        version = path.stat().st_mtime_ns if path is not None else None
    except OSError:
        version = None
    return env, str(path), version


def configured_settings() -> Settings:
    """The settings from the config file and environment (cached until either changes).

    Raises:
        ConfigError: The config file or a variable has an invalid value.
    """
    global _base
    key = _source_key()
    with _lock:
        if _base is not None and _base[0] == key:
            return _base[1]
    settings = load_settings()
    with _lock:
        _base = (key, settings)
    return settings


def _field_defaults() -> dict[str, Any]:
    global _defaults
    if _defaults is None:
        _defaults = {f.name: getattr(Settings(), f.name) for f in fields(Settings)}
    return _defaults


def served_settings(context: Settings | None) -> Settings:
    """A served run's settings: the configured ones, with the context's non-default fields.

    Args:
        context: The context the server built for this run (None: the run set none).

    Raises:
        ConfigError: The configuration, or the merged settings, are invalid.
    """
    if context is None:
        return configured_settings()
    with _lock:
        cached = _merged.get(id(context))
    if cached is not None and cached[0]() is context:
        return cached[1]  # one run keeps the settings it started with
    base = configured_settings()
    defaults = _field_defaults()
    changes = {
        name: getattr(context, name)
        for name, default in defaults.items()
        if getattr(context, name) != default and getattr(context, name) != getattr(base, name)
    }
    merged = replace(base, **changes) if changes else base
    with _lock:
        if len(_merged) >= MERGED_CACHE_SIZE:
            _merged.clear()
        _merged[id(context)] = (weakref.ref(context), merged)
    return merged


__all__ = ["configured_settings", "served_settings"]
