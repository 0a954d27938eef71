"""`agent image generate|upscale` and the `generate_image` / `upscale_image` tools, end to end on
tiny random models built on disk (a Stable Diffusion pipeline, a Swin2SR and an RRDBNet file),
loaded through the real loading code. Outputs are checked for files, sizes and batching."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from ollagraph.agents.cli import main
from ollagraph.agents.config import Settings
from ollagraph.agents.workers.pool import default_pool
from ollagraph.tools.runner import execute
from tests.tiny_diffusion import build_tiny_sd
from tests.tiny_upscale import build_tiny_rrdb, build_tiny_swin2sr

pytestmark = [pytest.mark.integration, pytest.mark.torch]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "sd": build_tiny_sd(root / "sd"),
        "swin2sr": build_tiny_swin2sr(root / "swin2sr", scale=2),
        "rrdb": build_tiny_rrdb(root / "rrdb", scale=4),
    }


@pytest.fixture(autouse=True)
def fresh_pool() -> Iterator[None]:
    yield
    default_pool().close()


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_generate_batches_prompts_and_writes_pngs(models: dict[str, Path], tmp_path: Path) -> None:
    code, out, err = invoke(
        "image", "generate", "a duck", "a pond", "-n", "2", "--width", "64", "--height", "64",
        "--steps", "2", "--seed", "5", "-o", str(tmp_path / "out"), "--model", str(models["sd"]),
        "--device", "cpu", "--batch-size", "4", "--json", "-v",
    )  # fmt: skip
    assert code == 0, err
    rows = json.loads(out)
    assert [r["prompt"] for r in rows] == ["a duck", "a duck", "a pond", "a pond"]
    assert [r["seed"] for r in rows] == [5, 6, 7, 8]
    for row in rows:
        with Image.open(row["path"]) as image:
            assert image.size == (64, 64) and Path(row["path"]).parent == tmp_path / "out"
    assert "1 forward pass(es), batch sizes [4]" in err


def test_generate_refuses_a_bad_size_with_one_message(models: dict[str, Path]) -> None:
    code, out, err = invoke(
        "image", "generate", "a duck", "--width", "70", "--model", str(models["sd"]),
        "--device", "cpu",
    )  # fmt: skip
    assert code != 0 and out == ""
    assert "multiple of 8" in err and "Traceback" not in err


def test_upscale_cli_writes_x2_images_and_skips_bad_files(
    models: dict[str, Path], tmp_path: Path
) -> None:
    sources = []
    for i, size in enumerate([(37, 23), (64, 48)]):
        sources.append(tmp_path / f"small{i}.png")
        Image.new("RGB", size, (30 * i, 90, 160)).save(sources[-1])
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    code, out, err = invoke(
        "image", "upscale", *map(str, sources), str(tmp_path / "bad.jpg"), "--model",
        str(models["swin2sr"]), "--device", "cpu", "-o", str(tmp_path / "big"), "--tile", "32",
    )  # fmt: skip
    assert code == 1, err  # the bad file is reported; the two good ones are written
    written = [Path(line.split("\t")[1]) for line in out.strip().splitlines()]
    assert [p.name for p in written] == ["small0_x2.png", "small1_x2.png"]
    with Image.open(written[0]) as first, Image.open(written[1]) as second:
        assert first.size == (74, 46) and second.size == (128, 96)
    assert "bad.jpg" in err


def test_upscale_tool_with_an_esrgan_weights_file(models: dict[str, Path], tmp_path: Path) -> None:
    source = tmp_path / "tiny.png"
    Image.new("RGB", (20, 12), (200, 100, 0)).save(source)
    settings = Settings(upscale_model=str(models["rrdb"]), device="cpu", image_dir=str(tmp_path))
    outcome = execute("upscale_image", {"image": str(source)}, settings)
    assert outcome.ok, outcome.content
    assert "20x12 -> 80x48" in outcome.content
    with Image.open(tmp_path / "tiny_x4.png") as image:
        assert image.size == (80, 48)


def test_generate_tool_returns_the_saved_path(models: dict[str, Path], tmp_path: Path) -> None:
    settings = Settings(image_model=str(models["sd"]), device="cpu", image_dir=str(tmp_path))
    outcome = execute(
        "generate_image", {"prompt": "a yellow duck", "width": 64, "height": 64, "seed": 3},
        settings,
    )  # fmt: skip
    assert outcome.ok, outcome.content
    assert "64x64, seed 3" in outcome.content
    [png] = tmp_path.glob("*.png")
    assert str(png) in outcome.content
    bad = execute("generate_image", {"prompt": "x", "width": 63, "height": 64}, settings)
    assert not bad.ok and "multiple of 8" in bad.content


def test_faces_cli_stores_then_finds_the_same_face(tmp_path: Path) -> None:
    from tests.requirements import require
    from tests.tiny_faces import build_tiny_face_model, face_photo

    photo = face_photo()
    require(photo is not None, "no face photo: install the dev dependency scikit-image")
    model = build_tiny_face_model(tmp_path / "face-model")
    db = tmp_path / "faces.duckdb"
    common = ["--model", str(model), "--device", "cpu", "--db", str(db)]
    code, out, err = invoke("image", "faces", str(photo), str(tmp_path / "none.png"), *common)
    assert code == 1, err  # the missing file is reported; the photo's face is stored
    assert out.strip() == f"{photo}\t1 face(s) stored" and "none.png does not exist" in err
    code, out, err = invoke("image", "faces", str(photo), "--similar", "3", "--json", *common)
    assert code == 0, err
    [row] = json.loads(out)
    [match] = row["matches"]
    assert match["source"] == str(photo) and match["distance"] < 1e-4


def test_face_tools_remember_and_find(tmp_path: Path) -> None:
    from tests.requirements import require
    from tests.tiny_faces import build_tiny_face_model, face_photo

    photo = face_photo()
    require(photo is not None, "no face photo: install the dev dependency scikit-image")
    settings = Settings(
        face_model=str(build_tiny_face_model(tmp_path / "m")),
        device="cpu",
        faces_db=str(tmp_path / "faces.duckdb"),
    )
    empty = execute("find_similar_faces", {"image": str(photo)}, settings)
    assert not empty.ok and "no faces are stored yet" in empty.content
    stored = execute("embed_faces", {"image": str(photo)}, settings)
    assert (
        stored.ok and "Stored 1 face(s)" in stored.content and "The store has 1." in stored.content
    )
    found = execute("find_similar_faces", {"image": str(photo), "k": 2}, settings)
    assert found.ok and f"1. {photo} (face #" in found.content and "distance 0.000" in found.content
