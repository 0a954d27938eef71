"""The `sql_query` tool: read-only SQL over the configured DuckDB database.

The database is the `db` setting: a DuckDB file (opened read-only), or a CSV/Parquet file loaded as
a table into an in-memory database. Either way the connection the model's SQL runs on has external
access (files, network) switched off and its configuration locked, only one SELECT-like statement is
accepted, results are capped at `max_rows`, and a query running past `tool_timeout` is interrupted.
The model sees the schema (tables, columns, types, example values) in its instructions before it
writes SQL; `describe_database` produces that text.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ollagraph.agents.config import Settings
from ollagraph.agents.errors import DatabaseError, ToolError
from ollagraph.tools.context import current_settings
from ollagraph.tools.duck import connect

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


def _connect_for_agent(path: Path) -> duckdb.DuckDBPyConnection:
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
    conn.execute("SET enable_external_access = false")
    conn.execute("SET lock_configuration = true")
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
            db = _Database(_connect_for_agent(path), path, stamp, threading.Lock())
            _open[key] = db
        return db


def check_database(settings: Settings) -> Path:
    """Open the run's database once, so a bad `--db` fails before the model is called.

    Args:
        settings: The run's settings.

    Raises:
        DatabaseError: The database is missing, corrupt, locked or unreadable.
    """
    return _database(settings).path


def _explained_type(query: str) -> duckdb.StatementType:
    """Return the type of the statement an EXPLAIN wraps (EXPLAIN also for one not found)."""
    import duckdb

    # The explained statement starts at the first token after EXPLAIN from which the rest of
    # the text parses as one statement: past ANALYZE and any (options); comments are no tokens.
    for position, _ in duckdb.tokenize(query)[1:]:
        try:
            inner = duckdb.extract_statements(query[position:])
        except duckdb.Error:
            continue
        if len(inner) == 1:
            return inner[0].type
    return duckdb.StatementType.EXPLAIN


def check_statement(query: str) -> None:
    """Accept exactly one read-only statement (SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN).

    Args:
        query: The SQL the model wrote.

    Raises:
        ToolError: Empty, unparsable, several statements, or not a read-only statement.
    """
    import duckdb

    if not query.strip():
        raise ToolError("The query is empty. Write one SELECT statement.")
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise ToolError(f"DuckDB could not parse the query: {exc}") from None
    if len(statements) != 1:
        raise ToolError(
            f"Send exactly one SQL statement per call (got {len(statements)}). "
            "Split the work into separate calls."
        )
    kind = statements[0].type
    if kind == duckdb.StatementType.EXPLAIN:  # EXPLAIN ANALYZE runs the statement it explains
        kind = _explained_type(query)
    if kind != duckdb.StatementType.SELECT:
        raise ToolError(
            f"Only read-only queries are allowed (SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, "
            f"EXPLAIN); this is a {kind.name} statement. The database cannot be changed."
        )


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


def run_query(query: str, settings: Settings) -> str:
    """Check and run one query under `settings`; return the formatted result.

    Args:
        query: One read-only SQL statement.
        settings: Which database, the row cap and the time limit.

    Raises:
        ToolError: The statement is refused, DuckDB reports an error, or it ran too long.
    """
    import duckdb

    check_statement(query)
    db = _database(settings)
    with db.lock:
        cursor = db.conn.cursor()
        timer = threading.Timer(settings.tool_timeout, cursor.interrupt)
        timer.start()
        try:
            cursor.execute(query)
            columns = [d[0] for d in cursor.description or []]
            rows = cursor.fetchmany(settings.max_rows)
            more, capped = 0, False
            while more < MAX_COUNTED_ROWS:
                chunk = cursor.fetchmany(10_000)
                if not chunk:
                    break
                more += len(chunk)
            else:
                capped = True
        except duckdb.InterruptException:
            raise ToolError(
                f"The query ran longer than {settings.tool_timeout:g} s and was stopped. "
                "Add filters, aggregate, or use LIMIT."
            ) from None
        except duckdb.Error as exc:
            raise ToolError(f"DuckDB error: {exc}") from None
        finally:
            timer.cancel()
            cursor.close()
    return format_table(columns, rows, more, capped)


def sql_query(query: str) -> str:
    """Run one read-only SQL query (DuckDB dialect) on the database and return the result table.

    Use this for any question about the data in the database: counts, totals, averages, rankings,
    lookups, comparisons over time. The tables, their columns and example values are listed in your
    instructions; use only those names. Only one SELECT statement per call; the database cannot be
    changed. Large results are cut to the first rows, so aggregate or use LIMIT.

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
