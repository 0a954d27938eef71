"""Chat threads in PostgreSQL (`checkpoint_db = postgresql://...`) on a real server.

The server is `pgserver`'s PostgreSQL 16 (a dev dependency: real binaries, started in a temporary
folder, reached over its Unix socket); each test gets a database of its own. The model is a
scripted chat model in-process, or the scripted Ollama server (real HTTP) for the `agent chat`
subprocess that is killed mid-turn.
"""

from __future__ import annotations

import signal
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollagraph.agents.checkpoints import close_all, describe, open_checkpointer, redact
from ollagraph.agents.config import Settings
from ollagraph.agents.errors import CheckpointDBError, ConfigError
from ollagraph.agents.session import Session
from tests.fake_ollama import FakeOllama
from tests.integration.test_durability import (
    ROLES,
    Agent,
    GatedFakeOllama,
    script_direct_answer,
    wait_for,
)
from tests.scripted_model import ScriptedChatModel

pytestmark = pytest.mark.integration

pgserver = pytest.importorskip("pgserver")
psycopg = pytest.importorskip("psycopg")
pytest.importorskip("langgraph.checkpoint.postgres")


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A real PostgreSQL server for this module; yields its URL (database `postgres`)."""
    # A short folder: the server's Unix socket path must stay under ~100 characters.
    folder = tempfile.mkdtemp(prefix="ogpg")
    server = pgserver.get_server(folder, cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        close_all()
        server.cleanup()


@pytest.fixture
def database(postgres: str) -> Iterator[str]:
    """A fresh database on the server; yields its URL."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield postgres.replace("/postgres?", f"/{name}?")
    close_all()  # before the database goes: the shared saver holds a pool on it
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def _checkpoint_threads(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute("SELECT DISTINCT thread_id FROM checkpoints")}


def _direct(model: ScriptedChatModel, answer: str) -> ScriptedChatModel:
    """Script one turn with no tool call: a plan, DONE from the act step, the answer."""
    return model.enqueue_text("1. answer directly").enqueue_text("DONE").enqueue_text(answer)


def test_two_turns_survive_a_restart(database: str, isolated_state: Path) -> None:
    settings = Settings(tools=("sql_query",), checkpoint_db=database, native_min_params=0)
    first_model = _direct(ScriptedChatModel(), "Answer one.")
    first = Session(settings, thread_id="pg-1", model_factory=lambda _s: first_model)
    assert first.ask("Question one?").answer == "Answer one."

    close_all()  # a restart: no saver, pool or graph survives into the second session
    later_model = _direct(ScriptedChatModel(), "Answer two.")
    later = Session(settings, thread_id="pg-1", model_factory=lambda _s: later_model)
    assert later.history() == [("user", "Question one?"), ("assistant", "Answer one.")]
    assert later.ask("Question two?").answer == "Answer two."

    # The second turn's plan saw the first turn, read back from PostgreSQL.
    plan_prompt = [str(m.content) for m in later_model.calls[0]]
    assert plan_prompt[1:] == ["Question one?", "Answer one.", "Question two?"]
    assert later.history()[2:] == [("user", "Question two?"), ("assistant", "Answer two.")]
    assert _checkpoint_threads(database) == {"pg-1"}
    assert not (isolated_state / "threads.sqlite").exists()  # nothing went to SQLite


def test_a_turn_left_mid_way_is_retried_cleanly(database: str) -> None:
    from langchain_core.messages import HumanMessage

    settings = Settings(tools=("sql_query",), checkpoint_db=database, native_min_params=0)
    model = _direct(ScriptedChatModel(), "Answer one.")
    session = Session(settings, thread_id="pg-2", model_factory=lambda _s: model)
    session.ask("Question one?")
    # A process that died after the plan: the thread's last checkpoint has nodes still to run.
    model.enqueue_text("1. a plan that never finished")
    session.graph.invoke(
        {"messages": [HumanMessage("Lost question?")]},
        {"configurable": {"thread_id": "pg-2"}},
        context=settings,
        interrupt_after=["plan"],
    )
    assert session.graph.get_state({"configurable": {"thread_id": "pg-2"}}).next == ("act",)

    close_all()
    retry_model = _direct(ScriptedChatModel(), "Answer two.")
    again = Session(settings, thread_id="pg-2", model_factory=lambda _s: retry_model)
    assert again.history() == [("user", "Question one?"), ("assistant", "Answer one.")]
    assert again.ask("Question two?").answer == "Answer two."
    texts = [str(m.content) for m in retry_model.calls[0][1:]]
    assert texts == ["Question one?", "Answer one.", "Question two?"]  # no "Lost question?"


@pytest.fixture
def gated_ollama(monkeypatch: pytest.MonkeyPatch) -> Iterator[GatedFakeOllama]:
    with GatedFakeOllama() as server:
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        monkeypatch.setenv("OLLAGRAPH_NATIVE_MIN_PARAMS", "0")
        yield server
        server.gate.set()


