"""Sizing the context window of one request: `num_ctx`, and which history to keep.

The system prompt, the tool schemas and the history must fit in `num_ctx`. `num_ctx_for` sizes the
window for them (plus room for the reply), rounded up to a step, never above the configured cap or
the model's own context length. When even that is too small, `fit_messages` drops the oldest
history first and never the tool definitions, the system prompt or the current question.
`plan_context` does both.

Token counts are estimated as characters / 3.5 (`CHARS_PER_TOKEN`), a deliberately cautious figure
for English text and JSON with small-model tokenizers; nothing here loads a tokenizer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ollagraph.agents.readiness import ModelInfo

M = TypeVar("M")

CHARS_PER_TOKEN = 3.5
"""Characters per token used for every estimate here (cautious: real English is nearer 4)."""
MESSAGE_OVERHEAD_CHARS = 14
"""Characters counted per message for the chat template's role markers (about 4 tokens)."""
REPLY_TOKENS = 512
"""Tokens kept free for the model's reply when sizing `num_ctx`."""
MIN_NUM_CTX = 2048
NUM_CTX_STEP = 1024


def estimate_tokens(chars: int) -> int:
    """Tokens that `chars` characters take, estimated as chars / `CHARS_PER_TOKEN`, rounded up."""
    return math.ceil(max(chars, 0) / CHARS_PER_TOKEN)


def num_ctx_for(
    info: ModelInfo | None,
    *,
    prompt_chars: int,
    tools_chars: int,
    cap: int,
    reply_tokens: int = REPLY_TOKENS,
) -> int:
    """The `num_ctx` to ask for so the prompt, the tool schemas and a reply fit.

    Estimated tokens (`estimate_tokens(prompt_chars + tools_chars)`) plus `reply_tokens`,
    rounded up to a multiple of 1024, at least 2048, and never above `min(cap,
    info.context_length)` (just `cap` when the context length is unknown). When the result is the
    ceiling and still too small, drop history with `fit_messages`.

    Args:
        info: The model (for its context length), or None when unknown.
        prompt_chars: Characters of every message sent: system prompt and history
            (`messages_chars` counts them with per-message overhead).
        tools_chars: Characters of the tool schemas as sent (`tool_schema_chars`).
        cap: The largest window to ask for (`settings.num_ctx_cap`).
        reply_tokens: Tokens kept free for the answer.
    """
    needed = estimate_tokens(prompt_chars + tools_chars) + max(reply_tokens, 0)
    size = max(MIN_NUM_CTX, math.ceil(needed / NUM_CTX_STEP) * NUM_CTX_STEP)
    ceiling = cap
    if info is not None and info.context_length:
        ceiling = min(cap, info.context_length)
    return max(1, min(size, ceiling))


_ROLES = {"human": "user", "ai": "assistant", "function": "tool"}


def message_role(message: Any) -> str:
    """The role of a `(role, text)` pair or a LangChain message: system, user, assistant, tool."""
    if isinstance(message, tuple):
        role = str(message[0])
    else:
        role = str(getattr(message, "type", None) or getattr(message, "role", "user"))
    return _ROLES.get(role, role)


def message_chars(message: Any) -> int:
    """Characters a message takes in the prompt, including `MESSAGE_OVERHEAD_CHARS`.

    Counts the text (string content, or the text of content parts) and, for an assistant
    message that calls tools, its tool calls as JSON.

    Args:
        message: A `(role, text)` pair or a LangChain message.
    """
    if isinstance(message, tuple):
        content: Any = message[1] if len(message) > 1 else ""
        calls: Any = None
    else:
        content = getattr(message, "content", "")
        calls = getattr(message, "tool_calls", None)
    if isinstance(content, str):
        size = len(content)
    else:
        size = len(json.dumps(content, ensure_ascii=False, default=str))
    if calls:
        size += len(json.dumps(calls, ensure_ascii=False, default=str))
    return size + MESSAGE_OVERHEAD_CHARS


def messages_chars(messages: Sequence[Any]) -> int:
    """Sum of `message_chars` over `messages`."""
    return sum(message_chars(m) for m in messages)


def tool_schema_chars(schemas: Sequence[Any]) -> int:
    """Characters of tool schemas as they are sent (compact JSON).

    Args:
        schemas: Tool schemas as dicts (Ollama's / OpenAI's `{"type": "function", ...}`), or
            anything JSON-serialisable.
    """
    if not schemas:
        return 0
    return len(json.dumps(list(schemas), ensure_ascii=False, separators=(",", ":"), default=str))


