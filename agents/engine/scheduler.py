"""Loaded models: loading on first use, one request at a time per model, and keep-alive.

Like Ollama's scheduler, a model is loaded by the first request that needs it and stays
resident for the request's `keep_alive` after the request ends (default 5 minutes; `0` unloads
right away; a negative value keeps it forever). Each loaded model has its own lock, because
llama.cpp is not thread-safe: concurrent requests for one model wait their turn, while different
models run side by side. A chat model is reloaded when a request needs a larger context window
(`num_ctx`) than it was loaded with, or when its LoRA adapters changed. A model whose adapter
file is missing or changed since registration is refused (`PresentModel.problem`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from ollagraph.agents.engine.embed_backend import MiniLMRunner
from ollagraph.agents.engine.hf_backend import HFRunner
from ollagraph.agents.engine.llama_backend import LlamaRunner
from ollagraph.agents.engine.protocol import APIError
from ollagraph.agents.engine.registry import KIND_HF, KIND_MINILM
from ollagraph.agents.engine.store import PresentModel


class Runner(Protocol):
    """What the scheduler needs from a backend."""

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory."""
        ...

    @property
    def n_ctx(self) -> int:
        """The context window in tokens."""
        ...

    @property
    def memory_bytes(self) -> int:
        """Approximate resident size."""
        ...

    def load(self) -> float:
        """Load the weights; return the seconds it took."""
        ...

    def close(self) -> None:
        """Free the weights."""
        ...


@dataclass
class _Slot:
    """One model's place in the scheduler."""

    model: PresentModel
    lock: threading.Lock = field(default_factory=threading.Lock)
    runner: Runner | None = None
    expires_at: float | None = 0.0
    generation: int = 0
    timer: threading.Timer | None = None


@dataclass(frozen=True)
class RunningModel:
    """A loaded model, as `/api/ps` lists it.

    Attributes:
        model: The model.
        size: Approximate bytes in memory.
        context_length: The context window it was loaded with.
        expires_at: When it unloads (seconds since the epoch), or None for never.
    """

    model: PresentModel
    size: int
    context_length: int
    expires_at: float | None


def _expiry_key(running: RunningModel) -> float:
    return float("inf") if running.expires_at is None else running.expires_at


class Scheduler:
    """Loads, shares and unloads runners."""

    def __init__(self) -> None:
        self._slots: dict[str, _Slot] = {}
        self._mutex = threading.Lock()

    def _slot(self, model: PresentModel) -> _Slot:
        with self._mutex:
            slot = self._slots.get(model.name)
            if slot is None:
                slot = _Slot(model=model)
                self._slots[model.name] = slot
            return slot

    @staticmethod
    def _new_runner(model: PresentModel, num_ctx: int, num_thread: int) -> Runner:
        if model.spec.kind == KIND_MINILM:
            return MiniLMRunner(model.weights)
        if model.spec.kind == KIND_HF:
            return HFRunner(model.weights, n_ctx=num_ctx, n_threads=num_thread)
        return LlamaRunner(
            model.weights, n_ctx=num_ctx, n_threads=num_thread, adapters=model.spec.adapters
        )

    @staticmethod
    def _needs_reload(runner: Runner, model: PresentModel, num_ctx: int) -> bool:
        if not runner.loaded:
            return True
        if isinstance(runner, LlamaRunner):
            if runner.path != model.weights or runner.adapters != model.spec.adapters:
                return True
            wanted = min(num_ctx, runner.info.context_length or num_ctx)
            return runner.n_ctx < wanted
        if isinstance(runner, HFRunner):  # the KV cache grows as needed: no reload for num_ctx
            return runner.path != model.weights
        return False

    @contextmanager
    def use(
        self,
        model: PresentModel,
        *,
        keep_alive: float | None,
        num_ctx: int = 0,
        num_thread: int = 0,
    ) -> Iterator[tuple[Runner, float]]:
        """Hold a model for one request, loading it first if needed.

        Args:
            model: The model to use.
            keep_alive: Seconds to stay loaded after this request (0: unload now; None: forever).
            num_ctx: The context window the request needs (chat models).
            num_thread: CPU threads for a model loaded now (0: all cores).

        Yields:
            The runner and the seconds spent loading it for this request.
        """
        if model.problem:
            raise APIError(500, model.problem)
        slot = self._slot(model)
        with slot.lock:
            self._cancel_timer(slot)
            slot.model = model
            slot.expires_at = None if keep_alive is None else time.time() + keep_alive
            load_seconds = 0.0
            runner = slot.runner
            if runner is None or self._needs_reload(runner, model, num_ctx):
                if runner is not None:
                    runner.close()
                    slot.runner = None
                runner = self._new_runner(model, num_ctx, num_thread)
                load_seconds = runner.load()
                slot.runner = runner
            try:
                yield runner, load_seconds
            finally:
                self._release(slot, keep_alive)

    def _release(self, slot: _Slot, keep_alive: float | None) -> None:
        """Start the keep-alive countdown (called with the slot's lock held)."""
        slot.generation += 1
        if keep_alive is None:
            slot.expires_at = None
            return
        if keep_alive <= 0:
            self._close(slot)
            return
        slot.expires_at = time.time() + keep_alive
        timer = threading.Timer(keep_alive, self._expire, args=(slot, slot.generation))
        timer.daemon = True
        slot.timer = timer
        timer.start()

    def _expire(self, slot: _Slot, generation: int) -> None:
        if not slot.lock.acquire(blocking=False):
            return  # in use: the request that holds it restarts the countdown
        try:
            if slot.generation == generation:
                self._close(slot)
        finally:
            slot.lock.release()

    @staticmethod
    def _cancel_timer(slot: _Slot) -> None:
        if slot.timer is not None:
            slot.timer.cancel()
            slot.timer = None

    @staticmethod
    def _close(slot: _Slot) -> None:
        runner, slot.runner = slot.runner, None
        if runner is not None:
            runner.close()

    def unload(self, name: str, *, wait: float | None = None) -> bool:
        """Unload a model now (after the request using it, if any).

        Args:
            name: Canonical model name.
            wait: Most seconds to wait for a request using the model (None: as long as it takes).

        Returns:
            Whether the model was loaded and is now unloaded.
        """
        with self._mutex:
            slot = self._slots.get(name)
        if slot is None:
            return False
        if not slot.lock.acquire(timeout=-1 if wait is None else wait):
            return False
        try:
            self._cancel_timer(slot)
            slot.generation += 1
            was_loaded = slot.runner is not None
            self._close(slot)
            return was_loaded
        finally:
            slot.lock.release()

    def running(self) -> list[RunningModel]:
        """The loaded models, the one that stays longest first."""
        with self._mutex:
            slots = list(self._slots.values())
        found = []
        for slot in slots:
            runner = slot.runner
            if runner is None or not runner.loaded:
                continue
            found.append(
                RunningModel(
                    model=slot.model,
                    size=runner.memory_bytes,
                    context_length=runner.n_ctx,
                    expires_at=slot.expires_at,
                )
            )
        return sorted(found, key=_expiry_key, reverse=True)

    def shutdown(self, wait: float = 5.0) -> None:
        """Unload every model, waiting at most `wait` seconds for each one in use."""
        with self._mutex:
            names = list(self._slots)
        for name in names:
            self.unload(name, wait=wait)


__all__ = ["Runner", "RunningModel", "Scheduler"]
