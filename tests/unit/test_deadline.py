"""The run deadline: budget arithmetic on a fake clock, the real clock, and how it travels.

Most tests drive a `Deadline` with a fake monotonic clock (a list the test advances), so the
arithmetic is exact. One test uses the real clock. The context-variable tests run a real LangGraph
graph (with a parallel branch, which LangGraph runs on its thread pool) to show that a deadline set
around `graph.stream(...)` is the one every node sees.
"""

from __future__ import annotations

import contextvars
import math
import threading
import time
from typing import Annotated, Any

import click
import pytest
from click.testing import CliRunner
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from ollagraph.agents.cli import AgentGroup
from ollagraph.agents.deadline import Deadline, current_deadline, using_deadline
from ollagraph.agents.errors import ConfigError, OllagraphError, RunTimeoutError


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_budget_runs_down_with_the_clock() -> None:
    clock = FakeClock()
    deadline = Deadline(10, clock=clock)
    assert deadline.limit == 10.0
    assert deadline.elapsed() == 0.0 and deadline.remaining() == 10.0
    assert not deadline.expired()
    clock.advance(4)
    assert deadline.elapsed() == 4.0 and deadline.remaining() == 6.0
    clock.advance(5.5)
    assert deadline.remaining() == pytest.approx(0.5) and not deadline.expired()
    clock.advance(0.5)
    assert deadline.remaining() == 0.0 and deadline.expired()  # exactly at the limit
    clock.advance(100)
    assert deadline.remaining() == 0.0 and deadline.elapsed() == 110.0


@pytest.mark.parametrize("seconds", [None, 0, 0.0, math.inf])
def test_none_zero_and_infinity_mean_no_limit(seconds: float | None) -> None:
    clock = FakeClock()
    deadline = Deadline(seconds, clock=clock)
    clock.advance(1e9)
    assert deadline.limit is None
    assert deadline.remaining() == math.inf and not deadline.expired()
    assert deadline.cap(30.0) == 30.0
    deadline.check("act")  # returns
    assert "no limit" in repr(deadline)


@pytest.mark.parametrize("seconds", [-1, -0.001, math.nan])
def test_a_negative_or_nan_budget_is_a_config_error(seconds: float) -> None:
    with pytest.raises(ConfigError, match="run_timeout"):
        Deadline(seconds)


def test_cap_shortens_a_step_limit_to_the_time_left() -> None:
    clock = FakeClock()
    deadline = Deadline(60, clock=clock)
    assert deadline.cap(30.0) == 30.0  # the step's own limit is shorter
    clock.advance(45)
    assert deadline.cap(30.0) == 15.0  # the run's time left is shorter
    clock.advance(20)
    assert deadline.cap(30.0) == 0.0  # nothing left
    # a step that must still run (the partial answer) gets its floor, never more than its limit
    assert deadline.cap(30.0, floor=10.0) == 10.0
    assert deadline.cap(5.0, floor=10.0) == 5.0


def test_cap_floor_does_not_shorten_time_that_is_left() -> None:
    clock = FakeClock()
    deadline = Deadline(100, clock=clock)
    clock.advance(50)
    assert deadline.cap(600.0, floor=10.0) == 50.0


def test_check_returns_in_time_and_raises_a_user_error_after() -> None:
    clock = FakeClock()
    deadline = Deadline(90, clock=clock)
    clock.advance(89.9)
    deadline.check("tools")
    clock.advance(0.35)
    with pytest.raises(RunTimeoutError) as info:
        deadline.check("act")
    error = info.value
    assert isinstance(error, OllagraphError)
    assert error.message == (
        "The question ran past its time limit of 90 s (stopped at act after 90.2 s)."
    )
    assert error.hint is not None and "run_timeout" in error.hint
    assert "OLLAGRAPH_RUN_TIMEOUT" in error.hint


def test_the_real_clock_expires_a_short_deadline() -> None:
    deadline = Deadline(0.05)
    assert not deadline.expired() and 0 < deadline.remaining() <= 0.05
    time.sleep(0.08)
    assert deadline.expired() and deadline.remaining() == 0.0
    assert deadline.elapsed() >= 0.08


def test_cli_edge_turns_run_timeout_into_one_message() -> None:
    @click.group(cls=AgentGroup)
    def cli() -> None:
        pass

    @cli.command()
    def slow() -> None:
        clock = FakeClock()
        deadline = Deadline(5, clock=clock)
        clock.advance(7)
        deadline.check("answer")

    result = CliRunner().invoke(cli, ["slow"])
    assert result.exit_code == RunTimeoutError.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "Error: The question ran past its time limit of 5 s (stopped at answer after 7.0 s).",
        "Raise run_timeout (in the config file or OLLAGRAPH_RUN_TIMEOUT), "
        "or ask a narrower question.",
    ]


# --- the current deadline ----------------------------------------------------------------------


def test_outside_a_run_there_is_no_limit() -> None:
    assert current_deadline().limit is None
    assert not current_deadline().expired()


def test_using_deadline_sets_and_restores_even_on_error() -> None:
    outer, inner = Deadline(100), Deadline(5)
    with using_deadline(outer):
        assert current_deadline() is outer
        with pytest.raises(RuntimeError), using_deadline(inner):
            assert current_deadline() is inner
            raise RuntimeError("boom")
        assert current_deadline() is outer
    assert current_deadline().limit is None


def test_a_thread_started_with_the_callers_context_sees_the_deadline() -> None:
    # tools.runner runs each tool in a thread with contextvars.copy_context(): same here
    seen: list[Deadline] = []
    deadline = Deadline(30)
    with using_deadline(deadline):
        ctx = contextvars.copy_context()
    thread = threading.Thread(target=lambda: seen.append(ctx.run(current_deadline)))
    thread.start()
    thread.join()
    assert seen == [deadline]


class _State(TypedDict, total=False):
    seen: Annotated[list[tuple[str, Any, str]], lambda a, b: a + b]


def _graph() -> Any:
    def node(name: str) -> Any:
        def run(state: _State) -> dict[str, Any]:
            found = current_deadline()
            return {"seen": [(name, found, threading.current_thread().name)]}

        return run

    builder = StateGraph(_State)
    for name in ("plan", "left", "right", "answer"):
        builder.add_node(name, node(name))
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "left")  # a parallel step: LangGraph runs it on its thread pool
    builder.add_edge("plan", "right")
    builder.add_edge(["left", "right"], "answer")
    builder.add_edge("answer", END)
    return builder.compile()


def test_every_node_of_a_langgraph_run_sees_the_deadline_set_around_stream() -> None:
    graph = _graph()
    deadline = Deadline(900)
    with using_deadline(deadline):
        final: dict[str, Any] = {}
        for mode, payload in graph.stream({"seen": []}, stream_mode=["values"]):
            assert mode == "values"
            final = payload
    seen = final["seen"]
    assert sorted(name for name, _, _ in seen) == ["answer", "left", "plan", "right"]
    assert all(found is deadline for _, found, _ in seen)
    assert any(thread != threading.main_thread().name for _, _, thread in seen)
    # and a run outside using_deadline has no limit
    outside = graph.invoke({"seen": []})["seen"]
    assert all(found.limit is None for _, found, _ in outside)
