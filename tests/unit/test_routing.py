"""Routing: which tools each question is offered (image requests get one image tool)."""

from __future__ import annotations

import pytest

from ollagraph.agents.config import ALL_TOOLS, TEXT_TOOLS
from ollagraph.graphs.routing import image_tool_for, is_image_request, names_a_table, select_tools


@pytest.mark.parametrize(
    ("question", "tool"),
    [
        ("What is in photos/duck.jpg?", "caption_image"),
        ("Describe ~/Pictures/IMG_0042.JPEG", "caption_image"),
        ("Is the duck in ./shelf.png yellow?", "caption_image"),
        ("Upscale old/scan.png please", "upscale_image"),
        ("Make duck.webp bigger and sharper", "upscale_image"),
        ("Remember the faces in team.jpg", "embed_faces"),
        ("Add the faces from party.png to the store", "embed_faces"),
        ("Who is the person in visitor.jpg?", "find_similar_faces"),
        ("Find faces similar to the one in c:/shots/a.bmp", "find_similar_faces"),
        ("Draw a rubber duck wearing a top hat", "generate_image"),
        ("Generate an image of a duck pond at sunset", "generate_image"),
        ("Create a picture of three ducks", "generate_image"),
        ("Please make me a logo for Quackers & Co.", "generate_image"),
        ("What does data:image/png;base64,iVBORw0 show?", "caption_image"),
        ("How many ducks are in the ducks table?", None),
        ("Create a table of customers by country", None),
        ("Which duck sold the most units?", None),
        ("What is the return policy?", None),
        ("Make a summary of the shipping document", None),
    ],
)
def test_image_tool_for(question: str, tool: str | None) -> None:
    assert image_tool_for(question) == tool
    assert is_image_request(question) == (tool is not None)


def test_select_tools_offers_one_image_tool_or_the_text_tools() -> None:
    assert select_tools("What is in duck.jpg?", ALL_TOOLS) == ("caption_image",)
    assert select_tools("How many ducks are there?", ALL_TOOLS) == TEXT_TOOLS
    assert select_tools("How many ducks?", ("sql_query", "caption_image")) == ("sql_query",)


def test_disabled_image_tools_are_never_offered() -> None:
    assert select_tools("What is in duck.jpg?", TEXT_TOOLS) == TEXT_TOOLS
    assert select_tools("Draw a duck", ("sql_query",)) == ("sql_query",)
    assert select_tools("Draw a duck", ("caption_image",)) == ()


TABLES = ("ducks", "orders", "order_items", "customers")


@pytest.mark.parametrize(
    ("question", "named"),
    [
        ("How many ducks are in the ducks table?", True),
        ("Drop the ducks table.", True),
        ("Count the rows of table orders", True),
        ("What columns does table `order_items` have?", True),
        ("Add a customer to the customers table", True),
        ("Compare the tables orders and customers", True),
        ("How many ducks do you sell?", False),
        ("Which customers ordered most?", False),
        ("Put the ducks on the table", False),  # a table, but not one of the database's
        ("Is the duckstable open?", False),
        ("Does the orders tablet app work?", False),
    ],
)
def test_names_a_table(question: str, named: bool) -> None:
    assert names_a_table(question, TABLES) is named


def test_a_question_naming_a_table_is_offered_sql_alone() -> None:
    question = "How many ducks are in the ducks table?"
    assert select_tools(question, TEXT_TOOLS, TABLES) == ("sql_query",)
    assert select_tools(question, TEXT_TOOLS) == TEXT_TOOLS  # no tables known: no rule
    no_sql = tuple(t for t in TEXT_TOOLS if t != "sql_query")
    assert select_tools(question, no_sql, TABLES) == no_sql  # never a tool that is not enabled
    assert select_tools("Draw the ducks table", ALL_TOOLS, TABLES) == ("generate_image",)
