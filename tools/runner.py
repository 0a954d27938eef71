"""Run one tool call the model asked for, and always come back with text for the model.

Whatever goes wrong — an unknown or disabled tool, arguments longer than `max_tool_args`, arguments
that do not fit the schema, a tool that raises, a tool that runs past `tool_timeout` (or
`image_timeout`) — becomes an error text that names the tool, the arguments, the error and the
valid choices, and invites a retry. A result longer than `max_tool_output` is cut with a note.
Nothing here ends a run, and nothing a tool does or returns changes the run's settings: each call
gets its own copy of them. User tools (files, installed packages, functions given to
`build_graph(tools=...)`) are found through the registry and run under exactly the same rules.

Tools run on a few reused daemon worker threads (a thread is what lets the run go on when a tool
ignores its timeout); starting a new thread for every call cost more than the rest of a step.
Built-in tools marked `keeps_time_limit` (`sql_query`: its query is interrupted at the limit) run
in the calling thread instead, with their limit cut to the question's deadline: the hand-off to a
worker cost about 0.3 ms per step.
"""

from __future__ import annotations

import contextvars
import copy
import json
import math
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ollagraph.agents.config import IMAGE_TOOLS, Settings
from ollagraph.agents.deadline import current_deadline
from ollagraph.agents.errors import OllagraphError, ToolError
from ollagraph.tools.context import is_time_limited, using_settings
from ollagraph.tools.registry import lookup, tool_specs
from ollagraph.tools.untrusted import close_open_fence


@dataclass(frozen=True)
class ToolOutcome:
    """What one tool call produced.

    Attributes:
        content: The text the model reads (a result or an error explanation).
        ok: False when `content` explains an error.
        seconds: Wall time of the call.
        error: The bare error message, when the call failed.
    """

    content: str
    ok: bool
    seconds: float
    error: str | None = None


def _args_json(args: Any) -> str:
    try:
        return json.dumps(args, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(args)


_accepted: dict[int, tuple[Any, frozenset[str]]] = {}


def _parameters(spec: Any) -> frozenset[str]:
    """The argument names a tool takes (`spec.args` builds a JSON schema on every access)."""
    cached = _accepted.get(id(spec))
    if cached is None or cached[0] is not spec:
        if len(_accepted) >= 64:  # registries rebuilt by tests
            _accepted.clear()
        cached = _accepted[id(spec)] = (spec, frozenset(spec.args))
    return cached[1]


def _shorten(text: str) -> str:
    return text if len(text) <= 300 else text[:299] + "…"


class _Worker:
    """A daemon thread that runs tool calls handed to it, one at a time.

    Starting a thread per call costs more than the graph's own work for a whole step, so a worker
    that finished its call waits in `_idle` for the next one. A worker whose call outlived its
    timeout is not waited for: it goes back to `_idle` only if the call ever returns.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], None], Any]] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name="tool-worker", daemon=True)
        self.thread.start()

    def submit(self, job: Callable[[], None], done: Any) -> None:
        """Run `job` on this worker, then release the `done` lock."""
        self._jobs.put((job, done))

    def _loop(self) -> None:
        while True:
            job, done = self._jobs.get()
            job()
            with _idle_lock:  # idle again before the caller wakes, so its next call reuses us
                keep = len(_idle) < MAX_IDLE_WORKERS
                if keep:
                    _idle.append(self)
            done.release()
            if not keep:
                return


MAX_IDLE_WORKERS = 4  # workers kept for later calls (more exist only while calls overlap)
_idle: list[_Worker] = []
_idle_lock = threading.Lock()


def _forget_workers() -> None:
    """In a forked child the workers' threads do not exist: start afresh."""
    global _idle_lock
    _idle.clear()
    _idle_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_workers)


def _worker() -> _Worker:
    with _idle_lock:
        if _idle:
            return _idle.pop()
    return _Worker()


def _run_with_timeout(func: Any, kwargs: dict[str, Any], timeout: float) -> Any:
    """Call func(**kwargs) on a worker thread; raise TimeoutError if it outlives `timeout`.

    The call carries the caller's context variables (the run's settings). A tool that ignores
    the timeout keeps running in the background, but the run goes on without it.
    """
    box: dict[str, Any] = {}
    ctx = contextvars.copy_context()
    name = f"tool-{getattr(func, '__name__', '?')}"

    def job() -> None:
        thread = threading.current_thread()
        thread.name = name
        try:
            box["value"] = ctx.run(func, **kwargs)
        except BaseException as exc:  # handed back to the caller's thread
            box["error"] = exc
        finally:
            thread.name = "tool-worker"

    done = threading.Lock()
    done.acquire()
    _worker().submit(job, done)
    wait = min(max(timeout, 0.0), threading.TIMEOUT_MAX) if math.isfinite(timeout) else -1
    if not done.acquire(timeout=wait):
        raise TimeoutError
    if "error" in box:
        raise box["error"]
    return box.get("value")


_IMMUTABLE = frozenset({str, int, float, bool, type(None)})


def _private_copy(settings: Settings) -> Settings:
    """A copy of `settings` that shares nothing mutable with them (a tool may edit its copy).

    Much cheaper than `copy.deepcopy`: scalar fields and tuples of scalars are shared, only the
    rest (such as `task_overrides`) is deep-copied.
    """
    clone = object.__new__(type(settings))
    clone.__dict__.update(vars(settings))
    for name, value in vars(settings).items():
        kind = type(value)
        if kind in _IMMUTABLE:
            continue
        if kind is tuple and all(type(v) in _IMMUTABLE for v in value):
            continue
        if not value and kind in (dict, list, set):  # empty (`task_overrides` most often)
            setattr(clone, name, kind())
            continue
        setattr(clone, name, copy.deepcopy(value))
    return clone


