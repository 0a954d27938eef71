"""The bad-input matrix: every input a user can get wrong, through the real `agent` command line.

Each case runs the CLI (click's runner, in this process) against real files, a real DuckDB and,
where a model server is involved, the scripted Ollama server over real HTTP (`fake_ollama`). A
locked database is locked by a real second process. Each case checks the same contract:

- one clear message on stderr (one `Error:` line naming the problem, no traceback, no "unexpected
  failure") and a non-zero exit;
- nothing lost: the files involved are byte-for-byte unchanged, and no model call was made for
  input that should be refused first.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner, Result

from ollagraph.agents.cli import main
from ollagraph.agents.questions import MAX_QUESTION_CHARS
from ollagraph.tools.documents import release_store
from tests.conftest import CLOSED_PORT_HOST
from tests.fake_ollama import FakeOllama

pytestmark = pytest.mark.integration


def run(*args: str, input: str | None = None) -> Result:
    """Run `agent ARGS...` in this process and return click's result."""
    return CliRunner().invoke(main, list(args), input=input)


def assert_clear_failure(result: Result, *needles: str, code: int | None = None) -> str:
    """Check the contract for a refused input; return stderr."""
    err = result.stderr
    assert result.exit_code != 0, f"exit 0 for a bad input; stderr: {err!r}"
    if code is not None:
        assert result.exit_code == code, err
    # the error reached the edge as a message, not as an exception
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in err and "unexpected failure" not in err, err
    assert [line for line in err.splitlines() if line.startswith("Error:")] != [], err
    assert len([line for line in err.splitlines() if "Error:" in line]) == 1, err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    assert result.stdout == "", result.stdout
    return err


