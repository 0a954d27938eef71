"""Captioning end to end from the three front doors: `agent image caption`, the `caption_image`
tool, and the agent graph routing an image question to it.

The model is a tiny random BLIP built on disk (tests/tiny_vision.py) and loaded through the real
loading code; its captions are nonsense, so the tests check shapes, routing, batching and errors.
The graph test drives the graph with a scripted chat model (it replays queued replies); the tool
it calls is real.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from langchain_core.messages import HumanMessage, ToolMessage
from PIL import Image

from ollagraph.agents.cli import main
from ollagraph.agents.config import Settings
from ollagraph.agents.workers.pool import default_pool
from ollagraph.graphs.agent import build_graph
from ollagraph.tools.runner import execute
from tests.image_files import huge_png
from tests.scripted_model import ScriptedChatModel
from tests.tiny_vision import build_tiny_blip

pytestmark = [pytest.mark.integration, pytest.mark.torch]


@pytest.fixture(scope="module")
def blip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_blip(tmp_path_factory.mktemp("blip") / "tiny-blip")


@pytest.fixture(autouse=True)
def fresh_pool() -> Iterator[None]:
    yield
    default_pool().close()


def pictures(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"img{i}.png"
        Image.new("RGB", (40 + i, 30), (i * 40 % 256, 100, 200 - i * 20)).save(path)
        paths.append(path)
    return paths


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_cli_captions_a_folder_in_batches_and_reports_bad_files(blip: Path, tmp_path: Path) -> None:
    pictures(tmp_path / "photos", 5)
    (tmp_path / "broken.png").write_text("not a png")
    huge_png(tmp_path / "huge.png")  # a 20000x20000 header: refused before any allocation
    code, out, err = invoke(
        "image", "caption", str(tmp_path / "photos"), str(tmp_path / "broken.png"),
        str(tmp_path / "huge.png"), str(tmp_path / "missing.jpg"), "--model", str(blip),
        "--device", "cpu",
        "--batch-size", "2", "--max-tokens", "4", "-v",
    )  # fmt: skip
    assert code == 1, err  # two inputs could not be read; the five others were captioned
    lines = out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [
        str(tmp_path / "photos" / f"img{i}.png") for i in range(5)
    ]
    assert all(line.split("\t")[1].strip() for line in lines)
    assert "broken.png is not an image" in err and "missing.jpg does not exist" in err
    assert "huge.png is too large to decode safely (400000000 pixels)" in err
    assert "caption: " in err and "on cpu fp32" in err
    assert "3 forward pass(es), batch sizes [2, 2, 1]" in err


def test_cli_json_and_a_precision_note(blip: Path, tmp_path: Path) -> None:
    [path] = pictures(tmp_path, 1)
    code, out, err = invoke(
        "image", "caption", str(path), "--model", str(blip), "--precision", "fp16",
        "--device", "cpu", "--json", "--max-tokens", "3",
    )  # fmt: skip
    assert code == 0, err
    [row] = json.loads(out)
    assert row["input"] == str(path) and isinstance(row["caption"], str)
    assert "Note: fp16 requested on the CPU: using fp32 instead" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "/nowhere/blip"], "Model path /nowhere/blip for image-to-text does not exist"),
        (["--device", "cuda"], "torch sees no CUDA GPU"),
        (["--quantization", "nf4", "--device", "cpu"], "needs a CUDA GPU"),
        (["--offline", "--model", "someone/not-cached-blip"], "not in the local Hugging Face"),
    ],
)
def test_cli_model_and_device_problems_are_one_message(
    blip: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    [path] = pictures(tmp_path, 1)
    code, out, err = invoke("image", "caption", str(path), "--model", str(blip), *args)
    assert code != 0 and out == ""
    assert message in err and "Traceback" not in err


def test_cli_with_no_readable_input(blip: Path, tmp_path: Path) -> None:
    code, _, err = invoke("image", "caption", str(tmp_path / "nope.png"), "--model", str(blip))
    assert code == 1
    assert "does not exist" in err and "None of the inputs could be read" in err


def test_the_caption_image_tool(blip: Path, tmp_path: Path) -> None:
    [path] = pictures(tmp_path, 1)
    settings = Settings(caption_model=str(blip), device="cpu")
    outcome = execute("caption_image", {"image": str(path)}, settings)
    assert outcome.ok, outcome.content
    assert outcome.content.startswith(f"{path}: ") and len(outcome.content) > len(str(path)) + 2
    missing = execute("caption_image", {"image": str(tmp_path / "gone.png")}, settings)
    assert not missing.ok and "does not exist" in missing.content


def test_the_graph_routes_an_image_question_to_caption_image(blip: Path, tmp_path: Path) -> None:
    [path] = pictures(tmp_path, 1)
    model = (
        ScriptedChatModel()
        .enqueue_text("1. caption_image: look at the picture\n2. answer")
        .enqueue_tool_call("caption_image", {"image": str(path)})
        .enqueue_text("DONE")
        .enqueue_text("It shows a picture.")
    )
    graph = build_graph(lambda _settings: model)
    settings = Settings(caption_model=str(blip), device="cpu")
    state = graph.invoke({"messages": [HumanMessage(f"What is in {path}?")]}, context=settings)
    assert state["offered"] == ["caption_image"]
    assert model.bound_tools[1] == ["caption_image"]  # only the routed tool is shown
    [result] = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    assert result.status == "success" and result.content.startswith(f"{path}: ")
    # a text question in the same graph is offered the text tools, not the image ones
    model.enqueue_text("1. answer").enqueue_text("DONE").enqueue_text("Sixty.")
    state = graph.invoke({"messages": [HumanMessage("How many ducks?")]}, context=settings)
    assert state["offered"] == ["sql_query", "search_documents", "web_search"]
