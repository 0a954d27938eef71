"""The managed model server: real processes, real HTTP on 127.0.0.1.

An executable named `ollama` is placed first on PATH. It is a shell script that, called as
`ollama serve`, runs the scripted server (`python -m tests.fake_ollama`) on the port in
`OLLAMA_HOST` — exactly what the daemon manager passes to a real `ollama serve`. Variants of the
script start slowly, exit at once, or leave a child process behind, to test each failure path.
Every process a test starts records its pid, and the teardown kills those process groups.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollagraph.agents import daemon
from ollagraph.agents.config import Settings
from ollagraph.agents.daemon import ensure_server, probe, server_command, with_recovery
from ollagraph.agents.errors import ModelError
from ollagraph.agents.readiness import (
    PullEvent,
    PullTally,
    ensure_model,
    list_models,
    model_info,
    warm_up,
)
from tests.fake_ollama import FAKE_VERSION, FakeOllama
from tests.ports import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

SERVE = f'cd {REPO} && exec {sys.executable} -m tests.fake_ollama --port "$port"'
ENGINE = f"exec {sys.executable} -m ollagraph.agents.engine serve"


def is_running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(condition: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


class FakeOllamaBin:
    """Writes `ollama` scripts into a folder placed first on PATH; records every pid started."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.calls = folder / "calls.log"
        self.pids = folder / "pids.log"
        self.path = folder / "ollama"

    def install(self, body: str = SERVE) -> Path:
        script = textwrap.dedent(
            """\
            #!/bin/sh
            # A stand-in for `ollama`: `ollama serve` runs a test server on OLLAMA_HOST's port.
            echo "$*" >> {calls}
            echo $$ >> {pids}
            [ "$1" = serve ] || {{ echo "unsupported: $*" >&2; exit 2; }}
            port="${{OLLAMA_HOST##*:}}"
            """
        ).format(calls=self.calls, pids=self.pids)
        self.path.write_text(script + body + "\n")
        self.path.chmod(0o755)
        return self.path

    @property
    def started(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []

    def recorded_pids(self) -> list[int]:
        if not self.pids.exists():
            return []
        return [int(line) for line in self.pids.read_text().split() if line.strip()]


@pytest.fixture
def ollama_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOllamaBin]:
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    fake = FakeOllamaBin(folder)
    yield fake
    daemon.clear_current_server(stop=True)
    for pid in fake.recorded_pids():  # whatever a failed test left behind
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


@pytest.fixture(autouse=True)
def _forget_current_server() -> Iterator[None]:
    yield
    daemon.clear_current_server(stop=True)


def local_settings(**changes: object) -> Settings:
    values: dict[str, object] = {
        "ollama_host": f"http://127.0.0.1:{free_port()}",
        "server_start_timeout": 15.0,
    }
    values.update(changes)
    return Settings(**values)  # type: ignore[arg-type]


def test_starts_ollama_from_path_owns_it_and_stops_its_process_group(
    ollama_bin: FakeOllamaBin, isolated_state: Path
) -> None:
    child_pid_file = ollama_bin.folder / "child.pid"
    script = ollama_bin.install(f"sleep 60 & echo $! > {child_pid_file}\n{SERVE}")
    settings = local_settings()
    assert probe(settings.host) is None

    handle = ensure_server(settings)

    assert handle.owned and handle.kind == "ollama"
    assert handle.command == (str(script), "serve")
    assert handle.version == FAKE_VERSION
    assert probe(handle.url) == FAKE_VERSION
    assert ollama_bin.started == ["serve"]
    assert daemon.current_server() is handle
    assert ensure_server(settings) is handle  # idempotent while it answers
    assert ollama_bin.started == ["serve"]
    log = isolated_state / "logs" / "server.log"
    assert handle.log_path == log
    assert "starting the ollama server" in log.read_text()
    assert "OLLAMA_HOST=127.0.0.1:" in log.read_text()
    pid = handle.pid
    child = int(child_pid_file.read_text())
    assert pid is not None and is_running(pid) and is_running(child)

    handle.stop()

    assert wait_until(lambda: not is_running(pid))
    assert wait_until(lambda: not is_running(child)), "the server's child outlived stop()"
    assert probe(handle.url) is None
    handle.stop()  # idempotent


