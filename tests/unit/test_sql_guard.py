"""The SQL guard and writes by opt-in, on real DuckDB files.

- The hostile corpus (`hostile_sql.CORPUS`, 100+ statements) runs through the real `sql_query` path
  on a copy of a small database the test builds: each statement must be refused or run harmlessly,
  within the time limit, without the secret file's content in any output, and the database file
  must stay byte-identical with no new files beside it.
- Writes: the graph logic runs on a scripted chat model (it replays queued replies; it is not a
  model) with a real checkpointer, so approval pauses are real LangGraph interrupts.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from ollagraph.agents.config import Settings
from ollagraph.agents.errors import DatabaseError, ToolError
from ollagraph.agents.session import ABANDONED, NO_APPROVER, Session
from ollagraph.graphs.agent import build_graph, read_approval
from ollagraph.tools import sql
from ollagraph.tools.sql import approved_writes, check_writable, run_query, run_write
from ollagraph.tools.sql_guard import classify, printable
from tests.scripted_model import ScriptedChatModel
from tests.unit.hostile_sql import CORPUS, Hostile

SECRET = "hunter2_7d1e_secret"
TIMEOUT = 1.0
SLACK = 1.5  # seconds an interrupted query may take to stop, on a busy 2-core machine


@pytest.fixture(autouse=True)
def close_cached_connections(tmp_path: Path) -> Iterator[None]:
    """Close the tool's cached connections to this test's files, so none leak between tests."""
    yield
    root = str(tmp_path.resolve())
    for key in [k for k in sql._open if k.startswith(root)]:
        sql._open.pop(key).conn.close()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small shop database, built once; tests work on copies."""
    path = tmp_path_factory.mktemp("pristine") / "shop.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TABLE ducks (id INTEGER, name VARCHAR, price DECIMAL(6,2))")
        conn.execute("INSERT INTO ducks SELECT i, 'Duck ' || i, 2.5 + i FROM range(1, 26) t(i)")
        conn.execute("CREATE TABLE orders (id INTEGER, duck_id INTEGER, qty INTEGER)")
        conn.execute("INSERT INTO orders VALUES (1, 3, 2), (2, 5, 1)")
    return path


