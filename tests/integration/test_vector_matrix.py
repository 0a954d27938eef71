"""The documents store's in-memory matrix search: exact, fresh after writes, capped in memory.

Vectors are synthetic (seeded, clustered 384-d unit vectors, plus exact duplicates for ties and
a zero vector), so no embedding model runs. "The SQL path" is the exact scan
(`query_sql(query, path="exact")`) run on the same store.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pytest
from llama_index.core.schema import TextNode
from llama_index.core.vector_stores.types import (
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
)

from ollagraph.agents.errors import DocumentStoreError
from ollagraph.tools.store import DocumentStore
from ollagraph.tools.store_open import open_store
from tests.integration.test_vector_index import (
    DIM,
    MODEL,
    REPO,
    clustered,
    exact_ids,
    near,
    nodes_for,
    searching,
)

pytestmark = pytest.mark.integration

SIZE = 3000


def seeded() -> np.ndarray:
    """SIZE vectors: clustered, rows 100-104 copies of row 7 (ties), row 200 all zeros."""
    vectors = clustered(SIZE, seed=31)
    vectors[100:105] = vectors[7]
    vectors[200] = 0.0
    return vectors


def scrambled_nodes(vectors: np.ndarray) -> list[TextNode]:
    """Nodes whose ids do not follow row order, so a tie-break by id is visible."""
    nodes = nodes_for(vectors)
    for node in nodes[100:105]:
        node.id_ = f"tie-{104 - int(node.id_[1:]) + 100}"
    return nodes


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("matrix") / "store.duckdb"
    store = open_store(path, create=True, embed_dim=DIM, embed_model_name=MODEL)
    store.replace_file("/docs/all.md", "0" * 64, scrambled_nodes(seeded()))
    store.close()
    return path


@pytest.fixture
def searcher(built: Path) -> Iterator[DocumentStore]:
    yield from searching(built)


def query_of(vector: np.ndarray, k: int = 10, **kwargs: object) -> VectorStoreQuery:
    return VectorStoreQuery(query_embedding=vector.tolist(), similarity_top_k=k, **kwargs)  # type: ignore[arg-type]


def by_sql(store: DocumentStore, query: VectorStoreQuery) -> list[tuple[str, float]]:
    rows = store.client.execute(store.query_sql(query, path="exact")).fetchall()
    return [(row[0], row[4]) for row in rows]


def by_store(store: DocumentStore, query: VectorStoreQuery) -> list[tuple[str, float]]:
    result = store.query(query)
    return list(zip(result.ids or [], result.similarities or [], strict=True))


def test_results_equal_the_exact_sql_scan_ids_order_and_scores(searcher: DocumentStore) -> None:
    vectors = seeded()
    queries = list(near(vectors, 25, seed=32)) + list(clustered(10, seed=33))
    queries += [vectors[7], np.zeros(DIM, np.float32)]  # a five-way tie; DuckDB's zero convention
    for k in (1, 3, 10):
        for vector in queries:
            query = query_of(vector, k)
            assert searcher.search_path(query) == "matrix"
            assert by_store(searcher, query) == by_sql(searcher, query)
    matrix = searcher.vector_matrix()
    assert matrix is not None and matrix.rows == SIZE and matrix.vectors.flags.c_contiguous
    assert matrix.vectors.dtype == np.float32 and list(matrix.zero_rows) == [200]


def test_ties_are_ranked_by_node_id_as_in_sql(searcher: DocumentStore) -> None:
    vectors = seeded()
    top = by_store(searcher, query_of(vectors[7], k=4))
    assert [node for node, _ in top] == ["n7", "tie-100", "tie-101", "tie-102"]
    assert len({score for _, score in top}) == 1
    nodes = by_store(searcher, query_of(vectors[7], k=6))
    assert [node for node, _ in nodes][:6] == ["n7", *[f"tie-{i}" for i in range(100, 105)]]
    # The numpy ranking alone agrees too (margin 0 returns exactly k, ties by id).
    matrix = searcher.vector_matrix()
    assert matrix is not None
    assert [node for node, _ in matrix.search(vectors[7], 3)] == ["n7", "tie-100", "tie-101"]


def test_recall_against_numpy_is_one(searcher: DocumentStore) -> None:
    vectors = seeded()
    names = [node.node_id for node in scrambled_nodes(vectors)]
    for vector in near(vectors[300:], 20, seed=34):
        found = {node for node, _ in by_store(searcher, query_of(vector))}
        assert found == {names[int(i[1:])] for i in exact_ids(vectors, vector, 10)}


def test_metadata_filters_take_the_sql_path(searcher: DocumentStore) -> None:
    vectors = seeded()
    filters = MetadataFilters(
        filters=[MetadataFilter(key="part", value=2, operator=FilterOperator.EQ)]
    )
    vector = near(vectors[300:], 1, seed=35)[0]
    query = query_of(vector, filters=filters)
    assert searcher.search_path(query) == "exact"
    found = [node for node, _ in by_store(searcher, query)]
    names = [node.node_id for node in scrambled_nodes(vectors)]
    expected = exact_ids(vectors, vector, 10, np.arange(SIZE) % 3 == 2)
    assert found == [names[int(node[1:])] for node in expected]
    assert searcher._matrix is None  # a filtered query never loads the matrix


def test_k_larger_than_the_store_and_an_empty_store(tmp_path: Path) -> None:
    path = tmp_path / "small.duckdb"
    store = open_store(path, create=True, embed_dim=DIM, embed_model_name=MODEL)
    try:
        vector = clustered(1, seed=36)[0]
        result = store.query(query_of(vector))
        assert store.search_path(query_of(vector)) == "matrix"
        assert result.ids == [] and result.nodes == [] and result.similarities == []
        vectors = clustered(5, seed=37)
        store.add(nodes_for(vectors))
        found = by_store(store, query_of(vector, k=20))
        assert len(found) == 5 and found == by_sql(store, query_of(vector, k=20))
    finally:
        store.close()


def test_wrong_dimension_and_nan_errors_are_unchanged(searcher: DocumentStore) -> None:
    with pytest.raises(duckdb.ConversionException, match="size of the array must match"):
        searcher.query(VectorStoreQuery(query_embedding=[0.1] * (DIM - 1), similarity_top_k=3))
    with pytest.raises(ValueError, match="NaN or infinite"):
        searcher.query(VectorStoreQuery(query_embedding=[float("nan")] * DIM))
    with pytest.raises(ValueError, match="needs a query_embedding"):
        searcher.query(VectorStoreQuery(query_embedding=None))


def test_writes_by_the_store_itself_are_searched(tmp_path: Path) -> None:
    path = tmp_path / "own.duckdb"
    data = clustered(400, seed=38)
    store = open_store(path, create=True, embed_dim=DIM, embed_model_name=MODEL)
    try:
        store.replace_file("/docs/a.md", "1" * 64, nodes_for(data[:300]))
        assert by_store(store, query_of(data[5], 1))[0][0] == "n5"
        store.add(nodes_for(data[300:], start=300))
        assert by_store(store, query_of(data[350], 1))[0][0] == "n350"
        store.delete_nodes(node_ids=["n350"])
        assert by_store(store, query_of(data[350], 1))[0][0] != "n350"
        with pytest.raises(RuntimeError), store.transaction():
            store.add(nodes_for(data[:1] * -1, start=900))
            assert by_store(store, query_of(-data[0], 1))[0][0] == "n900"  # inside: seen
            raise RuntimeError("roll back")
        assert by_store(store, query_of(-data[0], 1))[0][0] != "n900"  # rolled back: gone
    finally:
        store.close()


def test_another_store_object_writing_in_this_process_is_seen(tmp_path: Path) -> None:
    """Two writers on one file share DuckDB's database; the data token catches the other's write.

    The second write replaces every chunk with as many new ones (same count): only the
    `data_version` that writers set on commit tells the first store its matrix is stale.
    """
    path = tmp_path / "two.duckdb"
    data = clustered(200, seed=39)
    first = open_store(path, create=True, embed_dim=DIM, embed_model_name=MODEL)
    first.replace_file("/docs/a.md", "2" * 64, nodes_for(data[:100]))
    second = open_store(path, create=False, embed_model_name=MODEL)
    try:
        assert by_store(first, query_of(data[10], 1))[0][0] == "n10"
        loaded = first._matrix
        with second.transaction():
            second.delete_nodes(node_ids=[f"n{i}" for i in range(100)])
            second.add(nodes_for(data[100:], start=100))
        assert first.count() == 100  # the same count as before
        assert by_store(first, query_of(data[110], 1))[0][0] == "n110"
        assert first._matrix is not loaded
        found = by_store(first, query_of(data[10], 5))
        assert "n10" not in [node for node, _ in found]
        assert found == by_sql(first, query_of(data[10], 5))
    finally:
        second.close()
        first.close()


def test_another_process_cannot_change_a_store_while_it_is_searched(built: Path) -> None:
    """A read-only searcher holds DuckDB's lock: a writer in another process is refused, so a
    loaded matrix cannot go stale; the searcher opened after the write sees it."""
    path = built.with_name("shared.duckdb")
    path.write_bytes(built.read_bytes())
    extra = clustered(3, seed=40)
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        import numpy as np
        from tests.integration.test_vector_index import clustered, nodes_for
        from ollagraph.tools.store_open import open_store
        store = open_store({str(path)!r}, create=False)
        store.replace_file("/docs/late.md", "4" * 64, nodes_for(clustered(3, seed=40), 5000))
        store.close()
        """
    )
    searcher = open_store(path, create=False, read_only=True)
    try:
        assert by_store(searcher, query_of(extra[1], 1))[0][0] != "n5001"
        refused = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        assert refused.returncode != 0 and "in use by another process" in refused.stderr
    finally:
        searcher.close()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    searcher = open_store(path, create=False, read_only=True)
    try:
        assert by_store(searcher, query_of(extra[1], 1))[0][0] == "n5001"
    finally:
        searcher.close()


