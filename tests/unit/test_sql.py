"""The sql_query tool on real DuckDB databases: formatting, the read-only guard, time limits.

Each test builds its own small database in tmp_path with plain duckdb, closes it, and then lets the
tool open it the way it always does (read-only, external access off, configuration locked).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from ollagraph.agents.config import Settings
from ollagraph.agents.errors import DatabaseError, ToolError
from ollagraph.tools import sql
from ollagraph.tools.context import using_settings
from ollagraph.tools.duck import connect
from ollagraph.tools.sql import (
    MAX_CELL_CHARS,
    check_database,
    check_statement,
    describe_database,
    run_query,
    sql_query,
)

LONG_NOTE = "quack " * 40  # 240 characters
SECRET = "TOP-SECRET-9f3a1c"


@pytest.fixture(autouse=True)
def close_cached_connections(tmp_path: Path) -> Iterator[None]:
    """Close the tool's cached connections to this test's files, so none leak between tests."""
    yield
    root = str(tmp_path.resolve())
    for key in [k for k in sql._open if k.startswith(root)]:
        sql._open.pop(key).conn.close()


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A small DuckDB file: 25 ducks (with awkward cells and comments) and an empty table."""
    path = tmp_path / "shop.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute(
            "CREATE TABLE ducks (id INTEGER, name VARCHAR, note VARCHAR, price DECIMAL(6,2), "
            "weight DOUBLE)"
        )
        conn.execute(
            "INSERT INTO ducks SELECT i, 'Duck ' || i, 'plain', 2.50 + i, i / 3 "
            "FROM range(1, 26) t(i)"
        )
        conn.execute("UPDATE ducks SET note = NULL WHERE id = 2")
        conn.execute("UPDATE ducks SET note = ? WHERE id = 3", [LONG_NOTE])
        conn.execute("UPDATE ducks SET note = 'red|blue', name = 'Two\nLines' WHERE id = 4")
        conn.execute("COMMENT ON TABLE ducks IS 'Rubber ducks for sale'")
        conn.execute("COMMENT ON COLUMN ducks.price IS 'Price in GBP'")
        conn.execute("CREATE TABLE empty_things (a INTEGER, b VARCHAR)")
    return path


@pytest.fixture
def settings(shop: Path) -> Settings:
    return Settings(db=str(shop), max_rows=5, tool_timeout=5.0)


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "secret.csv"
    path.parent.mkdir()
    path.write_text(f"k,v\npassword,{SECRET}\n")
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- formatting --------------------------------------------------------------------------------


def test_small_result_is_an_exact_markdown_table(settings: Settings) -> None:
    out = run_query("SELECT id, name, price FROM ducks WHERE id IN (1, 5) ORDER BY id", settings)
    assert out == (
        "| id | name | price |\n|---|---|---|\n"
        "| 1 | Duck 1 | 3.50 |\n| 5 | Duck 5 | 7.50 |\n(2 rows)"
    )
    assert run_query("SELECT 42 AS answer", settings).endswith("| 42 |\n(1 row)")


def test_rows_are_capped_with_a_footer(settings: Settings) -> None:
    out = run_query("SELECT id FROM ducks ORDER BY id", settings)
    lines = out.splitlines()
    assert lines[2:7] == ["| 1 |", "| 2 |", "| 3 |", "| 4 |", "| 5 |"]
    assert lines[-1] == "… 20 more rows (showing the first 5)."
    assert "| 6 |" not in out


def test_huge_results_stop_counting(settings: Settings) -> None:
    out = run_query("SELECT * FROM range(300000)", settings)
    assert out.splitlines()[-1] == f"… {sql.MAX_COUNTED_ROWS}+ more rows (showing the first 5)."


def test_no_rows_names_the_columns(settings: Settings) -> None:
    assert run_query("SELECT * FROM empty_things", settings) == "(no rows; columns: a, b)"
    out = run_query("SELECT id, name FROM ducks WHERE id > 1000", settings)
    assert out == "(no rows; columns: id, name)"


