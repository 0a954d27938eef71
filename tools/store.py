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

Writes (`DocumentStore.add`) hand DuckDB one Arrow table whose vectors are a float32 block in
the column's own layout (upstream: lists of doubles cast row by row).

Search (`DocumentStore.query`) is faster than upstream's in three ways:

- Unfiltered queries search an in-memory copy of the vectors (`tools.store_matrix`): on the
  first one, every vector and node id is read through Arrow into one contiguous unit-length
  float32 matrix; each query is then one matrix-vector product and an `argpartition`, and the
  top rows (with near-ties) are ranked and fetched by DuckDB by id. Exact (the same ids, order
  and scores as the SQL scan), ~10-20 ms at 50k chunks on 2 busy cores (the product reads all
  77 MB). The matrix lives as long as the store object. Writes through the store drop it, and
  every query first compares a token of the data (chunk count, plus a `data_version` that
  writers set in `meta` when they commit a delete) with the matrix's, so
  another store object on the same file in this process never serves stale results. Other
  processes cannot change the file while it is open: DuckDB locks it (a searcher's read-only
  open blocks writers, a writer blocks everyone). Stores whose vectors would take more than
  `vector_cache_mb` (default 512 MB, about 350k 384-d chunks; 0 turns the matrix off) are
  searched through the index below, if any, else by the exact SQL scan; so are filtered queries.
- The query vector is inlined as one typed string literal (`'[...]'::FLOAT[384]`, one cast)
  instead of a list of 384 constants or a bound Python list, which cost DuckDB milliseconds to
  parse or bind per query.
- From `INDEX_MIN_ROWS` chunks on, the writer (when it finishes: `build_index`, run by `close()`
  after writes) trains an IVF index (`tools.store_ivf`, the default): k-means centroids in the
  table `ivf_centroids` and each chunk's list number in `documents.cluster`. Rows added later
  get their list on `add` (from the stored centroids); the writer retrains when the store has
  grown `RETRAIN_GROWTH` times. Queries without metadata filters scan only the `NPROBE` lists
  nearest to the query vector. Every write is a plain DuckDB transaction, so a killed writer
  leaves either the old or the new lists; rows without a list (a store written before the
  index, or by a writer killed before training) make searches exact until the next writer
  assigns them.
- With `vector_index='hnsw'` the writer builds an HNSW index (DuckDB's `vss` extension,
  `metric='cosine'`) instead, used by `ORDER BY array_cosine_distance(...) LIMIT k`.
  Smaller stores, stores without an index and filtered queries scan exactly.
  `search_path(query)` says which way a query goes. Building and dropping the indexes, and
  why HNSW is dropped before writes, is `tools.store_index`.

Importing this module imports llama-index and duckdb; the `search_documents` tool imports it on
first use.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
import threading
import uuid
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, ClassVar, cast

import duckdb
import numpy as np
import pyarrow as pa
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.schema import BaseNode, MetadataMode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import node_to_metadata_dict
from llama_index.vector_stores.duckdb import DuckDBVectorStore
from llama_index.vector_stores.duckdb.base import DEFAULT_TEXT_SEARCH_CONFIG

from ollagraph.agents.errors import DatabaseError, DocumentStoreError
from ollagraph.tools import duck, store_index, store_ivf, store_matrix
from ollagraph.tools.store_index import HNSW_OPTIONS
from ollagraph.tools.store_matrix import VectorMatrix, matrix_bytes
from ollagraph.tools.store_schema import (
    BOOKKEEPING_SQL,
    DATA_VERSION_KEY,
    OUT_OF_SPACE_HINT,
    FileRecord,
    ingest_hint,
    is_out_of_space,
    load_extensions,
    table_exists,
)

