"""User tools: checking and converting functions, file specs, entry points, the registry view."""

from __future__ import annotations

import enum
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from ollagraph.agents.config import ALL_TOOLS, Settings, load_settings, read_env
from ollagraph.agents.errors import ConfigError, ToolLoadError
from ollagraph.agents.strategy import arguments_schema, decision_schema
from ollagraph.tools import registry, user_tools
from ollagraph.tools.user_tools import (
    absolute_spec,
    check_function,
    load_file,
    looks_like_file_spec,
    make_tool,
    split_spec,
    to_text,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "user_tools"
GOOD = FIXTURES / "good_tools.py"


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    user_tools.clear_caches()
    yield
    user_tools.clear_caches()


def install_demo_package(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """'Install' the demo packages (a real dist-info with entry_points.txt) on sys.path."""
    site = root / "site"
    shutil.copytree(FIXTURES / "demo_site", site)
    monkeypatch.syspath_prepend(str(site))
    user_tools.clear_caches()
    return site


# -- conversion --------------------------------------------------------------------------------


def test_results_become_text() -> None:
    assert to_text("plain") == "plain"
    assert to_text({"a": [1, 2.5, "é"]}) == '{"a": [1, 2.5, "é"]}'
    assert to_text(None) == "null"
    assert to_text(3) == "3"
    assert to_text({1, 2}).startswith("{")  # not JSON: str()


def test_a_file_becomes_tools_with_schemas_from_signature_and_docstring() -> None:
    tools = {t.name: t for t in load_file(str(GOOD))}
    # every public function defined in the file, in order; not the imported `dumps`, not `_helper`
    assert list(tools) == [
        "word_count",
        "convert_temperature",
        "tag_items",
        "slow_echo",
        "fail_loudly",
    ]
    temp = tools["convert_temperature"]
    assert temp.kind == "file" and temp.origin == str(GOOD.resolve())
    assert temp.summary == "Convert a temperature between Celsius and Fahrenheit."
    schema = arguments_schema(temp.spec)
    assert schema["required"] == ["value"]
    assert schema["properties"]["unit"]["enum"] == ["C", "F"]
    assert schema["properties"]["unit"]["description"] == "The unit `value` is in: C or F."
    assert schema["properties"]["value"]["type"] == "number"
    tag = arguments_schema(tools["tag_items"].spec)["properties"]
    assert tag["items"] == {
        "type": "array",
        "items": {"type": "string"},
        "description": "The items to tag.",
    }
    # results are text: non-str as JSON
    assert tools["word_count"].function(text="one two three") == "3"
    assert temp.function(value=100.0, unit="C") == '{"F": 212.0}'
    assert tools["tag_items"].function(items=["a"], tags={"a": 2}, shout=True) == '["A#2"]'
    assert tools["slow_echo"].function(text="hi") == "hi"  # async, run in place
    # the constrained strategy's decision schema takes user tools like built-ins
    choice = decision_schema([temp.spec])["anyOf"][0]
    assert choice["properties"]["tool"] == {"const": "convert_temperature"}


def test_named_functions_and_imported_ones_by_name() -> None:
    tools = load_file(f"{GOOD}:word_count, tag_items")
    assert [t.name for t in tools] == ["word_count", "tag_items"]


def test_file_loading_is_cached_until_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "mine.py"
    source = '''def greet(name: str) -> str:
    """Greet someone.

    Args:
        name: Who.
    """
    return "hello " + name
'''
    path.write_text(source)
    first = load_file(str(path))
    assert load_file(str(path)) is first
    path.write_text(source.replace("hello", "good morning,"))
    second = load_file(str(path))
    assert second is not first
    assert second[0].function(name="Ann") == "good morning, Ann"
    # loaded under a private module name: no module called `mine` appears
    assert "mine" not in sys.modules
    assert second[0].original.__module__.startswith("ollagraph_user_tools_")


def test_spec_parsing() -> None:
    assert split_spec("a/b.py") == ("a/b.py", None)
    assert split_spec("a/b.py:f, g") == ("a/b.py", ("f", "g"))
    assert split_spec("C:/x/b.py") == ("C:/x/b.py", None)
    assert split_spec("/x/b.py:") == ("/x/b.py", ())
    assert absolute_spec("b.py:f", Path("/base")) == "/base/b.py:f"
    assert absolute_spec("/abs/b.py", Path("/base")) == "/abs/b.py"
    assert looks_like_file_spec("tools.py") and looks_like_file_spec("./x")
    assert not looks_like_file_spec("sql_query,web_search")


# -- refusals ----------------------------------------------------------------------------------


def no_param_annotation(text) -> str:  # type: ignore[no-untyped-def]
    """Do it.

    Args:
        text: The text.
    """
    return str(text)


def no_return(text: str):  # type: ignore[no-untyped-def]
    """Do it.

    Args:
        text: The text.
    """
    return text


def takes_bytes(data: bytes) -> str:
    """Do it.

    Args:
        data: The data.
    """
    return ""


def takes_any(data: Any) -> str:
    """Do it.

    Args:
        data: The data.
    """
    return ""


def takes_union(data: int | str) -> str:
    """Do it.

    Args:
        data: The data.
    """
    return ""


class Colour(enum.Enum):
    RED = "red"


def takes_enum(colour: Colour) -> str:
    """Do it.

    Args:
        colour: The colour.
    """
    return ""


def takes_tuple(pair: tuple[int, int]) -> str:
    """Do it.

    Args:
        pair: Two numbers.
    """
    return ""


def takes_int_keys(table: dict[int, str]) -> str:
    """Do it.

    Args:
        table: A table.
    """
    return ""


def takes_object_list(items: list[Colour]) -> str:
    """Do it.

    Args:
        items: Colours.
    """
    return ""


def star_args(*texts: str) -> str:
    """Do it.

    Args:
        texts: The texts.
    """
    return ""


def star_kwargs(**options: str) -> str:
    """Do it.

    Args:
        options: The options.
    """
    return ""


def positional_only(text: str, /) -> str:
    """Do it.

    Args:
        text: The text.
    """
    return ""


def no_docstring(text: str) -> str:
    return text


def no_args_section(text: str) -> str:
    """Do it with the text."""
    return text


def missing_arg_entry(text: str, count: int) -> str:
    """Do it.

    Args:
        text: The text.
    """
    return text


def unresolvable(text: NoSuchType) -> str:  # type: ignore[name-defined]  # noqa: F821
    """Do it.

    Args:
        text: The text.
    """
    return ""


@pytest.mark.parametrize(
    ("func", "expected"),
    [
        (no_param_annotation, "parameter `text` has no type annotation"),
        (no_return, "has no return annotation"),
        (takes_bytes, "parameter `data` has an unsupported type bytes: bytes is not a JSON type"),
        (takes_any, "`Any` says nothing the model can follow"),
        (takes_union, "a union of several types"),
        (takes_enum, "Enum is not supported; use Literal"),
        (takes_tuple, "tuples and sets are not JSON; use list"),
        (takes_int_keys, "dict keys must be str"),
        (takes_object_list, "Enum is not supported"),
        (star_args, "takes `*texts`"),
        (star_kwargs, "takes `**options`"),
        (positional_only, "parameter `text` is positional-only"),
        (no_docstring, "has no docstring"),
        (no_args_section, "its docstring has no `Args:` section"),
        (missing_arg_entry, "`Args:` has no entry for `count`"),
        (unresolvable, "an annotation that cannot be resolved"),
        (42, "is a int, not a function"),
        (len, "is a builtin_function_or_method, not a plain function"),
    ],
)
def test_refusals_name_the_function_the_place_and_the_fix(func: Any, expected: str) -> None:
    name = getattr(func, "__name__", "answer")
    with pytest.raises(ToolLoadError) as info:
        check_function(func, name, "file /x/mine.py")
    message = str(info.value)
    assert expected in message
    assert f"Tool `{name}` in file /x/mine.py" in message
    assert info.value.hint  # the fix


def test_a_lambda_is_refused_by_name() -> None:
    with pytest.raises(ToolLoadError, match="must be a Python identifier"):
        make_tool(lambda text: text, "<lambda>", "file", "/x/mine.py")


def test_supported_types_pass() -> None:
    def fine(
        a: str,
        b: int,
        c: float,
        d: bool,
        e: Literal["x", "y"],
        f: str | None,
        g: list[dict[str, Any]],
        h: dict[str, list[int]],
        i: list,  # type: ignore[type-arg]
    ) -> None:
        """Take everything.

        Args:
            a: A. b: B.
            b: B.
            c: C.
            d: D.
            e: E.
            f: F.
            g: G.
            h: H.
            i: I.
        """

    tool = make_tool(fine, "fine", "file", "/x.py")
    assert set(tool.spec.args) == set("abcdefghi")
    assert tool.function(a="", b=1, c=1.0, d=True, e="x", f=None, g=[], h={}, i=[]) == "null"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("nosuch.py", "does not exist"),
        ("notes.txt", "is not a Python file"),
        ("good_tools.py:nope", "has no function `nope`."),
        ("good_tools.py:", "names no functions after the colon"),
        ("import_error_tools.py", "(line 3): ModuleNotFoundError: No module named"),
    ],
)
def test_file_problems_are_one_clear_error(spec: str, expected: str) -> None:
    with pytest.raises(ToolLoadError) as info:
        load_file(str(FIXTURES / spec))
    text = str(info.value).replace("\n", " ")
    assert expected in text
    if "nope" in spec:
        assert "Its public functions: word_count, convert_temperature" in text


