"""Fixtures for integration tests: real servers on 127.0.0.1.

`fake_ollama` starts the scripted Ollama server (`tests/fake_ollama.py`) in a background thread and
points `OLLAMA_HOST` at it, replacing the closed port that `tests/conftest.py` sets for every test.
Queue the model's replies on it (`enqueue_text`, `enqueue_tool_call`) before the code under test
calls the model, then assert on `fake_ollama.requests`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fake_ollama import FakeOllama


@pytest.fixture
def fake_ollama(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        yield server
