"""Durability: chat threads, ingestion and the model server survive crashes (issue 5, §3).

Every test here runs the real `agent` command as a subprocess and kills it with SIGKILL at a
chosen moment, then checks what is on disk with the real stores (SQLite checkpoints, DuckDB).
The model is the scripted Ollama server (`tests/fake_ollama.py`, real HTTP, not a model); the
embedding model is the real MiniLM.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ollagraph.agents.config import Settings
from ollagraph.tools.context import using_settings
from ollagraph.tools.documents import release_store, search_documents
from ollagraph.tools.ingest import split_into_nodes
from ollagraph.tools.loaders import load_file
from ollagraph.tools.store_open import open_store
from tests.fake_ollama import FakeOllama, ScriptedReply
from tests.ports import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
AGENT = [sys.executable, "-m", "ollagraph.agents.cli"]


def wait_for(condition: Callable[[], bool], timeout: float, what: str | Callable[[], str]) -> None:
    """Poll `condition` until it holds; fail naming `what` (or the text it returns) on timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            detail = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:g} s waiting: {detail}")
        time.sleep(0.05)


@dataclass
class GatedFakeOllama(FakeOllama):
    """The scripted server, with a gate: while it is closed, chat replies are held.

    A chat request that arrives while the gate is closed is recorded (so a test sees the turn
    is in progress) and held without an answer. When the gate opens, its connection is dropped
    without a reply (a `TimeoutError`, which the HTTP server handles quietly), so a held
    request never consumes a reply queued for a later one.
    """

    gate: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.gate.set()

    def _pop(self) -> ScriptedReply | None:
        if not self.gate.is_set():
            self.gate.wait(timeout=120)
            raise TimeoutError("GatedFakeOllama: a held request was released")
        return super()._pop()


@pytest.fixture
def gated_ollama(monkeypatch: pytest.MonkeyPatch) -> Iterator[GatedFakeOllama]:
    with GatedFakeOllama() as server:
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        monkeypatch.setenv("OLLAGRAPH_NATIVE_MIN_PARAMS", "0")  # scripted native tool calls
        yield server
        server.gate.set()  # let a held handler thread finish