def _units(messages: Sequence[Any], last_user: int) -> list[list[int]]:
    """Group message indexes into the pieces history is dropped in, oldest first.

    Before the latest user message a piece is a whole earlier turn (the user message and the
    replies and tool results after it); from the latest user message on, it is one assistant
    message with the tool results that answer it. System messages stand alone.
    """
    units: list[list[int]] = []
    for index, message in enumerate(messages):
        role = message_role(message)
        head = message_role(messages[units[-1][0]]) if units else ""
        if (
            not units
            or role in ("system", "user")
            or head == "system"
            or (role == "assistant" and index > last_user)
        ):
            units.append([index])
        else:
            units[-1].append(index)
    return units


def fit_messages(
    messages: Sequence[M],
    *,
    tools_chars: int,
    num_ctx: int,
    reply_tokens: int = REPLY_TOKENS,
) -> list[M]:
    """Drop the oldest history until messages, tool schemas and a reply fit in `num_ctx`.

    The contract: the tool schemas are never what gives way (their size is reserved first);
    system messages, the latest user message and the last message (with the tool call it answers)
    are always kept. Everything else goes oldest first: earlier turns whole (a question with its
    answers and tool results, so no reply is left without its question), then, within the current
    turn, each tool call together with its results (so no result is left without its call).
    Order is preserved. If even the kept messages do not fit, they are returned anyway
    (`plan_context` reports it as `fits=False`).

    Args:
        messages: `(role, text)` pairs or LangChain messages, oldest first.
        tools_chars: Characters of the tool schemas (`tool_schema_chars`).
        num_ctx: The context window the request will use.
        reply_tokens: Tokens kept free for the answer.
    """
    items = list(messages)
    budget = num_ctx - max(reply_tokens, 0)

    def fits(indexes: list[int]) -> bool:
        chars = tools_chars + sum(message_chars(items[i]) for i in indexes)
        return estimate_tokens(chars) <= budget

    keep = list(range(len(items)))
    if fits(keep):
        return items
    last_user = max((i for i, m in enumerate(items) if message_role(m) == "user"), default=-1)
    protected = {len(items) - 1, last_user}
    protected |= {i for i, m in enumerate(items) if message_role(m) == "system"}
    dropped: set[int] = set()
    for unit in _units(items, last_user):
        if any(i in protected for i in unit):
            continue
        dropped.update(unit)
        if fits([i for i in keep if i not in dropped]):
            break
    return [m for i, m in enumerate(items) if i not in dropped]


@dataclass(frozen=True)
class ContextPlan:
    """The window and messages for one request.

    Attributes:
        num_ctx: Send as `options.num_ctx`.
        messages: The messages to send (oldest history dropped if needed).
        dropped: How many messages were left out.
        fits: False when even the kept messages exceed `num_ctx` (the server will truncate).
    """

    num_ctx: int
    messages: list[Any]
    dropped: int
    fits: bool


def plan_context(
    info: ModelInfo | None,
    messages: Sequence[Any],
    *,
    tools_chars: int,
    cap: int,
    reply_tokens: int = REPLY_TOKENS,
) -> ContextPlan:
    """Size `num_ctx` for the messages and tool schemas, then drop oldest history if needed.

    Args:
        info: The model (`model_info`), or None when unknown.
        messages: `(role, text)` pairs or LangChain messages, oldest first.
        tools_chars: Characters of the tool schemas sent with the request (0 for none).
        cap: `settings.num_ctx_cap`.
        reply_tokens: Tokens kept free for the answer.
    """
    num_ctx = num_ctx_for(
        info,
        prompt_chars=messages_chars(messages),
        tools_chars=tools_chars,
        cap=cap,
        reply_tokens=reply_tokens,
    )
    kept = fit_messages(
        messages, tools_chars=tools_chars, num_ctx=num_ctx, reply_tokens=reply_tokens
    )
    total = estimate_tokens(tools_chars + messages_chars(kept)) + max(reply_tokens, 0)
    return ContextPlan(
        num_ctx=num_ctx, messages=kept, dropped=len(messages) - len(kept), fits=total <= num_ctx
    )
