"""A scripted chat model for testing graph logic (not a model: it replays queued replies).

`ScriptedChatModel.enqueue_text` / `enqueue_tool_call` queue what the next `invoke` returns, in the
manner of llm's `MockModel.enqueue` and LangGraph's `FakeToolCallingModel`. Every call's messages
and bound tools are recorded so tests can assert what the graph showed the model. Running out of
replies raises, so a test cannot silently pass on an unexpected extra call.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field

_ids = itertools.count(1)


class ScriptExhausted(AssertionError):
    """The graph asked the scripted model for more replies than the test queued."""


def _tool_name(tool: Any) -> str:
    """The name of a tool as `bind_tools` gets it: a tool object, a function or a schema dict."""
    if isinstance(tool, dict):
        return str(tool.get("function", tool).get("name"))
    return str(getattr(tool, "name", None) or getattr(tool, "__name__", None) or tool)


class ScriptedChatModel(BaseChatModel):
    """Replays queued AI messages; records every call."""

    replies: list[AIMessage] = Field(default_factory=list)
    calls: list[list[BaseMessage]] = Field(default_factory=list)
    bound_tools: list[list[str]] = Field(default_factory=list)
    call_kwargs: list[dict[str, Any]] = Field(default_factory=list)
    current_tools: list[str] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def enqueue_text(self, text: str) -> ScriptedChatModel:
        self.replies.append(AIMessage(content=text))
        return self

    def enqueue_tool_call(
        self, name: str, args: dict[str, Any], *more: tuple[str, dict]
    ) -> ScriptedChatModel:
        calls = [(name, args), *more]
        self.replies.append(
            AIMessage(
                content="",
                tool_calls=[{"name": n, "args": a, "id": f"call_{next(_ids)}"} for n, a in calls],
            )
        )
        return self

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:
        names = [_tool_name(t) for t in tools]
        clone = self.model_copy()
        # share the queue and the records with the original
        clone.replies, clone.calls, clone.bound_tools = self.replies, self.calls, self.bound_tools
        clone.call_kwargs = self.call_kwargs
        clone.current_tools = names
        return clone

    def _next(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        self.calls.append(list(messages))
        self.call_kwargs.append(dict(kwargs))
        self.bound_tools.append(list(self.current_tools))
        if not self.replies:
            raise ScriptExhausted(f"no scripted reply left for call {len(self.calls)}")
        return self.replies.pop(0)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._next(messages, kwargs))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        reply = self._next(messages, kwargs)
        if reply.tool_calls:
            chunk = AIMessageChunk(
                content="",
                tool_call_chunks=[
                    {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
                    for i, c in enumerate(reply.tool_calls)
                ],
            )
            yield ChatGenerationChunk(message=chunk)
            return
        text = str(reply.content)
        for i in range(0, len(text), 8):
            piece = ChatGenerationChunk(message=AIMessageChunk(content=text[i : i + 8]))
            if run_manager:
                run_manager.on_llm_new_token(piece.text, chunk=piece)
            yield piece
