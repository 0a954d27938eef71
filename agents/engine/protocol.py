"""Ollama's wire format: errors, durations, options, timestamps and model details.

Everything here follows Ollama's `docs/api.md` and its server (`server/routes.go`,
`api/types.go`) so that the official clients read the engine's answers unchanged:

- Errors are `{"error": "message"}` with an HTTP status (`APIError`).
- `keep_alive` is a number of seconds or a Go duration string (`"5m"`, `"1h30m"`, `"-1"`);
  zero unloads at once and a negative value keeps the model loaded forever.
- `options` are the Modelfile parameters (`temperature`, `num_ctx`, `num_predict`, `seed`, ...),
  with Ollama's defaults (`GenerationOptions`).
- Timestamps are RFC 3339 with a zone (`created_at` in UTC, `modified_at` in local time).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

DEFAULT_KEEP_ALIVE_SECONDS = 300.0
DEFAULT_NUM_CTX = 4096
FOREVER_YEARS = 290  # what Ollama shows as `expires_at` for a model kept loaded forever

_GO_DURATION = re.compile(r"(?P<value>\d+(?:\.\d*)?|\.\d+)(?P<unit>ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


class APIError(Exception):
    """A request that fails with Ollama's error shape: `{"error": message}` and a status.

    Attributes:
        status: The HTTP status code.
        message: The text of the `error` field.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def payload(self) -> dict[str, str]:
        """The JSON body Ollama sends for this error."""
        return {"error": self.message}


