"""The question-set format of `agent eval`, and its loading.

A set is a YAML list of questions (see `ollagraph/data/eval/questions.yaml`). Each names its
category, the tools a right answer calls, and what a right answer is: the rows of a SQL query on
the database (so the expectation stays true when the sample is rebuilt), facts the answer must
contain, or a refusal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ollagraph.agents.errors import QuestionSetError

CATEGORIES = ("sql", "documents", "both", "no_tool", "refuse")
KNOWN_KEYS = {"id", "category", "question", "tools", "allowed", "sql", "ordered", "facts", "refuse"}

Fact = tuple[str, ...]
"""One expected fact: its alternatives (any one of them in the answer is enough)."""


@dataclass(frozen=True)
class Question:
    """One question of an evaluation set.

    Attributes:
        id: A unique name.
        category: One of `CATEGORIES`.
        question: What the user asks.
        tools: The tools a right answer calls (empty: none).
        allowed: Tools that may also be called without counting as a wrong choice.
        sql: A query whose rows are the expected result set, or None.
        ordered: The row order of `sql`'s result matters.
        facts: Facts the answer must contain, each a tuple of alternatives.
        refuse: The right answer is a refusal.
    """

    id: str
    category: str
    question: str
    tools: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()
    sql: str | None = None
    ordered: bool = False
    facts: tuple[Fact, ...] = field(default_factory=tuple)
    refuse: bool = False


def default_questions_path() -> Path:
    """Return the path of the bundled public question set."""
    import ollagraph.data

    return Path(ollagraph.data.__file__).resolve().parent / "eval" / "questions.yaml"


def _strings(value: Any, where: str, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise QuestionSetError(f"{where}: `{key}` must be a list of strings.")
    return tuple(value)


def _facts(value: Any, where: str) -> tuple[Fact, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise QuestionSetError(f"{where}: `facts` must be a list.")
    facts: list[Fact] = []
    for item in value:
        options = item if isinstance(item, list) else [item]
        if not options or not all(isinstance(o, str | int | float) for o in options):
            raise QuestionSetError(f"{where}: each fact is a string or a list of strings.")
        facts.append(tuple(str(o) for o in options))
    return tuple(facts)


def parse_question(entry: Any, index: int) -> Question:
    """Build a `Question` from one entry of a set, checking its fields.

    Args:
        entry: The parsed YAML mapping.
        index: Its position in the set (for messages).

    Raises:
        QuestionSetError: A field is missing, unknown or of the wrong type.
    """
    where = f"question {index + 1}"
    if not isinstance(entry, dict):
        raise QuestionSetError(f"{where}: expected a mapping of fields.")
    where = f"question {index + 1} ({entry.get('id', 'no id')})"
    unknown = sorted(set(entry) - KNOWN_KEYS)
    if unknown:
        raise QuestionSetError(f"{where}: unknown field(s) {', '.join(unknown)}.")
    for key in ("id", "category", "question"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise QuestionSetError(f"{where}: `{key}` must be a non-empty string.")
    if entry["category"] not in CATEGORIES:
        raise QuestionSetError(f"{where}: category must be one of {', '.join(CATEGORIES)}.")
    sql = entry.get("sql")
    if sql is not None and not isinstance(sql, str):
        raise QuestionSetError(f"{where}: `sql` must be a string.")
    question = Question(
        id=entry["id"],
        category=entry["category"],
        question=entry["question"].strip(),
        tools=_strings(entry.get("tools"), where, "tools"),
        allowed=_strings(entry.get("allowed"), where, "allowed"),
        sql=sql,
        ordered=bool(entry.get("ordered", False)),
        facts=_facts(entry.get("facts"), where),
        refuse=bool(entry.get("refuse", False)),
    )
    if not (question.sql or question.facts or question.refuse):
        raise QuestionSetError(f"{where}: give `sql`, `facts` or `refuse: true`.")
    return question


def load_questions(path: Path | None = None) -> list[Question]:
    """Read a question set.

    Args:
        path: A YAML file (default: the bundled public set).

    Raises:
        QuestionSetError: The file cannot be read, is not YAML, or has an invalid entry.
    """
    import yaml

    path = path or default_questions_path()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise QuestionSetError(f"Cannot read the question set {path}: {exc.strerror}.") from None
    except yaml.YAMLError as exc:
        raise QuestionSetError(f"The question set {path} is not valid YAML: {exc}") from None
    if not isinstance(data, list) or not data:
        raise QuestionSetError(f"The question set {path} must be a non-empty YAML list.")
    questions = [parse_question(entry, i) for i, entry in enumerate(data)]
    seen: set[str] = set()
    for q in questions:
        if q.id in seen:
            raise QuestionSetError(f"The question set {path} has two questions with id {q.id}.")
        seen.add(q.id)
    return questions


__all__ = [
    "CATEGORIES",
    "Question",
    "QuestionSetError",
    "default_questions_path",
    "load_questions",
    "parse_question",
]
