"""Tool calls parsed from model text, and the engine's small wire-format helpers."""

from __future__ import annotations

import json

import pytest

from ollagraph.agents.engine.llama_backend import _split_stop, template_messages
from ollagraph.agents.engine.protocol import APIError, GenerationOptions, parse_keep_alive
from ollagraph.agents.engine.registry import is_valid_name, normalize_name, qualified_name
from ollagraph.agents.engine.server import parse_bind_address
from ollagraph.agents.engine.toolcalls import ToolCall, ToolCallStream, parse_tool_calls

TOOLS = {"sql_query", "web_search"}


# -- parse_tool_calls -------------------------------------------------------------------------


def test_hermes_tagged_call() -> None:
    text = '<tool_call>\n{"name": "sql_query", "arguments": {"query": "SELECT 1"}}\n</tool_call>'
    assert parse_tool_calls(text, TOOLS) == ("", [ToolCall("sql_query", {"query": "SELECT 1"})])


def test_several_tagged_calls_and_surrounding_text() -> None:
    text = (
        "Let me look.\n"
        '<tool_call>{"name": "sql_query", "arguments": {"query": "SELECT 1"}}</tool_call>\n'
        '<tool_call>{"name": "web_search", "arguments": {"query": "ducks"}}</tool_call>'
    )
    content, calls = parse_tool_calls(text, TOOLS)
    assert content == "Let me look."
    assert [c.name for c in calls] == ["sql_query", "web_search"]


def test_unclosed_tag_at_the_end_still_parses() -> None:
    text = '<tool_call>{"name": "sql_query", "arguments": {"query": "SELECT 2"}}'
    assert parse_tool_calls(text, TOOLS)[1] == [ToolCall("sql_query", {"query": "SELECT 2"})]


def test_bare_json_object_with_parameters_key() -> None:
    text = '{"name": "web_search", "parameters": {"query": "rubber ducks"}}'
    assert parse_tool_calls(text, TOOLS) == (
        "",
        [ToolCall("web_search", {"query": "rubber ducks"})],
    )


def test_bare_json_list_in_a_code_fence() -> None:
    text = '```json\n[{"name": "sql_query", "arguments": {"query": "SELECT 3"}}]\n```'
    assert parse_tool_calls(text, TOOLS)[1] == [ToolCall("sql_query", {"query": "SELECT 3"})]


def test_openai_style_function_wrapper_and_string_arguments() -> None:
    arguments = json.dumps({"query": "SELECT 4"})
    text = json.dumps(
        {"type": "function", "function": {"name": "sql_query", "arguments": arguments}}
    )
    assert parse_tool_calls(text, TOOLS)[1] == [ToolCall("sql_query", {"query": "SELECT 4"})]


def test_mistral_and_llama_prefixes() -> None:
    mistral = '[TOOL_CALLS] [{"name": "sql_query", "arguments": {"query": "SELECT 5"}}]'
    llama = '<|python_tag|>{"name": "web_search", "parameters": {"query": "x"}}'
    assert parse_tool_calls(mistral, TOOLS)[1] == [ToolCall("sql_query", {"query": "SELECT 5"})]
    assert parse_tool_calls(llama, TOOLS)[1] == [ToolCall("web_search", {"query": "x"})]


@pytest.mark.parametrize(
    "text",
    [
        "The ducks table has 42 rows.",
        '{"answer": 42}',  # JSON, but not a call
        '{"name": "unknown_tool", "arguments": {}}',  # a tool the request did not offer
        '{"name": "sql_query", "arguments": [1, 2]}',  # arguments must be an object
        '{"name": "sql_query", "arguments": {"query": "SELECT 1"}} and then some text',
        "<tool_call>not json</tool_call>",
    ],
)
def test_text_that_is_not_a_call_stays_content(text: str) -> None:
    assert parse_tool_calls(text, TOOLS) == (text, [])


def test_any_name_accepted_without_a_tool_list() -> None:
    assert parse_tool_calls('{"name": "f", "arguments": {}}')[1] == [ToolCall("f", {})]


def test_tool_call_to_ollama_shape() -> None:
    shape = ToolCall("sql_query", {"query": "SELECT 1"}).to_ollama(0)
    assert shape["function"] == {
        "index": 0,
        "name": "sql_query",
        "arguments": {"query": "SELECT 1"},
    }
    assert shape["id"].startswith("call_")


# -- ToolCallStream ----------------------------------------------------------------------------


