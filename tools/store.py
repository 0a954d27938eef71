"""Documents stores: llama-index's DuckDB vector store, fixed to work offline, plus bookkeeping.

A documents store is one DuckDB file with three tables:

- `documents`: the chunks (`node_id`, `text`, `embedding FLOAT[dim]`, `metadata_ JSON`), the
  layout of `llama_index.vector_stores.duckdb.DuckDBVectorStore`;
- `files`: one row per ingested file (`path`, `sha256` of its bytes, `chunks`, `ingested_at`),
  so re-ingesting an unchanged file is a no-op;
- `meta`: key/value facts (`embed_model`, `embed_dim`, `schema_version`), so a store is never
  searched with vectors from another embedding model.

`DocumentStore` subclasses `DuckDBVectorStore` (0.7.0) and fixes two defects of it:

1. Its `_initialize_table` runs `INSTALL json` and `INSTALL fts`, which downloads from the
   internet and fails offline. Here extensions are only ever `LOAD`ed: json is built into duckdb,
   fts comes from the `duckdb-ext-fts` wheel (see `ollagraph.tools.duck`), and connections are
   opened with automatic extension install/load switched off.
2. Its `__init__` assigns the `client=` connection to a pydantic private attribute before calling
   `super().__init__`, which resets private attributes, so the connection is silently dropped and
   a new one opened on `database_name`. Here the connection is kept after pydantic's `__init__`.

Importing this module imports llama-index and duckdb; the `search_documents` tool imports it on
first use.
"""

from __future__ import annotations

import errno
import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.schema import BaseNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)
from llama_index.vector_stores.duckdb import DuckDBVectorStore
from llama_index.vector_stores.duckdb.base import DEFAULT_TEXT_SEARCH_CONFIG

from ollagraph.agents.errors import DatabaseError, DocumentStoreError
from ollagraph.tools import duck

SCHEMA_VERSION = 1
TABLE = "documents"
# Extensions the store needs: json for the metadata column (built into duckdb), fts because the
# upstream store loads it for full-text search (from the duckdb-ext-fts wheel).
EXTENSIONS: tuple[str, ...] = ("json", "fts")
BOOKKEEPING_SQL = """
    CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
    CREATE TABLE IF NOT EXISTS files (
        path VARCHAR PRIMARY KEY,
        sha256 VARCHAR NOT NULL,
        chunks INTEGER NOT NULL,
        ingested_at TIMESTAMP NOT NULL
    );
"""


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


def _load_extensions(conn: duckdb.DuckDBPyConnection, names: Sequence[str]) -> None:
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
    row = conn.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = current_schema() AND table_name = ?",
        [name],
    ).fetchone()
    return bool(row and row[0])