def test_syntax_errors_and_empty_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def broken(:\n    pass\n")
    with pytest.raises(ToolLoadError, match=r"bad.py has a syntax error on line 1"):
        load_file(str(bad))
    empty = tmp_path / "empty.py"
    empty.write_text("X = 1\n")
    with pytest.raises(ToolLoadError, match="defines no public functions"):
        load_file(str(empty))
    with pytest.raises(ToolLoadError, match="is a int, not a function"):
        load_file(f"{empty}:X")
    (tmp_path / "dir.py").mkdir()
    with pytest.raises(ToolLoadError, match="is a directory"):
        load_file(str(tmp_path / "dir.py"))


def test_clashes_with_built_ins_and_other_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ToolLoadError, match=r"`sql_query` in file .* clashes with a built-in tool"):
        user_tools.user_tools([str(FIXTURES / "clash_tools.py")])
    assert "other" in user_tools.user_tools([f"{FIXTURES / 'clash_tools.py'}:other"])
    copy = tmp_path / "copy.py"
    shutil.copy(GOOD, copy)
    with pytest.raises(ToolLoadError, match=rf"`word_count` in file {copy} clashes with file"):
        user_tools.user_tools([str(GOOD), str(copy)])


# -- entry points ------------------------------------------------------------------------------


def test_entry_point_tools_with_package_names_and_broken_ones_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_demo_package(tmp_path, monkeypatch)
    tools, problems = user_tools.entry_point_tools()
    assert set(tools) == {"shout", "reverse_words", "count_vowels"}  # function, list
    assert tools["shout"].source == "package demo-tools 0.1 (entry point shout = demo_tools:shout)"
    assert tools["count_vowels"].function(text="duck") == "1"
    assert len(problems) == 2
    assert any(
        "package broken-tools 0.2 (entry point missing" in p and "ModuleNotFoundError" in p
        for p in problems
    )
    assert any("`undocumented` in package demo-tools 0.1" in p for p in problems)
    # clashes with entry-point tools are refused for files too
    clash = tmp_path / "clash.py"
    clash.write_text(
        'def shout(text: str) -> str:\n    """Shout.\n\n    Args:\n        text: T.\n    """\n'
        "    return text\n"
    )
    with pytest.raises(ToolLoadError, match=r"clashes with package demo-tools 0.1"):
        user_tools.user_tools([str(clash)])