def _stream(pieces: list[str], tools: set[str] | None = TOOLS) -> tuple[str, list[ToolCall]]:
    splitter = ToolCallStream(tools)
    sent = "".join(splitter.feed(piece) for piece in pieces)
    tail, calls = splitter.finish()
    return sent + tail, calls


def test_stream_plain_text_is_released_early() -> None:
    splitter = ToolCallStream(TOOLS)
    assert splitter.feed("Hello") == "Hello"
    assert splitter.feed(" there") == " there"
    assert splitter.finish() == ("", [])


def test_stream_holds_a_json_call_until_the_end() -> None:
    splitter = ToolCallStream(TOOLS)
    assert splitter.feed('{"name": "sql_query", ') == ""
    assert splitter.feed('"arguments": {"query": "SELECT 1"}}') == ""
    assert splitter.finish() == ("", [ToolCall("sql_query", {"query": "SELECT 1"})])


def test_stream_text_then_tagged_call_split_across_pieces() -> None:
    pieces = [
        "I will check. <tool",
        '_call>{"name": "web_search", ',
        '"arguments": {}}</tool_call>',
    ]
    content, calls = _stream(pieces)
    assert content == "I will check. "
    assert calls == [ToolCall("web_search", {})]


def test_stream_partial_tag_that_is_not_a_tag_is_released() -> None:
    assert _stream(["a <tool", "box> b"]) == ("a <toolbox> b", [])


def test_stream_json_that_is_not_a_call_comes_back_whole() -> None:
    assert _stream(['{"answer"', ": 42}"]) == ('{"answer": 42}', [])


# -- stop strings ------------------------------------------------------------------------------


def test_split_stop_holds_a_possible_stop_prefix() -> None:
    assert _split_stop("Hello Us", ["User:"]) == ("Hello ", "Us", False)
    assert _split_stop("Hello User: hi", ["User:"]) == ("Hello ", "", True)
    assert _split_stop("plain", []) == ("plain", "", False)


# -- messages for chat templates ---------------------------------------------------------------


def test_template_messages_convert_tool_calls_and_results() -> None:
    messages = [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}],
        },
        {"role": "tool", "content": "42", "tool_name": "f"},
    ]
    assert template_messages(messages) == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}],
        },
        {"role": "tool", "content": "42", "name": "f"},
    ]


# -- protocol helpers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, 300.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        ("300ms", 0.3),
        (0, 0.0),
        ("0", 0.0),
        (10, 10.0),
        (-1, None),
        ("-1", None),
        ("-1m", None),
    ],
)
def test_keep_alive(value: object, seconds: float | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMA_KEEP_ALIVE", raising=False)
    assert parse_keep_alive(value) == seconds


@pytest.mark.parametrize("value", ["soon", "5 minutes", "m", True, [1]])
def test_keep_alive_rejects_nonsense(value: object) -> None:
    with pytest.raises(APIError) as info:
        parse_keep_alive(value)
    assert info.value.status == 400


def test_options_defaults_and_conversion() -> None:
    options = GenerationOptions.from_request(
        {"temperature": 0, "num_predict": 5.0, "stop": "x", "mirostat_x": 1}
    )
    assert (options.temperature, options.num_predict, options.stop) == (0.0, 5, ("x",))
    assert GenerationOptions().top_p == 0.9 and GenerationOptions().repeat_penalty == 1.1
    with pytest.raises(APIError):
        GenerationOptions.from_request({"temperature": "hot"})


def test_model_names() -> None:
    assert normalize_name("SmolLM2:135M") == "smollm2:135m"
    assert normalize_name("all-minilm") == "all-minilm:latest"
    assert normalize_name("registry.ollama.ai/library/all-minilm") == "all-minilm:latest"
    assert qualified_name("smollm2:135m") == "registry.ollama.ai/library/smollm2:135m"
    assert is_valid_name("me/model:v1") and not is_valid_name("bad name!")


@pytest.mark.parametrize(
    ("value", "address"),
    [
        (None, ("127.0.0.1", 11434)),
        ("", ("127.0.0.1", 11434)),
        ("0.0.0.0", ("0.0.0.0", 11434)),
        (":5000", ("127.0.0.1", 5000)),
        ("localhost:8080", ("localhost", 8080)),
        ("http://127.0.0.1:9000", ("127.0.0.1", 9000)),
        ("https://example.com", ("example.com", 443)),
        ("[::1]:7000", ("::1", 7000)),
    ],
)
def test_bind_address(value: str | None, address: tuple[str, int]) -> None:
    assert parse_bind_address(value) == address
