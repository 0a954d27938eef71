"""Exact search over a documents store held in memory: one float32 matrix, as a flat FAISS index.

On a store's first unfiltered query, `VectorMatrix.load` reads every chunk's vector and node id
from DuckDB through Arrow (record batches copied into one preallocated, contiguous array, then
scaled to unit length in place). A query is then one matrix-vector product (cosine similarity of
unit rows) and an `argpartition` for the top k.

numpy's float32 sums round differently from DuckDB's `array_cosine_similarity` (by about 1e-7),
which would reorder near-ties. So `search` returns every row within `MARGIN` of the k-th best
score, and the store ranks those few rows in DuckDB with the exact scan's own expression and
`ORDER BY score DESC, node_id`: the same ids, order and scores as the SQL scan. Scores here follow
DuckDB's conventions (a zero vector scores -1 against everything).

A matrix is immutable and carries the `token` of the data it was read from (`data_token`: the
chunk count, plus the `data_version` that writers set in `meta` when they commit a delete);
`current` hands a store its matrix, replacing it when the token changes, so another store object
on the same file in this process never serves stale results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa

from ollagraph.tools.store_schema import DATA_VERSION_KEY

if TYPE_CHECKING:
    from ollagraph.tools.store import DocumentStore

BATCH_ROWS = 65_536  # rows per Arrow record batch while loading
# The cosine similarity DuckDB reports when either vector is all zeros.
ZERO_SCORE = -1.0
# Rows scoring within this of the k-th best are candidates: far above the float32 rounding of a
# 384-d dot product of unit vectors (~1e-7 typical, 384 * 2**-24 ~ 2.3e-5 at worst).
MARGIN = 1e-4
# More candidates than this (a store of near-duplicates): the exact SQL scan ranks instead.
MAX_CANDIDATES = 1024


def matrix_bytes(rows: int, dim: int) -> int:
    """The memory a matrix of `rows` vectors of length `dim` takes (the float32 block).

    Args:
        rows: Number of vectors.
        dim: Their length.
    """
    return rows * dim * 4


@dataclass(frozen=True)
class VectorMatrix:
    """Every vector of a store as unit float32 rows, with their node ids.

    Attributes:
        ids: The node ids, one per row (an Arrow string array, so no Python objects per row).
        vectors: The (rows, dim) float32 block of unit rows (zero vectors stay zero).
        zero_rows: Indices of the rows whose vector is all zeros.
        token: What the data looked like when it was read (see `data_token`).
    """

    ids: pa.Array
    vectors: np.ndarray
    zero_rows: np.ndarray
    token: tuple[Any, ...]

    @classmethod
    def load(
        cls,
        cursor: duckdb.DuckDBPyConnection,
        table: str,
        dim: int,
        token: tuple[Any, ...],
        *,
        capacity: int = 0,
    ) -> VectorMatrix:
        """Read the vectors and node ids of `table` (rows without a vector are left out).

        Args:
            cursor: A cursor on the store.
            table: The chunks table (`embedding FLOAT[dim]`).
            dim: The vector length.
            token: The data token, read before this call.
            capacity: Expected number of rows (the block is preallocated; it grows if needed).
        """
        reader = cursor.execute(
            f"SELECT node_id, embedding FROM {table} WHERE embedding IS NOT NULL"
        ).fetch_record_batch(BATCH_ROWS)
        block = np.empty((max(capacity, 0), dim), dtype=np.float32)
        ids: list[pa.Array] = []
        zeros: list[np.ndarray] = []
        filled = 0
        for batch in reader:
            rows = batch.num_rows
            if filled + rows > len(block):
                grown = np.empty((max(2 * len(block), filled + rows), dim), dtype=np.float32)
                grown[:filled] = block[:filled]
                block = grown
            values = batch.column(1).flatten().to_numpy(zero_copy_only=False)
            part = block[filled : filled + rows]
            part[:] = np.asarray(values, dtype=np.float32).reshape(rows, dim)
            # Scale to unit length batch by batch (zero rows stay zero).
            norms = np.sqrt(np.einsum("ij,ij->i", part, part))
            zero = np.flatnonzero(norms == 0)
            norms[zero] = 1.0
            part /= norms[:, None]
            zeros.append(zero + filled)
            ids.append(batch.column(0))
            filled += rows
        vectors = block[:filled] if filled < len(block) else block
        zero_rows = np.concatenate(zeros) if zeros else np.empty(0, dtype=np.int64)
        names = pa.concat_arrays(ids) if ids else pa.array([], pa.string())
        return cls(ids=names, vectors=vectors, zero_rows=zero_rows, token=token)

    @property
    def rows(self) -> int:
        """The number of vectors."""
        return len(self.vectors)

    @property
    def nbytes(self) -> int:
        """The memory the vectors take."""
        return int(self.vectors.nbytes)

    def search(self, query: np.ndarray, k: int, *, margin: float = 0.0) -> list[tuple[str, float]]:
        """The `k` rows most similar (cosine) to `query`: (node id, score), best first.

        Ties are broken by node id, as the exact SQL scan's `ORDER BY score DESC, node_id`.
        With a `margin`, every row within it of the k-th best score comes too (after the k).

        Args:
            query: The query vector (its length is the matrix's; a zero vector scores -1).
            k: How many rows to return (fewer when the store has fewer).
            margin: Also return the rows whose score is at most this below the k-th best.
        """
        count = min(int(k), self.rows)
        if count <= 0:
            return []
        vector = np.asarray(query, dtype=np.float32)
        norm = float(np.linalg.norm(vector))
        if norm == 0:
            scores = np.full(self.rows, ZERO_SCORE, dtype=np.float32)
        else:
            scores = self.vectors @ (vector / norm)
            if self.zero_rows.size:
                scores[self.zero_rows] = ZERO_SCORE
        if count < self.rows:
            top = np.argpartition(-scores, count - 1)[:count]
            # Every row tied with the k-th score competes on node id.
            candidates = np.flatnonzero(scores >= scores[top].min() - margin)
        else:
            candidates = np.arange(self.rows)
        names = self.ids.take(pa.array(candidates)).to_pylist()
        ranked = sorted(
            zip((-scores[candidates]).tolist(), names, strict=True),
            key=lambda item: (item[0], item[1]),
        )
        hits = [(name, -negative) for negative, name in ranked]
        return hits if margin > 0 else hits[:count]


def current(
    store: DocumentStore, cursor: duckdb.DuckDBPyConnection | None = None
) -> VectorMatrix | None:
    """`DocumentStore.vector_matrix`: the store's matrix, (re)loaded if the data changed."""
    cap = store.cache_mb
    if cap <= 0 or store.embed_dim is None:
        return None
    cursor = cursor or store.client
    token = data_token(store, cursor)
    matrix = store._matrix
    if matrix is not None and matrix.token == token:
        return matrix
    if matrix_bytes(token[0], store.embed_dim) > cap * 2**20:
        store._matrix = None
        return None
    with store._matrix_lock:  # one thread loads; the others wait for its matrix
        matrix = store._matrix
        if matrix is None or matrix.token != token:
            matrix = VectorMatrix.load(
                cursor, store.table_name, store.embed_dim, token, capacity=token[0]
            )
            store._matrix = matrix
    return matrix


def data_token(store: DocumentStore, cursor: duckdb.DuckDBPyConnection) -> tuple[int, str]:
    """The chunk count and the writers' `data_version`: what a matrix is valid for.

    Read before the vectors, so a write in between makes the next query reload.
    """
    if store.has_meta(cursor):
        sql = (
            f"SELECT (SELECT count(*) FROM {store.table_name}), "
            f"(SELECT max(value) FROM meta WHERE key = '{DATA_VERSION_KEY}')"
        )
    else:
        sql = f"SELECT count(*), NULL FROM {store.table_name}"
    # fetchall, not fetchone: a result left streaming keeps a transaction open on the cursor.
    [(count, version)] = cursor.execute(sql).fetchall()
    return int(count), str(version or "")


__all__ = [
    "BATCH_ROWS",
    "MARGIN",
    "MAX_CANDIDATES",
    "ZERO_SCORE",
    "VectorMatrix",
    "current",
    "data_token",
    "matrix_bytes",
]