def test_a_server_it_did_not_start_is_left_alone(ollama_bin: FakeOllamaBin) -> None:
    ollama_bin.install()
    with FakeOllama() as running:
        handle = ensure_server(Settings(ollama_host=running.url))

        assert not handle.owned and handle.kind == "external"
        assert handle.version == FAKE_VERSION
        handle.stop()
        handle.stop(force=True)
        assert handle.recover() is False
        assert probe(running.url) == FAKE_VERSION
        assert ollama_bin.started == []

        calls = {"n": 0}

        def failing() -> None:
            calls["n"] += 1
            raise ConnectionError("refused")

        with pytest.raises(ConnectionError):
            with_recovery(failing, handle)
        assert calls["n"] == 1  # a server we do not own is never restarted
    assert ollama_bin.started == []


def test_a_killed_server_is_restarted_once_then_fails_clearly(
    ollama_bin: FakeOllamaBin, isolated_state: Path
) -> None:
    ollama_bin.install()
    settings = local_settings()
    handle = ensure_server(settings)
    first = handle.pid
    assert first is not None
    assert [m.name for m in list_models(settings)] == ["smollm2:135m"]

    os.kill(first, signal.SIGKILL)
    assert handle.process is not None
    handle.process.wait(timeout=5)
    with pytest.raises(ModelError, match="Could not reach Ollama"):
        list_models(settings)

    models = with_recovery(lambda: list_models(settings))

    assert [m.name for m in models] == ["smollm2:135m"]
    assert handle.restarts == 1 and handle.generation == 1
    assert handle.pid not in (None, first)
    assert ollama_bin.started == ["serve", "serve"]
    log = (isolated_state / "logs" / "server.log").read_text()
    assert "restarting after the server was killed by SIGKILL" in log

    second = handle.pid
    assert second is not None
    os.kill(second, signal.SIGKILL)
    handle.process.wait(timeout=5)
    with pytest.raises(ModelError, match="stopped unexpectedly twice") as caught:
        with_recovery(lambda: list_models(settings))
    assert str(isolated_state / "logs" / "server.log") in caught.value.message
    assert ollama_bin.started == ["serve", "serve"]


def test_start_timeout_reports_the_log_tail_and_kills_the_server(
    ollama_bin: FakeOllamaBin,
) -> None:
    ollama_bin.install('echo "loading weights..."\necho "still loading, port $port"\nexec sleep 30')
    settings = local_settings(server_start_timeout=1.0)

    started = time.monotonic()
    with pytest.raises(ModelError) as caught:
        ensure_server(settings)

    assert time.monotonic() - started < 5
    error = caught.value
    assert "did not answer" in error.message and settings.host in error.message
    assert error.hint is not None
    assert "loading weights..." in error.hint and "still loading" in error.hint
    (pid,) = ollama_bin.recorded_pids()
    assert wait_until(lambda: not is_running(pid)), "the timed-out server was left running"
    assert daemon.current_server() is None


def test_a_server_that_exits_at_once_reports_its_exit_code(ollama_bin: FakeOllamaBin) -> None:
    ollama_bin.install(
        'echo "Error: listen tcp 127.0.0.1:$port: bind: permission denied" >&2\nexit 3'
    )

    with pytest.raises(ModelError) as caught:
        ensure_server(local_settings())

    assert "exited with code 3" in caught.value.message
    assert caught.value.hint is not None
    assert "bind: permission denied" in caught.value.hint


def test_a_remote_host_is_never_managed(ollama_bin: FakeOllamaBin) -> None:
    ollama_bin.install()
    settings = Settings(ollama_host="http://ollama.invalid:11434")

    with pytest.raises(ModelError) as caught:
        ensure_server(settings, probe_timeout=2.0)

    assert "http://ollama.invalid:11434" in caught.value.message
    assert ollama_bin.started == []