class DocumentStore(DuckDBVectorStore):
    """A DuckDB vector store that works offline, honours `client=`, and tracks ingested files.

    It stays a llama-index vector store: use it with
    `VectorStoreIndex.from_vector_store(store, embed_model=...)`. Open one with `open_store`,
    which also checks the store's embedding model; constructing it directly works like the
    upstream class (`DocumentStore(client=conn, embed_dim=384)`), minus the network.

    Attributes:
        embed_model_name: The embedding model the vectors came from ("" when unknown).
    """

    embed_model_name: str = ""

    _owns_connection: bool = PrivateAttr(default=False)
    # Live per-thread cursors. Weak: a cursor closes when its thread ends (the tools node runs
    # each call in a new thread), and `close()` closes those still alive.
    _cursors: weakref.WeakSet[duckdb.DuckDBPyConnection] = PrivateAttr(
        default_factory=weakref.WeakSet
    )
    _cursor_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _closed: bool = PrivateAttr(default=False)

    def __init__(
        self,
        database_name: str = ":memory:",
        table_name: str = TABLE,
        embed_dim: int | None = None,
        text_search_config: dict[str, Any] | None = None,
        persist_dir: str = "./storage",
        client: duckdb.DuckDBPyConnection | None = None,
        embed_model_name: str = "",
        **kwargs: Any,
    ) -> None:
        """Create the store on `client`, or on a connection to `persist_dir/database_name`.

        Args:
            database_name: File name of the database, or ":memory:" (ignored with `client`).
            table_name: Table holding the chunks.
            embed_dim: Length of the vectors; fixes the column type to `FLOAT[embed_dim]`.
            text_search_config: Full-text search options (kept for upstream compatibility).
            persist_dir: Folder of the database file (ignored with `client`).
            client: An open DuckDB connection to use instead of opening one.
            embed_model_name: The embedding model the vectors come from.
            **kwargs: Ignored, as upstream.
        """
        if text_search_config is None:
            text_search_config = dict(DEFAULT_TEXT_SEARCH_CONFIG)
        # Skip DuckDBVectorStore.__init__ (it would drop `client` and run INSTALL); run pydantic's
        # initialisation first, then set the private connection so it survives.
        pydantic_init: Any = BasePydanticVectorStore.__init__
        pydantic_init(
            self,
            stores_text=True,
            database_name=database_name,
            table_name=table_name,
            embed_dim=embed_dim,
            text_search_config=text_search_config,
            persist_dir=persist_dir,
            embed_model_name=embed_model_name,
        )
        if client is not None:
            self._shared_conn = client
        self._initialize_table(self.client, self.table_name, self.embed_dim)

    @classmethod
    def class_name(cls) -> str:
        """Name llama-index shows for this class."""
        return "DocumentStore"

    @property
    def client(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor on the store's connection (DuckDB connections are per thread)."""
        if self._closed:
            raise DocumentStoreError("This documents store has been closed.")
        conn = getattr(self._thread_local, "conn", None)
        if conn is None:
            with self._cursor_lock:
                if self._shared_conn is None:
                    self._shared_conn = self._connect(self.database_name, self.persist_dir)
                    self._owns_connection = True
                conn = self._shared_conn.cursor()
                self._cursors.add(conn)
            self._thread_local.conn = conn
        return conn

    @property
    def connection(self) -> duckdb.DuckDBPyConnection | None:
        """The connection the store was given or opened (None before first use)."""
        return self._shared_conn

    @property
    def path(self) -> Path | None:
        """The database file named by `persist_dir`/`database_name` (None for ":memory:")."""
        if self.database_name == ":memory:":
            return None
        return Path(self.persist_dir) / self.database_name

    @classmethod
    def _connect(cls, database_name: str, persist_dir: str) -> duckdb.DuckDBPyConnection:
        """Open the database with network extension loading off (upstream uses a bare connect)."""
        if database_name == ":memory:":
            target: str = database_name
        else:
            folder = Path(persist_dir)
            folder.mkdir(parents=True, exist_ok=True)
            target = str(folder / database_name)
        try:
            return duck.connect(target, read_only=False, extensions=EXTENSIONS)
        except DatabaseError as exc:
            raise DocumentStoreError(exc.message, hint=exc.hint) from None

    @classmethod
    def _initialize_table(
        cls, conn: duckdb.DuckDBPyConnection, table_name: str, embed_dim: int | None
    ) -> None:
        """Load extensions offline and create the chunks table if it is missing.

        Unlike upstream this never runs `INSTALL` and does not write when the table exists, so
        it works on read-only connections.

        Raises:
            DocumentStoreError: An extension cannot be loaded, or the table has other columns.
        """
        _load_extensions(conn, EXTENSIONS)
        if not table_exists(conn, table_name):
            cls._create_table(conn, table_name, embed_dim)
        columns = conn.table(table_name).columns
        required = ["node_id", "text", "embedding", "metadata_"]
        if any(column not in columns for column in required):
            raise DocumentStoreError(
                f"Table `{table_name}` is not a documents table: it has columns "
                f"{', '.join(columns)}, expected {', '.join(required)}."
            )

    @classmethod
    def _create_table(
        cls, conn: duckdb.DuckDBPyConnection, table_name: str, embed_dim: int | None
    ) -> None:
        conn.execute(
            f"""
            CREATE TABLE IF NOT EXISTS {table_name} (
                node_id VARCHAR PRIMARY KEY,
                text TEXT,
                embedding {cls._get_embedding_type(embed_dim)},
                metadata_ JSON
            )
            """
        )

    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Add nodes (with embeddings) to the store; an empty list is a no-op.

        Args:
            nodes: Nodes whose `embedding` is set.
            **add_kwargs: Ignored, as upstream.
        """
        if not nodes:
            return []
        return super().add(nodes, **add_kwargs)

    # -- bookkeeping ---------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Run the enclosed writes in one DuckDB transaction on this thread's cursor.

        Everything done through the store's own methods inside the block shares the
        transaction; an exception rolls it back. A commit that fails (a full disk) leaves
        nothing of the transaction behind: DuckDB writes a transaction to its log only when
        it commits.
        """
        cursor = self.client
        cursor.begin()
        try:
            yield cursor
        except BaseException:
            with suppress(duckdb.Error):  # keep the error that caused the rollback
                cursor.rollback()
            raise
        cursor.commit()

    def meta(self) -> dict[str, str]:
        """Return the `meta` table as a dict (empty when the store has none)."""
        if not table_exists(self.client, "meta"):
            return {}
        return dict(self.client.execute("SELECT key, value FROM meta").fetchall())

    def set_meta(self, key: str, value: str) -> None:
        """Set one `meta` value.

        Args:
            key: The name.
            value: The value.
        """
        self.client.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])

    def file_record(self, path: str) -> FileRecord | None:
        """Return what the store knows about the file at `path` (absolute), if anything.

        Args:
            path: The absolute path the file was ingested from.
        """
        row = self.client.execute(
            "SELECT path, sha256, chunks, ingested_at FROM files WHERE path = ?", [path]
        ).fetchone()
        return FileRecord(*row) if row else None

    def file_records(self) -> list[FileRecord]:
        """Return every ingested file, sorted by path."""
        rows = self.client.execute(
            "SELECT path, sha256, chunks, ingested_at FROM files ORDER BY path"
        ).fetchall()
        return [FileRecord(*row) for row in rows]

    def count(self) -> int:
        """Return the number of chunks in the store."""
        row = self.client.execute(f"SELECT count(*) FROM {self.table_name}").fetchone()
        return int(row[0]) if row else 0

    def replace_file(self, path: str, sha256: str, nodes: Sequence[BaseNode]) -> None:
        """Replace the chunks of one file and its `files` row, atomically.

        The old chunks (those whose `file_path` metadata is `path`) are deleted and `nodes`
        inserted in one transaction, so a crash leaves either the old or the new version.
        With no nodes the file is forgotten.

        Args:
            path: The file's absolute path (the `file_path` metadata of its nodes).
            sha256: Hex SHA-256 of the file's bytes.
            nodes: Its chunks, with embeddings.

        Raises:
            DocumentStoreError: DuckDB refused the write (full disk, read-only store, ...).
        """
        try:
            with self.transaction():
                self._delete_file_chunks(path)
                self.add(nodes)
                if nodes:
                    self.client.execute(
                        "INSERT OR REPLACE INTO files VALUES (?, ?, ?, now()::TIMESTAMP)",
                        [path, sha256, len(nodes)],
                    )
                else:
                    self.client.execute("DELETE FROM files WHERE path = ?", [path])
        except duckdb.Error as exc:
            if is_out_of_space(exc):
                raise DocumentStoreError(
                    f"Out of disk space: writing the chunks of {path} to documents store "
                    f"{self.path} failed ({exc}). The files written before it are kept.",
                    hint=OUT_OF_SPACE_HINT,
                ) from None
            raise DocumentStoreError(
                f"Writing the chunks of {path} to documents store {self.path} failed "
                f"(the store keeps the previous version): {exc}"
            ) from None

    def _delete_file_chunks(self, path: str) -> None:
        self.delete_nodes(
            filters=MetadataFilters(
                filters=[MetadataFilter(key="file_path", value=path, operator=FilterOperator.EQ)]
            )
        )

    def close(self) -> None:
        """Close this store's cursors, and its connection when the store opened it."""
        with self._cursor_lock:
            for cursor in list(self._cursors):
                with suppress(duckdb.Error):
                    cursor.close()
            self._cursors.clear()
            if self._owns_connection and self._shared_conn is not None:
                self._shared_conn.close()
            self._shared_conn = None
            self._closed = True
        self._thread_local = threading.local()


__all__ = [
    "BOOKKEEPING_SQL",
    "EXTENSIONS",
    "OUT_OF_SPACE_HINT",
    "SCHEMA_VERSION",
    "DocumentStore",
    "FileRecord",
    "ingest_hint",
    "is_out_of_space",
    "table_exists",
]
