"""The vector index a documents store's writer builds: IVF lists (the default) or HNSW.

`DocumentStore` (`tools.store`) keeps the index state (whether the HNSW index exists, the
loaded IVF centroids, whether every chunk has its list) and delegates its index methods
(`has_index`, `build_index`, `drop_index`, `train_ivf`) to the functions here, which take the
store. The IVF maths (k-means, list assignment, probing) is `tools.store_ivf`.

HNSW crash safety: `vss` does not replay its index from DuckDB's write-ahead log unless the
extension is loaded before the database opens, so writes never touch an HNSW-indexed table here.
The first write of a session drops the index and checkpoints; the writer rebuilds it (and
checkpoints) at the end. A writer killed in between leaves a store without the index, which is
searched exactly until the next ingest finishes; a log left by a writer killed after building the
index is folded into the file by the next `open_store`, with vss loaded first. The index is
persisted in the file (`hnsw_enable_experimental_persistence`), so read-only searchers load it
instead of building it.
"""

from __future__ import annotations

from contextlib import suppress
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa

from ollagraph.agents.errors import DocumentStoreError
from ollagraph.tools import store_ivf
from ollagraph.tools.store_schema import OUT_OF_SPACE_HINT, is_out_of_space, table_exists

if TYPE_CHECKING:
    from ollagraph.tools.store import DocumentStore

# HNSW parameters (vss defaults: M 16, ef_construction 128, ef_search 64).
HNSW_OPTIONS: dict[str, int | str] = {"metric": "cosine"}


def _build_failed(store: DocumentStore, exc: duckdb.Error) -> DocumentStoreError:
    return DocumentStoreError(
        f"Building the vector index of documents store {store.path} failed "
        f"(searches scan exactly instead): {exc}",
        hint=OUT_OF_SPACE_HINT if is_out_of_space(exc) else None,
    )


# -- HNSW -------------------------------------------------------------------------------------


def has_hnsw(store: DocumentStore) -> bool:
    """Whether the chunks table has its HNSW index (looked up once, then tracked)."""
    if store._has_index is None:
        row = store.client.execute(
            "SELECT count(*) FROM duckdb_indexes() WHERE database_name = current_database() "
            "AND table_name = ? AND index_name = ?",
            [store.table_name, store.index_name],
        ).fetchone()
        store._has_index = bool(row and row[0])
    return store._has_index


def build(store: DocumentStore, *, force: bool, kind: str | None) -> bool:
    """`DocumentStore.build_index`: build or update the index if the store is big enough."""
    kind = kind or store._index_kind
    if force and kind == "off":
        kind = "ivf"
    if store.embed_dim is None or kind == "off":
        return store.index_kind() is not None
    if kind == "ivf":
        return update_ivf(store, force=force)
    if has_hnsw(store):
        return True
    if not force and store.count() < store.index_min_rows:
        return False
    options = ", ".join(
        f"{key} = {value!r}" if isinstance(value, str) else f"{key} = {value}"
        for key, value in HNSW_OPTIONS.items()
    )
    cursor = store.client
    try:
        if store.path is not None:
            cursor.execute("SET hnsw_enable_experimental_persistence = true")
        cursor.execute(
            f"CREATE INDEX IF NOT EXISTS {store.index_name} ON {store.table_name} "
            f"USING HNSW (embedding) WITH ({options})"
        )
    except duckdb.Error as exc:
        store._has_index = None
        raise _build_failed(store, exc) from None
    store._has_index = True
    # Write it to the file now; with another transaction open this waits for DuckDB's
    # checkpoint at close.
    with suppress(duckdb.Error):
        cursor.execute("CHECKPOINT")
    return True


def drop_hnsw(store: DocumentStore) -> None:
    """Drop the HNSW index (if any) and checkpoint, so later writes never touch it."""
    if not has_hnsw(store):
        return
    cursor = store.client
    cursor.execute(f"DROP INDEX IF EXISTS {store.index_name}")
    store._has_index = False
    with suppress(duckdb.Error):  # another cursor's open transaction; the WAL holds the drop
        cursor.execute("CHECKPOINT")


# -- IVF --------------------------------------------------------------------------------------


def load_centroids(store: DocumentStore) -> np.ndarray | None:
    """The stored unit centroids (None when the store has none), read once per store."""
    if not store._centroids_loaded:
        centroids = None
        cursor = store.client
        if table_exists(cursor, store_ivf.CENTROIDS_TABLE) and store.embed_dim:
            table = cursor.execute(
                f"SELECT centroid FROM {store_ivf.CENTROIDS_TABLE} ORDER BY cluster"
            ).arrow()
            if table.num_rows:
                centroids = store_ivf.embeddings(table.column("centroid"), store.embed_dim)
        store._centroids, store._centroids_loaded = centroids, True
    return store._centroids


def _has_cluster_column(store: DocumentStore) -> bool:
    return "cluster" in store.client.table(store.table_name).columns


