"""Writes by explicit opt-in, end to end through the CLI (click's runner).

The model is the scripted Ollama server (`fake_ollama`: it replays queued replies over real HTTP;
it is not a model). The database is a real DuckDB file the test builds; approvals travel through
real LangGraph interrupts and the SQLite checkpointer under the test's state directory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from ollagraph.agents.cli import main
from ollagraph.tools import sql
from tests.fake_ollama import FakeOllama

pytestmark = pytest.mark.integration

INSERT = "INSERT INTO ducks VALUES (4, 'Dotty')"
DELETE = "DELETE FROM ducks WHERE id = 1"


@pytest.fixture(autouse=True)
def close_cached_connections() -> Iterator[None]:
    """The CLI runs in this process: close the tool's connections so each test starts fresh."""
    yield
    for key in list(sql._open):
        sql._open.pop(key).conn.close()


@pytest.fixture
def pond(tmp_path: Path) -> Path:
    path = tmp_path / "pond.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TABLE ducks (id INTEGER, name VARCHAR)")
        conn.execute("INSERT INTO ducks VALUES (1, 'Bill'), (2, 'Ben'), (3, 'Quackers')")
    return path


def names(path: Path) -> list[str]:
    for key in [k for k in sql._open if k == str(path.resolve())]:
        sql._open.pop(key).conn.close()
    with duckdb.connect(str(path), read_only=True) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM ducks ORDER BY id").fetchall()]


def script_write(server: FakeOllama, query: str, answer: str = "Done.") -> None:
    server.enqueue_text("1. sql_query: change the table")
    server.enqueue_tool_call("sql_query", {"query": query})
    server.enqueue_text("DONE")
    server.enqueue_text(answer)


def invoke(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


def tool_results(server: FakeOllama) -> list[str]:
    """What the model was told by the tools, in order (from the act requests it received)."""
    seen: list[str] = []
    for body in server.chat_requests:
        for message in body["messages"]:
            if message["role"] == "tool" and message["content"] not in seen:
                seen.append(message["content"])
    return seen


def test_ask_with_allow_writes_but_no_yes_declines_the_write(
    fake_ollama: FakeOllama, pond: Path
) -> None:
    script_write(fake_ollama, INSERT, "I could not add Dotty.")
    code, out, err = invoke(
        "ask", "Add Dotty", "--db", str(pond), "--allow-writes", "--tools", "sql_query", "--json"
    )
    assert code == 0, err
    [call] = json.loads(out)["tool_calls"]
    assert call["ok"] is False and "declined" in call["output"] and "--yes" in call["output"]
    assert tool_results(fake_ollama) == [call["output"]]
    assert names(pond) == ["Bill", "Ben", "Quackers"]


def test_ask_with_allow_writes_and_yes_runs_the_write(fake_ollama: FakeOllama, pond: Path) -> None:
    script_write(fake_ollama, INSERT, "Dotty is in.")
    code, out, err = invoke(
        "ask", "Add Dotty", "--db", str(pond), "--allow-writes", "--yes", "--tools", "sql_query"
    )
    assert code == 0, err
    assert out.strip() == "Dotty is in."
    assert f"Approved by --yes: {INSERT}" in err
    assert tool_results(fake_ollama) == ["Done: the INSERT statement ran and changed 1 row."]
    assert names(pond) == ["Bill", "Ben", "Quackers", "Dotty"]


def test_ask_without_allow_writes_keeps_the_database_read_only(
    fake_ollama: FakeOllama, pond: Path
) -> None:
    script_write(fake_ollama, DELETE)
    code, _, err = invoke("ask", "Remove Bill", "--db", str(pond), "--yes", "--tools", "sql_query")
    assert code == 0, err
    [told] = tool_results(fake_ollama)
    assert "this is a DELETE statement" in told and "cannot be changed" in told
    assert names(pond) == ["Bill", "Ben", "Quackers"]


@pytest.mark.parametrize("target", ["sample", "csv"])
def test_allow_writes_on_the_sample_or_a_csv_is_a_clear_error(
    fake_ollama: FakeOllama, tmp_path: Path, target: str
) -> None:
    args = ["ask", "Add Dotty", "--allow-writes", "--yes", "--tools", "sql_query"]
    if target == "csv":
        csv = tmp_path / "pond.csv"
        csv.write_text("id,name\n1,Bill\n")
        args += ["--db", str(csv)]
    code, out, err = invoke(*args)
    assert code == 1 and out == ""
    expected = "bundled sample" if target == "sample" else "CSV file loaded into memory"
    assert expected in err and "Traceback" not in err
    assert fake_ollama.chat_requests == []  # refused before any model call


def test_chat_shows_each_write_and_runs_it_only_on_yes(fake_ollama: FakeOllama, pond: Path) -> None:
    script_write(fake_ollama, INSERT, "Dotty is in.")
    script_write(fake_ollama, DELETE, "Bill stays.")
    code, out, err = invoke(
        "chat",
        "--db",
        str(pond),
        "--allow-writes",
        "--tools",
        "sql_query",
        input="Add Dotty\ny\nRemove Bill\nn\n/exit\n",
    )
    assert code == 0, err
    assert "Writes are allowed" in err
    assert out.count("Run this write? [y/N]") == 2
    assert INSERT in err and DELETE in err and "Approved." in err and "Declined" in err
    assert "Dotty is in." in out and "Bill stays." in out
    first, second = tool_results(fake_ollama)
    assert first == "Done: the INSERT statement ran and changed 1 row."
    assert "the user declined this write" in second and DELETE in second
    assert names(pond) == ["Bill", "Ben", "Quackers", "Dotty"]


def test_chat_treats_end_of_input_at_the_question_as_no(
    fake_ollama: FakeOllama, pond: Path
) -> None:
    script_write(fake_ollama, DELETE, "Nothing changed.")
    code, out, err = invoke(
        "chat", "--db", str(pond), "--allow-writes", "--tools", "sql_query", input="Remove Bill\n"
    )
    assert code == 0, err
    assert "Declined" in err and "Nothing changed." in out
    assert names(pond) == ["Bill", "Ben", "Quackers"]
