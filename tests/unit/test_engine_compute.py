"""The engine's compute thread: every generation of a model runs on one thread of its own."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from ollagraph.agents.engine.compute import ComputeThread


@pytest.fixture
def compute() -> Iterator[ComputeThread]:
    worker = ComputeThread("test-compute")
    yield worker
    worker.stop()


def test_items_are_made_on_the_compute_thread_whoever_iterates(compute: ComputeThread) -> None:
    makers: list[str] = []

    def numbers() -> Iterator[int]:
        for i in range(3):
            makers.append(threading.current_thread().name)
            yield i

    seen: list[list[int]] = []
    callers = [threading.Thread(target=lambda: seen.append(list(compute.stream(numbers))))]
    callers.append(threading.Thread(target=lambda: seen.append(list(compute.stream(numbers)))))
    for caller in callers:
        caller.start()
        caller.join()
    assert seen == [[0, 1, 2], [0, 1, 2]]
    assert set(makers) == {"test-compute"}
    assert compute.call(lambda: threading.current_thread().name) == "test-compute"


def test_closing_early_stops_the_producer_and_waits_for_it(compute: ComputeThread) -> None:
    made: list[int] = []
    closed = threading.Event()

    def slow() -> Iterator[int]:
        try:
            for i in range(100):
                time.sleep(0.02)
                made.append(i)
                yield i
        finally:
            closed.set()

    stream = compute.stream(slow)
    assert next(stream) == 0
    stream.close()  # type: ignore[attr-defined]
    assert closed.is_set()  # waited for the producer: nothing runs after close
    count = len(made)
    time.sleep(0.1)
    assert len(made) == count <= 2


def test_errors_reach_the_consumer_and_the_thread_goes_on(compute: ComputeThread) -> None:
    def broken() -> Iterator[int]:
        yield 1
        raise ValueError("boom")

    stream = compute.stream(broken)
    assert next(stream) == 1
    with pytest.raises(ValueError, match="boom"):
        next(stream)
    with pytest.raises(KeyError):
        compute.call(lambda: {}["x"])
    assert list(compute.stream(lambda: iter([7]))) == [7]
