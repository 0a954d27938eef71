"""Describing one tool function to the model: the checks it must pass, and the tool it becomes.

A user tool (`ollagraph.tools.user_tools`: a file, an installed package's entry point, or a
function given to `build_graph(tools=[...])`) is checked here by `check_function` and turned into
a `UserTool` by `make_tool`: a wrapper that returns text (`to_text`) and the LangChain tool object
whose schema comes from the signature and whose description comes from the Google-style docstring.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import inspect
import json
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ollagraph.agents.errors import ToolLoadError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_SCALARS: tuple[type, ...] = (str, int, float, bool)
_SUPPORTED = "str, int, float, bool, Literal[...], X | None, list[T] or dict[str, T] of JSON types"


@dataclass(frozen=True)
class UserTool:
    """One loaded, checked user tool.

    Attributes:
        name: The name the model calls it by.
        function: The callable the runner calls with keyword arguments; it returns text.
        original: The user's function.
        kind: "file", "entry point" or "python" (given to `build_graph(tools=...)`).
        origin: The file's path, "package NAME VERSION (entry point EP)", or the function's
            `module.qualname`.
        spec: The LangChain tool object (schema + description) built from the function.
    """

    name: str
    function: Callable[..., str]
    original: Callable[..., Any]
    kind: str
    origin: str
    spec: Any = field(repr=False, compare=False)

    @property
    def source(self) -> str:
        """Where the tool comes from: `file PATH`, `package NAME (...)` or `python MODULE.NAME`."""
        return _where(self.kind, self.origin)

    @property
    def summary(self) -> str:
        """The first line of the tool's description."""
        doc = inspect.getdoc(self.original) or ""
        return doc.strip().splitlines()[0] if doc.strip() else self.name


def _where(kind: str, origin: str) -> str:
    return f"{kind} {origin}" if kind in ("file", "python") else origin


def to_text(value: Any) -> str:
    """Turn a tool's return value into the text the model reads.

    Args:
        value: What the function returned.

    Returns:
        A `str` as is; other values as JSON when they can be, else `str(value)`.
    """
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


# -- checking one function ---------------------------------------------------------------------


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _json_value_problem(annotation: Any) -> str | None:
    """Why `annotation` cannot be an item of a list/dict argument (None: it can)."""
    if annotation is Any:
        return None
    return _type_problem(annotation)