def test_chat_killed_mid_turn_resumes_from_postgres(
    gated_ollama: GatedFakeOllama, database: str, tmp_path: Path, isolated_state: Path
) -> None:
    thread = "pg-killed"
    env = {"OLLAGRAPH_CHECKPOINT_DB": database}
    chat = Agent(tmp_path, "chat", "--tools", "sql_query", "--thread", thread, name="c1", **env)
    try:
        script_direct_answer(gated_ollama, "Answer one.")
        chat.send("Question one?")
        wait_for(lambda: "Answer one." in chat.out, 120, lambda: chat.err)
        wait_for(lambda: chat.out.count("> ") > 1, 60, lambda: chat.err)
        asked = len(gated_ollama.chat_requests)
        gated_ollama.gate.clear()  # the next model call is held: the turn is in progress
        chat.send("Question two?")
        wait_for(lambda: len(gated_ollama.chat_requests) > asked, 60, "the second turn")
        chat.kill()
    finally:
        chat.cleanup()
        gated_ollama.gate.set()
    assert chat.process.returncode == -signal.SIGKILL

    settings = Settings(checkpoint_db=database)
    assert Session(settings, thread_id=thread).history() == [
        ("user", "Question one?"),
        ("assistant", "Answer one."),
    ]
    script_direct_answer(gated_ollama, "Answer two.")
    asked = len(gated_ollama.chat_requests)
    again = Agent(tmp_path, "chat", "--tools", "sql_query", "--thread", thread, name="c2", **env)
    try:
        for line in ("Question two?", "/exit"):
            again.send(line)
        assert again.finish() == 0, again.err
    finally:
        again.cleanup()
    assert "Answer two." in again.out
    retry_plan = gated_ollama.chat_requests[asked + 1]["messages"]  # after the warm-up request
    assert [m["role"] for m in retry_plan] == ["system", *ROLES, "user"]
    sent = [m["content"] for m in retry_plan[1:]]
    assert sent == ["Question one?", "Answer one.", "Question two?"]
    close_all()
    assert Session(settings, thread_id=thread).history()[2:] == [
        ("user", "Question two?"),
        ("assistant", "Answer two."),
    ]
    assert not (isolated_state / "threads.sqlite").exists()


# -- errors --------------------------------------------------------------------------------------


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_server_is_one_clear_error() -> None:
    url = f"postgresql://ollagraph:s3cret@127.0.0.1:{_closed_port()}/threads"
    with pytest.raises(CheckpointDBError) as caught:
        open_checkpointer(url)
    text = str(caught.value)
    assert "Cannot reach PostgreSQL" in text and "ollagraph@127.0.0.1" in text
    assert "refused" in text.lower() and "s3cret" not in text


def test_bad_credentials_and_a_missing_database_say_so(postgres: str) -> None:
    folder = postgres.split("host=", 1)[1]
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS pw_user")
        conn.execute("CREATE ROLE pw_user LOGIN PASSWORD 'right-one'")
        hba = Path(conn.execute("SHOW hba_file").fetchone()[0])  # type: ignore[index]
        original = hba.read_text()
        hba.write_text(f"local all pw_user scram-sha-256\n{original}")
        conn.execute("SELECT pg_reload_conf()")
    try:
        wrong = f"postgresql://pw_user:wrong-one@/postgres?host={folder}"
        with pytest.raises(CheckpointDBError) as caught:
            open_checkpointer(wrong)
        assert "refused the credentials" in str(caught.value)
        assert "password authentication failed" in str(caught.value)
        assert "wrong-one" not in str(caught.value)
    finally:
        hba.write_text(original)
        with psycopg.connect(postgres, autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")

    with pytest.raises(CheckpointDBError, match="does not exist"):
        open_checkpointer(postgres.replace("/postgres?", "/no_such_db?"))


@pytest.mark.parametrize(
    "value",
    ["postgresql://u:pw@db-host:54x32/threads", "mysql://u:pw@db-host/threads", "threads.db"],
)
def test_a_malformed_or_foreign_url_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_checkpointer(value)
    assert ":pw@" not in str(caught.value)


def test_without_the_postgres_extra_the_message_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "langgraph.checkpoint.postgres", None)  # import fails
    with pytest.raises(CheckpointDBError) as caught:
        open_checkpointer("postgresql://u@db-host/threads")
    assert "pip install 'ollagraph[postgres]'" in str(caught.value)


def test_the_cli_prints_one_message_and_exits_non_zero(fake_ollama: FakeOllama) -> None:
    from click.testing import CliRunner

    from ollagraph.agents.cli import main

    url = f"postgresql://ollagraph:s3cret@127.0.0.1:{_closed_port()}/threads"
    result = CliRunner().invoke(main, ["ask", "Hello?"], env={"OLLAGRAPH_CHECKPOINT_DB": url})
    assert result.exit_code == 1, result.output
    assert "Error: Cannot reach PostgreSQL for chat threads" in result.output
    assert "Traceback" not in result.output and "s3cret" not in result.output
    assert fake_ollama.chat_requests == []  # it failed before any model call


def test_passwords_are_redacted_in_descriptions() -> None:
    url = "postgresql://me:pa55@db:6543/threads?password=other&sslmode=require"
    assert "pa55" not in redact(url) and "other" not in redact(url)
    assert describe(url) == "me@db:6543/threads"
