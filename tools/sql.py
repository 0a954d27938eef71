"""The `sql_query` tool: SQL over the configured DuckDB database, read-only unless writes are on.

The database is the `db` setting: a DuckDB file (opened read-only), or a CSV/Parquet file loaded as
a table into an in-memory database. Either way the connection the model's SQL runs on has external
access (files, network) and extension auto-loading switched off, `memory_limit` and `threads` set
and its configuration locked; only one SELECT-like statement is accepted (`sql_guard`), results are
capped at `max_rows`, and a query running past `tool_timeout` is interrupted.

With `allow_writes` on a writable DuckDB file, one write statement (INSERT, UPDATE, DELETE,
CREATE/DROP TABLE, ...) runs on a separate writable connection, with external access still off,
and only once the user approved it: the graph marks approved statements with `approved_writes`.
The model sees the schema (tables, columns, types, example values) in its instructions before it
writes SQL; `describe_database` produces that text.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ollagraph.agents.config import Settings
from ollagraph.agents.errors import DatabaseError, ToolError
from ollagraph.tools.context import current_settings, keeps_time_limit
from ollagraph.tools.duck import connect
from ollagraph.tools.sql_guard import Verdict, classify

if TYPE_CHECKING:
    import duckdb

TABLE_FILE_SUFFIXES = {".csv": "read_csv_auto", ".tsv": "read_csv_auto", ".parquet": "read_parquet"}
MAX_CELL_CHARS = 80
MAX_COUNTED_ROWS = 100_000


@dataclass
class _Database:
    """An open connection plus what identifies it (to reopen when the file changes).

    `descriptions` caches `describe_database` results for this version of the file: the agent
    shows the schema to the model on every step, and the example values cost queries.
    """

    conn: duckdb.DuckDBPyConnection
    path: Path
    stamp: tuple[float, int]
    lock: threading.Lock
    descriptions: dict[tuple[int, bool], str] = field(default_factory=dict)


_open: dict[str, _Database] = {}
_open_lock = threading.Lock()


def database_path(settings: Settings) -> Path:
    """Return the database file a run uses: the `db` setting, or the bundled sample.

    Args:
        settings: The run's settings.
    """
    if settings.db:
        return Path(settings.db).expanduser()
    from ollagraph.data import sample_database

    return sample_database()


def _table_name(path: Path) -> str:
    name = re.sub(r"\W+", "_", path.stem).strip("_").lower() or "data"
    return name if not name[0].isdigit() else f"t_{name}"


def _limit(conn: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Switch off external access, set the resource limits, then lock the configuration."""
    import duckdb

    memory = settings.sql_memory_limit.replace("'", "")
    try:
        conn.execute("SET enable_external_access = false")
        conn.execute(f"SET memory_limit = '{memory}'")
        conn.execute(f"SET threads = {int(settings.sql_threads)}")
        conn.execute("SET lock_configuration = true")
    except duckdb.Error as exc:
        conn.close()
        raise DatabaseError(
            f"Cannot apply the SQL limits (sql_memory_limit={settings.sql_memory_limit!r}, "
            f"sql_threads={settings.sql_threads}): {exc}",
            hint="Set sql_memory_limit to a size such as '1GB' and sql_threads to 1 or more.",
        ) from None


def _connect_for_agent(path: Path, settings: Settings) -> duckdb.DuckDBPyConnection:
    """Open `path` for the model's queries: read-only, no external access, configuration locked."""
    import duckdb

    reader = TABLE_FILE_SUFFIXES.get(path.suffix.lower())
    if reader is None:
        conn = connect(path, read_only=True)
    else:
        if not path.is_file():
            raise DatabaseError(f"Data file {path} does not exist.", hint="Check the --db path.")
        conn = connect(None, read_only=False)
        table = _table_name(path)
        literal = str(path).replace("'", "''")
        try:
            conn.execute(f"CREATE TABLE \"{table}\" AS SELECT * FROM {reader}('{literal}')")
        except duckdb.Error as exc:
            conn.close()
            raise DatabaseError(f"Cannot load {path} as a table: {exc}") from None
    _limit(conn, settings)
    return conn


