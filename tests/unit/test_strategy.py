"""Tool-calling strategies: native, constrained JSON decisions, and repair of text calls.

Graph runs use the scripted chat model (it replays queued replies); tools and data are real.
"""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from ollagraph.agents.config import Settings
from ollagraph.agents.strategy import (
    DecisionError,
    as_plain_turns,
    constrained_decision,
    decide,
    decision_schema,
    parse_decision,
    repair_text_call,
)
from ollagraph.graphs.agent import build_graph
from ollagraph.tools.registry import tool_specs
from tests.scripted_model import ScriptedChatModel

SPECS = tool_specs(["sql_query", "web_search"])
PROMPT = [SystemMessage("You help."), HumanMessage("How many ducks are in the ducks table?")]


def test_decision_schema_offers_each_tool_with_its_arguments_or_a_final_answer() -> None:
    schema = decision_schema(SPECS)
    sql, web, final = schema["anyOf"]
    assert sql["properties"]["tool"] == {"const": "sql_query"}
    assert sql["properties"]["arguments"]["required"] == ["query"]
    assert sql["properties"]["arguments"]["properties"]["query"]["type"] == "string"
    assert web["properties"]["arguments"]["required"] == ["query"]
    assert "max_results" in web["properties"]["arguments"]["properties"]
    assert final == {
        "type": "object",
        "properties": {"final_answer": {"type": "string"}},
        "required": ["final_answer"],
    }
    assert "title" not in json.dumps(schema)


def test_parse_decision_accepts_calls_and_answers() -> None:
    call = parse_decision('{"tool": "sql_query", "arguments": {"query": "SELECT 1"}}', SPECS)
    assert call.tool_calls[0]["name"] == "sql_query"
    assert call.tool_calls[0]["args"] == {"query": "SELECT 1"}
    assert call.tool_calls[0]["id"].startswith("call_")
    answer = parse_decision('{"final_answer": "60 ducks"}', SPECS)
    assert answer.content == "60 ducks" and not answer.tool_calls


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"tool": "sqll", "arguments": {}}', "`sqll` is not a tool"),
        ('{"tool": "sql_query", "arguments": "SELECT 1"}', "must be an object"),
        ('{"tool": "sql_query", "arguments": {"sql": "SELECT 1"}}', "query: Field required"),
    ],
)
def test_parse_decision_rejects_what_does_not_fit(text: str, message: str) -> None:
    with pytest.raises(DecisionError, match=message):
        parse_decision(text, SPECS)


def test_constrained_decision_sends_the_schema_and_retries_with_the_error() -> None:
    model = (
        ScriptedChatModel()
        .enqueue_text('{"tool": "sql_query", "arguments": {"sql": "SELECT 1"}}')
        .enqueue_text('{"tool": "sql_query", "arguments": {"query": "SELECT COUNT(*) FROM ducks"}}')
    )
    reply = constrained_decision(model, PROMPT, SPECS, retries=2)
    assert reply.tool_calls[0]["args"] == {"query": "SELECT COUNT(*) FROM ducks"}
    assert all(kw["format"] == decision_schema(SPECS) for kw in model.call_kwargs)
    assert model.bound_tools == [[], []]  # never tools and format together
    retry_prompt = model.calls[1]
    assert "query: Field required" in retry_prompt[-1].content
    assert '"final_answer"' in retry_prompt[0].content  # the rules are in the system prompt


def test_constrained_decision_gives_up_after_the_retries() -> None:
    model = ScriptedChatModel().enqueue_text("{}").enqueue_text("nope")
    reply = constrained_decision(model, PROMPT, SPECS, retries=1)
    assert not reply.tool_calls and reply.content.startswith("DONE (no valid tool call")
    assert len(model.calls) == 2


def test_plain_turns_rewrite_tool_messages_for_templates_without_a_tool_role() -> None:
    call = AIMessage(
        content="", tool_calls=[{"name": "sql_query", "args": {"query": "q"}, "id": "c1"}]
    )
    turns = as_plain_turns(
        [HumanMessage("hi"), call, ToolMessage("| 1 |", tool_call_id="c1", name="sql_query")]
    )
    assert [type(m).__name__ for m in turns] == ["HumanMessage", "AIMessage", "HumanMessage"]
    assert json.loads(turns[1].content) == {"tool": "sql_query", "arguments": {"query": "q"}}
    assert turns[2].content == "Result of sql_query:\n| 1 |"


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "sql_query", "arguments": {"query": "SELECT 1"}}',
        'Sure!\n```json\n{"name": "sql_query", "parameters": {"query": "SELECT 1"}}\n```',
        '{"function": {"name": "sql_query", "arguments": "{\\"query\\": \\"SELECT 1\\"}"}}',
        '{"tool": "sql_query", "arguments": {"query": "SELECT 1"}}',
    ],
)
def test_text_calls_are_repaired(text: str) -> None:
    repaired = repair_text_call(AIMessage(content=text), SPECS)
    assert repaired is not None
    assert repaired.tool_calls[0]["name"] == "sql_query"
    assert repaired.tool_calls[0]["args"] == {"query": "SELECT 1"}


def test_text_that_is_not_a_call_is_left_alone() -> None:
    assert repair_text_call(AIMessage(content="There are 60 ducks."), SPECS) is None
    assert (
        repair_text_call(AIMessage(content='{"name": "teleport", "arguments": {}}'), SPECS) is None
    )


def test_native_reply_with_a_text_call_is_repaired_without_another_request() -> None:
    model = ScriptedChatModel().enqueue_text(
        '{"name": "sql_query", "arguments": {"query": "SELECT 1"}}'
    )
    reply = decide(Settings(tool_strategy="native"), model, PROMPT, SPECS)
    assert reply.tool_calls[0]["name"] == "sql_query"
    assert len(model.calls) == 1 and model.bound_tools == [["sql_query", "web_search"]]


def test_native_reply_with_a_broken_text_call_falls_back_to_one_constrained_request() -> None:
    model = (
        ScriptedChatModel()
        .enqueue_text('{"name": "sql_query", "arguments": {"query": SELECT 1}}')  # not JSON
        .enqueue_text('{"tool": "sql_query", "arguments": {"query": "SELECT 1"}}')
    )
    reply = decide(Settings(tool_strategy="native"), model, PROMPT, SPECS)
    assert reply.tool_calls[0]["args"] == {"query": "SELECT 1"}
    assert model.bound_tools == [["sql_query", "web_search"], []]
    assert "format" not in model.call_kwargs[0] and "format" in model.call_kwargs[1]


def test_a_whole_run_with_the_constrained_strategy_on_the_sample_database() -> None:
    model = (
        ScriptedChatModel()
        .enqueue_text("1. sql_query\n2. answer")
        .enqueue_text(
            '{"tool": "sql_query", "arguments": {"query": "SELECT COUNT(*) AS n FROM ducks"}}'
        )
        .enqueue_text('{"final_answer": "60"}')
        .enqueue_text("There are 60 ducks.")
    )
    state = build_graph(lambda _s: model).invoke(
        {"messages": [HumanMessage("How many ducks are in the ducks table?")]},
        context=Settings(tools=("sql_query",), tool_strategy="constrained"),
    )
    [result] = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    assert "| 60 |" in result.content
    assert state["messages"][-1].content == "There are 60 ducks."
    second_act = model.calls[2]
    assert second_act[-1].content.startswith("Result of sql_query:")  # no tool role needed
    assert all(not tools for tools in model.bound_tools)
