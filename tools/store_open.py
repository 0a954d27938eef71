"""Opening a documents store file: create its schema, check its embedding model, explain failures.

`open_store` is how every caller gets a `DocumentStore` (`tools.store`): it refuses a folder, a
missing file (unless creating), a corrupt or foreign DuckDB file, a store made by a newer
ollagraph or with another embedding model, and a store locked by another process — each with a
message that says what to do — and removes a store whose creation failed half-way.
"""

from __future__ import annotations

import re
from contextlib import suppress
from datetime import datetime
from pathlib import Path

import duckdb

from ollagraph.agents.errors import DatabaseError, DocumentStoreError
from ollagraph.tools import duck
from ollagraph.tools.store import (
    BOOKKEEPING_SQL,
    EXTENSIONS,
    INDEX_KINDS,
    OUT_OF_SPACE_HINT,
    SCHEMA_VERSION,
    TABLE,
    DocumentStore,
    ingest_hint,
    is_out_of_space,
    table_exists,
)


def _open_error(path: Path, exc: DatabaseError) -> DocumentStoreError:
    """Explain why the DuckDB file at `path` could not be opened as a documents store."""
    text = exc.message
    if "not a valid DuckDB database" in text:
        return DocumentStoreError(
            f"{path} is not a documents store: it is corrupt or another kind of file.",
            hint=f"Delete it and rebuild it with: agent ingest PATH --docs {path}",
        )
    if "locked" in text:
        holder = re.search(r"PID (\d+)", str(exc.__cause__ or exc.__context__ or ""))
        return DocumentStoreError(
            f"Documents store {path} is in use by another process"
            + (f" (PID {holder.group(1)})" if holder else "")
            + ": an `agent ingest` writing to it, or an agent searching it while you ingest.",
            hint="Wait for it to finish, or close that program, and try again.",
        )
    if "different configuration" in text:
        return DocumentStoreError(
            f"Documents store {path} is already open in this process in another mode "
            "(read-only for searching, or read-write for ingesting).",
            hint="Close the other store first (ollagraph.tools.documents.release_store).",
        )
    hint = OUT_OF_SPACE_HINT if is_out_of_space(exc) else exc.hint
    return DocumentStoreError(f"Cannot open documents store {path}: {text}", hint=hint)


def open_store(
    path: str | Path,
    *,
    create: bool,
    embed_dim: int | None = None,
    embed_model_name: str | None = None,
    read_only: bool = False,
    vector_index: bool | str = False,
    vector_cache_mb: int | None = None,
) -> DocumentStore:
    """Open (or create) the documents store at `path` and check its embedding model.

    Args:
        path: The store's .duckdb file.
        create: Create the store when the file does not exist (needs `embed_dim` and
            `embed_model_name`). Without it a missing file is an error.
        embed_dim: The vector length of the embedding model; checked against an existing store.
        embed_model_name: The embedding model's spec (`minilm`, `ollama:NAME:TAG`); an
            existing store made with another model is refused. None skips the check.
        read_only: Open without write access (several processes may search at once).
        vector_index: The index this writer builds or updates when it closes a store of
            `INDEX_MIN_ROWS`+ chunks: "ivf" (or True), "hnsw", or "off" (or False); the
            `vector_index` setting. Searchers use an index whenever the file has one.
        vector_cache_mb: Most memory (MB) the in-memory copy of the vectors that unfiltered
            searches use may take; larger stores are searched through SQL. 0 turns it off;
            None: `DocumentStore.vector_cache_mb` (512). The `vector_cache_mb` setting.

    Returns:
        The open store; call `close()` when done with it.

    Raises:
        DocumentStoreError: The file is missing (without `create`), corrupt, not a documents
            store, made by a newer ollagraph, locked, or built with another embedding model.
    """
    kind = index_kind(vector_index)
    file = Path(path).expanduser()
    if file.is_dir():
        raise DocumentStoreError(
            f"{file} is a directory, not a documents store file.",
            hint=f"Name a .duckdb file, e.g. --docs {file / 'docs.duckdb'}",
        )
    exists = file.exists()
    if not exists and not create:
        raise DocumentStoreError(f"Documents store {file} does not exist.", hint=ingest_hint(file))
    if not exists and (embed_dim is None or not embed_model_name):
        raise ValueError("creating a documents store needs embed_dim and embed_model_name")
    if create and read_only:
        raise ValueError("a store opened read-only cannot be created")
    if not exists:
        file.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = _attach(file, read_only=read_only)
    except DatabaseError as exc:
        if not exists:
            _remove_database(file)
        raise _open_error(file, exc) from None
    try:
        meta = _check_or_init(conn, file, create, embed_dim, embed_model_name)
        store = DocumentStore(
            database_name=file.name,
            persist_dir=str(file.parent),
            table_name=TABLE,
            embed_dim=int(meta["embed_dim"]),
            client=conn,
            embed_model_name=meta["embed_model"],
        )
    except BaseException:
        with suppress(duckdb.Error):
            conn.close()
        if not exists:  # a half-created store would be refused as "not a documents store"
            _remove_database(file)
        raise
    # `fetchone` leaves its result streaming, and with it a transaction open on `conn`, until the
    # next statement there; an old open transaction makes a CHECKPOINT from the store's cursors
    # fail ("other write transactions active") once rows were updated or deleted. Finish it.
    with suppress(duckdb.Error):
        conn.execute("SELECT 1").fetchall()
    store._owns_connection = True
    store._index_kind = kind
    store._cache_mb = vector_cache_mb
    return store


