"""One thread per loaded llama.cpp model runs all of that model's computation.

llama.cpp's CPU backend (as llama-cpp-python builds it, with OpenMP) keeps a team of worker
threads per thread that calls it. The HTTP server handles each connection on its own thread, and
every `ChatOllama` the graph builds opens a connection, so without this each new connection
started another team while the earlier ones stayed alive, and every token after that took about
three times as long (SmolLM2-135M on 2 cores: 11 ms -> 32 ms per token). Handing each request's
generation to the model's own thread keeps one team; a hand-off costs tens of microseconds per
token.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_DONE = object()


class ComputeThread:
    """A daemon thread that runs the jobs handed to it, one at a time, in order.

    Args:
        name: The thread's name.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            job()

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the thread and return its result (or raise its exception)."""
        if threading.current_thread() is self._thread:
            return fn()
        box: dict[str, Any] = {}
        done = threading.Event()

        def job() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:  # handed back to the caller
                box["error"] = exc
            finally:
                done.set()

        self._jobs.put(job)
        done.wait()
        if "error" in box:
            raise box["error"]
        return box["value"]

    def stream(self, make: Callable[[], Iterator[T]]) -> Iterator[T]:
        """Run the iterator `make()` on the thread, one item per request from the caller.

        The thread makes the next item only when the caller asks for it, as if the caller ran
        the iterator itself: while the caller sends a token to its client, the model does not
        compute the next one and hold every CPU (that cost the first token 1.5-2 ms on 2
        cores). Closing the returned iterator early stops the producer and waits for it, so no
        computation goes on once the caller is done.
        """
        wanted: queue.SimpleQueue[bool] = queue.SimpleQueue()
        items: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
        finished = threading.Event()

        def pump() -> None:
            source: Iterator[T] | None = None
            try:
                source = make()
                while wanted.get():
                    try:
                        item = next(source)
                    except StopIteration:
                        items.put((False, _DONE))
                        return
                    items.put((True, item))
            except BaseException as exc:  # handed to the consumer
                items.put((False, exc))
            finally:
                close = getattr(source, "close", None)
                if close is not None:
                    close()
                finished.set()

        self._jobs.put(pump)
        try:
            while True:
                wanted.put(True)
                ok, item = items.get()
                if ok:
                    yield item
                elif item is _DONE:
                    return
                else:
                    raise item
        finally:
            wanted.put(False)
            finished.wait()

    def stop(self) -> None:
        """End the thread once the jobs already handed to it are done."""
        self._jobs.put(None)


__all__ = ["ComputeThread"]
