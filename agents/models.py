"""Chat models for a run, and the translation of model-server failures into user messages.

Every model call goes through the Ollama HTTP API (LangChain's `ChatOllama`, built on the official
`ollama` client). `chat_model` builds one from the settings; `model_errors` wraps a call so a
refused connection, a missing model or a timeout becomes a `ModelError` that says what to do next.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeAlias

from ollagraph.agents.config import Settings
from ollagraph.agents.errors import ModelError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

ModelFactory: TypeAlias = "Callable[[Settings], BaseChatModel]"


def chat_model(settings: Settings) -> BaseChatModel:
    """Build the chat model a run talks to.

    Args:
        settings: Model name, server URL, temperature and request timeout.
    """
    from langchain_ollama import ChatOllama

    return ChatOllama(
        model=settings.model,
        base_url=settings.host,
        temperature=settings.temperature,
        keep_alive=keep_alive_value(settings.keep_alive),
        client_kwargs={"timeout": settings.request_timeout},
    )


def keep_alive_value(value: str) -> int | str:
    """Ollama's `keep_alive`: a duration string ("5m") or a number of seconds (-1 = forever).

    Args:
        value: The setting as written.
    """
    text = value.strip()
    try:
        return int(text)
    except ValueError:
        return text


@contextmanager
def model_errors(settings: Settings) -> Iterator[None]:
    """Turn failures of a model call into a `ModelError` with a next step.

    Args:
        settings: Used to name the model and the server in the message.
    """
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
