"""A conversation with the agent graph: one thread, turn after turn, with events as they happen.

`Session` compiles the graph with the checkpointer that `checkpoint_db` names (SQLite under the
state directory by default, or PostgreSQL; see `agents.checkpoints`), so threads survive restarts.
It runs one question per `ask` call and reports progress to a listener: the plan, each tool call
with its duration, answer tokens as they stream, and the finished turn.

When the graph pauses for the approval of a database write (a LangGraph interrupt), the session
asks its `approve` callback and resumes the graph with the decision; without a callback the write
is declined. `agent chat` asks the user; `agent ask --yes` approves every write.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ollagraph.agents.checkpoints import open_checkpointer
from ollagraph.agents.config import Settings
from ollagraph.agents.deadline import Deadline, using_deadline

Approver = Callable[[dict[str, Any]], bool]
"""Decides one write: gets the interrupt's value (`sql`, `kind`, `database`, `question`)."""

NO_APPROVER = "nobody was asked to approve it: `agent ask` runs writes only with --yes"
ABANDONED = "the earlier session ended before the user answered"


class Listener(Protocol):
    """Receives a turn's progress. Every method is optional to act on."""

    def plan(self, text: str) -> None:
        """The model's plan for this turn."""

    def tool_call(self, run: dict[str, Any]) -> None:
        """A tool call finished (name, args, ok, seconds, output)."""

    def answer_token(self, text: str) -> None:
        """A piece of the final answer."""


@dataclass
class TurnResult:
    """What one question produced.

    Attributes:
        answer: The final answer text.
        plan: The plan the model wrote.
        tool_calls: Each tool call with its arguments, outcome, output and seconds.
        timings: Seconds spent per node (plan, act, tools, answer) and in total.
        partial: True when the step limit cut the work short.
        thread_id: The conversation this turn belongs to.
    """

    answer: str
    plan: str
    tool_calls: list[dict[str, Any]]
    timings: dict[str, float]
    partial: bool
    thread_id: str

    def as_json(self, model: str) -> dict[str, Any]:
        """The `--json` document."""
        return {
            "answer": self.answer,
            "plan": self.plan,
            "tool_calls": self.tool_calls,
            "timings": self.timings,
            "partial": self.partial,
            "thread_id": self.thread_id,
            "model": model,
        }


def new_thread_id() -> str:
    """A short random conversation id."""
    return uuid.uuid4().hex[:12]


