"""Open DuckDB databases offline, with clear errors.

Extensions (fts, vss) load from the `duckdb-ext-*` packages installed next to duckdb: their files
sit in DuckDB's own extension-directory layout under `site-packages/duckdb_ext/extensions`, so
pointing `extension_directory` there and running `LOAD` needs no network. Automatic install/load of
extensions from the internet is switched off.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from ollagraph.agents.errors import DatabaseError

if TYPE_CHECKING:
    import duckdb


@cache
def extension_directory() -> Path | None:
    """Return the folder holding the pip-installed DuckDB extension files, if any."""
    spec = importlib.util.find_spec("duckdb_ext")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "extensions"
        if candidate.is_dir():
            return candidate
    return None


def _config() -> dict[str, str | bool]:
    config: dict[str, str | bool] = {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    }
    ext_dir = extension_directory()
    if ext_dir is not None:
        config["extension_directory"] = str(ext_dir)
    return config


def explain_open_error(path: Path, exc: Exception) -> DatabaseError:
    """Turn DuckDB's error on opening `path` into a message for the user.

    Args:
        path: The database file.
        exc: What duckdb raised.
    """
    text = str(exc)
    if "database does not exist" in text or (not path.exists() and "No such file" in text):
        return DatabaseError(f"Database {path} does not exist.", hint="Check the --db path.")
    if "Is a directory" in text or path.is_dir():
        return DatabaseError(f"{path} is a directory, not a DuckDB database file.")
    if "not a valid DuckDB database" in text:
        return DatabaseError(
            f"{path} is not a valid DuckDB database (corrupt, or another kind of file).",
            hint="Point --db at a .duckdb file, or a .csv/.parquet file to load as a table.",
        )
    if "Could not set lock" in text or "Conflicting lock" in text:
        return DatabaseError(
            f"Database {path} is locked by another process that has it open for writing.",
            hint="Close that program (or its connection) and try again.",
        )
    if "newer version" in text or "older version" in text or "serialization" in text.lower():
        return DatabaseError(f"Database {path} was written by an incompatible DuckDB: {text}")
    if "Permission denied" in text:
        return DatabaseError(f"No permission to read database {path}.")
    return DatabaseError(f"Cannot open database {path}: {text}")


def vector_literal(values: Sequence[float], dim: int | None) -> str:
    """A vector as one typed SQL literal, `'[0.1,...]'::FLOAT[dim]`, for similarity queries.

    DuckDB 1.3 takes ~35 ms to bind a Python list of a few hundred floats as a parameter and
    ~3 ms to parse a list of constants; a string it casts in one go costs well under 1 ms.
    Nine significant digits round-trip every FLOAT exactly.

    Args:
        values: The vector (finite numbers; callers check).
        dim: Its length as the column declares it; None for `FLOAT[]`.
    """
    text = ",".join(f"{float(value):.9g}" for value in values)
    return f"'[{text}]'::FLOAT[{'' if dim is None else dim}]"


def string_literals(values: Iterable[str]) -> str:
    """Strings as comma-separated SQL literals (quotes doubled), for `IN (...)`.

    Args:
        values: The strings.
    """
    return ", ".join("'" + str(value).replace("'", "''") + "'" for value in values)


def _refuse_sqlite(file: Path) -> None:
    """A SQLite file would make DuckDB ask to INSTALL its sqlite extension: say what it is."""
    try:
        with file.open("rb") as handle:
            header = handle.read(16)
    except OSError:
        return  # missing or unreadable: duckdb.connect reports it
    if header == b"SQLite format 3\x00":
        raise DatabaseError(
            f"{file} is a SQLite database, not a DuckDB database.",
            hint="Export its tables to CSV or Parquet (`sqlite3 -csv`) and pass one with --db.",
        )


def connect(
    path: str | Path | None,
    *,
    read_only: bool,
    extensions: Sequence[str] = (),
) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB database with network extension loading off.

    Args:
        path: The database file; None or ":memory:" for an in-memory database.
        read_only: Open the file read-only (it must then exist).
        extensions: Extensions to load from the installed extension packages (e.g. "fts", "vss").

    Raises:
        DatabaseError: The file is missing, a directory, corrupt, locked, or an extension is not
            installed.
    """
    import duckdb

    target = ":memory:" if path in (None, ":memory:") else str(Path(str(path)).expanduser())
    if target != ":memory:":
        file = Path(target)
        if file.is_dir():
            raise DatabaseError(f"{file} is a directory, not a DuckDB database file.")
        if read_only and not file.exists():
            raise DatabaseError(f"Database {file} does not exist.", hint="Check the --db path.")
        _refuse_sqlite(file)
    try:
        conn = duckdb.connect(
            target, read_only=read_only and target != ":memory:", config=_config()
        )
    except duckdb.Error as exc:
        raise explain_open_error(Path(target), exc) from None
    for name in extensions:
        try:
            conn.execute(f"LOAD {name}")
        except duckdb.Error as exc:
            conn.close()
            raise DatabaseError(
                f"The DuckDB extension `{name}` could not be loaded offline: {exc}",
                hint=f"Install it with: pip install duckdb-ext-{name}=={duckdb.__version__}.*",
            ) from None
    return conn