# -- settings and the registry view ------------------------------------------------------------


def test_settings_join_file_tools_and_accept_entry_point_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(overrides={"user_tools": (f"{GOOD}:word_count",)})
    assert settings.tools == (*ALL_TOOLS, "word_count")
    settings = load_settings(
        overrides={"tools": ("sql_query",), "user_tools": (f"{GOOD}:word_count",)}
    )
    assert settings.tools == ("sql_query", "word_count")
    with pytest.raises(ConfigError, match=r"Unknown tool.*shout"):
        Settings(tools=("shout",))
    install_demo_package(tmp_path, monkeypatch)
    assert Settings(tools=("shout",)).tools == ("shout",)  # entry points: enabled by name
    with pytest.raises(ConfigError) as info:
        Settings(tools=("nosuch",))
    assert "shout" in str(info.value) and "broken-tools 0.2" in (info.value.hint or "")


def test_env_and_config_file_specs(tmp_path: Path) -> None:
    env = {"OLLAGRAPH_USER_TOOLS": f"{GOOD}:word_count,tag_items; {GOOD}:slow_echo"}
    assert read_env(env)["user_tools"] == (f"{GOOD}:word_count,tag_items", f"{GOOD}:slow_echo")
    shutil.copy(GOOD, tmp_path / "mine.py")
    config = tmp_path / "config.toml"
    config.write_text('user_tools = ["mine.py:word_count"]\n')
    settings = load_settings(config, env={})
    assert settings.user_tools == (f"{tmp_path / 'mine.py'}:word_count",)
    assert "word_count" in settings.tools
    config.write_text('user_tools = ["missing.py"]\n')
    with pytest.raises(ToolLoadError, match=r"missing.py does not exist"):
        load_settings(config, env={})


def test_registry_view(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_demo_package(tmp_path, monkeypatch)
    settings = load_settings(overrides={"user_tools": (str(GOOD),)}, env={})
    available = registry.available_tools(settings)
    assert set(registry.TOOLS) < set(available)
    assert {"word_count", "shout"} <= set(available)
    assert registry.lookup("word_count", settings) is available["word_count"]
    assert registry.lookup("sql_query", settings) is registry.TOOLS["sql_query"]
    assert registry.lookup("nosuch", settings) is None
    specs = registry.tool_specs(["sql_query", "word_count", "nosuch", "shout"], settings)
    assert [s.name for s in specs] == ["sql_query", "word_count", "shout"]
    assert registry.source("sql_query") == "built-in"
    assert registry.source("word_count", settings) == f"file {GOOD.resolve()}"
    assert registry.source("shout").startswith("package demo-tools 0.1")
    assert registry.summary("word_count", settings) == "Count the words in a text."
    # without settings: files loaded so far in this process (prompts call summary(name))
    assert registry.summary("word_count") == "Count the words in a text."
    rows = {row["name"]: row for row in registry.describe(settings)}
    assert rows["word_count"]["enabled"] and not rows["shout"]["enabled"]
    assert rows["shout"]["source"] == "entry point"
