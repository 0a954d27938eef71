"""How a model calls tools: native tool calling, or one schema-constrained JSON decision.

- **native**: the tools go in the request's `tools`; the model answers with `tool_calls`. Used
  when the model reports the `tools` capability.
- **constrained**: no `tools` in the request; instead `format` is a JSON schema whose choices are
  exactly `{"tool": NAME, "arguments": {...that tool's arguments...}}` for each enabled tool, or
  `{"final_answer": "..."}`. The server enforces the schema while decoding (grammar-constrained),
  so even a 135M model writes a well-formed call. The reply is validated with pydantic; a
  validation error is fed back and the model tries again (bounded). On an OpenAI-compatible
  server the same schema goes as `response_format` (`openai_backend.invoke_json`); a server that
  ignores it still gets its reply validated and retried.

'auto' on an OpenAI-compatible server (`backend = "openai"`) is constrained: the OpenAI API
reports no capabilities, and guided decoding works with any model; set `tool_strategy = "native"`
for a model and server with reliable tool calls (e.g. vLLM with `--enable-auto-tool-choice`).

A model that reports `tools` but writes its call as JSON text in `content` is repaired: the JSON is
parsed into a real tool call when it names an enabled tool, and otherwise one constrained request
is made. `tools` and `format` are never sent in one request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from ollagraph.agents.config import Settings

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage, BaseMessage
    from langchain_core.tools import BaseTool

    from ollagraph.agents.model_facts import ModelInfo

Strategy = Literal["native", "constrained"]

CONSTRAINED_INSTRUCTIONS = """Reply with one JSON object and nothing else:
- to call a tool: {{"tool": "<tool name>", "arguments": {{...}}}}
- when you can answer, or no tool is needed: {{"final_answer": "<your answer>"}}
The tools and their arguments:
{tools}"""

_JSON_OBJECT = re.compile(r"\{.*\}", re.S)


def resolve_strategy(settings: Settings, model: BaseChatModel) -> Strategy:
    """Pick the strategy: the configured one, or from the model's reported capabilities.

    'auto' uses native tool calling when the server reports the `tools` capability and the model
    has at least `native_min_params` billion parameters (or an unknown size); anything smaller is
    constrained, since a 135M model that "supports tools" still writes far better calls under a
    schema. On an OpenAI-compatible server (`ChatOpenAI`) 'auto' is constrained. Other models
    (scripted test models, other chat models) use native tool calling unless the settings force
    `constrained`.

    Args:
        settings: `tool_strategy` is 'auto', 'native' or 'constrained'.
        model: The chat model of this run.
    """
    if settings.tool_strategy in ("native", "constrained"):
        return settings.tool_strategy  # type: ignore[return-value]
    from langchain_ollama import ChatOllama

    from ollagraph.agents.models import is_chat_openai

    if is_chat_openai(model):
        return "constrained"  # no capabilities reported; see the module docstring
    if not isinstance(model, ChatOllama):
        return "native"
    from ollagraph.agents.readiness import model_info

    return strategy_for(model_info(settings), settings)


def strategy_for(info: ModelInfo, settings: Settings) -> Strategy:
    """The strategy 'auto' gives a model with these facts (see `resolve_strategy`).

    Args:
        info: What the server reports about the model.
        settings: `tool_strategy` (a fixed choice wins) and `native_min_params`.
    """
    if settings.tool_strategy in ("native", "constrained"):
        return settings.tool_strategy  # type: ignore[return-value]
    if not info.supports_tools:
        return "constrained"
    params = info.parameters
    too_small = params is not None and params < settings.native_min_params * 1e9
    return "constrained" if too_small else "native"


def _clean_schema(schema: Any) -> Any:
    """Drop `title` keys (noise for the model and the grammar compiler)."""
    if isinstance(schema, dict):
        return {k: _clean_schema(v) for k, v in schema.items() if k != "title"}
    if isinstance(schema, list):
        return [_clean_schema(v) for v in schema]
    return schema


def arguments_schema(spec: BaseTool) -> dict[str, Any]:
    """The JSON schema of one tool's arguments."""
    schema = spec.tool_call_schema
    if isinstance(schema, dict):
        raw: dict[str, Any] = schema
    elif hasattr(schema, "model_json_schema"):
        raw = schema.model_json_schema()
    else:  # a pydantic v1 model
        raw = schema.schema()
    cleaned = _clean_schema(raw)
    cleaned.pop("description", None)
    cleaned.setdefault("type", "object")
    cleaned.setdefault("properties", {})
    return cleaned