def fingerprint(path: Path) -> str:
    """SHA-256 of a file's bytes (to show a failed command left it alone)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(autouse=True)
def close_cached_stores() -> Iterator[None]:
    yield
    release_store()


# --- --db: missing, corrupt, locked, a directory, another kind of database ----------------------


def test_missing_database(tmp_path: Path) -> None:
    result = run("ask", "q", "--tools", "sql_query", "--db", str(tmp_path / "shop.duckdb"))
    assert_clear_failure(result, f"Database {tmp_path / 'shop.duckdb'} does not exist", code=1)
    assert not (tmp_path / "shop.duckdb").exists()  # not created by the failed attempt


@pytest.mark.parametrize("size", [100, 4096, 300_000])
def test_random_bytes_as_database(tmp_path: Path, size: int) -> None:
    bad = tmp_path / "noise.duckdb"
    bad.write_bytes(random.Random(size).randbytes(size))
    before = fingerprint(bad)
    result = run("ask", "q", "--tools", "sql_query", "--db", str(bad))
    assert_clear_failure(result, "is not a valid DuckDB database", code=1)
    assert fingerprint(bad) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noise.duckdb"]  # no .wal left behind


def test_database_with_corrupt_blocks(tmp_path: Path) -> None:
    # a real database whose headers are intact but whose blocks after them are overwritten
    bad = tmp_path / "damaged.duckdb"
    with duckdb.connect(str(bad)) as conn:
        conn.execute(
            "CREATE TABLE ducks AS SELECT range AS id, 'duck ' || range AS name FROM range(100000)"
        )
    with bad.open("r+b") as file:
        file.seek(3 * 4096)
        file.write(random.Random(7).randbytes(bad.stat().st_size - 3 * 4096))
    before = fingerprint(bad)
    result = run("ask", "q", "--tools", "sql_query", "--db", str(bad))
    err = assert_clear_failure(result, str(bad), code=1)
    assert "corrupt" in err.lower()
    assert fingerprint(bad) == before


HOLDER = """
import sys, duckdb
conn = duckdb.connect(sys.argv[1])
conn.execute("CREATE TABLE kept AS SELECT 42 AS answer")
print("ready", flush=True)
sys.stdin.read()  # hold the write lock until the test closes our stdin
conn.execute("INSERT INTO kept VALUES (43)")
conn.close()
"""


def test_database_locked_by_another_process(tmp_path: Path) -> None:
    db = tmp_path / "busy.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        result = run("ask", "q", "--tools", "sql_query", "--db", str(db))
        assert_clear_failure(
            result, f"Database {db} is locked by another process", "try again", code=1
        )
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        assert holder.wait(timeout=60) == 0
    # the other process kept working and lost nothing
    with duckdb.connect(str(db), read_only=True) as conn:
        assert conn.execute("SELECT answer FROM kept ORDER BY 1").fetchall() == [(42,), (43,)]


def test_directory_as_database(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    result = run("ask", "q", "--tools", "sql_query", "--db", str(folder))
    assert_clear_failure(result, f"{folder} is a directory, not a DuckDB database file", code=1)
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]


def test_sqlite_file_as_database(tmp_path: Path) -> None:
    lite = tmp_path / "shop.db"
    with sqlite3.connect(lite) as conn:
        conn.execute("CREATE TABLE ducks (name TEXT)")
        conn.execute("INSERT INTO ducks VALUES ('Quackers')")
    conn.close()
    before = fingerprint(lite)
    result = run("ask", "q", "--tools", "sql_query", "--db", str(lite))
    err = assert_clear_failure(result, str(lite), code=1)
    assert "SQLite database, not a DuckDB database" in err
    assert "INSTALL" not in err and "extension" not in err.lower()
    assert fingerprint(lite) == before


# --- a file where a folder is expected, and the other way round --------------------------------


def test_plain_file_as_documents_store(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("My own notes, which nothing may overwrite.\n")
    before = fingerprint(notes)
    result = run("ask", "q", "--tools", "search_documents", "--docs", str(notes))
    assert_clear_failure(result, f"{notes} is not a documents store", code=1)
    assert fingerprint(notes) == before


def test_plain_file_as_ingest_target_is_not_overwritten(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("My own notes, which nothing may overwrite.\n")
    source = tmp_path / "duck.md"
    source.write_text("# Ducks\nDucks float because their feathers trap air.\n")
    before = fingerprint(notes)
    result = run("ingest", str(source), "--docs", str(notes))
    assert_clear_failure(result, f"{notes} is not a documents store", code=1)
    assert fingerprint(notes) == before


def test_directory_as_documents_store(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    folder.mkdir()
    result = run("ask", "q", "--tools", "search_documents", "--docs", str(folder))
    assert_clear_failure(result, f"{folder} is a directory, not a documents store file", code=1)
    assert list(folder.iterdir()) == []


def test_directory_as_config_flag(tmp_path: Path) -> None:
    result = run("ask", "q", "--config", str(tmp_path))
    assert_clear_failure(result, "--config", "is a directory", code=2)


def test_directory_as_config_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAGRAPH_CONFIG", str(tmp_path))
    result = run("ask", "q", "--tools", "sql_query")
    assert_clear_failure(result, f"Config file {tmp_path} is a directory, not a file", code=2)


# --- the config file ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        # bad TOML: tomllib's own position
        ('model = "m"\n# fine so far\nmax_steps = \n', ["not valid TOML", "line 3"]),
        ('model = "m\n', ["not valid TOML", "line 1"]),
        # an unknown key: where, and the setting that was probably meant
        (
            'model = "m"\n\nmodle = "x"\n',
            ["Unknown setting(s)", "`modle` (line 3, did you mean `model`?)"],
        ),
        (
            '[task_overides.caption]\nprecision = "float16"\n',
            ["`task_overides` (line 1, did you mean `task_overrides`?)"],
        ),
        ('model = "m"\n"modle" = "x"\n', ["`modle` (line 2, did you mean `model`?)"]),
        (
            '\ntask_overides.caption.precision = "float16"\n',
            ["`task_overides` (line 2, did you mean `task_overrides`?)"],
        ),
        # a value of the wrong type: which key, which line, what was expected
        (
            '# limits\nmax_steps = "many"\n',
            ["Invalid value 'many' for `max_steps`", "(line 2)", "expected a whole number"],
        ),
        ("temperature = true\n", ["`temperature`", "(line 1)", "expected a number"]),
        ('tools = ["sql_query", 3]\n', ["`tools`", "(line 1)", "expected a list of names"]),
    ],
)
def test_invalid_config_file_says_which_line_and_why(
    tmp_path: Path, text: str, needles: list[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text, encoding="utf-8")
    result = run("ask", "q", "--tools", "sql_query", "--config", str(config))
    assert_clear_failure(result, str(config), *needles, code=2)
    assert config.read_text(encoding="utf-8") == text


def test_config_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_bytes(b'model = "m"\n# caf\xe9 settings\n')
    result = run("ask", "q", "--tools", "sql_query", "--config", str(config))
    assert_clear_failure(result, "is not UTF-8 text", "byte 0xe9 on line 2", code=2)


def test_binary_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_bytes(random.Random(3).randbytes(2000))
    result = run("ask", "q", "--tools", "sql_query", "--config", str(config))
    assert_clear_failure(result, str(config), code=2)


# --- ingest: binary and non-UTF-8 files are skipped or reported, the rest is ingested ------------


def _chunks_by_file(store: Path) -> dict[str, list[str]]:
    with duckdb.connect(str(store), read_only=True) as conn:
        found = conn.execute(
            "SELECT json_extract_string(metadata_, '$.file_path'), text FROM documents"
        ).fetchall()
    by_file: dict[str, list[str]] = {}
    for path, text in found:
        by_file.setdefault(Path(path).name, []).append(text)
    return by_file


def test_ingest_skips_binary_files_and_keeps_the_rest(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.txt").write_text("Ducks float because their feathers trap air.\n")
    (folder / "noise.txt").write_bytes(random.Random(1).randbytes(5000))
    (folder / "nul.md").write_bytes(b"# Title\x00\x00\x00 with NUL bytes\n")
    (folder / "latin1.md").write_bytes(
        "# Café\n\nThe café by the pond serves crème brûlée and hot chocolate to duck "
        "watchers on Sundays.\n".encode("latin-1")
    )
    (folder / "wide.txt").write_bytes("Geese honk loudly at dawn.\n".encode("utf-16"))
    (folder / "fake.pdf").write_bytes(b"%PDF-1.4\n" + random.Random(2).randbytes(3000))
    (folder / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    before = {p.name: fingerprint(p) for p in folder.iterdir()}
    store = tmp_path / "docs.duckdb"

    result = run("ingest", str(folder), "--docs", str(store))

    assert result.exit_code == 0, result.stderr
    assert result.exception is None
    err = result.stderr
    assert "Traceback" not in err
    assert "3 added, 0 updated, 0 unchanged, 4 skipped" in err
    # each bad file is named with its reason (rich may wrap long lines on stderr)
    flat = " ".join(err.split())
    assert "noise.txt looks like binary data" in flat
    assert "nul.md looks like binary data" in flat
    assert "fake.pdf is not a readable PDF" in flat
    assert "unsupported file type .png" in flat
    assert "latin1.md: not valid UTF-8" in flat  # read, with a warning
    assert result.stdout.strip() == str(store)
    # the readable files are in the store, decoded; the skipped ones are not
    chunks = _chunks_by_file(store)
    assert sorted(chunks) == ["good.txt", "latin1.md", "wide.txt"]
    assert "feathers trap air" in " ".join(chunks["good.txt"])
    assert "Geese honk loudly at dawn." in " ".join(chunks["wide.txt"])
    assert "serves cr" in " ".join(chunks["latin1.md"])
    # and the source files are untouched
    assert {p.name: fingerprint(p) for p in folder.iterdir()} == before


def test_ingest_of_only_unreadable_files_fails(tmp_path: Path) -> None:
    junk = tmp_path / "photo.txt"
    junk.write_bytes(bytes(range(256)) * 16)
    store = tmp_path / "docs.duckdb"
    result = run("ingest", str(junk), "--docs", str(store))
    assert result.exit_code != 0
    err = result.stderr
    assert "photo.txt looks like binary data" in " ".join(err.split())
    assert "Traceback" not in err and "Nothing was ingested" in err
    assert not store.exists()


def test_ingest_of_a_missing_path(tmp_path: Path) -> None:
    result = run("ingest", str(tmp_path / "nope.md"), "--docs", str(tmp_path / "d.duckdb"))
    assert_clear_failure(result, f"{tmp_path / 'nope.md'} does not exist")
    assert not (tmp_path / "d.duckdb").exists()


# --- questions: empty, huge, not text -----------------------------------------------------------


@pytest.mark.parametrize("question", ["", "   ", "\n\t \n"])
def test_empty_question(fake_ollama: FakeOllama, question: str) -> None:
    result = run("ask", question, "--tools", "sql_query")
    assert_clear_failure(result, "The question is empty", code=2)
    assert fake_ollama.requests == []  # refused before the model server was contacted


def test_one_megabyte_question(fake_ollama: FakeOllama) -> None:
    words = "how many ducks are blue "
    question = (words * (1024 * 1024 // len(words) + 1))[: 1024 * 1024]
    result = run("ask", question, "--tools", "sql_query")
    assert_clear_failure(
        result, f"The question is {1024 * 1024} characters long", str(MAX_QUESTION_CHARS), code=2
    )
    assert fake_ollama.requests == []


def test_one_megabyte_chat_line_is_refused_and_the_chat_goes_on(fake_ollama: FakeOllama) -> None:
    huge = "blue ducks " * (1024 * 1024 // 11)
    result = run("chat", "--tools", "sql_query", input=f"{huge}\n/thread\n/exit\n")
    assert result.exit_code == 0, result.stderr
    assert "limit is 20000" in result.stderr and "thread:" in result.stderr
    assert all(len(json.dumps(body)) < 100_000 for body in fake_ollama.chat_requests)


def test_question_that_is_not_utf8(fake_ollama: FakeOllama) -> None:
    question = os.fsdecode(b"caf\xe9 ducks?")  # how Python hands over non-UTF-8 argv bytes
    result = run("ask", question, "--tools", "sql_query")
    assert_clear_failure(result, "UTF-8", code=2)
    assert fake_ollama.chat_requests == []


# --- the model server: unknown model, unreachable host -------------------------------------------


def test_unknown_model(fake_ollama: FakeOllama) -> None:
    result = run("ask", "q", "--model", "nope:1b", "--tools", "sql_query")
    assert_clear_failure(
        result, "The model 'nope:1b' could not be found to pull", "smollm2:135m", code=1
    )
    assert fake_ollama.chat_requests == []
    assert fake_ollama.has_model("smollm2:135m") and not fake_ollama.has_model("nope:1b")


def test_unreachable_host_flag_wins_over_a_working_server(fake_ollama: FakeOllama) -> None:
    result = run("ask", "q", "--host", CLOSED_PORT_HOST, "--tools", "sql_query")
    assert_clear_failure(result, f"Could not reach Ollama at {CLOSED_PORT_HOST}", code=1)
    assert fake_ollama.requests == []  # the flag, not $OLLAMA_HOST, was used


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("http://127.0.0.1:notaport", "the port must be a number from 1 to 65535, not 'notaport'"),
        ("127.0.0.1:99999", "the port must be a number from 1 to 65535, not '99999'"),
        ("ftp://127.0.0.1:21", "the scheme must be http or https, not 'ftp'"),
    ],
)
def test_malformed_host(fake_ollama: FakeOllama, host: str, why: str) -> None:
    result = run("ask", "q", "--host", host, "--tools", "sql_query")
    assert_clear_failure(result, f"Invalid Ollama host {host!r}: {why}.", code=2)
    assert fake_ollama.requests == []


def test_malformed_ollama_host_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "localhost:11434x")
    result = run("ask", "q", "--tools", "sql_query")
    assert_clear_failure(result, "Invalid Ollama host 'localhost:11434x'", "$OLLAMA_HOST", code=2)


# --- no network for web search: the model is told, the run goes on ------------------------------


def test_no_network_for_web_search(
    fake_ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every engine ddgs tries goes through a proxy on a closed port: no network, on any machine
    monkeypatch.setenv("DDGS_PROXY", CLOSED_PORT_HOST)
    monkeypatch.setenv("OLLAGRAPH_WEB_TIMEOUT", "3")
    fake_ollama.enqueue_text("1. web_search: duck facts")
    fake_ollama.enqueue_tool_call("web_search", {"query": "rubber duck history"})
    fake_ollama.enqueue_text("DONE")
    fake_ollama.enqueue_text("The web was unavailable, so I cannot say.")
    result = run("ask", "When was the rubber duck invented?", "--json", "--tools", "web_search")
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stderr
    doc = json.loads(result.stdout)
    [call] = doc["tool_calls"]
    assert call["name"] == "web_search" and call["ok"] is False
    assert "Web search is unavailable" in call["output"]
    assert "no network" in call["output"] or "timed out" in call["output"]
    # the model read that message and answered from it
    tool_message = fake_ollama.chat_requests[2]["messages"][-1]
    assert tool_message["role"] == "tool" and "Web search is unavailable" in tool_message["content"]
    assert doc["answer"] == "The web was unavailable, so I cannot say."


# --- the state directory cannot be written ------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["ask", "q", "--tools", "sql_query"],
        ["ask", "q", "--tools", "search_documents"],
        ["chat", "--tools", "sql_query"],
    ],
)
def test_state_directory_under_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    # as root, permissions stop nothing: a path below a regular file fails with ENOTDIR for anyone
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder\n")
    monkeypatch.setenv("OLLAGRAPH_HOME", str(blocker / "home"))
    result = run(*command, input="/exit\n")
    assert_clear_failure(
        result,
        f"Cannot create the state directory {blocker / 'home'}",
        f"{blocker} is a file, not a directory",
        "OLLAGRAPH_HOME",
        code=1,
    )
    assert blocker.read_text() == "not a folder\n"


def test_ingest_into_a_state_directory_under_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder\n")
    monkeypatch.setenv("OLLAGRAPH_HOME", str(blocker / "home"))
    source = tmp_path / "duck.md"
    source.write_text("# Ducks\nDucks float.\n")
    result = run("ingest", str(source))
    assert_clear_failure(result, f"{blocker} is a file, not a directory", code=1)
    assert blocker.read_text() == "not a folder\n"


def test_state_directory_that_is_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.write_text("a file, not a folder\n")
    monkeypatch.setenv("OLLAGRAPH_HOME", str(home))
    result = run("ask", "q", "--tools", "sql_query")
    assert_clear_failure(result, f"{home} is a file, not a directory", code=1)
    assert home.read_text() == "a file, not a folder\n"


# --- one case in a real process: what a user's terminal shows ------------------------------------


def test_a_real_process_prints_one_line_and_exits_non_zero(tmp_path: Path) -> None:
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(random.Random(9).randbytes(4096))
    proc = subprocess.run(
        [sys.executable, "-m", "ollagraph.agents.cli", "ask", "q", "--db", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OLLAMA_HOST": CLOSED_PORT_HOST},
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"Error: {bad} is not a valid DuckDB database (corrupt, or another kind of file).",
        "Point --db at a .duckdb file, or a .csv/.parquet file to load as a table.",
    ]
