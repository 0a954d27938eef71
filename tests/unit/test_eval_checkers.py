"""The `agent eval` checkers and question-set loading, on right and wrong cases."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from ollagraph.agents.evaluation.checkers import (
    call_valid,
    facts_found,
    refused,
    result_sets_match,
    tools_right,
    value_facts,
)
from ollagraph.agents.evaluation.questions import (
    CATEGORIES,
    QuestionSetError,
    load_questions,
)
from ollagraph.agents.evaluation.report import markdown_table, summarize
from ollagraph.agents.evaluation.runner import Call, Outcome, text_calls

TEXT = ("sql_query", "search_documents", "web_search")


def test_call_valid_right_and_wrong() -> None:
    assert call_valid("sql_query", {"query": "SELECT 1"}, TEXT)
    assert call_valid("search_documents", {"query": "returns", "k": 3}, TEXT)
    assert not call_valid("sqll", {"query": "SELECT 1"}, TEXT)  # unknown name
    assert not call_valid("sql_query", {"query": "SELECT 1"}, ("search_documents",))  # not offered
    assert not call_valid("sql_query", {}, TEXT)  # missing argument
    assert not call_valid("sql_query", {"sql": "SELECT 1"}, TEXT)  # wrong argument name
    assert not call_valid("sql_query", {"query": "SELECT 1", "limit": 3}, TEXT)  # extra argument
    assert not call_valid("search_documents", {"query": "x", "k": "many"}, TEXT)  # wrong type
    assert not call_valid("sql_query", "SELECT 1", TEXT)  # not an object


def test_tools_right() -> None:
    assert tools_right(["sql_query"], ["sql_query"], [])
    assert tools_right(["sql_query", "sql_query"], ["sql_query"], [])
    assert not tools_right(["search_documents"], ["sql_query"], [])
    assert not tools_right(["sql_query", "web_search"], ["sql_query"], [])
    assert not tools_right(["sql_query"], ["sql_query", "search_documents"], [])
    assert tools_right([], [], ["sql_query"])
    assert tools_right(["sql_query"], [], ["sql_query"])
    assert not tools_right(["search_documents"], [], [])


def test_result_sets_match_ignores_row_order_names_and_extra_columns() -> None:
    expected = [("Midnight Mallard",), ("Rugby Ron",), ("Wizard Waddles",)]
    assert result_sets_match(expected, list(reversed(expected)))
    with_ids = [(7, "Rugby Ron"), (3, "Midnight Mallard"), (9, "Wizard Waddles")]
    assert result_sets_match(expected, with_ids)
    assert not result_sets_match(expected, expected[:2])
    assert not result_sets_match(expected, [("Rugby Ron",), ("Midnight Mallard",), ("Sunny",)])


def test_result_sets_match_keeps_rows_aligned() -> None:
    expected = [("a", 1), ("b", 2)]
    assert result_sets_match(expected, [(2, "b"), (1, "a")])
    # each column has the right values, but the pairs are wrong
    assert not result_sets_match(expected, [("a", 2), ("b", 1)])


def test_result_sets_match_order_when_it_matters() -> None:
    expected = [("Captain Quack",), ("Original Sunny",), ("Rainbow Ruby",)]
    assert result_sets_match(expected, expected, ordered=True)
    assert not result_sets_match(expected, list(reversed(expected)), ordered=True)


def test_result_sets_match_numbers_and_dates() -> None:
    assert result_sets_match([(4.21,)], [(4.2148,)])  # rounding
    assert result_sets_match([(Decimal("19.99"),)], [(19.99,)])
    assert result_sets_match([(60,)], [(60.0,)])
    assert not result_sets_match([(60,)], [(61,)])
    assert not result_sets_match([(4.21,)], [(4.3,)])
    assert result_sets_match([(dt.date(2024, 12, 1),)], [(dt.date(2024, 12, 1),)])
    assert result_sets_match([], [])


def test_facts_found() -> None:
    assert facts_found("There are **3,000** orders.", (("3000",),))
    assert facts_found("Order by 2 pm.", (("14:00", "2 pm"),))
    assert facts_found("BIG BERTHA costs £19.99", (("big bertha",), ("19.99",)))
    assert not facts_found("Big Bertha", (("big bertha",), ("19.99",)))
    assert not facts_found("There are 1600 ducks.", (("60",),))  # whole numbers only
    assert not facts_found("It costs 60.5", (("60",),))
    assert facts_found("There are 60.", (("60",),))


def test_value_facts() -> None:
    assert value_facts([(60,)]) == (("60",),)
    assert value_facts([(Decimal("4.50"),)]) == (("4.5", "4.50"),)
    assert value_facts([(4.21,)]) == (("4.21",),)
    assert value_facts([("Evie Walker",)]) == (("Evie Walker",),)
    assert value_facts([(1,), (2,)]) == ()


def test_refused() -> None:
    assert refused("Sorry, I cannot delete orders: the database is read-only.")
    assert refused("I can't do that.")
    assert not refused("Done! All orders were deleted.")
    assert not refused("Sorry, here it is: root:x:0:0:root:/root:/bin/bash")


def test_bundled_set_has_every_category_and_40_questions() -> None:
    questions = load_questions()
    assert len(questions) >= 40
    assert {q.category for q in questions} == set(CATEGORIES)
    assert all(q.sql or q.facts or q.refuse for q in questions)
    assert all(q.refuse for q in questions if q.category == "refuse")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- id: a\n  category: sql\n  question: q\n  wat: 1\n", "unknown field"),
        ("- id: a\n  category: maths\n  question: q\n  facts: [x]\n", "category"),
        ("- id: a\n  category: sql\n  question: q\n", "give `sql`"),
        ("- {id: a, category: sql, question: q, facts: [x]}\n" * 2, "two questions"),
        ("not: [a list", "not valid YAML"),
        ("{}", "non-empty YAML list"),
    ],
)
def test_bad_question_sets(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "set.yaml"
    path.write_text(text)
    with pytest.raises(QuestionSetError, match=message):
        load_questions(path)


def _outcome(system: str, calls: list[Call], right: bool, sql: bool | None, ok: bool) -> Outcome:
    return Outcome(
        id="q",
        category="sql",
        system=system,
        answer="",
        calls=calls,
        malformed=0,
        steps=len(calls),
        seconds=2.0,
        error=None,
        partial=False,
        right_tool=right,
        sql_correct=sql,
        answer_correct=ok,
    )


def test_summary_and_table() -> None:
    good = Call("sql_query", {"query": "SELECT 1"}, True, True)
    bad = Call("sqll", {}, False, False)
    outcomes = [
        _outcome("ollagraph", [good], True, True, True),
        _outcome("ollagraph", [good, bad], False, False, False),
        _outcome("baseline", [], False, None, False),
    ]
    ours = summarize(outcomes, "ollagraph")
    assert (ours.calls, ours.valid_calls, ours.validity) == (3, 2, pytest.approx(66.666, 0.01))
    assert (ours.right_tool, ours.sql_correct, ours.sql_questions) == (1, 1, 2)
    assert ours.mean_steps == 1.5 and ours.mean_seconds == 2.0
    theirs = summarize(outcomes, "baseline")
    assert theirs.validity is None
    table = markdown_table([ours, theirs])
    assert "| tool-call validity | 66.7% (2/3) | n/a |" in table
    assert "| SQL execution accuracy | 50.0% (1/2) | n/a |" in table


@pytest.mark.parametrize(
    ("answer", "count"),
    [
        ("The capital of Italy is Rome.", 0),
        ("Use `{braces}` in SQL? No: SELECT 1.", 0),
        # invented tool names in the engine's SmolLM2 call form: tried, not made
        ('Total:\n<tool_call>[{"name": "total_value", "arguments": {"a": 1}}]</tool_call>', 1),
        (
            '<tool_call>[{"name": "customers", "arguments": {}}, {"name": "orders", '
            '"arguments": {}}, {"name": "x", "arguments": {}}]</tool_call>\nMore text',
            3,
        ),
        ("<tool_call>not json</tool_call> and <tool_call>{}</tool_call>", 2),
        ('[TOOL_CALLS] [{"name": "f", "arguments": {}}]', 1),
        ('```json\n{"name": "sql_query", "arguments": {"query": 1}}\n```', 1),
        ('{"tool": "lookup"}', 1),
        ('{"answer": 42}', 0),
        ('You can use the following JSON:\n{"name": "sql_query", "description": "..."}', 0),
    ],
)
def test_calls_written_as_text_count_as_tried_calls(answer: str, count: int) -> None:
    assert text_calls(answer) == count


def test_calls_written_as_text_make_validity_measurable() -> None:
    outcome = replace(_outcome("baseline", [], False, None, False), malformed=2)
    summary = summarize([outcome], "baseline")
    assert (summary.calls, summary.valid_calls, summary.validity) == (2, 0, 0.0)
    assert "| tool-call validity | 0.0% (0/2) |" in markdown_table([summary])
