"""Image inputs are checked from their headers before decoding; one bad input never stops the
others. The huge image is a real PNG header claiming 20000x20000 (a few bytes on disk)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from ollagraph.agents.errors import ImageInputError
from ollagraph.agents.workers.images import (
    ImageLimits,
    expand_inputs,
    is_base64,
    load_image,
    load_images,
)
from tests.image_files import huge_png


def png_bytes(
    width: int = 7, height: int = 5, colour: tuple[int, int, int] = (200, 10, 10)
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


def text_file(path: Path) -> Path:
    path.write_text("not an image")
    return path


def test_a_png_file_loads_as_rgb(tmp_path: Path) -> None:
    path = tmp_path / "red.png"
    path.write_bytes(png_bytes())
    image = load_image(str(path))
    assert image.mode == "RGB" and image.size == (7, 5)
    assert image.getpixel((0, 0)) == (200, 10, 10)


def test_base64_inputs() -> None:
    raw = base64.b64encode(png_bytes(3, 3)).decode()
    for text in (f"data:image/png;base64,{raw}", f"base64:{raw}", raw * 1):
        assert is_base64(text) or len(text) <= 256
    assert load_image(f"data:image/png;base64,{raw}").size == (3, 3)
    assert load_image(f"base64:{raw}").size == (3, 3)
    with pytest.raises(ImageInputError, match="not valid base64"):
        load_image("base64:@@@not-base64@@@")
    with pytest.raises(ImageInputError, match="not an image"):
        load_image("base64:" + base64.b64encode(b"hello world").decode())


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.png", "does not exist"),
        (
            lambda d: (d / "notes.png").write_text("not an image") and d / "notes.png",
            "not an image",
        ),
        (lambda d: huge_png(d / "bomb.png"), "400000000 pixels"),
        (lambda d: huge_png(d / "wide.png", 9000, 9000), "9000x9000"),
    ],
)
def test_bad_inputs_fail_before_decoding(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ImageInputError, match=message):
        load_image(str(make(tmp_path)))


def test_a_huge_image_is_refused_from_its_header_alone(tmp_path: Path) -> None:
    path = huge_png(tmp_path / "bomb.png", 30000, 30000)  # past PIL's own bomb limit too
    assert path.stat().st_size < 1000
    with pytest.raises(ImageInputError, match="900000000 pixels"):
        load_image(str(path))


def test_a_truncated_file_is_a_clear_error(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buffer, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageInputError, match="damaged or truncated"):
        load_image(str(path))


def test_limits_are_configurable(tmp_path: Path) -> None:
    path = tmp_path / "img.png"
    path.write_bytes(png_bytes(100, 100))
    with pytest.raises(ImageInputError, match="limit is 5000 pixels"):
        load_image(str(path), ImageLimits(max_pixels=5000))
    with pytest.raises(ImageInputError, match="limit is 10 bytes"):
        load_image(str(path), ImageLimits(max_bytes=10))


def test_folders_expand_and_bad_files_do_not_stop_the_others(tmp_path: Path) -> None:
    (tmp_path / "b.png").write_bytes(png_bytes(4, 4))
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8 broken")
    (tmp_path / "readme.txt").write_text("skip me")
    (tmp_path / "sub").mkdir()
    expanded = expand_inputs([str(tmp_path), str(tmp_path / "gone.png")])
    assert [Path(p).name for p in expanded] == ["a.jpg", "b.png", "gone.png"]
    results = load_images([str(tmp_path), str(tmp_path / "gone.png")])
    kinds = [type(r).__name__ for _, r in results]
    assert kinds == ["ImageInputError", "Image", "ImageInputError"]
