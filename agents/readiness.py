"""Getting a model ready to answer: present, described, sized and loaded.

Everything here talks to the server through the official `ollama` client, with the settings'
`request_timeout` (longer than a cold model load):

- `ensure_model` lists `/api/tags` and, when the model is missing and `settings.auto_pull` is on,
  pulls it with `POST /api/pull`, streaming `PullEvent`s to a plain callback (the CLI draws them
  with `ollagraph.agents.pull_progress`; this module never draws). Offline, a failed pull or
  `auto_pull` off end in a `ModelError` naming the model and what to do.
- `model_info` reads `/api/show` (parsed and cached per digest by
  `ollagraph.agents.model_facts`): capabilities (`completion`, `tools`, `vision`, `embedding`,
  `thinking`), context length, family, size and quantization. The digest comes from `/api/tags`,
  so a re-pulled model is read again.
- `warm_up` loads the model with an empty chat and `keep_alive`; Ollama answers such a request with
  `done_reason: "load"`, which `is_load_response` recognises: it is not an answer.

Sizing the context window of a request is `ollagraph.agents.context_window`.

With `backend = "openai"` none of the Ollama endpoints is used: `list_models`, `ensure_model` and
`model_info` read the server's `GET /models` (`ollagraph.agents.openai_backend`), nothing is ever
pulled, and `warm_up` sends nothing (the server keeps its model loaded).

A remote Ollama (`OLLAMA_HOST` naming another machine) is used as is: `auto_pull` pulls only on a
server on this machine (`daemon.may_auto_pull`). Pulling many gigabytes onto a shared GPU box is
the box's owner's call, so a model missing there is a `ModelError` that says how to pull it
explicitly (`agent models pull NAME --host URL`, which does pull there, as `ollama pull` does).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ollagraph.agents.config import Settings
from ollagraph.agents.errors import ModelError
from ollagraph.agents.model_facts import (
    ModelInfo,
    forget_in_process,
    normalize_model_name,
    parse_show,
    recall,
    remember,
)

if TYPE_CHECKING:
    import ollama


# -- names and the client -------------------------------------------------------------------------


def keep_alive_value(text: str) -> str | float:
    """Convert the `keep_alive` setting to what Ollama accepts.

    Ollama reads a JSON number as seconds (negative: forever) and a string as a Go duration
    (`"5m"`, `"1h"`, `"0"`); the string `"-1"` is rejected ("missing unit in duration"), so numbers
    are sent as numbers. Pass the result to `ChatOllama(keep_alive=...)` as well.

    Args:
        text: The setting (`"5m"`, `"-1"`, `"0"`, `"300"`).
    """
    text = str(text).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() else number


def client(settings: Settings, *, timeout: float | None = None) -> ollama.Client:
    """An `ollama.Client` for `settings.host`.

    Args:
        settings: Server URL and `request_timeout`.
        timeout: Seconds per request (default: `settings.request_timeout`, longer than a cold
            model load); for a streamed pull it bounds the wait for each event.
    """
    import ollama

    return ollama.Client(
        host=settings.host,
        timeout=settings.request_timeout if timeout is None else timeout,
    )


@contextlib.contextmanager
def _server_errors(settings: Settings, model: str) -> Iterator[None]:
    """Turn connection failures and timeouts into a `ModelError` with a next step."""
    import httpx

    host = settings.host
    try:
        yield
    except (ConnectionError, httpx.ConnectError):
        raise ModelError(
            f"Could not reach Ollama at {host}.",
            hint="Check that Ollama is running (`ollama serve` or `agent serve`), or set "
            "OLLAMA_HOST / --host to where it runs.",
        ) from None
    except httpx.TimeoutException:
        raise ModelError(
            f"The model server at {host} did not answer within {settings.request_timeout:g} s "
            f"(model '{model}').",
            hint="Raise request_timeout, or use a smaller model.",
        ) from None
    except httpx.HTTPError as exc:
        raise ModelError(f"Talking to the model server at {host} failed: {exc}.") from None


# -- presence and pulling -------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalModel:
    """A model the server has (one `/api/tags` entry).

    Attributes:
        name: Name with tag (`smollm2:135m`).
        digest: Content digest; changes when the model is pulled again and differs.
        size: Bytes on disk.
    """

    name: str
    digest: str
    size: int


@dataclass(frozen=True)
class PullEvent:
    """One progress event of `POST /api/pull`, as the server streamed it.

    Attributes:
        model: The model being pulled.
        status: The server's status line (`pulling manifest`, `pulling <digest>`,
            `verifying sha256 digest`, `success`).
        digest: The layer this event is about, when it is about one.
        total: The layer's size in bytes, when known.
        completed: Bytes of the layer downloaded so far, when known.
    """

    model: str
    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


PullCallback = Callable[[PullEvent], None]


@dataclass
class PullTally:
    """Overall pull progress: the latest byte counts per layer digest, summed.

    Feed it every `PullEvent`; `total` and `completed` are what one overall progress bar shows.
    """

    layers: dict[str, tuple[int, int]] = field(default_factory=dict)

    def update(self, event: PullEvent) -> None:
        """Record an event (events without a digest or a total change nothing)."""
        if event.digest and event.total:
            completed = min(event.completed or 0, event.total)
            previous = self.layers.get(event.digest, (0, 0))[1]
            self.layers[event.digest] = (event.total, max(previous, completed))

    @property
    def total(self) -> int:
        """Bytes of every layer seen so far."""
        return sum(total for total, _ in self.layers.values())

    @property
    def completed(self) -> int:
        """Bytes downloaded so far, over all layers."""
        return sum(done for _, done in self.layers.values())


def list_models(settings: Settings) -> list[LocalModel]:
    """The models the server has (`GET /api/tags`).

    Args:
        settings: Server URL and timeout.

    Raises:
        ModelError: The server cannot be reached or answers with an error.
    """
    import ollama

    if settings.backend == "openai":
        from ollagraph.agents.openai_backend import served_models

        return [LocalModel(name=m.id, digest="", size=0) for m in served_models(settings)]
    with _server_errors(settings, settings.model):
        try:
            listing = client(settings).list()
        except ollama.ResponseError as exc:
            raise ModelError(
                f"The model server at {settings.host} could not list its models: {exc.error}."
            ) from None
    return [
        LocalModel(name=entry.model, digest=entry.digest or "", size=int(entry.size or 0))
        for entry in listing.models
        if entry.model
    ]


def find_model(models: Sequence[LocalModel], name: str) -> LocalModel | None:
    """The entry of `models` that `name` means (`x` matches `x:latest`), or None."""
    wanted = normalize_model_name(name)
    for entry in models:
        if normalize_model_name(entry.name) == wanted:
            return entry
    return None


def _choices(models: Sequence[LocalModel]) -> str:
    if not models:
        return "the server has no models yet"
    return "choose a model you have: " + ", ".join(sorted(m.name for m in models))


_OFFLINE_WORDS = (
    "dial tcp",
    "no such host",
    "lookup ",
    "network is unreachable",
    "connection refused",
    "i/o timeout",
    "tls handshake",
    "temporary failure",
    "timeout",
    "no network",
    "offline",
)
_MISSING_WORDS = ("file does not exist", "manifest unknown", "not found")


def _pull_failed(model: str, error: str, have: Sequence[LocalModel]) -> ModelError:
    low = error.lower()
    if any(word in low for word in _OFFLINE_WORDS):
        return ModelError(
            f"No network to pull '{model}' ({error}).",
            hint=f"Pull it on a connected machine with `ollama pull {model}`, or {_choices(have)}.",
        )
    if any(word in low for word in _MISSING_WORDS):
        return ModelError(
            f"The model '{model}' could not be found to pull ({error}).",
            hint=f"Check the name (https://ollama.com/library), or {_choices(have)}.",
        )
    return ModelError(
        f"Pulling '{model}' failed: {error}.",
        hint=f"Try `ollama pull {model}` yourself, or {_choices(have)}.",
    )


def pull_model(
    settings: Settings, model: str, progress: PullCallback | None = None
) -> list[LocalModel]:
    """Pull `model` with `POST /api/pull`, streaming progress events to `progress`.

    Args:
        settings: Server URL and timeout.
        model: The model to pull.
        progress: Called with every `PullEvent`; keep it quick (it runs on the reading thread).

    Returns:
        The server's models after the pull.

    Raises:
        ModelError: No network, no such model, or the server failed the pull.
    """
    import ollama

    if settings.backend == "openai":
        raise ModelError(
            f"Models cannot be pulled on an OpenAI-compatible server ({settings.openai_base_url}).",
            hint="Start that server with the model you want (vLLM: `vllm serve MODEL`).",
        )
    name = normalize_model_name(model)
    have: list[LocalModel] = []
    last = ""
    with _server_errors(settings, name):
        try:
            for part in client(settings).pull(name, stream=True):
                last = part.status or last
                if progress is not None:
                    progress(
                        PullEvent(
                            model=name,
                            status=part.status or "",
                            digest=part.digest or None,
                            total=part.total,
                            completed=part.completed,
                        )
                    )
        except ollama.ResponseError as exc:
            with contextlib.suppress(ModelError):
                have = list_models(settings)
            raise _pull_failed(name, str(exc.error), have) from None
    have = list_models(settings)
    if last != "success" or find_model(have, name) is None:
        raise _pull_failed(name, f"the server ended the pull with status {last!r}", have)
    return have


def ensure_model(
    settings: Settings,
    progress: PullCallback | None = None,
    *,
    model: str | None = None,
    asked: bool = False,
) -> LocalModel:
    """Make sure the server has the model, pulling it when allowed.

    Args:
        settings: `model`, `auto_pull`, server URL and timeout.
        progress: Receives `PullEvent`s while a pull runs (nothing is called when the model is
            present).
        model: Another model than `settings.model` (e.g. an Ollama embedding model).
        asked: The user asked for this pull (`agent models pull`): a remote Ollama is pulled
            onto too. Otherwise only a server on this machine is (`daemon.may_auto_pull`).

    Returns:
        The server's entry for the model (name, digest, size).

    Raises:
        ModelError: The model is missing and `auto_pull` is off or the server is remote (or an
            OpenAI-compatible server, which is never pulled onto), or the pull failed (offline,
            no such model), or the server cannot be reached.
    """
    name = model or settings.model
    if settings.backend == "openai":
        from ollagraph.agents.openai_backend import ensure_served

        return LocalModel(name=ensure_served(settings, model=name).id, digest="", size=0)
    have = list_models(settings)
    found = find_model(have, name)
    if found is not None:
        return found
    from ollagraph.agents.daemon import may_auto_pull

    if settings.auto_pull and not asked and not may_auto_pull(settings):
        raise ModelError(
            f"Model '{name}' is not on the remote Ollama server at {settings.host}, and "
            "ollagraph does not pull onto a remote server by itself.",
            hint=f"Pull it there with `agent models pull {name} --host {settings.host}` (or "
            f"`ollama pull {name}` on that machine), or {_choices(have)}.",
        )
    if not settings.auto_pull:
        raise ModelError(
            f"Model '{name}' is not available on the Ollama server at {settings.host}.",
            hint=f"Pull it with `ollama pull {name}` (or set auto_pull = true), or "
            f"{_choices(have)}.",
        )
    have = pull_model(settings, name, progress)
    found = find_model(have, name)
    assert found is not None  # pull_model checked it
    return found


# -- model facts ----------------------------------------------------------------------------------


def clear_model_info_cache() -> None:
    """Forget the in-process `model_info` caches (the disk cache stays)."""
    forget_in_process()
    if "ollagraph.agents.openai_backend" in sys.modules:
        sys.modules["ollagraph.agents.openai_backend"].forget()


def model_info(settings: Settings, *, model: str | None = None) -> ModelInfo:
    """Capabilities and context length of the model, cached per digest.

    Asks `/api/tags` for the digest every time (cheap), then answers from the in-process cache,
    else from the disk cache, else from `/api/show` (and fills both caches).

    Args:
        settings: `model`, server URL and timeout.
        model: Another model than `settings.model`.

    Raises:
        ModelError: The model is not on the server (pull it first: `ensure_model`), or the
            server cannot be reached.
    """
    import ollama

    if settings.backend == "openai":
        from ollagraph.agents.openai_backend import served_model_info

        return served_model_info(settings, model=model)
    name = normalize_model_name(model or settings.model)
    have = list_models(settings)
    entry = find_model(have, name)
    if entry is None:
        raise ModelError(
            f"Model '{name}' is not available on the Ollama server at {settings.host}.",
            hint=f"Pull it with `ollama pull {name}`, or {_choices(have)}.",
        )
    key = entry.digest
    known = recall(key, name) if key else None
    if known is not None:
        return known
    with _server_errors(settings, name):
        try:
            show = client(settings).show(entry.name)
        except ollama.ResponseError as exc:
            raise ModelError(
                f"The model server at {settings.host} could not describe '{name}': {exc.error}."
            ) from None
    info = parse_show(name, key, show.model_dump(by_alias=True, exclude_none=True))
    if key:
        remember(info)
    return info


# -- loading --------------------------------------------------------------------------------------


def _field(chunk: Any, name: str) -> Any:
    if isinstance(chunk, Mapping):
        return chunk.get(name)
    return getattr(chunk, name, None)


def is_load_response(chunk: Any) -> bool:
    """Whether a chat response only reports that the model was loaded.

    Ollama answers a chat with no messages by loading the model and sending one object with
    `done: true` and `done_reason: "load"` and an empty message. It ends the request but is not an
    answer: a reader waiting for the model's reply must not treat it as one (nor as an empty
    reply).

    Args:
        chunk: A response body (dict) or an `ollama.ChatResponse`.
    """
    return _field(chunk, "done_reason") == "load"


def is_final_response(chunk: Any) -> bool:
    """Whether a chat chunk ends a real answer: `done` and not a load report."""
    return bool(_field(chunk, "done")) and not is_load_response(chunk)


def warm_up(settings: Settings, *, model: str | None = None) -> float:
    """Load the model into memory now, with `keep_alive` from the settings.

    Sends `POST /api/chat` with no messages; the server loads the model and answers
    `done_reason: "load"`. With `keep_alive` 0 nothing is sent (it would unload the model), nor
    with backend 'openai' (such a server keeps its model loaded).

    Args:
        settings: `model`, `keep_alive`, server URL and `request_timeout`.
        model: Another model than `settings.model`.

    Returns:
        Seconds the load took (0.0 when skipped).

    Raises:
        ModelError: The model is missing, or the server failed or timed out.
    """
    import ollama

    name = model or settings.model
    keep_alive = keep_alive_value(settings.keep_alive)
    if keep_alive == 0 or keep_alive == "0" or settings.backend == "openai":
        return 0.0
    started = time.monotonic()
    with _server_errors(settings, name):
        try:
            client(settings).chat(model=name, messages=[], keep_alive=keep_alive)
        except ollama.ResponseError as exc:
            if exc.status_code == 404:
                raise ModelError(
                    f"Model '{name}' is not available on the Ollama server at {settings.host}.",
                    hint=f"Pull it with `ollama pull {name}`, or choose another with --model.",
                ) from None
            raise ModelError(
                f"The model server at {settings.host} could not load '{name}': {exc.error}."
            ) from None
    return time.monotonic() - started


__all__ = [
    "LocalModel",
    "ModelInfo",
    "PullCallback",
    "PullEvent",
    "PullTally",
    "clear_model_info_cache",
    "client",
    "ensure_model",
    "find_model",
    "is_final_response",
    "is_load_response",
    "keep_alive_value",
    "list_models",
    "model_info",
    "normalize_model_name",
    "parse_show",
    "pull_model",
    "warm_up",
]