def _type_problem(annotation: Any) -> str | None:
    """Why `annotation` cannot be a parameter type (None: it can)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_problem(args[0])
    if annotation in _SCALARS:
        return None
    if annotation is Any:
        return "`Any` says nothing the model can follow"
    if origin is typing.Literal:
        if all(isinstance(v, str | int | bool) for v in args):
            return None
        return "Literal values must be str, int or bool"
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return _type_problem(rest[0])
        return f"a union of several types ({_type_name(annotation)}) is ambiguous"
    if annotation in (list, dict):
        return None
    if origin is list:
        return _json_value_problem(args[0]) if args else None
    if origin is dict:
        if args and args[0] is not str:
            return "dict keys must be str (JSON object keys)"
        return _json_value_problem(args[1]) if args else None
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "Enum is not supported; use Literal['a', 'b'] for a fixed set of choices"
    if origin in (tuple, set, frozenset) or annotation in (tuple, set, frozenset):
        return "tuples and sets are not JSON; use list[...]"
    return f"{_type_name(annotation)} is not a JSON type"


def _docstring_args(doc: str) -> set[str] | None:
    """Names listed in the `Args:` block (None: there is no such block after a blank line)."""
    blocks = doc.split("\n\n")
    for block in blocks[1:]:
        if block.startswith(("Args:", "Arguments:")):
            lines = block.splitlines()[1:]
            return {m.group(1) for m in (re.match(r"^\s+\**(\w+)\b", ln) for ln in lines) if m}
    return None


def check_function(func: Any, name: str, where: str) -> None:
    """Refuse a function the toolkit cannot describe to the model.

    Args:
        func: The object to check.
        name: The tool name it would get.
        where: Where it came from, for the message ("file /x/t.py", "package p (entry point e)").

    Raises:
        ToolLoadError: The message names the function, where it came from and the fix.
    """
    label = f"Tool `{name}` in {where}"
    if not callable(func):
        raise ToolLoadError(
            f"{label} is a {type(func).__name__}, not a function.",
            hint="Name a function defined with `def`, with typed parameters and a docstring.",
        )
    if not inspect.isfunction(func):
        raise ToolLoadError(
            f"{label} is a {type(func).__name__}, not a plain function.",
            hint="Wrap it in a `def` with typed parameters and a Google-style docstring.",
        )
    if not _NAME.match(name):
        raise ToolLoadError(
            f"{label}: the name must be a Python identifier of at most 64 characters.",
            hint="Define the tool with `def NAME(...)` instead of a lambda or a long name.",
        )
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:
        raise ToolLoadError(
            f"{label} has an annotation that cannot be resolved ({type(exc).__name__}: {exc}).",
            hint="Import every type its annotations name, at the top of the file.",
        ) from None
    signature = inspect.signature(func)
    for param in signature.parameters.values():
        if param.kind is param.VAR_POSITIONAL or param.kind is param.VAR_KEYWORD:
            stars = "*" if param.kind is param.VAR_POSITIONAL else "**"
            raise ToolLoadError(
                f"{label} takes `{stars}{param.name}`; the model can only pass named arguments.",
                hint="Replace it with named, typed parameters (or one list[...] parameter).",
            )
        if param.kind is param.POSITIONAL_ONLY:
            raise ToolLoadError(
                f"{label}: parameter `{param.name}` is positional-only; tools are called with "
                "keyword arguments.",
                hint="Remove the `/` from its signature.",
            )
        if param.name not in hints:
            raise ToolLoadError(
                f"{label}: parameter `{param.name}` has no type annotation.",
                hint=f"Annotate it, e.g. `{param.name}: str` (supported: {_SUPPORTED}).",
            )
        problem = _type_problem(hints[param.name])
        if problem:
            raise ToolLoadError(
                f"{label}: parameter `{param.name}` has an unsupported type "
                f"{_type_name(hints[param.name])}: {problem}.",
                hint=f"Use one of: {_SUPPORTED}.",
            )
    if "return" not in hints:
        raise ToolLoadError(
            f"{label} has no return annotation.",
            hint="Annotate what it returns, e.g. `-> str` (non-str results are sent as JSON).",
        )
    doc = inspect.getdoc(func) or ""
    if not doc.strip():
        raise ToolLoadError(
            f"{label} has no docstring; the model needs one to know when to use it.",
            hint='Add a Google-style docstring: a summary line, a blank line, then "Args:" with '
            "one line per parameter.",
        )
    if signature.parameters:
        listed = _docstring_args(doc)
        if listed is None:
            raise ToolLoadError(
                f"{label}: its docstring has no `Args:` section.",
                hint='After the summary and a blank line, add "Args:" with one indented '
                "`name: what it means` line per parameter.",
            )
        missing = [p for p in signature.parameters if p not in listed]
        if missing:
            raise ToolLoadError(
                f"{label}: its docstring's `Args:` has no entry for "
                + ", ".join(f"`{p}`" for p in missing)
                + ".",
                hint="Add an indented `name: what it means` line for each, under `Args:`.",
            )


def _text_function(func: Callable[..., Any]) -> Callable[..., str]:
    """Wrap `func` so it returns text, keeping its resolved signature and docstring."""
    hints = typing.get_type_hints(func, include_extras=True)
    signature = inspect.signature(func)
    params = [p.replace(annotation=hints[p.name]) for p in signature.parameters.values()]

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        def call(**kwargs: Any) -> str:
            return to_text(asyncio.run(func(**kwargs)))

    else:

        @functools.wraps(func)
        def call(**kwargs: Any) -> str:
            return to_text(func(**kwargs))

    call.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=params, return_annotation=str
    )
    call.__annotations__ = {**{p.name: p.annotation for p in params}, "return": str}
    return call


def make_tool(func: Any, name: str, kind: str, origin: str) -> UserTool:
    """Check `func` and turn it into a tool (schema from the signature and docstring).

    Args:
        func: The user's function.
        name: The name the model will call it by.
        kind: "file", "entry point" or "python".
        origin: The file's path, a description of the package and entry point, or the
            function's `module.qualname`.

    Raises:
        ToolLoadError: The function cannot be described to the model.
    """
    where = _where(kind, origin)
    check_function(func, name, where)
    function = _text_function(func)
    from langchain_core.tools import StructuredTool

    try:
        spec = StructuredTool.from_function(function, name=name, parse_docstring=True)
    except Exception as exc:
        raise ToolLoadError(
            f"Tool `{name}` in {where} cannot be described: {type(exc).__name__}: {exc}.",
            hint=f"Use a Google-style docstring and parameter types from: {_SUPPORTED}.",
        ) from None
    undescribed = [n for n, a in spec.args.items() if not a.get("description")]
    if undescribed or not (spec.description or "").strip():
        what = ", ".join(f"`{n}`" for n in undescribed) or "the summary"
        raise ToolLoadError(
            f"Tool `{name}` in {where}: its docstring gives no description for {what}.",
            hint="Write a summary line, a blank line, then `Args:` with an indented "
            "`name: what it means` line per parameter.",
        )
    return UserTool(name, function, func, kind, origin, spec)


__all__ = ["UserTool", "check_function", "make_tool", "to_text"]