def parse_keep_alive(value: Any, default: float | None = None) -> float | None:
    """Turn a `keep_alive` value into seconds.

    Args:
        value: A number of seconds, a numeric string (`"0"`, `"-1"`), a Go duration
            (`"5m"`, `"1h30m"`, `"-1s"`), or None for the default.
        default: Seconds to use when `value` is None (default: `$OLLAMA_KEEP_ALIVE`, else 5 min).

    Returns:
        Seconds to keep the model loaded after the request; 0 unloads at once; None keeps it
        loaded forever (any negative value).

    Raises:
        APIError: The value is not a duration (HTTP 400, as Ollama).
    """
    if value is None:
        if default is not None:
            return default
        env = os.environ.get("OLLAMA_KEEP_ALIVE", "")
        return parse_keep_alive(env) if env else DEFAULT_KEEP_ALIVE_SECONDS
    if isinstance(value, bool):
        raise APIError(400, f"invalid keep_alive {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_duration(value.strip())
    else:
        raise APIError(400, f"invalid keep_alive {value!r}")
    if math.isnan(seconds):
        raise APIError(400, f"invalid keep_alive {value!r}")
    return None if seconds < 0 else seconds


def _parse_duration(text: str) -> float:
    """Parse a Go duration (`1h2m3.5s`) or a bare number of seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    if not body:
        raise APIError(400, f'time: invalid duration "{text}"')
    position = 0
    total = 0.0
    for match in _GO_DURATION.finditer(body):
        if match.start() != position:
            break
        total += float(match.group("value")) * _UNIT_SECONDS[match.group("unit")]
        position = match.end()
    if position != len(body):
        raise APIError(400, f'time: invalid duration "{text}"')
    return sign * total


def default_num_ctx() -> int:
    """The context window used when a request sets no `num_ctx` (`$OLLAMA_CONTEXT_LENGTH`)."""
    raw = os.environ.get("OLLAMA_CONTEXT_LENGTH", "")
    try:
        return max(1, int(raw)) if raw else DEFAULT_NUM_CTX
    except ValueError:
        return DEFAULT_NUM_CTX


@dataclass(frozen=True, kw_only=True)
class GenerationOptions:
    """Sampling and runtime parameters of one request, with Ollama's defaults.

    Attributes:
        num_ctx: Context window in tokens.
        num_predict: Most tokens to generate (-1: until the context is full).
        temperature: Sampling temperature (0: greedy).
        top_k: Keep the k most likely tokens.
        top_p: Nucleus sampling threshold.
        min_p: Drop tokens less likely than min_p times the most likely one.
        typical_p: Locally typical sampling threshold (1: off).
        repeat_penalty: Penalty for tokens seen in the last 64.
        presence_penalty: Penalty for any token already present.
        frequency_penalty: Penalty growing with a token's count.
        mirostat: Mirostat sampling mode (0 off, 1 or 2).
        mirostat_tau: Mirostat target entropy.
        mirostat_eta: Mirostat learning rate.
        seed: Random seed (-1: a fresh one per request).
        stop: Texts that end the answer (not included in it).
        num_thread: CPU threads (0: all cores).
    """

    num_ctx: int = field(default_factory=default_num_ctx)
    num_predict: int = -1
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.0
    typical_p: float = 1.0
    repeat_penalty: float = 1.1
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    mirostat: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    seed: int = -1
    stop: tuple[str, ...] = ()
    num_thread: int = 0

    @classmethod
    def from_request(cls, options: Any) -> GenerationOptions:
        """Read a request's `options` object; unknown keys are ignored, as by Ollama.

        Args:
            options: The `options` field of the request (a JSON object or None).

        Raises:
            APIError: `options` is not an object, or a known option has the wrong type (400).
        """
        if options is None:
            return cls()
        if not isinstance(options, Mapping):
            raise APIError(400, "options must be a JSON object")
        values: dict[str, Any] = {}
        kinds = _option_kinds()
        for name, raw in options.items():
            kind = kinds.get(name)
            if kind is None or raw is None:
                continue
            values[name] = _coerce_option(name, raw, kind)
        if "num_ctx" in values and values["num_ctx"] < 1:
            values.pop("num_ctx")
        return cls(**values)


@lru_cache(maxsize=1)
def _option_kinds() -> dict[str, type]:
    """Each option's type, from its default."""
    defaults = GenerationOptions()
    return {name: type(getattr(defaults, name)) for name in GenerationOptions.__dataclass_fields__}


def _coerce_option(name: str, raw: Any, kind: type) -> Any:
    """Convert one option to its declared type, the way Ollama's `Options.FromMap` does."""
    if kind is tuple:
        if isinstance(raw, str):
            return (raw,)
        if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
            return tuple(raw)
        raise APIError(400, f"option {name!r} must be a list of strings")
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise APIError(400, f"option {name!r} must be a number, got {raw!r}")
    if kind is int:
        if isinstance(raw, float) and not raw.is_integer():
            raise APIError(400, f"option {name!r} must be a whole number, got {raw!r}")
        return int(raw)
    return float(raw)


def utc_timestamp(when: datetime | None = None) -> str:
    """Return an RFC 3339 UTC time with microseconds and a `Z`, as Ollama's `created_at`."""
    moment = (when or datetime.now(UTC)).astimezone(UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def local_timestamp(epoch_seconds: float) -> str:
    """Return an RFC 3339 local time with its offset, as Ollama's `modified_at`."""
    return datetime.fromtimestamp(epoch_seconds).astimezone().isoformat(timespec="microseconds")


def expiry_timestamp(expires_at: float | None) -> str:
    """Return `expires_at` for `/api/ps`; None (kept forever) is shown ~290 years ahead."""
    if expires_at is None:
        return (datetime.now().astimezone() + timedelta(days=365 * FOREVER_YEARS)).isoformat(
            timespec="microseconds"
        )
    return local_timestamp(expires_at)


def nanoseconds(seconds: float) -> int:
    """Convert seconds to the integer nanoseconds Ollama uses for every duration."""
    return max(0, round(seconds * 1e9))


__all__ = [
    "DEFAULT_KEEP_ALIVE_SECONDS",
    "DEFAULT_NUM_CTX",
    "APIError",
    "GenerationOptions",
    "default_num_ctx",
    "expiry_timestamp",
    "local_timestamp",
    "nanoseconds",
    "parse_keep_alive",
    "utc_timestamp",
]


def fit_chat(
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]],
    limit: int,
    *,
    render: Callable[[list[Mapping[str, Any]], Sequence[Mapping[str, Any]]], str],
    tokenize: Callable[[str], list[int]],
) -> list[int]:
    """Render and tokenize a chat, dropping the oldest turns until it fits in `limit` tokens.

    System messages and the last message are always kept, as Ollama does.

    Args:
        messages: The chat.
        tools: Tool definitions for templates that take them.
        limit: The request's context window, in tokens.
        render: The model's chat template.
        tokenize: The model's tokenizer.

    Raises:
        APIError: Even the shortest form is longer than the context window (400).
    """
    kept = list(messages)
    while True:
        tokens = tokenize(render(kept, tools))
        if len(tokens) < limit:
            return tokens
        droppable = [i for i, m in enumerate(kept[:-1]) if str(m.get("role")) != "system"]
        if not droppable:
            raise APIError(
                400,
                f"the input length ({len(tokens)} tokens) exceeds the context length "
                f"({limit} tokens)",
            )
        del kept[droppable[0]]
