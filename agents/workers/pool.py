"""In-process torch workers: one per (task, model, placement), micro-batching a request queue.

A `Worker` owns one `BatchRunner` (a task's model code). It loads the model lazily on the first
request, keeps it resident, and unloads it after `idle_timeout` seconds without requests (freeing
GPU memory). Requests wait in a queue; the worker thread takes the first one, gathers whatever
else arrived within `batch_window` seconds (up to `batch_size`), splits the gathered requests by
the runner's `batch_key` (requests that cannot share a forward pass, e.g. different image sizes)
and runs each group as one batch. Callers get `concurrent.futures.Future`s, so any number of
threads share one loaded model safely: only the worker thread touches it.

A batch that raises is retried one request at a time, so one bad request does not fail the
others. `WorkerPool` hands out one worker per key and shuts them all down at exit.
"""

from __future__ import annotations

import atexit
import gc
import queue
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")
In_contra = TypeVar("In_contra", contravariant=True)
Out_co = TypeVar("Out_co", covariant=True)


class BatchRunner(Protocol[In_contra, Out_co]):
    """A task's model code, driven by a worker thread (never by two threads at once)."""

    def load(self) -> None:
        """Load the model onto its device (called before the first batch, and after unload)."""

    def run_batch(self, items: Sequence[In_contra]) -> Sequence[Out_co]:
        """Run one forward pass over `items` and return one result per item, in order."""

    def unload(self) -> None:
        """Drop the model so its memory can be freed."""


@dataclass(frozen=True)
class WorkerKey:
    """What makes two workers different: the task, the model and where/how it runs."""

    task: str
    model: str
    placement: str


@dataclass
class WorkerStats:
    """Counters a worker keeps (read them for tests, `-v` output and benchmarks).

    Attributes:
        requests: Requests received.
        batches: Forward passes run (`run_batch` calls that returned).
        loads: Times the model was loaded.
        unloads: Times the model was unloaded (idle or shutdown).
        load_seconds: Seconds spent in the last load.
        batch_sizes: Size of every batch run, in order.
    """

    requests: int = 0
    batches: int = 0
    loads: int = 0
    unloads: int = 0
    load_seconds: float = 0.0
    batch_sizes: list[int] = field(default_factory=list)


@dataclass
class _Request(Generic[In, Out]):
    item: In
    future: Future[Out]


_STOP = object()


