"""Model readiness over real HTTP: presence, pulls with progress, /api/show facts and caching,
warm-up, and the exact request bodies the toolkit sends.

The server is the scripted `FakeOllama` (its recorded requests show what was asked), except for
the exact-body test, which uses pytest-httpserver as ollama-python's own tests do.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from rich.console import Console

from ollagraph.agents.config import Settings
from ollagraph.agents.errors import ModelError
from ollagraph.agents.pull_progress import PullProgress, ensure_model_with_progress
from ollagraph.agents.readiness import (
    PullEvent,
    PullTally,
    clear_model_info_cache,
    ensure_model,
    is_final_response,
    is_load_response,
    model_info,
    warm_up,
)
from tests.fake_ollama import FakeOllama

pytestmark = pytest.mark.integration

OFFLINE = (
    'pull model manifest: Get "https://registry.ollama.ai/v2/library/qwen2.5/manifests/0.5b": '
    "dial tcp: lookup registry.ollama.ai on 127.0.0.53:53: no such host"
)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fresh_info_cache() -> Iterator[None]:
    clear_model_info_cache()
    yield
    clear_model_info_cache()


def paths(server: FakeOllama) -> list[str]:
    return [path for path, _ in server.requests]


# -- presence and pulls ----------------------------------------------------------------------------


def test_a_present_model_is_not_pulled(fake_ollama: FakeOllama) -> None:
    events: list[PullEvent] = []

    entry = ensure_model(Settings(model="smollm2:135m"), events.append)

    assert entry.name == "smollm2:135m" and entry.digest == "0" * 64
    assert events == [] and fake_ollama.pull_requests == []
    assert paths(fake_ollama) == ["/api/tags"]


def test_a_name_without_tag_means_latest(fake_ollama: FakeOllama) -> None:
    fake_ollama.models = ("llama3.2:latest",)
    assert ensure_model(Settings(model="llama3.2")).name == "llama3.2:latest"


def test_a_missing_model_is_pulled_with_progress_summed_per_digest(
    fake_ollama: FakeOllama,
) -> None:
    fake_ollama.add_pullable("qwen2.5:0.5b", [("sha256:aaa", 1000), ("sha256:bbb", 500)], steps=4)
    events: list[PullEvent] = []
    tally = PullTally()
    overall: list[tuple[int, int]] = []

    def on_event(event: PullEvent) -> None:
        events.append(event)
        tally.update(event)
        overall.append((tally.completed, tally.total))

    entry = ensure_model(Settings(model="qwen2.5:0.5b"), on_event)

    assert entry.name == "qwen2.5:0.5b"
    assert fake_ollama.pull_requests == [
        {"model": "qwen2.5:0.5b", "insecure": False, "stream": True}
    ]
    assert events[0].status == "pulling manifest" and events[-1].status == "success"
    assert {e.digest for e in events if e.digest} == {"sha256:aaa", "sha256:bbb"}
    assert all(e.model == "qwen2.5:0.5b" for e in events)
    assert (tally.completed, tally.total) == (1500, 1500)
    assert tally.layers == {"sha256:aaa": (1000, 1000), "sha256:bbb": (500, 500)}
    completed = [done for done, _ in overall]
    assert completed == sorted(completed)  # never goes backwards
    assert (1250, 1500) in overall  # the whole first layer plus half the second
    assert paths(fake_ollama) == ["/api/tags", "/api/pull", "/api/tags"]


def test_auto_pull_off_names_the_model_and_the_pull_command(fake_ollama: FakeOllama) -> None:
    fake_ollama.add_pullable("qwen2.5:0.5b")

    with pytest.raises(ModelError) as caught:
        ensure_model(Settings(model="qwen2.5:0.5b", auto_pull=False))

    assert "qwen2.5:0.5b" in caught.value.message and fake_ollama.url in caught.value.message
    hint = caught.value.hint or ""
    assert "`ollama pull qwen2.5:0.5b`" in hint and "smollm2:135m" in hint
    assert fake_ollama.pull_requests == []


def test_no_network_for_a_pull_says_what_to_do(fake_ollama: FakeOllama) -> None:
    fake_ollama.pull_error = OFFLINE

    with pytest.raises(ModelError) as caught:
        ensure_model(Settings(model="qwen2.5:0.5b"))

    assert caught.value.message.startswith("No network to pull 'qwen2.5:0.5b'")
    assert caught.value.hint == (
        "Pull it on a connected machine with `ollama pull qwen2.5:0.5b`, or choose a model you "
        "have: smollm2:135m."
    )
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_model_the_registry_does_not_have(fake_ollama: FakeOllama) -> None:
    with pytest.raises(ModelError) as caught:
        ensure_model(Settings(model="no-such-model:7b"))

    assert "could not be found" in caught.value.message
    assert "file does not exist" in caught.value.message
    assert "smollm2:135m" in (caught.value.hint or "")


def test_an_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(ModelError) as caught:
        ensure_model(Settings())
    assert caught.value.message == "Could not reach Ollama at http://127.0.0.1:9."


def test_the_rich_bar_draws_pull_events(fake_ollama: FakeOllama) -> None:
    fake_ollama.add_pullable("qwen2.5:0.5b", [("sha256:" + "a" * 64, 2_000_000)])
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=120)

    with PullProgress(console) as bar:
        ensure_model(Settings(model="qwen2.5:0.5b"), bar)
        assert (bar.tally.completed, bar.tally.total) == (2_000_000, 2_000_000)

    text = out.getvalue()
    assert "Pulling qwen2.5:0.5b" in text and "2.0" in text and "MB" in text

    quiet = io.StringIO()
    ensure_model_with_progress(Settings(), console=Console(file=quiet))
    assert quiet.getvalue() == ""  # present model: no bar at all


# -- model facts -----------------------------------------------------------------------------------


def test_model_info_reads_capabilities_and_context_length(fake_ollama: FakeOllama) -> None:
    info = model_info(Settings())

    assert info.name == "smollm2:135m" and info.digest == "0" * 64
    assert info.capabilities == frozenset({"completion", "tools"}) and info.supports_tools
    assert info.context_length == 8192
    assert (info.family, info.parameter_size, info.quantization) == ("llama", "135M", "Q8_0")
    assert not info.inferred
    shows = [body for path, body in fake_ollama.requests if path == "/api/show"]
    assert shows == [{"model": "smollm2:135m"}]

    assert model_info(Settings()) == info  # in-process cache: no second /api/show
    assert paths(fake_ollama).count("/api/show") == 1


def test_context_length_follows_the_architecture(fake_ollama: FakeOllama) -> None:
    fake_ollama.show_overrides["smollm2:135m"] = {
        "model_info": {
            "general.architecture": "qwen2",
            "llama.context_length": 99,
            "qwen2.context_length": 32768,
        },
        "capabilities": ["completion", "tools", "thinking", "vision"],
    }
    info = model_info(Settings())
    assert info.context_length == 32768
    assert info.capabilities == frozenset({"completion", "tools", "thinking", "vision"})


@pytest.mark.parametrize(
    ("template", "tools"),
    [
        ("{{ if .Tools }}<tools>{{ range .Tools }}{{ . }}{{ end }}</tools>{{ end }}", True),
        ("{{- range .Messages }}{{ .Content }}{{ end }}", False),
    ],
)
def test_older_servers_without_capabilities_infer_tools_from_the_template(
    fake_ollama: FakeOllama, template: str, tools: bool
) -> None:
    fake_ollama.show_overrides["smollm2:135m"] = {"capabilities": None, "template": template}
    info = model_info(Settings())
    assert info.inferred
    assert info.supports_tools is tools
    assert "completion" in info.capabilities


def test_model_info_is_cached_on_disk_per_digest(
    fake_ollama: FakeOllama, isolated_state: Path
) -> None:
    first = model_info(Settings())
    cached = list((isolated_state / "cache" / "model_info").glob("*.json"))
    assert [p.name for p in cached] == ["0" * 64 + ".json"]

    code = (
        "import json; from ollagraph.agents.config import Settings; "
        "from ollagraph.agents.readiness import model_info; "
        "print(json.dumps(model_info(Settings()).to_json()))"
    )
    env = {**os.environ, "OLLAGRAPH_HOME": str(isolated_state), "OLLAMA_HOST": fake_ollama.url}
    before = len(fake_ollama.requests)
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=REPO,
        check=True,
    )
    assert json.loads(done.stdout) == first.to_json()
    assert paths(fake_ollama)[before:] == ["/api/tags"]  # the other process read the disk cache

    # The model is pulled again and changed: a new digest, so /api/show is read again.
    fake_ollama.digests["smollm2:135m"] = "f" * 64
    fake_ollama.show_overrides["smollm2:135m"] = {"capabilities": ["completion"]}
    again = model_info(Settings())
    assert again.digest == "f" * 64 and not again.supports_tools
    assert paths(fake_ollama).count("/api/show") == 2


def test_model_info_for_a_missing_model(fake_ollama: FakeOllama) -> None:
    with pytest.raises(ModelError, match="not available") as caught:
        model_info(Settings(model="absent:1b"))
    assert "ollama pull absent:1b" in (caught.value.hint or "")


# -- warm-up -----------------------------------------------------------------------------------


def test_warm_up_loads_with_keep_alive_and_the_load_answer_is_not_an_answer(
    fake_ollama: FakeOllama,
) -> None:
    seconds = warm_up(Settings(keep_alive="10m"))

    assert seconds >= 0
    assert fake_ollama.chat_requests == [
        {"model": "smollm2:135m", "stream": False, "keep_alive": "10m", "messages": [], "tools": []}
    ]
    assert fake_ollama.remaining == 0  # no scripted reply was consumed


def test_warm_up_sends_numbers_as_numbers_and_skips_keep_alive_zero(
    fake_ollama: FakeOllama,
) -> None:
    warm_up(Settings(keep_alive="-1"))
    assert fake_ollama.chat_requests[-1]["keep_alive"] == -1
    assert warm_up(Settings(keep_alive="0")) == 0.0
    assert len(fake_ollama.chat_requests) == 1


def test_warm_up_of_a_missing_model(fake_ollama: FakeOllama) -> None:
    with pytest.raises(ModelError, match="'absent:1b' is not available"):
        warm_up(Settings(model="absent:1b"))


def test_is_load_response_on_what_servers_send(fake_ollama: FakeOllama) -> None:
    import ollama

    client = ollama.Client(host=fake_ollama.url, timeout=10)
    loaded = client.chat(model="smollm2:135m", messages=[])
    assert loaded.done and loaded.done_reason == "load"
    assert is_load_response(loaded) and not is_final_response(loaded)
    as_dict = loaded.model_dump()
    assert is_load_response(as_dict) and not is_final_response(as_dict)

    fake_ollama.enqueue_text("Hello there.")
    chunks = list(
        client.chat(model="smollm2:135m", messages=[{"role": "user", "content": "hi"}], stream=True)
    )
    assert not any(is_load_response(c) for c in chunks)
    assert [is_final_response(c) for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert is_load_response({"done": True, "done_reason": "load", "message": {"content": ""}})
    assert not is_load_response({"done": True, "done_reason": "stop"})
    assert not is_load_response({"done": True})  # servers before 0.4 send no done_reason


# -- exact request bodies ------------------------------------------------------------------------


def test_request_bodies_are_exact(httpserver: HTTPServer) -> None:
    tags = {
        "models": [{"name": "smollm2:135m", "model": "smollm2:135m", "digest": "d" * 64, "size": 1}]
    }
    show = {
        "template": "{{ .Prompt }}",
        "details": {"family": "llama", "parameter_size": "135M", "quantization_level": "Q8_0"},
        "model_info": {"general.architecture": "llama", "llama.context_length": 8192},
        "capabilities": ["completion"],
    }
    pull_stream = "\n".join(
        json.dumps(part)
        for part in (
            {"status": "pulling manifest"},
            {"status": "pulling x", "digest": "x", "total": 10, "completed": 10},
            {"status": "success"},
        )
    )
    load = {
        "model": "smollm2:135m",
        "created_at": "2025-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": ""},
        "done_reason": "load",
        "done": True,
    }
    httpserver.expect_ordered_request("/api/tags", method="GET").respond_with_json({"models": []})
    httpserver.expect_ordered_request(
        "/api/pull",
        method="POST",
        json={"model": "smollm2:135m", "insecure": False, "stream": True},
    ).respond_with_data(pull_stream, content_type="application/x-ndjson")
    httpserver.expect_ordered_request("/api/tags", method="GET").respond_with_json(tags)
    httpserver.expect_ordered_request("/api/tags", method="GET").respond_with_json(tags)
    httpserver.expect_ordered_request(
        "/api/show", method="POST", json={"model": "smollm2:135m"}
    ).respond_with_json(show)
    httpserver.expect_ordered_request(
        "/api/chat",
        method="POST",
        json={
            "model": "smollm2:135m",
            "stream": False,
            "keep_alive": "30m",
            "messages": [],
            "tools": [],
        },
    ).respond_with_json(load)

    settings = Settings(ollama_host=httpserver.url_for("/").rstrip("/"), keep_alive="30m")
    ensure_model(settings)
    info = model_info(settings)
    warm_up(settings)

    httpserver.check_assertions()
    assert info.context_length == 8192 and info.capabilities == frozenset({"completion"})
    assert len(httpserver.log) == 6


# -- tool strategy from the model's facts -------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "floor", "expected"),
    [
        ("135M", None, "constrained"),  # reports tools, but a 135M model is kept on the schema
        ("1.5B", None, "constrained"),
        ("8B", None, "native"),
        ("", None, "native"),  # size unknown: trust the reported capability
        ("135M", 0.0, "native"),  # the floor turned off
        ("1.5B", 1.0, "native"),
    ],
)
def test_auto_strategy_keeps_small_models_on_constrained_decoding(
    fake_ollama: FakeOllama,
    monkeypatch: pytest.MonkeyPatch,
    size: str,
    floor: float | None,
    expected: str,
) -> None:
    from ollagraph.agents.models import chat_model
    from ollagraph.agents.strategy import resolve_strategy

    monkeypatch.delenv("OLLAGRAPH_NATIVE_MIN_PARAMS")
    details = {"family": "llama", "parameter_size": size, "quantization_level": "Q8_0"}
    fake_ollama.show_overrides["smollm2:135m"] = {"details": details}
    settings = Settings() if floor is None else Settings(native_min_params=floor)
    assert resolve_strategy(settings, chat_model(settings)) == expected


def test_auto_strategy_is_constrained_without_the_tools_capability(fake_ollama: FakeOllama) -> None:
    from ollagraph.agents.models import chat_model
    from ollagraph.agents.strategy import resolve_strategy

    fake_ollama.show_overrides["smollm2:135m"] = {"capabilities": ["completion"]}
    settings = Settings(native_min_params=0.0)
    assert resolve_strategy(settings, chat_model(settings)) == "constrained"
