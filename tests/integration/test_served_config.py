"""A graph served by LangGraph's server takes its configuration from the environment.

`langgraph dev` (started as in `test_studio.py`) builds each run's context from the `Settings`
defaults plus what the run sets; the graph's `run_settings` puts the deployment's configuration
(`OLLAGRAPH_*`, `OLLAMA_HOST`, the config file) under it. What is checked is what crossed the HTTP
boundary to the scripted Ollama server: the model name asked for, native tools or not, and how
many model calls the step limit allowed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ollagraph.agents.config import Settings
from tests.fake_ollama import FakeOllama
from tests.integration.test_studio import RUN_TIMEOUT, _log_tail, _wait_for_run, langgraph_dev

pytestmark = pytest.mark.integration

QUERY = "SELECT COUNT(*) FROM ducks"
ENV_MODEL = "served-model:1b"
RUN_MODEL = "other-model:2b"


@pytest.fixture
def served_ollama(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOllama]:
    with FakeOllama(models=(ENV_MODEL, RUN_MODEL, "smollm2:135m")) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        # The deployment's configuration, as a container would get it.
        monkeypatch.setenv("OLLAGRAPH_MODEL", ENV_MODEL)
        monkeypatch.setenv("OLLAGRAPH_MAX_STEPS", "1")
        monkeypatch.setenv("OLLAGRAPH_TOOL_STRATEGY", "native")
        monkeypatch.setenv("OLLAGRAPH_TOOLS", "sql_query")
        yield server


def _script_one_step(server: FakeOllama, answer: str) -> None:
    """A plan, two native tool calls in a row, the answer: four model calls under max_steps 1.

    The second tool call is where the step limit (1) ends the loop: the answer is written next.
    Under the default (8) the second call would run and a fifth model call would find the script
    empty, failing the run.
    """
    server.enqueue_text("1. Count the ducks with sql_query.\n2. Answer.")
    server.enqueue_tool_call("sql_query", {"query": QUERY})
    server.enqueue_tool_call("sql_query", {"query": "SELECT COUNT(*) FROM customers"})
    server.enqueue_text(answer)


def _run(client: Any, log: Path, context: dict[str, Any] | None = None) -> dict[str, Any]:
    thread_id = client.threads.create()["thread_id"]
    question = {"messages": [{"role": "user", "content": "How many ducks are there?"}]}
    created = client.runs.create(thread_id, "agent", input=question, context=context)
    run = _wait_for_run(client, thread_id, created["run_id"], log)
    assert run["status"] == "success", _log_tail(log)
    values: dict[str, Any] = client.threads.get_state(thread_id)["values"]
    return values


def test_served_runs_use_the_environment_and_the_runs_own_context(
    served_ollama: FakeOllama, tmp_path: Path
) -> None:
    from langgraph_sdk import get_sync_client

    _script_one_step(served_ollama, "There are some ducks.")
    _script_one_step(served_ollama, "Still some ducks.")
    with langgraph_dev(tmp_path / "served") as (url, log):
        client = get_sync_client(url=url, api_key=None, timeout=RUN_TIMEOUT)
        from_env = _run(client, log)
        # A run that sets the model (as Studio's assistant panel does): the run's value wins,
        # the environment still gives everything the run left at its default. max_steps 8 is
        # the field's default, so it cannot undo the environment's 1 (the documented rule).
        from_run = _run(client, log, context={"model": RUN_MODEL, "max_steps": 8})

    assert served_ollama.remaining == 0, _log_tail(log)
    requests = served_ollama.chat_requests
    assert len(requests) == 8, [r["model"] for r in requests]  # 4 calls per run: max_steps 1
    first, second = requests[:4], requests[4:]
    assert [r["model"] for r in first] == [ENV_MODEL] * 4
    assert [r["model"] for r in second] == [RUN_MODEL] * 4
    for act in (first[1], second[1]):  # native tools (env), only sql_query (env), no schema
        assert [t["function"]["name"] for t in act["tools"]] == ["sql_query"]
        assert not act.get("format")
    for values in (from_env, from_run):
        assert values["partial"] is True  # the step limit (env: 1) cut the run short
        assert [run["name"] for run in values["tool_runs"]] == ["sql_query"]
    final = from_env["messages"][-1]["content"]
    assert "after 1 tool steps" in final and final.endswith("There are some ducks.")


def test_served_settings_rule(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ollagraph.agents.served import configured_settings, served_settings

    config = tmp_path / "config.toml"
    config.write_text('model = "from-file:1b"\nmax_rows = 7\n', encoding="utf-8")
    monkeypatch.setenv("OLLAGRAPH_CONFIG", str(config))
    monkeypatch.setenv("OLLAGRAPH_MAX_STEPS", "3")

    base = configured_settings()
    assert (base.model, base.max_rows, base.max_steps) == ("from-file:1b", 7, 3)
    assert configured_settings() is base  # cached while nothing changed
    assert served_settings(None) is base
    assert served_settings(Settings()) is base  # a context of defaults changes nothing
    merged = served_settings(Settings(model="run:2b", max_steps=8))  # 8 is max_steps' default
    assert (merged.model, merged.max_rows, merged.max_steps) == ("run:2b", 7, 3)

    monkeypatch.setenv("OLLAGRAPH_MAX_STEPS", "5")  # a changed environment is read again
    assert configured_settings().max_steps == 5
    config.write_text('model = "edited:1b"\n', encoding="utf-8")
    import os

    os.utime(config, ns=(1, 1))  # a new version even within the file system's time resolution
    assert configured_settings().model == "edited:1b"