def test_null_long_cells_pipes_newlines_and_numbers(settings: Settings) -> None:
    out = run_query("SELECT id, name, note, weight FROM ducks WHERE id <= 4 ORDER BY id", settings)
    rows = out.splitlines()[2:6]
    assert rows[0] == "| 1 | Duck 1 | plain | 0.333333 |"
    assert rows[1] == "| 2 | Duck 2 | NULL | 0.666667 |"
    long_cell = rows[2].split(" | ")[2]
    assert len(long_cell) == MAX_CELL_CHARS and long_cell.endswith("…")
    assert long_cell[:-1] == LONG_NOTE[: MAX_CELL_CHARS - 1]
    assert rows[3] == "| 4 | Two Lines | red\\|blue | 1.33333 |"
    assert out.count("\n") == 6  # header, rule, four rows, footer: no stray line breaks


def test_sql_query_reads_the_settings_of_the_call(settings: Settings) -> None:
    with using_settings(settings):
        assert "| 25 |" in sql_query("SELECT COUNT(*) FROM ducks")


def test_duckdb_errors_are_tool_errors(settings: Settings) -> None:
    with pytest.raises(ToolError, match=r"DuckDB error: .*no_such_table"):
        run_query("SELECT * FROM no_such_table", settings)
    with pytest.raises(ToolError, match="could not parse"):
        run_query("SELEC * FROM ducks", settings)


# --- the statement guard -----------------------------------------------------------------------

REFUSED = {
    "DELETE FROM ducks": "DELETE",
    "UPDATE ducks SET price = 0": "UPDATE",
    "INSERT INTO ducks (id) VALUES (99)": "INSERT",
    "DROP TABLE ducks": "DROP",
    "CREATE TABLE x AS SELECT 1": "CREATE",
    "CREATE TEMP TABLE x AS SELECT 1": "CREATE",
    "CREATE MACRO m() AS 1": "CREATE",
    "ALTER TABLE ducks ADD COLUMN y INTEGER": "ALTER",
    "COPY ducks TO '{tmp}/out.csv'": "COPY",
    "COPY (SELECT 1) TO '{tmp}/out.parquet' (FORMAT parquet)": "COPY",
    "EXPORT DATABASE '{tmp}/export'": "EXPORT",
    "ATTACH '{tmp}/new.duckdb' AS other": "ATTACH",
    "DETACH shop": "DETACH",
    "SET enable_external_access = true": "SET",
    "RESET lock_configuration": "SET",
    "USE memory": "SET",
    "CALL pragma_version()": "CALL",
    "CHECKPOINT": "CALL",
    "INSTALL httpfs": "LOAD",
    "LOAD fts": "LOAD",
    "PRAGMA enable_profiling": "PRAGMA",
    "PRAGMA threads = 1": "SET",
    "PRAGMA memory_limit = '1GB'": "SET",
    "VACUUM": "VACUUM",
    "BEGIN TRANSACTION": "TRANSACTION",
    "EXPLAIN ANALYZE DELETE FROM ducks": "DELETE",
    "explain /* sneaky */ analyse UPDATE ducks SET price = 0": "UPDATE",
    "EXPLAIN (ANALYZE, FORMAT json) DROP TABLE ducks": "DROP",
    "EXPLAIN ANALYZE CREATE TABLE x AS SELECT 1": "CREATE",
}


@pytest.mark.parametrize("query", list(REFUSED))
def test_check_statement_refuses_everything_but_reads(query: str, tmp_path: Path) -> None:
    with pytest.raises(ToolError) as info:
        check_statement(query.format(tmp=tmp_path))
    assert f"this is a {REFUSED[query]} statement" in str(info.value)
    assert "cannot be changed" in str(info.value)


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1; SELECT 2",
        "SELECT 1; DROP TABLE ducks",
        "PIVOT ducks ON name USING sum(price)",  # DuckDB makes this CREATE + SELECT
    ],
)
def test_check_statement_refuses_several_statements(query: str) -> None:
    with pytest.raises(ToolError, match="exactly one SQL statement per call"):
        check_statement(query)