SCHEMA_VERSION = 1
TABLE = "documents"
# Extensions the store needs: json for the metadata column (built into duckdb), fts because the
# upstream store loads it for full-text search (from the duckdb-ext-fts wheel), vss for the HNSW
# index (from the duckdb-ext-vss wheel).
EXTENSIONS: tuple[str, ...] = ("json", "fts", "vss")
# Below this many chunks an exact scan is fast (a few ms) and no index is built.
INDEX_MIN_ROWS = 5000
# The kinds of vector index a writer may build (the `vector_index` setting; True means "ivf").
INDEX_KINDS = ("ivf", "hnsw", "off")
# HNSW search width (vss default 64; build options: `store_index.HNSW_OPTIONS`). An ef_search of
# 200 keeps recall@10 at 0.97 on queries far from any stored vector, for ~1 ms more per query.
HNSW_EF_SEARCH = 200  # set per cursor (SET hnsw_ef_search) before its first query
# Most memory (MB) the in-memory matrix may take (the `vector_cache_mb` setting); 0: never.
VECTOR_CACHE_MB = 512
# The columns a search returns (with a score), as upstream's query reads them.
_COLUMNS = "node_id, text, embedding, metadata_"


def _filtered(query: VectorStoreQuery) -> bool:
    """Whether `query` has metadata filters (such queries always scan exactly)."""
    return query.filters is not None and len(query.filters.filters) > 0


