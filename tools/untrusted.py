"""Text from outside (web results, document passages) as fenced, quoted data for the model.

A web page or a document can say anything, including "ignore previous instructions". Such text
reaches the model only through `quote`, which cleans it and puts it between two marker lines:

    <<<untrusted source="https://example.com/page">>>
    the text, cleaned and capped
    <<<end untrusted>>>

and the system prompts say that text inside these markers is data, never instructions. Cleaning
strips HTML (tags, comments, scripts and styles with their content), decodes entities, folds
look-alike characters (NFKC, so a full-width `＜＜＜` becomes `<<<`), removes control and invisible
format characters (zero-width spaces, bidi overrides), collapses white space and caps the length
with a note. Any run of three or more `<` or `>` left in the text becomes `‹‹‹` or `›››`, so the
text can neither close its fence nor open a new one.
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ollagraph.agents.config import Settings

OPEN_MARK = "<<<untrusted"
END_MARK = "<<<end untrusted>>>"
# characters one quoted item adds around its text: heading, markers, source, title, cut note
ITEM_OVERHEAD = 200
MIN_ITEM_CHARS = 100

_HIDDEN_BLOCK = re.compile(
    r"<(script|style|noscript|template|head)\b[^>]*>.*?(?:</\1\s*>|\Z)", re.IGNORECASE | re.DOTALL
)
_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
# a tag, a declaration or a processing instruction; not a markdown autolink like <https://...>
_TAG = re.compile(r"</?(?![A-Za-z][\w+.-]*:)[A-Za-z][^<>]*>|<![A-Za-z][^<>]*>|<\?[^<>]*>")
_ANGLES = re.compile(r"<{3,}|>{3,}")
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_ALL_SPACE = re.compile(r"\s+")


def _visible(char: str) -> bool:
    """False for control (Cc), format (Cf), surrogate (Cs) and unassigned (Cn) characters."""
    return unicodedata.category(char) not in {"Cc", "Cf", "Cs", "Cn"}


def _escape_marks(text: str) -> str:
    return _ANGLES.sub(lambda m: ("‹" if m.group()[0] == "<" else "›") * len(m.group()), text)


def clean(text: str, *, keep_lines: bool = False) -> str:
    """Turn outside text (HTML or plain) into plain text that cannot forge a fence marker.

    Tags, comments, and scripts/styles with their content are removed before entities are
    decoded, so escaped markup (`&lt;b&gt;`) survives as visible text, not as a tag.

    Args:
        text: The text, as fetched or stored.
        keep_lines: Keep line breaks (collapsing blank lines to one); otherwise all white space
            becomes single spaces.

    Returns:
        The cleaned text, stripped; no length cap (see `shorten` and `quote`).
    """
    text = _COMMENT.sub(" ", _HIDDEN_BLOCK.sub(" ", text))
    text = html.unescape(_TAG.sub(" ", text))
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(
        char if char in "\n\t" or _visible(char) else (" " if char.isspace() else "")
        for char in text
    )
    if keep_lines:
        lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
        text = _BLANK_LINES.sub("\n\n", "\n".join(lines))
    else:
        text = _ALL_SPACE.sub(" ", text)
    return _escape_marks(text).strip()


def shorten(text: str, limit: int) -> str:
    """Cap already-clean text at `limit` characters, ending it with "…" when cut.

    Args:
        text: Clean text (see `clean`).
        limit: Most characters to return (at least 1).
    """
    limit = max(1, limit)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _attribute(value: str) -> str:
    return shorten(clean(value).replace('"', "'"), 300) or "unknown"


def quote(
    text: str,
    source: str,
    limit: int,
    *,
    title: str | None = None,
    keep_lines: bool = False,
) -> str:
    """Fence outside text as quoted data, with its source, cleaned and capped.

    Args:
        text: The outside text (HTML or plain).
        source: Where it came from (a URL or a file name), shown in the opening marker.
        limit: Most characters of `text` to show; a longer text is cut and a note says so.
        title: A title from the same source, shown on the first line inside the fence.
        keep_lines: Keep the text's line breaks (documents) instead of folding them (snippets).

    Returns:
        `<<<untrusted source="...">>>`, the text, and `<<<end untrusted>>>`, one per line.
    """
    body = clean(text, keep_lines=keep_lines)
    limit = max(1, limit)
    if len(body) > limit:
        body = f"{body[:limit].rstrip()} […] (cut: {limit} of {len(body)} characters shown)"
    heading = shorten(clean(title), 200) if title else ""
    if heading:
        body = f"title: {heading}\n{body}" if body else f"title: {heading}"
    return f'{OPEN_MARK} source="{_attribute(source)}">>>\n{body}\n{END_MARK}'


def item_limit(settings: Settings, count: int) -> int:
    """Characters of text to show for each of `count` quoted items in one tool result.

    At most `settings.max_snippet_chars`, and small enough that all `count` items, with their
    markers, fit in `settings.max_tool_output` (so the runner's output cap does not drop the
    last ones), but not under 100 for that reason.

    Args:
        settings: The run's settings.
        count: How many items the result will hold.
    """
    share = settings.max_tool_output // max(1, count) - ITEM_OVERHEAD
    return min(settings.max_snippet_chars, max(MIN_ITEM_CHARS, share))


def close_open_fence(text: str) -> str:
    """Append the end marker when `text` (cut short, say) stops inside an untrusted fence.

    Args:
        text: Tool output that may contain fences made by `quote`.
    """
    last_open = text.rfind(OPEN_MARK)
    if last_open > text.rfind(END_MARK):
        return f"{text}\n{END_MARK}"
    return text


__all__ = [
    "END_MARK",
    "OPEN_MARK",
    "clean",
    "close_open_fence",
    "item_limit",
    "quote",
    "shorten",
]
