"""The one explicit registry of tools the model can call.

`TOOLS` maps each tool's name to a plain typed function; its signature and Google-style docstring
are the schema and description the model sees. `tool_specs` turns the enabled ones into LangChain
tool objects for `bind_tools` (LangChain is imported only then, never at import time).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING

from ollagraph.tools.documents import search_documents
from ollagraph.tools.images import (
    caption_image,
    embed_faces,
    find_similar_faces,
    generate_image,
    upscale_image,
)
from ollagraph.tools.sql import sql_query
from ollagraph.tools.web import web_search

if TYPE_CHECKING:
    from langchain_core.tools import StructuredTool

TOOLS: dict[str, Callable[..., str]] = {
    "sql_query": sql_query,
    "search_documents": search_documents,
    "web_search": web_search,
    "caption_image": caption_image,
    "generate_image": generate_image,
    "upscale_image": upscale_image,
    "embed_faces": embed_faces,
    "find_similar_faces": find_similar_faces,
}


@cache
def _spec(name: str) -> StructuredTool:
    from langchain_core.tools import StructuredTool

    return StructuredTool.from_function(TOOLS[name], name=name, parse_docstring=True)


def tool_specs(names: Sequence[str]) -> list[StructuredTool]:
    """Return LangChain tool objects (schema + description) for the named tools.

    Args:
        names: Tool names from `TOOLS`, in the order the model should see them.
    """
    return [_spec(name) for name in names if name in TOOLS]


def summary(name: str) -> str:
    """Return the first line of a tool's description."""
    doc = TOOLS[name].__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else name
