"""Fixtures shared by every test.

- The state directory (OLLAGRAPH_HOME) is a fresh temporary folder for each test.
- OLLAMA_HOST points at a closed local port, so a test that forgets to supply its own model
  server fails fast with "connection refused" instead of calling a real Ollama.
- Every OLLAGRAPH_* variable from the developer's shell is removed, so tests see built-in defaults;
  then OLLAGRAPH_MANAGE_SERVER=false, so the CLI never starts a model server unless a test asks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CLOSED_PORT_HOST = "http://127.0.0.1:9"


@pytest.fixture(autouse=True)
def isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in list(os.environ):
        if name.startswith("OLLAGRAPH_"):
            monkeypatch.delenv(name)
    home = tmp_path / "ollagraph-home"
    monkeypatch.setenv("OLLAGRAPH_HOME", str(home))
    monkeypatch.setenv("OLLAMA_HOST", CLOSED_PORT_HOST)
    # the CLI would otherwise start the embedded engine on that port; tests that want a managed
    # server say so
    monkeypatch.setenv("OLLAGRAPH_MANAGE_SERVER", "false")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    yield home
