"""Tools of your own: plain typed Python functions from a file or from an installed package.

A user tool is a function with type annotations and a Google-style docstring, like the built-in
tools: its signature is the schema and its docstring (summary + `Args:`) is what the model reads.

Sources:
- **A file**: `path/to/mytools.py` (every public function *defined* in that file: not imported
  ones, not names starting with `_`) or `path/to/mytools.py:func1,func2` (just those names, which
  may also be imported functions). The file is loaded by path under a private module name
  (`ollagraph_user_tools_<hash>_<stem>`), so it never shadows a real module, and reloaded only
  when its modification time or size changes. The tool name is the function's name in the file.
  Specs come from `--tools` (repeatable), the `user_tools` setting (a TOML list, or
  `OLLAGRAPH_USER_TOOLS` with specs separated by `;`, since a spec may contain commas).
- **An installed package**: an entry point in the group `ollagraph.tools` that names a function,
  a list or tuple of functions, or a module (all its public functions defined in it), e.g.
  `[project.entry-points."ollagraph.tools"] text = "mypkg.tools:TOOLS"`. Tool names are the
  functions' `__name__`s. Entry points are scanned on first use. They are *available* (listed by
  `agent tools`) but enabled only when named in `tools`: installing a package does not change
  what every question is offered. A broken entry point is skipped with a warning naming its
  package (in `agent tools`, and in the error for a `tools` name that is not found); the others
  still load.
- **Python**: functions handed to `build_graph(tools=[...])` (`function_tools`). Their tool names
  are the functions' `__name__`s; they are enabled in every run of that graph.

Every function is checked when it is loaded, and refused with a `ToolLoadError` naming the
function, where it came from and the fix, when: it is not a plain function (or not callable), a
parameter or the return value has no annotation, a parameter type is unsupported, it takes
`*args`/`**kwargs` or positional-only parameters, the docstring or a parameter's `Args:` entry is
missing, or its name clashes with a built-in tool or another user tool.

Supported parameter types: `str`, `int`, `float`, `bool`; `Literal[...]` of str/int/bool values
(use it for a fixed set of choices: `Enum` is refused, its schema needs `$ref`s that constrained
decoding handles badly); `X | None` / `Optional[X]` of a supported type; `list`, `list[T]`,
`dict`, `dict[str, T]` where T is a JSON type (a scalar, `Any`, or a nested list/dict);
`Annotated[X, ...]` of any of these. Any return type is accepted. The result becomes text for
the model: a `str` as is, anything else as JSON when it can be (`None` is `null`), else `str()`.
Async functions are run with `asyncio.run` in the tool's own thread.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import hashlib
import importlib.util
import inspect
import json
import logging
import re
import sys
import threading
import traceback
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ollagraph.agents.errors import ToolLoadError

ENTRY_POINT_GROUP = "ollagraph.tools"
SPEC_SEPARATOR = ";"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_SCALARS: tuple[type, ...] = (str, int, float, bool)
_SUPPORTED = "str, int, float, bool, Literal[...], X | None, list[T] or dict[str, T] of JSON types"
log = logging.getLogger(__name__)


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
        if self.kind in ("file", "python"):
            return f"{self.kind} {self.origin}"
        return self.origin

    @property
    def summary(self) -> str:
        """The first line of the tool's description."""
        doc = inspect.getdoc(self.original) or ""
        return doc.strip().splitlines()[0] if doc.strip() else self.name


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
    where = f"{kind} {origin}" if kind in ("file", "python") else origin
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


# -- files -------------------------------------------------------------------------------------


def looks_like_file_spec(value: str) -> bool:
    """True when a `--tools` value names a file: tool names never contain a dot or a slash."""
    return any(char in value for char in "./\\")


def split_spec(spec: str) -> tuple[str, tuple[str, ...] | None]:
    """Split `path.py:f,g` into the path and the names (None: every public function).

    Args:
        spec: A file spec.
    """
    path, sep, names = spec.strip().rpartition(":")
    if sep and len(path) > 1 and not any(c in names for c in "./\\"):
        return path, tuple(n.strip() for n in names.split(",") if n.strip())
    return spec.strip(), None


def absolute_spec(spec: str, base: Path) -> str:
    """The spec with a relative path made absolute against `base` (names kept).

    Args:
        spec: A file spec.
        base: The folder a relative path is relative to.
    """
    path, names = split_spec(spec)
    full = (base / Path(path).expanduser()).resolve()
    return str(full) if names is None else f"{full}:{','.join(names)}"


_lock = threading.RLock()
_modules: dict[Path, tuple[tuple[int, int], types.ModuleType]] = {}
_file_tools: dict[tuple[Path, tuple[str, ...] | None], tuple[tuple[int, int], list[UserTool]]] = {}


def _module_name(path: Path) -> str:
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    stem = re.sub(r"\W", "_", path.stem)
    return f"ollagraph_user_tools_{digest}_{stem}"


