"""Where chat threads are kept: LangGraph checkpointers chosen by the `checkpoint_db` setting.

- Empty (the default): SQLite, `threads.sqlite` in the state directory (`OLLAGRAPH_HOME`).
- A `postgresql://` (or `postgres://`) URL: LangGraph's `PostgresSaver` on that server, from the
  `postgres` extra (`langgraph-checkpoint-postgres` and `psycopg[binary]`). Its tables are created
  (or migrated) once per process with `setup()`. The saver holds a small connection pool that
  checks a connection before lending it, so a chat outlives a restart of the database server.

Savers for one PostgreSQL URL are shared within a process (the evaluation runner makes many
sessions). Errors are the project's: a URL that is not one of these is a `ConfigError`; a
missing extra, an unreachable server, refused credentials, a missing database or tables that
cannot be created are a `CheckpointDBError` saying what to do. Passwords never appear in messages.
"""

from __future__ import annotations

import atexit
import re
import sqlite3
import threading
from pathlib import Path
from typing import Any

from ollagraph.agents.errors import CheckpointDBError, ConfigError, StateDirError
from ollagraph.agents.paths import state_path

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
CONNECT_TIMEOUT = 10  # seconds to wait for the server before saying it cannot be reached
POOL_SIZE = 2  # the saver serialises its queries with a lock; one spare for a reconnect
INSTALL_HINT = (
    "Install the PostgreSQL support: pip install 'ollagraph[postgres]' (that is "
    "langgraph-checkpoint-postgres and 'psycopg[binary]'), or unset checkpoint_db to keep "
    "threads in SQLite."
)

_postgres_savers: dict[str, Any] = {}
_lock = threading.Lock()


def open_checkpointer(checkpoint_db: str = "", path: Path | None = None) -> Any:
    """Open the checkpointer that keeps chat threads.

    Args:
        checkpoint_db: The `checkpoint_db` setting: empty for SQLite in the state directory, or
            a `postgresql://user:password@host:5432/db` URL.
        path: The SQLite file when `checkpoint_db` is empty (default: `threads.sqlite` in the
            state directory).

    Returns:
        A LangGraph checkpointer (`SqliteSaver` or `PostgresSaver`), set up.

    Raises:
        ConfigError: `checkpoint_db` is neither empty nor a PostgreSQL URL, or is a malformed one.
        CheckpointDBError: The PostgreSQL support is not installed, or the server cannot be
            reached, refuses the credentials, lacks the database or the right to create tables.
        StateDirError: The SQLite file cannot be opened or created.
    """
    target = checkpoint_db.strip()
    if not target:
        return open_sqlite(path or state_path("threads.sqlite"))
    if target.lower().startswith(POSTGRES_SCHEMES):
        return open_postgres(target)
    raise ConfigError(
        f"`checkpoint_db` must be empty (SQLite in the state directory) or a PostgreSQL URL, "
        f"got {redact(target)!r}.",
        hint="Example: postgresql://user:password@db-host:5432/ollagraph "
        "(config file, or OLLAGRAPH_CHECKPOINT_DB).",
    )


def open_sqlite(path: Path) -> Any:
    """Open (creating if needed) a SQLite checkpointer in `path`.

    Args:
        path: The database file.

    Raises:
        StateDirError: The file cannot be opened or created.
    """
    from langgraph.checkpoint.sqlite import SqliteSaver

    try:
        conn = sqlite3.connect(str(path), check_same_thread=False)
        saver = SqliteSaver(conn)
        saver.setup()
    except sqlite3.Error as exc:
        raise StateDirError(
            f"Cannot open the chat threads database {path}: {exc}.",
            hint="Check the state directory's permissions and free space, or set OLLAGRAPH_HOME.",
        ) from None
    return saver


def open_postgres(url: str) -> Any:
    """Return this process's `PostgresSaver` for `url`, connecting and running `setup()` once.

    Args:
        url: A `postgresql://` URL (libpq's URI form, query parameters included).

    Raises:
        ConfigError: The URL is malformed.
        CheckpointDBError: The extra is missing, or the server cannot be used (see
            `open_checkpointer`).
    """
    with _lock:
        saver = _postgres_savers.get(url)
        if saver is None:
            saver = _postgres_savers[url] = _connect_postgres(url)
        return saver


