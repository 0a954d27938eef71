"""The one explicit registry of tools the model can call.

`TOOLS` maps each built-in tool's name to a plain typed function; its signature and Google-style
docstring are the schema and description the model sees. `tool_specs` turns the enabled ones into
LangChain tool objects for `bind_tools` (LangChain is imported only then, never at import time).

User tools (`ollagraph.tools.user_tools`: files in `settings.user_tools` and installed packages'
`ollagraph.tools` entry points) join per run: `available_tools(settings)` is the run's view,
`lookup`, `tool_specs`, `source` and `summary` take the run's settings too. Entry points are
scanned on first use, files are reloaded only when they change. Functions given to
`build_graph(tools=[...])` are seen by all of these inside `using_tools(...)`, which the graph's
nodes enter (a context variable, like the run's settings in `tools.context`), so the prompts, the
schemas and the runner find them without a process-wide registration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

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
    from langchain_core.tools import BaseTool, StructuredTool

    from ollagraph.agents.config import Settings
    from ollagraph.tools.user_tools import UserTool

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


_NO_TOOLS: Mapping[str, UserTool] = MappingProxyType({})
_graph_tools: ContextVar[Mapping[str, UserTool]] = ContextVar(
    "ollagraph_graph_tools", default=_NO_TOOLS
)


@contextmanager
def using_tools(tools: Mapping[str, UserTool]) -> Iterator[None]:
    """Make a graph's own tools (`build_graph(tools=[...])`) known to the registry in this block.

    Args:
        tools: The tools by name (from `user_tools.function_tools`).
    """
    token = _graph_tools.set(MappingProxyType(dict(tools)) if tools else _NO_TOOLS)
    try:
        yield
    finally:
        _graph_tools.reset(token)


def graph_tools() -> Mapping[str, UserTool]:
    """The graph's own tools in effect here (see `using_tools`); empty outside a graph."""
    return _graph_tools.get()


def _user_tool(name: str, settings: Settings | None) -> UserTool | None:
    from ollagraph.tools.user_tools import find

    given = _graph_tools.get().get(name)
    if given is not None:
        return given
    return find(name, settings.user_tools if settings is not None else None)


def available_tools(settings: Settings | None = None) -> dict[str, Callable[..., str]]:
    """Every tool a run can call: built-ins, entry points, tool files and the graph's own tools.

    Args:
        settings: The run's settings (their `user_tools` files); None: built-ins and
            entry-point tools only.

    Raises:
        ToolLoadError: A file in `settings.user_tools` cannot be loaded.
    """
    from ollagraph.tools.user_tools import user_tools

    found: dict[str, Callable[..., str]] = dict(TOOLS)
    specs = settings.user_tools if settings is not None else ()
    found.update({name: tool.function for name, tool in user_tools(specs).items()})
    found.update({name: tool.function for name, tool in _graph_tools.get().items()})
    return found


def lookup(name: str, settings: Settings | None = None) -> Callable[..., str] | None:
    """The function behind tool `name` (None: no such tool).

    Args:
        name: A tool name.
        settings: The run's settings; None: built-ins, entry points and files loaded so far.
    """
    if name in TOOLS:
        return TOOLS[name]
    tool = _user_tool(name, settings)
    return tool.function if tool is not None else None


def tool_specs(names: Sequence[str], settings: Settings | None = None) -> list[StructuredTool]:
    """Return LangChain tool objects (schema + description) for the named tools.

    Args:
        names: Tool names, in the order the model should see them; unknown names are skipped.
        settings: The run's settings, to find its user tools; None: built-ins, entry-point
            tools and tool files loaded so far in this process.
    """
    specs: list[StructuredTool] = []
    for name in names:
        if name in TOOLS:
            specs.append(_spec(name))
        elif (tool := _user_tool(name, settings)) is not None:
            specs.append(tool.spec)
    return specs


_schemas: dict[tuple[int, ...], tuple[list[BaseTool], list[dict[str, Any]], int]] = {}


def _schema_entry(specs: Sequence[BaseTool]) -> tuple[list[BaseTool], list[dict[str, Any]], int]:
    """The tools, their converted schemas and the schemas' size, cached per set of tools."""
    key = tuple(id(spec) for spec in specs)
    cached = _schemas.get(key)
    if cached is None:
        from langchain_core.utils.function_calling import convert_to_openai_tool

        from ollagraph.agents.context_window import tool_schema_chars

        if len(_schemas) >= 64:  # registries rebuilt by tests; a run uses one or two sets
            _schemas.clear()
        schemas = [convert_to_openai_tool(s) for s in specs]
        # holding the specs keeps their ids from being reused while the entry exists
        cached = _schemas[key] = (list(specs), schemas, tool_schema_chars(schemas))
    return cached


def openai_schemas(specs: Sequence[BaseTool]) -> list[dict[str, Any]]:
    """The tools' schemas in the `{"type": "function", ...}` form that Ollama and OpenAI take.

    Cached per set of tool objects: converting a LangChain tool builds its JSON schema again
    (about 15 us per tool), and a run binds the same tools on every step. Binding these dicts
    is what `bind_tools(specs)` would send. Do not change the returned dicts.

    Args:
        specs: Tools from `tool_specs`.
    """
    return list(_schema_entry(specs)[1])


def schemas_size(specs: Sequence[BaseTool]) -> int:
    """Characters of the tools' schemas as they are sent (`context_window.tool_schema_chars`).

    Args:
        specs: Tools from `tool_specs`.
    """
    return _schema_entry(specs)[2]


def source(name: str, settings: Settings | None = None) -> str:
    """Where tool `name` comes from: `built-in`, `file PATH` or `package NAME VERSION (...)`.

    Args:
        name: A tool name.
        settings: The run's settings (see `lookup`).
    """
    if name in TOOLS:
        return "built-in"
    tool = _user_tool(name, settings)
    return tool.source if tool is not None else "unknown"


def summary(name: str, settings: Settings | None = None) -> str:
    """Return the first line of a tool's description.

    Args:
        name: A tool name.
        settings: The run's settings (see `lookup`).
    """
    if name not in TOOLS:
        tool = _user_tool(name, settings)
        return tool.summary if tool is not None else name
    doc = TOOLS[name].__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else name


def describe(settings: Settings | None = None) -> list[dict[str, Any]]:
    """One entry per available tool, for `agent tools`: name, source, origin, description.

    Args:
        settings: The run's settings; `enabled` says whether a tool is in `settings.tools`.
    """
    from ollagraph.tools.user_tools import user_tools

    rows: list[dict[str, Any]] = []
    enabled = set(settings.tools) if settings is not None else set(TOOLS)
    for name in TOOLS:
        rows.append(
            {
                "name": name,
                "source": "built-in",
                "origin": None,
                "description": summary(name),
                "enabled": name in enabled,
            }
        )
    specs = settings.user_tools if settings is not None else ()
    for name, tool in {**user_tools(specs), **_graph_tools.get()}.items():
        rows.append(
            {
                "name": name,
                "source": tool.kind,
                "origin": tool.origin,
                "description": tool.summary,
                "enabled": name in enabled,
            }
        )
    return rows
