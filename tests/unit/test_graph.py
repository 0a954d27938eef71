"""Graph logic with a scripted chat model (it replays queued replies; it is not a model).

The tools are real: sql_query runs on the real bundled sample DuckDB database.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver

from ollagraph.agents.config import Settings
from ollagraph.agents.errors import ModelError
from ollagraph.graphs.agent import build_graph
from ollagraph.tools import registry
from ollagraph.tools.duck import connect
from tests.scripted_model import ScriptedChatModel, ScriptExhausted

SNAPSHOT = Path(__file__).parent / "snapshots" / "agent_graph.mmd"


def run(model: ScriptedChatModel, question: str, **settings: object) -> dict:
    graph = build_graph(lambda _settings: model)
    ctx = Settings(tools=("sql_query", "web_search"), **settings)  # type: ignore[arg-type]
    return graph.invoke({"messages": [HumanMessage(question)]}, context=ctx)


def tool_messages(state: dict) -> list[ToolMessage]:
    return [m for m in state["messages"] if isinstance(m, ToolMessage)]


def one_web_search(*replies: str, plan: str = "1. web_search") -> ScriptedChatModel:
    """A script: the plan, one `web_search` for "ducks", then `replies` (act decisions, answer)."""
    model = ScriptedChatModel().enqueue_text(plan)
    model.enqueue_tool_call("web_search", {"query": "ducks"})
    for reply in replies:
        model.enqueue_text(reply)
    return model


def web_search_taking_10_s(monkeypatch: pytest.MonkeyPatch, clock: list[float]) -> None:
    """Make `web_search` a stand-in that moves the hand-wound `clock` on by 10 "seconds"."""

    def slow(query: str, max_results: int = 5) -> str:
        """Search the web (a slow stand-in).

        Args:
            query: What to search for.
            max_results: How many results.
        """
        clock[0] += 10
        return "ducks float"

    monkeypatch.setitem(registry.TOOLS, "web_search", slow)


def sample_duck_count() -> int:
    from ollagraph.data import sample_database

    # opened as the tool opens it: DuckDB refuses a second in-process connection to the same
    # file with another configuration
    with connect(sample_database(), read_only=True) as conn:
        return conn.execute("SELECT COUNT(*) FROM ducks").fetchone()[0]


def test_plan_act_tools_act_answer_on_the_sample_database() -> None:
    model = (
        ScriptedChatModel()
        .enqueue_text("1. sql_query: count the rows of ducks\n2. answer")
        .enqueue_tool_call("sql_query", {"query": "SELECT COUNT(*) AS n FROM ducks"})
        .enqueue_text("DONE")
        .enqueue_text("There are 60 ducks.")
    )
    state = run(model, "How many ducks are in the ducks table?")

    assert state["plan"].startswith("1. sql_query")
    [result] = tool_messages(state)
    assert result.status == "success"
    assert f"| {sample_duck_count()} |" in result.content
    [tool_run] = state["tool_runs"]
    assert tool_run["name"] == "sql_query" and tool_run["ok"] and tool_run["seconds"] >= 0
    assert state["steps"] == 1 and state["partial"] is False
    final = state["messages"][-1]
    assert isinstance(final, AIMessage) and final.content == "There are 60 ducks."
    # the DONE decision was replaced by the answer: one AI answer per question, no dangling call
    assert [type(m).__name__ for m in state["messages"]] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
    ]

    plan_call, act_call, act_again, answer_call = model.calls
    assert "ducks" in plan_call[0].content  # the planner sees the tables
    assert isinstance(act_call[0], SystemMessage) and "duck_id" in act_call[0].content
    assert "1. sql_query" in act_call[0].content  # the plan reaches the act prompt
    assert any(isinstance(m, ToolMessage) for m in act_again)  # act sees the tool result
    assert str(sample_duck_count()) in answer_call[-1].content  # the answer is grounded
    assert model.bound_tools[1] == ["sql_query"]  # the question names a table: SQL alone
    assert model.bound_tools[0] == [] and model.bound_tools[3] == []  # plan/answer: no tools
    assert state["offered"] == ["sql_query"]


def test_a_question_that_names_no_table_is_offered_every_text_tool() -> None:
    model = ScriptedChatModel().enqueue_text("1. answer").enqueue_text("DONE").enqueue_text("60.")
    state = run(model, "How many ducks do you sell?")
    assert state["offered"] == ["sql_query", "web_search"]
    assert model.bound_tools[1] == ["sql_query", "web_search"]


def test_wrong_tool_name_comes_back_as_text_and_the_run_continues() -> None:
    model = (
        ScriptedChatModel()
        .enqueue_text("1. sql_query")
        .enqueue_tool_call("sqll", {"query": "SELECT 1"})
        .enqueue_tool_call("sql_query", {"query": "SELECT 1 AS one"})
        .enqueue_text("DONE")
        .enqueue_text("one")
    )
    state = run(model, "q")
    first, second = tool_messages(state)
    assert first.status == "error"
    assert "`sqll` is not a valid tool" in first.content
    assert "sql_query, web_search" in first.content
    assert second.status == "success" and "| 1 |" in second.content
    assert state["messages"][-1].content == "one"


def test_bad_sql_returns_duckdb_message_so_the_model_can_fix_it() -> None:
    model = (
        ScriptedChatModel()
        .enqueue_text("1. sql_query")
        .enqueue_tool_call("sql_query", {"query": "SELECT nme FROM ducks"})
        .enqueue_tool_call(
            "sql_query", {"query": "SELECT name FROM ducks ORDER BY duck_id LIMIT 1"}
        )
        .enqueue_text("DONE")
        .enqueue_text("ok")
    )
    state = run(model, "q")
    bad, good = tool_messages(state)
    assert bad.status == "error"
    assert "DuckDB error" in bad.content and "nme" in bad.content
    assert "SELECT nme FROM ducks" in bad.content  # names the arguments
    assert good.status == "success"


def test_write_statements_are_refused_and_nothing_changes() -> None:
    model = (
        ScriptedChatModel()
        .enqueue_text("1. sql_query")
        .enqueue_tool_call("sql_query", {"query": "DELETE FROM ducks"})
        .enqueue_tool_call("sql_query", {"query": "SELECT 1; DROP TABLE ducks"})
        .enqueue_text("DONE")
        .enqueue_text("no")
    )
    before = sample_duck_count()
    state = run(model, "delete everything")
    delete, multi = tool_messages(state)
    assert "Only read-only queries" in delete.content and "DELETE" in delete.content
    assert "exactly one SQL statement" in multi.content
    assert sample_duck_count() == before


def test_invalid_arguments_name_the_expected_ones() -> None:
    model = (
        ScriptedChatModel()
        .enqueue_text("1. sql_query")
        .enqueue_tool_call("sql_query", {"sql": "SELECT 1"})
        .enqueue_text("DONE")
        .enqueue_text("sorry")
    )
    [msg] = tool_messages(run(model, "q"))
    assert msg.status == "error"
    assert "invalid arguments" in msg.content and "query" in msg.content


def test_a_tool_that_raises_is_reported_to_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(query: str, max_results: int = 5) -> str:
        raise RuntimeError("search backend exploded")

    monkeypatch.setitem(registry.TOOLS, "web_search", broken)
    model = one_web_search("DONE", "The web search failed.")
    state = run(model, "q")
    [msg] = tool_messages(state)
    assert msg.status == "error"
    assert "RuntimeError: search backend exploded" in msg.content and "`web_search`" in msg.content
    assert state["messages"][-1].content == "The web search failed."


def test_a_tool_that_hangs_times_out_and_the_run_continues(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def slow(query: str, max_results: int = 5) -> str:
        time.sleep(5)
        return "too late"

    monkeypatch.setitem(registry.TOOLS, "web_search", slow)
    model = one_web_search("DONE", "Timed out.")
    start = time.perf_counter()
    state = run(model, "q", tool_timeout=0.3)
    assert time.perf_counter() - start < 3
    [msg] = tool_messages(state)
    assert "timed out after 0.3 s" in msg.content
    assert state["tool_runs"][0]["ok"] is False


def test_the_run_deadline_ends_the_loop_with_a_partial_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ollagraph.agents.deadline import Deadline, using_deadline

    now = [0.0]  # a hand-wound clock: the tool spends 10 "seconds" of a 5-second budget
    web_search_taking_10_s(monkeypatch, now)
    # act is skipped after the deadline: the reply is the answer
    model = one_web_search("They float.", plan="1. web_search, twice")
    with using_deadline(Deadline(5, clock=lambda: now[0])):
        state = run(model, "Do ducks float?", run_timeout=5)
    assert state["steps"] == 1 and state["partial"] is True
    assert len(model.calls) == 3  # plan, act, answer: no second act after the deadline
    final = state["messages"][-1].content
    assert final.startswith("Partial answer: I stopped after 10 s (the time limit of 5 s)")
    assert final.endswith("They float.")


def test_step_limit_gives_a_clear_partial_answer() -> None:
    model = ScriptedChatModel().enqueue_text("1. sql_query, again and again")
    for i in range(3):
        model.enqueue_tool_call("sql_query", {"query": f"SELECT {i}"})
    model.enqueue_text("Found 0 and 1.")
    state = run(model, "loop", max_steps=2)
    assert state["partial"] is True and state["steps"] == 2
    final = state["messages"][-1]
    assert final.content.startswith("Partial answer: I stopped after 2 tool steps")
    assert final.content.endswith("Found 0 and 1.")
    assert not any(isinstance(m, AIMessage) and m.tool_calls for m in state["messages"][-1:])
    assert "step limit (2)" in model.calls[-1][-1].content
    with pytest.raises(ScriptExhausted):
        model.invoke("nothing left")  # exactly the queued calls were made


def test_earlier_turns_reach_the_model_as_question_answer_pairs() -> None:
    model = (
        ScriptedChatModel()
        .enqueue_text("1. answer directly")
        .enqueue_text("DONE")
        .enqueue_text("Hello!")
        .enqueue_text("1. answer directly")
        .enqueue_text("DONE")
        .enqueue_text("You said hi.")
    )
    graph = build_graph(lambda _s: model, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t1"}}
    ctx = Settings(tools=())
    graph.invoke({"messages": [HumanMessage("hi")]}, config, context=ctx)
    state = graph.invoke({"messages": [HumanMessage("what did I say?")]}, config, context=ctx)
    assert [m.content for m in state["messages"]] == [
        "hi",
        "Hello!",
        "what did I say?",
        "You said hi.",
    ]
    second_plan = model.calls[3]
    assert [m.content for m in second_plan[1:]] == ["hi", "Hello!", "what did I say?"]


def test_unreachable_model_server_is_a_model_error() -> None:
    graph = build_graph()  # the real ChatOllama, pointed at a closed port by conftest
    with pytest.raises(ModelError, match=r"Could not reach Ollama at http://127\.0\.0\.1:9"):
        graph.invoke({"messages": [HumanMessage("hi")]}, context=Settings(tools=()))


def test_graph_wiring_snapshot() -> None:
    drawn = build_graph().get_graph().draw_mermaid()
    if not SNAPSHOT.exists():  # first run writes it; review and commit the file
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(drawn)
    assert drawn == SNAPSHOT.read_text()


def test_a_repeated_successful_call_goes_to_the_answer() -> None:
    model = (
        ScriptedChatModel()
        .enqueue_text("1. sql_query")
        .enqueue_tool_call("sql_query", {"query": "SELECT 1 AS one"})
        .enqueue_tool_call("sql_query", {"query": "SELECT 1 AS one"})  # the same again
        .enqueue_text("one")
    )
    state = run(model, "q")
    assert len(tool_messages(state)) == 1 and state["steps"] == 1
    assert state["partial"] is False and state["messages"][-1].content == "one"


def test_a_repeated_failed_call_is_run_again() -> None:
    model = (
        ScriptedChatModel()
        .enqueue_text("1. sql_query")
        .enqueue_tool_call("sql_query", {"query": "SELECT nope"})
        .enqueue_tool_call("sql_query", {"query": "SELECT nope"})
        .enqueue_text("DONE")
        .enqueue_text("failed")
    )
    state = run(model, "q")
    assert [m.status for m in tool_messages(state)] == ["error", "error"]


def test_a_call_that_failed_twice_is_not_run_a_third_time() -> None:
    model = ScriptedChatModel().enqueue_text("1. sql_query")
    for _ in range(3):  # the third is not run: the loop goes to the answer
        model.enqueue_tool_call("sql_query", {"query": "INSERT INTO ducks VALUES (1)"})
    model.enqueue_text("I cannot change the database.")
    state = run(model, "Add a duck")
    assert [m.status for m in tool_messages(state)] == ["error", "error"]  # refused twice
    assert state["steps"] == 2 and state["partial"] is False
    assert state["messages"][-1].content == "I cannot change the database."


def test_the_same_arguments_pasted_into_another_tool_go_to_the_answer() -> None:
    model = (
        ScriptedChatModel()
        .enqueue_text("1. sql_query")
        .enqueue_tool_call("sql_query", {"query": "SELECT 1 AS one"})
        .enqueue_tool_call("web_search", {"query": "SELECT 1 AS one"})
        .enqueue_text("one")
    )
    state = run(model, "q")
    assert [m.name for m in tool_messages(state)] == ["sql_query"]
    assert state["messages"][-1].content == "one"


def test_a_run_without_a_caller_deadline_still_keeps_run_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As in Studio: nothing sets a deadline around the run; the graph keeps its own."""
    import ollagraph.graphs.agent as agent_module

    clock = [1_000_000.0]
    monkeypatch.setattr(agent_module.time, "time", lambda: clock[0])
    web_search_taking_10_s(monkeypatch, clock)  # 10 "seconds" of a 5-second budget
    model = one_web_search("They float.")
    state = run(model, "Do ducks float?", run_timeout=5)
    assert state["started"] == pytest.approx(1_000_000.0, abs=1) and state["partial"] is True
    assert len(model.calls) == 3
    assert state["messages"][-1].content.startswith("Partial answer: I stopped after 10 s")
