"""Context sizing and history fitting (pure functions), and the small parsers of readiness."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from ollagraph.agents.context_window import (
    MESSAGE_OVERHEAD_CHARS,
    estimate_tokens,
    fit_messages,
    message_chars,
    message_role,
    messages_chars,
    num_ctx_for,
    plan_context,
    tool_schema_chars,
)
from ollagraph.agents.readiness import (
    ModelInfo,
    PullEvent,
    PullTally,
    keep_alive_value,
    normalize_model_name,
    parse_show,
)


def info(context_length: int | None = 8192) -> ModelInfo:
    return ModelInfo(
        name="m:latest",
        digest="d",
        capabilities=frozenset({"completion"}),
        context_length=context_length,
    )


# -- num_ctx ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt_chars", "tools_chars", "cap", "context_length", "expected"),
    [
        (100, 0, 8192, 8192, 2048),  # never below 2048
        (7000, 3500, 8192, 8192, 4096),  # 3000 tokens + 512 reply → next 1024
        (8960, 0, 8192, 8192, 3072),  # 2560 + 512 = 3072 exactly
        (8961, 0, 8192, 8192, 4096),  # one token more rounds up
        (100_000, 0, 8192, 32768, 8192),  # the cap wins
        (100_000, 0, 8192, 4096, 4096),  # the model's context length wins
        (100_000, 0, 16384, None, 16384),  # unknown context length: the cap
        (100, 0, 1024, 8192, 1024),  # a cap below the minimum is still a ceiling
        (100, 0, 8192, 2048, 2048),
        (20_000, 7_000, 65536, 131072, 9216),  # 7715 + 512 = 8227 → 9216
    ],
)
def test_num_ctx_for(
    prompt_chars: int, tools_chars: int, cap: int, context_length: int | None, expected: int
) -> None:
    got = num_ctx_for(
        info(context_length), prompt_chars=prompt_chars, tools_chars=tools_chars, cap=cap
    )
    assert got == expected


def test_num_ctx_without_model_info_and_with_a_bigger_reply() -> None:
    assert num_ctx_for(None, prompt_chars=100_000, tools_chars=0, cap=6000) == 6000
    assert num_ctx_for(None, prompt_chars=0, tools_chars=0, cap=8192, reply_tokens=3000) == 3072


def test_token_estimate_is_chars_over_three_and_a_half() -> None:
    assert [estimate_tokens(n) for n in (0, 1, 7, 8, 35)] == [0, 1, 2, 3, 10]


# -- fitting history -------------------------------------------------------------------------------


def chars_for_tokens(tokens: int) -> str:
    return "x" * int(tokens * 3.5 - MESSAGE_OVERHEAD_CHARS)


def test_history_that_fits_is_kept_whole() -> None:
    messages = [("system", "Be brief."), ("user", "hi"), ("assistant", "hello"), ("user", "bye")]
    assert fit_messages(messages, tools_chars=1000, num_ctx=2048) == messages


def test_the_oldest_history_goes_first() -> None:
    turn = chars_for_tokens(400)
    messages = [
        ("system", "You are helpful."),
        ("user", "q1 " + turn),
        ("assistant", "a1 " + turn),
        ("user", "q2 " + turn),
        ("assistant", "a2 " + turn),
        ("user", "q3: the question now"),
    ]
    kept = fit_messages(messages, tools_chars=0, num_ctx=2048)
    assert [m[1][:2] for m in kept] == ["Yo", "q2", "a2", "q3"]
    kept = fit_messages(messages, tools_chars=0, num_ctx=1600)
    assert [m[1][:2] for m in kept] == ["Yo", "q2", "a2", "q3"]  # whole turns go, never half
    kept = fit_messages(messages, tools_chars=0, num_ctx=1000)
    assert [m[1][:2] for m in kept] == ["Yo", "q3"]


def test_tool_schemas_are_never_what_gives_way() -> None:
    turn = chars_for_tokens(300)
    messages = [
        ("system", "sys"),
        ("user", "old " + turn),
        ("assistant", "old " + turn),
        ("user", "now"),
    ]
    schemas = [{"type": "function", "function": {"name": "f", "description": "d" * 3500}}]
    tools = tool_schema_chars(schemas)
    assert tools > 3500
    without_tools = fit_messages(messages, tools_chars=0, num_ctx=2048)
    with_tools = fit_messages(messages, tools_chars=tools, num_ctx=2048)
    assert len(without_tools) == 4
    assert [m[1] for m in with_tools] == ["sys", "now"]  # the history paid for the tools

    plan = plan_context(info(2048), messages, tools_chars=7000, cap=8192)
    assert plan.num_ctx == 2048
    assert [m[1] for m in plan.messages] == ["sys", "now"]
    assert plan.dropped == 2
    assert not plan.fits  # even system + question + tools exceed: reported, tools untouched


def test_a_tool_result_leaves_with_its_call_and_the_current_turn_stays() -> None:
    big = chars_for_tokens(500)
    messages = [
        SystemMessage("sys"),
        HumanMessage("old question"),
        AIMessage("", tool_calls=[{"name": "sql_query", "args": {"query": "SELECT 1"}, "id": "1"}]),
        ToolMessage("old rows " + big, tool_call_id="1"),
        AIMessage("old answer"),
        HumanMessage("current question"),
        AIMessage("", tool_calls=[{"name": "sql_query", "args": {"query": "SELECT 2"}, "id": "2"}]),
        ToolMessage("rows " + big, tool_call_id="2"),
        AIMessage("", tool_calls=[{"name": "sql_query", "args": {"query": "SELECT 3"}, "id": "3"}]),
        ToolMessage("more rows " + big, tool_call_id="3"),
    ]
    kept = fit_messages(messages, tools_chars=1000, num_ctx=2048)

    assert kept[0].content == "sys"
    assert "current question" in [m.content for m in kept]
    assert kept[-2].tool_calls[0]["id"] == "3" and kept[-1].tool_call_id == "3"
    ids_called = {c["id"] for m in kept if isinstance(m, AIMessage) for c in m.tool_calls}
    assert all(m.tool_call_id in ids_called for m in kept if isinstance(m, ToolMessage))
    assert "old question" not in [m.content for m in kept]
    positions = [messages.index(m) for m in kept]
    assert positions == sorted(positions)


def test_plan_context_sizes_then_fits() -> None:
    messages = [("system", "s"), ("user", chars_for_tokens(1000)), ("user", "now")]
    plan = plan_context(info(), messages, tools_chars=350, cap=8192)
    assert plan.num_ctx == 2048 and plan.dropped == 0 and plan.fits
    assert plan.messages == messages

    plan = plan_context(info(), messages, tools_chars=350, cap=1024)
    assert plan.num_ctx == 1024 and plan.dropped == 1 and plan.fits
    assert [m[1] for m in plan.messages] == ["s", "now"]


def test_message_roles_and_sizes() -> None:
    call = AIMessage("", tool_calls=[{"name": "f", "args": {"a": 1}, "id": "7"}])
    assert [message_role(m) for m in (SystemMessage("s"), HumanMessage("h"), call)] == [
        "system",
        "user",
        "assistant",
    ]
    assert message_role(ToolMessage("r", tool_call_id="7")) == "tool"
    assert message_role(("human", "x")) == "user" and message_role(("ai", "x")) == "assistant"
    assert message_chars(("user", "abcd")) == 4 + MESSAGE_OVERHEAD_CHARS
    assert message_chars(call) > MESSAGE_OVERHEAD_CHARS + len('"name": "f"')
    parts = HumanMessage([{"type": "text", "text": "hello"}])
    assert message_chars(parts) > 5 + MESSAGE_OVERHEAD_CHARS
    assert messages_chars([("user", "ab"), ("user", "cd")]) == 4 + 2 * MESSAGE_OVERHEAD_CHARS
    assert tool_schema_chars([]) == 0


# -- small parsers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("llama3.2", "llama3.2:latest"),
        ("qwen2.5:0.5b", "qwen2.5:0.5b"),
        ("library/x", "library/x:latest"),
        ("registry.local:5000/team/model", "registry.local:5000/team/model:latest"),
        (" smollm2:135m ", "smollm2:135m"),
    ],
)
def test_normalize_model_name(name: str, expected: str) -> None:
    assert normalize_model_name(name) == expected


@pytest.mark.parametrize(
    ("setting", "sent"),
    [("5m", "5m"), ("1h30m", "1h30m"), ("-1", -1), ("0", 0), ("300", 300), ("2.5", 2.5)],
)
def test_keep_alive_value(setting: str, sent: str | float) -> None:
    value = keep_alive_value(setting)
    assert value == sent and type(value) is type(sent)


def test_parse_show_fallbacks() -> None:
    bare = parse_show("m", "d", {})
    assert bare.context_length is None and bare.inferred
    assert bare.capabilities == frozenset({"completion"})
    no_arch = parse_show("m", "d", {"model_info": {"gemma3.context_length": 131072}})
    assert no_arch.context_length == 131072
    vision = parse_show(
        "m", "d", {"model_info": {"general.architecture": "mllama", "mllama.vision.block_count": 8}}
    )
    assert "vision" in vision.capabilities
    reported = parse_show("m", "d", {"capabilities": ["Completion", "EMBEDDING"]})
    assert reported.capabilities == frozenset({"completion", "embedding"}) and not reported.inferred
    assert ModelInfo.from_json(reported.to_json()) == reported


def test_pull_tally_sums_the_latest_bytes_per_digest() -> None:
    tally = PullTally()
    for event in (
        PullEvent("m", "pulling manifest"),
        PullEvent("m", "pulling a", "a", 100, None),
        PullEvent("m", "pulling a", "a", 100, 60),
        PullEvent("m", "pulling b", "b", 50, 50),
        PullEvent("m", "pulling a", "a", 100, 40),  # a resumed stream never goes backwards
        PullEvent("m", "pulling b", "b", 50, 80),  # completed is capped at total
        PullEvent("m", "verifying sha256 digest"),
    ):
        tally.update(event)
    assert (tally.completed, tally.total) == (110, 150)