def _database(settings: Settings) -> _Database:
    """Return the cached connection for the run's database, reopening it if the file changed."""
    path = database_path(settings).resolve()
    try:
        st = path.stat()
        stamp = (st.st_mtime, st.st_size)
    except OSError:
        stamp = (0.0, -1)
    key = str(path)
    with _open_lock:
        db = _open.get(key)
        if db is None or db.stamp != stamp:
            if db is not None:
                db.conn.close()
            db = _Database(_connect_for_agent(path, settings), path, stamp, threading.Lock())
            _open[key] = db
        return db


def check_database(settings: Settings) -> Path:
    """Open the run's database once, so a bad `--db` fails before the model is called.

    With `allow_writes`, also check that the database can take writes.

    Args:
        settings: The run's settings.

    Raises:
        DatabaseError: The database is missing, corrupt, locked or unreadable, or writes are
            allowed and it is not a writable DuckDB file.
    """
    path = _database(settings).path
    if settings.allow_writes:
        check_writable(settings)
    return path


def check_writable(settings: Settings) -> Path:
    """Check that `--allow-writes` can work: a DuckDB file of the user's that may be written.

    Args:
        settings: The run's settings.

    Raises:
        DatabaseError: The database is the bundled sample, a CSV/Parquet file (loaded into
            memory, so writes would be lost), missing, or not writable.
    """
    from ollagraph.data import sample_database

    path = database_path(settings).resolve()
    hint = "Pass --db with a DuckDB file of your own, or leave out --allow-writes."
    if not settings.db or path == sample_database().resolve():
        raise DatabaseError("--allow-writes cannot change the bundled sample database.", hint=hint)
    if path.suffix.lower() in TABLE_FILE_SUFFIXES:
        raise DatabaseError(
            f"--allow-writes needs a DuckDB database; {path.name} is a "
            f"{path.suffix.lstrip('.').upper()} file loaded into memory, so writes would be lost.",
            hint=hint,
        )
    if not path.is_file():
        raise DatabaseError(f"Database {path} does not exist.", hint="Check the --db path.")
    if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK):
        raise DatabaseError(
            f"--allow-writes: database {path} (or its folder, for DuckDB's write-ahead log) is "
            "not writable.",
            hint="Check the file's permissions, or leave out --allow-writes.",
        )
    return path


def check_statement(query: str) -> Verdict:
    """Accept exactly one read-only statement (SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN).

    Args:
        query: The SQL the model wrote.

    Returns:
        The guard's verdict (see `sql_guard.classify`).

    Raises:
        ToolError: Empty, unparsable, several statements, or not a read-only statement.
    """
    verdict = classify(query)
    if not verdict.allowed:
        raise ToolError(verdict.reason)
    return verdict


_approved: ContextVar[frozenset[str]] = ContextVar("approved_writes", default=frozenset())


@contextlib.contextmanager
def approved_writes(queries: Iterable[str]) -> Iterator[None]:
    """Mark write statements the user approved, for tool calls made inside the block.

    Only an approved statement, character for character, runs as a write; the mark travels with
    the context into the thread the tool runs in.

    Args:
        queries: The exact SQL texts the user approved.
    """
    token = _approved.set(_approved.get() | frozenset(queries))
    try:
        yield
    finally:
        _approved.reset(token)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, Decimal):
        text = format(value, "f")
    else:
        text = str(value)
    text = text.replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"


def format_table(columns: list[str], rows: list[tuple[Any, ...]], more: int, capped: bool) -> str:
    """Render rows as a compact Markdown table with a row-count footer.

    Args:
        columns: Column names.
        rows: The rows to show.
        more: How many further rows exist beyond `rows`.
        capped: True when counting stopped early, so `more` is a lower bound.
    """
    if not rows:
        return f"(no rows; columns: {', '.join(columns)})"
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    if more:
        plus = "+" if capped else ""
        lines.append(f"… {more}{plus} more rows (showing the first {len(rows)}).")
    else:
        lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)


def _acquire(lock: threading.Lock, settings: Settings) -> None:
    if not lock.acquire(timeout=settings.tool_timeout):
        raise ToolError(
            "The database is still busy with an earlier query after "
            f"{settings.tool_timeout:.3g} s. Try again in a moment with a smaller query."
        )


