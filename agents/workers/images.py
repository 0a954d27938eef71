"""Image inputs for the workers: file paths, folders and base64, checked before decoding.

Every input is checked from its header before any pixel is decoded: a missing file, a file that
is not an image, an image over `max_pixels` (a 20000x20000 PNG is a few KB on disk and 1.2 GB in
memory) or a file over `max_bytes` becomes an `ImageInputError` naming the input, and only then
is the image decoded (a truncated file fails here, also as an `ImageInputError`). `load_images`
returns one result per input, so one bad file never stops the others.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ollagraph.agents.errors import ImageInputError

if TYPE_CHECKING:
    from PIL import Image

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
DEFAULT_MAX_PIXELS = 40_000_000  # 40 MP: an 8K photo fits; a decompression bomb does not
DEFAULT_MAX_BYTES = 64 * 2**20
_DATA_URL = re.compile(r"^data:image/[\w.+-]+;base64,", re.IGNORECASE)
_BASE64 = re.compile(r"^[A-Za-z0-9+/=\s]+$")


@dataclass(frozen=True)
class ImageLimits:
    """The largest input accepted.

    Attributes:
        max_pixels: Most pixels (width x height) an input may have.
        max_bytes: Most bytes an input file or base64 payload may have.
    """

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES


def is_base64(text: str) -> bool:
    """True for a data URL (`data:image/png;base64,...`), `base64:...`, or a long base64 text."""
    if _DATA_URL.match(text) or text.startswith("base64:"):
        return True
    return len(text) > 256 and bool(_BASE64.match(text[:4096]))


def expand_inputs(inputs: Iterable[str]) -> list[str]:
    """Replace each folder by the images in it (sorted, not recursive); keep everything else.

    Missing paths stay in the list so that loading reports them.
    """
    expanded: list[str] = []
    for item in inputs:
        if not is_base64(item):
            path = Path(item).expanduser()
            if path.is_dir():
                expanded.extend(
                    str(p)
                    for p in sorted(path.iterdir())
                    if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                )
                continue
        expanded.append(item)
    return expanded


def label(source: str) -> str:
    """A short name for an input in messages: the path, or `base64 image (N chars)`."""
    return f"base64 image ({len(source)} chars)" if is_base64(source) else source


def _read(source: str, limits: ImageLimits) -> bytes:
    if is_base64(source):
        payload = _DATA_URL.sub("", source.removeprefix("base64:"), count=1)
        if len(payload) * 3 // 4 > limits.max_bytes:
            raise ImageInputError(f"{label(source)} is larger than {limits.max_bytes} bytes.")
        try:
            return base64.b64decode("".join(payload.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ImageInputError(f"{label(source)} is not valid base64.") from None
    path = Path(source).expanduser()
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageInputError(f"Image {source} does not exist.") from None
    except OSError as exc:
        raise ImageInputError(f"Cannot read image {source}: {exc.strerror or exc}.") from None
    if path.is_dir():
        raise ImageInputError(f"{source} is a folder with no images in it.")
    if size > limits.max_bytes:
        raise ImageInputError(
            f"Image {source} is {size} bytes; the limit is {limits.max_bytes} bytes."
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageInputError(f"Cannot read image {source}: {exc.strerror or exc}.") from None


def load_image(source: str, limits: ImageLimits | None = None) -> Image.Image:
    """Open, check and decode one image as RGB.

    Args:
        source: A file path, a data URL, `base64:...` or bare base64 text.
        limits: The largest input accepted.

    Raises:
        ImageInputError: Missing, unreadable, not an image, too large, or truncated.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    limits = limits or ImageLimits()
    data = _read(source, limits)
    name = label(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # reads the header only
    except UnidentifiedImageError:
        raise ImageInputError(f"{name} is not an image PIL can read.") from None
    except Image.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{found.group(1)} pixels" if found else "too many pixels"
        raise ImageInputError(
            f"{name} is too large to decode safely ({size}); the limit is "
            f"{limits.max_pixels} pixels.",
            hint="Resize it first, or raise max_image_pixels.",
        ) from None
    except OSError as exc:
        raise ImageInputError(f"{name} cannot be read as an image: {exc}.") from None
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageInputError(
            f"{name} is {width}x{height} ({width * height} pixels); the limit is "
            f"{limits.max_pixels} pixels.",
            hint="Resize it first, or raise max_image_pixels.",
        )
    try:
        image.load()
        upright = ImageOps.exif_transpose(image) or image
        return upright.convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageInputError(f"{name} is damaged or truncated: {exc}.") from None


def load_images(
    sources: Iterable[str], limits: ImageLimits | None = None
) -> list[tuple[str, Image.Image | ImageInputError]]:
    """Load every input (folders expanded); each result is an image or the error for it."""
    results: list[tuple[str, Image.Image | ImageInputError]] = []
    for source in expand_inputs(sources):
        try:
            results.append((source, load_image(source, limits)))
        except ImageInputError as exc:
            results.append((source, exc))
    return results


__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "ImageLimits",
    "expand_inputs",
    "is_base64",
    "label",
    "load_image",
    "load_images",
]