def _import_file(path: Path) -> types.ModuleType:
    """Execute the file as a fresh module under a private name."""
    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py path always has one
        raise ToolLoadError(f"Tool file {path} cannot be loaded as Python.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up here
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise ToolLoadError(
            f"Tool file {path} has a syntax error on line {exc.lineno}: {exc.msg}.",
            hint="Fix the file (python -m py_compile FILE shows the same error).",
        ) from None
    except (Exception, SystemExit) as exc:
        sys.modules.pop(name, None)
        lines = [
            f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)
        ]
        at = f" (line {lines[-1]})" if lines else ""
        raise ToolLoadError(
            f"Loading tool file {path} failed{at}: {type(exc).__name__}: {exc}.",
            hint="Install what it imports in this environment, or fix the file.",
        ) from None
    return module


def _public_functions(module: types.ModuleType) -> dict[str, Any]:
    return {
        attr: obj
        for attr, obj in vars(module).items()
        if not attr.startswith("_")
        and inspect.isfunction(obj)
        and obj.__module__ == module.__name__
    }


def load_file(spec: str) -> list[UserTool]:
    """Load the tools a file spec names, checked; cached until the file changes.

    Args:
        spec: `path/to/tools.py` or `path/to/tools.py:func1,func2`.

    Raises:
        ToolLoadError: The file is missing, not Python, does not import, names something it does
            not define, or a function cannot be described.
    """
    raw_path, names = split_spec(spec)
    path = Path(raw_path).expanduser().resolve()
    if path.suffix != ".py":
        raise ToolLoadError(
            f"Tool file {path} is not a Python file (.py).",
            hint="Give a .py file, optionally with :func1,func2 after it.",
        )
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ToolLoadError(
            f"Tool file {path} does not exist.", hint="Check the path given to --tools."
        ) from None
    except OSError as exc:
        raise ToolLoadError(f"Cannot read tool file {path}: {exc.strerror or exc}.") from None
    if path.is_dir():
        raise ToolLoadError(f"Tool file {path} is a directory, not a .py file.")
    stamp = (stat.st_mtime_ns, stat.st_size)
    with _lock:
        cached = _file_tools.get((path, names))
        if cached and cached[0] == stamp:
            return cached[1]
        known = _modules.get(path)
        if known and known[0] == stamp:
            module = known[1]
        else:
            module = _import_file(path)
            _modules[path] = (stamp, module)
        public = _public_functions(module)
        if names is None:
            chosen = public
            if not chosen:
                raise ToolLoadError(
                    f"Tool file {path} defines no public functions.",
                    hint="Define typed functions with docstrings (names not starting with _).",
                )
        else:
            if not names:
                raise ToolLoadError(
                    f"Tool spec {spec!r} names no functions after the colon.",
                    hint="Write FILE.py:func1,func2, or just FILE.py for all of them.",
                )
            chosen = {}
            for name in names:
                if not hasattr(module, name):
                    raise ToolLoadError(
                        f"Tool file {path} has no function `{name}`.",
                        hint=f"Its public functions: {', '.join(public) or 'none'}.",
                    )
                chosen[name] = getattr(module, name)
        tools = [make_tool(func, name, "file", str(path)) for name, func in chosen.items()]
        _file_tools[(path, names)] = (stamp, tools)
        return tools


# -- entry points ------------------------------------------------------------------------------


@dataclass
class _EntryPointScan:
    tools: dict[str, UserTool]
    problems: list[str]


_scan: _EntryPointScan | None = None


def _entry_point_functions(obj: Any) -> list[tuple[str, Any]]:
    if isinstance(obj, types.ModuleType):
        return list(_public_functions(obj).items())
    if isinstance(obj, list | tuple):
        return [(getattr(f, "__name__", repr(f)), f) for f in obj]
    return [(getattr(obj, "__name__", repr(obj)), obj)]


def entry_point_tools() -> tuple[dict[str, UserTool], list[str]]:
    """Tools from installed packages (group `ollagraph.tools`), scanned once per process.

    Returns:
        The tools by name, and one message per entry point or function that was skipped.
    """
    global _scan
    with _lock:
        if _scan is not None:
            return _scan.tools, _scan.problems
        from importlib.metadata import entry_points

        from ollagraph.agents.config import ALL_TOOLS

        tools: dict[str, UserTool] = {}
        problems: list[str] = []
        seen: set[tuple[str, str]] = set()
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            package = f"{dist.name} {dist.version}" if dist else ep.module
            if (package, ep.name) in seen:
                continue
            seen.add((package, ep.name))
            origin = f"package {package} (entry point {ep.name} = {ep.value})"
            try:
                obj = ep.load()
            except Exception as exc:
                problems.append(f"{origin} cannot be loaded: {type(exc).__name__}: {exc}.")
                continue
            for name, func in _entry_point_functions(obj):
                if name in ALL_TOOLS or name in tools:
                    other = "a built-in tool" if name in ALL_TOOLS else tools[name].origin
                    problems.append(f"Tool `{name}` in {origin} clashes with {other}.")
                    continue
                try:
                    tools[name] = make_tool(func, name, "entry point", origin)
                except ToolLoadError as exc:
                    problems.append(str(exc).replace("\n", " "))
        for problem in problems:
            log.debug("skipped a user tool: %s", problem)
        _scan = _EntryPointScan(tools, problems)
        return tools, problems


