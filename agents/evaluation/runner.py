"""Run an evaluation set through ollagraph's agent and through a baseline agent, and score it.

- **ollagraph**: the agent graph through `Session`, as `agent ask` runs it, one fresh thread per
  question.
- **baseline**: LangGraph's prebuilt tool-calling agent (`langgraph.prebuilt.create_react_agent`;
  LangChain's newer `langchain.agents.create_agent` is not installed here) with the same chat model
  bound to the same tool functions (`ChatOllama.bind_tools`), a system prompt holding the same
  database schema, and the same step limit. Its tools run through LangGraph's `ToolNode`, which
  turns a tool error into a message for the model.

Both systems are offered the same tools per question (`select_tools`, as the graph does). Each
question gives one `Outcome` per system: the calls with their validity, the answer, steps,
latency, and the checkers' verdicts.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ollagraph.agents.config import Settings
from ollagraph.agents.errors import OllagraphError
from ollagraph.agents.evaluation.checkers import (
    call_valid,
    facts_found,
    refused,
    result_sets_match,
    tools_right,
    value_facts,
)
from ollagraph.agents.evaluation.questions import Question

SYSTEMS = ("ollagraph", "baseline")
BASELINE_PROMPT = """You are a helpful assistant for Quackers & Co., a shop that sells rubber ducks.
Use the tools to answer questions about the shop's database and documents.
{schema}"""
BASELINE_REPLY_TOKENS = 600  # as ollagraph's answer cap: bounds a small model's repetition loops
EXPECTED_MAX_ROWS = 10_000

ModelFactory = Callable[[Settings], Any]


@dataclass
class Call:
    """One tool call a system made.

    Attributes:
        name: The tool it named.
        args: The arguments it gave.
        valid: The name is an offered tool and the arguments fit its schema.
        ok: The tool ran without an error.
    """

    name: str
    args: Any
    valid: bool
    ok: bool


@dataclass
class Run:
    """What one system did with one question, before scoring."""

    answer: str = ""
    calls: list[Call] = field(default_factory=list)
    malformed: int = 0
    steps: int = 0
    seconds: float = 0.0
    error: str | None = None
    partial: bool = False


@dataclass
class Outcome:
    """One system's result on one question.

    Attributes:
        id: The question's id.
        category: The question's category.
        system: "ollagraph" or "baseline".
        answer: The final answer ("" after an error).
        calls: The tool calls, each with its validity and outcome.
        malformed: Tool calls the model tried that could not be parsed at all (invalid).
        steps: Model turns that asked for tools.
        seconds: Wall time for the question.
        error: Why the run failed, when it did.
        partial: The step limit cut the run short.
        right_tool: The tool choice was right.
        sql_correct: A SQL query the system ran returned the expected rows (None: no SQL
            expected).
        answer_correct: The answer holds the expected facts, or refuses when it must.
    """

    id: str
    category: str
    system: str
    answer: str
    calls: list[Call]
    malformed: int
    steps: int
    seconds: float
    error: str | None
    partial: bool
    right_tool: bool
    sql_correct: bool | None
    answer_correct: bool

    def as_json(self) -> dict[str, Any]:
        """This outcome as a JSON-ready dict."""
        return asdict(self)


def query_rows(
    query: str, settings: Settings, max_rows: int | None = None
) -> list[tuple[Any, ...]]:
    """Run one read-only query through the SQL tool's guard and connection; return its rows.

    Args:
        query: One SQL statement.
        settings: Which database, the time limit and the row cap.
        max_rows: Overrides the row cap.

    Raises:
        ToolError: The statement is refused or DuckDB reports an error.
    """
    from ollagraph.tools.sql import fetch_rows

    if max_rows is not None:
        settings = replace(settings, max_rows=max_rows)
    columns, rows, more, _capped = fetch_rows(query, settings)
    return list(rows) + [(None,) * len(columns)] * more  # rows past the cap only count


def expected_rows(questions: Sequence[Question], settings: Settings) -> dict[str, list[Any]]:
    """Run each question's expectation query on the database.

    Args:
        questions: The set.
        settings: Which database.

    Raises:
        QuestionSetError: An expectation query fails on this database.
    """
    from ollagraph.agents.evaluation.questions import QuestionSetError

    rows: dict[str, list[Any]] = {}
    for q in questions:
        if q.sql is None:
            continue
        try:
            rows[q.id] = query_rows(q.sql, settings, EXPECTED_MAX_ROWS)
        except OllagraphError as exc:
            raise QuestionSetError(
                f"The expected SQL of question {q.id} fails on this database: {exc.message}"
            ) from None
    return rows


def _sql_correct(run: Run, expected: list[Any], q: Question, settings: Settings) -> bool:
    for call in run.calls:
        if call.name != "sql_query" or not call.ok or not call.valid:
            continue
        try:
            actual = query_rows(str(call.args["query"]), settings)
        except OllagraphError:
            continue
        if result_sets_match(expected, actual, ordered=q.ordered):
            return True
    return False


def score(
    q: Question, system: str, run: Run, expected: list[Any] | None, settings: Settings
) -> Outcome:
    """Apply the checkers to one run.

    Args:
        q: The question.
        system: Which system produced the run.
        run: What it did.
        expected: The rows of the question's SQL, if it has one.
        settings: Which database the model's SQL is run on again.
    """
    sql_ok = _sql_correct(run, expected, q, settings) if expected is not None else None
    if run.error:
        answer_ok = False
    elif q.refuse:
        answer_ok = refused(run.answer)
    else:
        facts = q.facts or (value_facts(expected) if expected is not None else ())
        answer_ok = bool(facts) and facts_found(run.answer, facts)
    return Outcome(
        id=q.id,
        category=q.category,
        system=system,
        answer=run.answer,
        calls=run.calls,
        malformed=run.malformed,
        steps=run.steps,
        seconds=round(run.seconds, 3),
        error=run.error,
        partial=run.partial,
        right_tool=not run.error and tools_right([c.name for c in run.calls], q.tools, q.allowed),
        sql_correct=sql_ok,
        answer_correct=answer_ok,
    )


def offered_tools(question: str, settings: Settings) -> tuple[str, ...]:
    """The tools both systems are offered for `question` (the graph's own routing)."""
    from ollagraph.graphs.routing import select_tools

    return select_tools(question, settings.tools)


def run_ollagraph(q: Question, settings: Settings, session: Any) -> Run:
    """Ask one question through ollagraph's graph on a fresh thread.

    Args:
        q: The question.
        settings: The run's settings.
        session: A `Session`; its thread is replaced by a new one.
    """
    from ollagraph.agents.session import new_thread_id

    offered = offered_tools(q.question, settings)
    session.thread_id = new_thread_id()
    start = time.perf_counter()
    run = Run()
    try:
        result = session.ask(q.question)
    except OllagraphError as exc:
        run.error = exc.message
        run.seconds = time.perf_counter() - start
        return run
    run.seconds = time.perf_counter() - start
    run.answer = result.answer
    run.malformed = text_calls(result.answer)
    run.partial = result.partial
    run.calls = [
        Call(c["name"], c["args"], call_valid(c["name"], c["args"], offered), bool(c["ok"]))
        for c in result.tool_calls
    ]
    state = session.graph.get_state({"configurable": {"thread_id": session.thread_id}})
    run.steps = int(state.values.get("steps", 0))
    return run


def baseline_agent(settings: Settings, offered: Sequence[str], model_factory: ModelFactory) -> Any:
    """LangGraph's prebuilt tool-calling agent with the model and ollagraph's tool functions.

    Args:
        settings: Model, server and the database whose schema goes in the system prompt.
        offered: The tools to bind.
        model_factory: Makes the chat model.
    """
    from langchain_ollama import ChatOllama

    from ollagraph.tools.registry import tool_specs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # create_react_agent is deprecated in LangGraph 1.x
        from langgraph.prebuilt import ToolNode, create_react_agent

    model = model_factory(settings)
    if isinstance(model, ChatOllama):
        model = model.model_copy(
            update={"num_ctx": settings.num_ctx_cap, "num_predict": BASELINE_REPLY_TOKENS}
        )
    specs = tool_specs(offered)
    schema = ""
    if "sql_query" in offered:
        from ollagraph.tools.sql import describe_database

        schema = "Database schema:\n" + describe_database(settings)
    bound = model.bind_tools(specs) if specs else model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_react_agent(
            bound,
            ToolNode(specs, handle_tool_errors=True),
            prompt=BASELINE_PROMPT.format(schema=schema),
        )


def text_calls(text: str) -> int:
    """How many tool calls a final answer writes out as text instead of making them.

    A model that answers with a call it could not make (an invented tool name, arguments that
    are not an object, a call form its server does not parse) tried to call a tool and failed,
    so each such call counts against tool-call validity. Recognised: every `<tool_call>` block
    (each call of a list in it; an unreadable block counts once), the Mistral and Llama call
    prefixes, and an answer that is only a JSON call object or list (also in a code fence), as
    the engine's parser reads them but with any tool name.

    Args:
        text: The final answer.
    """
    from ollagraph.agents.engine.toolcalls import TAGGED, parse_tool_calls

    blocks = sum(text.count(open_tag) for open_tag, _ in TAGGED)
    _, calls = parse_tool_calls(text, None)
    if blocks:
        return max(blocks, len(calls))
    if calls:
        return len(calls)
    body = text.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
    if not body.startswith("{"):
        return 0
    try:
        data = json.loads(body)
    except ValueError:
        return 0
    keys = {"name", "tool", "function", "arguments"}
    return int(isinstance(data, dict) and bool(keys & set(data)))


def run_baseline(q: Question, settings: Settings, model_factory: ModelFactory) -> Run:
    """Ask one question through the baseline agent.

    Args:
        q: The question.
        settings: The run's settings (tools run under them).
        model_factory: Makes the chat model.
    """
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
    from langgraph.errors import GraphRecursionError

    from ollagraph.tools.context import using_settings

    offered = offered_tools(q.question, settings)
    run = Run()
    start = time.perf_counter()
    messages: list[Any] = []
    try:
        agent = baseline_agent(settings, offered, model_factory)
        config = {"recursion_limit": 2 * settings.max_steps + 1}
        with using_settings(settings):
            for state in agent.stream(
                {"messages": [HumanMessage(q.question)]}, config, stream_mode="values"
            ):
                messages = state["messages"]
    except GraphRecursionError:
        run.partial = True
    except Exception as exc:  # the baseline's failures are results, not crashes
        run.error = f"{type(exc).__name__}: {exc}"
    run.seconds = time.perf_counter() - start
    status = {m.tool_call_id: m.status for m in messages if isinstance(m, ToolMessage)}
    for message in messages:
        if not isinstance(message, AIMessage):
            continue
        if message.tool_calls:
            run.steps += 1
        for call in message.tool_calls:
            ok = status.get(call["id"] or "") == "success"
            run.calls.append(
                Call(
                    call["name"], call["args"], call_valid(call["name"], call["args"], offered), ok
                )
            )
        run.malformed += len(message.invalid_tool_calls)
    last = messages[-1] if messages else None
    if isinstance(last, AIMessage) and not last.tool_calls and not run.partial:
        run.answer = last.text.strip()
        run.malformed += text_calls(run.answer)
    return run


def evaluate(
    questions: Sequence[Question],
    settings: Settings,
    systems: Sequence[str] = SYSTEMS,
    model_factory: ModelFactory | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Run every question through each system and score it.

    Args:
        questions: The set.
        settings: Model, server, data and limits (as `agent ask` uses them).
        systems: Which systems to run, from `SYSTEMS`.
        model_factory: Makes the chat model (default: `ChatOllama` from the settings); tests pass
            scripted models.
        on_outcome: Called after each scored run (progress).

    Raises:
        QuestionSetError: An expectation query fails on the database.
    """
    from ollagraph.agents.models import chat_model
    from ollagraph.agents.session import Session

    expected = expected_rows(questions, settings)
    factory = model_factory or chat_model
    session = Session(settings, model_factory=model_factory)
    outcomes: list[Outcome] = []
    for q in questions:
        for system in systems:
            if system == "ollagraph":
                run = run_ollagraph(q, settings, session)
            else:
                run = run_baseline(q, settings, factory)
            outcome = score(q, system, run, expected.get(q.id), settings)
            outcomes.append(outcome)
            if on_outcome:
                on_outcome(outcome)
    return outcomes


__all__ = [
    "SYSTEMS",
    "Call",
    "Outcome",
    "Run",
    "baseline_agent",
    "evaluate",
    "expected_rows",
    "query_rows",
    "run_baseline",
    "run_ollagraph",
    "score",
]
