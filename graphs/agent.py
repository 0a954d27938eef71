"""The agent graph: plan → act ⇄ tools → answer.

- `plan`: the model writes a short numbered plan naming the tools it intends to use.
- `act`: the model calls the next tool(s) or decides it can answer — natively, or through one
  schema-constrained JSON decision for models without tool calling (`agents.strategy`).
- `tools`: runs the calls; every failure returns to the model as a readable error, and the run
  goes on. With `allow_writes`, a SQL write statement first pauses the graph with a LangGraph
  `interrupt` carrying the SQL; the caller resumes it with `Command(resume=True)` to run the
  write, or anything else to decline it (the model is told the user declined).
- `answer`: the model writes the final answer from this turn's tool results (streamed to the user).

The loop is bounded by `max_steps`: when the model still wants tools at the limit, `answer` writes a
partial answer from what was found, and says so. The run's settings arrive as the runtime context
(`Settings`), so LangGraph Studio can edit them. The exported `graph` has no checkpointer (Studio
brings its own, so write approvals show there as interrupts; reads never interrupt); the CLI builds
one with a SQLite checkpointer through `build_graph`.

User tools join a run's tools: those of the `user_tools` files (also in Studio, from
`OLLAGRAPH_USER_TOOLS`), installed packages' tools named in `tools`, and the functions given to
`build_graph(tools=[...])`, which every run of that graph is offered.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Checkpointer, interrupt

from ollagraph.agents.config import Settings
from ollagraph.agents.deadline import Deadline, current_deadline, using_deadline
from ollagraph.agents.errors import OllagraphError, ToolLoadError
from ollagraph.agents.models import (
    ModelFactory,
    call_model,
    chat_model,
    fit_request,
    limit_reply,
)
from ollagraph.agents.strategy import decide, resolve_strategy
from ollagraph.graphs import prompts
from ollagraph.graphs.routing import select_tools
from ollagraph.graphs.state import InputState, State, ToolRun
from ollagraph.tools.registry import schemas_size, tool_specs, using_tools
from ollagraph.tools.runner import ToolOutcome, execute
from ollagraph.tools.sql import approved_writes, database_path
from ollagraph.tools.sql_guard import classify

PLAN_TOKENS = 160  # a plan is a few short lines
ACT_TOKENS = 400  # a tool call or DONE; bounds a small model stuck repeating inside its JSON
ANSWER_TOKENS = 600  # bounds a small model's repetition loops, not a real answer
ANSWER_FLOOR_SECONDS = 60.0  # the answer may still be written this long after the deadline
RECURSION_LIMIT = 250  # supersteps; two per tool step, so it never binds before max_steps does
APPROVAL_QUESTION = "Run this write? [y/N]"


def run_settings(runtime: Runtime[Settings]) -> Settings:
    """The settings of this run.

    Run in-process (the CLI's session, or `graph.invoke(..., context=settings)`), the context is
    the run's settings as the caller resolved them. Served by LangGraph's server (Studio,
    `langgraph up`), the context holds the dataclass defaults plus what the run set, so the base
    is the deployment's configuration (config file < `OLLAGRAPH_*`/`OLLAMA_HOST` env) and each
    context field that differs from its default replaces the base's (`agents.served`). With no
    context at all, the configured settings.
    """
    context = runtime.context
    if isinstance(context, Settings) and runtime.server_info is None:
        return context
    from ollagraph.agents.served import served_settings

    return served_settings(context if isinstance(context, Settings) else None)


def _question(state: State) -> str:
    for message in reversed(state["messages"]):
        if isinstance(message, HumanMessage):
            return _text(message)
    return ""


def run_deadline(state: State, settings: Settings) -> Deadline:
    """This question's deadline, for nodes and the tools they run.

    The caller's deadline when it set one (the CLI session does), else one rebuilt from the
    wall-clock start the plan node saved (LangGraph Studio runs), else no limit.
    """
    deadline = current_deadline()
    started = state.get("started")
    if deadline.limit is not None or not settings.run_timeout or started is None:
        return deadline
    return Deadline(settings.run_timeout, clock=time.time, start=started)


def _derived(settings: Settings, **changes: Any) -> Settings:
    """A copy of `settings` with `changes` that are derived from valid values.

    A shorter timeout or a subset of the enabled tools needs no validation, and
    `dataclasses.replace` would validate the whole object again on every node of every step.
    """
    clone = object.__new__(Settings)
    clone.__dict__.update(vars(settings), **changes)
    return clone


def within_deadline(settings: Settings, deadline: Deadline, floor: float = 0.0) -> Settings:
    """`settings` with `request_timeout` cut to the time left for this question.

    Args:
        settings: The run's settings.
        deadline: This question's deadline.
        floor: Seconds a model call gets even past the deadline (the answer must be written).
    """
    seconds = deadline.cap(settings.request_timeout, floor=floor)
    if seconds >= settings.request_timeout:
        return settings
    return _derived(settings, request_timeout=max(seconds, 0.001))


def with_tools(settings: Settings, extra: Mapping[str, Any]) -> Settings:
    """`settings` with the graph's own tools and the tools of its `user_tools` files enabled.

    `load_settings` already joins the files' tools; a `Settings` made directly (a Studio context,
    a caller's object) gets them here, as the `user_tools` setting promises.

    Args:
        settings: The run's settings.
        extra: The graph's own tools by name (`build_graph(tools=...)`).

    Raises:
        ToolLoadError: A tools file no longer loads, or one of its tools has the name of one of
            the graph's own tools.
    """
    if not extra and not settings.user_tools:
        return settings
    names = list(extra)
    if settings.user_tools:
        from ollagraph.tools.user_tools import file_tool_names, user_tools

        files = user_tools(settings.user_tools)
        for name in extra:
            if name in files and files[name].original is not extra[name].original:
                raise ToolLoadError(
                    f"Tool `{name}` in {files[name].source} clashes with {extra[name].source} "
                    "(given to build_graph).",
                    hint="Rename one of them, or load only the others with FILE.py:func1,func2.",
                )
        names = file_tool_names(settings.user_tools) + names
    missing = tuple(dict.fromkeys(n for n in names if n not in settings.tools))
    return _derived(settings, tools=settings.tools + missing) if missing else settings


def routed_settings(state: State, settings: Settings) -> Settings:
    """The run's settings with `tools` narrowed to what this turn's question was offered.

    Only enabled tools stay: a thread saved under other settings cannot enable one.

    Args:
        state: The graph state (`offered` is set by the plan node).
        settings: The run's settings, with the graph's own tools (`with_tools`).
    """
    offered = state.get("offered")
    if offered is None:
        return settings
    tools = tuple(name for name in offered if name in settings.tools)
    if tools == settings.tools:
        return settings
    return _derived(settings, tools=tools)


def _database_schema(settings: Settings, compact: bool = False) -> str | None:
    if "sql_query" not in settings.tools:
        return None
    from ollagraph.tools.sql import describe_database

    try:
        return describe_database(settings, compact=compact)
    except OllagraphError as exc:
        return f"(the database cannot be read: {exc.message})"


def _table_names(settings: Settings) -> list[str]:
    """The database's tables (from the compact description, which is cached), or none."""
    schema = _database_schema(settings, compact=True)
    if not schema or schema.startswith("("):
        return []
    return [line.split("(", 1)[0] for line in schema.splitlines() if "(" in line]


FAILED_REPEATS = 2  # runs of one failing call (same tool and arguments) before it is dropped


def _drop_repeats(reply: AIMessage, runs: list[ToolRun]) -> AIMessage:
    """Treat a reply that only repeats calls already answered this turn as the decision to answer.

    Small models often send the same arguments again after a call succeeded — to the same tool,
    or pasted into another one (the SQL text as a document search). The result is already in
    front of them, so the loop goes on to the answer instead. A call that failed is run once
    more (the failure may have been passing), but not a third time: asked to write to the
    database, SmolLM2-135M sent the same refused INSERT until the step limit.
    """
    if not reply.tool_calls:
        return reply
    for call in reply.tool_calls:
        args = call["args"]
        same = [run for run in runs if run["args"] == args and _same_json(run["args"], args)]
        if any(run["ok"] for run in same):
            continue
        failed = [run for run in same if run["name"] == call["name"]]
        if len(failed) < FAILED_REPEATS:
            return reply
    return AIMessage(content="DONE (repeated a call that was already answered)", id=reply.id)


def _same_json(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _text(message: BaseMessage) -> str:
    return message.text.strip()


def _write_sql(call: Any, settings: Settings) -> str | None:
    """The SQL of a call that would write to the database (needs approval), else None."""
    if call["name"] != "sql_query" or "sql_query" not in settings.tools:
        return None
    if not settings.allow_writes:
        return None
    args = call["args"]
    query = args.get("query") if isinstance(args, dict) else None
    if not isinstance(query, str):
        return None
    return query if classify(query, allow_writes=True).write else None


def read_approval(value: Any) -> tuple[bool, str]:
    """Read the value a write approval was resumed with: (approved, why not).

    True, "y" and "yes" (any case), or `{"approved": true}` approve; anything else declines.
    `{"approved": false, "reason": "..."}` passes the reason on to the model.

    Args:
        value: What `Command(resume=...)` carried.
    """
    if isinstance(value, dict):
        return value.get("approved") is True, str(value.get("reason") or "")
    if isinstance(value, str):
        return value.strip().lower() in ("y", "yes"), ""
    return value is True, ""


def _ask_approvals(calls: list[Any], settings: Settings) -> dict[int, tuple[bool, str]]:
    """Pause for the user's decision on each write call; keyed by the call's position.

    Every interrupt happens here, before any tool runs: resuming re-runs the node from the
    start, so no tool runs twice.
    """
    decisions: dict[int, tuple[bool, str]] = {}
    for index, call in enumerate(calls):
        query = _write_sql(call, settings)
        if query is None:
            continue
        decisions[index] = read_approval(
            interrupt(
                {
                    "action": "approve_sql_write",
                    "tool": call["name"],
                    "sql": query,
                    "kind": classify(query, allow_writes=True).kind,
                    "database": str(database_path(settings)),
                    "question": APPROVAL_QUESTION,
                }
            )
        )
    return decisions


def _declined(call: Any, reason: str) -> ToolOutcome:
    query = str(call["args"].get("query", "")) if isinstance(call["args"], dict) else ""
    query = query if len(query) <= 300 else query[:299] + "…"
    message = (
        f"Error: the user declined this write (`{query}`); it did not run and the database is "
        "unchanged. Do not send it again; tell the user what it would have changed."
    )
    return ToolOutcome(message + (f" ({reason})" if reason else ""), False, 0.0, "declined")


def build_graph(
    model_factory: ModelFactory | None = None,
    checkpointer: Checkpointer = None,
    name: str = "agent",
    *,
    tools: Iterable[Callable[..., Any]] = (),
) -> Any:
    """Build and compile the agent graph.

    Args:
        model_factory: Makes the chat model from the run's settings (default: `ChatOllama`).
            Tests pass scripted models here.
        checkpointer: Persists threads (the CLI passes a SQLite saver); None for Studio.
        name: The compiled graph's name.
        tools: Your own tools: plain typed functions with Google-style docstrings, checked
            now by the rules of tools files (`ollagraph.tools.user_tools`). Every run of this
            graph is offered them besides the settings' `tools`, named after the functions.

    Raises:
        ToolLoadError: A function in `tools` cannot be described to the model, or its name
            clashes with a built-in tool or an installed package's tool.
    """
    from ollagraph.tools.user_tools import function_tools

    make_model = model_factory or chat_model
    own_tools = function_tools(tools)

    def settings_of(runtime: Runtime[Settings]) -> Settings:
        return with_tools(run_settings(runtime), own_tools)

    def plan(state: State, runtime: Runtime[Settings]) -> dict[str, Any]:
        with using_tools(own_tools):
            return _plan(state, runtime)

    def _plan(state: State, runtime: Runtime[Settings]) -> dict[str, Any]:
        started = time.time() - current_deadline().elapsed()  # wall-clock start of the question
        run = settings_of(runtime)
        offered = select_tools(_question(state), run.tools, _table_names(run))
        settings = _derived(run, tools=offered)
        settings = within_deadline(settings, current_deadline())
        model, messages = fit_request(
            settings,
            limit_reply(make_model(settings), PLAN_TOKENS),
            prompts.plan_messages(
                state["messages"], settings.tools, _database_schema(settings, compact=True)
            ),
        )
        reply = call_model(settings, lambda: model.invoke(messages))
        return {
            "plan": _text(reply),
            "steps": 0,
            "tool_runs": [],
            "partial": False,
            "offered": list(offered),
            "started": started,
        }

    def act(state: State, runtime: Runtime[Settings]) -> dict[str, Any]:
        with using_tools(own_tools):
            return _act(state, runtime)

    def _act(state: State, runtime: Runtime[Settings]) -> dict[str, Any]:
        settings = routed_settings(state, settings_of(runtime))
        deadline = run_deadline(state, settings)
        if deadline.expired():
            return {}  # no new decision: route goes to answer, which says the time ran out
        settings = within_deadline(settings, deadline)
        specs = tool_specs(settings.tools, settings)
        model = limit_reply(make_model(settings), ACT_TOKENS)
        strategy = (
            call_model(settings, lambda: resolve_strategy(settings, model)) if specs else None
        )
        if strategy == "constrained":
            prompt = prompts.act_messages_compact(
                state["messages"], settings.tools, _database_schema(settings, compact=True)
            )
        else:
            prompt = prompts.act_messages(
                state["messages"], settings.tools, _database_schema(settings), state.get("plan", "")
            )
        model, messages = fit_request(
            settings,
            model,
            prompt,
            tools_chars=schemas_size(specs),
        )
        reply = call_model(settings, lambda: decide(settings, model, messages, specs, strategy))
        return {"messages": [_drop_repeats(reply, state.get("tool_runs", []))]}

    def route(state: State, runtime: Runtime[Settings]) -> Literal["tools", "answer"]:
        last = state["messages"][-1]
        wants_tools = isinstance(last, AIMessage) and bool(last.tool_calls)
        if wants_tools:
            settings = run_settings(runtime)
            if (
                state.get("steps", 0) < settings.max_steps
                and not run_deadline(state, settings).expired()
            ):
                return "tools"
        return "answer"

    def run_tools(state: State, runtime: Runtime[Settings]) -> dict[str, Any]:
        with using_tools(own_tools):
            return _run_tools(state, runtime)

    def _run_tools(state: State, runtime: Runtime[Settings]) -> dict[str, Any]:
        settings = routed_settings(state, settings_of(runtime))
        last = state["messages"][-1]
        assert isinstance(last, AIMessage)
        decisions = _ask_approvals(last.tool_calls, settings)
        results: list[ToolMessage] = []
        runs: list[ToolRun] = []
        for index, call in enumerate(last.tool_calls):
            approved, reason = decisions.get(index, (True, ""))
            if not approved:
                outcome = _declined(call, reason)
            else:
                writes = [call["args"]["query"]] if index in decisions else []
                with approved_writes(writes), using_deadline(run_deadline(state, settings)):
                    outcome = execute(call["name"], call["args"], settings)
            results.append(
                ToolMessage(
                    content=outcome.content,
                    tool_call_id=call["id"] or "",
                    name=call["name"],
                    status="success" if outcome.ok else "error",
                )
            )
            runs.append(
                ToolRun(
                    name=call["name"],
                    args=call["args"],
                    ok=outcome.ok,
                    seconds=round(outcome.seconds, 4),
                    output=outcome.content,
                )
            )
        return {
            "messages": results,
            "tool_runs": [*state.get("tool_runs", []), *runs],
            "steps": state.get("steps", 0) + 1,
        }

    def answer(state: State, runtime: Runtime[Settings]) -> dict[str, Any]:
        settings = run_settings(runtime)
        deadline = run_deadline(state, settings)
        settings = within_deadline(settings, deadline, floor=ANSWER_FLOOR_SECONDS)
        last = state["messages"][-1]
        partial = isinstance(last, AIMessage) and bool(last.tool_calls)
        prefix = ""
        if deadline.expired():
            partial = True
            prefix = (
                f"Partial answer: I stopped after {deadline.elapsed():.0f} s (the time limit of "
                f"{settings.run_timeout:g} s) before finishing.\n\n"
            )
        elif partial:
            prefix = (
                f"Partial answer: I stopped after {settings.max_steps} tool steps (the step "
                "limit) before finishing.\n\n"
            )
        if prefix:
            get_stream_writer()({"answer_prefix": prefix})
        model, messages = fit_request(
            settings,
            limit_reply(make_model(settings), ANSWER_TOKENS),
            prompts.answer_messages(state["messages"], settings.max_steps if partial else None),
        )
        reply = call_model(settings, lambda: model.invoke(messages))
        text = _text(reply) or "(The model returned an empty answer.)"
        # Replace act's last message (a DONE decision, or tool calls cut off by the step limit),
        # so the thread keeps one answer per question and no unanswered tool call.
        final = AIMessage(
            content=prefix + text, id=last.id if isinstance(last, AIMessage) else None
        )
        return {"messages": [final], "partial": partial}

    builder = StateGraph(State, input_schema=InputState, context_schema=Settings)
    builder.add_node("plan", plan)
    builder.add_node("act", act)
    builder.add_node("tools", run_tools)
    builder.add_node("answer", answer)
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "act")
    builder.add_conditional_edges("act", route, ["tools", "answer"])
    builder.add_edge("tools", "act")
    builder.add_edge("answer", END)
    compiled = builder.compile(checkpointer=checkpointer, name=name)
    return compiled.with_config(recursion_limit=RECURSION_LIMIT)


graph = build_graph()
