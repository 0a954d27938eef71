"""LangGraph Studio's server (`langgraph dev`) serves the agent graph named in `langgraph.json`.

The test starts the scripted Ollama server in this process, runs `langgraph dev` as a subprocess
against the repository's `langgraph.json` with `OLLAMA_HOST` pointing at it, and drives the server
with `langgraph_sdk` as Studio does: list assistants, create a thread, run a one-tool question to
the end and read the thread's state.

`langgraph dev` runs offline with these settings (see `OFFLINE_ENV`): `--no-browser` and
`--no-reload`, `LANGGRAPH_CLI_NO_ANALYTICS=1` (the CLI otherwise posts usage data),
`LANGGRAPH_NO_VERSION_CHECK=true` (the server otherwise asks PyPI for newer versions) and LangSmith
tracing off. The server keeps threads in `.langgraph_api/` under its working directory, so it runs
in a temporary folder (`--config` names the repository's file; the graph is imported by module name
from the installed package) and never touches a developer's Studio threads.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fake_ollama import FakeOllama
from tests.ports import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "langgraph.json"
START_TIMEOUT = 30.0
RUN_TIMEOUT = 25.0
QUESTION = "How many ducks are in the ducks table?"
QUERY = "SELECT COUNT(*) FROM ducks"

OFFLINE_ENV = {
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    "LANGGRAPH_NO_VERSION_CHECK": "true",
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
    "PYTHONUNBUFFERED": "1",
}
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _log_tail(log: Path, chars: int = 6000) -> str:
    text = ANSI.sub("", log.read_text(encoding="utf-8", errors="replace")) if log.exists() else ""
    return text[-chars:] or "(empty)"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End the server's whole process group: SIGTERM, then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue


def _wait_until_healthy(proc: subprocess.Popen[bytes], log: Path, port: int) -> str:
    """Return the server's URL once `GET /ok` answers; fail with its log otherwise."""
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"langgraph dev exited with {proc.returncode}:\n{_log_tail(log)}")
        # langgraph dev quietly moves to another port when the one asked for is taken.
        if moved := re.search(r"API: (http://127\.0\.0\.1:\d+)", _log_tail(log, 100_000)):
            url = moved.group(1)
        try:
            if httpx.get(f"{url}/ok", timeout=1.0).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"langgraph dev was not healthy within {START_TIMEOUT:g} s:\n{_log_tail(log)}")


@contextmanager
def langgraph_dev(workdir: Path) -> Iterator[tuple[str, Path]]:
    """Run `langgraph dev` on a free 127.0.0.1 port; yield its URL and log file."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "langgraph-dev.log"
    port = free_port()
    env = {**os.environ, **OFFLINE_ENV}
    for name in ("LANGSMITH_API_KEY", "LANGCHAIN_API_KEY"):
        env.pop(name, None)
    command = [sys.executable, "-m", "langgraph_cli", "dev", "--config", str(CONFIG)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-browser", "--no-reload"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield _wait_until_healthy(proc, log, port), log
    finally:
        _stop(proc)


def _sample_duck_count() -> int:
    """Count the ducks of the bundled sample database (building it in the state directory)."""
    import duckdb

    from ollagraph.data import sample_database

    with duckdb.connect(str(sample_database()), read_only=True) as conn:
        row = conn.execute(QUERY).fetchone()
    assert row is not None
    return int(row[0])


def _wait_for_run(client: Any, thread_id: str, run_id: str, log: Path) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        run: dict[str, Any] = client.runs.get(thread_id, run_id)
        if run["status"] not in ("pending", "running"):
            return run
        if time.monotonic() > deadline:
            pytest.fail(f"The run did not finish within {RUN_TIMEOUT:g} s:\n{_log_tail(log)}")
        time.sleep(0.2)


def test_langgraph_json_names_the_agent_graph_by_module() -> None:
    from langgraph_cli.config import validate_config_file

    config = validate_config_file(CONFIG)

    assert config["graphs"] == {"agent": "ollagraph.graphs.agent:graph"}
    assert config["dependencies"] == ["."]


def test_studio_runs_the_agent_graph(
    fake_ollama: FakeOllama, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from langgraph_sdk import get_sync_client

    monkeypatch.delenv("OLLAGRAPH_NATIVE_MIN_PARAMS")  # the served graph reads the environment

    count = _sample_duck_count()  # before the server opens the file
    answer = f"There are {count} ducks in the ducks table."
    fake_ollama.enqueue_text("1. Count the rows of the ducks table with sql_query.\n2. Answer.")
    # With the default native_min_params, the 135M model the fake reports is put under
    # constrained decoding: the tool call and the decision to answer are JSON decisions.
    fake_ollama.enqueue_text(json.dumps({"tool": "sql_query", "arguments": {"query": QUERY}}))
    fake_ollama.enqueue_text(json.dumps({"final_answer": answer}))
    fake_ollama.enqueue_text(answer)

    with langgraph_dev(tmp_path / "studio") as (url, log):
        client = get_sync_client(url=url, api_key=None, timeout=RUN_TIMEOUT)
        assistants = client.assistants.search(graph_id="agent")
        assert [a["graph_id"] for a in assistants] == ["agent"], _log_tail(log)
        schemas = client.assistants.get_schemas(assistants[0]["assistant_id"])
        context_fields = (schemas.get("context_schema") or {}).get("properties", {})
        assert {"model", "max_steps", "tools"} <= set(context_fields), schemas

        thread_id = client.threads.create()["thread_id"]
        question: dict[str, Any] = {"messages": [{"role": "user", "content": QUESTION}]}
        created = client.runs.create(thread_id, "agent", input=question)
        run = _wait_for_run(client, thread_id, created["run_id"], log)
        assert run["status"] == "success", _log_tail(log)
        values: Any = client.threads.get_state(thread_id)["values"]
        messages: list[dict[str, Any]] = values["messages"]

    assert messages[0]["type"] == "human" and messages[0]["content"] == QUESTION
    assert messages[-1]["type"] == "ai" and messages[-1]["content"] == answer
    calls = [call for m in messages if m["type"] == "ai" for call in m.get("tool_calls") or []]
    assert [(c["name"], c["args"]) for c in calls] == [("sql_query", {"query": QUERY})]
    [tool_message] = [m for m in messages if m["type"] == "tool"]
    assert tool_message["name"] == "sql_query"
    assert str(count) in tool_message["content"], tool_message

    # What crossed the HTTP boundary: four model calls, the acting call constrained by a schema
    # that offers sql_query (and no native tools), and the real query result sent back.
    assert fake_ollama.remaining == 0
    plan, act, decide, final = fake_ollama.chat_requests
    assert all(body["model"] == "smollm2:135m" for body in (plan, act, decide, final))
    assert not act.get("tools") and "sql_query" in json.dumps(act["format"])
    sent = [m["content"] for m in decide["messages"] if m["role"] in ("tool", "user")]
    assert str(count) in sent[-1]


def test_studio_gets_the_graph_input_and_output_schemas(tmp_path: Path) -> None:
    from langgraph_sdk import get_sync_client

    with langgraph_dev(tmp_path / "studio") as (url, _log):
        client = get_sync_client(url=url, api_key=None, timeout=RUN_TIMEOUT)
        [assistant] = client.assistants.search(graph_id="agent")
        schemas = client.assistants.get_schemas(assistant["assistant_id"])

    assert "messages" in (schemas.get("input_schema") or {}).get("properties", {})
    output_fields = set((schemas.get("output_schema") or {}).get("properties", {}))
    assert {"messages", "plan", "tool_runs"} <= output_fields