def _fetch(
    conn: duckdb.DuckDBPyConnection, query: str, settings: Settings
) -> tuple[list[str], list[tuple[Any, ...]], int, bool]:
    """Run `query` on a cursor of `conn`, interrupted at `tool_timeout`; return capped rows."""
    import duckdb

    cursor = conn.cursor()
    timed_out = threading.Event()

    def stop() -> None:
        timed_out.set()
        cursor.interrupt()

    timer = threading.Timer(settings.tool_timeout, stop)
    timer.start()
    finished = False
    try:
        cursor.execute(query)
        columns = [d[0] for d in cursor.description or []]
        rows = cursor.fetchmany(settings.max_rows) if columns else []
        more, capped = 0, False
        while columns and more < MAX_COUNTED_ROWS:
            chunk = cursor.fetchmany(10_000)
            if not chunk:
                break
            more += len(chunk)
        else:
            capped = bool(columns)
        finished = True
        return columns, rows, more, capped
    except (duckdb.InterruptException, RuntimeError) as exc:
        if timed_out.is_set():
            raise ToolError(
                f"The query ran longer than {settings.tool_timeout:.3g} s and was stopped. "
                "Add filters, aggregate, or use LIMIT."
            ) from None
        if "interrupted" in str(exc).lower():
            # Ctrl-C in the thread running the query: DuckDB stops it and turns the pending
            # KeyboardInterrupt into this error. It is the user's, not the model's.
            raise KeyboardInterrupt from None
        if isinstance(exc, duckdb.Error):
            raise ToolError(f"DuckDB error: {exc}") from None
        raise
    except duckdb.Error as exc:
        raise ToolError(f"DuckDB error: {exc}") from None
    finally:
        timer.cancel()
        if not finished:  # an error or Ctrl-C may leave DuckDB's workers on the query
            cursor.interrupt()
        cursor.close()


def fetch_rows(
    query: str, settings: Settings
) -> tuple[list[str], list[tuple[Any, ...]], int, bool]:
    """Check and run one read-only query on the cached connection; return its capped rows.

    Args:
        query: One SQL statement (it must pass the read-only guard).
        settings: Which database, the row cap (`max_rows`) and the time limit.

    Returns:
        The column names, the first `max_rows` rows, how many more rows there were (counted up
        to a cap), and whether that count was capped.

    Raises:
        ToolError: The statement is refused, DuckDB reports an error, or it ran too long.
    """
    check_statement(query)
    db = _database(settings)
    _acquire(db.lock, settings)
    try:
        return _fetch(db.conn, query, settings)
    finally:
        db.lock.release()


def run_query(query: str, settings: Settings) -> str:
    """Check and run one query under `settings`; return the formatted result.

    A read runs on the cached read-only connection. With `allow_writes`, a write statement the
    user approved (see `approved_writes`) runs on a separate writable connection.

    Args:
        query: One SQL statement.
        settings: Which database, the row cap, the time limit and whether writes are allowed.

    Raises:
        ToolError: The statement is refused, DuckDB reports an error, or it ran too long.
        DatabaseError: Writes are allowed but the database cannot take them.
    """
    if settings.allow_writes:
        verdict = classify(query, allow_writes=True)
        if verdict.write:
            return run_write(query, settings)
        if not verdict.allowed:
            raise ToolError(verdict.reason)
    return format_table(*fetch_rows(query, settings))


def run_write(query: str, settings: Settings) -> str:
    """Run one approved write statement on a writable connection, then close it.

    The read-only connection to the file is closed first (DuckDB opens a file either read-only or
    writable within one process), and reopened by the next read. The writable connection has
    external access off and its configuration locked like the read-only one; the statement runs
    in its own transaction and is interrupted (and rolled back) at `tool_timeout`.

    Args:
        query: The SQL text exactly as the user approved it.
        settings: Which database and the limits; `allow_writes` must be on.

    Raises:
        ToolError: Writes are off, the statement is not an approved write, or DuckDB refused it.
        DatabaseError: The database cannot take writes (sample, CSV/Parquet, read-only file).
    """
    verdict = classify(query, allow_writes=settings.allow_writes)
    if not settings.allow_writes or not verdict.write:
        raise ToolError(verdict.reason or f"A {verdict.kind} statement is not a write.")
    if query not in _approved.get():
        raise ToolError(
            f"This {verdict.kind} statement changes the database and needs the user's approval, "
            "which it does not have. It did not run."
        )
    path = check_writable(settings)
    with _open_lock:
        old = _open.pop(str(path), None)
        if old is not None:
            _acquire(old.lock, settings)
            try:
                old.conn.close()
            finally:
                old.lock.release()
        conn = connect(path, read_only=False)
        try:
            _limit(conn, settings)
            columns, rows, more, capped = _fetch(conn, query, settings)
        finally:
            conn.close()
    if columns == ["Count"] and len(rows) <= 1:  # DuckDB's answer to DML; DDL has no row
        if not rows:
            return f"Done: the {verdict.kind} statement ran."
        changed = rows[0][0]
        return f"Done: the {verdict.kind} statement ran and changed {changed} row" + (
            "." if changed == 1 else "s."
        )
    if not columns:
        return f"Done: the {verdict.kind} statement ran."
    return f"Done: the {verdict.kind} statement ran.\n" + format_table(columns, rows, more, capped)


