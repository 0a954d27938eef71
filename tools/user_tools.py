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

Every function is checked when it is loaded (`ollagraph.tools.tool_functions`), and refused with
a `ToolLoadError` naming the function, where it came from and the fix, when: it is not a plain
function (or not callable), a parameter or the return value has no annotation, a parameter type is
unsupported, it takes `*args`/`**kwargs` or positional-only parameters, the docstring or a
parameter's `Args:` entry is missing, or its name clashes with a built-in tool or another user
tool.

Supported parameter types: `str`, `int`, `float`, `bool`; `Literal[...]` of str/int/bool values
(use it for a fixed set of choices: `Enum` is refused, its schema needs `$ref`s that constrained
decoding handles badly); `X | None` / `Optional[X]` of a supported type; `list`, `list[T]`,
`dict`, `dict[str, T]` where T is a JSON type (a scalar, `Any`, or a nested list/dict);
`Annotated[X, ...]` of any of these. Any return type is accepted. The result becomes text for
the model: a `str` as is, anything else as JSON when it can be (`None` is `null`), else `str()`.
Async functions are run with `asyncio.run` in the tool's own thread.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import logging
import re
import sys
import threading
import traceback
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ollagraph.agents.errors import ToolLoadError
from ollagraph.tools.tool_functions import UserTool, check_function, make_tool, to_text

ENTRY_POINT_GROUP = "ollagraph.tools"
SPEC_SEPARATOR = ";"
log = logging.getLogger(__name__)


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
