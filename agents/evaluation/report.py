"""The report of `agent eval`: per-system metrics as a markdown table, and per-question JSON.

Metrics, per system:

- **tool-call validity**: calls that name an offered tool with schema-valid arguments, out of all
  calls tried. Calls that could not be made count as tried and invalid: those LangChain could
  not parse, and those the final answer writes out as text (`runner.text_calls`: a
  `<tool_call>` block with an invented tool name, a JSON call object as the whole answer).
  "n/a" when the system tried no call at all.
- **right tool**: questions where the required tools were called and nothing outside the allowed
  ones (a run that failed with an error counts as wrong).
- **SQL execution accuracy**: questions with an expected result set where a query the system ran
  returned it.
- **answer accuracy**: questions whose answer holds the expected facts, or refuses when it must.
- **mean steps** (model turns that asked for tools) and **mean latency** (seconds per question).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ollagraph.agents.evaluation.runner import SYSTEMS, Outcome


@dataclass(frozen=True)
class Summary:
    """One system's metrics over a set.

    Attributes:
        system: The system.
        questions: Questions run.
        calls: Tool calls made, malformed ones included.
        valid_calls: Calls with an offered tool name and schema-valid arguments.
        right_tool: Questions with the right tool choice.
        sql_questions: Questions with an expected result set.
        sql_correct: Of those, questions where the system's SQL returned it.
        answers_correct: Questions answered right.
        errors: Questions whose run failed with an error.
        mean_steps: Mean model turns that asked for tools.
        mean_seconds: Mean latency per question.
    """

    system: str
    questions: int
    calls: int
    valid_calls: int
    right_tool: int
    sql_questions: int
    sql_correct: int
    answers_correct: int
    errors: int
    mean_steps: float
    mean_seconds: float

    @property
    def validity(self) -> float | None:
        """Tool-call validity in percent, None when no call was made."""
        return 100.0 * self.valid_calls / self.calls if self.calls else None

    def as_json(self) -> dict[str, Any]:
        """The summary with its percentages, JSON-ready."""
        return {
            **self.__dict__,
            "tool_call_validity_pct": _round(self.validity),
            "right_tool_pct": _round(_pct(self.right_tool, self.questions)),
            "sql_accuracy_pct": _round(_pct(self.sql_correct, self.sql_questions)),
            "answer_accuracy_pct": _round(_pct(self.answers_correct, self.questions)),
        }


def _pct(part: int, whole: int) -> float | None:
    return 100.0 * part / whole if whole else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def summarize(outcomes: Sequence[Outcome], system: str) -> Summary:
    """The metrics of one system.

    Args:
        outcomes: Scored outcomes (any systems; only `system`'s are counted).
        system: The system to summarize.
    """
    mine = [o for o in outcomes if o.system == system]
    sql = [o for o in mine if o.sql_correct is not None]
    return Summary(
        system=system,
        questions=len(mine),
        calls=sum(len(o.calls) + o.malformed for o in mine),
        valid_calls=sum(c.valid for o in mine for c in o.calls),
        right_tool=sum(o.right_tool for o in mine),
        sql_questions=len(sql),
        sql_correct=sum(bool(o.sql_correct) for o in sql),
        answers_correct=sum(o.answer_correct for o in mine),
        errors=sum(o.error is not None for o in mine),
        mean_steps=statistics.fmean(o.steps for o in mine) if mine else 0.0,
        mean_seconds=statistics.fmean(o.seconds for o in mine) if mine else 0.0,
    )


def _cell(part: int, whole: int) -> str:
    value = _pct(part, whole)
    return "n/a" if value is None else f"{value:.1f}% ({part}/{whole})"


def markdown_table(summaries: Sequence[Summary]) -> str:
    """The systems side by side, one metric per row.

    Args:
        summaries: One per system, in column order.
    """
    rows: list[tuple[str, list[str]]] = [
        ("tool-call validity", [_cell(s.valid_calls, s.calls) for s in summaries]),
        ("right tool", [_cell(s.right_tool, s.questions) for s in summaries]),
        ("SQL execution accuracy", [_cell(s.sql_correct, s.sql_questions) for s in summaries]),
        ("answer accuracy", [_cell(s.answers_correct, s.questions) for s in summaries]),
        ("mean steps", [f"{s.mean_steps:.2f}" for s in summaries]),
        ("mean latency", [f"{s.mean_seconds:.2f} s" for s in summaries]),
        ("runs that failed", [f"{s.errors}/{s.questions}" for s in summaries]),
    ]
    lines = [
        "| metric | " + " | ".join(s.system for s in summaries) + " |",
        "|---|" + "---|" * len(summaries),
    ]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows]
    return "\n".join(lines)


def report_json(outcomes: Sequence[Outcome], model: str, questions_path: str) -> dict[str, Any]:
    """The `--json` document: the summaries and every outcome.

    Args:
        outcomes: Scored outcomes.
        model: The model evaluated.
        questions_path: The question set's path.
    """
    systems = [s for s in SYSTEMS if any(o.system == s for o in outcomes)]
    return {
        "model": model,
        "questions": questions_path,
        "summary": {s: summarize(outcomes, s).as_json() for s in systems},
        "outcomes": [o.as_json() for o in outcomes],
    }


def markdown_report(outcomes: Sequence[Outcome], model: str) -> str:
    """The printed report: a title line and the side-by-side table.

    Args:
        outcomes: Scored outcomes.
        model: The model evaluated.
    """
    systems = [s for s in SYSTEMS if any(o.system == s for o in outcomes)]
    summaries = [summarize(outcomes, s) for s in systems]
    count = summaries[0].questions if summaries else 0
    title = f"## agent eval: {model}, {count} questions"
    return f"{title}\n\n{markdown_table(summaries)}\n"


__all__ = ["Summary", "markdown_report", "markdown_table", "report_json", "summarize"]