def _connect_postgres(url: str) -> Any:
    try:
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool
    except ImportError as exc:  # the extra is absent, or psycopg has no libpq to load
        raise CheckpointDBError(
            f"checkpoint_db names a PostgreSQL server, but its support cannot be imported: {exc}.",
            hint=INSTALL_HINT,
        ) from None

    # What PostgresSaver needs from its connections (see its docs): autocommit, dict rows, and
    # no server-side prepared statements (they break behind PgBouncer in transaction mode).
    options: dict[str, Any] = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    timeout: dict[str, Any] = {}
    if "connect_timeout" not in url:
        timeout["connect_timeout"] = CONNECT_TIMEOUT
    where = describe(url)
    _check_url(url, where)
    # One direct connection first: it gives the server's own reason for a failure (a pool
    # would only time out), and it creates or migrates the tables.
    try:
        conn = psycopg.connect(url, **timeout, **options)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(
            f"Invalid PostgreSQL URL in checkpoint_db ({where}): {_first_line(exc)}.",
            hint="Use postgresql://user:password@host:5432/dbname (libpq URI syntax).",
        ) from None
    except psycopg.Error as exc:
        raise _connection_error(where, exc) from None
    try:
        with conn:
            PostgresSaver(conn).setup()
    except psycopg.Error as exc:  # e.g. no right to create the checkpoint tables
        raise CheckpointDBError(
            f"Cannot set up the chat threads tables in PostgreSQL ({where}): {_first_line(exc)}.",
            hint="The user needs the right to create tables in that database's schema.",
        ) from None
    pool = ConnectionPool(
        url,
        min_size=1,
        max_size=POOL_SIZE,
        kwargs={**timeout, **options},
        check=ConnectionPool.check_connection,
        name="ollagraph-checkpoints",
        open=True,
    )
    atexit.register(pool.close)
    return PostgresSaver(pool)  # type: ignore[arg-type]


def _check_url(url: str, where: str) -> None:
    """Refuse a URL libpq cannot parse, or whose port is not a number, as a `ConfigError`."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        ports = str(conninfo_to_dict(url).get("port") or "5432").split(",")
    except ProgrammingError as exc:
        problem = _first_line(exc)
    else:
        bad = [port for port in ports if not (port.strip().isdigit() and 0 < int(port) < 65536)]
        if not bad:
            return
        problem = f"the port must be a number from 1 to 65535, not {bad[0]!r}"
    raise ConfigError(
        f"Invalid PostgreSQL URL in checkpoint_db ({where}): {problem}.",
        hint="Use postgresql://user:password@host:5432/dbname (libpq URI syntax).",
    )


def _connection_error(where: str, exc: Exception) -> CheckpointDBError:
    """One message for a failed connection: bad credentials, a missing database, or no server."""
    text = str(exc)
    lowered = text.lower()
    if "password" in lowered or "authentication" in lowered or "role" in lowered:
        return CheckpointDBError(
            f"PostgreSQL refused the credentials in checkpoint_db ({where}): {_reason(text)}.",
            hint="Check the user name and password in the URL (config file or "
            "OLLAGRAPH_CHECKPOINT_DB).",
        )
    if "does not exist" in lowered and "database" in lowered:
        return CheckpointDBError(
            f"The database in checkpoint_db does not exist ({where}): {_reason(text)}.",
            hint="Create it first (e.g. `createdb NAME`), or name an existing database.",
        )
    return CheckpointDBError(
        f"Cannot reach PostgreSQL for chat threads ({where}): {_reason(text)}.",
        hint="Check that the server runs and accepts connections at that host and port, or "
        "unset checkpoint_db to keep threads in SQLite.",
    )


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")


def _reason(text: str) -> str:
    """The useful part of libpq's message, without its `connection to server at ...` prefix."""
    line = (text.strip().splitlines() or ["unknown error"])[0]
    line = re.sub(r"^connection (failed|is bad):\s*", "", line)
    line = re.sub(r"^connection to server (at|on) .*? failed:\s*", "", line)
    return line.rstrip(".") or "unknown error"


def redact(url: str) -> str:
    """`url` with its password replaced by `***` (in the user part and a `password=` query)."""
    url = re.sub(r"(://[^:/@?#]*):[^@/?#]*@", r"\1:***@", url)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", url, flags=re.IGNORECASE)


def describe(url: str) -> str:
    """Where a PostgreSQL URL points, for messages: `user@host:port/db`, no password."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(url)
    except Exception:  # not importable, or malformed: the caller reports that
        return redact(url)
    host = str(info.get("host") or "localhost")
    port = str(info.get("port") or "5432")
    user = f"{info['user']}@" if info.get("user") else ""
    return f"{user}{host}:{port}/{info.get('dbname') or ''}"


def close_all() -> None:
    """Forget the shared PostgreSQL savers and close their pools (tests, long-lived callers)."""
    with _lock:
        savers = list(_postgres_savers.values())
        _postgres_savers.clear()
    for saver in savers:
        pool = getattr(saver, "conn", None)
        if pool is not None and hasattr(pool, "close"):
            pool.close()


__all__ = ["close_all", "describe", "open_checkpointer", "open_postgres", "open_sqlite", "redact"]
