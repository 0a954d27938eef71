"""Benchmark: per-tool-step cost of ollagraph's graph vs a bare LangGraph tool loop.

Both loops run the same scripted chat model (`tests/scripted_model.py`: it replays queued
replies, no inference) and the same tool, without a checkpointer. The bare loop is the smallest
honest LangGraph agent: a `StateGraph` over `MessagesState` with a model node (tools bound once) and
a tool node that calls the tool function and appends `ToolMessage`s.

One tool step is one model call that asks for a tool plus running it, in both loops. ollagraph
also has a plan node and an answer node (two extra model calls per question), so the per-step
cost is measured as a difference: (median time of a run with 2N steps - median of a run with N
steps) / N. Fixed per-question costs cancel out. Every call has new arguments, so ollagraph's
repeated-call guard never ends a run early.

What ollagraph does per step that the bare loop does not (and so what the ratio prices): it
validates the call's arguments against the tool's schema, runs the tool on a worker thread so a
`tool_timeout` can be enforced (a hand-off between threads: ~10 us on an idle machine, up to
milliseconds when the CPUs are busy with other work), binds the tools to the model on each act
step, rebuilds the act prompt (system prompt, plan, this turn's calls), and keeps a larger state
(plan, steps, tool runs, deadline start). Timings on a loaded machine are noisy: compare rows
measured in the same run only.

Rows:
- a stand-in tool (returns its argument; put in the registry under the name `web_search` for the
  bench process only) — the cost of the orchestration alone;
- the real `sql_query` tool on the bundled sample database (`SELECT <i>`) — what a step costs
  with a real tool, where ollagraph also shows the model the database schema on every act call.

    python bench/orchestration.py [--steps 10] [--repeats 15]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langchain_core.messages import AIMessage, ToolMessage
from langgraph.graph import END, START, MessagesState, StateGraph

from bench import median, row

TARGET = 1.2


def _echo(query: str) -> str:
    """Return the query (a stand-in tool: the bench measures the orchestration around it).

    Args:
        query: Any text.
    """
    return f"result for {query}"


@contextmanager
def _stand_in_tool() -> Iterator[str]:
    """Put `_echo` in the registry as `web_search` (this process only); restore it after."""
    from ollagraph.tools import registry

    original = registry.TOOLS["web_search"]
    registry.TOOLS["web_search"] = _echo
    registry._spec.cache_clear()
    try:
        yield "web_search"
    finally:
        registry.TOOLS["web_search"] = original
        registry._spec.cache_clear()


def _bare_graph(model: Any, tool_name: str, func: Callable[..., str], settings: Any) -> Any:
    """A minimal LangGraph tool loop: model ⇄ tools."""
    from ollagraph.tools.context import using_settings
    from ollagraph.tools.registry import tool_specs

    bound = model.bind_tools(tool_specs([tool_name]))

    def call_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [bound.invoke(state["messages"])]}

    def call_tools(state: MessagesState) -> dict[str, Any]:
        last = state["messages"][-1]
        assert isinstance(last, AIMessage)
        out = []
        for call in last.tool_calls:
            with using_settings(settings):  # the real tools read the run's settings from here
                content = func(**call["args"])
            out.append(ToolMessage(content=content, tool_call_id=call["id"], name=call["name"]))
        return {"messages": out}

    def route(state: MessagesState) -> str:
        last = state["messages"][-1]
        return "tools" if isinstance(last, AIMessage) and last.tool_calls else END

    builder = StateGraph(MessagesState)
    builder.add_node("model", call_model)
    builder.add_node("tools", call_tools)
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", route, ["tools", END])
    builder.add_edge("tools", "model")
    return builder.compile(name="bare").with_config(recursion_limit=1000)


def _args(tool_name: str, i: int) -> dict[str, str]:
    return {"query": f"SELECT {i} AS n"} if tool_name == "sql_query" else {"query": f"q{i}"}


def _time_runs(
    tool_name: str, func: Callable[..., str], steps: int, repeats: int
) -> tuple[list[float], list[float], list[float], list[float]]:
    """Run times (s) of ollagraph and the bare loop with `steps` and `2 * steps` tool steps."""
    from langchain_core.messages import HumanMessage

    from ollagraph.agents.config import Settings
    from ollagraph.graphs.agent import build_graph
    from tests.scripted_model import ScriptedChatModel

    settings = Settings(tools=(tool_name,), max_steps=min(100, 2 * steps + 1))
    question = "How many ducks are there?"
    model = ScriptedChatModel()
    ours_graph = build_graph(lambda _settings: model)
    bare_graph = _bare_graph(model, tool_name, func, settings)

    def ours(n: int) -> float:
        model.replies.clear()
        model.enqueue_text("1. look it up\n2. answer")
        for i in range(n):
            model.enqueue_tool_call(tool_name, _args(tool_name, i))
        model.enqueue_text("DONE").enqueue_text("The answer.")
        started = time.perf_counter()
        state = ours_graph.invoke({"messages": [HumanMessage(question)]}, context=settings)
        elapsed = time.perf_counter() - started
        assert state["steps"] == n and not model.replies, "ollagraph ran a different script"
        _forget(model)
        return elapsed

    def bare(n: int) -> float:
        model.replies.clear()
        for i in range(n):
            model.enqueue_tool_call(tool_name, _args(tool_name, i))
        model.enqueue_text("The answer.")
        started = time.perf_counter()
        state = bare_graph.invoke({"messages": [HumanMessage(question)]})
        elapsed = time.perf_counter() - started
        assert len(state["messages"]) == 2 * n + 2 and not model.replies
        _forget(model)
        return elapsed

    for n in (steps, 2 * steps):  # warm-up: imports, caches, the database schema
        ours(n)
        bare(n)
    results: tuple[list[float], list[float], list[float], list[float]] = ([], [], [], [])
    for _ in range(repeats):  # interleaved, so drift in machine load hits both alike
        results[0].append(ours(steps))
        results[1].append(ours(2 * steps))
        results[2].append(bare(steps))
        results[3].append(bare(2 * steps))
    return results


def _forget(model: Any) -> None:
    """Drop the scripted model's call records (they would grow over the runs)."""
    model.calls.clear()
    model.bound_tools.clear()
    model.call_kwargs.clear()