@pytest.fixture
def shop(pristine: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "db"
    folder.mkdir()
    return Path(shutil.copy(pristine, folder / "shop.duckdb"))


@pytest.fixture
def places(tmp_path: Path) -> dict[str, str]:
    """Files outside the database that carry the secret, and a folder for would-be outputs."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text(f"k,v\npassword,{SECRET}\n")
    (outside / "secret.json").write_text(f'[{{"k": "{SECRET}"}}]')
    # an EXPORT DATABASE folder: parsing IMPORT DATABASE reads schema.sql
    (outside / "schema.sql").write_text(f"CREATE TABLE a (x INTEGER);\n{SECRET} here;\n")
    (outside / "load.sql").write_text("")
    with duckdb.connect() as conn:
        conn.execute(f"COPY (SELECT '{SECRET}' AS s) TO '{outside / 's.parquet'}' (FORMAT parquet)")
    return {
        "tmp": str(tmp_path / "db"),
        "secret": str(outside / "secret.csv"),
        "secret_json": str(outside / "secret.json"),
        "secret_dir": str(outside),
        "parquet": str(outside / "s.parquet"),
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(path: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(path), read_only=True) as conn:
        tables = [r[0] for r in conn.execute("SHOW TABLES").fetchall()]
        return {t: sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables}


def close_tool_connection(path: Path) -> None:
    db = sql._open.pop(str(path.resolve()), None)
    if db is not None:
        db.conn.close()


def run_hostile(
    item: Hostile, places: dict[str, str], settings: Settings
) -> tuple[str, str, float]:
    """Run one corpus statement as the tool would; return (outcome, text, seconds)."""
    query = item.sql.format(**places)
    start = time.perf_counter()
    try:
        text, outcome = run_query(query, settings), "ok"
    except ToolError as exc:
        text = str(exc)
        if "ran longer than" in text:
            outcome = "timeout"
        else:
            outcome = "blocked" if classify(query).allowed else "refused"
    return outcome, text, time.perf_counter() - start


# --- the hostile corpus ------------------------------------------------------------------------


def test_the_corpus_is_large_and_covers_every_outcome() -> None:
    assert len(CORPUS) >= 60
    assert len({h.sql for h in CORPUS}) == len(CORPUS)
    assert {h.outcome for h in CORPUS} == {"refused", "blocked", "ok", "timeout"}
    assert all(h.expect for h in CORPUS if h.outcome != "timeout")


@pytest.mark.parametrize("allow_writes", [False, True], ids=["read-only", "writes-unapproved"])
def test_hostile_corpus_changes_nothing_reads_nothing_and_stops_in_time(
    shop: Path, places: dict[str, str], tmp_path: Path, allow_writes: bool
) -> None:
    """Every statement is refused or harmless; with writes on but nothing approved, the same."""
    settings = Settings(
        db=str(shop),
        tool_timeout=TIMEOUT,
        max_rows=5,
        sql_memory_limit="256MB",
        allow_writes=allow_writes,
    )
    digest, tables = sha256(shop), snapshot(shop)
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    problems = []
    for item in CORPUS:
        outcome, text, seconds = run_hostile(item, places, settings)
        query = item.sql.format(**places)
        if outcome != item.outcome or item.expect not in text:
            problems.append(f"{query!r}: expected {item.outcome} ({item.expect!r}), got {text!r}")
        if SECRET in text:
            problems.append(f"{query!r}: the secret leaked: {text!r}")
        if seconds > TIMEOUT + SLACK:
            problems.append(f"{query!r}: ran {seconds:.2f} s")
        if sha256(shop) != digest:
            problems.append(f"{query!r}: the database file changed")
        if allow_writes and classify(query).write:
            assert "needs the user's approval" in text and "did not run" in text
    assert problems == []
    close_tool_connection(shop)
    assert sha256(shop) == digest
    assert snapshot(shop) == tables
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == files


def test_refused_statements_name_their_kind_and_what_is_allowed(places: dict[str, str]) -> None:
    for item in CORPUS:
        if item.outcome != "refused":
            continue
        verdict = classify(item.sql.format(**places))
        assert not verdict.allowed and verdict.reason and item.expect in verdict.reason
        if verdict.kind not in ("MULTIPLE", "INVALID"):
            assert f"this is a {verdict.kind} statement" in verdict.reason
            assert "SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN" in verdict.reason


def test_parsing_import_database_reads_no_file(places: dict[str, str]) -> None:
    # DuckDB's parser opens schema.sql while parsing IMPORT DATABASE; on the guard's own
    # connection that is refused, so the file's text cannot surface in the parse error.
    verdict = classify(f"IMPORT DATABASE '{places['secret_dir']}'")
    assert not verdict.allowed and not verdict.write
    assert "disabled by configuration" in verdict.reason and SECRET not in verdict.reason


# --- the classifier's verdicts -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "kind", "allowed", "write"),
    [
        ("SELECT 1", "SELECT", True, False),
        ("with t as (select 1) select * from t", "SELECT", True, False),
        ("SUMMARIZE ducks", "SELECT", True, False),
        ("EXPLAIN SELECT 1", "SELECT", True, False),
        ("EXPLAIN ANALYZE SELECT 1", "SELECT", True, False),
        ("EXPLAIN ANALYZE DELETE FROM ducks", "DELETE", False, False),
        ("INSERT INTO ducks VALUES (1, 'a', 1)", "INSERT", False, True),
        ("update ducks set price = 1", "UPDATE", False, True),
        ("DELETE FROM ducks", "DELETE", False, True),
        ("TRUNCATE ducks", "DELETE", False, True),
        ("CREATE TABLE t (a INTEGER)", "CREATE", False, True),
        ("CREATE OR REPLACE TEMP TABLE t AS SELECT 1", "CREATE", False, True),
        ("CREATE UNIQUE INDEX i ON ducks (id)", "CREATE", False, True),
        ("CREATE VIEW v AS SELECT 1", "CREATE", False, True),
        ("DROP TABLE IF EXISTS ducks", "DROP", False, True),
        ("ALTER TABLE ducks ADD COLUMN c INTEGER", "ALTER", False, True),
        ("COMMENT ON TABLE ducks IS 'x'", "ALTER", False, True),
        ("CREATE SECRET s (TYPE s3)", "CREATE", False, False),
        ("CREATE\u00a0PERSISTENT SECRET s (TYPE s3)", "CREATE", False, False),
        ("DROP PERSISTENT SECRET s", "DROP", False, False),
        ("CREATE MACRO m() AS 1", "CREATE", False, False),
        ("CREATE TYPE mood AS ENUM ('sad')", "CREATE", False, False),
        ("DEALLOCATE p", "DROP", False, False),
        ("COPY ducks TO 'x.csv'", "COPY", False, False),
        ("ATTACH 'x.duckdb'", "ATTACH", False, False),
        ("INSTALL httpfs", "LOAD", False, False),
        ("PRAGMA enable_profiling", "PRAGMA", False, False),
        ("SET threads = 1", "SET", False, False),
        ("EXPORT DATABASE 'x'", "EXPORT", False, False),
        ("SELECT 1; SELECT 2", "MULTIPLE", False, False),
        ("SELEC 1", "INVALID", False, False),
        ("  ", "EMPTY", False, False),
    ],
)
def test_classify(query: str, kind: str, allowed: bool, write: bool) -> None:
    verdict = classify(query)
    assert (verdict.kind, verdict.allowed, verdict.write) == (kind, allowed, write)
    assert bool(verdict.reason) is not allowed
    with_writes = classify(query, allow_writes=True)
    assert (with_writes.kind, with_writes.allowed, with_writes.write) == (kind, allowed, write)
    assert bool(with_writes.reason) is not (allowed or write)


def test_refusals_with_writes_on_say_what_can_run() -> None:
    reason = classify("COPY ducks TO 'x.csv'", allow_writes=True).reason
    assert "COPY statement, which is never allowed" in reason
    assert "with the user's approval" in reason and "INSERT, UPDATE, DELETE" in reason
    reason = classify("EXPLAIN ANALYZE DELETE FROM ducks", allow_writes=True).reason
    assert "EXPLAIN is allowed only for SELECT" in reason


def test_printable_shows_hidden_characters() -> None:
    sneaky = "DELETE FROM ducks\x1b[2K\r\u202eSELECT 1\u200b;\n\tok"
    assert printable(sneaky) == "DELETE FROM ducks\\x1b[2K\\x0d\\u202eSELECT 1\\u200b;\n\tok"
    assert printable("SELECT 'ü' -- ✓") == "SELECT 'ü' -- ✓"
    assert printable("a\u2028b\U000e0041") == "a\\u2028b\\U000e0041"


def test_the_connection_carries_the_limits(shop: Path) -> None:
    settings = Settings(db=str(shop), sql_memory_limit="300MB", sql_threads=1)
    query = (
        "SELECT name, value FROM duckdb_settings() WHERE name IN ('memory_limit', 'threads', "
        "'enable_external_access', 'lock_configuration', 'autoload_known_extensions', "
        "'autoinstall_known_extensions') ORDER BY name"
    )
    rows = run_query(query, settings).splitlines()[2:8]
    assert rows == [
        "| autoinstall_known_extensions | false |",
        "| autoload_known_extensions | false |",
        "| enable_external_access | false |",
        "| lock_configuration | true |",
        "| memory_limit | 286.1 MiB |",
        "| threads | 1 |",
    ]


def test_a_bad_memory_limit_is_a_clear_error(shop: Path) -> None:
    with pytest.raises(DatabaseError, match="sql_memory_limit='lots'"):
        run_query("SELECT 1", Settings(db=str(shop), sql_memory_limit="lots"))


# --- writes: only on a writable file, only approved ---------------------------------------------


def test_writes_need_a_writable_duckdb_file_of_the_users(shop: Path, tmp_path: Path) -> None:
    from ollagraph.data import sample_database

    assert check_writable(Settings(db=str(shop), allow_writes=True)) == shop.resolve()
    with pytest.raises(DatabaseError, match="bundled sample"):
        check_writable(Settings(allow_writes=True))
    with pytest.raises(DatabaseError, match="bundled sample"):
        check_writable(Settings(db=str(sample_database()), allow_writes=True))
    csv = tmp_path / "people.csv"
    csv.write_text("a\n1\n")
    with pytest.raises(DatabaseError, match="CSV file loaded into memory"):
        check_writable(Settings(db=str(csv), allow_writes=True))
    with pytest.raises(DatabaseError, match="does not exist"):
        check_writable(Settings(db=str(tmp_path / "none.duckdb"), allow_writes=True))


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write any file")
def test_a_read_only_file_cannot_take_writes(shop: Path) -> None:
    shop.chmod(0o444)
    with pytest.raises(DatabaseError, match="not writable"):
        check_writable(Settings(db=str(shop), allow_writes=True))


def test_an_approved_write_runs_on_its_own_connection_with_external_access_off(
    shop: Path, places: dict[str, str]
) -> None:
    settings = Settings(db=str(shop), allow_writes=True, tool_timeout=TIMEOUT)
    assert "| 25 |" in run_query("SELECT COUNT(*) FROM ducks", settings)  # the read connection
    insert = "INSERT INTO ducks VALUES (26, 'Approved', 9.99), (27, 'Also', 1.00)"
    with approved_writes([insert]):
        assert run_query(insert, settings) == "Done: the INSERT statement ran and changed 2 rows."
        # approval is for that text only
        with pytest.raises(ToolError, match="needs the user's approval"):
            run_query("DELETE FROM ducks", settings)
    assert "| 27 |" in run_query("SELECT COUNT(*) FROM ducks", settings)  # reopened, sees it
    sneaky = [
        f"INSERT INTO ducks SELECT 1, v, 0 FROM read_csv('{places['secret']}')",
        f"CREATE TABLE stolen AS SELECT * FROM '{places['secret']}'",
    ]
    for query in sneaky:
        with approved_writes([query]), pytest.raises(ToolError) as info:
            run_query(query, settings)
        assert "disabled by configuration" in str(info.value) and SECRET not in str(info.value)
    never = [
        f"COPY ducks TO '{places['tmp']}/out.csv'",
        f"ATTACH '{places['tmp']}/x.duckdb'",
        "INSTALL httpfs",
        "LOAD fts",
        "PRAGMA enable_profiling",
        "SET enable_external_access = true",
        f"EXPORT DATABASE '{places['tmp']}/dump'",
        "CREATE PERSISTENT SECRET s (TYPE s3)",
        "CALL pragma_version()",
    ]
    for query in never:
        with approved_writes([query]), pytest.raises(ToolError, match="never allowed"):
            run_query(query, settings)
    with approved_writes(["CREATE TABLE notes (t VARCHAR)"]):
        assert run_query("CREATE TABLE notes (t VARCHAR)", settings) == (
            "Done: the CREATE statement ran."
        )
    close_tool_connection(shop)
    tables = snapshot(shop)
    assert sorted(tables) == ["ducks", "notes", "orders"]
    assert len(tables["ducks"]) == 27
    assert sorted(p.name for p in shop.parent.iterdir()) == ["shop.duckdb"]


def test_a_write_is_refused_when_writes_are_off_even_if_approved(shop: Path) -> None:
    settings = Settings(db=str(shop))
    with approved_writes(["DELETE FROM ducks"]):
        with pytest.raises(ToolError, match="this is a DELETE statement"):
            run_query("DELETE FROM ducks", settings)
        with pytest.raises(ToolError, match="this is a DELETE statement"):
            run_write("DELETE FROM ducks", settings)
    assert len(snapshot(shop)["ducks"]) == 25


def test_a_slow_write_is_interrupted_and_rolled_back(shop: Path) -> None:
    settings = Settings(db=str(shop), allow_writes=True, tool_timeout=0.5)
    slow = "INSERT INTO ducks SELECT 100, 'x', 0 FROM range(1000000000000)"
    start = time.perf_counter()
    with approved_writes([slow]), pytest.raises(ToolError, match=r"ran longer than 0\.5 s"):
        run_query(slow, settings)
    assert time.perf_counter() - start < 0.5 + SLACK
    assert len(snapshot(shop)["ducks"]) == 25


# --- writes in the graph: interrupts and approval ----------------------------------------------

INSERT = "INSERT INTO ducks VALUES (26, 'New duck', 4.50)"


def write_script(*queries: str) -> ScriptedChatModel:
    model = ScriptedChatModel().enqueue_text("1. sql_query: insert the duck")
    (name, args), *more = [("sql_query", {"query": q}) for q in queries]
    model.enqueue_tool_call(name, args, *more)
    return model.enqueue_text("DONE").enqueue_text("Finished.")


def duck_count(path: Path) -> int:
    with duckdb.connect(str(path), read_only=True) as conn:
        return conn.execute("SELECT COUNT(*) FROM ducks").fetchone()[0]


def test_read_approval_values() -> None:
    assert read_approval(True) == (True, "")
    assert read_approval("Yes ") == (True, "")
    assert read_approval({"approved": True}) == (True, "")
    assert read_approval({"approved": False, "reason": "no"}) == (False, "no")
    for value in (False, None, "n", "", 1, "sure", {"approved": "yes"}):
        assert read_approval(value)[0] is False


@pytest.mark.parametrize("approve", [True, False])
def test_the_graph_pauses_for_approval_and_resumes(shop: Path, approve: bool) -> None:
    model = write_script(INSERT)
    graph = build_graph(lambda _s: model, checkpointer=InMemorySaver())
    settings = Settings(tools=("sql_query",), db=str(shop), allow_writes=True)
    config = {"configurable": {"thread_id": "w"}}

    paused = graph.invoke({"messages": [HumanMessage("Add a duck")]}, config, context=settings)
    [pending] = paused["__interrupt__"]
    assert pending.value["sql"] == INSERT and pending.value["kind"] == "INSERT"
    assert pending.value["question"] == "Run this write? [y/N]"
    assert pending.value["database"] == str(shop)
    close_tool_connection(shop)
    assert duck_count(shop) == 25  # nothing ran before the answer

    state = graph.invoke(Command(resume=approve), config, context=settings)
    [result] = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    close_tool_connection(shop)
    if approve:
        assert result.status == "success"
        assert result.content == "Done: the INSERT statement ran and changed 1 row."
        assert duck_count(shop) == 26
    else:
        assert result.status == "error" and "the user declined this write" in result.content
        assert INSERT in result.content and "database is unchanged" in result.content
        assert duck_count(shop) == 25
    assert result.content in model.calls[2][-1].content  # the model read the outcome
    assert state["messages"][-1].content == "Finished."


def test_two_writes_in_one_reply_each_ask_and_each_runs_once(shop: Path) -> None:
    second = "UPDATE ducks SET price = 0 WHERE id = 1"
    model = write_script(INSERT, "SELECT COUNT(*) FROM ducks", second)
    graph = build_graph(lambda _s: model, checkpointer=InMemorySaver())
    settings = Settings(tools=("sql_query",), db=str(shop), allow_writes=True)
    config = {"configurable": {"thread_id": "w2"}}

    asked = [graph.invoke({"messages": [HumanMessage("go")]}, config, context=settings)]
    asked.append(graph.invoke(Command(resume=True), config, context=settings))
    state = graph.invoke(Command(resume="n"), config, context=settings)
    assert [a["__interrupt__"][0].value["sql"] for a in asked] == [INSERT, second]
    assert "__interrupt__" not in state
    outputs = [m.content for m in state["messages"] if isinstance(m, ToolMessage)]
    assert outputs[0] == "Done: the INSERT statement ran and changed 1 row."
    assert "| 26 |" in outputs[1]  # the read ran after the approved write, once
    assert "declined" in outputs[2]
    close_tool_connection(shop)
    assert duck_count(shop) == 26  # inserted exactly once across the re-run node
    with duckdb.connect(str(shop), read_only=True) as conn:
        assert conn.execute("SELECT price FROM ducks WHERE id = 1").fetchone()[0] == 3.5


def test_without_allow_writes_a_write_is_refused_without_asking(shop: Path) -> None:
    model = write_script(INSERT)
    graph = build_graph(lambda _s: model, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "ro"}}
    settings = Settings(tools=("sql_query",), db=str(shop))
    state = graph.invoke({"messages": [HumanMessage("Add")]}, config, context=settings)
    assert "__interrupt__" not in state
    [result] = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    assert "this is a INSERT statement" in result.content and "cannot be changed" in result.content
    close_tool_connection(shop)
    assert duck_count(shop) == 25


def test_the_exported_graph_pauses_without_a_checkpointer_and_never_writes(shop: Path) -> None:
    model = write_script(INSERT)
    graph = build_graph(lambda _s: model)  # like the exported `graph`
    settings = Settings(tools=("sql_query",), db=str(shop), allow_writes=True)
    state = graph.invoke({"messages": [HumanMessage("Add")]}, context=settings)
    assert state["__interrupt__"][0].value["sql"] == INSERT
    close_tool_connection(shop)
    assert duck_count(shop) == 25


def test_session_asks_its_approver(shop: Path) -> None:
    seen: list[dict] = []
    model = write_script(INSERT)
    session = Session(
        Settings(tools=("sql_query",), db=str(shop), allow_writes=True),
        model_factory=lambda _s: model,
        approve=lambda request: seen.append(request) or True,
    )
    result = session.ask("Add a duck")
    assert [r["sql"] for r in seen] == [INSERT]
    assert result.answer == "Finished." and result.tool_calls[0]["ok"] is True
    assert "__interrupt__" not in result.timings
    close_tool_connection(shop)
    assert duck_count(shop) == 26


def test_session_without_an_approver_declines_and_says_why(shop: Path) -> None:
    model = write_script(INSERT)
    session = Session(
        Settings(tools=("sql_query",), db=str(shop), allow_writes=True),
        model_factory=lambda _s: model,
    )
    result = session.ask("Add a duck")
    [run] = result.tool_calls
    assert run["ok"] is False and "declined" in run["output"] and NO_APPROVER in run["output"]
    close_tool_connection(shop)
    assert duck_count(shop) == 25


def test_a_turn_left_waiting_is_declined_before_the_next_question(shop: Path) -> None:
    model = write_script(INSERT).enqueue_text("1. answer").enqueue_text("DONE").enqueue_text("Hi.")
    settings = Settings(tools=("sql_query",), db=str(shop), allow_writes=True)
    first = Session(settings, thread_id="left", model_factory=lambda _s: model)
    # the process asking for approval died: the thread is paused at the write
    paused = first.graph.invoke(
        {"messages": [HumanMessage("Add a duck")]},
        {"configurable": {"thread_id": "left"}},
        context=settings,
    )
    assert paused["__interrupt__"]
    later = Session(settings, thread_id="left", model_factory=lambda _s: model, approve=None)
    result = later.ask("Hello again")
    assert result.answer == "Hi."
    history = later.history()
    assert [text for role, text in history if role == "assistant"] == ["Finished.", "Hi."]
    declined = [m for m in model.calls[2] if isinstance(m, ToolMessage)]
    assert ABANDONED in declined[-1].content
    close_tool_connection(shop)
    assert duck_count(shop) == 25