@dataclass
class Session:
    """One conversation thread with the agent.

    Attributes:
        settings: The run's settings (the graph's runtime context).
        thread_id: The conversation id; reuse it to continue a saved conversation.
        model_factory: Overrides how chat models are made (tests pass scripted models).
        approve: Decides each database write the graph pauses on; None declines them all.
        tools: Your own tool functions (typed, with Google-style docstrings), offered in every
            turn next to the enabled ones (see `build_graph`).
    """

    settings: Settings
    thread_id: str = field(default_factory=new_thread_id)
    model_factory: Callable[[Settings], Any] | None = None
    approve: Approver | None = None
    tools: Sequence[Callable[..., Any]] = ()
    _graph: Any = field(default=None, init=False, repr=False)

    @property
    def graph(self) -> Any:
        """The compiled graph with the `checkpoint_db` checkpointer (built on first use).

        Raises:
            OllagraphError: The threads database cannot be opened (see `open_checkpointer`).
        """
        if self._graph is None:
            from ollagraph.graphs.agent import build_graph

            saver = open_checkpointer(self.settings.checkpoint_db)
            self._graph = build_graph(self.model_factory, checkpointer=saver, tools=self.tools)
        return self._graph

    def _thread_config(self) -> dict[str, Any]:
        """The config to continue this thread from, past a turn that a crash left unfinished.

        A process killed mid-turn leaves the thread's last checkpoint with nodes still to run and
        the unanswered question in its messages. Continuing from there would keep that question
        and add the retried one after it, so the thread continues from its last finished turn
        instead (LangGraph forks from that checkpoint); with none, the thread starts over. A turn
        paused by an interrupt (waiting for an approval) is left alone.
        """
        config: dict[str, Any] = {"configurable": {"thread_id": self.thread_id}}
        state = self.graph.get_state(config)
        if not state.next or state.interrupts:
            return config
        for snapshot in self.graph.get_state_history(config):
            if not snapshot.next:
                return dict(snapshot.config)
        self.graph.checkpointer.delete_thread(self.thread_id)
        return config

    def history(self) -> list[tuple[str, str]]:
        """The saved conversation as (role, text) pairs of questions and answers."""
        from langchain_core.messages import AIMessage, HumanMessage

        state = self.graph.get_state(self._thread_config())
        pairs = []
        for message in state.values.get("messages", []) if state else []:
            if isinstance(message, HumanMessage):
                pairs.append(("user", str(message.text)))
            elif isinstance(message, AIMessage) and not message.tool_calls and message.text:
                pairs.append(("assistant", str(message.text)))
        return pairs

    def _decide(self, value: Any) -> dict[str, Any]:
        """The resume value for one interrupt: the approver's decision, or a refusal."""
        if not isinstance(value, dict) or value.get("action") != "approve_sql_write":
            return {"approved": False, "reason": "unknown request for approval"}
        if self.approve is None:
            return {"approved": False, "reason": NO_APPROVER}
        return {"approved": bool(self.approve(value)), "reason": ""}

    def _settle(self, config: dict[str, Any]) -> None:
        """Finish a turn left waiting for an approval (the session ended first): decline it."""
        from langgraph.types import Command

        for _ in range(100):  # each resume answers one pending write
            if not self.graph.get_state(config).interrupts:
                return
            resume = {"approved": False, "reason": ABANDONED}
            for _event in self.graph.stream(Command(resume=resume), config, context=self.settings):
                pass

    def ask(self, question: str, listener: Listener | None = None) -> TurnResult:
        """Run one question through the graph on this thread.

        A write that needs approval pauses the graph; `approve` decides it and the graph goes on.

        Args:
            question: The user's question.
            listener: Receives the plan, tool calls and answer tokens as they happen.

        Raises:
            OllagraphError: The model server or a configured data source failed.
        """
        from langchain_core.messages import HumanMessage
        from langgraph.types import Command

        config: dict[str, Any] = {"configurable": {"thread_id": self.thread_id}}
        self._settle(config)
        timings: dict[str, float] = {}
        start = time.perf_counter()
        payload: Any = {"messages": [HumanMessage(question)]}
        first = self._thread_config()  # past a turn a crash left unfinished
        with using_deadline(Deadline(self.settings.run_timeout)):
            while True:
                self._stream(payload, first, listener, timings)
                first = config
                pending = self.graph.get_state(config).interrupts
                if not pending:
                    break
                payload = Command(resume=self._decide(pending[0].value))
        timings["total"] = round(time.perf_counter() - start, 4)
        values = self.graph.get_state(config).values
        final = values["messages"][-1]
        return TurnResult(
            answer=str(final.text),
            plan=values.get("plan", ""),
            tool_calls=[dict(run) for run in values.get("tool_runs", [])],
            timings=timings,
            partial=bool(values.get("partial")),
            thread_id=self.thread_id,
        )

    def _stream(
        self,
        payload: Any,
        config: dict[str, Any],
        listener: Listener | None,
        timings: dict[str, float],
    ) -> None:
        """Run the graph until it ends or pauses, adding each node's seconds to `timings`."""
        last = time.perf_counter()
        stream = self.graph.stream(
            payload,
            config=config,
            context=self.settings,
            stream_mode=["updates", "messages", "custom"],
        )
        for mode, data in stream:
            if mode == "messages":
                chunk, meta = data
                if meta.get("langgraph_node") == "answer" and listener and chunk.text:
                    listener.answer_token(chunk.text)
            elif mode == "custom":
                if isinstance(data, dict) and data.get("answer_prefix") and listener:
                    listener.answer_token(data["answer_prefix"])
            elif mode == "updates":
                now = time.perf_counter()
                for node, update in data.items():
                    if node.startswith("__"):  # __interrupt__: a pause, not a node
                        continue
                    timings[node] = round(timings.get(node, 0.0) + now - last, 4)
                    if listener and isinstance(update, dict):
                        if node == "plan":
                            listener.plan(update.get("plan", ""))
                        elif node == "tools":
                            done = len(update.get("messages", []))
                            for run in update.get("tool_runs", [])[-done:] if done else []:
                                listener.tool_call(dict(run))
                last = now