class Agent:
    """`agent ARGS...` as a child process: stdin is a pipe, stdout and stderr go to files."""

    def __init__(
        self,
        tmp: Path,
        *args: str,
        name: str = "agent",
        preexec_fn: Callable[[], None] | None = None,
        **env: str,
    ) -> None:
        self.out_path = tmp / f"{name}.out"
        self.err_path = tmp / f"{name}.err"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.process = subprocess.Popen(
                [*AGENT, *args],
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                start_new_session=True,
                preexec_fn=preexec_fn,
            )

    @property
    def out(self) -> str:
        return self.out_path.read_text(encoding="utf-8", errors="replace")

    @property
    def err(self) -> str:
        return self.err_path.read_text(encoding="utf-8", errors="replace")

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def kill(self) -> None:
        """SIGKILL the process (and anything it started in its group)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def finish(self, timeout: float = 120) -> int:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        return self.process.wait(timeout=timeout)

    def cleanup(self) -> None:
        if self.process.poll() is None:
            self.kill()


# -- 1. chat threads ---------------------------------------------------------------------------


ROLES = ("user", "assistant")


def script_direct_answer(server: FakeOllama, answer: str) -> None:
    """One turn with no tool call: a plan, DONE from the act step, then the answer."""
    server.enqueue_text("1. answer directly")
    server.enqueue_text("DONE")
    server.enqueue_text(answer)


@pytest.mark.parametrize("finished", [1, 0], ids=["second-turn", "first-turn"])
def test_chat_killed_mid_turn_keeps_finished_turns_and_retries_cleanly(
    gated_ollama: GatedFakeOllama, tmp_path: Path, finished: int
) -> None:
    from ollagraph.agents.session import Session

    thread = "durable-1"
    questions = ["First question?", "Second question?"][: finished + 1]
    answers = [f"Answer {number}." for number in range(1, finished + 2)]
    turns = [pair for q, a in zip(questions, answers, strict=True) for pair in (q, a)]
    chat = Agent(tmp_path, "chat", "--tools", "sql_query", "--thread", thread, name="chat1")
    try:
        for question, answer in zip(questions[:finished], answers[:finished], strict=True):
            script_direct_answer(gated_ollama, answer)
            chat.send(question)
            wait_for(lambda answer=answer: answer in chat.out, 120, lambda: chat.err)
        wait_for(lambda: chat.out.count("> ") > finished, 60, lambda: chat.err)
        asked = len(gated_ollama.chat_requests)
        gated_ollama.gate.clear()  # the next turn's model call is held: the turn is in progress
        chat.send(questions[finished])
        wait_for(lambda: len(gated_ollama.chat_requests) > asked, 60, "the turn to call the model")
        chat.kill()
    finally:
        chat.cleanup()
        gated_ollama.gate.set()
    assert chat.process.returncode == -signal.SIGKILL

    # The checkpoint, read with the Session API: every finished turn, and the killed turn
    # absent (it cannot have finished: its first model call never got an answer).
    saved = Session(Settings(), thread_id=thread).history()
    assert saved == list(zip(ROLES * finished, turns[: 2 * finished], strict=True))

    script_direct_answer(gated_ollama, answers[finished])
    asked = len(gated_ollama.chat_requests)
    again = Agent(tmp_path, "chat", "--tools", "sql_query", "--thread", thread, name="chat2")
    try:
        for line in ("/history", questions[finished], "/history", "/exit"):
            again.send(line)
        assert again.finish() == 0, again.err
    finally:
        again.cleanup()
    assert answers[finished] in again.out
    assert ("(1 earlier turns)" in again.err) == bool(finished)
    assert again.err.count(f"user: {questions[finished]}") == 1  # in the second /history only
    retry_plan = gated_ollama.chat_requests[asked + 1]["messages"]  # after the warm-up request
    assert [m["role"] for m in retry_plan] == ["system", *ROLES * finished, "user"]
    assert [m["content"] for m in retry_plan[1:]] == [*turns[: 2 * finished], questions[finished]]
    assert Session(Settings(), thread_id=thread).history() == list(
        zip(ROLES * (finished + 1), turns, strict=True)
    )


# -- 2. and 3. ingestion ----------------------------------------------------------------------

CHUNKING = ("--chunk-size", "64", "--chunk-overlap", "8")
WORDS = (
    "duck",
    "pond",
    "feather",
    "squeak",
    "bath",
    "yellow",
    "rubber",
    "float",
    "beak",
    "orange",
    "parcel",
    "refund",
    "warranty",
    "colour",
    "collection",
    "loyalty",
    "winter",
    "summer",
    "garden",
    "lake",
    "river",
    "bubble",
    "towel",
    "shelf",
)


def write_notes(folder: Path, count: int, sentences: int) -> list[Path]:
    """`count` distinct Markdown notes of `sentences` ten-word sentences (~5 per 64-token chunk)."""
    folder.mkdir(parents=True, exist_ok=True)
    notes = []
    for number in range(count):
        rng = random.Random(number)
        text = [
            " ".join(rng.choice(WORDS) for _ in range(10)).capitalize() + "."
            for _ in range(sentences)
        ]
        note = folder / f"note-{number:02d}.md"
        note.write_text(f"# Note {number}\n\n" + " ".join(text) + "\n", encoding="utf-8")
        notes.append(note)
    return notes


def store_settings(store: Path) -> Settings:
    return Settings(docs=str(store), chunk_size=64, chunk_overlap=8)


def expected_chunks(path: Path, settings: Settings) -> dict[str, str]:
    """Node id -> embedded text of every chunk the file should have (ids are deterministic)."""
    from llama_index.core.schema import MetadataMode

    nodes = split_into_nodes(load_file(path), settings)
    return {node.node_id: node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes}


def check_store(store: Path, notes: list[Path]) -> list[Path]:
    """Check the store is consistent and searchable; return the notes it holds.

    Consistent: every `files` row matches its file's bytes (SHA-256) and has exactly that file's
    chunks (by deterministic node id, so no chunk of a half-written file), no chunk belongs to a
    file without a row, and the chunk count is the sum of the rows'. Searchable: a search for a
    stored chunk's own text finds that file first, through the agent's `search_documents`.
    """
    settings = store_settings(store)
    handle = open_store(store, create=False, read_only=True)
    try:
        records = handle.file_records()
        stored = handle.client.execute(
            "SELECT node_id, json_extract_string(metadata_, '$.file_path') FROM documents"
        ).fetchall()
        total = handle.count()
    finally:
        handle.close()
    by_file: dict[str, set[str]] = {}
    for node, file_path in stored:
        by_file.setdefault(file_path, set()).add(node)
    held = [Path(record.path) for record in records]
    assert set(held) <= set(notes)
    assert set(by_file) == {record.path for record in records}, "chunks without a files row"
    for record in records:
        path = Path(record.path)
        assert record.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert by_file[record.path] == set(expected_chunks(path, settings)), record.path
        assert record.chunks == len(by_file[record.path])
    assert total == len(stored) == sum(record.chunks for record in records)
    if held:
        probe_file = held[len(held) // 2]
        text = next(iter(expected_chunks(probe_file, settings).values()))
        try:
            with using_settings(settings):
                found = search_documents(text, 3)
        finally:
            release_store(store)
        assert found.startswith(f"[1] {probe_file.name} "), found
    return sorted(held)


def test_ingest_killed_midway_leaves_a_consistent_store_and_rerun_completes(
    tmp_path: Path,
) -> None:
    notes = write_notes(tmp_path / "notes", 40, sentences=6)
    store = tmp_path / "store.duckdb"
    first = Agent(tmp_path, "ingest", str(tmp_path / "notes"), "--docs", str(store), *CHUNKING)
    try:
        wait_for(lambda: "[1/40] added" in first.err, 180, lambda: first.err)
        first.kill()
    finally:
        first.cleanup()
    assert first.process.returncode == -signal.SIGKILL
    done = check_store(store, notes)
    assert 1 <= len(done) < 40, f"the kill did not land midway ({len(done)} files done)"
    assert done == notes[: len(done)]  # files are ingested in order, each one whole

    again = Agent(
        tmp_path, "ingest", str(tmp_path / "notes"), "--docs", str(store), *CHUNKING, name="rerun"
    )
    assert again.finish(180) == 0, again.err
    assert f"{40 - len(done)} added, 0 updated, {len(done)} unchanged, 0 skipped" in again.err
    assert check_store(store, notes) == notes


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `folder` (root only; skips where mounting is not allowed)."""
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def limit_file_size(size: int) -> Callable[[], None]:
    """A `preexec_fn` that caps the size of any file the child writes (EFBIG past it)."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write, do not kill the child
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return limit


@pytest.mark.parametrize("disk", ["tmpfs", "file_size_limit"])
def test_disk_full_during_ingest_is_one_clear_error_and_keeps_the_store(
    tmp_path: Path, disk: str
) -> None:
    notes = write_notes(tmp_path / "notes", 12, sentences=12)
    with contextlib.ExitStack() as stack:
        if disk == "tmpfs":
            folder = stack.enter_context(small_tmpfs(tmp_path / "disk", "48k"))
            preexec = None
        else:
            folder = tmp_path / "disk"
            folder.mkdir()
            preexec = limit_file_size(48 * 1024)
        store = folder / "store.duckdb"
        args = ("ingest", str(tmp_path / "notes"), "--docs", str(store), *CHUNKING)
        full = Agent(tmp_path, *args, name="full", preexec_fn=preexec)
        try:
            code = full.finish(180)
        finally:
            full.cleanup()
        assert code == 1, full.err
        errors = [line for line in full.err.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and errors[0].startswith("Error: Out of disk space"), full.err
        assert os.strerror(errno.ENOSPC if disk == "tmpfs" else errno.EFBIG) in errors[0]
        assert "Free some disk space" in full.err and "Traceback" not in full.err
        done = check_store(store, notes)
        assert 1 <= len(done) < 12, f"{len(done)} files fit on the small disk"
        assert done == notes[: len(done)]

        if disk == "tmpfs":  # make room, then the same command finishes the job
            subprocess.run(["mount", "-o", "remount,size=16m", str(folder)], check=True)
        again = Agent(tmp_path, *args, name="again")
        assert again.finish(180) == 0, again.err
        assert f"{12 - len(done)} added, 0 updated, {len(done)} unchanged" in again.err
        assert check_store(store, notes) == notes


# -- 4. the managed model server ---------------------------------------------------------------

COUNT_SQL = "SELECT COUNT(*) AS n FROM ducks"
PLAN = {"content": "1. sql_query: count the ducks\n2. answer"}
CALL = {"tool_calls": [{"name": "sql_query", "arguments": {"query": COUNT_SQL}}]}
DONE = {"content": "DONE"}
ANSWER = {"content": "There are 60 ducks."}


def fake_ollama_on_path(folder: Path, scripts: list[dict[str, object]]) -> Path:
    """Put an `ollama` executable first on PATH whose N-th `ollama serve` plays `scripts[N-1]`.

    Each start runs `tests.durability_ollama` on OLLAMA_HOST's port, appends its pid to
    `folder/pids.log` and its arguments to `folder/calls.log`.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for number, script in enumerate(scripts, start=1):
        (folder / f"serve-{number}.json").write_text(json.dumps(script), encoding="utf-8")
    executable = folder / "ollama"
    executable.write_text(
        textwrap.dedent(
            f"""\
            #!/bin/sh
            echo "$*" >> {folder}/calls.log
            echo $$ >> {folder}/pids.log
            [ "$1" = serve ] || exit 2
            n=$(wc -l < {folder}/calls.log)
            port="${{OLLAMA_HOST##*:}}"
            cd {REPO} && exec {sys.executable} -m tests.durability_ollama --port "$port" \\
                --script {folder}/serve-$n.json
            """
        )
    )
    executable.chmod(0o755)
    return executable