def test_over_the_cap_searches_the_ivf_index_or_scans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DocumentStore, "index_min_rows", 100)
    data = clustered(1000, seed=41)  # 1.5 MB of vectors
    plain, indexed = tmp_path / "plain.duckdb", tmp_path / "ivf.duckdb"
    for path, kind in ((plain, "off"), (indexed, "ivf")):
        store = open_store(
            path, create=True, embed_dim=DIM, embed_model_name=MODEL, vector_index=kind
        )
        store.replace_file("/docs/a.md", "5" * 64, nodes_for(data))
        store.close()
    query = query_of(data[17])
    for path, fallback in ((plain, "exact"), (indexed, "ivf")):
        store = open_store(path, create=False, read_only=True, vector_cache_mb=1)
        try:
            assert store.cache_mb == 1 and store.search_path(query) == fallback
            assert by_store(store, query)[0][0] == "n17"
            assert store.vector_matrix() is None and store._matrix is None
        finally:
            store.close()
        store = open_store(path, create=False, read_only=True, vector_cache_mb=2)
        try:
            assert store.search_path(query) == "matrix"
            assert by_store(store, query) == by_sql(store, query)
        finally:
            store.close()
    monkeypatch.setattr(DocumentStore, "vector_cache_mb", 0)  # the class default: off
    store = open_store(plain, create=False, read_only=True)
    try:
        assert store.search_path(query) == "exact" and by_store(store, query)[0][0] == "n17"
    finally:
        store.close()


def test_the_setting_reaches_the_search_tools_store(
    built: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ollagraph.agents.config import Settings
    from ollagraph.tools import documents, store_open

    assert Settings().vector_cache_mb == 512
    seen: dict[str, object] = {}

    def fake_open(path: Path, **kwargs: object) -> DocumentStore:
        seen.update(kwargs)
        raise DocumentStoreError("stop here")

    monkeypatch.setattr(store_open, "open_store", fake_open)
    with pytest.raises(DocumentStoreError, match="stop here"):
        documents._index_for(built, Settings(docs=str(built), vector_cache_mb=64))
    assert seen["vector_cache_mb"] == 64 and seen["read_only"] is True