class Worker(Generic[In, Out]):
    """Serve one runner's requests from a queue on a background thread, in micro-batches.

    Args:
        key: The worker's identity (for messages).
        runner: The task's model code.
        batch_size: Most requests per forward pass.
        idle_timeout: Seconds without requests before the model is unloaded (0: never).
        batch_window: Seconds to wait after the first request for others to join its batch.
        batch_key: Requests with different keys never share a batch (default: all may).
    """

    def __init__(
        self,
        key: WorkerKey,
        runner: BatchRunner[In, Out],
        *,
        batch_size: int = 8,
        idle_timeout: float = 300.0,
        batch_window: float = 0.01,
        batch_key: Callable[[In], Hashable] | None = None,
    ) -> None:
        self.key = key
        self.runner = runner
        self.batch_size = max(1, int(batch_size))
        self.idle_timeout = idle_timeout
        self.batch_window = batch_window
        self.batch_key = batch_key
        self.stats = WorkerStats()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loaded = False
        self._closed = False

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory now."""
        return self._loaded

    def submit(self, item: In) -> Future[Out]:
        """Queue one request; the future resolves to its result or raises its error."""
        return self.submit_many([item])[0]

    def submit_many(self, items: Iterable[In]) -> list[Future[Out]]:
        """Queue several requests at once, so they are batched together.

        Raises:
            RuntimeError: The worker was closed.
        """
        requests = [_Request[In, Out](item, Future()) for item in items]
        with self._lock:
            if self._closed:
                raise RuntimeError(f"worker {self.key.task}/{self.key.model} is closed")
            self.stats.requests += len(requests)
            # One put keeps the group together: the worker never sees half of it.
            self._queue.put(requests)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._serve, name=f"ollagraph-{self.key.task}", daemon=True
                )
                self._thread.start()
        return [request.future for request in requests]

    def run(self, item: In, timeout: float | None = None) -> Out:
        """Submit one request and wait for its result.

        Raises:
            Exception: Whatever the runner raised for this request.
            TimeoutError: No result within `timeout` seconds.
        """
        return self.submit(item).result(timeout=timeout)

    def map(self, items: Iterable[In], timeout: float | None = None) -> list[Out | BaseException]:
        """Run many requests, batched, and return each result or the error it raised."""
        futures = self.submit_many(items)
        results: list[Out | BaseException] = []
        for future in futures:
            error = future.exception(timeout=timeout)
            results.append(error if error is not None else future.result())
        return results

    def unload(self) -> None:
        """Unload the model now (the next request loads it again)."""
        done: Future[None] = Future()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._unload()
                return
            self._queue.put(("unload", done))
        done.result()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the thread after the queued requests, and unload the model."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            self._queue.put(_STOP)
        if thread is not None and thread.is_alive():
            thread.join(timeout)
        else:
            self._unload()

    # The worker thread

    def _serve(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.idle_timeout or None)
            except queue.Empty:
                self._unload()
                continue
            if first is _STOP:
                self._unload()
                return
            if isinstance(first, tuple):  # ("unload", future)
                self._unload()
                first[1].set_result(None)
                continue
            pending: list[_Request[In, Out]] = list(first)
            unloads: list[Future[None]] = []
            stop = self._gather(pending, unloads)
            self._run(pending)
            if stop or unloads:
                self._unload()
                for done in unloads:
                    done.set_result(None)
            if stop:
                return

    def _gather(self, pending: list[_Request[In, Out]], unloads: list[Future[None]]) -> bool:
        """Add requests that arrive within the batch window; True when a stop was seen.

        Unload requests seen meanwhile go to `unloads`, honoured after this batch.
        """
        deadline = time.monotonic() + self.batch_window
        while len(pending) < self.batch_size:
            remaining = deadline - time.monotonic()
            try:
                if remaining > 0:
                    more = self._queue.get(timeout=remaining)
                else:
                    more = self._queue.get_nowait()
            except queue.Empty:
                return False
            if more is _STOP:
                return True
            if isinstance(more, tuple):
                unloads.append(more[1])
                continue
            pending.extend(more)
        return False

    def _run(self, pending: list[_Request[In, Out]]) -> None:
        live = [r for r in pending if r.future.set_running_or_notify_cancel()]
        if not live:
            return
        if not self._ensure_loaded(live):
            return
        groups: dict[Hashable, list[_Request[In, Out]]] = {}
        for request in live:
            groups.setdefault(self.batch_key(request.item) if self.batch_key else None, []).append(
                request
            )
        for group in groups.values():
            for start in range(0, len(group), self.batch_size):
                self._run_batch(group[start : start + self.batch_size])

    def _ensure_loaded(self, live: list[_Request[In, Out]]) -> bool:
        if self._loaded:
            return True
        started = time.perf_counter()
        try:
            self.runner.load()
        except BaseException as exc:
            for request in live:
                request.future.set_exception(exc)
            return False
        self._loaded = True
        self.stats.loads += 1
        self.stats.load_seconds = time.perf_counter() - started
        return True

    def _run_batch(self, batch: list[_Request[In, Out]]) -> None:
        try:
            results = list(self.runner.run_batch([r.item for r in batch]))
            if len(results) != len(batch):
                raise RuntimeError(
                    f"{self.key.task} returned {len(results)} results for {len(batch)} requests"
                )
        except BaseException as exc:
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
                return
            for request in batch:  # one bad request must not fail the others
                self._run_batch([request])
            return
        self.stats.batches += 1
        self.stats.batch_sizes.append(len(batch))
        for request, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                request.future.set_exception(result)
            else:
                request.future.set_result(result)

    def _unload(self) -> None:
        if not self._loaded:
            return
        try:
            self.runner.unload()
        finally:
            self._loaded = False
            self.stats.unloads += 1
            free_memory()


def free_memory() -> None:
    """Collect garbage and return cached GPU memory to the driver."""
    gc.collect()
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class WorkerPool:
    """One worker per key, created on first use; thread-safe; closes every worker at exit."""

    def __init__(self) -> None:
        self._workers: dict[WorkerKey, Worker[Any, Any]] = {}
        self._lock = threading.Lock()
        atexit.register(self.close)

    def get(
        self,
        key: WorkerKey,
        make_runner: Callable[[], BatchRunner[Any, Any]],
        **options: Any,
    ) -> Worker[Any, Any]:
        """Return the worker for `key`, creating it (not loading its model) the first time.

        Args:
            key: Task, model and placement.
            make_runner: Builds the runner (cheap: the model loads on the first request).
            **options: `Worker` options (batch_size, idle_timeout, batch_window, batch_key).
        """
        with self._lock:
            worker = self._workers.get(key)
            if worker is None:
                worker = Worker(key, make_runner(), **options)
                self._workers[key] = worker
            return worker

    def workers(self) -> list[Worker[Any, Any]]:
        """The workers created so far."""
        with self._lock:
            return list(self._workers.values())

    def close(self) -> None:
        """Close every worker (unloading its model)."""
        with self._lock:
            workers, self._workers = list(self._workers.values()), {}
        for worker in workers:
            worker.close()


_POOL: WorkerPool | None = None
_POOL_LOCK = threading.Lock()


def default_pool() -> WorkerPool:
    """The process-wide pool that tools and the CLI share."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = WorkerPool()
        return _POOL


__all__ = [
    "BatchRunner",
    "Worker",
    "WorkerKey",
    "WorkerPool",
    "WorkerStats",
    "default_pool",
    "free_memory",
]