def _callable(name: str, settings: Settings) -> Callable[..., str] | None:
    """The function behind an enabled tool; None when it is unknown or its file fails to load."""
    try:
        return lookup(name, settings)
    except OllagraphError:
        return None


def _truncate(text: str, limit: int) -> str:
    """Cap a result at `limit` characters, closing a cut untrusted block, with a note."""
    if len(text) <= limit:
        return text
    return close_open_fence(text[:limit]) + (
        f"\n… [output cut: only the first {limit} of {len(text)} characters are shown. "
        "Ask for less (a narrower query, fewer rows or results) to see the rest.]"
    )


def _choices(settings: Settings) -> str:
    """The enabled tools that can be called, for error hints."""
    return ", ".join(t for t in settings.tools if _callable(t, settings) is not None) or "none"


def _call(
    func: Callable[..., Any], kwargs: dict[str, Any], settings: Settings, limit: float, image: bool
) -> Any:
    """Run one validated call under a private copy of the settings, stopped at `limit` seconds.

    A tool marked `keeps_time_limit` runs in this thread (in a copy of its context) with its own
    time limit cut to `limit`; any other tool runs on a worker thread that is left behind when
    the limit passes.
    """
    private = _private_copy(settings)  # a tool cannot change the run's settings
    if not is_time_limited(func):
        with using_settings(private):
            return _run_with_timeout(func, kwargs, limit)
    field = "image_timeout" if image else "tool_timeout"
    if limit < getattr(private, field):
        setattr(private, field, max(limit, 0.001))
    with using_settings(private):
        return contextvars.copy_context().run(func, **kwargs)


def execute(name: str, args: Any, settings: Settings) -> ToolOutcome:
    """Validate and run one tool call under the run's settings.

    Args:
        name: The tool the model named.
        args: The arguments the model gave (a dict, ideally).
        settings: The run's settings (enabled tools, time limit, output cap, data paths).
    """
    start = time.perf_counter()

    def failed(message: str, hint: str) -> ToolOutcome:
        content = f"Error: {message} {hint}".strip()
        return ToolOutcome(content, False, time.perf_counter() - start, message)

    func = _callable(name, settings) if name in settings.tools else None
    if func is None:
        if name in settings.tools:  # a user tool whose file stopped loading during the run
            try:
                lookup(name, settings)
            except OllagraphError as exc:
                return failed(
                    f"`{name}` cannot be loaded: {exc.message}",
                    f"Use another tool from [{_choices(settings)}].",
                )
        return failed(
            f"`{name}` is not a valid tool.",
            f"Try one of [{_choices(settings)}] with its arguments.",
        )
    args_json = _args_json(args)
    size = len(args_json)
    if size > settings.max_tool_args:
        return failed(
            f"`{name}` was called with {size} characters of arguments; the limit is "
            f"{settings.max_tool_args}. The call was not run.",
            "Call it again with shorter arguments (a shorter query, fewer values).",
        )
    spec = tool_specs([name], settings)[0]
    call = f"`{name}` with arguments {_shorten(args_json)}"
    if not isinstance(args, dict):
        return failed(f"{call}: arguments must be a JSON object.", "Call it again with an object.")
    schema = spec.args_schema
    try:
        validated = schema.model_validate(args)  # type: ignore[union-attr]
    except Exception as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
            for e in getattr(exc, "errors", lambda: [])()
        ) or str(exc)
        expected = ", ".join(f"{k}: {v.get('type', 'any')}" for k, v in spec.args.items())
        return failed(
            f"{call} has invalid arguments ({problems}).",
            f"Expected arguments: {{{expected}}}. Fix them and call again.",
        )
    accepted = _parameters(spec)
    kwargs = {k: v for k, v in validated.model_dump().items() if k in accepted}
    own_limit = settings.image_timeout if name in IMAGE_TOOLS else settings.tool_timeout
    deadline = current_deadline()
    if deadline.expired():
        return failed(
            f"{call} was not run: the question's time limit ({settings.run_timeout:g} s) is used.",
            "Answer with what you have.",
        )
    limit = deadline.cap(own_limit)
    try:
        result = _call(func, kwargs, settings, limit, name in IMAGE_TOOLS)
    except TimeoutError:
        if limit < own_limit:
            return failed(
                f"{call} was stopped after {limit:.1f} s: the question's time limit is reached.",
                "Answer with what you have.",
            )
        return failed(
            f"{call} timed out after {limit:g} s.",
            "Try a simpler request, or another tool.",
        )
    except ToolError as exc:
        return failed(f"{call} failed: {exc.message}", "Fix the arguments and try again.")
    except OllagraphError as exc:
        return failed(
            f"{call} failed: {exc.message}", f"Use another tool from [{_choices(settings)}]."
        )
    except Exception as exc:
        return failed(
            f"{call} failed: {type(exc).__name__}: {exc}",
            f"Try again with other arguments, or use another tool from [{_choices(settings)}].",
        )
    content = _truncate(str(result), settings.max_tool_output)
    return ToolOutcome(content, True, time.perf_counter() - start)
