"""Documents end to end: ingest real files, embed with the real MiniLM, search a real DuckDB store.

Nothing is faked but the Ollama server (a local pytest-httpserver, for the HTTP boundary). The
MiniLM model loads once per session through the in-process cache of `get_embed_model`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from pytest_httpserver import HTTPServer

from ollagraph.agents.config import Settings
from ollagraph.agents.errors import DocumentStoreError, IngestError, ModelError, ToolError
from ollagraph.tools import ingest as ingest_module
from ollagraph.tools.context import using_settings
from ollagraph.tools.documents import (
    check_documents,
    release_store,
    search_documents,
    user_store_path,
)
from ollagraph.tools.embeddings import get_embed_model
from ollagraph.tools.ingest import IngestEvent, ensure_sample_store, ingest, sample_store_path
from ollagraph.tools.store import DocumentStore
from ollagraph.tools.store_open import open_store
from ollagraph.tools.untrusted import ITEM_OVERHEAD, item_limit
from tests.pdf import minimal_pdf

pytestmark = pytest.mark.integration

REFUNDS = """# Refunds and returns

Customers may send back a damaged rubber duck within 30 days of delivery and receive a full
refund to the original card. Email support with the order number and a photo of the damage.
"""

CARE = """<html><head><title>Duck care</title><style>body{font:serif}</style>
<script>trackVisitor()</script></head><body>
<h1>Looking after your duck</h1>
<p>Rinse your rubber duck in warm water after each bath and let it dry upside down so that
no water stays inside and mould cannot grow.</p></body></html>
"""

SHIPPING = """Parcels leave our Bristol warehouse within two working days. Delivery inside the
United Kingdom takes three to five days; international orders take up to three weeks.
"""

WARRANTY_LINES = [
    "Warranty",
    "Every squeaker is guaranteed for two years.",
    "A squeaker that stops squeaking is replaced free of charge.",
]


@pytest.fixture(autouse=True)
def close_cached_stores() -> Iterator[None]:
    yield
    release_store()


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    (folder / "guides").mkdir(parents=True)
    (folder / "refunds.md").write_text(REFUNDS, encoding="utf-8")
    (folder / "guides" / "care.html").write_text(CARE, encoding="utf-8")
    (folder / "shipping.txt").write_text(SHIPPING, encoding="utf-8")
    (folder / "warranty.pdf").write_bytes(minimal_pdf(WARRANTY_LINES))
    (folder / ".hidden.md").write_text("# Hidden\nnever ingested", encoding="utf-8")
    return folder


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "stores" / "docs.duckdb"


@pytest.fixture
def settings(store_path: Path) -> Settings:
    return Settings(docs=str(store_path), chunk_size=128, chunk_overlap=16)


def search(settings: Settings, query: str, k: int = 4) -> str:
    with using_settings(settings):
        return search_documents(query, k)


def top_source(result: str) -> str:
    return result.splitlines()[0].split()[1]


def rows(path: Path) -> list[tuple[str, str, str]]:
    """(node_id, file_path, text) of every chunk, read with a plain duckdb connection."""
    release_store(path)
    with duckdb.connect(str(path), read_only=True) as conn:
        return conn.execute(
            "SELECT node_id, json_extract_string(metadata_, '$.file_path'), text "
            "FROM documents ORDER BY 2, 1"
        ).fetchall()


# -- ingest and search -----------------------------------------------------------------------


def test_ingest_then_search_finds_the_right_chunk(
    docs: Path, store_path: Path, settings: Settings
) -> None:
    events: list[IngestEvent] = []
    report = ingest([docs], store_path, settings, progress=events.append)

    assert sorted(p.name for p in report.added) == [
        "care.html",
        "refunds.md",
        "shipping.txt",
        "warranty.pdf",
    ]
    assert report.updated == [] and report.unchanged == [] and report.skipped == []
    assert report.chunks_written == report.total_chunks == len(rows(store_path)) >= 4
    assert events[0].kind == "start" and events[-1].kind == "done"
    assert [e.status for e in events if e.kind == "file"] == ["added"] * 4
    assert any(e.kind == "embed" and e.done == e.total for e in events)

    questions = {
        "Can I get my money back if the duck arrives broken?": "refunds.md",
        "how should I clean the toy after bathtime": "care.html",
        "How long does delivery abroad take?": "shipping.txt",
        "what happens if the squeaking part breaks?": "warranty.pdf",
    }
    for question, source in questions.items():
        result = search(settings, question, k=2)
        assert top_source(result) == source, result
    care = search(settings, "how should I clean the toy after bathtime", k=1)
    assert care.startswith("[1] care.html (score 0.")
    assert '<<<untrusted source="care.html">>>\ntitle: Duck care\n' in care
    assert "Rinse your rubber duck in warm water" in care
    assert "trackVisitor" not in care and "font:serif" not in care


def test_results_are_numbered_capped_and_k_limits_them(
    tmp_path: Path, store_path: Path, settings: Settings
) -> None:
    long_file = tmp_path / "long.md"
    long_file.write_text(
        "# Pond\n\n" + " ".join(f"The pond duck number {i} floats calmly." for i in range(400)),
        encoding="utf-8",
    )
    ingest([long_file], store_path, settings.with_overrides(chunk_size=512, chunk_overlap=0))
    result = search(settings, "ducks floating on a pond", k=3)
    headers = [line for line in result.splitlines() if line.startswith("[")]
    assert [h.split()[0] for h in headers] == ["[1]", "[2]", "[3]"]
    limit = item_limit(settings, 3)  # max_snippet_chars, shared so 3 passages fit the output cap
    for block in result.split("\n\n[")[1:]:
        assert len(block) < limit + ITEM_OVERHEAD
    assert "[…]" in result and len(result) <= settings.max_tool_output


def test_reingesting_unchanged_files_writes_nothing(
    docs: Path, store_path: Path, settings: Settings
) -> None:
    first = ingest([docs], store_path, settings)
    before = rows(store_path)

    second = ingest([docs], store_path, settings)

    assert second.chunks_written == 0
    assert len(second.unchanged) == 4 and second.added == second.updated == []
    assert rows(store_path) == before
    assert second.total_chunks == first.total_chunks


def test_node_ids_are_deterministic(docs: Path, tmp_path: Path, settings: Settings) -> None:
    one, two = tmp_path / "one.duckdb", tmp_path / "two.duckdb"
    ingest([docs], one, settings)
    ingest([docs], two, settings)
    assert [r[0] for r in rows(one)] == [r[0] for r in rows(two)]


def test_a_changed_file_replaces_its_old_chunks(
    docs: Path, store_path: Path, settings: Settings
) -> None:
    ingest([docs], store_path, settings)
    others = [r for r in rows(store_path) if not r[1].endswith("refunds.md")]
    refunds = docs / "refunds.md"
    refunds.write_text(
        "# Refunds and returns\n\nReturns are no longer accepted after 14 days; store credit "
        "is offered instead of money back.\n",
        encoding="utf-8",
    )

    report = ingest([docs], store_path, settings)

    assert report.updated == [refunds.resolve()]
    assert len(report.unchanged) == 3
    after = rows(store_path)
    mine = [r for r in after if r[1] == str(refunds.resolve())]
    assert len(mine) == report.chunks_written >= 1
    assert all("30 days" not in r[2] for r in mine)
    assert [r for r in after if r not in mine] == others
    assert len({r[0] for r in after}) == len(after)
    store = open_store(store_path, create=False, read_only=True)
    try:
        record = store.file_record(str(refunds.resolve()))
        assert record is not None and record.chunks == len(mine)
    finally:
        store.close()
    assert "store credit" in search(settings, "can I still return it after three weeks?", k=1)


def test_a_failed_write_rolls_back_to_the_old_version(
    docs: Path, store_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest([docs], store_path, settings)
    before = rows(store_path)
    (docs / "refunds.md").write_text("# Refunds\n\nNo refunds at all.\n", encoding="utf-8")

    def crash(self: DocumentStore, nodes: object, **kwargs: object) -> list[str]:
        raise RuntimeError("disk full")

    monkeypatch.setattr(DocumentStore, "add", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        ingest([docs], store_path, settings)
    monkeypatch.undo()

    assert rows(store_path) == before
    again = ingest([docs], store_path, settings)
    assert [p.name for p in again.updated] == ["refunds.md"]


def test_binary_and_non_utf8_files_have_clear_outcomes(
    tmp_path: Path, store_path: Path, settings: Settings
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "photo.txt").write_bytes(bytes(range(256)) * 16)
    (folder / "menu.txt").write_bytes(
        "Café crème and croissants are served at the café from eight.".encode("latin-1")
    )
    (folder / "empty.md").write_text("", encoding="utf-8")
    (folder / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n")

    report = ingest([folder], store_path, settings)

    assert [p.name for p in report.added] == ["menu.txt"]
    reasons = {s.path.name: s.reason for s in report.skipped}
    assert "photo.txt looks like binary data" in reasons["photo.txt"]
    assert reasons["empty.md"] == "empty file"
    assert "unsupported file type .png" in reasons["logo.png"]
    assert len(report.warnings) == 1 and "menu.txt: not valid UTF-8" in report.warnings[0]
    assert top_source(search(settings, "breakfast pastries and coffee", k=1)) == "menu.txt"


def test_a_file_that_became_empty_loses_its_chunks(
    docs: Path, store_path: Path, settings: Settings
) -> None:
    ingest([docs], store_path, settings)
    (docs / "shipping.txt").write_text("", encoding="utf-8")
    report = ingest([docs], store_path, settings)
    assert "old chunks were removed" in report.skipped[0].reason
    assert not [r for r in rows(store_path) if r[1].endswith("shipping.txt")]


def test_ingesting_a_missing_path_names_it(tmp_path: Path, store_path: Path) -> None:
    with pytest.raises(IngestError, match="nothing-here does not exist"):
        ingest([tmp_path / "nothing-here"], store_path, Settings())
    assert not store_path.exists()


# -- the store: offline, client=, bad files ----------------------------------------------------


def offline_connection() -> duckdb.DuckDBPyConnection:
    """A plain connection on which any INSTALL (download) would fail."""
    conn = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False})
    conn.execute("SET custom_extension_repository = 'http://127.0.0.1:9'")
    conn.execute("SET autoload_known_extensions = false")
    return conn


def test_store_never_installs_and_honours_client(tmp_path: Path) -> None:
    conn = offline_connection()
    elsewhere = tmp_path / "never-created.duckdb"

    store = DocumentStore(
        client=conn, embed_dim=384, database_name=elsewhere.name, persist_dir=str(tmp_path)
    )

    assert store.connection is conn
    assert not elsewhere.exists()
    loaded = dict(
        conn.execute(
            "SELECT extension_name, loaded FROM duckdb_extensions() "
            "WHERE extension_name IN ('json', 'fts')"
        ).fetchall()
    )
    assert loaded == {"json": True, "fts": True}
    column = conn.execute(
        "SELECT data_type FROM duckdb_columns() WHERE table_name = 'documents' "
        "AND column_name = 'embedding'"
    ).fetchone()
    assert column == ("FLOAT[384]",)

    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode

    model = get_embed_model(Settings())
    nodes = [
        TextNode(id_="a", text="Ducks float on water."),
        TextNode(id_="b", text="Invoices are due in 30 days."),
    ]
    for node in nodes:
        node.embedding = model.get_text_embedding(node.text)
    store.add(nodes)
    assert conn.execute("SELECT count(*) FROM documents").fetchone() == (2,)
    index = VectorStoreIndex.from_vector_store(store, embed_model=model)
    found = index.as_retriever(similarity_top_k=1).retrieve("when must I pay the bill?")
    assert found[0].node.node_id == "b"
    store.close()
    assert conn.execute("SELECT 1").fetchone() == (1,)  # the caller's connection stays open


def test_the_upstream_defects_we_fix_are_real() -> None:
    from llama_index.vector_stores.duckdb import DuckDBVectorStore

    # (a) Its table set-up runs INSTALL, a download: refused here by the unreachable repository.
    with pytest.raises(duckdb.Error, match=r"127\.0\.0\.1:9"):
        DuckDBVectorStore._initialize_table(offline_connection(), "documents", 3)

    # (b) With INSTALL out of the way, `client=` is still dropped for a new connection.
    class WithoutInstall(DuckDBVectorStore):
        @classmethod
        def _initialize_table(cls, conn: object, table_name: str, embed_dim: object) -> None:
            pass

    conn = offline_connection()
    assert WithoutInstall(client=conn, embed_dim=3)._shared_conn is not conn


def test_missing_store_is_a_document_store_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.duckdb"
    with pytest.raises(DocumentStoreError) as info:
        search(Settings(docs=str(missing)), "anything")
    assert "does not exist" in info.value.message
    assert info.value.hint == f"Build it with: agent ingest PATH --docs {missing}"
    with pytest.raises(DocumentStoreError, match="does not exist"):
        open_store(missing, create=False)
    assert not missing.exists()


def test_corrupt_store_file_is_a_document_store_error(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.duckdb"
    corrupt.write_bytes(b"this is not a duckdb file at all " * 200)
    with pytest.raises(DocumentStoreError, match="not a documents store: it is corrupt"):
        search(Settings(docs=str(corrupt)), "anything")


def test_other_duckdb_database_is_not_a_store(tmp_path: Path) -> None:
    other = tmp_path / "shop.duckdb"
    with duckdb.connect(str(other)) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER)")
    with pytest.raises(DocumentStoreError, match="a DuckDB database but not a documents store"):
        search(Settings(docs=str(other)), "anything")
    with pytest.raises(DocumentStoreError, match="not a documents store"):
        ingest([], other, Settings())


def test_store_built_with_another_embedding_model_is_refused(
    docs: Path, store_path: Path, settings: Settings
) -> None:
    ingest([docs / "refunds.md"], store_path, settings)
    other = settings.with_overrides(embed_model="ollama:nomic-embed-text")
    with pytest.raises(DocumentStoreError) as info:
        search(other, "refunds")  # refused before Ollama (a closed port here) is contacted
    assert "built with the embedding model `minilm`" in info.value.message
    assert "--embed-model minilm" in str(info.value.hint)
    with pytest.raises(DocumentStoreError, match="built with the embedding model"):
        ingest([docs], store_path, other)


# -- the tool --------------------------------------------------------------------------------


def test_bad_arguments_are_tool_errors_the_model_can_fix() -> None:
    with pytest.raises(ToolError, match="non-empty `query`"):
        search(Settings(), "   ")
    with pytest.raises(ToolError, match="from 1 to 20, got 50"):
        search(Settings(), "ducks", k=50)
    with pytest.raises(ToolError, match="whole number"):
        search(Settings(), "ducks", k="many")  # type: ignore[arg-type]


def test_an_empty_store_has_no_matching_documents(tmp_path: Path, store_path: Path) -> None:
    ingest([], store_path, Settings())
    assert search(Settings(docs=str(store_path)), "ducks") == "No matching documents."


def test_check_documents_opens_the_store_once(
    docs: Path, store_path: Path, settings: Settings
) -> None:
    with pytest.raises(DocumentStoreError, match="does not exist"):
        check_documents(settings)
    ingest([docs], store_path, settings)
    checked = check_documents(settings.with_overrides(docs=str(store_path)))
    assert checked.docs == str(store_path.resolve())


def test_the_default_user_store_is_searched_when_no_docs_are_given(docs: Path) -> None:
    ingest([docs / "shipping.txt"], user_store_path(), Settings())
    settings = check_documents(Settings())
    assert settings.docs == str(user_store_path().resolve())
    assert top_source(search(Settings(), "delivery times", k=1)) == "shipping.txt"


def test_sample_store_is_built_once_under_the_state_dir(
    docs: Path, monkeypatch: pytest.MonkeyPatch, isolated_state: Path
) -> None:
    monkeypatch.setattr(ingest_module, "_sample_docs_dir", lambda: docs)
    monkeypatch.setattr(ingest_module, "_sample_ready", set())
    settings = Settings(chunk_size=128, chunk_overlap=16)

    path = ensure_sample_store(settings)

    assert path == sample_store_path(settings)
    assert path == isolated_state / "sample" / "docs-minilm.duckdb"
    assert not list(path.parent.glob(".*building*"))
    assert top_source(search(settings, "money back for a broken duck", k=1)) == "refunds.md"
    built = path.stat().st_mtime_ns
    ingest_module._sample_ready.clear()
    assert ensure_sample_store(settings) == path
    assert path.stat().st_mtime_ns == built  # still current: not rebuilt
    (docs / "shipping.txt").write_text("Parcels now travel by carrier pigeon.", encoding="utf-8")
    ingest_module._sample_ready.clear()
    ensure_sample_store(settings)
    assert top_source(search(settings, "birds deliver the parcels", k=1)) == "shipping.txt"


def test_searches_from_many_threads_do_not_pile_up_cursors(
    docs: Path, store_path: Path, settings: Settings
) -> None:
    import gc
    import threading

    from ollagraph.tools import documents

    ingest([docs], store_path, settings)
    results: list[str] = []
    for _ in range(12):  # the tool runner calls each tool in a new thread
        thread = threading.Thread(target=lambda: results.append(search(settings, "refund", 1)))
        thread.start()
        thread.join()
    gc.collect()
    assert len(results) == 12 and all(r.startswith("[1] refunds.md") for r in results)
    ((store, _),) = documents._open.values()
    assert len(store._cursors) <= 1


def test_search_documents_module_imports_nothing_heavy() -> None:
    code = (
        "import sys, ollagraph.tools.documents, ollagraph.tools.ingest; "
        "print([m for m in ('llama_index', 'torch', 'duckdb', 'sentence_transformers') "
        "if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


# -- Ollama embeddings -----------------------------------------------------------------------


def test_ollama_embedding_on_a_closed_port_is_a_model_error() -> None:
    model = get_embed_model(Settings(embed_model="ollama:nomic-embed-text"))
    with pytest.raises(ModelError) as info:
        model.get_query_embedding("ducks")
    assert info.value.message.startswith("Could not reach Ollama at http://127.0.0.1:9")
    assert "minilm" in str(info.value.hint)


def test_ollama_embedding_request_and_unknown_model(httpserver: HTTPServer) -> None:
    host = httpserver.url_for("/").rstrip("/")
    httpserver.expect_ordered_request(
        "/api/embed", method="POST", json={"model": "tiny-embed:latest", "input": ["a", "b"]}
    ).respond_with_json({"model": "tiny-embed:latest", "embeddings": [[3.0, 4.0], [0.0, 2.0]]})
    httpserver.expect_ordered_request("/api/embed", method="POST").respond_with_data(
        json.dumps({"error": 'model "missing:latest" not found, try pulling it first'}),
        status=404,
        content_type="application/json",
    )

    model = get_embed_model(Settings(embed_model="ollama:tiny-embed", ollama_host=host))
    assert model.get_text_embedding_batch(["a", "b"]) == [[0.6, 0.8], [0.0, 1.0]]

    missing = get_embed_model(Settings(embed_model="ollama:missing", ollama_host=host))
    with pytest.raises(ModelError) as info:
        missing.get_query_embedding("ducks")
    assert "`missing:latest` is not available" in info.value.message
    assert info.value.hint == "Download it with: ollama pull missing:latest"
    httpserver.check_assertions()
