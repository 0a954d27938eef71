"""The IVF (inverted file) index of a documents store: k-means lists inside the DuckDB file.

A coarse quantizer in numpy, no extension: `nlist` centroids (spherical k-means, seeded, on a
sample of at most `MAX_TRAIN_ROWS` vectors) are stored in the table `ivf_centroids`, and every
chunk row carries the number of its nearest centroid in the `cluster` column. A search ranks the
centroids against the query vector (a few microseconds in numpy), then scans only the rows of the
`nprobe` nearest lists: one `WHERE cluster = c` branch per list, joined by `UNION ALL`.

Why one equality per list: DuckDB 1.3 pushes `cluster = c` (and `BETWEEN`) into the table scan
and then fetches the 384-float vectors of the matching rows only, but it turns
`cluster IN (...)` into an optional zonemap filter plus a hash join that reads every vector
(as slow as the exact scan). So rows need no physical order, and a retrain is one `UPDATE`.

Training costs a few hundred milliseconds at 50k chunks (`nlist` about sqrt(N), 6 iterations),
assigning new rows on `add` a matrix product per batch.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

CENTROIDS_TABLE = "ivf_centroids"
# Train on at most this many vectors (a seeded sample), with this many k-means iterations.
MAX_TRAIN_ROWS = 20_000
TRAIN_POINTS_PER_LIST = 64  # sample size: this many vectors per list, up to MAX_TRAIN_ROWS
ITERATIONS = 6
SEED = 20240611
# Lists scanned per query. At nlist ~ sqrt(N) this is ~3.6% of a 50k store; recall@10 >= 0.97
# on the benchmark's clustered data (see bench/vector_store.py).
NPROBE = 8
# Retrain when the store has grown this many times since the centroids were trained.
RETRAIN_GROWTH = 2.0


def nlist_for(rows: int) -> int:
    """The number of lists for a store of `rows` chunks: about sqrt(rows), at least 16.

    Fewer, larger lists than FAISS's usual 4*sqrt(N): each probed list costs DuckDB one scan
    branch (~1 ms), so few lists with few probes beat many small ones here.

    Args:
        rows: Number of chunks the centroids are trained for.
    """
    return max(16, min(4096, round(math.sqrt(max(rows, 1)))))


def normalized(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    block = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(block, axis=-1, keepdims=True)
    return (block / np.where(norms > 0, norms, 1.0)).astype(np.float32, copy=False)


def train(sample: np.ndarray, nlist: int, *, seed: int = SEED) -> np.ndarray:
    """Spherical k-means: `nlist` unit centroids (fewer if the sample is smaller).

    Args:
        sample: The training vectors, one per row (any length; normalized here).
        nlist: The number of centroids wanted.
        seed: Seed of the initial choice of centroids (distinct sample rows).

    Returns:
        A float32 array of shape (min(nlist, len(sample)), dim) of unit rows.
    """
    data = normalized(sample)
    count = min(nlist, len(data))
    rng = np.random.default_rng(seed)
    centroids = data[rng.choice(len(data), count, replace=False)].copy()
    for _ in range(ITERATIONS):
        labels = assign(data, centroids)
        # Sum each list's members: sort by list, then one slice sum per list (np.add.at,
        # np.add.reduceat and a one-hot matrix product are 5-20x slower here).
        order = np.argsort(labels, kind="stable")
        members = data[order]
        present, starts = np.unique(labels[order], return_index=True)
        ends = np.append(starts[1:], len(data))
        sums = np.stack([members[a:b].sum(axis=0) for a, b in zip(starts, ends, strict=True)])
        centroids[present] = normalized(sums)  # a list left empty keeps its centroid
    return centroids


def assign(vectors: np.ndarray, centroids: np.ndarray, *, batch: int = 8192) -> np.ndarray:
    """The index of the nearest centroid (cosine) of each row of `vectors`, as int32.

    Args:
        vectors: One vector per row (need not be unit length: the ranking is the same).
        centroids: Unit centroids, one per row.
        batch: Rows per matrix product (bounds the memory used).
    """
    block = np.asarray(vectors, dtype=np.float32)
    labels = np.empty(len(block), dtype=np.int32)
    for start in range(0, len(block), batch):
        labels[start : start + batch] = np.argmax(block[start : start + batch] @ centroids.T, 1)
    return labels


def probes(centroids: np.ndarray, query: np.ndarray, nprobe: int) -> list[int]:
    """The `nprobe` lists nearest to `query` (all lists when nprobe >= nlist), sorted by id.

    Args:
        centroids: Unit centroids, one per row.
        query: The query vector.
        nprobe: How many lists to scan.
    """
    scores = centroids @ np.asarray(query, dtype=np.float32)
    if nprobe >= len(scores):
        return list(range(len(scores)))
    return sorted(int(i) for i in np.argpartition(-scores, nprobe)[:nprobe])


def list_filters(lists: list[int]) -> list[str]:
    """One pushed-down filter per run of consecutive list ids (`cluster = c`, or `BETWEEN`)."""
    runs: list[tuple[int, int]] = []
    for value in lists:
        if runs and value == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return [
        f"cluster = {low}" if low == high else f"cluster BETWEEN {low} AND {high}"
        for low, high in runs
    ]


def embeddings(column: pa.ChunkedArray | pa.Array, dim: int) -> np.ndarray:
    """A fixed-size-list Arrow column of vectors as a (rows, dim) float32 array."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    values = array.flatten().to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float32).reshape(-1, dim)


__all__ = [
    "CENTROIDS_TABLE",
    "ITERATIONS",
    "MAX_TRAIN_ROWS",
    "NPROBE",
    "RETRAIN_GROWTH",
    "assign",
    "embeddings",
    "list_filters",
    "nlist_for",
    "normalized",
    "probes",
    "train",
]
