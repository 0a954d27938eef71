"""User tools in whole runs of the graph: from a file, an entry point and `build_graph(tools=...)`.

Each source runs under both tool-calling strategies: *native* on a scripted chat model (it replays
queued tool calls, so what is checked is the graph's wiring: the bound tools, the runner, the
result the model reads next) and *constrained* (the scripted model replies with the JSON decision
and the test checks the `format` schema it was sent). The tools themselves are real functions run
by the real runner: one that raises, one that hangs past `tool_timeout` and one that returns too
much show they get the built-ins' error handling, timeout and output cap.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage, ToolMessage

from ollagraph.agents.config import Settings
from ollagraph.agents.errors import ToolLoadError
from ollagraph.graphs.agent import build_graph
from ollagraph.tools import user_tools
from tests.fake_ollama import FakeOllama
from tests.scripted_model import ScriptedChatModel

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent.parent / "fixtures" / "user_tools"
GOOD = FIXTURES / "good_tools.py"
RELEASE = threading.Event()  # lets the deliberately stuck tool finish when its test ends


def celsius_to_kelvin(celsius: float) -> float:
    """Convert a temperature in degrees Celsius to kelvin.

    Args:
        celsius: The temperature in degrees Celsius.
    """
    return celsius + 273.15


def explode(reason: str) -> str:
    """Raise an error, to test how a failing tool is reported.

    Args:
        reason: The error message.
    """
    raise ValueError(f"cannot do it: {reason}")


def wait_forever(seconds: int) -> str:
    """Wait, to test the tool timeout.

    Args:
        seconds: How long to wait.
    """
    RELEASE.wait(30)
    return "too late"


def huge(size: int) -> str:
    """Return a long text, to test the output cap.

    Args:
        size: How many characters.
    """
    return "x" * size


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    user_tools.clear_caches()
    RELEASE.clear()
    yield
    RELEASE.set()
    user_tools.clear_caches()


@pytest.fixture
def demo_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo package, laid out as pip installs it (dist-info with entry points), on sys.path."""
    site = tmp_path / "site"
    shutil.copytree(FIXTURES / "demo_site", site)
    monkeypatch.syspath_prepend(str(site))
    user_tools.clear_caches()


def native_script(tool: str, args: dict[str, Any]) -> ScriptedChatModel:
    return (
        ScriptedChatModel()
        .enqueue_text(f"1. {tool}\n2. answer")
        .enqueue_tool_call(tool, args)
        .enqueue_text("DONE")
        .enqueue_text("Here is the answer.")
    )


def constrained_script(tool: str, args: dict[str, Any]) -> ScriptedChatModel:
    import json

    return (
        ScriptedChatModel()
        .enqueue_text(f"1. {tool}\n2. answer")
        .enqueue_text(json.dumps({"tool": tool, "arguments": args}))
        .enqueue_text('{"final_answer": "DONE"}')
        .enqueue_text("Here is the answer.")
    )


def run(
    model: ScriptedChatModel,
    settings: Settings,
    question: str = "Please use my tool.",
    tools: list[Callable[..., Any]] | None = None,
) -> dict[str, Any]:
    graph = build_graph(lambda _s: model, tools=tools or [])
    state: dict[str, Any] = graph.invoke({"messages": [HumanMessage(question)]}, context=settings)
    return state


def tool_result(state: dict[str, Any]) -> ToolMessage:
    [message] = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    return message


def check_offered(model: ScriptedChatModel, strategy: str, tool: str, others: set[str]) -> None:
    """The act request offered `tool` and `others`: bound (native) or in the schema."""
    if strategy == "native":
        offered = set(model.bound_tools[1])
    else:
        schema = model.call_kwargs[1]["format"]
        offered = {choice["properties"]["tool"]["const"] for choice in schema["anyOf"][:-1]}
        assert all(not tools for tools in model.bound_tools)
    assert offered == {tool, *others}
    plan_prompt = str(model.calls[0][0].content)
    assert f"- {tool}: " in plan_prompt  # the plan prompt lists it with its summary


