"""The scripted Ollama server is faithful enough for the real clients to run against it.

Each test drives `ChatOllama` or the official `ollama.Client` over HTTP and checks both what the
client parsed and the exact request body the server recorded.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import ollama
import pytest
from langchain_ollama import ChatOllama

from tests.fake_ollama import FakeOllama

pytestmark = pytest.mark.integration

MODEL = "smollm2:135m"
ROOT = Path(__file__).resolve().parents[2]


def count_rows(table: str, where: str = "") -> str:
    """Count the rows of a table.

    Args:
        table: Name of the table to count.
        where: Optional SQL condition, without the WHERE keyword.
    """
    return table + where


def test_invoke_returns_text_and_sends_options(fake_ollama: FakeOllama) -> None:
    fake_ollama.enqueue_text("There are twelve ducks in the pond.")
    model = ChatOllama(
        model=MODEL, base_url=fake_ollama.url, temperature=0, num_ctx=4096, keep_alive="5m"
    )

    reply = model.invoke("How many ducks?")

    assert reply.content == "There are twelve ducks in the pond."
    assert reply.tool_calls == []
    assert reply.response_metadata["done_reason"] == "stop"
    assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] > 0
    [(path, body)] = fake_ollama.requests
    assert path == "/api/chat"
    assert body["model"] == MODEL
    assert body["stream"] is True
    assert body["options"] == {"temperature": 0.0, "num_ctx": 4096}
    assert body["keep_alive"] == "5m"
    assert body["messages"] == [{"role": "user", "content": "How many ducks?"}]
    assert fake_ollama.remaining == 0


def test_bind_tools_returns_parsed_tool_calls_and_sends_schema(fake_ollama: FakeOllama) -> None:
    fake_ollama.enqueue_tool_call("count_rows", {"table": "ducks", "where": "age > 2"})
    model = ChatOllama(model=MODEL, base_url=fake_ollama.url).bind_tools([count_rows])

    reply = model.invoke("How many old ducks?")

    assert reply.content == ""
    [call] = reply.tool_calls
    assert call["name"] == "count_rows"
    assert call["args"] == {"table": "ducks", "where": "age > 2"}
    assert call["id"]
    [tool] = fake_ollama.chat_requests[0]["tools"]
    assert tool["type"] == "function"
    assert tool["function"]["name"] == "count_rows"
    assert tool["function"]["description"].startswith("Count the rows of a table.")
    parameters = tool["function"]["parameters"]
    assert parameters["type"] == "object"
    assert parameters["required"] == ["table"]
    assert parameters["properties"]["table"]["type"] == "string"
    assert parameters["properties"]["table"]["description"] == "Name of the table to count."
    assert parameters["properties"]["where"]["type"] == "string"


def test_several_tool_calls_in_one_reply(fake_ollama: FakeOllama) -> None:
    fake_ollama.enqueue_tool_calls(
        [("count_rows", {"table": "ducks"}), ("count_rows", {"table": "ponds"})]
    )
    model = ChatOllama(model=MODEL, base_url=fake_ollama.url).bind_tools([count_rows])

    reply = model.invoke("Count ducks and ponds.")

    assert [call["args"] for call in reply.tool_calls] == [{"table": "ducks"}, {"table": "ponds"}]
    assert len({call["id"] for call in reply.tool_calls}) == 2


def test_stream_yields_several_chunks(fake_ollama: FakeOllama) -> None:
    text = "Ducks are waterfowl of the family Anatidae, found on every continent."
    fake_ollama.enqueue_text(text)
    model = ChatOllama(model=MODEL, base_url=fake_ollama.url)

    chunks = list(model.stream("Tell me about ducks."))

    texts = [chunk.content for chunk in chunks if chunk.content]
    assert len(texts) >= 3
    assert "".join(texts) == text  # type: ignore[arg-type]
    assert any(chunk.response_metadata.get("done_reason") == "stop" for chunk in chunks)


def test_async_invoke(fake_ollama: FakeOllama) -> None:
    fake_ollama.enqueue_text("Quack.")
    model = ChatOllama(model=MODEL, base_url=fake_ollama.url)

    reply = asyncio.run(model.ainvoke("Say something."))

    assert reply.content == "Quack."


def test_chat_ollama_uses_ollama_host_from_the_fixture(fake_ollama: FakeOllama) -> None:
    fake_ollama.enqueue_text("Found through OLLAMA_HOST.")

    assert ChatOllama(model=MODEL).invoke("hi").content == "Found through OLLAMA_HOST."
    assert [m.model for m in ollama.Client().list().models] == [MODEL]


def test_official_client_stream_and_non_stream(fake_ollama: FakeOllama) -> None:
    client = ollama.Client(host=fake_ollama.url)
    fake_ollama.enqueue_text("One two three four five six.")
    fake_ollama.enqueue_text("Not streamed.")
    fake_ollama.enqueue_tool_call("count_rows", {"table": "ducks"})

    parts = list(client.chat(model=MODEL, messages=[{"role": "user", "content": "a"}], stream=True))
    single = client.chat(model=MODEL, messages=[{"role": "user", "content": "b"}])
    with_tool = client.chat(
        model=MODEL, messages=[{"role": "user", "content": "c"}], tools=[count_rows]
    )

    assert all(part.model == MODEL and part.created_at for part in parts)
    assert [part.done for part in parts] == [False] * (len(parts) - 1) + [True]
    assert "".join(part.message.content or "" for part in parts) == "One two three four five six."
    final = parts[-1]
    assert final.done_reason == "stop"
    assert final.total_duration and final.eval_count
    assert single.done and single.message.role == "assistant"
    assert single.message.content == "Not streamed."
    [call] = with_tool.message.tool_calls or []
    assert call.function.name == "count_rows"
    assert call.function.arguments == {"table": "ducks"}
    assert fake_ollama.chat_requests[1]["stream"] is False
    assert fake_ollama.chat_requests[2]["tools"][0]["function"]["name"] == "count_rows"


def test_unknown_model_is_404_like_ollama(fake_ollama: FakeOllama) -> None:
    client = ollama.Client(host=fake_ollama.url)

    with pytest.raises(ollama.ResponseError) as chat_error:
        client.chat(model="llama9:70b", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(ollama.ResponseError) as show_error:
        client.show("llama9:70b")
    stream = client.chat(model="llama9", messages=[{"role": "user", "content": "x"}], stream=True)
    with pytest.raises(ollama.ResponseError) as stream_error:
        next(iter(stream))

    assert chat_error.value.status_code == 404
    assert chat_error.value.error == 'model "llama9:70b" not found, try pulling it first'
    assert show_error.value.status_code == 404
    assert show_error.value.error == "model 'llama9:70b' not found"
    assert stream_error.value.status_code == 404
    assert fake_ollama.remaining == 0


def test_empty_script_is_a_500_that_says_so(fake_ollama: FakeOllama) -> None:
    with pytest.raises(ollama.ResponseError) as error:
        ChatOllama(model=MODEL, base_url=fake_ollama.url).invoke("hi")

    assert error.value.status_code == 500
    assert "script ran out of replies" in error.value.error


def test_scripted_error(fake_ollama: FakeOllama) -> None:
    fake_ollama.enqueue_error("model runner has unexpectedly stopped", status=500)
    fake_ollama.enqueue_text("Recovered.")
    model = ChatOllama(model=MODEL, base_url=fake_ollama.url)

    with pytest.raises(ollama.ResponseError, match="unexpectedly stopped"):
        model.invoke("hi")
    assert model.invoke("again").content == "Recovered."


def test_tags_show_version_and_root(fake_ollama: FakeOllama) -> None:
    client = ollama.Client(host=fake_ollama.url)

    assert [m.model for m in client.list().models] == [MODEL]
    shown = client.show("smollm2:135m")
    assert shown.capabilities == ["completion", "tools"]
    assert shown.details is not None and shown.details.format == "gguf"
    assert shown.modelinfo is not None
    assert httpx.get(f"{fake_ollama.url}/api/version").json()["version"]
    assert httpx.get(f"{fake_ollama.url}/").text == "Ollama is running"
    assert ("/api/tags", None) in fake_ollama.requests
    assert ("/api/show", {"model": MODEL}) in fake_ollama.requests
    # ChatOllama's own check that the model is pulled reads /api/tags.
    ChatOllama(model=MODEL, base_url=fake_ollama.url, validate_model_on_init=True)
    with pytest.raises(ValueError, match="not found in Ollama"):
        ChatOllama(model="other", base_url=fake_ollama.url, validate_model_on_init=True)


def test_untagged_name_matches_latest() -> None:
    with FakeOllama(models=("qwen3:latest",)) as server:
        server.enqueue_text("ok")
        assert ChatOllama(model="qwen3", base_url=server.url).invoke("hi").content == "ok"


def test_runs_as_a_standalone_process(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"models": ["tiny:1b"], "replies": [{"content": "From a file."}]}))
    record = tmp_path / "requests.jsonl"
    command = [sys.executable, "-m", "tests.fake_ollama", "--script", str(script)]
    proc = subprocess.Popen(
        [*command, "--record", str(record)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first_line: list[str] = []
        reader = threading.Thread(target=lambda: first_line.append(proc.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout=20)
        assert first_line and first_line[0].startswith("http://127.0.0.1:"), first_line
        url = first_line[0].strip()

        reply = ChatOllama(model="tiny:1b", base_url=url).invoke("hi")

        assert reply.content == "From a file."
        [line] = record.read_text().splitlines()
        assert json.loads(line)["body"]["messages"] == [{"role": "user", "content": "hi"}]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0
