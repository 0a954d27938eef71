"""ollagraph runtime: configuration, model access, errors and the `agent` command line.

Importing this package is cheap: nothing here imports LangChain, LangGraph, llama-index or torch.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ollagraph")
except PackageNotFoundError:  # pragma: no cover - running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
