"""Benchmark: per-tool-step cost of ollagraph's graph vs bare LangGraph tool loops.

Every loop runs the same scripted chat model (`tests/scripted_model.py`: it replays queued
replies, no inference) and the same tool, without a checkpointer. Two peers:

- **LangGraph's prebuilt loop** (the target's peer): a `StateGraph` over `MessagesState` with a
  model node (tools bound once), LangGraph's `ToolNode` and `tools_condition`, the tool loop of
  LangGraph's documentation and templates. `ToolNode` validates arguments, turns errors into
  tool messages and runs the calls on a thread pool.
- **A minimal hand-rolled loop** (reported only): the same graph with a tool node that calls the
  function directly and appends `ToolMessage`s, with no validation, error handling, limit or
  thread. It is the floor any LangGraph agent pays per step.

One tool step is one model call that asks for a tool plus running it, in every loop. ollagraph
also has a plan node and an answer node (two extra model calls per question), so the per-step
cost is measured as a difference: (median time of a run with 2N steps - median of a run with N
steps) / N. Fixed per-question costs cancel out. Every call has new arguments, so ollagraph's
repeated-call guard never ends a run early.

What ollagraph does per step that the minimal loop does not (and so what its ratio prices): it
validates the call's arguments against the tool's schema, caps argument and output sizes, keeps
the tool's time limit within the question's deadline, rebuilds the act prompt (system prompt,
plan, this turn's calls), and keeps a larger state (plan, steps, tool runs, deadline start).
A user tool also runs on a worker thread, so a tool that ignores its time limit can be left
behind; built-in tools that stop themselves at their limit (`sql_query`) run in the run's thread.
Timings on a loaded machine are noisy: compare rows measured in the same run only.

Tool cases:
- a stand-in tool (returns its argument; put in the registry under the name `web_search` for
  the bench process only), marked like `sql_query` as keeping its own time limit, so ollagraph
  runs it in the run's thread — the cost of the orchestration alone;
- the same stand-in as a user tool (not marked): ollagraph runs it on a guarded worker thread;
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
from langgraph.prebuilt import ToolNode, tools_condition

from bench import median, row
from ollagraph.tools.context import keeps_time_limit

TARGET = 1.2


def _echo(query: str) -> str:
    """Return the query (a stand-in tool: the bench measures the orchestration around it).

    Args:
        query: Any text.
    """
    return f"result for {query}"


def _echo_builtin(query: str) -> str:
    """Return the query (a stand-in tool: the bench measures the orchestration around it).

    Args:
        query: Any text.
    """
    return f"result for {query}"


keeps_time_limit(_echo_builtin)  # it returns at once, so it keeps any limit


@contextmanager
def _stand_in_tool(func: Callable[..., str] = _echo) -> Iterator[str]:
    """Put `func` in the registry as `web_search` (this process only); restore it after."""
    from ollagraph.tools import registry

    original = registry.TOOLS["web_search"]
    registry.TOOLS["web_search"] = func
    registry._spec.cache_clear()
    try:
        yield "web_search"
    finally:
        registry.TOOLS["web_search"] = original
        registry._spec.cache_clear()


def _route(state: MessagesState) -> str:
    last = state["messages"][-1]
    return "tools" if isinstance(last, AIMessage) and last.tool_calls else END


def _minimal_graph(model: Any, tool_name: str, func: Callable[..., str], settings: Any) -> Any:
    """The smallest LangGraph tool loop: model ⇄ a node that calls the function."""
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

    builder = StateGraph(MessagesState)
    builder.add_node("model", call_model)
    builder.add_node("tools", call_tools)
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", _route, ["tools", END])
    builder.add_edge("tools", "model")
    return builder.compile(name="minimal").with_config(recursion_limit=1000)


def _prebuilt_graph(model: Any, tool_name: str) -> Any:
    """LangGraph's documented tool loop: model node, prebuilt `ToolNode`, `tools_condition`."""
    from ollagraph.tools.registry import tool_specs

    tools = tool_specs([tool_name])
    bound = model.bind_tools(tools)

    def call_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [bound.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("model", call_model)
    builder.add_node("tools", ToolNode(tools))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition)
    builder.add_edge("tools", "model")
    return builder.compile(name="prebuilt").with_config(recursion_limit=1000)


def _args(tool_name: str, i: int) -> dict[str, str]:
    return {"query": f"SELECT {i} AS n"} if tool_name == "sql_query" else {"query": f"q{i}"}


LOOPS = ("ollagraph", "prebuilt", "minimal")