def ivf_is_ready(store: DocumentStore) -> bool:
    """Whether the store has centroids and every chunk has its list (cached until a write)."""
    if store._ivf_ready is None:
        ready = load_centroids(store) is not None and _has_cluster_column(store)
        if ready:
            row = store.client.execute(
                f"SELECT count(*) FROM {store.table_name} WHERE cluster IS NULL"
            ).fetchone()
            ready = bool(row) and row[0] == 0  # type: ignore[index]
        store._ivf_ready = ready
    return store._ivf_ready


def update_ivf(store: DocumentStore, *, force: bool) -> bool:
    """Train (or retrain) the IVF lists, or assign rows left without one; see build_index."""
    rows = store.count()
    trained = int(store.meta().get("ivf_rows", "0") or 0)
    centroids = load_centroids(store)
    if centroids is None or not _has_cluster_column(store):
        if not force and rows < store.index_min_rows:
            return False
        train_ivf(store)
    elif rows >= store_ivf.RETRAIN_GROWTH * max(trained, 1):
        train_ivf(store)
    elif not ivf_is_ready(store):
        _write_ivf(store, centroids, only_missing=True)
    return ivf_is_ready(store)


def train_ivf(store: DocumentStore) -> None:
    """`DocumentStore.train_ivf`: train centroids on a sample, put every chunk in its list."""
    assert store.embed_dim is not None
    rows = store.count()
    nlist = store_ivf.nlist_for(rows)
    size = min(store_ivf.MAX_TRAIN_ROWS, store_ivf.TRAIN_POINTS_PER_LIST * nlist)
    sample = store.client.execute(
        f"SELECT embedding FROM {store.table_name} WHERE embedding IS NOT NULL "
        f"USING SAMPLE reservoir({size} ROWS) REPEATABLE ({store_ivf.SEED})"
    ).arrow()
    if sample.num_rows == 0:
        return
    vectors = store_ivf.embeddings(sample.column("embedding"), store.embed_dim)
    _write_ivf(store, store_ivf.train(vectors, nlist), only_missing=False, rows=rows)


def _write_ivf(
    store: DocumentStore, centroids: np.ndarray, *, only_missing: bool, rows: int = 0
) -> None:
    """Store `centroids` (unless only_missing) and give rows their nearest list."""
    dim = centroids.shape[1]
    table_name = store.table_name
    where = "embedding IS NOT NULL" + (" AND cluster IS NULL" if only_missing else "")
    try:
        with store.transaction() as cursor:
            if not _has_cluster_column(store):
                cursor.execute(f"ALTER TABLE {table_name} ADD COLUMN cluster INTEGER")
            reader = cursor.execute(
                f"SELECT rowid AS id, embedding FROM {table_name} WHERE {where}"
            ).fetch_record_batch(65_536)
            ids, labels = [], []
            for batch in reader:
                ids.append(batch.column(0).to_numpy())
                labels.append(
                    store_ivf.assign(store_ivf.embeddings(batch.column(1), dim), centroids)
                )
            lists = pa.table(
                {
                    "id": pa.array(np.concatenate(ids) if ids else [], pa.int64()),
                    "cluster": pa.array(np.concatenate(labels) if labels else [], pa.int32()),
                }
            )
            cursor.register("_ollagraph_lists", lists)
            cursor.execute(
                f"UPDATE {table_name} SET cluster = l.cluster FROM _ollagraph_lists l "
                f"WHERE {table_name}.rowid = l.id"
            )
            cursor.unregister("_ollagraph_lists")
            # Rows without a vector never match a query; -1 marks them as placed.
            cursor.execute(
                f"UPDATE {table_name} SET cluster = -1 WHERE embedding IS NULL AND cluster IS NULL"
            )
            if not only_missing:
                flat = pa.array(centroids.reshape(-1), pa.float32())
                table = pa.table(
                    {
                        "cluster": pa.array(np.arange(len(centroids)), pa.int32()),
                        "centroid": pa.FixedSizeListArray.from_arrays(flat, dim),
                    }
                )
                cursor.execute(
                    f"CREATE OR REPLACE TABLE {store_ivf.CENTROIDS_TABLE} "
                    f"(cluster INTEGER PRIMARY KEY, centroid FLOAT[{dim}])"
                )
                cursor.register("_ollagraph_centroids", table)
                cursor.execute(
                    f"INSERT INTO {store_ivf.CENTROIDS_TABLE} SELECT * FROM _ollagraph_centroids"
                )
                cursor.unregister("_ollagraph_centroids")
                store.set_meta("ivf_rows", str(rows))
                store.set_meta("ivf_nlist", str(len(centroids)))
    except duckdb.Error as exc:
        store._centroids_loaded, store._ivf_ready = False, None
        raise _build_failed(store, exc) from None
    store._centroids, store._centroids_loaded, store._ivf_ready = centroids, True, None
    with suppress(duckdb.Error):
        store.client.execute("CHECKPOINT")


__all__ = [
    "HNSW_OPTIONS",
    "build",
    "drop_hnsw",
    "has_hnsw",
    "ivf_is_ready",
    "load_centroids",
    "train_ivf",
    "update_ivf",
]
