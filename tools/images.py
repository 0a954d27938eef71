"""Image tools the model can call: caption, generate, upscale, and remember or find faces.

Each tool checks its input image first (missing, not an image, too large: a clear error for the
model), then hands the work to the shared in-process torch worker for its task, so concurrent
calls share one loaded model and are micro-batched. Images the tools write go to `image_dir`
(default: images/ in the state directory); face embeddings go to the DuckDB store at `faces_db`.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ollagraph.agents.errors import ToolError
from ollagraph.agents.workers.images import ImageLimits, is_base64, label, load_image
from ollagraph.tools.context import current_settings

if TYPE_CHECKING:
    from PIL import Image

    from ollagraph.agents.config import Settings


def image_dir(settings: Settings) -> Path:
    """The folder generated and upscaled images are written to (created)."""
    from ollagraph.agents.paths import state_path

    folder = Path(settings.image_dir).expanduser() if settings.image_dir else state_path("images")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def faces_db(settings: Settings) -> Path:
    """The DuckDB file that stores face embeddings."""
    from ollagraph.agents.paths import state_path

    return Path(settings.faces_db).expanduser() if settings.faces_db else state_path("faces.duckdb")


def _run(settings: Settings, task: str, request: Any) -> Any:
    """Hand one request to the shared worker for `task`; wait at most `image_timeout`."""
    from ollagraph.agents.workers.service import worker_for

    return worker_for(settings, task).run(request, timeout=settings.image_timeout)


def _face_model(settings: Settings) -> str:
    """The face model's name (after per-task overrides): stored faces are keyed by it."""
    from ollagraph.agents.workers.service import task_policy

    return task_policy(settings, "faces")[0]


def _open(image: str, settings: Settings) -> Image.Image:
    return load_image(image.strip(), ImageLimits(max_pixels=settings.max_image_pixels))


def save_png(image: Image.Image, folder: Path, stem: str) -> Path:
    """Save `image` as `folder/stem.png`, adding -2, -3 ... rather than overwriting."""
    stem = re.sub(r"[^\w.-]+", "_", stem).strip("._") or "image"
    path = folder / f"{stem}.png"
    counter = 2
    while path.exists():
        path = folder / f"{stem}-{counter}.png"
        counter += 1
    image.save(path, "PNG")
    return path


def save_upscaled(bigger: Image.Image, original: Image.Image, source: str, folder: Path) -> Path:
    """Save an upscaled image as `folder/<input name>_x<scale>.png` (never overwriting).

    Args:
        bigger: The upscaled image.
        original: The input it was made from (for the scale in the name).
        source: The input as given: a path, or base64 (then the name is `image`).
        folder: Where to write.
    """
    stem = "image" if is_base64(source) else Path(source).stem
    scale = bigger.width // max(original.width, 1)
    return save_png(bigger, folder, f"{stem}_x{scale}")


def caption_image(image: str, question: str = "") -> str:
    """Describe what an image shows, or answer a question about it.

    Use this when the user names an image file (.png, .jpg, ...) and asks what is in it.

    Args:
        image: Path of the image file, exactly as the user wrote it.
        question: A question about the image; leave empty for a plain description.
    """
    from ollagraph.agents.workers.caption import CaptionRequest

    settings = current_settings()
    picture = _open(image, settings)
    text = _run(settings, "caption", CaptionRequest(picture, prompt=question.strip()))
    return f"{label(image)}: {text}"


def generate_image(prompt: str, width: int = 512, height: int = 512, seed: int = -1) -> str:
    """Draw a new picture from a text description and save it as a PNG file.

    Use this when the user asks to create, draw, paint or generate an image.

    Args:
        prompt: What the picture should show, in plain words.
        width: Width in pixels (a multiple of 8).
        height: Height in pixels (a multiple of 8).
        seed: A number that makes the picture reproducible; -1 picks one at random.
    """
    from ollagraph.agents.workers.generate import GenerateRequest

    settings = current_settings()
    if not prompt.strip():
        raise ToolError("the prompt is empty: describe the picture to draw.")
    request = GenerateRequest(
        prompt=prompt.strip(),
        output_dir=image_dir(settings),
        width=width,
        height=height,
        seed=None if seed < 0 else seed,
    )
    result = _run(settings, "generate", request)
    return (
        f"Saved the picture to {result.path} ({result.width}x{result.height}, seed {result.seed})."
    )


def upscale_image(image: str) -> str:
    """Make an image larger and sharper (super-resolution) and save the result as a PNG.

    Use this when the user asks to upscale, enlarge or increase the resolution of an image file.

    Args:
        image: Path of the image file, exactly as the user wrote it.
    """
    from ollagraph.agents.workers.upscale import UpscaleRequest

    settings = current_settings()
    picture = _open(image, settings)
    started = time.perf_counter()
    bigger = _run(settings, "upscale", UpscaleRequest(picture))
    path = save_upscaled(bigger, picture, image, image_dir(settings))
    return (
        f"Saved the upscaled image to {path} ({picture.width}x{picture.height} -> "
        f"{bigger.width}x{bigger.height}, {time.perf_counter() - started:.1f} s)."
    )


def embed_faces(image: str) -> str:
    """Find the faces in a photo and remember them, so similar faces can be found later.

    Use this when the user asks to add, index, store or remember the faces in an image file.

    Args:
        image: Path of the image file, exactly as the user wrote it.
    """
    from ollagraph.agents.workers.faces import FaceRequest
    from ollagraph.tools.face_store import FaceStore

    settings = current_settings()
    picture = _open(image, settings)
    faces = _run(settings, "faces", FaceRequest(picture))
    if not faces:
        return f"No faces were found in {label(image)}; nothing was stored."
    with FaceStore(faces_db(settings)) as store:
        ids = store.add(label(image), faces, model=_face_model(settings))
        total = store.count()
    boxes = ", ".join(
        f"#{i} at {f.box[0]},{f.box[1]} {f.box[2]}x{f.box[3]}"
        for i, f in zip(ids, faces, strict=True)
    )
    return f"Stored {len(faces)} face(s) from {label(image)}: {boxes}. The store has {total}."


def find_similar_faces(image: str, k: int = 5) -> str:
    """Find the stored faces that look most like the largest face in a photo.

    Use this when the user asks who is in a photo, or for faces similar to one in an image file.

    Args:
        image: Path of the image file with the face to look for.
        k: How many similar faces to list (1-50).
    """
    from ollagraph.agents.workers.faces import FaceRequest
    from ollagraph.tools.face_store import FaceStore

    settings = current_settings()
    if not 1 <= k <= 50:
        raise ToolError(f"k must be between 1 and 50, got {k}.")
    path = faces_db(settings)
    if not path.exists():
        raise ToolError("no faces are stored yet: store some with embed_faces first.")
    picture = _open(image, settings)
    faces = _run(settings, "faces", FaceRequest(picture))
    if not faces:
        return f"No face was found in {label(image)}."
    with FaceStore(path) as store:
        matches = store.find_similar(faces[0].embedding, k=k, model=_face_model(settings))
    if not matches:
        return "No faces made with this face model are stored yet."
    lines = [
        f"{n}. {m.source} (face #{m.id} at {m.box[0]},{m.box[1]}), distance {m.distance:.3f}"
        for n, m in enumerate(matches, 1)
    ]
    return f"Faces most like the largest face in {label(image)}:\n" + "\n".join(lines)


__all__ = [
    "caption_image",
    "embed_faces",
    "faces_db",
    "find_similar_faces",
    "generate_image",
    "image_dir",
    "save_png",
    "save_upscaled",
    "upscale_image",
]