def _time_runs(
    tool_name: str, func: Callable[..., str], steps: int, repeats: int
) -> dict[str, tuple[list[float], list[float]]]:
    """Run times (s) of each loop with `steps` and `2 * steps` tool steps, keyed by loop."""
    from langchain_core.messages import HumanMessage

    from ollagraph.agents.config import Settings
    from ollagraph.graphs.agent import build_graph
    from ollagraph.tools.context import using_settings
    from tests.scripted_model import ScriptedChatModel

    settings = Settings(tools=(tool_name,), max_steps=min(100, 2 * steps + 1))
    question = "How many ducks are there?"
    model = ScriptedChatModel()
    graphs = {
        "ollagraph": build_graph(lambda _settings: model),
        "prebuilt": _prebuilt_graph(model, tool_name),
        "minimal": _minimal_graph(model, tool_name, func, settings),
    }

    def once(loop: str, n: int) -> float:
        model.replies.clear()
        ours = loop == "ollagraph"
        if ours:
            model.enqueue_text("1. look it up\n2. answer")
        for i in range(n):
            model.enqueue_tool_call(tool_name, _args(tool_name, i))
        if ours:
            model.enqueue_text("DONE")
        model.enqueue_text("The answer.")
        graph = graphs[loop]
        started = time.perf_counter()
        if ours:
            state = graph.invoke({"messages": [HumanMessage(question)]}, context=settings)
        else:
            with using_settings(settings):  # the peers' tools read the run's settings too
                state = graph.invoke({"messages": [HumanMessage(question)]})
        elapsed = time.perf_counter() - started
        if ours:
            assert state["steps"] == n and not model.replies, "ollagraph ran a different script"
        else:
            assert len(state["messages"]) == 2 * n + 2 and not model.replies
            assert not any(getattr(m, "status", "") == "error" for m in state["messages"])
        _forget(model)
        return elapsed

    for n in (steps, 2 * steps):  # warm-up: imports, caches, the database schema
        for loop in LOOPS:
            once(loop, n)
    results: dict[str, tuple[list[float], list[float]]] = {loop: ([], []) for loop in LOOPS}
    for _ in range(repeats):  # interleaved, so drift in machine load hits all alike
        for loop in LOOPS:
            results[loop][0].append(once(loop, steps))
            results[loop][1].append(once(loop, 2 * steps))
    return results


def _forget(model: Any) -> None:
    """Drop the scripted model's call records (they would grow over the runs)."""
    model.calls.clear()
    model.bound_tools.clear()
    model.call_kwargs.clear()


def _per_step(short: list[float], long: list[float], steps: int) -> float:
    return max(median(long) - median(short), 1e-9) / steps


def run(steps: int = 10, repeats: int = 15, real_tool: bool = True) -> list[dict[str, Any]]:
    """Per-step cost (ms) of ollagraph's graph vs each peer loop, per tool case.

    Args:
        steps: N: runs have N and 2N tool steps.
        repeats: Runs of each kind (the median is used).
        real_tool: Also measure with the real `sql_query` tool.
    """
    cases: list[tuple[str, dict[str, tuple[list[float], list[float]]]]] = []
    with _stand_in_tool(_echo_builtin) as name:
        cases.append(
            (
                "stand-in tool (returns its argument), built-in path",
                _time_runs(name, _echo_builtin, steps, repeats),
            )
        )
    with _stand_in_tool(_echo) as name:
        cases.append(
            (
                "stand-in tool as a user tool (ollagraph: guarded worker thread)",
                _time_runs(name, _echo, steps, repeats),
            )
        )
    if real_tool:
        from ollagraph.tools.sql import sql_query

        cases.append(
            (
                "real `sql_query` (SELECT i) on the sample db",
                _time_runs("sql_query", sql_query, steps, repeats),
            )
        )
    rows = []
    peers = {
        "prebuilt": ("LangGraph's prebuilt loop (`ToolNode` + `tools_condition`)", TARGET),
        "minimal": ("a minimal hand-rolled LangGraph loop", None),
    }
    for peer, (peer_label, target) in peers.items():
        for label, times in cases:
            ours = _per_step(*times["ollagraph"], steps) * 1000
            theirs = _per_step(*times[peer], steps) * 1000
            rows.append(
                row(
                    "orchestration",
                    f"per tool step, {label}: ollagraph vs {peer_label} (ms; "
                    f"({steps * 2} - {steps} steps) / {steps}, median of {repeats})",
                    ours,
                    theirs,
                    "ms",
                    better="lower",
                    target=target,
                    note=f"{label}: whole run with {steps} steps: ollagraph "
                    f"{median(times['ollagraph'][0]) * 1000:.1f} ms, {peer} "
                    f"{median(times[peer][0]) * 1000:.1f} ms",
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