def index_kind(setting: bool | str) -> str:
    """The index kind a `vector_index` value names: True is "ivf", False is "off".

    Raises:
        ValueError: Neither a bool nor one of `INDEX_KINDS`.
    """
    if isinstance(setting, bool):
        return "ivf" if setting else "off"
    kind = str(setting).strip().lower()
    if kind not in INDEX_KINDS:
        raise ValueError(f"vector_index must be one of {', '.join(INDEX_KINDS)}, not {setting!r}")
    return kind


def _attach(file: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Open the store; first replay a write-ahead log left by a killed writer, `vss` loaded.

    DuckDB replays a database's log as it opens the file, before any extension can be loaded
    on the new connection. A log holding changes to an HNSW-indexed table then fails ("unknown
    index type HNSW"), and a log that creates an HNSW index (a writer killed between building
    the index and checkpointing it) never replays read-only: vss writes the index's blocks as
    it replays. So when a log is there, the file is first attached read-write to an in-memory
    connection that has loaded the extensions and checkpointed, which folds the log into the
    file; then it is opened as asked. A store in use by a writer refuses that attach (its
    lock), and the open below reports it.
    """
    if file.with_name(file.name + ".wal").exists():
        _replay_log(file)
    return duck.connect(file, read_only=read_only, extensions=EXTENSIONS)


def _replay_log(file: Path) -> None:
    """Fold the write-ahead log of `file` into it with the store's extensions loaded."""
    conn = duck.connect(None, read_only=False, extensions=EXTENSIONS)
    literal = str(file).replace("'", "''")
    try:
        conn.execute(f"ATTACH '{literal}' AS wal_replay")
        conn.execute("CHECKPOINT wal_replay")
    except duckdb.Error:
        pass  # locked, corrupt, ...: opening the file says what is wrong
    finally:
        conn.close()


def _remove_database(file: Path) -> None:
    """Delete a DuckDB file and its write-ahead log, if present."""
    for leftover in (file, file.with_name(file.name + ".wal")):
        with suppress(OSError):
            leftover.unlink()


def _check_or_init(
    conn: duckdb.DuckDBPyConnection,
    file: Path,
    create: bool,
    embed_dim: int | None,
    embed_model_name: str | None,
) -> dict[str, str]:
    """Return the store's meta, creating the schema in a new (empty) database."""
    try:
        has_meta = table_exists(conn, "meta")
        has_tables = has_meta or bool(
            conn.execute("SELECT count(*) FROM duckdb_tables()").fetchone()[0]  # type: ignore[index]
        )
    except duckdb.Error as exc:
        raise DocumentStoreError(f"Cannot read documents store {file}: {exc}") from None
    if not has_meta:
        if has_tables or not create:
            raise DocumentStoreError(
                f"{file} is a DuckDB database but not a documents store.",
                hint="Point --docs at a store made by `agent ingest`, or at a new file.",
            )
        assert embed_dim is not None and embed_model_name
        try:
            conn.begin()
            try:
                conn.execute(BOOKKEEPING_SQL)
                DocumentStore._create_table(conn, TABLE, embed_dim)
                conn.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [
                        ["schema_version", str(SCHEMA_VERSION)],
                        ["embed_model", embed_model_name],
                        ["embed_dim", str(embed_dim)],
                        ["created_at", datetime.now().isoformat(timespec="seconds")],
                    ],
                )
                conn.commit()
            except BaseException:
                with suppress(duckdb.Error):
                    conn.rollback()
                raise
        except duckdb.Error as exc:
            raise DocumentStoreError(
                f"Cannot create documents store {file}: {exc}",
                hint=OUT_OF_SPACE_HINT if is_out_of_space(exc) else None,
            ) from None
    meta: dict[str, str] = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    missing = [key for key in ("schema_version", "embed_model", "embed_dim") if key not in meta]
    if missing or not table_exists(conn, "files") or not table_exists(conn, TABLE):
        raise DocumentStoreError(
            f"{file} is an incomplete documents store (missing {', '.join(missing) or 'tables'}).",
            hint=f"Delete it and rebuild it with: agent ingest PATH --docs {file}",
        )
    if int(meta["schema_version"]) > SCHEMA_VERSION:
        raise DocumentStoreError(
            f"Documents store {file} was made by a newer ollagraph "
            f"(schema {meta['schema_version']}, this one reads {SCHEMA_VERSION}).",
            hint="Upgrade ollagraph, or re-ingest the documents into a new store.",
        )
    stored_model = meta["embed_model"]
    if embed_model_name and embed_model_name != stored_model:
        raise DocumentStoreError(
            f"Documents store {file} was built with the embedding model `{stored_model}`, "
            f"not `{embed_model_name}`; their vectors cannot be compared.",
            hint=f"Search it with --embed-model {stored_model}, or re-ingest the documents "
            f"into a new store with --embed-model {embed_model_name}.",
        )
    if embed_dim is not None and int(meta["embed_dim"]) != embed_dim:
        raise DocumentStoreError(
            f"Documents store {file} holds {meta['embed_dim']}-dimensional vectors but "
            f"`{embed_model_name or stored_model}` makes {embed_dim}-dimensional ones.",
            hint="Re-ingest the documents into a new store with the model you want to use.",
        )
    return meta


__all__ = ["index_kind", "open_store"]