@pytest.fixture
def managed_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for an `agent` child that starts and owns the `ollama` in tmp_path/bin."""
    folder = tmp_path / "bin"
    folder.mkdir()
    yield {
        "PATH": f"{folder}{os.pathsep}{os.environ.get('PATH', '')}",
        "OLLAMA_HOST": f"http://127.0.0.1:{free_port()}",
        "OLLAGRAPH_MANAGE_SERVER": "true",
        "OLLAGRAPH_SERVER_START_TIMEOUT": "30",
        "OLLAGRAPH_NATIVE_MIN_PARAMS": "0",  # the scripts are native tool calls
    }
    pids = folder / "pids.log"
    for pid in pids.read_text().split() if pids.exists() else []:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(pid), signal.SIGKILL)


def run_agent(tmp: Path, *args: str, env: dict[str, str], timeout: float = 120) -> Agent:
    agent = Agent(tmp, *args, **env)
    try:
        agent.finish(timeout)
    finally:
        agent.cleanup()
    return agent


def test_a_server_killed_mid_run_is_restarted_and_the_run_answers(
    tmp_path: Path, managed_env: dict[str, str], isolated_state: Path
) -> None:
    bin_dir = tmp_path / "bin"
    fake_ollama_on_path(
        bin_dir,
        [
            {"replies": [PLAN], "die_at": 2},  # dies when the act step asks for its reply
            {"replies": [CALL, DONE, ANSWER]},
        ],
    )
    agent = run_agent(
        tmp_path, "ask", "How many ducks?", "--json", "--tools", "sql_query", env=managed_env
    )
    assert agent.process.returncode == 0, agent.err
    doc = json.loads(agent.out)
    assert doc["answer"] == "There are 60 ducks."
    [call] = doc["tool_calls"]
    assert call["ok"] and "| 60 |" in call["output"]
    assert (bin_dir / "calls.log").read_text().splitlines() == ["serve", "serve"]
    log = (isolated_state / "logs" / "server.log").read_text()
    assert "restarting after the server was killed by SIGKILL" in log
    for pid in (bin_dir / "pids.log").read_text().split():  # both stopped when the run ended
        wait_for(lambda pid=pid: not Path(f"/proc/{pid}").exists(), 10, f"server {pid} to end")


def test_a_server_that_dies_again_after_its_restart_is_one_clear_error(
    tmp_path: Path, managed_env: dict[str, str], isolated_state: Path
) -> None:
    bin_dir = tmp_path / "bin"
    fake_ollama_on_path(
        bin_dir,
        [
            {"replies": [PLAN], "die_at": 2},
            {"replies": [CALL, DONE, ANSWER], "die_at": 1},  # the retried request kills it too
        ],
    )
    agent = run_agent(tmp_path, "ask", "How many ducks?", "--tools", "sql_query", env=managed_env)
    print(agent.err)
    assert agent.process.returncode == 1
    assert agent.out == ""
    assert (bin_dir / "calls.log").read_text().splitlines() == ["serve", "serve"]
    log = isolated_state / "logs" / "server.log"
    errors = [line for line in agent.err.splitlines() if line.startswith("Error:")]
    assert errors == [
        f"Error: The model server at {managed_env['OLLAMA_HOST']} stopped unexpectedly twice "
        f"(last was killed by SIGKILL); see {log}."
    ]
    assert "Traceback" not in agent.err