@pytest.mark.parametrize("query", ["", "   \n ", "SELEC 1", "SELECT (1"])
def test_check_statement_refuses_empty_and_broken_sql(query: str) -> None:
    with pytest.raises(ToolError, match=r"empty|could not parse"):
        check_statement(query)


ACCEPTED = [
    "SELECT COUNT(*) FROM ducks",
    "  select count(*) from ducks;  ",
    "WITH cheap AS (SELECT * FROM ducks WHERE price < 5) SELECT COUNT(*) FROM cheap",
    "FROM ducks SELECT name LIMIT 1",
    "FROM ducks",
    "DESCRIBE ducks",
    "SHOW TABLES",
    "SHOW ALL TABLES",
    "SUMMARIZE ducks",
    "EXPLAIN SELECT * FROM ducks",
    "EXPLAIN ANALYZE SELECT COUNT(*) FROM ducks",
    "-- a comment first\nEXPLAIN ANALYZE (SELECT 1)",
    "VALUES (1, 'a')",
    "TABLE ducks",
    "PRAGMA table_info('ducks')",
    "SELECT * FROM duckdb_tables()",
]


@pytest.mark.parametrize("query", ACCEPTED)
def test_read_only_statements_are_accepted_and_run(query: str, settings: Settings) -> None:
    check_statement(query)
    out = run_query(query, settings)
    assert out.startswith("| ") and "Error" not in out


# --- the connection itself ---------------------------------------------------------------------

EXTERNAL = [
    "SELECT * FROM read_csv('{secret}')",
    "SELECT * FROM read_csv_auto('{secret}', header = false)",
    "SELECT * FROM '{secret}'",
    "SELECT content FROM read_text('{secret}')",
    "SELECT * FROM read_blob('{secret}')",
    "SELECT * FROM glob('{dir}/*')",
    "SELECT * FROM sniff_csv('{secret}')",
    "SELECT * FROM read_parquet('{dir}/*.parquet')",
]


@pytest.mark.parametrize("template", EXTERNAL)
def test_external_access_is_off(template: str, settings: Settings, secret_file: Path) -> None:
    query = template.format(secret=secret_file, dir=secret_file.parent)
    with pytest.raises(ToolError) as info:
        run_query(query, settings)
    assert "disabled by configuration" in str(info.value)
    assert SECRET not in str(info.value)


def test_configuration_is_locked_even_past_the_guard(
    settings: Settings, secret_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ToolError, match="SET statement"):
        run_query("SET enable_external_access = true", settings)
    # Even with the statement guard switched off, the connection itself refuses.
    monkeypatch.setattr(sql, "check_statement", lambda query: None)
    for statement in (
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "RESET enable_external_access",
        "SET autoinstall_known_extensions = true",
    ):
        with pytest.raises(ToolError, match="configuration has been locked"):
            run_query(statement, settings)
    with pytest.raises(ToolError, match="disabled by configuration"):
        run_query(f"SELECT * FROM read_csv('{secret_file}')", settings)
    with pytest.raises(ToolError, match="read-only"):
        run_query("DELETE FROM ducks", settings)
    with pytest.raises(ToolError, match="read-only"):
        run_query("CREATE TABLE x AS SELECT 1", settings)


def test_hostile_statements_leave_the_file_byte_identical(
    shop: Path, settings: Settings, tmp_path: Path, secret_file: Path
) -> None:
    before = sha256(shop)
    files_before = sorted(p.name for p in tmp_path.iterdir())
    hostile = [q.format(tmp=tmp_path) for q in REFUSED] + [
        t.format(secret=secret_file, dir=secret_file.parent) for t in EXTERNAL
    ]
    for query in hostile:
        with pytest.raises(ToolError):
            run_query(query, settings)
    # table functions that touch storage pass the guard; they must not write either
    assert run_query("SELECT * FROM checkpoint()", settings).startswith("(no rows")
    with pytest.raises(ToolError, match="Cannot FORCE CHECKPOINT"):
        run_query("SELECT * FROM force_checkpoint()", settings)
    assert "| 25 |" in run_query("SELECT COUNT(*) FROM ducks WHERE price > 0", settings)
    sql._open.pop(str(shop.resolve())).conn.close()
    assert sha256(shop) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == files_before  # no wal, copy or export


