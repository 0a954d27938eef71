"""The `search_documents` tool: semantic search over a documents store.

The store is the one in the run's settings (`--docs`); without one, the default store that
`agent ingest` fills when given no `--docs` (if it exists), else the bundled sample documents (built
on first use). Retrieval goes through llama-index (`VectorStoreIndex.from_vector_store(...)` and a
retriever) over `ollagraph.tools.store.DocumentStore`. The opened store and index are cached per
(store file, embedding model) for the life of the process; `release_store` closes one, which
`agent ingest` does before writing to the same file.

Importing this module imports neither llama-index, duckdb nor torch: they load on the first search.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ollagraph.agents.errors import DocumentStoreError, ToolError
from ollagraph.tools.context import current_settings
from ollagraph.tools.untrusted import clean, item_limit, quote, shorten

if TYPE_CHECKING:
    from ollagraph.agents.config import Settings
    from ollagraph.tools.store import DocumentStore

MAX_K = 20

# (resolved store path, embedding model spec, Ollama host or "") -> (store, index)
_open: dict[tuple[str, str, str], tuple[DocumentStore, Any]] = {}
_lock = threading.Lock()


def search_documents(query: str, k: int = 4) -> str:
    """Search the user's documents for passages that answer a question.

    Use this for questions about the content of the user's documents (guides, notes, manuals,
    reports). It finds passages by meaning, not exact words. Each result shows its source file,
    a similarity score (higher is closer) and the passage text. Base the answer on the passages
    and name the source files; if nothing relevant comes back, search again with other words.

    Args:
        query: What to look for: a question or a few keywords, e.g. "how do I reset my password".
        k: How many passages to return, from 1 to 20. Default 4.
    """
    settings = current_settings()
    text = query.strip() if isinstance(query, str) else ""
    if not text:
        raise ToolError(
            "search_documents needs a non-empty `query`: a question or a few keywords, "
            'e.g. search_documents(query="how do I reset my password").'
        )
    try:
        count = int(k)
    except (TypeError, ValueError):
        raise ToolError(
            f"search_documents: `k` must be a whole number from 1 to {MAX_K}, got {k!r}. "
            "Retry with k=4."
        ) from None
    if not 1 <= count <= MAX_K:
        raise ToolError(
            f"search_documents: `k` must be from 1 to {MAX_K}, got {count}. Retry with k=4."
        )
    path = store_path_for(settings)
    results = _retrieve(path, settings, text, count)
    if not results:
        return "No matching documents."
    return format_results(results, settings)


def user_store_path() -> Path:
    """Return the default documents store: where `agent ingest` writes without `--docs`."""
    from ollagraph.agents.paths import state_path

    return state_path("docs", "documents.duckdb")


def store_path_for(settings: Settings) -> Path:
    """Return the documents store a run searches.

    That is `settings.docs`; when it is empty, the default store that `agent ingest` writes
    without `--docs` if it exists, else the bundled sample documents (built on first use).

    Args:
        settings: The run's settings.

    Raises:
        DocumentStoreError: `settings.docs` names no file (or the sample cannot be built).
    """
    if settings.docs:
        path = Path(settings.docs).expanduser()
        if not path.exists():
            raise DocumentStoreError(
                f"Documents store {path} does not exist.",
                hint=f"Build it with: agent ingest PATH --docs {path}",
            )
        return path
    default = user_store_path()
    if default.exists():
        return default
    from ollagraph.tools.ingest import ensure_sample_store

    return ensure_sample_store(settings)


def check_documents(settings: Settings) -> Settings:
    """Open the run's documents store once, so a bad `--docs` fails before the model is called.

    The bundled sample store is not built here (that waits for the first search).

    Args:
        settings: The run's settings.

    Returns:
        The settings, with `docs` set to the absolute path of the store to search (left empty
        when that is the sample store).

    Raises:
        DocumentStoreError: The store is missing, corrupt, locked or built with another
            embedding model.
        ConfigError: `embed_model` is not a known model spec.
    """
    if not settings.docs and not user_store_path().exists():
        from ollagraph.tools.embeddings import normalize_model_spec

        normalize_model_spec(settings.embed_model)
        return settings
    path = store_path_for(settings).resolve()
    _index_for(path, settings)
    return settings.with_overrides(docs=str(path))


def _cache_key(path: Path, settings: Settings) -> tuple[str, str, str]:
    from ollagraph.tools.embeddings import MINILM, normalize_model_spec

    spec = normalize_model_spec(settings.embed_model)
    return str(path.resolve()), spec, "" if spec == MINILM else settings.host


def _index_for(path: Path, settings: Settings) -> Any:
    """Return the cached `VectorStoreIndex` over the store at `path`, opening it on first use."""
    key = _cache_key(path, settings)
    with _lock:
        cached = _open.get(key)
        if cached is not None:
            return cached[1]
        from llama_index.core import VectorStoreIndex

        from ollagraph.tools.embeddings import get_embed_model
        from ollagraph.tools.store_open import open_store

        store = open_store(
            path,
            create=False,
            embed_model_name=key[1],
            read_only=True,
            vector_cache_mb=settings.vector_cache_mb,
        )
        try:
            index = VectorStoreIndex.from_vector_store(store, embed_model=get_embed_model(settings))
        except BaseException:
            store.close()
            raise
        _open[key] = (store, index)
        return index


def _retrieve(path: Path, settings: Settings, query: str, k: int) -> list[Any]:
    import duckdb

    index = _index_for(path, settings)
    try:
        return list(index.as_retriever(similarity_top_k=k).retrieve(query))
    except duckdb.Error as exc:
        release_store(path)
        raise DocumentStoreError(f"Searching documents store {path} failed: {exc}") from None


def format_results(results: list[Any], settings: Settings | None = None) -> str:
    """Render retrieved chunks as numbered passages: source and score, then the fenced text.

    Each passage reaches the model only as an untrusted block (`tools.untrusted.quote`), with its
    title inside the fence: document text is data, not instructions.

    Args:
        results: llama-index `NodeWithScore`s, best first.
        settings: The run's settings (passage and output caps); the current ones when None.
    """
    settings = settings or current_settings()
    limit = item_limit(settings, len(results))
    blocks = []
    for number, result in enumerate(results, start=1):
        metadata = result.node.metadata or {}
        source = metadata.get("file_name") or Path(str(metadata.get("file_path", "?"))).name
        title = metadata.get("title")
        heading = f"[{number}] {shorten(clean(str(source)), 200)}"
        if result.score is not None:
            heading += f" (score {result.score:.2f})"
        body = quote(
            result.node.get_content(),
            str(source),
            limit,
            title=title if title and title != source else None,
            keep_lines=True,
        )
        blocks.append(f"{heading}\n{body}")
    return "\n\n".join(blocks)


def release_store(path: str | Path | None = None) -> None:
    """Close cached stores: those of the file at `path`, or all of them.

    Args:
        path: The store file; None closes every cached store.
    """
    target = None if path is None else str(Path(path).expanduser().resolve())
    with _lock:
        for key in [key for key in _open if target is None or key[0] == target]:
            store, _ = _open.pop(key)
            store.close()


__all__ = [
    "MAX_K",
    "check_documents",
    "format_results",
    "release_store",
    "search_documents",
    "store_path_for",
    "user_store_path",
]
