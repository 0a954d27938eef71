"""From settings to a running worker: the per-task policy, the model source and the pool.

`task_policy(settings, task)` merges the global device settings with `task_overrides[task]`;
`worker_for(settings, task)` resolves the placement, builds the task's runner (lazily imported,
so nothing heavy loads until an image task is used) and returns the pool's worker for it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ollagraph.agents.devices import DeviceCaps, DevicePolicy, Placement, resolve_placement
from ollagraph.agents.errors import ConfigError
from ollagraph.agents.workers.pool import Worker, WorkerKey, WorkerPool, default_pool
from ollagraph.agents.workers.sources import ModelSource

if TYPE_CHECKING:
    from ollagraph.agents.config import Settings


@dataclass(frozen=True)
class TaskSpec:
    """Where a task's runner lives and which setting names its model.

    Attributes:
        name: The task's short name (caption, generate, upscale, faces).
        title: What the task is called in messages (image-to-text, ...).
        module: The module with the runner class.
        runner: The runner class name; built as `Runner(source, placement)`.
        model_setting: The `Settings` field that names the default model.
    """

    name: str
    title: str
    module: str
    runner: str
    model_setting: str


TASK_SPECS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            "caption",
            "image-to-text",
            "ollagraph.agents.workers.caption",
            "CaptionRunner",
            "caption_model",
        ),
        TaskSpec(
            "generate",
            "image-generation",
            "ollagraph.agents.workers.generate",
            "GenerateRunner",
            "image_model",
        ),
        TaskSpec(
            "upscale",
            "image-upscale",
            "ollagraph.agents.workers.upscale",
            "UpscaleRunner",
            "upscale_model",
        ),
        TaskSpec(
            "faces", "face-embedding", "ollagraph.agents.workers.faces", "FaceRunner", "face_model"
        ),
    )
}


def task_policy(settings: Settings, task: str) -> tuple[str, DevicePolicy]:
    """The model and device policy for `task`: global settings, then `task_overrides[task]`.

    Raises:
        ConfigError: Unknown task, or an override with a bad value.
    """
    if task not in TASK_SPECS:
        raise ConfigError(f"Unknown image task {task!r}; choose from {', '.join(TASK_SPECS)}.")
    values: dict[str, Any] = {
        "model": getattr(settings, TASK_SPECS[task].model_setting),
        "device": settings.device,
        "device_mode": settings.device_mode,
        "precision": settings.precision,
        "quantization": settings.quantization,
        "batch_size": settings.batch_size,
        "low_cpu_mem_usage": settings.low_cpu_mem_usage,
    }
    values.update(settings.task_overrides.get(task, {}))
    model = str(values.pop("model"))
    try:
        values["batch_size"] = int(values["batch_size"])
        flag = values["low_cpu_mem_usage"]
        values["low_cpu_mem_usage"] = (
            flag if isinstance(flag, bool) else str(flag).lower() in ("1", "true", "yes", "on")
        )
    except (TypeError, ValueError):
        raise ConfigError(f"task_overrides.{task}.batch_size must be a whole number.") from None
    for name in ("device", "device_mode", "precision", "quantization"):
        values[name] = str(values[name])
    return model, DevicePolicy(**values)


def task_placement(
    settings: Settings, task: str, caps: DeviceCaps | None = None
) -> tuple[ModelSource, Placement]:
    """Resolve the model source and placement `task` runs with under `settings`.

    Raises:
        ConfigError: A bad override; DeviceError (a ConfigError) when the device cannot run.
    """
    model, policy = task_policy(settings, task)
    source = ModelSource.parse(
        model, cache_dir=settings.hf_cache_dir or None, local_files_only=settings.models_offline
    )
    return source, resolve_placement(policy, caps)


def worker_for(
    settings: Settings, task: str, *, pool: WorkerPool | None = None
) -> Worker[Any, Any]:
    """The pool's worker for `task` under `settings` (its model loads on first use).

    Raises:
        ConfigError: Bad task settings, or a device this machine lacks.
    """
    source, placement = task_placement(settings, task)
    spec = TASK_SPECS[task]
    runner_class = getattr(importlib.import_module(spec.module), spec.runner)
    key = WorkerKey(task, f"{source.name}@{source.revision or ''}", placement.label)
    return (pool or default_pool()).get(
        key,
        lambda: runner_class(source, placement),
        batch_size=placement.batch_size,
        idle_timeout=settings.worker_idle_timeout,
        batch_key=getattr(runner_class, "batch_key", None),
    )


__all__ = ["TASK_SPECS", "TaskSpec", "task_placement", "task_policy", "worker_for"]
