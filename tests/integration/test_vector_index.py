"""The documents store's vector indexes (IVF and HNSW): built by writers, crash-safe.

Vectors are synthetic (seeded, clustered 384-d unit vectors), so no embedding model runs.
Unfiltered searches take the in-memory matrix first (`test_vector_matrix.py`); here it is off
(`vector_cache_mb = 0`), as for stores over its memory cap, so searches use the indexes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from llama_index.core.schema import TextNode
from llama_index.core.vector_stores.types import (
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
)

from ollagraph.tools.store import INDEX_MIN_ROWS, DocumentStore
from ollagraph.tools.store_open import open_store

DIM = 384
SIZE = 6000
MODEL = "synthetic"
REPO = Path(__file__).resolve().parents[2]


def clustered(count: int, seed: int, clusters: int = 60) -> np.ndarray:
    """Unit vectors around `clusters` random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIM)).astype(np.float32)
    vectors = centres[rng.integers(0, clusters, count)]
    vectors = vectors + 0.6 * rng.standard_normal((count, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def nodes_for(vectors: np.ndarray, start: int = 0) -> list[TextNode]:
    return [
        TextNode(
            id_=f"n{start + i}",
            text=f"chunk {start + i}",
            embedding=vector.tolist(),
            metadata={"file_path": f"/docs/f{(start + i) % 7}.md", "part": (start + i) % 3},
        )
        for i, vector in enumerate(vectors)
    ]


def exact_ids(vectors: np.ndarray, query: np.ndarray, k: int, mask: np.ndarray | None = None):  # type: ignore[no-untyped-def]
    scores = vectors @ query
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    return [f"n{i}" for i in np.argsort(-scores, kind="stable")[:k]]


def ask(store: DocumentStore, vector: np.ndarray, k: int = 10, **kwargs: object) -> list[str]:
    query = VectorStoreQuery(query_embedding=vector.tolist(), similarity_top_k=k, **kwargs)  # type: ignore[arg-type]
    return list(store.query(query).ids or [])


def plan(store: DocumentStore, vector: np.ndarray, **kwargs: object) -> str:
    query = VectorStoreQuery(query_embedding=vector.tolist(), similarity_top_k=10, **kwargs)  # type: ignore[arg-type]
    return str(store.client.execute("EXPLAIN " + store.query_sql(query)).fetchall()[0][1])


def searching(path: Path) -> Iterator[DocumentStore]:
    """A read-only searcher on the store at `path`, closed after the test (for fixtures)."""
    store = open_store(path, create=False, embed_model_name=MODEL, read_only=True)
    yield store
    store.close()


@pytest.fixture(autouse=True)
def _no_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DocumentStore, "vector_cache_mb", 0)


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return clustered(SIZE, seed=6)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, vectors: np.ndarray) -> Path:
    """A store of SIZE chunks whose writer closed cleanly (so it built the index)."""
    path = tmp_path_factory.mktemp("index") / "store.duckdb"
    store = open_store(
        path, create=True, embed_dim=DIM, embed_model_name=MODEL, vector_index="hnsw"
    )
    store.replace_file("/docs/all.md", "0" * 64, nodes_for(vectors))
    assert not store.has_index()
    store.close()
    return path


@pytest.fixture
def searcher(built: Path) -> Iterator[DocumentStore]:
    yield from searching(built)


def test_the_writer_builds_the_index_and_read_only_searchers_use_it(
    searcher: DocumentStore, vectors: np.ndarray
) -> None:
    assert SIZE > INDEX_MIN_ROWS
    assert searcher.has_index()
    assert "HNSW_INDEX_SCAN" in plan(searcher, vectors[0])
    found = ask(searcher, vectors[3], k=5)
    assert found[0] == "n3" and len(found) == 5
    result = searcher.query(VectorStoreQuery(query_embedding=vectors[3].tolist()))
    assert result.similarities is not None and result.similarities[0] == pytest.approx(1, abs=1e-5)
    assert result.nodes is not None and result.nodes[0].get_content() == "chunk 3"


def test_recall_at_10_of_the_index_is_at_least_95_percent(
    searcher: DocumentStore, vectors: np.ndarray
) -> None:
    queries = clustered(100, seed=7)
    hits = sum(
        len(set(ask(searcher, query)) & set(exact_ids(vectors, query, 10))) for query in queries
    )
    assert hits / (10 * len(queries)) >= 0.95