# -- functions handed over in Python ----------------------------------------------------------


def function_tools(functions: Iterable[Any]) -> dict[str, UserTool]:
    """Check functions given in Python (`build_graph(tools=[...])`) and make them tools.

    Each tool is named after its function's `__name__`. The same rules as for files apply.

    Args:
        functions: Plain typed functions with Google-style docstrings.

    Returns:
        The tools by name, in the order given.

    Raises:
        ToolLoadError: A function cannot be described, or its name clashes with a built-in tool,
            an installed package's tool or another function given.
    """
    from ollagraph.agents.config import ALL_TOOLS

    if callable(functions) and not isinstance(functions, list | tuple):
        functions = [functions]  # one function given on its own
    installed = entry_point_tools()[0]
    found: dict[str, UserTool] = {}
    for func in functions:
        name = getattr(func, "__name__", None) or type(func).__name__
        module = getattr(func, "__module__", None) or "?"
        origin = f"{module}.{getattr(func, '__qualname__', name)}"
        tool = make_tool(func, name, "python", origin)
        previous = found.get(name)
        if previous is not None and previous.original is func:
            continue  # the same function twice
        clash = "a built-in tool" if name in ALL_TOOLS else None
        if clash is None and name in installed:
            clash = installed[name].source
        if clash is None and previous is not None:
            clash = previous.source
        if clash:
            raise ToolLoadError(
                f"Tool `{name}` in python {origin} clashes with {clash}.",
                hint="Rename the function (the tool's name is the function's name).",
            )
        found[name] = tool
    return found


def clear_caches() -> None:
    """Forget loaded files and the entry-point scan (tests, or after installing a package)."""
    global _scan
    with _lock:
        _scan = None
        _file_tools.clear()
        for path in list(_modules):
            sys.modules.pop(_module_name(path), None)
        _modules.clear()


# -- the combined view -------------------------------------------------------------------------


def user_tools(specs: Sequence[str] = ()) -> dict[str, UserTool]:
    """Every user tool for a run: entry-point tools, then the tools of each file spec.

    Args:
        specs: File specs (the `user_tools` setting).

    Raises:
        ToolLoadError: A file cannot be loaded, or one of its tools clashes with a built-in
            tool, an entry-point tool or a tool of another file.
    """
    from ollagraph.agents.config import ALL_TOOLS

    found: dict[str, UserTool] = dict(entry_point_tools()[0])
    for spec in specs:
        for tool in load_file(spec):
            clash = "a built-in tool" if tool.name in ALL_TOOLS else None
            previous = found.get(tool.name)
            if previous is not None and previous.original is not tool.original:
                clash = previous.source
            if clash:
                raise ToolLoadError(
                    f"Tool `{tool.name}` in file {tool.origin} clashes with {clash}.",
                    hint="Rename the function, or load only the others with FILE.py:func1,func2.",
                )
            found[tool.name] = tool
    return found


def file_tool_names(specs: Iterable[str]) -> list[str]:
    """The names of the tools the file specs load, in order (these join `settings.tools`).

    Args:
        specs: File specs.
    """
    names: list[str] = []
    for spec in specs:
        names += [t.name for t in load_file(spec) if t.name not in names]
    return names


def find(name: str, specs: Sequence[str] | None = None) -> UserTool | None:
    """The user tool called `name`, or None.

    Args:
        name: A tool name.
        specs: The run's file specs; None: any file loaded so far in this process.
    """
    if specs is not None:
        return user_tools(specs).get(name)
    tool = entry_point_tools()[0].get(name)
    if tool is not None:
        return tool
    with _lock:
        for _, tools in reversed(list(_file_tools.values())):
            for candidate in tools:
                if candidate.name == name:
                    return candidate
    return None


def describe_problems(problems: Sequence[str]) -> str:
    """One line per skipped entry point or function, for hints.

    Args:
        problems: The messages from `entry_point_tools`.
    """
    return "\n".join(f"- {p}" for p in problems)


__all__ = [
    "ENTRY_POINT_GROUP",
    "SPEC_SEPARATOR",
    "UserTool",
    "absolute_spec",
    "check_function",
    "clear_caches",
    "entry_point_tools",
    "file_tool_names",
    "find",
    "function_tools",
    "load_file",
    "looks_like_file_spec",
    "make_tool",
    "split_spec",
    "to_text",
    "user_tools",
]