def test_manage_server_off_asks_the_user_to_start_one(ollama_bin: FakeOllamaBin) -> None:
    ollama_bin.install()
    settings = local_settings(manage_server=False)

    with pytest.raises(ModelError) as caught:
        ensure_server(settings)

    assert caught.value.message == f"Could not reach Ollama at {settings.host}."
    assert "ollama serve" in (caught.value.hint or "")
    assert "agent serve" in (caught.value.hint or "")
    assert ollama_bin.started == []


def test_something_that_is_not_ollama_on_the_port(
    ollama_bin: FakeOllamaBin, httpserver: object
) -> None:
    ollama_bin.install()
    url = httpserver.url_for("/").rstrip("/")  # type: ignore[attr-defined]

    with pytest.raises(ModelError, match="not an Ollama server"):
        probe(url)
    with pytest.raises(ModelError, match="not an Ollama server"):
        ensure_server(Settings(ollama_host=url))
    assert ollama_bin.started == []


def test_leave_server_running(ollama_bin: FakeOllamaBin) -> None:
    ollama_bin.install()
    handle = ensure_server(local_settings(leave_server_running=True))
    assert handle.owned and handle.leave_running

    handle.stop()
    assert probe(handle.url) == FAKE_VERSION

    handle.stop(force=True)
    assert probe(handle.url) is None


def test_an_owned_server_stops_when_python_exits(
    ollama_bin: FakeOllamaBin, isolated_state: Path
) -> None:
    ollama_bin.install()
    settings = local_settings()
    code = (
        "import json; from ollagraph.agents.config import Settings; "
        "from ollagraph.agents.daemon import ensure_server; "
        f"h = ensure_server(Settings(ollama_host={settings.host!r}, server_start_timeout=15)); "
        "print(json.dumps({'pid': h.pid, 'owned': h.owned}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "OLLAGRAPH_HOME": str(isolated_state)},
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["owned"] is True
    assert wait_until(lambda: not is_running(result["pid"]))
    assert probe(settings.host) is None


def test_the_command_prefers_ollama_then_the_embedded_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert server_command(Settings()) == [sys.executable, "-m", "ollagraph.agents.engine", "serve"]

    fake = FakeOllamaBin(empty)
    path = fake.install()
    assert server_command(Settings()) == [str(path), "serve"]
    assert server_command(Settings(ollama_path=str(path))) == [str(path), "serve"]
    with pytest.raises(ModelError, match="not an executable"):
        server_command(Settings(ollama_path=str(tmp_path / "missing")))


@pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="llama-cpp-python is not installed, so the embedded engine cannot run GGUF models",
)
def test_the_real_embedded_engine_as_ollama_on_path(
    ollama_bin: FakeOllamaBin, isolated_state: Path
) -> None:
    from langchain_ollama import ChatOllama

    ollama_bin.install(ENGINE)
    settings = local_settings(model="smollm2:135m", server_start_timeout=60.0, keep_alive="1m")

    handle = ensure_server(settings)
    assert handle.owned and handle.version and ollama_bin.started == ["serve"]

    events: list[PullEvent] = []
    entry = ensure_model(settings, events.append)
    assert entry.name == "smollm2:135m"
    assert events[0].status == "pulling manifest" and events[-1].status == "success"
    tally = PullTally()
    for event in events:
        tally.update(event)
    assert tally.total > 10_000_000 and tally.completed == tally.total  # the GGUF's bytes

    info = model_info(settings)
    assert "completion" in info.capabilities and info.context_length
    warm_up(settings)

    chat = ChatOllama(model="smollm2:135m", base_url=handle.url, temperature=0, num_predict=8)
    reply = chat.invoke("Say hello.")
    assert isinstance(reply.content, str) and reply.content.strip()

    pid = handle.pid
    assert pid is not None
    handle.stop()
    assert wait_until(lambda: not is_running(pid))
    assert probe(handle.url) is None
    assert "starting the ollama server" in (isolated_state / "logs" / "server.log").read_text()
