"""Model servers that speak the OpenAI chat API (vLLM, TGI, llama.cpp server, LM Studio).

With `backend = "openai"` a run talks to `openai_base_url` (e.g. `http://gpu-box:8000/v1`) through
LangChain's `ChatOpenAI`. Such a server is used as is: nothing here starts, stops or pulls.

- `served_models` reads `GET {base}/models`; `ensure_served` checks that it lists the model, and
  otherwise raises one `ModelError` saying what answered, which models it has and what to do.
- `served_model_info` gives the graph the facts it needs without any Ollama endpoint: no reported
  capabilities (so `tool_strategy` 'auto' means constrained JSON), and a context length from the
  listing's `max_model_len` (vLLM) or `context_length` when reported, else unknown (the context
  plan then uses `num_ctx_cap`).
- `invoke_json` makes one schema-constrained request. It sends the standard
  `response_format: {"type": "json_schema", ...}` (vLLM, llama.cpp's `llama-server`, LM Studio);
  a server that rejects that shape gets `{"type": "json_object", "schema": ...}`
  (llama-cpp-python's server), and one that rejects both gets a plain request (the reply is still
  validated, and retried by the caller). What worked is remembered per server and model.
- `openai_errors` turns failures of a call (refused connection, 401/403, unknown model, timeout,
  a rejected request) into a `ModelError` with a next step.

Reply caps are sent as `max_tokens` (`limit_tokens`), which every OpenAI-compatible server reads;
langchain-openai would send only `max_completion_tokens`, which some servers ignore.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ollagraph.agents.config import Settings
from ollagraph.agents.errors import ModelError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage

    from ollagraph.agents.model_facts import ModelInfo

PLACEHOLDER_KEY = "not-needed"
"""Sent as the API key when none is configured (the OpenAI client insists on one)."""
LIST_TIMEOUT = 10.0
"""Seconds `served_models` waits for `GET /models`."""

_SERVER_HINT = (
    "Check that the server runs and listens there (vLLM: `vllm serve MODEL --host 0.0.0.0`; "
    "llama.cpp: `llama-server -m FILE --host 0.0.0.0`), or fix openai_base_url / "
    "OLLAGRAPH_OPENAI_BASE_URL."
)
_KEY_HINT = "Set openai_api_key (or OPENAI_API_KEY) to a key this server accepts."


def base_url(settings: Settings) -> str:
    """The server's API base URL without a trailing slash (`http://gpu-box:8000/v1`).

    Raises:
        ModelError: `backend` is 'openai' but no base URL is set.
    """
    url = settings.openai_base_url.strip().rstrip("/")
    if not url:
        raise ModelError(
            "backend = 'openai' needs the server's URL.",
            hint="Set openai_base_url (or OLLAGRAPH_OPENAI_BASE_URL), e.g. http://gpu-box:8000/v1.",
        )
    return url


def api_key(settings: Settings) -> str:
    """The API key: `openai_api_key`, else $OPENAI_API_KEY, else a placeholder."""
    return settings.openai_api_key or os.environ.get("OPENAI_API_KEY", "") or PLACEHOLDER_KEY


def chat_model(settings: Settings) -> BaseChatModel:
    """A `ChatOpenAI` for the configured server and model.

    Args:
        settings: `openai_base_url`, `openai_api_key`, `model`, `temperature`,
            `request_timeout`.
    """
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=settings.model,
        base_url=base_url(settings),
        api_key=api_key(settings),  # type: ignore[arg-type]
        temperature=settings.temperature,
        timeout=settings.request_timeout,
        max_retries=0,  # as with Ollama: a retry would outlast the run's deadline
    )


def limit_tokens(model: BaseChatModel, max_tokens: int) -> BaseChatModel:
    """Cap the reply of a `ChatOpenAI` at `max_tokens` (sent as the body's `max_tokens`)."""
    extra = dict(getattr(model, "extra_body", None) or {})
    extra["max_tokens"] = max_tokens
    return model.model_copy(update={"extra_body": extra})


# -- what the server serves -----------------------------------------------------------------------


@dataclass(frozen=True)
class ServedModel:
    """One entry of `GET /models`.

    Attributes:
        id: The name to request it by.
        context_length: `max_model_len` (vLLM) or `context_length`, when the server reports one.
    """

    id: str
    context_length: int | None = None


def _context_of(entry: dict[str, Any]) -> int | None:
    for key in ("max_model_len", "context_length", "max_context_length"):
        value = entry.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def served_models(settings: Settings) -> list[ServedModel]:
    """The models the server lists at `GET {base}/models`.

    Raises:
        ModelError: Nothing answers, the key is refused, or what answers is not an
            OpenAI-compatible API (no JSON `data` list).
    """
    import httpx

    base = base_url(settings)
    url = f"{base}/models"
    headers = {"Authorization": f"Bearer {api_key(settings)}"}
    wait = min(LIST_TIMEOUT, settings.request_timeout)
    try:
        response = httpx.get(url, headers=headers, timeout=wait)
    except httpx.TimeoutException:
        raise ModelError(
            f"The OpenAI-compatible server at {base} did not list its models within {wait:g} s.",
            hint=_SERVER_HINT,
        ) from None
    except httpx.HTTPError as exc:
        raise ModelError(
            f"Could not reach the OpenAI-compatible server at {base} ({type(exc).__name__}).",
            hint=_SERVER_HINT,
        ) from None
    if response.status_code in (401, 403):
        raise ModelError(
            f"The server at {base} refused the API key (GET /models answered HTTP "
            f"{response.status_code}).",
            hint=_KEY_HINT,
        )
    if response.status_code == 404:
        raise ModelError(
            f"Something answers at {base}, but GET {url} is not found (HTTP 404).",
            hint="openai_base_url must be the API's base, which usually ends in /v1 "
            "(http://gpu-box:8000/v1).",
        )
    if response.status_code != 200:
        raise ModelError(
            f"The server at {base} answered GET /models with HTTP {response.status_code}: "
            f"{response.text[:200]}",
            hint=_SERVER_HINT,
        )
    try:
        payload = response.json()
    except ValueError:
        payload = None
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        raise ModelError(
            f"Something answers at {base}, but it is not an OpenAI-compatible API "
            "(GET /models has no `data` list).",
            hint="Point openai_base_url at the server's OpenAI route (usually ending in /v1).",
        )
    return [
        ServedModel(id=str(entry["id"]), context_length=_context_of(entry))
        for entry in data
        if isinstance(entry, dict) and entry.get("id")
    ]


def ensure_served(settings: Settings, *, model: str | None = None) -> ServedModel:
    """Check that the server lists the model (nothing is ever pulled or started).

    Args:
        settings: The server, key and `model`.
        model: Another model than `settings.model`.

    Raises:
        ModelError: The server cannot be listed (see `served_models`) or lacks the model; the
            message names the models it has.
    """
    name = model or settings.model
    have = served_models(settings)
    for entry in have:
        if entry.id == name:
            return entry
    base = base_url(settings)
    names = ", ".join(sorted(entry.id for entry in have)) or "none"
    raise ModelError(
        f"The OpenAI-compatible server at {base} does not serve '{name}'; it serves: {names}.",
        hint="Choose one of those with --model (or OLLAGRAPH_MODEL), or start the server with "
        "that model (vLLM: --served-model-name; llama-cpp-python: --model_alias). ollagraph "
        "never pulls models on an OpenAI-compatible server.",
    )


_facts: dict[tuple[str, str], ModelInfo] = {}
_lock = threading.Lock()


def served_model_info(settings: Settings, *, model: str | None = None) -> ModelInfo:
    """What the graph needs to know about the model, from `GET /models` (cached per process).

    No capabilities are reported (the OpenAI API has none), so `tool_strategy` 'auto' is
    constrained; the context length is the server's `max_model_len` when it reports one.

    Raises:
        ModelError: See `ensure_served`.
    """
    from ollagraph.agents.model_facts import ModelInfo

    name = model or settings.model
    key = (base_url(settings), name)
    with _lock:
        known = _facts.get(key)
    if known is not None:
        return known
    entry = ensure_served(settings, model=name)
    info = ModelInfo(
        name=name, digest="", capabilities=frozenset(), context_length=entry.context_length
    )
    with _lock:
        _facts[key] = info
    return info


def forget() -> None:
    """Forget cached model facts and response formats (tests, a changed server)."""
    with _lock:
        _facts.clear()
        _formats.clear()


# -- constrained requests -------------------------------------------------------------------------


def response_formats(schema: dict[str, Any]) -> list[dict[str, Any] | None]:
    """The `response_format` shapes to try for a JSON schema, in order (None: no format)."""
    return [
        {"type": "json_schema", "json_schema": {"name": "decision", "schema": schema}},
        {"type": "json_object", "schema": schema},
        None,
    ]


_formats: dict[tuple[str, str], int] = {}


def _rejects_format(exc: Exception) -> bool:
    """Whether an error answer complains about `response_format`.

    vLLM answers 400, FastAPI-based servers 422, and llama-cpp-python's server 500 (its
    validation errors all become 500s), so any status counts when the message names the field.
    """
    import openai

    if not isinstance(exc, openai.APIStatusError) or exc.status_code not in (400, 422, 500):
        return False
    text = f"{exc.message} {exc.body}".lower()
    return any(word in text for word in ("response_format", "json_schema", "json_object"))


def invoke_json(
    model: BaseChatModel, messages: Sequence[BaseMessage], schema: dict[str, Any]
) -> BaseMessage:
    """Ask a `ChatOpenAI` for a reply constrained to `schema`, in a shape the server accepts.

    Args:
        model: A `ChatOpenAI`.
        messages: The prompt.
        schema: The JSON schema of the reply.
    """
    key = (str(getattr(model, "openai_api_base", "")), str(getattr(model, "model_name", "")))
    with _lock:
        start = _formats.get(key, 0)
    shapes = response_formats(schema)
    extra = dict(getattr(model, "extra_body", None) or {})
    for index in range(start, len(shapes)):
        shape = shapes[index]
        body = {**extra, "response_format": shape} if shape is not None else extra
        try:
            reply = model.invoke(list(messages), extra_body=body)
        except Exception as exc:
            if index + 1 < len(shapes) and _rejects_format(exc):
                continue
            raise
        with _lock:
            _formats[key] = index
        return reply
    raise AssertionError("unreachable: the last shape has no response_format")


# -- errors ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def openai_errors(settings: Settings) -> Iterator[None]:
    """Turn failures of a call to an OpenAI-compatible server into a `ModelError`."""
    import openai

    base = settings.openai_base_url.rstrip("/")
    model = settings.model
    try:
        yield
    except openai.APITimeoutError:
        raise ModelError(
            f"The model '{model}' at {base} did not answer within {settings.request_timeout:g} s.",
            hint="Raise request_timeout, or use a smaller model.",
        ) from None
    except openai.APIConnectionError:
        raise ModelError(
            f"Could not reach the OpenAI-compatible server at {base}.", hint=_SERVER_HINT
        ) from None
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        raise ModelError(
            f"The server at {base} refused the API key (HTTP {exc.status_code}).", hint=_KEY_HINT
        ) from None
    except openai.NotFoundError as exc:
        raise ModelError(
            f"The server at {base} has no model '{model}' (HTTP 404: {exc.message}).",
            hint="`agent models list` shows what it serves; choose one with --model.",
        ) from None
    except openai.RateLimitError:
        raise ModelError(
            f"The server at {base} is busy (HTTP 429) for '{model}'.",
            hint="Try again shortly, or lower the number of concurrent runs.",
        ) from None
    except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
        raise ModelError(
            f"The server at {base} rejected the request for '{model}' "
            f"(HTTP {exc.status_code}): {exc.message}",
            hint="A prompt longer than the model's context is the usual cause: lower "
            "num_ctx_cap or start the server with a longer context (vLLM: --max-model-len).",
        ) from None
    except openai.APIStatusError as exc:
        raise ModelError(
            f"The server at {base} returned HTTP {exc.status_code} for '{model}': {exc.message}"
        ) from None


__all__ = [
    "ServedModel",
    "api_key",
    "base_url",
    "chat_model",
    "ensure_served",
    "forget",
    "invoke_json",
    "limit_tokens",
    "openai_errors",
    "response_formats",
    "served_model_info",
    "served_models",
]
