"""Benchmark: ollagraph's documents store vs llama-index's stock `DuckDBVectorStore`.

Both stores get the same synthetic chunks (seeded, clustered 384-d unit vectors, so recall is
meaningful) through the llama-index `VectorStore` interface (`add`, `query`), in the same run:

- ingest chunks/s: `add` in batches of 1,000 into a fresh database file, then close (ollagraph
  with its default settings, as `agent ingest` writes: no index is built);
- first-query latency (ms, report only): the first `query` on a freshly opened store; for
  ollagraph (a read-only reopen, as `agent ask` searches) that loads the in-memory matrix;
- query p50/p95 latency (ms) of `query(VectorStoreQuery(top_k=10))` after that first query;
- recall@10 against an exact numpy search, and for ollagraph whether every result list equals
  the exact SQL scan's (ids and order; `same_as_sql`).

The stock store runs `INSTALL json/fts` (a download) in its set-up and drops a `client=`
connection, so offline it is a subclass whose `_connect` opens the file with
`ollagraph.tools.duck.connect` (json and fts loaded from the installed wheels) and whose
`_initialize_table` only creates the same table; its `add` and `query` are untouched. Each
cell is the median of `--repeats` runs (latency percentiles are over all queries of a run).

    python bench/vector_store.py                           # 10k and 50k chunks, 200 queries
    python bench/vector_store.py --sizes 10000 --queries 100 --repeats 1

Prints a markdown table; ratio columns are stock / ollagraph for latency (higher is better for
ollagraph) and ollagraph / stock for ingest (target: >= 5x faster p50 at recall@10 >= 0.95 on
50k, ingest not slower).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DIM = 384
TOP_K = 10
BATCH = 1000


def vectors(count: int, seed: int, clusters: int = 100) -> np.ndarray:
    """Unit vectors scattered around `clusters` random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIM)).astype(np.float32)
    data = centres[rng.integers(0, clusters, count)]
    data = data + 0.6 * rng.standard_normal((count, DIM)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    return data


def queries(data: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Queries near stored chunks (a question near its passage), unit length."""
    rng = np.random.default_rng(seed)
    picked = data[rng.integers(0, len(data), count)]
    noisy = picked + 0.08 * rng.standard_normal(picked.shape).astype(np.float32)
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)  # type: ignore[no-any-return]


def _nodes(data: np.ndarray, start: int) -> list[Any]:
    from llama_index.core.schema import TextNode

    return [
        TextNode(
            id_=f"n{start + i}",
            text=f"chunk {start + i}",
            embedding=row.tolist(),
            metadata={"file_path": f"/docs/f{(start + i) % 50}.md"},
        )
        for i, row in enumerate(data)
    ]


def _stock_store(path: Path) -> Any:
    """llama-index's DuckDBVectorStore on an offline connection (no INSTALL, same table)."""
    from llama_index.vector_stores.duckdb import DuckDBVectorStore

    from ollagraph.tools import duck

    class OfflineStock(DuckDBVectorStore):
        @classmethod
        def _connect(cls, database_name: str, persist_dir: str) -> Any:
            target = Path(persist_dir) / database_name
            return duck.connect(target, read_only=False, extensions=("json", "fts"))

        @classmethod
        def _initialize_table(cls, conn: Any, table_name: str, embed_dim: int | None) -> None:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {table_name} (node_id VARCHAR PRIMARY KEY, "
                f"text TEXT, embedding {cls._get_embedding_type(embed_dim)}, metadata_ JSON)"
            )

    return OfflineStock(database_name=path.name, persist_dir=str(path.parent), embed_dim=DIM)


def _ours(path: Path, read_only: bool) -> Any:
    from ollagraph.tools.store_open import open_store

    if read_only:
        return open_store(path, create=False, read_only=True)
    return open_store(path, create=True, embed_dim=DIM, embed_model_name="bench")


def _ingest(store: Any, data: np.ndarray, finish: Any) -> float:
    """Add `data` in batches and run `finish`; return chunks per second."""
    batches = [_nodes(data[i : i + BATCH], i) for i in range(0, len(data), BATCH)]
    started = time.perf_counter()
    for batch in batches:
        store.add(batch)
    finish()
    return len(data) / (time.perf_counter() - started)


def _search(store: Any, data: np.ndarray, probes: np.ndarray) -> dict[str, float]:
    from llama_index.core.vector_stores.types import VectorStoreQuery

    def ask(vector: np.ndarray) -> list[str]:
        return list(
            store.query(
                VectorStoreQuery(query_embedding=vector.tolist(), similarity_top_k=TOP_K)
            ).ids
            or []
        )

    started = time.perf_counter()
    ask(probes[0])  # the first query: loads the in-memory matrix (ours)
    cold = (time.perf_counter() - started) * 1000
    latencies, hits = [], 0
    for vector in probes:
        started = time.perf_counter()
        found = ask(vector)
        latencies.append((time.perf_counter() - started) * 1000)
        exact = {f"n{i}" for i in np.argsort(-(data @ vector))[:TOP_K]}
        hits += len(exact & set(found))
    return {
        "cold_ms": cold,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p95_ms": float(np.percentile(latencies, 95)),
        "recall": hits / (TOP_K * len(probes)),
    }


def _same_as_sql(store: Any, probes: np.ndarray) -> float:
    """1.0 when every query returns the exact SQL scan's ids in its order, else 0.0."""
    from llama_index.core.vector_stores.types import VectorStoreQuery

    for vector in probes:
        query = VectorStoreQuery(query_embedding=vector.tolist(), similarity_top_k=TOP_K)
        sql = store.client.execute(store.query_sql(query, path="exact")).fetchall()
        if [row[0] for row in sql] != list(store.query(query).ids or []):
            return 0.0
    return 1.0


def _one_run(size: int, count: int, folder: Path, seed: int) -> dict[str, dict[str, float]]:
    data = vectors(size, seed)
    probes = queries(data, count, seed + 1)
    results: dict[str, dict[str, float]] = {}

    stock = _stock_store(folder / f"stock-{size}-{seed}.duckdb")
    rate = _ingest(stock, data, lambda: stock.client.execute("CHECKPOINT"))
    results["stock"] = {"ingest": rate, **_search(stock, data, probes)}
    stock._shared_conn.close()

    path = folder / f"ours-{size}-{seed}.duckdb"
    ours = _ours(path, read_only=False)
    rate = _ingest(ours, data, ours.close)
    ours = _ours(path, read_only=True)
    results["ours"] = {"ingest": rate}
    results["ours"].update(_search(ours, data, probes))
    results["ours"]["matrix"] = float(ours._matrix is not None)
    results["ours"]["same_as_sql"] = _same_as_sql(ours, probes[: max(1, len(probes) // 4)])
    ours.close()
    return results


def run(sizes: list[int], queries: int = 200, repeats: int = 3) -> list[dict[str, Any]]:
    """Run the benchmark; return one row per size with medians over `repeats` runs.

    Args:
        sizes: Numbers of chunks.
        queries: Queries per run.
        repeats: Runs per size (each on fresh databases and fresh data seeds).

    Returns:
        Rows with `size`, `<store>_<metric>` medians (stores `stock`, `ours`; metrics `ingest`
        chunks/s, `cold_ms` (the first query), `p50_ms`, `p95_ms`, `recall`), `ours_matrix`
        (every run searched the in-memory matrix), `ours_same_as_sql` (every checked query
        returned the exact SQL scan's ids in order), and the ratios `p50_speedup`,
        `p95_speedup`, `cold_speedup` (stock / ours) and `ingest_ratio` (ours / stock).
    """
    rows = []
    with tempfile.TemporaryDirectory(prefix="ollagraph-bench-") as tmp:
        for size in sizes:
            runs = [_one_run(size, queries, Path(tmp), seed) for seed in range(repeats)]
            row: dict[str, Any] = {"size": size}
            for store in ("stock", "ours"):
                for metric in ("ingest", "cold_ms", "p50_ms", "p95_ms", "recall"):
                    row[f"{store}_{metric}"] = statistics.median(r[store][metric] for r in runs)
            row["ours_matrix"] = all(r["ours"]["matrix"] for r in runs)
            row["ours_same_as_sql"] = all(r["ours"]["same_as_sql"] for r in runs)
            row["p50_speedup"] = row["stock_p50_ms"] / row["ours_p50_ms"]
            row["p95_speedup"] = row["stock_p95_ms"] / row["ours_p95_ms"]
            row["cold_speedup"] = row["stock_cold_ms"] / row["ours_cold_ms"]
            row["ingest_ratio"] = row["ours_ingest"] / row["stock_ingest"]
            rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Render `run`'s rows as a markdown table."""
    lines = [
        "| chunks | store | ingest chunks/s | first query ms (cold) | query p50 ms "
        "| query p95 ms | recall@10 | p50 × | p95 × | ingest × |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        for store, label in (("stock", "llama-index DuckDBVectorStore"), ("ours", "ollagraph")):
            ratios = (
                f"{row['p50_speedup']:.1f} | {row['p95_speedup']:.1f} | {row['ingest_ratio']:.2f}"
                if store == "ours"
                else "1 | 1 | 1"
            )
            if store == "ours":
                label += " (in-memory matrix" if row["ours_matrix"] else " (SQL scan"
                label += ", = exact SQL)" if row["ours_same_as_sql"] else ", differs from SQL!)"
            lines.append(
                f"| {row['size']:,} | {label} | {row[f'{store}_ingest']:,.0f} "
                f"| {row[f'{store}_cold_ms']:.1f} "
                f"| {row[f'{store}_p50_ms']:.1f} | {row[f'{store}_p95_ms']:.1f} "
                f"| {row[f'{store}_recall']:.3f} | {ratios} |"
            )
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, run, print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="10000,50000", help="comma-separated chunk counts")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    print(table(run(sizes, args.queries, args.repeats)))


if __name__ == "__main__":
    main()
