"""What makes a question acceptable, shared by `agent ask` and each `agent chat` line."""

from __future__ import annotations

MAX_QUESTION_CHARS = 20_000


def question_problem(text: str) -> str | None:
    """Say what is wrong with a question, or return None when it can be asked.

    Args:
        text: The question, already stripped of surrounding whitespace.
    """
    if not text:
        return "The question is empty."
    if len(text) > MAX_QUESTION_CHARS:
        return f"The question is {len(text)} characters long; the limit is {MAX_QUESTION_CHARS}."
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # bytes that were not UTF-8 arrive as lone surrogates
        return "The question is not valid UTF-8 text; check the terminal encoding (LANG, LC_ALL)."
    return None


__all__ = ["MAX_QUESTION_CHARS", "question_problem"]
