"""The settings a tool call runs under.

Tools are plain typed functions whose signatures are what the model sees (`sql_query(query)`), so
the run's settings (which database, which documents store, row caps, time limits) reach them through
a context variable that the graph's tools node sets around each call.

A tool that stops itself at its time limit (`tool_timeout`, or `image_timeout` for image tools,
read from these settings) is marked with `keeps_time_limit`: the runner then calls it in the
run's own thread, with the limit already cut to the question's deadline, instead of handing it to
a guarded worker thread (a hand-off that costs a few hundred microseconds per call).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from ollagraph.agents.config import Settings

F = TypeVar("F", bound=Callable[..., object])

_current: ContextVar[Settings | None] = ContextVar("ollagraph_tool_settings", default=None)


def current_settings() -> Settings:
    """Return the settings of the tool call in progress (built-in defaults outside a run)."""
    settings = _current.get()
    return settings if settings is not None else Settings()


@contextmanager
def using_settings(settings: Settings) -> Iterator[Settings]:
    """Run the enclosed tool calls under `settings`.

    Args:
        settings: The run's settings.
    """
    token = _current.set(settings)
    try:
        yield settings
    finally:
        _current.reset(token)


def keeps_time_limit(func: F) -> F:
    """Mark a tool that stops itself once its time limit from the run's settings is used.

    Only for tools whose every blocking step is bounded by that limit (an interruptible query, a
    wait with a timeout); a tool that could block past it must stay unmarked, so the runner can
    leave it behind on its worker thread and go on.

    Args:
        func: The tool function.
    """
    func.keeps_time_limit = True  # type: ignore[attr-defined]
    return func


def is_time_limited(func: Callable[..., object]) -> bool:
    """Whether `func` was marked with `keeps_time_limit`."""
    return getattr(func, "keeps_time_limit", False) is True