def test_explain_analyze_cannot_change_a_loaded_csv(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("name,age\nAda,36\nAlan,41\n")
    settings = Settings(db=str(path))
    for query in ("EXPLAIN ANALYZE DELETE FROM people", "EXPLAIN ANALYZE DROP TABLE people"):
        with pytest.raises(ToolError, match="Only read-only queries"):
            run_query(query, settings)
    assert "| 2 |" in run_query("SELECT COUNT(*) FROM people", settings)


def test_a_slow_query_is_interrupted_at_the_time_limit(shop: Path) -> None:
    settings = Settings(db=str(shop), tool_timeout=0.5)
    endless = "SELECT SUM(a.range * b.range) FROM range(100000000) a, range(100000000) b"
    errors: list[Exception] = []

    def work() -> None:
        try:
            run_query(endless, settings)
        except Exception as exc:
            errors.append(exc)

    # in a thread, so a query that is never interrupted fails the test instead of hanging it
    worker = threading.Thread(target=work, daemon=True)
    start = time.perf_counter()
    worker.start()
    worker.join(10)
    elapsed = time.perf_counter() - start
    assert not worker.is_alive(), "the query was not interrupted"
    assert 0.4 <= elapsed < 5, f"took {elapsed:.1f} s"
    [error] = errors
    assert isinstance(error, ToolError)
    assert "longer than 0.5 s and was stopped" in str(error)
    # the connection is still usable afterwards
    assert "| 25 |" in run_query("SELECT COUNT(*) FROM ducks", settings)


# --- CSV and Parquet files ---------------------------------------------------------------------


def test_csv_file_loads_as_a_table_named_after_the_file(tmp_path: Path) -> None:
    path = tmp_path / "2024 Sales-Report.csv"
    path.write_text("region,amount\nnorth,10\nsouth,32\n")
    settings = Settings(db=str(path))
    assert "| 42 |" in run_query("SELECT SUM(amount) FROM t_2024_sales_report", settings)
    assert "Table t_2024_sales_report (~2 rows)" in describe_database(settings)
    assert "amount BIGINT e.g." in describe_database(settings)


def test_tsv_file_loads_as_a_table(tmp_path: Path) -> None:
    path = tmp_path / "Ducks.TSV"
    path.write_text("name\tcolour\nBill\tyellow\nBen\tblue\n")
    out = run_query("SELECT colour FROM ducks ORDER BY name", Settings(db=str(path)))
    assert out.splitlines()[2:4] == ["| blue |", "| yellow |"]


def test_parquet_file_loads_as_a_table(tmp_path: Path) -> None:
    path = tmp_path / "My Data.v2.parquet"
    with duckdb.connect() as conn:
        conn.execute(f"COPY (SELECT range AS n FROM range(10)) TO '{path}' (FORMAT parquet)")
    assert "| 45 |" in run_query("SELECT SUM(n) FROM my_data_v2", Settings(db=str(path)))


def test_external_access_is_off_for_loaded_files_too(tmp_path: Path, secret_file: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("a\n1\n")
    with pytest.raises(ToolError, match="disabled by configuration"):
        run_query(f"SELECT * FROM read_text('{secret_file}')", Settings(db=str(path)))


def test_a_changed_file_is_reopened(tmp_path: Path) -> None:
    path = tmp_path / "counts.csv"
    path.write_text("n\n1\n2\n")
    settings = Settings(db=str(path))
    assert "| 3 |" in run_query("SELECT SUM(n) FROM counts", settings)
    path.write_text("n\n1\n2\n3\n")  # a new size
    assert "| 6 |" in run_query("SELECT SUM(n) FROM counts", settings)
    path.write_text("n\n4\n5\n6\n")  # the same size, a new modification time
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert "| 15 |" in run_query("SELECT SUM(n) FROM counts", settings)
    assert "| 15 |" in run_query("SELECT SUM(n) FROM counts", settings)  # cached now


def test_a_broken_or_missing_data_file_is_a_database_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="does not exist"):
        check_database(Settings(db=str(tmp_path / "missing.csv")))
    bad = tmp_path / "bad.parquet"
    bad.write_text("this is not parquet")
    with pytest.raises(DatabaseError, match=r"Cannot load .*bad\.parquet as a table"):
        check_database(Settings(db=str(bad)))


# --- describing the database -------------------------------------------------------------------


def test_describe_database_lists_tables_columns_examples_and_comments(settings: Settings) -> None:
    text = describe_database(settings)
    assert text.splitlines()[0] == "Table ducks (~25 rows): Rubber ducks for sale"
    assert "  id INTEGER e.g. " in text
    price = next(line for line in text.splitlines() if line.startswith("  price "))
    assert price.startswith("  price DECIMAL(6,2) e.g. ") and price.endswith("-- Price in GBP")
    assert "  note VARCHAR e.g. " in text
    assert "Table empty_things (~0 rows)" in text
    assert "  a INTEGER\n  b VARCHAR" in text  # an empty table has no examples
    assert text.index("Table ducks") < text.index("Table empty_things")


def test_describe_database_caps_the_tables(settings: Settings) -> None:
    text = describe_database(settings, max_tables=1)
    assert "Table ducks" in text and "Table empty_things" not in text
    assert text.endswith("… and 1 more tables (use SHOW TABLES).")


def test_describe_an_empty_database(tmp_path: Path) -> None:
    path = tmp_path / "empty.duckdb"
    duckdb.connect(str(path)).close()
    assert describe_database(Settings(db=str(path))) == "The database has no tables."


def test_the_bundled_sample_by_default() -> None:
    from ollagraph.data import sample_database

    path = sample_database()
    before = sha256(path)
    settings = Settings(max_rows=3)
    assert check_database(settings) == path.resolve()
    text = describe_database(settings)
    for table in ("customers", "ducks", "order_items", "orders", "reviews"):
        assert f"Table {table} (~" in text
    out = run_query("SELECT COUNT(*) FROM ducks", settings)
    with pytest.raises(ToolError):
        run_query("DELETE FROM ducks", settings)
    sql._open.pop(str(path.resolve())).conn.close()
    with connect(path, read_only=True) as conn:
        count = conn.execute("SELECT COUNT(*) FROM ducks").fetchone()
    assert count is not None and f"| {count[0]} |" in out
    assert sha256(path) == before


# --- databases that cannot be opened -----------------------------------------------------------


def test_missing_database(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError) as info:
        check_database(Settings(db=str(tmp_path / "nope.duckdb")))
    assert str(info.value).startswith(f"Database {tmp_path / 'nope.duckdb'} does not exist.")
    assert not (tmp_path / "nope.duckdb").exists()  # opening read-only never creates it


def test_directory_as_database(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="is a directory, not a DuckDB database file"):
        check_database(Settings(db=str(tmp_path)))


@pytest.mark.parametrize("content", [b"", b"this is not a database\n" * 500])
def test_corrupt_database(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "corrupt.duckdb"
    path.write_bytes(content)
    with pytest.raises(DatabaseError, match="is not a valid DuckDB database"):
        check_database(Settings(db=str(path)))
    assert path.read_bytes() == content


def test_database_locked_by_another_process(shop: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); "
            "sys.stdin.read()",
            str(shop),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(DatabaseError) as info:
            run_query("SELECT 1", Settings(db=str(shop)))
        assert "is locked by another process" in str(info.value)
        assert str(shop.resolve()) in str(info.value)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
    # once the writer is gone the same settings work
    assert "| 25 |" in run_query("SELECT COUNT(*) FROM ducks", Settings(db=str(shop)))
