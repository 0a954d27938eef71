"""The bookkeeping of a documents store file, beside its chunks.

The `meta` and `files` tables (`BOOKKEEPING_SQL`) and the `meta` key writers renew on a change
of chunks (`DATA_VERSION_KEY`), what the store remembers of an ingested file
(`FileRecord`), recognising a full disk (`is_out_of_space`) with the hint to give, and loading
DuckDB extensions on any connection without ever installing (downloading) one.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from ollagraph.agents.errors import DocumentStoreError
from ollagraph.tools import duck

BOOKKEEPING_SQL = """
    CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
    CREATE TABLE IF NOT EXISTS files (
        path VARCHAR PRIMARY KEY,
        sha256 VARCHAR NOT NULL,
        chunks INTEGER NOT NULL,
        ingested_at TIMESTAMP NOT NULL
    );
"""
# The `meta` key writers set (to a fresh random value) when they commit a change of chunks.
DATA_VERSION_KEY = "data_version"


@dataclass(frozen=True)
class FileRecord:
    """What the store remembers about one ingested file.

    Attributes:
        path: The file's absolute path when it was ingested.
        sha256: Hex SHA-256 of the file's bytes.
        chunks: How many chunks it was split into.
        ingested_at: When it was (last) written, local time.
    """

    path: str
    sha256: str
    chunks: int
    ingested_at: datetime


OUT_OF_SPACE_HINT = (
    "Free some disk space (or point --docs at another disk) and run the same command again: "
    "files already in the store are skipped."
)
_OUT_OF_SPACE = tuple(os.strerror(code) for code in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT))


def is_out_of_space(exc: BaseException) -> bool:
    """Whether a DuckDB (or OS) error says the disk, a quota or a file-size limit is full.

    Args:
        exc: The error raised by a write.
    """
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return True
    return any(text in str(exc) for text in _OUT_OF_SPACE)


def ingest_hint(path: Path | str) -> str:
    """The command that builds a documents store at `path`."""
    return f"Build it with: agent ingest PATH --docs {path}"


def load_extensions(conn: duckdb.DuckDBPyConnection, names: Sequence[str]) -> None:
    """`LOAD` extensions on any connection without ever installing (downloading) one.

    A connection from `ollagraph.tools.duck.connect` finds the pip-installed extension files
    through its `extension_directory`; a connection made elsewhere (`client=`) may not, so a
    file from the `duckdb-ext-*` wheels is loaded by its full path.
    """
    loaded = {
        row[0]
        for row in conn.execute(
            "SELECT extension_name FROM duckdb_extensions() WHERE loaded"
        ).fetchall()
    }
    ext_dir = duck.extension_directory()
    platform = conn.execute("PRAGMA platform").fetchone()
    for name in names:
        if name in loaded:
            continue
        candidates: list[str] = []
        if ext_dir is not None and platform is not None:
            file = ext_dir / f"v{duckdb.__version__}" / platform[0] / f"{name}.duckdb_extension"
            if file.is_file():
                candidates.append(f"LOAD '{file.as_posix()}'")
        candidates.append(f"LOAD {name}")
        error: Exception | None = None
        for statement in candidates:
            try:
                conn.execute(statement)
                error = None
                break
            except duckdb.Error as exc:
                error = exc
        if error is not None:
            raise DocumentStoreError(
                f"The DuckDB extension `{name}` could not be loaded offline: {error}",
                hint=f"Install it with: pip install duckdb-ext-{name}=={duckdb.__version__}.*",
            )


def table_exists(conn: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the connection's own database has a table called `name`."""
    rows = conn.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = current_schema() AND table_name = ?",
        [name],
    ).fetchall()  # all: a half-read result keeps its transaction open and blocks CHECKPOINT
    return bool(rows and rows[0][0])


__all__ = [
    "BOOKKEEPING_SQL",
    "DATA_VERSION_KEY",
    "OUT_OF_SPACE_HINT",
    "FileRecord",
    "ingest_hint",
    "is_out_of_space",
    "load_extensions",
    "table_exists",
]
