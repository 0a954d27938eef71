"""Ingest documents into a documents store: read, chunk, embed, write.

`ingest` reads each file (`ollagraph.tools.loaders`), splits it with llama-index's
`SentenceSplitter`, embeds the chunks in batches and writes them to the store
(`ollagraph.tools.store`). A file whose bytes have not changed since the last run (same SHA-256)
is left alone; a changed file's old chunks are deleted and the new ones inserted in one DuckDB
transaction. Node ids are deterministic (file path, chunk index, chunk content), so the same
input always gives the same store.

Each file is committed on its own, chunks and `files` row together, so a run that is killed or
runs out of disk space leaves a store of whole files, and running it again ingests only the
files still missing.

Progress goes to an optional callback as `IngestEvent`s, which the CLI draws as a progress bar;
nothing here prints. `ensure_sample_store` builds the store of the bundled sample documents on
first use.

Importing this module is cheap: llama-index, duckdb and the embedding model load when used.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ollagraph.agents.errors import DocumentStoreError, IngestError
from ollagraph.tools.loaders import FileSkipped, LoadedText, iter_files, parse_bytes, read_bytes

if TYPE_CHECKING:
    from llama_index.core.schema import BaseNode

    from ollagraph.agents.config import Settings
    from ollagraph.tools.store import DocumentStore

# Longest title kept in chunk metadata (it is embedded with every chunk of the file).
MAX_TITLE_CHARS = 120
FileStatus = Literal["added", "updated", "unchanged", "skipped"]


@dataclass(frozen=True)
class IngestEvent:
    """One step of an ingest run, for a progress display.

    Kinds, in order:

    - `start`: the files are listed; `total` is how many.
    - `file_start`: `path` is being read; `done` files are finished so far.
    - `embed`: `done` of `total` chunks of `path` are embedded (after each batch).
    - `file`: `path` is finished with `status` and `chunks` written (`reason` when skipped);
      `done` of `total` files are finished.
    - `done`: every file is finished.

    Attributes:
        kind: What happened.
        path: The file concerned (None for `start` and `done`).
        done: Files finished (chunks embedded, for `embed`).
        total: Files found (chunks of the file, for `embed`).
        status: For `file`: added, updated, unchanged or skipped.
        chunks: For `file`: chunks written.
        reason: For skipped files: why.
    """

    kind: Literal["start", "file_start", "embed", "file", "done"]
    path: Path | None = None
    done: int = 0
    total: int = 0
    status: FileStatus | None = None
    chunks: int = 0
    reason: str = ""


ProgressCallback = Callable[[IngestEvent], None]


@dataclass(frozen=True)
class SkippedFile:
    """A file that was not ingested, and why.

    Attributes:
        path: The file.
        reason: Why ("empty file", "looks like binary data", ...).
    """

    path: Path
    reason: str


@dataclass
class IngestReport:
    """What an ingest run did.

    Attributes:
        store: The documents store written.
        added: Files ingested for the first time.
        updated: Files whose content changed; their old chunks were replaced.
        unchanged: Files already ingested with the same content (nothing written).
        skipped: Files left out, with reasons.
        warnings: Notes on ingested files ("a.txt: not valid UTF-8 ...").
        chunks_written: Chunks embedded and written.
        seconds: Wall time of the run.
        total_chunks: Chunks in the store after the run.
    """

    store: Path
    added: list[Path] = field(default_factory=list)
    updated: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    chunks_written: int = 0
    seconds: float = 0.0
    total_chunks: int = 0

    @property
    def files_seen(self) -> int:
        """How many files the run looked at."""
        return len(self.added) + len(self.updated) + len(self.unchanged) + len(self.skipped)

    def summary(self) -> str:
        """One line for a person: counts, chunks and time."""
        return (
            f"{len(self.added)} added, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.skipped)} skipped; "
            f"{self.chunks_written} chunks written in {self.seconds:.1f} s "
            f"({self.total_chunks} in {self.store})"
        )


def ingest(
    paths: Iterable[str | os.PathLike[str]],
    store_path: str | os.PathLike[str],
    settings: Settings,
    progress: ProgressCallback | None = None,
) -> IngestReport:
    """Ingest files and folders into the documents store at `store_path`, creating it if needed.

    Args:
        paths: Files and folders (walked recursively, hidden entries skipped).
        store_path: The store's .duckdb file.
        settings: `embed_model`, `chunk_size` and `chunk_overlap` are used.
        progress: Called with an `IngestEvent` at each step.

    Returns:
        What was added, updated, left unchanged and skipped.

    Raises:
        IngestError: A path does not exist.
        DocumentStoreError: The store is corrupt, locked, or built with another embedding model.
        ModelError: The embedding model cannot be loaded or reached.
    """
    started = time.perf_counter()
    files = list(iter_files(paths))
    store = _open_for_writing(Path(store_path).expanduser(), settings)
    try:
        report = _ingest_files(files, store, settings, progress)
    finally:
        store.close()
    report.seconds = time.perf_counter() - started
    return report


def _open_for_writing(path: Path, settings: Settings) -> DocumentStore:
    """Open the store read-write (creating it with the model's dimension when missing)."""
    from ollagraph.tools.documents import release_store
    from ollagraph.tools.embeddings import (
        embedding_dimension,
        get_embed_model,
        normalize_model_spec,
    )
    from ollagraph.tools.store_open import open_store

    spec = normalize_model_spec(settings.embed_model)
    release_store(path)  # a cached read-only handle in this process would block writing
    index = settings.vector_index
    if path.exists():
        return open_store(path, create=False, embed_model_name=spec, vector_index=index)
    dimension = embedding_dimension(get_embed_model(settings))
    return open_store(
        path, create=True, embed_dim=dimension, embed_model_name=spec, vector_index=index
    )


def _ingest_files(
    files: Sequence[Path],
    store: DocumentStore,
    settings: Settings,
    progress: ProgressCallback | None,
) -> IngestReport:
    emit = progress or (lambda event: None)
    report = IngestReport(store=store.path or Path(":memory:"))
    emit(IngestEvent("start", total=len(files)))
    for index, path in enumerate(files):
        emit(IngestEvent("file_start", path=path, done=index, total=len(files)))
        status, chunks, reason = _ingest_one(path, store, settings, report, emit)
        if status == "skipped":
            report.skipped.append(SkippedFile(path, reason))
        else:
            getattr(report, status).append(path)
        report.chunks_written += chunks
        emit(
            IngestEvent(
                "file",
                path=path,
                done=index + 1,
                total=len(files),
                status=status,
                chunks=chunks,
                reason=reason,
            )
        )
    report.total_chunks = store.count()
    emit(IngestEvent("done", done=len(files), total=len(files)))
    return report


def _ingest_one(
    path: Path,
    store: DocumentStore,
    settings: Settings,
    report: IngestReport,
    emit: ProgressCallback,
) -> tuple[FileStatus, int, str]:
    """Ingest one file; return its status, the chunks written and a reason when skipped."""
    key = str(path)
    try:
        data = read_bytes(path)
    except FileSkipped as skip:
        return "skipped", 0, skip.reason
    except IngestError as exc:
        return "skipped", 0, exc.message
    digest = hashlib.sha256(data).hexdigest()
    record = store.file_record(key)
    if record is not None and record.sha256 == digest:
        return "unchanged", 0, ""
    try:
        loaded = parse_bytes(path, data)
    except (FileSkipped, IngestError) as exc:
        reason = exc.reason if isinstance(exc, FileSkipped) else exc.message
        if record is not None:
            store.replace_file(key, digest, [])
            reason += " (its old chunks were removed from the store)"
        return "skipped", 0, reason
    report.warnings.extend(f"{path}: {warning}" for warning in loaded.warnings)
    nodes = split_into_nodes(loaded, settings)
    if not nodes:
        return "skipped", 0, "no text to index"
    _embed_nodes(nodes, settings, path, emit)
    store.replace_file(key, digest, nodes)
    return ("updated" if record is not None else "added"), len(nodes), ""


def node_id(path: str, index: int, text: str) -> str:
    """Return the deterministic id of chunk `index` of the file at `path`.

    Args:
        path: The file's absolute path.
        index: The chunk's position in the file.
        text: The chunk's text.
    """
    content = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return hashlib.sha256(f"{path}\x00{index}\x00{content}".encode()).hexdigest()[:32]


def split_into_nodes(loaded: LoadedText, settings: Settings) -> list[BaseNode]:
    """Split a file's text into chunks with deterministic ids and file metadata.

    Each chunk's metadata holds `file_path`, `file_name` and `title`; only the title is
    embedded with the text.

    Args:
        loaded: The file's text.
        settings: `chunk_size` and `chunk_overlap` (in tokens).

    Raises:
        IngestError: The chunk size is too small for the file's metadata.
    """
    from llama_index.core import Document
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.schema import NodeRelationship

    key = str(loaded.path)
    hidden = ["file_path", "file_name"]
    document = Document(
        id_=hashlib.sha256(key.encode("utf-8")).hexdigest()[:32],
        text=loaded.text,
        metadata={
            "file_path": key,
            "file_name": loaded.path.name,
            "title": loaded.title[:MAX_TITLE_CHARS],
        },
        excluded_embed_metadata_keys=hidden,
        excluded_llm_metadata_keys=hidden,
    )
    splitter = SentenceSplitter(
        chunk_size=settings.chunk_size, chunk_overlap=settings.chunk_overlap
    )
    try:
        nodes: list[BaseNode] = list(splitter.get_nodes_from_documents([document]))
    except ValueError as exc:
        raise IngestError(
            f"Cannot split {loaded.path} into chunks of {settings.chunk_size} tokens: {exc}",
            hint="Use a larger --chunk-size.",
        ) from None
    new_ids = {node.node_id: node_id(key, i, node.get_content()) for i, node in enumerate(nodes)}
    for node in nodes:
        node.id_ = new_ids[node.node_id]
        for relation in (NodeRelationship.PREVIOUS, NodeRelationship.NEXT):
            info = node.relationships.get(relation)
            if info is not None and not isinstance(info, list) and info.node_id in new_ids:
                info.node_id = new_ids[info.node_id]
    return nodes


def _embed_nodes(
    nodes: Sequence[BaseNode], settings: Settings, path: Path, emit: ProgressCallback
) -> None:
    """Set each node's embedding, one batch at a time, reporting progress after each batch."""
    from llama_index.core.schema import MetadataMode

    from ollagraph.tools.embeddings import get_embed_model

    model = get_embed_model(settings)
    texts = [node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes]
    size = model.embed_batch_size
    for start in range(0, len(texts), size):
        vectors = model.get_text_embedding_batch(texts[start : start + size])
        for node, vector in zip(nodes[start : start + size], vectors, strict=True):
            node.embedding = vector
        emit(IngestEvent("embed", path=path, done=start + len(vectors), total=len(texts)))


# -- the bundled sample documents ------------------------------------------------------------

# Sample stores checked in this process, by (path, chunk_size, chunk_overlap).
_sample_ready: set[tuple[Path, int, int]] = set()


def sample_store_path(settings: Settings) -> Path:
    """Return where the sample documents store for `settings.embed_model` lives.

    Args:
        settings: `embed_model` picks the file (`docs-minilm.duckdb`).
    """
    from ollagraph.agents.paths import state_path
    from ollagraph.tools.embeddings import model_slug

    return state_path("sample", f"docs-{model_slug(settings.embed_model)}.duckdb")


def _sample_fingerprint(folder: Path, settings: Settings) -> str:
    """Hash the bundled documents and the chunking settings; a change means a rebuild."""
    from ollagraph.tools.store import SCHEMA_VERSION

    digest = hashlib.sha256(
        f"{SCHEMA_VERSION}:{settings.chunk_size}:{settings.chunk_overlap}".encode()
    )
    for file in iter_files([folder]):
        digest.update(file.relative_to(folder.resolve()).as_posix().encode("utf-8") + b"\x00")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def _stored_fingerprint(path: Path, spec: str) -> str | None:
    from ollagraph.tools.store_open import open_store

    try:
        store = open_store(path, create=False, embed_model_name=spec, read_only=True)
    except DocumentStoreError:
        return None
    try:
        return store.meta().get("sample_fingerprint")
    finally:
        store.close()


def ensure_sample_store(settings: Settings, progress: ProgressCallback | None = None) -> Path:
    """Return the sample documents store, building it first if it is missing or stale.

    The store is built into a temporary file beside it and moved into place, so a process
    searching it (or building it at the same time) never sees half a store.

    Args:
        settings: `embed_model`, `chunk_size` and `chunk_overlap` are used.
        progress: Called with an `IngestEvent` at each step of a build.

    Raises:
        DocumentStoreError: The bundled documents are missing.
        ModelError: The embedding model cannot be loaded or reached.
    """
    path = sample_store_path(settings)
    ready_key = (path, settings.chunk_size, settings.chunk_overlap)
    if ready_key in _sample_ready:
        return path
    from ollagraph.tools.embeddings import normalize_model_spec
    from ollagraph.tools.store_open import open_store

    folder = _sample_docs_dir()
    spec = normalize_model_spec(settings.embed_model)
    fingerprint = _sample_fingerprint(folder, settings)
    if not path.exists() or _stored_fingerprint(path, spec) != fingerprint:
        from ollagraph.tools.documents import release_store
        from ollagraph.tools.embeddings import embedding_dimension, get_embed_model

        dimension = embedding_dimension(get_embed_model(settings))
        building = path.with_name(f".{path.name}.{os.getpid()}.building")
        building.unlink(missing_ok=True)
        try:
            store = open_store(building, create=True, embed_dim=dimension, embed_model_name=spec)
            try:
                _ingest_files(list(iter_files([folder])), store, settings, progress)
                store.set_meta("sample_fingerprint", fingerprint)
                store.client.execute("CHECKPOINT")
            finally:
                store.close()
            release_store(path)
            os.replace(building, path)
        finally:
            building.unlink(missing_ok=True)
            Path(f"{building}.wal").unlink(missing_ok=True)
    _sample_ready.add(ready_key)
    return path


def _sample_docs_dir() -> Path:
    try:
        from ollagraph.data import sample_docs_dir
    except ImportError:
        raise DocumentStoreError(
            "The bundled sample documents are not installed (ollagraph.data.sample_docs_dir).",
            hint="Give a documents store with --docs, made by `agent ingest PATH --docs STORE`.",
        ) from None
    folder = Path(sample_docs_dir())
    if not folder.is_dir():
        raise DocumentStoreError(f"The bundled sample documents folder {folder} is missing.")
    return folder


__all__ = [
    "IngestEvent",
    "IngestReport",
    "ProgressCallback",
    "SkippedFile",
    "ensure_sample_store",
    "ingest",
    "node_id",
    "sample_store_path",
    "split_into_nodes",
]