def test_filtered_queries_scan_exactly_and_only_return_matches(
    searcher: DocumentStore, vectors: np.ndarray
) -> None:
    filters = MetadataFilters(
        filters=[MetadataFilter(key="part", value=2, operator=FilterOperator.EQ)]
    )
    query = clustered(1, seed=8)[0]
    assert "HNSW_INDEX_SCAN" not in plan(searcher, query, filters=filters)
    mask = np.arange(SIZE) % 3 == 2
    assert ask(searcher, query, filters=filters) == exact_ids(vectors, query, 10, mask)
    by_file = MetadataFilters(
        filters=[MetadataFilter(key="file_path", value="/docs/f4.md", operator=FilterOperator.EQ)]
    )
    mask = np.arange(SIZE) % 7 == 4
    assert ask(searcher, query, k=3, filters=by_file) == exact_ids(vectors, query, 3, mask)


def test_small_stores_scan_exactly_with_exact_results(tmp_path: Path) -> None:
    vectors = clustered(300, seed=9)
    store = open_store(
        tmp_path / "s.duckdb",
        create=True,
        embed_dim=DIM,
        embed_model_name=MODEL,
        vector_index="hnsw",
    )
    store.replace_file("/docs/small.md", "1" * 64, nodes_for(vectors))
    store.close()
    store = open_store(tmp_path / "s.duckdb", create=False, read_only=True)
    try:
        assert not store.has_index()
        for query in clustered(20, seed=10):
            assert "HNSW_INDEX_SCAN" not in plan(store, query)
            assert ask(store, query) == exact_ids(vectors, query, 10)
    finally:
        store.close()


def test_a_write_drops_the_index_and_the_writers_close_rebuilds_it(
    built: Path, tmp_path: Path, vectors: np.ndarray
) -> None:
    path = shutil.copy(built, tmp_path / "copy.duckdb")
    store = open_store(path, create=False, embed_model_name=MODEL, vector_index="hnsw")
    assert store.has_index()
    extra = clustered(10, seed=11)
    store.replace_file("/docs/extra.md", "2" * 64, nodes_for(extra, start=SIZE))
    assert not store.has_index()
    assert ask(store, extra[0], k=1) == [f"n{SIZE}"]  # exact meanwhile
    store.close()
    store = open_store(path, create=False, read_only=True)
    try:
        assert store.has_index() and store.count() == SIZE + 10
        assert ask(store, extra[4], k=1) == [f"n{SIZE + 4}"]
    finally:
        store.close()


def test_a_writer_killed_after_writing_leaves_an_openable_consistent_store(
    built: Path, tmp_path: Path
) -> None:
    path = shutil.copy(built, tmp_path / "killed.duckdb")
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        from tests.integration.test_vector_index import clustered, nodes_for
        from ollagraph.tools.store_open import open_store
        store = open_store({str(path)!r}, create=False, vector_index="hnsw")
        store.replace_file("/docs/late.md", "3" * 64, nodes_for(clustered(5, 12), start={SIZE}))
        store.set_meta("after", "yes")
        os._exit(0)  # no close, no checkpoint: the WAL holds the last writes
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    store = open_store(path, create=False, read_only=True)
    try:
        assert store.count() == SIZE + 5 and store.meta()["after"] == "yes"
        assert not store.has_index()  # until the next writer finishes
        assert ask(store, clustered(5, 12)[2], k=1) == [f"n{SIZE + 2}"]
    finally:
        store.close()


def test_a_writer_killed_before_checkpointing_the_index_leaves_a_searchable_store(
    built: Path, tmp_path: Path, vectors: np.ndarray
) -> None:
    """Killed between CREATE INDEX and its checkpoint: the log holds the index.

    vss cannot replay that log read-only (it writes the index's blocks), and without vss loaded
    first no replay of an indexed table works; the next read-only open still succeeds.
    """
    path = shutil.copy(built, tmp_path / "killed.duckdb")
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        from tests.integration.test_vector_index import clustered, nodes_for
        from ollagraph.tools.store_open import open_store
        store = open_store({str(path)!r}, create=False, vector_index="hnsw")
        store.replace_file("/docs/late.md", "3" * 64, nodes_for(clustered(5, 12), start={SIZE}))
        cursor = store.client
        cursor.execute("SET checkpoint_threshold = '10GB'")  # nothing reaches the file
        cursor.execute("SET hnsw_enable_experimental_persistence = true")
        cursor.execute(
            "CREATE INDEX documents_hnsw ON documents USING HNSW (embedding) "
            "WITH (metric = 'cosine')"
        )
        os._exit(0)  # killed before the checkpoint
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert path.with_name(path.name + ".wal").exists()
    store = open_store(path, create=False, read_only=True)
    try:
        assert store.count() == SIZE + 5 and store.has_index()
        assert "HNSW_INDEX_SCAN" in plan(store, vectors[0])
        assert ask(store, clustered(5, 12)[2], k=1) == [f"n{SIZE + 2}"]
    finally:
        store.close()
    assert not path.with_name(path.name + ".wal").exists()


