"""The engine's tools-capable SmolLM2 chat template: when it applies and what it renders."""

from __future__ import annotations

from typing import Any

import pytest

from ollagraph.agents.engine.gguf import GGUFInfo
from ollagraph.agents.engine.llama_backend import template_messages
from ollagraph.agents.engine.templates import (
    SMOLLM2_TOOLS_TEMPLATE,
    chat_template_for,
    is_smollm2,
)
from ollagraph.agents.engine.toolcalls import ToolCall, parse_tool_calls
from tests.requirements import require_module

# The chat template in SmolLM2-135M-Instruct's GGUF (and Hugging Face checkpoint): no tools.
SMOLLM2_OWN = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TOOL = {
    "type": "function",
    "function": {
        "name": "sql_query",
        "description": "Run one read-only SQL query.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
    },
}

# Another family's metadata: never given the SmolLM2 template.
QWEN = {"general.basename": "qwen2.5", "general.name": "Qwen2.5", "tokenizer.ggml.pre": "qwen2"}


def _info(template: str = SMOLLM2_OWN, **metadata: Any) -> GGUFInfo:
    meta = {
        "general.architecture": "llama",
        "general.basename": "smollm2",
        "general.name": "Smollm2 135M 8k Lc100K Mix1 Ep2",
        "tokenizer.ggml.pre": "smollm",
        "tokenizer.chat_template": template,
        **metadata,
    }
    return GGUFInfo(version=3, metadata=meta, parameter_count=1, tensor_count=1)


def test_smollm2_is_recognised_by_its_metadata() -> None:
    assert is_smollm2(_info())
    assert is_smollm2(_info(**{"general.basename": "x", "general.name": "SmolLM2-360M-Instruct"}))
    # the SmolLM tokenizer on a llama with ChatML turns, names stripped by a re-packager
    assert is_smollm2(_info(**{"general.basename": "model", "general.name": "model"}))
    assert not is_smollm2(_info(**QWEN))


def test_the_tools_template_replaces_only_a_smollm2_template_without_tools() -> None:
    assert chat_template_for(_info()) == SMOLLM2_TOOLS_TEMPLATE
    own_with_tools = "{% if tools %}{{ tools | tojson }}{% endif %}" + SMOLLM2_OWN
    assert chat_template_for(_info(own_with_tools)) == own_with_tools  # a user's own stays
    assert chat_template_for(_info(**QWEN)) == SMOLLM2_OWN
    assert chat_template_for(_info("", **QWEN)) == ""


def _render(template: str, messages: list[dict[str, Any]], tools: Any = None) -> str:
    require_module("llama_cpp")
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    formatter = Jinja2ChatFormatter(template=template, eos_token="<|im_end|>", bos_token="")
    return str(formatter(messages=template_messages(messages), tools=tools).prompt)


@pytest.mark.parametrize(
    "messages",
    [
        [],
        [{"role": "user", "content": "hi"}],
        [{"role": "system", "content": ""}, {"role": "user", "content": "q"}],
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Count ducks."},
        ],
    ],
)
def test_without_tools_it_renders_exactly_the_models_own_template(
    messages: list[dict[str, Any]],
) -> None:
    assert _render(SMOLLM2_TOOLS_TEMPLATE, messages) == _render(SMOLLM2_OWN, messages)


def test_tools_go_into_the_system_turn_after_the_system_prompt() -> None:
    prompt = _render(
        SMOLLM2_TOOLS_TEMPLATE,
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Count ducks."}],
        [TOOL],
    )
    system, user = prompt.split("<|im_end|>\n")[:2]
    assert system.startswith("<|im_start|>system\nBe brief.\n\n")
    assert (
        '<tools>\n{"name": "sql_query", "description": "Run one read-only SQL query.", '
        '"parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}\n</tools>'
    ) in system
    assert "<tool_call>[" in system
    assert user == "<|im_start|>user\nCount ducks."
    assert prompt.endswith("<|im_start|>assistant\n")
    no_system = _render(SMOLLM2_TOOLS_TEMPLATE, [{"role": "user", "content": "hi"}], [TOOL])
    assert no_system.startswith(
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
        "\n\n"
    )


def test_tool_calls_and_results_render_and_calls_parse_back() -> None:
    calls = [
        {"function": {"name": "sql_query", "arguments": {"query": "SELECT 1"}}},
        {"function": {"name": "sql_query", "arguments": {"query": "SELECT 'a\"b'"}}},
    ]
    prompt = _render(
        SMOLLM2_TOOLS_TEMPLATE,
        [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "Checking.", "tool_calls": calls},
            {"role": "tool", "content": "| 1 |", "tool_name": "sql_query"},
            {"role": "tool", "content": '| a"b |', "tool_name": "sql_query"},
        ],
        [TOOL],
    )
    turns = prompt.split("<|im_end|>\n")[2:]
    assistant = turns[0].removeprefix("<|im_start|>assistant\n")
    assert assistant.startswith("Checking.\n<tool_call>[")
    assert parse_tool_calls(assistant, {"sql_query"}) == (
        "Checking.",
        [
            ToolCall("sql_query", {"query": "SELECT 1"}),
            ToolCall("sql_query", {"query": "SELECT 'a\"b'"}),
        ],
    )
    assert turns[1:] == [
        "<|im_start|>user\n<tool_response>\n| 1 |\n</tool_response>",
        '<|im_start|>user\n<tool_response>\n| a"b |\n</tool_response>',
        "<|im_start|>assistant\n",
    ]