@keeps_time_limit  # the query is interrupted and the lock waits at `tool_timeout`
def sql_query(query: str) -> str:
    """Run one read-only SQL query (DuckDB dialect) on the database and return the result table.

    Use this for any question about the data in the database: counts, totals, averages, rankings,
    lookups, comparisons over time. The tables, their columns and example values are listed in your
    instructions; use only those names. One statement per call. The database is read-only unless
    the user allowed writes; then a write (INSERT, UPDATE, DELETE, CREATE TABLE) runs once the
    user approves it. Large results are cut to the first rows, so aggregate or use LIMIT.

    Args:
        query: One DuckDB SQL SELECT statement, for example `SELECT COUNT(*) FROM ducks`.
    """
    return run_query(query, current_settings())


def _examples(conn: duckdb.DuckDBPyConnection, table: str, column: str, kind: str) -> str:
    if kind.startswith(("BLOB", "FLOAT[", "DOUBLE[")) or kind.endswith("[]"):
        return ""
    try:
        values = conn.execute(
            f'SELECT DISTINCT "{column}" FROM "{table}" WHERE "{column}" IS NOT NULL LIMIT 3'
        ).fetchall()
    except Exception:
        return ""
    shown = [_cell(v[0])[:30] for v in values]
    return f" e.g. {', '.join(shown)}" if shown else ""


def describe_database(settings: Settings, max_tables: int = 30, compact: bool = False) -> str:
    """Describe the run's database for the model: tables, row counts, columns, types, examples.

    Args:
        settings: Which database.
        max_tables: Most tables to list.
        compact: One line per table (`name(col TYPE, ...)`), no comments or examples: for small
            models, whose context and attention are short.

    Raises:
        DatabaseError: The database cannot be opened.
    """
    db = _database(settings)
    key = (max_tables, compact)
    if key not in db.descriptions:
        db.descriptions[key] = _describe(db, max_tables, compact)
    return db.descriptions[key]


def _describe(db: _Database, max_tables: int, compact: bool) -> str:
    with db.lock:
        conn = db.conn.cursor()
        try:
            tables = conn.execute(
                "SELECT table_name, comment, estimated_size FROM duckdb_tables() "
                "WHERE NOT internal ORDER BY table_name"
            ).fetchall()
            if not tables:
                return "The database has no tables."
            parts = []
            for table, comment, size in tables[:max_tables]:
                header = f"Table {table} (~{size} rows)" + (f": {comment}" if comment else "")
                cols = conn.execute(
                    "SELECT column_name, data_type, comment FROM duckdb_columns() "
                    "WHERE table_name = ? ORDER BY column_index",
                    [table],
                ).fetchall()
                if compact:
                    columns = ", ".join(f"{name} {kind}" for name, kind, _ in cols)
                    parts.append(f"{table}({columns})")
                    continue
                lines = [header]
                for name, kind, col_comment in cols:
                    note = f" -- {col_comment}" if col_comment else ""
                    lines.append(f"  {name} {kind}{_examples(conn, table, name, kind)}{note}")
                parts.append("\n".join(lines))
            if len(tables) > max_tables:
                parts.append(f"… and {len(tables) - max_tables} more tables (use SHOW TABLES).")
            return "\n".join(parts)
        finally:
            conn.close()