def test_a_writer_ending_in_an_exception_does_not_build_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DocumentStore, "index_min_rows", 10)
    store = open_store(
        tmp_path / "e.duckdb",
        create=True,
        embed_dim=DIM,
        embed_model_name=MODEL,
        vector_index="hnsw",
    )
    store.replace_file("/docs/e.md", "4" * 64, nodes_for(clustered(20, seed=13)))
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        store.close()
    store = open_store(tmp_path / "e.duckdb", create=False, vector_index="hnsw")
    try:
        assert not store.has_index()
        assert store.build_index() and store.has_index()
    finally:
        store.close()


def test_without_the_setting_a_writer_builds_no_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DocumentStore, "index_min_rows", 10)
    path = tmp_path / "plain.duckdb"
    store = open_store(path, create=True, embed_dim=DIM, embed_model_name=MODEL, vector_index=False)
    store.replace_file("/docs/p.md", "5" * 64, nodes_for(clustered(20, seed=14)))
    store.close()
    store = open_store(path, create=False, read_only=True)
    try:
        assert store.index_kind() is None  # vector_index = false: exact scans
    finally:
        store.close()


# -- the IVF index ---------------------------------------------------------------------------


def near(vectors: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Queries near stored chunks (a question near its passage), as in the benchmark."""
    rng = np.random.default_rng(seed)
    picked = vectors[rng.integers(0, len(vectors), count)]
    noisy = picked + 0.08 * rng.standard_normal(picked.shape).astype(np.float32)
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def ivf_built(tmp_path_factory: pytest.TempPathFactory, vectors: np.ndarray) -> Path:
    """A store of SIZE chunks whose writer (vector_index="ivf") trained the IVF lists."""
    path = tmp_path_factory.mktemp("ivf") / "store.duckdb"
    store = open_store(path, create=True, embed_dim=DIM, embed_model_name=MODEL, vector_index="ivf")
    store.replace_file("/docs/a.md", "0" * 64, nodes_for(vectors[:4000]))
    store.replace_file("/docs/b.md", "1" * 64, nodes_for(vectors[4000:], start=4000))
    assert store.index_kind() is None  # trained when the writer closes
    store.close()
    return path


@pytest.fixture
def ivf_searcher(ivf_built: Path) -> Iterator[DocumentStore]:
    yield from searching(ivf_built)


def test_the_writer_trains_ivf_lists_and_read_only_searchers_probe_them(
    ivf_searcher: DocumentStore, vectors: np.ndarray
) -> None:
    store = ivf_searcher
    assert store.index_kind() == "ivf" and not store.has_index()
    nlist = int(store.meta()["ivf_nlist"])
    assert nlist == round(SIZE**0.5) and store.meta()["ivf_rows"] == str(SIZE)
    query = VectorStoreQuery(query_embedding=vectors[3].tolist(), similarity_top_k=5)
    assert store.search_path(query) == "ivf"
    sql = store.query_sql(query)
    assert 0 < sql.count("cluster =") + sql.count("cluster BETWEEN") <= store.ivf_nprobe
    # Each branch is a filter pushed into the scan, so DuckDB reads vectors of its list only.
    assert "Filters:" in plan(store, vectors[3]) and "HASH_JOIN" not in plan(store, vectors[3])
    result = store.query(query)
    assert result.ids is not None and result.ids[0] == "n3" and len(result.ids) == 5
    assert result.similarities is not None and result.similarities[0] == pytest.approx(1, abs=1e-5)
    assert result.nodes is not None and result.nodes[0].get_content() == "chunk 3"


def test_ivf_recall_at_10_is_at_least_95_percent(
    ivf_searcher: DocumentStore, vectors: np.ndarray
) -> None:
    queries = near(vectors, 100, seed=17)
    hits = sum(
        len(set(ask(ivf_searcher, query)) & set(exact_ids(vectors, query, 10))) for query in queries
    )
    assert hits / (10 * len(queries)) >= 0.95


def test_ivf_probing_every_list_equals_exact_search(
    ivf_searcher: DocumentStore, vectors: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DocumentStore, "ivf_nprobe", 10**6)
    for query in list(clustered(10, seed=18)) + list(near(vectors, 10, seed=19)):
        assert ask(ivf_searcher, query) == exact_ids(vectors, query, 10)


def test_ivf_store_filtered_queries_scan_exactly(
    ivf_searcher: DocumentStore, vectors: np.ndarray
) -> None:
    filters = MetadataFilters(
        filters=[MetadataFilter(key="part", value=1, operator=FilterOperator.EQ)]
    )
    query = near(vectors, 1, seed=20)[0]
    assert ivf_searcher.search_path(VectorStoreQuery(filters=filters)) == "exact"
    mask = np.arange(SIZE) % 3 == 1
    assert ask(ivf_searcher, query, filters=filters) == exact_ids(vectors, query, 10, mask)


def test_the_ivf_lists_are_retrained_when_the_store_doubles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DocumentStore, "index_min_rows", 100)
    path = tmp_path / "grow.duckdb"
    data = clustered(800, seed=21)

    def write(name: str, start: int, stop: int) -> DocumentStore:
        store = open_store(
            path, create=not path.exists(), embed_dim=DIM, embed_model_name=MODEL, vector_index=True
        )
        store.replace_file(name, f"{start:064d}", nodes_for(data[start:stop], start=start))
        return store

    write("/docs/1.md", 0, 60).close()  # under the threshold: no lists
    store = open_store(path, create=False, read_only=True)
    assert store.index_kind() is None and "ivf_rows" not in store.meta()
    store.close()
    write("/docs/2.md", 60, 300).close()
    store = write("/docs/3.md", 300, 500)  # a new file gets its lists from the centroids
    assert store.index_kind() == "ivf" and store.meta()["ivf_rows"] == "300"
    assert ask(store, data[450], k=1) == ["n450"]
    store.close()
    store = open_store(path, create=False, read_only=True)
    assert store.meta()["ivf_rows"] == "300"  # grown 1.67x: kept
    store.close()
    write("/docs/4.md", 500, 800).close()
    store = open_store(path, create=False, read_only=True)
    try:
        assert store.meta()["ivf_rows"] == "800" and store.index_kind() == "ivf"
        assert ask(store, data[799], k=1) == ["n799"]
    finally:
        store.close()


def test_a_store_written_before_the_index_opens_searches_exactly_then_gets_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DocumentStore, "index_min_rows", 100)
    path = tmp_path / "old.duckdb"
    data = clustered(300, seed=22)
    store = open_store(path, create=True, embed_dim=DIM, embed_model_name=MODEL, vector_index="off")
    store.replace_file("/docs/old.md", "6" * 64, nodes_for(data[:250]))
    store.client.execute("ALTER TABLE documents DROP COLUMN cluster")  # the old layout
    store.close()
    store = open_store(path, create=False, embed_model_name=MODEL, read_only=True)
    try:
        assert store.index_kind() is None
        assert ask(store, data[7]) == exact_ids(data[:250], data[7], 10)
    finally:
        store.close()
    store = open_store(path, create=False, embed_model_name=MODEL, vector_index="ivf")
    store.replace_file("/docs/new.md", "7" * 64, nodes_for(data[250:], start=250))
    store.close()
    store = open_store(path, create=False, read_only=True)
    try:
        assert store.index_kind() == "ivf" and store.count() == 300
        assert ask(store, data[270], k=1) == ["n270"] and ask(store, data[7], k=1) == ["n7"]
    finally:
        store.close()


def test_a_writer_killed_after_writing_to_an_ivf_store_leaves_it_searchable(
    ivf_built: Path, tmp_path: Path
) -> None:
    path = shutil.copy(ivf_built, tmp_path / "killed.duckdb")
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        from tests.integration.test_vector_index import clustered, nodes_for
        from ollagraph.tools.store_open import open_store
        store = open_store({str(path)!r}, create=False)
        store.replace_file("/docs/late.md", "3" * 64, nodes_for(clustered(5, 12), start={SIZE}))
        os._exit(0)  # no close, no checkpoint: the WAL holds the last writes
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    store = open_store(path, create=False, read_only=True)
    try:
        assert store.count() == SIZE + 5
        assert store.index_kind() == "ivf"  # the new rows got their lists as they were added
        assert ask(store, clustered(5, 12)[2], k=1) == [f"n{SIZE + 2}"]
    finally:
        store.close()


def test_index_kinds_from_the_setting() -> None:
    from ollagraph.tools.store_open import index_kind

    assert [index_kind(value) for value in (True, False, "IVF", "hnsw", "off")] == [
        "ivf",
        "off",
        "ivf",
        "hnsw",
        "off",
    ]
    with pytest.raises(ValueError, match="one of"):
        index_kind("faiss")
