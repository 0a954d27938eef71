"""Fixtures for integration tests: real servers on 127.0.0.1.

`engine` is the embedded engine (real llama.cpp) with the bundled models pulled, once per test
module, and `client` the official `ollama` client for it.

`fake_ollama` starts the scripted Ollama server (`tests/fake_ollama.py`) in a background thread and
points `OLLAMA_HOST` at it, replacing the closed port that `tests/conftest.py` sets for every test.
Queue the model's replies on it (`enqueue_text`, `enqueue_tool_call`) before the code under test
calls the model, then assert on `fake_ollama.requests`.
"""

from __future__ import annotations

from collections.abc import Iterator

import ollama
import pytest

from ollagraph.agents.engine import EngineServer
from ollagraph.agents.engine.registry import SMOLLM2
from tests.engine_data import MINILM
from tests.fake_ollama import FakeOllama


@pytest.fixture
def fake_ollama(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        # The scripts reply with native tool calls, but the fake reports a 135M model, which
        # tool_strategy 'auto' would put under constrained decoding; tests of that rule unset this.
        monkeypatch.setenv("OLLAGRAPH_NATIVE_MIN_PARAMS", "0")
        yield server


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineServer]:
    with EngineServer("127.0.0.1", 0, models_dir=tmp_path_factory.mktemp("models")) as server:
        client = ollama.Client(host=server.url)
        client.pull(SMOLLM2)
        client.pull(MINILM)
        yield server


@pytest.fixture
def client(engine: EngineServer) -> ollama.Client:
    return ollama.Client(host=engine.url, timeout=120)
