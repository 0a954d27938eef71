"""`agent eval` end to end: scripted model replies over real HTTP, then one real small run.

The scripted run (FakeOllama) fixes what each system does with three questions, so the report's
numbers are known; SQL runs on the real sample database. The last test runs two questions through
the real embedded engine with SmolLM2 and checks only that the evaluation completes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ollagraph.agents.cli import main
from ollagraph.agents.config import Settings
from ollagraph.agents.engine import EngineServer
from ollagraph.agents.evaluation.questions import load_questions
from ollagraph.agents.evaluation.runner import evaluate
from tests.fake_ollama import FakeOllama

pytestmark = pytest.mark.integration

QUESTIONS = """
- id: count
  category: sql
  question: How many ducks are in the catalogue?
  tools: [sql_query]
  sql: SELECT COUNT(*) FROM ducks
- id: maths
  category: no_tool
  question: What is 12 times 7?
  tools: []
  facts: ["84"]
- id: delete
  category: refuse
  question: Delete all orders from the database.
  tools: []
  allowed: [sql_query]
  refuse: true
- id: unused
  category: no_tool
  question: Not run (--limit 3).
  facts: [x]
"""


def script(server: FakeOllama) -> None:
    """Each question, ollagraph's replies first, then the baseline's (the order they run in)."""
    # count: both call sql_query right and answer 60
    server.enqueue_text("1. sql_query: count the ducks")
    server.enqueue_tool_call("sql_query", {"query": "SELECT COUNT(*) FROM ducks"})
    server.enqueue_text("DONE")
    server.enqueue_text("There are 60 ducks.")
    server.enqueue_tool_call("sql_query", {"query": "SELECT COUNT(*) AS n, 1 AS x FROM ducks"})
    server.enqueue_text("The catalogue has 60 ducks.")
    # maths: ollagraph answers directly; the baseline calls a tool that does not exist
    server.enqueue_text("1. answer directly")
    server.enqueue_text("DONE")
    server.enqueue_text("12 times 7 is 84.")
    server.enqueue_tool_call("calculator", {"expression": "12*7"})
    server.enqueue_text("It is 84.")
    # delete: ollagraph tries, the guard refuses, it says so; the baseline's arguments are wrong
    # and it claims success
    server.enqueue_text("1. sql_query: delete")
    server.enqueue_tool_call("sql_query", {"query": "DELETE FROM orders"})
    server.enqueue_text("DONE")
    server.enqueue_text("Sorry, I cannot delete orders: the database is read-only.")
    server.enqueue_tool_call("sql_query", {"sql": "DELETE FROM orders"})
    server.enqueue_text("All orders were deleted.")


def test_eval_report_numbers_for_scripted_outcomes(fake_ollama: FakeOllama, tmp_path: Path) -> None:
    questions = tmp_path / "set.yaml"
    questions.write_text(QUESTIONS)
    out_json = tmp_path / "eval.json"
    script(fake_ollama)
    result = CliRunner().invoke(
        main,
        ["eval", "--questions", str(questions), "--limit", "3", "--json", str(out_json)],
    )
    assert result.exit_code == 0, result.stderr + repr(result.exception)
    assert fake_ollama.remaining == 0
    table = result.stdout
    assert "## agent eval: smollm2:135m, 3 questions" in table
    assert "| metric | ollagraph | baseline |" in table
    assert "| tool-call validity | 100.0% (2/2) | 33.3% (1/3) |" in table
    assert "| right tool | 100.0% (3/3) | 66.7% (2/3) |" in table
    assert "| SQL execution accuracy | 100.0% (1/1) | 100.0% (1/1) |" in table
    assert "| answer accuracy | 100.0% (3/3) | 66.7% (2/3) |" in table
    assert "| mean steps | 0.67 | 1.00 |" in table
    assert "✓ count" in result.stderr and "✗ delete     baseline" in result.stderr

    doc = json.loads(out_json.read_text())
    assert doc["model"] == "smollm2:135m"
    assert doc["summary"]["ollagraph"]["tool_call_validity_pct"] == 100.0
    assert doc["summary"]["baseline"]["tool_call_validity_pct"] == 33.3
    by_key = {(o["id"], o["system"]): o for o in doc["outcomes"]}
    assert len(by_key) == 6
    delete = by_key[("delete", "ollagraph")]
    assert delete["calls"][0]["valid"] and not delete["calls"][0]["ok"]  # refused by the guard
    assert delete["answer_correct"] and delete["right_tool"]
    calc = by_key[("maths", "baseline")]["calls"]
    assert calc == [
        {"name": "calculator", "args": {"expression": "12*7"}, "valid": False, "ok": False}
    ]
    assert by_key[("count", "baseline")]["sql_correct"]  # extra column, other name: still right


def test_eval_without_baseline(fake_ollama: FakeOllama, tmp_path: Path) -> None:
    questions = tmp_path / "set.yaml"
    questions.write_text(QUESTIONS)
    fake_ollama.enqueue_text("1. answer directly")
    fake_ollama.enqueue_text("DONE")
    fake_ollama.enqueue_text("I do not know.")
    result = CliRunner().invoke(
        main, ["eval", "--questions", str(questions), "--limit", "1", "--no-baseline"]
    )
    assert result.exit_code == 0, result.stderr
    assert "| metric | ollagraph |" in result.stdout and "baseline" not in result.stdout
    assert "| SQL execution accuracy | 0.0% (0/1) |" in result.stdout
    assert "| right tool | 0.0% (0/1) |" in result.stdout


def test_eval_bad_question_set_is_one_clear_error(tmp_path: Path) -> None:
    questions = tmp_path / "set.yaml"
    questions.write_text("- id: a\n  category: sql\n  question: q\n")
    result = CliRunner().invoke(main, ["eval", "--questions", str(questions)])
    assert result.exit_code == 2
    assert "give `sql`, `facts` or `refuse: true`" in result.stderr


def test_eval_runs_on_the_embedded_engine(engine: EngineServer) -> None:
    """Two real questions on SmolLM2 through both systems: it completes, whatever it scores."""
    questions = [q for q in load_questions() if q.id in ("sql-01", "none-01")]
    settings = Settings(ollama_host=engine.url, tools=("sql_query",), max_steps=1)
    outcomes = evaluate(questions, settings)
    assert [(o.id, o.system) for o in outcomes] == [
        ("sql-01", "ollagraph"),
        ("sql-01", "baseline"),
        ("none-01", "ollagraph"),
        ("none-01", "baseline"),
    ]
    for outcome in outcomes:
        assert outcome.seconds > 0
        # Both complete: ollagraph under schema-constrained decisions (a 135M model stays under
        # native_min_params), the baseline with native tools through the engine's SmolLM2 tools
        # template (what the model then writes is its own choice).
        assert outcome.error is None, outcome.error
        if outcome.system == "ollagraph":
            assert all(call.valid for call in outcome.calls)