def _per_step(short: list[float], long: list[float], steps: int) -> float:
    return max(median(long) - median(short), 1e-9) / steps


def run(steps: int = 10, repeats: int = 15, real_tool: bool = True) -> list[dict[str, Any]]:
    """Per-step cost (ms) of ollagraph's graph vs the bare loop, one row per tool.

    Args:
        steps: N: runs have N and 2N tool steps.
        repeats: Runs of each kind (the median is used).
        real_tool: Also measure with the real `sql_query` tool.
    """
    rows = []
    with _stand_in_tool() as name:
        o1, o2, b1, b2 = _time_runs(name, _echo, steps, repeats)
    cases = [("stand-in tool (returns its argument)", o1, o2, b1, b2)]
    if real_tool:
        from ollagraph.tools.sql import sql_query

        cases.append(
            (
                "real `sql_query` (SELECT i) on the sample db",
                *_time_runs("sql_query", sql_query, steps, repeats),
            )
        )
    for label, o1, o2, b1, b2 in cases:
        ours = _per_step(o1, o2, steps) * 1000
        bare = _per_step(b1, b2, steps) * 1000
        rows.append(
            row(
                "orchestration",
                f"per tool step, {label}: ollagraph vs bare LangGraph loop (ms; "
                f"({steps * 2} - {steps} steps) / {steps}, median of {repeats})",
                ours,
                bare,
                "ms",
                better="lower",
                target=TARGET,
                note=f"whole run with {steps} steps: {median(o1) * 1000:.1f} ms vs "
                f"{median(b1) * 1000:.1f} ms",
            )
        )
    return rows


def main() -> None:
    """Run the benchmark and print its rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    from bench.run import table

    print(table(run(args.steps, args.repeats)))


if __name__ == "__main__":
    main()
