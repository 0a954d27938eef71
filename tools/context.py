"""The settings a tool call runs under.

Tools are plain typed functions whose signatures are what the model sees (`sql_query(query)`), so
the run's settings (which database, which documents store, row caps, time limits) reach them through
a context variable that the graph's tools node sets around each call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from ollagraph.agents.config import Settings

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