SCRIPTS = {"native": native_script, "constrained": constrained_script}
STRATEGIES = pytest.mark.parametrize("strategy", ["native", "constrained"])


@STRATEGIES
def test_a_tool_from_a_file(strategy: str) -> None:
    model = SCRIPTS[strategy]("word_count", {"text": "one two three"})
    # a Settings made directly (as Studio does from its context): the file's tools join `tools`
    settings = Settings(
        tools=("sql_query",), user_tools=(f"{GOOD}:word_count",), tool_strategy=strategy
    )
    state = run(model, settings)
    result = tool_result(state)
    assert result.status == "success" and result.content == "3"
    assert state["tool_runs"][0]["name"] == "word_count"
    assert state["messages"][-1].content == "Here is the answer."
    check_offered(model, strategy, "word_count", {"sql_query"})
    assert "Count the words in a text." in str(model.calls[0][0].content)


@STRATEGIES
def test_a_tool_from_an_installed_package(strategy: str, demo_package: None) -> None:
    model = SCRIPTS[strategy]("shout", {"text": "quack"})
    state = run(model, Settings(tools=("shout", "web_search"), tool_strategy=strategy))
    assert tool_result(state).content == "QUACK"
    check_offered(model, strategy, "shout", {"web_search"})
    assert "Upper-case a text." in str(model.calls[0][0].content)


@STRATEGIES
def test_a_tool_given_to_build_graph(strategy: str) -> None:
    model = SCRIPTS[strategy]("celsius_to_kelvin", {"celsius": 20})
    # settings that name no user tool: the graph's own tools join them in every run
    settings = Settings(tools=("sql_query",), tool_strategy=strategy)
    state = run(model, settings, "20 C in kelvin?", tools=[celsius_to_kelvin])
    assert tool_result(state).content == "293.15"
    check_offered(model, strategy, "celsius_to_kelvin", {"sql_query"})
    if strategy == "constrained":  # the schema comes from the signature and the docstring
        arguments = model.call_kwargs[1]["format"]["anyOf"][1]["properties"]["arguments"]
        assert arguments["properties"]["celsius"] == {
            "type": "number",
            "description": "The temperature in degrees Celsius.",
        }
        assert arguments["required"] == ["celsius"]


def test_the_graph_refuses_functions_it_cannot_describe() -> None:
    def untyped(text):  # type: ignore[no-untyped-def]
        """Echo.

        Args:
            text: The text.
        """
        return text

    with pytest.raises(ToolLoadError, match=r"parameter `text` has no type annotation") as info:
        build_graph(tools=[untyped])
    assert "test_user_tools_graph.test_the_graph_refuses_functions" in str(info.value)

    def sql_query(query: str) -> str:
        """Shadow the built-in.

        Args:
            query: SQL.
        """
        return query

    with pytest.raises(ToolLoadError, match=r"`sql_query` .* clashes with a built-in tool"):
        build_graph(tools=[sql_query])


def test_a_graph_tool_clashing_with_a_file_tool_is_one_clear_error() -> None:
    def word_count(text: str) -> int:
        """Count words differently.

        Args:
            text: The text.
        """
        return 0

    model = ScriptedChatModel()
    graph = build_graph(lambda _s: model, tools=[word_count])
    with pytest.raises(ToolLoadError, match=r"`word_count` in file .*good_tools.py clashes"):
        graph.invoke(
            {"messages": [HumanMessage("q")]},
            context=Settings(user_tools=(f"{GOOD}:word_count",)),
        )


@STRATEGIES
def test_a_tool_that_raises_is_reported_and_the_run_goes_on(strategy: str) -> None:
    model = SCRIPTS[strategy]("explode", {"reason": "no ducks"})
    state = run(model, Settings(tools=(), tool_strategy=strategy), tools=[explode])
    result = tool_result(state)
    assert result.status == "error"
    assert result.content == (
        'Error: `explode` with arguments {"reason": "no ducks"} failed: ValueError: cannot do '
        "it: no ducks Try again with other arguments, or use another tool from [explode]."
    )
    second_act = str(model.calls[2])
    assert "ValueError: cannot do it: no ducks" in second_act  # the model read the error
    assert state["messages"][-1].content == "Here is the answer."