def _exact_sql(source: str, vector: str, k: int) -> str:
    """The exact scan: the top `k` rows of `source` by cosine similarity, ties by node id."""
    return (
        f"SELECT {_COLUMNS}, score FROM (SELECT {_COLUMNS}, "
        f"array_cosine_similarity(embedding, {vector}) AS score FROM {source}) "
        f"WHERE score IS NOT NULL ORDER BY score DESC, node_id LIMIT {k}"
    )


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
    # Whether the HNSW index exists (None: not looked up yet), and whether this store wrote.
    _has_index: bool | None = PrivateAttr(default=None)
    _wrote: bool = PrivateAttr(default=False)
    # Which index this writer builds (the `vector_index` setting: "ivf", "hnsw" or "off").
    _index_kind: str = PrivateAttr(default="off")
    # IVF state: the unit centroids (None: none stored; loaded once), whether every row has its
    # list (None: not looked up since the last write).
    _centroids: Any = PrivateAttr(default=None)
    _centroids_loaded: bool = PrivateAttr(default=False)
    _ivf_ready: bool | None = PrivateAttr(default=None)
    # The in-memory matrix (None: not loaded, dropped by a write, or over the cap), this store's
    # cap in MB (None: the class's `vector_cache_mb`), and whether the store has `meta`.
    _matrix: VectorMatrix | None = PrivateAttr(default=None)
    _matrix_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _cache_mb: int | None = PrivateAttr(default=None)
    _has_meta: bool | None = PrivateAttr(default=None)

    index_min_rows: ClassVar[int] = INDEX_MIN_ROWS
    vector_cache_mb: ClassVar[int] = VECTOR_CACHE_MB
    ivf_nprobe: ClassVar[int] = store_ivf.NPROBE

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
            # DuckDB's late materialization turns an HNSW top-k into a join with a full table
            # scan; switch it off for this cursor only.
            conn.execute("SET SESSION late_materialization_max_rows = 0")
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
        load_extensions(conn, EXTENSIONS)
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
                metadata_ JSON,
                cluster INTEGER
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
        self._before_write()
        table = self._arrow_rows(nodes)
        if table is None:  # no fixed dimension, or vectors of mixed lengths: upstream's rows
            table = pa.Table.from_pylist([self._node_to_arrow_row(node) for node in nodes])
        else:
            centroids = store_index.load_centroids(self)
            if centroids is not None:
                block = store_ivf.embeddings(table.column("embedding"), centroids.shape[1])
                table = table.append_column("cluster", pa.array(store_ivf.assign(block, centroids)))
        self._insert(table)
        self._after_write(changed=False)
        return [node.node_id for node in nodes]

    def _insert(self, table: pa.Table) -> None:
        """Insert an Arrow table by column name (a store may or may not have `cluster`)."""
        cursor = self.client
        view = f"_ollagraph_rows_{id(table)}"
        columns = ", ".join(table.column_names)
        cursor.register(view, table)
        try:
            cursor.execute(
                f"INSERT INTO {self.table_name} ({columns}) SELECT {columns} FROM {view}"
            )
        finally:
            cursor.unregister(view)

    def _arrow_rows(self, nodes: Sequence[BaseNode]) -> pa.Table | None:
        """The nodes as one Arrow table whose columns need no conversion in DuckDB.

        Upstream builds the table from a list of dicts: the vectors become lists of doubles
        that DuckDB casts to `FLOAT[dim]` row by row, and the metadata a struct column whose
        fields are the union of every node's keys (missing ones stored as null). Here the
        vectors are one float32 block (a fixed-size list, the column's own layout) and each
        node's metadata is its own JSON text, as `node_to_metadata_dict` makes it; both read
        back the same through the upstream query path.
        """
        dim = self.embed_dim
        if dim is None:
            return None
        embeddings = [node.get_embedding() for node in nodes]
        if any(len(vector) != dim for vector in embeddings):
            return None
        flat = itertools.chain.from_iterable(embeddings)
        block = np.fromiter(flat, dtype=np.float32, count=len(nodes) * dim)
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(block), dim)
        # The metadata never holds the vector (upstream blanks it after dumping the whole
        # node): a copy without it dumps the same text in half the time.
        metadata = [
            json.dumps(
                node_to_metadata_dict(
                    node.model_copy(update={"embedding": None}),
                    remove_text=True,
                    flat_metadata=self.flat_metadata,
                ),
                ensure_ascii=False,
                separators=(",", ":"),
            )
            for node in nodes
        ]
        return pa.table(
            {
                "node_id": pa.array([node.node_id for node in nodes], pa.string()),
                "text": pa.array(
                    [node.get_content(metadata_mode=MetadataMode.NONE) for node in nodes],
                    pa.string(),
                ),
                "embedding": vectors,
                "metadata_": pa.array(metadata, pa.string()),
            }
        )

    def delete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        """Delete nodes by id and/or metadata filters (both apply when both are given).

        Args:
            node_ids: Ids of the nodes to delete.
            filters: Metadata filters the deleted nodes match.
            **delete_kwargs: Ignored, as upstream.
        """
        self._before_write()
        super().delete_nodes(node_ids=node_ids, filters=filters, **delete_kwargs)
        self._after_write()

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete the nodes of one source document.

        Args:
            ref_doc_id: The id of the document whose nodes go.
            **delete_kwargs: Ignored, as upstream.
        """
        self._before_write()
        super().delete(ref_doc_id, **delete_kwargs)
        self._after_write()

    def clear(self, **clear_kwargs: Any) -> None:
        """Delete every node.

        Args:
            **clear_kwargs: Ignored, as upstream.
        """
        self._before_write()
        super().clear(**clear_kwargs)
        self._after_write()

    # -- search ---------------------------------------------------------------------------------

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Return the `similarity_top_k` nodes most similar (cosine) to the query embedding.

        Without metadata filters: the in-memory matrix (exact), or past its memory cap the
        store's index, if any (`search_path`); with filters, an exact scan. Scores are cosine
        similarities, as upstream; ties go to the smaller node id.

        Args:
            query: The query; `query_embedding` must be set.
            **kwargs: Ignored, as upstream.
        """
        cursor = self.client
        if not getattr(self._thread_local, "tuned", False):
            cursor.execute(f"SET hnsw_ef_search = {HNSW_EF_SEARCH}")
            self._thread_local.tuned = True
        path = self.search_path(query)
        if path == "matrix":
            rows = self._matrix_rows(cursor, query)
            if rows is not None:
                return self._arrow_row_to_query_result(rows)
            path = self._sql_path(query)  # over the cap, or a vector of the wrong length
        if path == "ivf":
            rows = self._ivf_rows(cursor, query)
            if rows is not None:
                return self._arrow_row_to_query_result(rows)
            path = "exact"  # the probed lists held fewer than k rows
        rows = cursor.execute(self.query_sql(query, path=path)).arrow().to_pylist()
        return self._arrow_row_to_query_result(rows)

    def _ivf_rows(
        self, cursor: duckdb.DuckDBPyConnection, query: VectorStoreQuery
    ) -> list[dict[str, Any]] | None:
        """Top-k rows in two steps: ids and distances from the probed lists, then the rows.

        Reading text and metadata in the list scans makes them several times slower; fetching
        k rows by id afterwards costs about a millisecond. None: fewer than k hits.
        """
        hits = [
            (node, distance)
            for node, distance in cursor.execute(self.query_sql(query, path="ivf")).fetchall()
            if distance is not None
        ]
        if len(hits) < int(query.similarity_top_k):
            return None
        ids = duck.string_literals(node for node, _ in hits)
        fetched = cursor.execute(
            f"SELECT {_COLUMNS} FROM {self.table_name} WHERE node_id IN ({ids})"
        ).arrow()
        by_id = {row["node_id"]: row for row in fetched.to_pylist()}
        return [{**by_id[node], "score": 1 - distance} for node, distance in hits if node in by_id]

    def _matrix_rows(
        self, cursor: duckdb.DuckDBPyConnection, query: VectorStoreQuery
    ) -> list[dict[str, Any]] | None:
        """Top-k rows from the in-memory matrix, then fetched by id; None: use SQL instead."""
        if query.query_embedding is None:
            raise ValueError("DocumentStore.query needs a query_embedding")
        vector = np.asarray(query.query_embedding, dtype=np.float64)
        if vector.shape != (self.embed_dim,):
            return None  # the SQL path raises DuckDB's own error about the length
        if not np.isfinite(vector).all():
            raise ValueError("the query embedding holds NaN or infinite values")
        matrix = self.vector_matrix(cursor)
        if matrix is None:
            return None
        k = int(query.similarity_top_k)
        hits = matrix.search(vector, k, margin=store_matrix.MARGIN)
        if len(hits) > store_matrix.MAX_CANDIDATES:
            return None
        if not hits:
            return []
        # The candidates (the top k and near-ties) ranked by the exact scan's own expression.
        ids = duck.string_literals(node for node, _ in hits)
        literal = duck.vector_literal(vector.tolist(), self.embed_dim)
        sql = _exact_sql(f"{self.table_name} WHERE node_id IN ({ids})", literal, k)
        return cast(list[dict[str, Any]], cursor.execute(sql).arrow().to_pylist())

    def vector_matrix(self, cursor: duckdb.DuckDBPyConnection | None = None) -> VectorMatrix | None:
        """The in-memory matrix of the store's vectors, loaded or reloaded if the data changed.

        Args:
            cursor: The cursor to read with (default: this thread's).

        Returns:
            The matrix; None when the matrix is off (`vector_cache_mb` 0, no fixed dimension)
            or the vectors would take more than `vector_cache_mb`.
        """
        return store_matrix.current(self, cursor)

    @property
    def cache_mb(self) -> int:
        """The memory cap (MB) of the in-memory matrix: `open_store`'s, else the class's."""
        return type(self).vector_cache_mb if self._cache_mb is None else self._cache_mb

    def has_meta(self, cursor: duckdb.DuckDBPyConnection | None = None) -> bool:
        """Whether the store has the `meta` table (looked up once).

        Args:
            cursor: The cursor to look with (default: this thread's).
        """
        if self._has_meta is None:
            self._has_meta = table_exists(cursor or self.client, "meta")
        return self._has_meta

    def search_path(self, query: VectorStoreQuery) -> str:
        """How `query` is answered: "matrix", "ivf", "hnsw" or "exact" (filters: exact).

        "matrix" (the in-memory exact search) unless it is off or the store's vectors are
        over the cap (`vector_cache_mb`); then the index, if any (`index_kind`).

        Args:
            query: The query.
        """
        if _filtered(query):
            return "exact"
        if self.cache_mb > 0 and self.embed_dim is not None:
            matrix = self._matrix
            rows = matrix.rows if matrix is not None else self.count()
            if matrix_bytes(rows, self.embed_dim) <= self.cache_mb * 2**20:
                return "matrix"
        return self._sql_path(query)

    def _sql_path(self, query: VectorStoreQuery) -> str:
        """The way SQL answers `query`: the index ("ivf", "hnsw") or "exact"."""
        return "exact" if _filtered(query) else self.index_kind() or "exact"

    def index_kind(self) -> str | None:
        """The index searches use: "hnsw", "ivf" (centroids and every row in a list), or None."""
        if self.has_index():
            return "hnsw"
        return "ivf" if store_index.ivf_is_ready(self) else None

    def query_sql(self, query: VectorStoreQuery, *, path: str | None = None) -> str:
        """Return the SQL that `query` runs (EXPLAIN it to see whether the index is used).

        Args:
            query: The query; `query_embedding` must be set.
            path: Force "exact" (or another path); default: the way SQL answers it (the
                index, if any, else "exact"; unfiltered queries usually take the in-memory
                matrix instead, see `search_path`).
        """
        if query.query_embedding is None:
            raise ValueError("DocumentStore.query needs a query_embedding")
        k = int(query.similarity_top_k)
        vector = self._vector_literal(query.query_embedding)
        if path is None or path == "matrix":
            path = self._sql_path(query)
        if path == "ivf":
            lists = store_ivf.probes(
                self._centroids, np.asarray(query.query_embedding), self.ivf_nprobe
            )
            source = " UNION ALL ".join(
                f"SELECT node_id, embedding FROM {self.table_name} WHERE {condition}"
                for condition in store_ivf.list_filters(lists)
            )
            # Ids and distances only (`query` then fetches the k rows by id).
            sql = (
                f"SELECT node_id, array_cosine_distance(embedding, {vector}) AS distance "
                f"FROM ({source}) ORDER BY distance LIMIT {k}"
            )
        elif path == "exact":
            if _filtered(query):
                expression = self._build_metadata_filter_expressions(query.filters)
                source = f"({self.table.filter(expression).sql_query()})"
            else:
                source = self.table_name
            sql = _exact_sql(source, vector, k)
        else:
            # The index serves `ORDER BY array_cosine_distance(column, constant) LIMIT k`.
            sql = (
                f"SELECT {_COLUMNS}, 1 - distance AS score FROM (SELECT {_COLUMNS}, "
                f"array_cosine_distance(embedding, {vector}) AS distance FROM {self.table_name} "
                f"ORDER BY distance LIMIT {k}) WHERE distance IS NOT NULL ORDER BY distance"
            )
        return sql

    def _vector_literal(self, embedding: Sequence[float]) -> str:
        """The query vector as one typed literal (see `duck.vector_literal`)."""
        values = [float(value) for value in embedding]
        if not all(math.isfinite(value) for value in values):
            raise ValueError("the query embedding holds NaN or infinite values")
        return duck.vector_literal(values, self.embed_dim)

    # -- the vector index (tools.store_index) -------------------------------------------------

    @property
    def index_name(self) -> str:
        """Name of the HNSW index on the chunks table."""
        return f"{self.table_name}_hnsw"

    def has_index(self) -> bool:
        """Whether the chunks table has its HNSW index (looked up once, then tracked)."""
        return store_index.has_hnsw(self)

    def build_index(self, *, force: bool = False, kind: str | None = None) -> bool:
        """Build or update this writer's index kind if the store is big enough.

        `close()` runs this after a session that wrote. Run it on a writable store only.
        IVF (`train_ivf`): train centroids when there are none or the store has grown
        `RETRAIN_GROWTH` times since, else give rows without a list theirs. HNSW: build the
        index if there is none, and checkpoint it to disk.

        Args:
            force: Build it whatever the number of chunks (and the setting).
            kind: "ivf" or "hnsw"; default: the kind the store was opened with.

        Returns:
            Whether searches use an index now.

        Raises:
            DocumentStoreError: DuckDB refused (a read-only store, a full disk, ...).
        """
        return store_index.build(self, force=force, kind=kind)

    def drop_index(self) -> None:
        """Drop the HNSW index (if any) and checkpoint, so later writes never touch it."""
        store_index.drop_hnsw(self)

    def train_ivf(self) -> None:
        """Train the IVF centroids on a sample of the chunks and put every chunk in its list.

        One transaction (centroids table, `cluster` column added to a store made before the
        index, every row's list), then a checkpoint; a writer killed before the commit leaves
        the previous state.

        Raises:
            DocumentStoreError: DuckDB refused (a read-only store, a full disk, ...).
        """
        store_index.train_ivf(self)

    # -- before and after writes ---------------------------------------------------------------

    def _before_write(self) -> None:
        """Note the write; outside a transaction, drop the HNSW index first."""
        self._wrote = True
        self._ivf_ready = None
        self._matrix = None
        if not getattr(self._thread_local, "in_transaction", False):
            self.drop_index()

    def _after_write(self, *, changed: bool = True) -> None:
        """Drop this store's matrix; after a change of rows, set a new `data_version`.

        Inserts alone need no new version: they raise the chunk count, the other half of the
        data token. Deletes get one (at commit, inside a transaction), so a delete plus as
        many inserts is never mistaken for the old data.
        """
        self._matrix = None
        if not changed:
            return
        if getattr(self._thread_local, "in_transaction", False):
            self._thread_local.version_pending = True
        else:
            self._set_data_version()

    def _set_data_version(self) -> None:
        if self.has_meta():
            self.set_meta(DATA_VERSION_KEY, uuid.uuid4().hex)

    # -- bookkeeping ---------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Run the enclosed writes in one DuckDB transaction on this thread's cursor.

        Everything done through the store's own methods inside the block shares the
        transaction; an exception rolls it back. A commit that fails (a full disk) leaves
        nothing of the transaction behind: DuckDB writes a transaction to its log only when
        it commits.
        """
        self._wrote = True
        self.drop_index()  # DDL plus checkpoint: before the transaction, not inside it
        cursor = self.client
        cursor.begin()
        self._thread_local.in_transaction = True
        self._thread_local.version_pending = False
        try:
            yield cursor
            if self._thread_local.version_pending:
                self._set_data_version()
        except BaseException:
            with suppress(duckdb.Error):  # keep the error that caused the rollback
                cursor.rollback()
            raise
        finally:
            self._thread_local.in_transaction = False
            self._thread_local.version_pending = False
            self._matrix = None  # it may hold rows of the transaction
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
        """Close this store's cursors, and its connection when the store opened it.

        After a session that wrote (and ended without an exception in flight), first build or
        update the index when the store is big enough (`build_index`); a failure there only
        means searches scan exactly, so it is not raised.
        """
        if self._wrote and not self._closed and sys.exc_info()[0] is None:
            self._wrote = False
            with suppress(DocumentStoreError, duckdb.Error):
                self.build_index()
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
    "HNSW_EF_SEARCH",
    "HNSW_OPTIONS",
    "INDEX_KINDS",
    "INDEX_MIN_ROWS",
    "OUT_OF_SPACE_HINT",
    "SCHEMA_VERSION",
    "DocumentStore",
    "FileRecord",
    "ingest_hint",
    "is_out_of_space",
    "table_exists",
]
