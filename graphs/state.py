"""The agent graph's state: the conversation, this turn's plan, step count and tool runs."""

from __future__ import annotations

from typing import Annotated, Any

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict


class ToolRun(TypedDict):
    """One tool call of this turn, as shown to the user (`-v`, `--json`, Studio).

    Attributes:
        name: The tool the model called.
        args: The arguments it gave.
        ok: False when the call failed (the model was shown the error).
        seconds: Wall time of the call.
        output: The text the model read (a result or an error explanation).
    """

    name: str
    args: Any
    ok: bool
    seconds: float
    output: str


class InputState(TypedDict):
    """What a caller sends: new messages (usually one user question)."""

    messages: Annotated[list[AnyMessage], add_messages]


class State(InputState, total=False):
    """Everything the graph keeps for a thread.

    Attributes:
        plan: This turn's numbered plan, written by the model before it acts.
        steps: Tool-calling steps taken this turn (bounded by `max_steps`).
        tool_runs: This turn's tool calls with their timings and outputs.
        partial: True when the step limit ended the turn before the model was done.
        offered: The tools this turn's question was offered (image requests get image tools).
        started: When this turn's question started (wall clock), for `run_timeout` in runs that
            bring no deadline of their own (LangGraph Studio).
    """

    plan: str
    steps: int
    tool_runs: list[ToolRun]
    partial: bool
    offered: list[str]
    started: float