def test_a_tool_that_hangs_hits_tool_timeout() -> None:
    model = native_script("wait_forever", {"seconds": 60})
    settings = Settings(tools=(), tool_timeout=0.3, tool_strategy="native")
    state = run(model, settings, tools=[wait_forever])
    result = tool_result(state)
    assert result.content == (
        'Error: `wait_forever` with arguments {"seconds": 60} timed out after 0.3 s. '
        "Try a simpler request, or another tool."
    )
    assert state["tool_runs"][0]["seconds"] < 5
    assert state["messages"][-1].content == "Here is the answer."


def test_a_tool_that_returns_too_much_is_capped() -> None:
    model = constrained_script("huge", {"size": 50_000})
    settings = Settings(tools=(), max_tool_output=100, tool_strategy="constrained")
    state = run(model, settings, tools=[huge])
    content = tool_result(state).content
    assert content.startswith("x" * 100 + "\n… [output cut: only the first 100 of 50000")
    assert len(content) < 300


def test_arguments_are_checked_against_the_user_tools_schema() -> None:
    model = native_script("celsius_to_kelvin", {"celsius": "warm"})
    state = run(model, Settings(tools=(), tool_strategy="native"), tools=[celsius_to_kelvin])
    result = tool_result(state)
    assert result.status == "error"
    assert "has invalid arguments (celsius: Input should be a valid number" in result.content
    assert "Expected arguments: {celsius: number}" in result.content


def test_an_image_question_is_not_offered_user_tools_a_text_question_is() -> None:
    model = (
        ScriptedChatModel()
        .enqueue_text("1. caption_image")
        .enqueue_text("DONE")
        .enqueue_text("A duck.")
    )
    state = run(
        model,
        Settings(tools=("caption_image", "sql_query"), tool_strategy="native"),
        "What is in photo.png?",
        tools=[celsius_to_kelvin],
    )
    assert state["offered"] == ["caption_image"]
    assert model.bound_tools[1] == ["caption_image"]
    model = native_script("celsius_to_kelvin", {"celsius": 1})
    state = run(
        model,
        Settings(tools=("caption_image", "sql_query"), tool_strategy="native"),
        "1 C in kelvin?",
        tools=[celsius_to_kelvin],
    )
    assert state["offered"] == ["sql_query", "celsius_to_kelvin"]


def test_the_studio_graph_uses_tools_from_the_environment(
    fake_ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ollagraph.graphs.agent import graph

    monkeypatch.setenv("OLLAGRAPH_USER_TOOLS", f"{GOOD}:word_count")
    monkeypatch.setenv("OLLAGRAPH_TOOLS", "sql_query")
    monkeypatch.setenv("OLLAGRAPH_TOOL_STRATEGY", "native")
    fake_ollama.enqueue_text("1. word_count\n2. answer")
    fake_ollama.enqueue_tool_call("word_count", {"text": "a b"})
    fake_ollama.enqueue_text("DONE")
    fake_ollama.enqueue_text("Two words.")
    state = graph.invoke({"messages": [HumanMessage("How many words in 'a b'?")]})
    assert tool_result(state).content == "2"
    offered = [t["function"]["name"] for t in fake_ollama.chat_requests[1]["tools"]]
    assert offered == ["sql_query", "word_count"]
    assert state["messages"][-1].content == "Two words."


@STRATEGIES
def test_a_session_offers_and_runs_its_own_tools(strategy: str) -> None:
    from ollagraph.agents.session import Session

    model = SCRIPTS[strategy]("celsius_to_kelvin", {"celsius": 100})
    settings = Settings(tools=("sql_query",), tool_strategy=strategy)
    session = Session(settings, model_factory=lambda _s: model, tools=[celsius_to_kelvin])
    turn = session.ask("100 C in kelvin?")
    assert [(call["name"], call["output"]) for call in turn.tool_calls] == [
        ("celsius_to_kelvin", "373.15")
    ]
    check_offered(model, strategy, "celsius_to_kelvin", {"sql_query"})
