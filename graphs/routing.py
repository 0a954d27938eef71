"""Which tools a question is offered: image requests go to the image tools, the rest to text tools.

Small models choose badly among many tools, so the graph does not show them all eight. A question
that names an image file (or carries a data URL) is offered the one image tool its wording asks
for — upscale, remember faces, find similar faces, or else a caption/answer about the image — and
a question that asks for a new picture is offered `generate_image`. A question that speaks of one
of the database's tables as a table ("How many ducks are in the ducks table?") is offered
`sql_query` alone: SmolLM2-135M, offered everything, searched the documents for it four times.
Every other question is offered the enabled text tools (SQL, documents, web). Only enabled tools
are ever offered; when routing finds none of them enabled, the text tools are used.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from ollagraph.agents.config import IMAGE_TOOLS

_IMAGE_REF = re.compile(
    r"(data:image/|base64:|[\w~./\\:-]+\.(?:png|jpe?g|webp|bmp|gif|tiff?)\b)", re.IGNORECASE
)
_PICTURE = r"(?:image|picture|photo|illustration|drawing|painting|artwork|logo|icon|portrait)"
_GENERATE = re.compile(
    rf"\b(?:draw|paint|sketch|illustrate)\b|\b(?:generate|create|make|render|design|produce)\b"
    rf"(?:\W+\w+){{0,4}}?\W+{_PICTURE}s?\b",
    re.IGNORECASE,
)
_UPSCALE = re.compile(
    r"\b(?:upscale|upscaling|enlarge|super[- ]?resolution|higher resolution|increase the "
    r"resolution|sharpen|bigger|larger)\b",
    re.IGNORECASE,
)
_FACES = re.compile(r"\bfaces?\b|\bwho\b|\bperson\b|\bpeople\b|\bsame person\b", re.IGNORECASE)
_REMEMBER = re.compile(
    r"\b(?:remember|store|save|add|index|enrol|enroll|register|embed)\b", re.IGNORECASE
)


def is_image_request(question: str) -> bool:
    """True when the question names an image file or data URL, or asks for a new picture."""
    return bool(_IMAGE_REF.search(question) or _GENERATE.search(question))


def image_tool_for(question: str) -> str | None:
    """The image tool a question asks for, or None when it is not an image request.

    Args:
        question: The user's latest message.
    """
    if not _IMAGE_REF.search(question):
        return "generate_image" if _GENERATE.search(question) else None
    if _UPSCALE.search(question):
        return "upscale_image"
    if _FACES.search(question):
        return "embed_faces" if _REMEMBER.search(question) else "find_similar_faces"
    return "caption_image"


def names_a_table(question: str, tables: Iterable[str]) -> bool:
    """True when the question names one of `tables` as a table ("the ducks table").

    "table `orders`" counts too; speaking of what a table holds ("how many ducks") does not.

    Args:
        question: The user's latest message.
        tables: The database's table names.
    """
    for table in tables:
        name = re.escape(table)
        quoted = rf"[`'\"]?{name}[`'\"]?"
        if re.search(rf"(?<!\w){quoted}\s+tables?\b|\btables?\s+{quoted}(?!\w)", question, re.I):
            return True
    return False


def select_tools(
    question: str, enabled: Sequence[str], tables: Iterable[str] = ()
) -> tuple[str, ...]:
    """The tools to offer for `question`, out of the `enabled` ones.

    Args:
        question: The user's latest message.
        enabled: The tools the settings allow.
        tables: The database's table names (for questions that name one).
    """
    tool = image_tool_for(question)
    if tool is not None and tool in enabled:
        return (tool,)
    if "sql_query" in enabled and names_a_table(question, tables):
        return ("sql_query",)
    return tuple(name for name in enabled if name not in IMAGE_TOOLS)


__all__ = ["image_tool_for", "is_image_request", "names_a_table", "select_tools"]
