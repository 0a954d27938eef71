"""Tool calls written as text by a model, turned into Ollama's `message.tool_calls`.

A model whose chat template supports tools answers a call in text; the engine recognises the
common forms and returns them as `[{"function": {"name": ..., "arguments": {...}}}]`:

- Hermes / Qwen: `<tool_call>{"name": "f", "arguments": {...}}</tool_call>` (one or more).
- Mistral: `[TOOL_CALLS] [{"name": "f", "arguments": {...}}]`.
- Llama 3.1: `<|python_tag|>{"name": "f", "parameters": {...}}`.
- A bare JSON object (or list of objects) with `name` and `arguments` (or `parameters`),
  optionally in a ```json fence, as the whole answer.

Only names of tools the request offered are accepted; anything else stays content. While
streaming, `ToolCallStream` holds back text that may turn out to be a call, so call syntax is
never streamed as content (Ollama does the same).
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

TAGGED = (("<tool_call>", "</tool_call>"),)
PREFIXES = ("[TOOL_CALLS]", "<|python_tag|>")
_ID_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class ToolCall:
    """One call of a tool.

    Attributes:
        name: The tool (function) name.
        arguments: The arguments, a JSON object.
    """

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def to_ollama(self, index: int = 0) -> dict[str, Any]:
        """Ollama's tool call object, with an id like `call_1a2b3c4d` as recent Ollama sends."""
        suffix = "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))
        return {
            "id": f"call_{suffix}",
            "function": {"index": index, "name": self.name, "arguments": self.arguments},
        }


def _as_call(value: Any, allowed: Collection[str] | None) -> ToolCall | None:
    """Read one call from a decoded JSON value, or None if it is not a valid call."""
    if not isinstance(value, dict):
        return None
    function = value.get("function")
    body: dict[str, Any] = function if isinstance(function, dict) else value
    name = body.get("name")
    if not isinstance(name, str) or not name:
        return None
    if allowed is not None and name not in allowed:
        return None
    arguments = body.get("arguments", body.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            return None
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        return None
    return ToolCall(name=name, arguments=arguments)


def _as_calls(value: Any, allowed: Collection[str] | None) -> list[ToolCall] | None:
    """Read a call or a list of calls; None unless every item is a valid call."""
    items = value if isinstance(value, list) else [value]
    calls = [_as_call(item, allowed) for item in items]
    if not calls or any(call is None for call in calls):
        return None
    return [call for call in calls if call is not None]


def _decode_prefix(text: str) -> tuple[Any, int] | None:
    """Decode the JSON value at the start of `text`; return it and where it ended."""
    try:
        return json.JSONDecoder().raw_decode(text)
    except ValueError:
        return None


def _strip_fence(text: str) -> str:
    """Remove a surrounding Markdown code fence (```json ... ```)."""
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```") and len(stripped) >= 6:
        inner = stripped[3:-3]
        first_line, _, rest = inner.partition("\n")
        if first_line.strip().isalpha() or not first_line.strip():
            inner = rest
        return inner.strip()
    return stripped


def parse_tool_calls(
    text: str, tool_names: Collection[str] | None = None
) -> tuple[str, list[ToolCall]]:
    """Find the tool calls in a model's text.

    Args:
        text: The whole answer.
        tool_names: The tools the request offered; None accepts any name.

    Returns:
        The content left when the calls are removed (stripped), and the calls in order. With
        no recognised call, the text is returned unchanged and the list is empty.
    """
    calls: list[ToolCall] = []
    for open_tag, close_tag in TAGGED:
        if open_tag not in text:
            continue
        pieces: list[str] = []
        rest = text
        found = False
        while open_tag in rest:
            before, _, after = rest.partition(open_tag)
            body, closed, remainder = after.partition(close_tag)
            decoded = _decode_prefix(body.strip())
            parsed = _as_calls(decoded[0], tool_names) if decoded else None
            if parsed is None:
                pieces.append(before + open_tag + body + closed)
            else:
                pieces.append(before)
                calls.extend(parsed)
                found = True
            rest = remainder if closed else ""
        pieces.append(rest)
        if found:
            return "".join(pieces).strip(), calls
    stripped = text.strip()
    for prefix in PREFIXES:
        if stripped.startswith(prefix):
            body = stripped[len(prefix) :].strip()
            decoded = _decode_prefix(body)
            parsed = _as_calls(decoded[0], tool_names) if decoded else None
            if decoded and parsed is not None:
                return body[decoded[1] :].strip(), parsed
    candidate = _strip_fence(stripped)
    if candidate[:1] in ("{", "["):
        decoded = _decode_prefix(candidate)
        if decoded and not candidate[decoded[1] :].strip():
            parsed = _as_calls(decoded[0], tool_names)
            if parsed is not None:
                return "", parsed
    return text, []


class ToolCallStream:
    """Split streamed text into content to send now and tool calls found at the end.

    Feed each piece of generated text to `feed`, send what it returns as content, and call
    `finish` at the end for the held-back remainder and the calls.
    """

    def __init__(self, tool_names: Collection[str] | None = None) -> None:
        self.tool_names = tool_names
        self._held = ""
        self._mode = "start"  # start (undecided) | content | calls

    def _could_be_call(self, text: str) -> bool:
        """Whether an answer beginning with `text` may still be a tool call."""
        head = text.lstrip()
        if not head:
            return True
        markers = [tag for tag, _ in TAGGED] + list(PREFIXES) + ["```"]
        if head[0] in "{[":
            return True
        return any(head.startswith(m) or m.startswith(head) for m in markers)

    def _split_on_tag(self) -> str:
        """In content mode: release text up to a call tag, holding a possible partial tag."""
        tags = [tag for tag, _ in TAGGED] + list(PREFIXES)
        positions = [self._held.find(tag) for tag in tags if tag in self._held]
        if positions:
            cut = min(positions)
            out, self._held = self._held[:cut], self._held[cut:]
            self._mode = "calls"
            return out
        hold = 0
        for tag in tags:
            for size in range(min(len(tag) - 1, len(self._held)), 0, -1):
                if self._held.endswith(tag[:size]):
                    hold = max(hold, size)
                    break
        out = self._held[: len(self._held) - hold]
        self._held = self._held[len(out) :]
        return out

    def feed(self, text: str) -> str:
        """Add generated text; return the part that is certainly content."""
        self._held += text
        if self._mode == "calls":
            return ""
        if self._mode == "start":
            if self._could_be_call(self._held):
                return ""
            self._mode = "content"
        return self._split_on_tag()

    def finish(self) -> tuple[str, list[ToolCall]]:
        """Return the held-back content (without calls) and the tool calls."""
        held, self._held = self._held, ""
        if not held:
            return "", []
        content, calls = parse_tool_calls(held, self.tool_names)
        return (content if calls else held), calls


__all__ = ["ToolCall", "ToolCallStream", "parse_tool_calls"]
