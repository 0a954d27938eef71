"""The total time one question may take (`run_timeout`), shared by every step of the run.

A `Deadline` starts when a question starts. Each step asks it how much time is left: the graph goes
to the answer once it has `expired()`, a tool or model call waits at most `cap(its own limit)`
seconds, and `check(stage)` raises `RunTimeoutError` where the run cannot go on.

The deadline of the question in progress travels in a context variable (`using_deadline`,
`current_deadline`), like the tool settings in `tools.context`, so graph nodes, tool threads and
model calls read the same one without passing it through every signature. LangGraph runs each node
in a copy of the caller's context, so a deadline set around the loop over `graph.stream(...)` is the
one every node of that run sees. Outside a run, `current_deadline()` has no limit.

The clock is monotonic: changes of the wall clock do not move a deadline.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from ollagraph.agents.errors import ConfigError, RunTimeoutError


class Deadline:
    """A time budget that starts when it is made and ends `seconds` later.

    Args:
        seconds: The budget in seconds; None, 0 or infinity mean no limit.
        clock: Returns seconds from a monotonic clock (tests pass a fake one).
        start: When the budget started, on `clock` (default: now). A graph run that has no
            deadline of its own (LangGraph Studio) rebuilds one from the start time it saved.

    Raises:
        ConfigError: `seconds` is negative or not a number.
    """

    __slots__ = ("_clock", "_start", "limit")

    def __init__(
        self,
        seconds: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        start: float | None = None,
    ) -> None:
        if seconds is not None and (math.isnan(seconds) or seconds < 0):
            raise ConfigError(
                f"`run_timeout` must be 0 (no limit) or a number of seconds, got {seconds}."
            )
        self.limit: float | None = None if not seconds or math.isinf(seconds) else float(seconds)
        self._clock = clock
        self._start = clock() if start is None else start

    def elapsed(self) -> float:
        """Seconds since the deadline started."""
        return max(0.0, self._clock() - self._start)

    def remaining(self) -> float:
        """Seconds left: 0.0 once expired, infinity when there is no limit."""
        if self.limit is None:
            return math.inf
        return max(0.0, self.limit - self.elapsed())

    def expired(self) -> bool:
        """True once the whole budget is spent (never when there is no limit)."""
        return self.limit is not None and self.elapsed() >= self.limit

    def cap(self, seconds: float, *, floor: float = 0.0) -> float:
        """Shorten a step's own time limit to the time left in the run.

        Args:
            seconds: The step's limit (e.g. `tool_timeout` or `request_timeout`).
            floor: Never go below this (but never above `seconds` either): time granted to a
                step that must still run after the deadline, such as writing a partial answer.

        Returns:
            The smaller of `seconds` and the time left (raised to `floor`).
        """
        return min(seconds, max(self.remaining(), floor))

    def check(self, stage: str) -> None:
        """Return while time is left; raise once the deadline has passed.

        Args:
            stage: What the run was about to do ("act", "sql_query"), named in the message.

        Raises:
            RunTimeoutError: The deadline has passed.
        """
        if not self.expired():
            return
        raise RunTimeoutError(
            f"The question ran past its time limit of {self.limit:g} s "
            f"(stopped at {stage} after {self.elapsed():.1f} s).",
            hint="Raise run_timeout (in the config file or OLLAGRAPH_RUN_TIMEOUT), "
            "or ask a narrower question.",
        )

    def __repr__(self) -> str:
        limit = "no limit" if self.limit is None else f"{self.limit:g} s"
        return f"Deadline({limit}, {self.elapsed():.1f} s elapsed)"


_current: ContextVar[Deadline | None] = ContextVar("ollagraph_run_deadline", default=None)


def current_deadline() -> Deadline:
    """Return the deadline of the question in progress (one with no limit outside a run)."""
    deadline = _current.get()
    return deadline if deadline is not None else Deadline(None)


@contextmanager
def using_deadline(deadline: Deadline) -> Iterator[Deadline]:
    """Make `deadline` the current one for the enclosed code (and the threads it copies to).

    Args:
        deadline: The deadline of the question about to run.
    """
    token = _current.set(deadline)
    try:
        yield deadline
    finally:
        _current.reset(token)


__all__ = ["Deadline", "current_deadline", "using_deadline"]