def decision_schema(specs: Sequence[BaseTool]) -> dict[str, Any]:
    """The `format` schema: one choice per tool with its arguments, or a final answer.

    Args:
        specs: The enabled tools.
    """
    choices: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {"tool": {"const": spec.name}, "arguments": arguments_schema(spec)},
            "required": ["tool", "arguments"],
        }
        for spec in specs
    ]
    choices.append(
        {
            "type": "object",
            "properties": {"final_answer": {"type": "string"}},
            "required": ["final_answer"],
        }
    )
    return {"anyOf": choices}


def _tools_text(specs: Sequence[BaseTool]) -> str:
    lines = []
    for spec in specs:
        args = arguments_schema(spec)["properties"]
        shown = ", ".join(
            f'"{name}": {prop.get("type", "any")}'
            + (f" ({prop['description']})" if prop.get("description") else "")
            for name, prop in args.items()
        )
        first_line = (spec.description or "").strip().splitlines()[0:1]
        lines.append(f'- "{spec.name}": {" ".join(first_line)} Arguments: {{{shown}}}')
    return "\n".join(lines)


class DecisionError(ValueError):
    """The model's JSON does not fit the decision schema."""


def parse_decision(text: str, specs: Sequence[BaseTool]) -> AIMessage:
    """Validate a constrained reply and turn it into an AI message (a tool call or an answer).

    Args:
        text: The model's reply (JSON).
        specs: The enabled tools.

    Raises:
        DecisionError: Not JSON, an unknown tool, or arguments that fail the tool's schema.
    """
    from langchain_core.messages import AIMessage
    from pydantic import BaseModel, ValidationError

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DecisionError(f"the reply is not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise DecisionError("the reply must be a JSON object")
    if isinstance(data.get("final_answer"), str) and "tool" not in data:
        return AIMessage(content=data["final_answer"] or "DONE")
    name = data.get("tool")
    by_name = {spec.name: spec for spec in specs}
    if name not in by_name:
        raise DecisionError(
            f"`{name}` is not a tool; use one of {sorted(by_name)} or give a final_answer"
        )
    args = data.get("arguments")
    if not isinstance(args, dict):
        raise DecisionError(f"`arguments` for {name} must be an object")
    schema = by_name[name].args_schema
    try:
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            schema.model_validate(args)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise DecisionError(f"invalid arguments for {name}: {problems}") from None
    return AIMessage(
        content="", tool_calls=[{"name": name, "args": args, "id": _call_id(), "type": "tool_call"}]
    )


def _call_id() -> str:
    import uuid

    return f"call_{uuid.uuid4().hex[:12]}"


def as_plain_turns(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """Rewrite tool calls and results as plain assistant/user text.

    Chat templates of small models often have no `tool` role; in the constrained strategy the
    model sees its earlier calls as the JSON it wrote and each result as a user message.
    """
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    out: list[BaseMessage] = []
    for message in messages:
        if isinstance(message, AIMessage) and message.tool_calls:
            for call in message.tool_calls:
                text = json.dumps({"tool": call["name"], "arguments": call["args"]})
                out.append(AIMessage(content=text))
        elif isinstance(message, ToolMessage):
            out.append(HumanMessage(content=f"Result of {message.name}:\n{message.content}"))
        else:
            out.append(message)
    return out


def constrained_decision(
    model: BaseChatModel,
    messages: Sequence[BaseMessage],
    specs: Sequence[BaseTool],
    retries: int,
) -> AIMessage:
    """Ask for one decision with `format` set to the decision schema; validate; retry on errors.

    Args:
        model: The chat model (no tools bound).
        messages: The act prompt (system message first).
        specs: The enabled tools.
        retries: Extra attempts after a validation error.

    Returns:
        An AI message with one tool call, or with the final answer as content. When every
        attempt fails validation, an AI message saying so (the graph then answers from what it has).
    """
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    schema = decision_schema(specs)
    prompt = as_plain_turns(messages)
    guide = CONSTRAINED_INSTRUCTIONS.format(tools=_tools_text(specs))
    if prompt and isinstance(prompt[0], SystemMessage):
        prompt[0] = SystemMessage(f"{prompt[0].text}\n\n{guide}")
    else:
        prompt.insert(0, SystemMessage(guide))
    error = ""
    for _attempt in range(retries + 1):
        reply = _invoke_constrained(model, prompt, schema)
        text = reply.text.strip()
        try:
            return parse_decision(text, specs)
        except DecisionError as exc:
            error = str(exc)
            prompt += [
                AIMessage(content=text),
                HumanMessage(
                    f"That reply was rejected: {error}. Reply again with one JSON object that "
                    "follows the rules."
                ),
            ]
    return AIMessage(content=f"DONE (no valid tool call: {error})")


def _invoke_constrained(
    model: BaseChatModel, prompt: Sequence[BaseMessage], schema: dict[str, Any]
) -> BaseMessage:
    """One request whose reply must follow `schema`: Ollama's `format`, or `response_format`."""
    from ollagraph.agents.models import is_chat_openai

    if is_chat_openai(model):
        from ollagraph.agents.openai_backend import invoke_json

        return invoke_json(model, prompt, schema)
    return model.invoke(list(prompt), format=schema)


def repair_text_call(reply: AIMessage, specs: Sequence[BaseTool]) -> AIMessage | None:
    """Turn a tool call written as JSON text into a real tool call, when it is one.

    Recognises `{"name": ..., "arguments"|"parameters": {...}}`, `{"tool": ..., "arguments": ...}`
    and `{"function": {"name": ..., "arguments": ...}}`, also inside code fences.

    Args:
        reply: A native-strategy reply without `tool_calls`.
        specs: The enabled tools.

    Returns:
        The repaired message, or None when the content is not a recognisable call.
    """
    from langchain_core.messages import AIMessage

    match = _JSON_OBJECT.search(reply.text)
    if not match:
        return None
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("function"), dict):
        data = data["function"]
    name = data.get("name", data.get("tool"))
    args = data.get("arguments", data.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return None
    if name not in {spec.name for spec in specs} or not isinstance(args, dict):
        return None
    return AIMessage(
        content="", tool_calls=[{"name": name, "args": args, "id": _call_id(), "type": "tool_call"}]
    )


def looks_like_text_call(reply: AIMessage, specs: Sequence[BaseTool]) -> bool:
    """True when a reply without tool calls mentions a tool name inside JSON-looking text."""
    text = reply.text
    return "{" in text and any(f'"{spec.name}"' in text for spec in specs)


def decide(
    settings: Settings,
    model: BaseChatModel,
    messages: Sequence[BaseMessage],
    specs: Sequence[BaseTool],
    strategy: Strategy | None = None,
) -> AIMessage:
    """One act step: the model's next tool call(s), or its decision to answer.

    Args:
        settings: Strategy choice and retry bound.
        model: The run's chat model.
        messages: The act prompt.
        specs: The enabled tools (none: the model just replies).
        strategy: Already resolved (`resolve_strategy`); resolved here when None.
    """
    from langchain_core.messages import AIMessage

    if not specs:
        reply = model.invoke(list(messages))
        return reply if isinstance(reply, AIMessage) else AIMessage(content=reply.text)
    if (strategy or resolve_strategy(settings, model)) == "constrained":
        return constrained_decision(model, messages, specs, settings.constrained_retries)
    from ollagraph.tools.registry import openai_schemas

    reply = model.bind_tools(openai_schemas(specs)).invoke(list(messages))
    assert isinstance(reply, AIMessage)
    if reply.tool_calls or not looks_like_text_call(reply, specs):
        return reply
    repaired = repair_text_call(reply, specs)
    if repaired is not None:
        return repaired
    return constrained_decision(model, messages, specs, settings.constrained_retries)
