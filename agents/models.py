"""Chat models for a run, and the translation of model-server failures into user messages.

With `backend = "ollama"` (the default) every model call goes through the Ollama HTTP API
(LangChain's `ChatOllama`, built on the official `ollama` client); with `backend = "openai"` it goes
to an OpenAI-compatible server through `ChatOpenAI` (`ollagraph.agents.openai_backend`).
`chat_model` builds the right one from the settings; `model_errors` wraps a call so a refused
connection, a missing model, a refused key or a timeout becomes a `ModelError` that says what to
do next.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, TypeAlias, TypeVar

from ollagraph.agents.config import Settings
from ollagraph.agents.errors import ModelError

if TYPE_CHECKING:
    import ssl

    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage

T = TypeVar("T")

ModelFactory: TypeAlias = "Callable[[Settings], BaseChatModel]"


def chat_model(settings: Settings) -> BaseChatModel:
    """Build the chat model a run talks to: `ChatOllama`, or `ChatOpenAI` for backend 'openai'.

    Args:
        settings: Backend, model name, server URL, temperature and request timeout.
    """
    if settings.backend == "openai":
        from ollagraph.agents.openai_backend import chat_model as openai_chat_model

        return openai_chat_model(settings)
    from langchain_ollama import ChatOllama

    from ollagraph.agents.readiness import keep_alive_value

    keep_alive = keep_alive_value(settings.keep_alive)
    if isinstance(keep_alive, float):  # ChatOllama takes whole seconds or a duration string
        keep_alive = int(keep_alive) if keep_alive.is_integer() else f"{keep_alive}s"
    return ChatOllama(
        model=settings.model,
        base_url=settings.host,
        temperature=settings.temperature,
        keep_alive=keep_alive,
        client_kwargs={"timeout": settings.request_timeout, "verify": _tls_context()},
    )


@cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every model client of this process.

    The graph builds a chat model per node (each with the time left of the run's deadline as its
    timeout), and each `ChatOllama` makes a sync and an async httpx client. Without a shared
    context, each of those loads the CA bundle again: about 40 ms per model on a busy 2-core
    machine, against 0.2 ms with it.
    """
    import httpx

    return httpx.create_ssl_context()


@contextmanager
def model_errors(settings: Settings) -> Iterator[None]:
    """Turn failures of a model call into a `ModelError` with a next step.

    Args:
        settings: Used to name the model and the server in the message.
    """
    if settings.backend == "openai":
        from ollagraph.agents.openai_backend import openai_errors

        with openai_errors(settings):
            yield
        return
    import httpx
    import ollama

    host, model = settings.host, settings.model
    try:
        yield
    except ollama.ResponseError as exc:
        if exc.status_code == 404 or "not found" in str(exc.error).lower():
            raise ModelError(
                f"Model '{model}' is not available on the Ollama server at {host}.",
                hint=f"Pull it with `ollama pull {model}`, or choose another with --model.",
            ) from None
        raise ModelError(
            f"The model server at {host} returned an error for '{model}': {exc.error}"
        ) from None
    except (ConnectionError, httpx.ConnectError):
        raise ModelError(
            f"Could not reach Ollama at {host}.",
            hint="Check that Ollama is installed and running (`ollama serve`), or set "
            "OLLAMA_HOST / --host to where it runs.",
        ) from None
    except httpx.TimeoutException:
        raise ModelError(
            f"The model '{model}' at {host} did not answer within {settings.request_timeout:g} s.",
            hint="Raise request_timeout, or use a smaller model.",
        ) from None
    except httpx.HTTPError as exc:
        raise ModelError(f"Talking to the model server at {host} failed: {exc}") from None


def call_model(settings: Settings, request: Callable[[], T]) -> T:
    """Make one model request with clear errors, restarting a server we own if it died.

    Args:
        settings: Names the model and server in error messages.
        request: The request; it is made again once after a restart.

    Raises:
        ModelError: The request failed (see `model_errors`), or the server died twice.
    """
    from ollagraph.agents.daemon import with_recovery

    with model_errors(settings):
        return with_recovery(request)


def fit_request(
    settings: Settings, model: BaseChatModel, messages: Sequence[BaseMessage], tools_chars: int = 0
) -> tuple[BaseChatModel, list[BaseMessage]]:
    """Size the context window of a request so the prompt and tool schemas fit.

    For Ollama, `num_ctx` is set from the prompt size, up to `num_ctx_cap` and the model's context
    length; when even that is too small, the oldest history is dropped — never the system prompt,
    the question or the tool definitions. An OpenAI-compatible server's window is fixed by the
    server, so only the history is fitted (to its reported `max_model_len`, else `num_ctx_cap`).
    Other chat models are returned unchanged.

    Args:
        settings: `num_ctx_cap` and the server.
        model: The chat model.
        messages: The prompt.
        tools_chars: Characters of the tool schemas that go with the request.
    """
    from langchain_ollama import ChatOllama

    from ollagraph.agents.context_window import plan_context
    from ollagraph.agents.readiness import model_info

    is_ollama = isinstance(model, ChatOllama)
    if not is_ollama and not is_chat_openai(model):
        return model, list(messages)
    info = call_model(settings, lambda: model_info(settings))
    plan = plan_context(info, messages, tools_chars=tools_chars, cap=settings.num_ctx_cap)
    if is_ollama:
        model = model.model_copy(update={"num_ctx": plan.num_ctx})
    return model, list(plan.messages)


def is_chat_openai(model: object) -> bool:
    """Whether `model` is a `ChatOpenAI` (without importing langchain-openai when unused)."""
    module = sys.modules.get("langchain_openai")
    return module is not None and isinstance(model, module.ChatOpenAI)


def limit_reply(model: BaseChatModel, max_tokens: int) -> BaseChatModel:
    """Cap how many tokens a model may generate for one reply.

    `ChatOllama` gets `num_predict`; `ChatOpenAI` gets `max_tokens` in the request body (read by
    vLLM, TGI, llama.cpp and LM Studio alike).

    Args:
        model: The chat model; other kinds are returned unchanged.
        max_tokens: The cap.
    """
    from langchain_ollama import ChatOllama

    if isinstance(model, ChatOllama):
        return model.model_copy(update={"num_predict": max_tokens})
    if is_chat_openai(model):
        from ollagraph.agents.openai_backend import limit_tokens

        return limit_tokens(model, max_tokens)
    return model
