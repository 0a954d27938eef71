"""plan → act → tools → act → answer over real data.

The chat model is scripted (it replays queued replies); everything else is real: the bundled
sample DuckDB database, the bundled documents ingested into a DuckDB vector store with the real
MiniLM embedding model, llama-index retrieval and the LangGraph graph.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage, ToolMessage

from ollagraph.agents.config import Settings
from ollagraph.graphs.agent import build_graph
from ollagraph.tools.documents import user_store_path
from ollagraph.tools.ingest import ingest
from tests.scripted_model import ScriptedChatModel

pytestmark = pytest.mark.integration

UK_ONLY_SQL = (
    "SELECT COUNT(*) AS orders FROM orders WHERE shipping_method IN ('Next Day', 'Collect')"
)


def test_sql_and_documents_in_one_run_on_the_sample_data() -> None:
    model = (
        ScriptedChatModel()
        .enqueue_text(
            "1. search_documents: which shipping methods are UK only\n"
            "2. sql_query: count those orders\n3. answer"
        )
        .enqueue_tool_call("search_documents", {"query": "shipping methods only in the UK", "k": 3})
        .enqueue_tool_call("sql_query", {"query": UK_ONLY_SQL})
        .enqueue_text("DONE")
        .enqueue_text("243 orders used the UK-only methods (Next Day and Collect).")
    )
    graph = build_graph(lambda _s: model)
    state = graph.invoke(
        {
            "messages": [
                HumanMessage("How many orders used shipping methods only offered in the UK?")
            ]
        },
        context=Settings(tools=("sql_query", "search_documents")),
    )

    docs_result, sql_result = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    assert docs_result.status == "success"
    assert "shipping.md" in docs_result.content  # the right document was retrieved
    assert "Next Day" in docs_result.content
    assert sql_result.status == "success" and "| 243 |" in sql_result.content
    assert [run["name"] for run in state["tool_runs"]] == ["search_documents", "sql_query"]
    assert all(run["ok"] and run["seconds"] > 0 for run in state["tool_runs"])

    # the model saw both results when deciding, and the answer prompt quotes both
    decide_call, answer_call = model.calls[3], model.calls[4]
    assert sum(isinstance(m, ToolMessage) for m in decide_call) == 2
    assert 'tool="search_documents"' in answer_call[-1].content
    assert "| 243 |" in answer_call[-1].content
    assert state["messages"][-1].content.startswith("243 orders")


def test_user_documents_replace_the_sample_once_ingested(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "pond.md").write_text(
        "# Pond maintenance\n\nThe pond pump is serviced every 41 days by Marta.\n"
    )
    settings = Settings(tools=("search_documents",))
    ingest([notes], user_store_path(), settings)

    model = (
        ScriptedChatModel()
        .enqueue_text("1. search_documents\n2. answer")
        .enqueue_tool_call("search_documents", {"query": "how often is the pump serviced"})
        .enqueue_text("DONE")
        .enqueue_text("Every 41 days.")
    )
    state = build_graph(lambda _s: model).invoke(
        {"messages": [HumanMessage("How often is the pump serviced?")]}, context=settings
    )
    [result] = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    assert "every 41 days by Marta" in result.content
    assert "pond.md" in result.content
