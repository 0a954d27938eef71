"""The worker pool's scheduling: micro-batching, batch keys, failure isolation, idle unload.

`CountingRunner` is a plain Python runner that records every batch it is given (the thing under
test is the pool, not a model); the last tests use a real torch module to show that unloading
frees it.
"""

from __future__ import annotations

import gc
import math
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

import pytest

from ollagraph.agents.workers.pool import Worker, WorkerKey, WorkerPool

KEY = WorkerKey("test", "model", "cpu fp32")


class CountingRunner:
    """Doubles numbers; records loads and batches; 'bad' items make a whole batch raise."""

    def __init__(self, load_delay: float = 0.0, fail_loads: int = 0) -> None:
        self.load_delay = load_delay
        self.fail_loads = fail_loads
        self.batches: list[list[Any]] = []
        self.loaded = False
        self.threads: set[str] = set()

    def load(self) -> None:
        time.sleep(self.load_delay)
        if self.fail_loads:
            self.fail_loads -= 1
            raise OSError("weights not found")
        self.loaded = True

    def run_batch(self, items: Sequence[Any]) -> list[Any]:
        assert self.loaded
        self.threads.add(threading.current_thread().name)
        if "bad" in items:
            raise ValueError("a bad item spoils the batch")
        self.batches.append(list(items))
        return [ValueError(f"odd {x}") if x == "odd" else x * 2 for x in items]

    def unload(self) -> None:
        self.loaded = False


@pytest.mark.parametrize(("count", "batch_size"), [(10, 4), (8, 8), (9, 1), (3, 16)])
def test_requests_queued_together_take_ceil_n_over_batch_size_passes(
    count: int, batch_size: int
) -> None:
    runner = CountingRunner()
    worker: Worker[Any, Any] = Worker(KEY, runner, batch_size=batch_size)
    assert worker.map(range(count)) == [2 * i for i in range(count)]
    assert worker.stats.batches == math.ceil(count / batch_size) == len(runner.batches)
    assert all(len(batch) <= batch_size for batch in runner.batches)
    worker.close()


def test_concurrent_callers_share_one_model_and_are_batched() -> None:
    runner = CountingRunner(load_delay=0.2)
    worker: Worker[Any, Any] = Worker(KEY, runner, batch_size=4, batch_window=0.5)
    start = threading.Barrier(8)
    results: dict[int, Any] = {}

    def call(i: int) -> None:
        start.wait()
        results[i] = worker.run(i, timeout=10)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: 2 * i for i in range(8)}
    assert worker.stats.loads == 1
    assert worker.stats.batches == 2 and sorted(worker.stats.batch_sizes) == [4, 4]
    assert runner.threads == {"ollagraph-test"}  # only the worker thread touched the model
    worker.close()


def test_batch_key_keeps_incompatible_requests_apart() -> None:
    runner = CountingRunner()
    worker: Worker[Any, Any] = Worker(KEY, runner, batch_size=8, batch_key=lambda x: x % 2)
    worker.map(range(6))
    assert sorted(map(sorted, runner.batches)) == [[0, 2, 4], [1, 3, 5]]
    worker.close()


def test_a_failing_batch_is_retried_one_by_one() -> None:
    runner = CountingRunner()
    worker: Worker[Any, Any] = Worker(KEY, runner, batch_size=8)
    results = worker.map([1, "bad", 3, "odd"])
    assert results[0] == 2 and results[2] == 6
    assert isinstance(results[1], ValueError) and "spoils" in str(results[1])
    assert isinstance(results[3], ValueError) and "odd odd" in str(results[3])
    worker.close()


def test_a_failed_load_reaches_every_caller_and_the_next_request_retries() -> None:
    runner = CountingRunner(fail_loads=1)
    worker: Worker[Any, Any] = Worker(KEY, runner, batch_size=4)
    results = worker.map([1, 2])
    assert all(isinstance(r, OSError) for r in results)
    assert not worker.loaded and worker.stats.loads == 0
    assert worker.run(5, timeout=5) == 10
    assert worker.stats.loads == 1
    worker.close()


def test_idle_worker_unloads_and_reloads_on_the_next_request() -> None:
    runner = CountingRunner()
    worker: Worker[Any, Any] = Worker(KEY, runner, idle_timeout=0.2)
    assert worker.run(1, timeout=5) == 2 and worker.loaded
    deadline = time.monotonic() + 5
    while worker.loaded and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not worker.loaded and not runner.loaded
    assert worker.stats.unloads == 1
    assert worker.run(2, timeout=5) == 4
    assert worker.stats.loads == 2
    worker.close()


def test_explicit_unload_and_close() -> None:
    runner = CountingRunner()
    worker: Worker[Any, Any] = Worker(KEY, runner)
    worker.run(1, timeout=5)
    worker.unload()
    assert not worker.loaded and not runner.loaded
    worker.run(1, timeout=5)
    worker.close()
    assert not runner.loaded
    with pytest.raises(RuntimeError, match="closed"):
        worker.submit(1)


def test_pool_hands_out_one_worker_per_key() -> None:
    pool = WorkerPool()
    made: list[CountingRunner] = []

    def make() -> CountingRunner:
        made.append(CountingRunner())
        return made[-1]

    got: list[Worker[Any, Any]] = []
    threads = [threading.Thread(target=lambda: got.append(pool.get(KEY, make))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1 and all(w is got[0] for w in got)
    other = pool.get(WorkerKey("test", "model", "cuda bf16"), make)
    assert other is not got[0] and len(pool.workers()) == 2
    pool.close()
    assert pool.workers() == []


@pytest.mark.torch
def test_unloading_frees_the_torch_model() -> None:
    import torch

    class LinearRunner:
        def __init__(self) -> None:
            self.model: torch.nn.Module | None = None

        def load(self) -> None:
            self.model = torch.nn.Linear(64, 8)

        def run_batch(self, items: Sequence[torch.Tensor]) -> list[torch.Tensor]:
            assert self.model is not None
            with torch.inference_mode():
                return list(self.model(torch.stack(list(items))))

        def unload(self) -> None:
            self.model = None

    runner = LinearRunner()
    worker: Worker[Any, Any] = Worker(KEY, runner, batch_size=4, idle_timeout=0.2)
    outputs = worker.map([torch.randn(64) for _ in range(6)])
    assert [tuple(o.shape) for o in outputs] == [(8,)] * 6 and worker.stats.batches == 2
    assert runner.model is not None
    alive = weakref.ref(runner.model)
    del outputs
    deadline = time.monotonic() + 5
    while worker.loaded and time.monotonic() < deadline:
        time.sleep(0.05)
    gc.collect()
    assert runner.model is None and alive() is None
    worker.close()
