"""Face embedding: find faces with OpenCV's Haar cascade, embed them with a vision backbone.

`detect_faces` runs the frontal-face Haar cascade bundled with opencv-python on a
histogram-equalised grayscale copy of the image (very large images are shrunk for detection and
the boxes mapped back), widens each box by a margin so the crop holds the whole face, and returns
the boxes largest first. No face found is an empty list, not an error.

`FaceRunner` is the `faces` task's runner: it loads any transformers vision model through
`AutoModel` + `AutoImageProcessor` (ViT, DINOv2, CLIP, SigLIP, ...), crops the faces of every
request in a batch, embeds all the crops in chunks of `placement.batch_size` (one forward pass
each) and L2-normalises the vectors, so the cosine distance between two faces is one minus their
dot product. The vector is the model's image embedding where it has one (CLIP-like models), else
its pooled output, else the CLS token (the spatial mean for convolutional feature maps). A
classifier fine-tune (`ViTForImageClassification`, as most face-recognition ViTs on the hub are)
has no trained pooler, so its CLS token is used: a pooler AutoModel adds at random would give
other vectors after every load, and stored faces would stop matching.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ollagraph.agents.errors import WorkerError

if TYPE_CHECKING:
    from PIL import Image

    from ollagraph.agents.devices import Placement
    from ollagraph.agents.workers.sources import ModelSource

TASK_TITLE = "face-embedding"
CASCADE_FILE = "haarcascade_frontalface_default.xml"
FACE_MARGIN = 0.2  # widen a Haar box by this share of its size on each side (it cuts the chin)
MAX_DETECT_SIDE = 1280  # larger images are shrunk to this longest side for detection
SCALE_FACTOR = 1.1  # the cascade's step between window sizes
MIN_NEIGHBORS = 5  # overlapping hits a detection needs (fewer: more faces, more false ones)
MIN_FACE_SIZE = 24  # the cascade's window: smaller faces cannot be found

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class FaceRequest:
    """One image to find and embed faces in.

    Attributes:
        image: A decoded RGB image.
        detect: Find faces in it; False when the image is already an aligned face crop.
    """

    image: Image.Image
    detect: bool = True


@dataclass(frozen=True)
class Face:
    """One face found in an image.

    Attributes:
        box: x, y, width, height in the input image (the whole image when detect=False).
        embedding: The face's vector, L2-normalised.
        score: Detector confidence proxy in (0, 1) (1.0 for given crops).
    """

    box: tuple[int, int, int, int]
    embedding: tuple[float, ...]
    score: float


_CASCADES = threading.local()  # OpenCV does not promise one classifier is safe across threads


def _cascade() -> Any:
    classifier = getattr(_CASCADES, "face", None)
    if classifier is None:
        import cv2

        path = cv2.data.haarcascades + CASCADE_FILE  # type: ignore[attr-defined]
        classifier = cv2.CascadeClassifier(path)
        if classifier.empty():
            raise WorkerError(
                f"OpenCV's face cascade {path} is missing or unreadable.",
                hint="Reinstall opencv-python-headless 4.x (5.0 no longer ships the cascades).",
            )
        _CASCADES.face = classifier
    return classifier


def _detect(image: Image.Image, min_size: int) -> list[tuple[Box, float]]:
    """Boxes (margin added, clamped, largest first) with a confidence proxy each."""
    import cv2
    import numpy as np

    width, height = image.size
    gray = image.convert("L")
    scale = 1.0
    if max(width, height) > MAX_DETECT_SIDE:
        scale = MAX_DETECT_SIDE / max(width, height)
        gray = gray.resize((max(1, round(width * scale)), max(1, round(height * scale))))
    pixels = cv2.equalizeHist(np.asarray(gray, dtype=np.uint8))
    smallest = max(1, round(min_size * scale))
    boxes, _levels, weights = _cascade().detectMultiScale3(
        pixels,
        scaleFactor=SCALE_FACTOR,
        minNeighbors=MIN_NEIGHBORS,
        minSize=(smallest, smallest),
        outputRejectLevels=True,
    )
    found: list[tuple[Box, float]] = []
    for (bx, by, bw, bh), weight in zip(
        np.asarray(boxes).reshape(-1, 4).tolist(),
        np.asarray(weights).reshape(-1).tolist(),
        strict=True,
    ):
        x, y, w, h = (v / scale for v in (bx, by, bw, bh))
        if min(w, h) < min_size:
            continue
        left = max(0, math.floor(x - w * FACE_MARGIN))
        top = max(0, math.floor(y - h * FACE_MARGIN))
        right = min(width, math.ceil(x + w * (1 + FACE_MARGIN)))
        bottom = min(height, math.ceil(y + h * (1 + FACE_MARGIN)))
        if right > left and bottom > top:
            # the last stage's sum: positive when the cascade is sure, near zero when barely
            score = 1.0 / (1.0 + math.exp(-min(50.0, max(-50.0, float(weight)))))
            found.append(((left, top, right - left, bottom - top), score))
    found.sort(key=lambda item: item[0][2] * item[0][3], reverse=True)
    return found


def detect_faces(
    image: Image.Image, *, min_size: int = MIN_FACE_SIZE
) -> list[tuple[int, int, int, int]]:
    """Find frontal faces in an image with OpenCV's Haar cascade.

    Args:
        image: The image (any PIL mode; it is converted to grayscale).
        min_size: Smallest face side in pixels of `image` (smaller detections are dropped).

    Returns:
        (x, y, width, height) boxes in `image`, widened by a margin and clamped to the image,
        largest first; empty when there is no face.

    Raises:
        WorkerError: OpenCV's cascade file is missing.
    """
    return [box for box, _score in _detect(image, min_size)]


def _model_class(name: str, kwargs: dict[str, Any]) -> Any:
    """`AutoModel`, or the checkpoint's own class when it has a projection AutoModel drops.

    AutoModel maps a `CLIPVisionModelWithProjection` checkpoint to `CLIPVisionModel`, losing the
    projection to the image embedding space; load such classes by name.
    """
    import transformers
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(name, **kwargs)
    for architecture in getattr(config, "architectures", None) or ():
        if architecture.endswith("WithProjection") and hasattr(transformers, architecture):
            return getattr(transformers, architecture)
    return AutoModel


def _vectors(output: Any, *, pooler: bool = True) -> Any:
    """The per-image embedding a model call returned (a tensor, or a model output).

    Args:
        output: What the model returned.
        pooler: Use `pooler_output` (False when the checkpoint has no trained pooler).
    """
    import torch

    if isinstance(output, torch.Tensor):
        return output.flatten(1)
    for name in ("image_embeds", "pooler_output") if pooler else ("image_embeds",):
        value = getattr(output, name, None)
        if isinstance(value, torch.Tensor):
            return value.flatten(1)
    hidden = getattr(output, "last_hidden_state", None)
    if not isinstance(hidden, torch.Tensor):
        raise WorkerError(
            f"The {TASK_TITLE} model returned no image embedding, pooled output or hidden states.",
            hint="Use a vision backbone such as a ViT, DINOv2 or CLIP checkpoint.",
        )
    if hidden.dim() == 4:  # a convolutional feature map: batch, channels, height, width
        return hidden.mean(dim=(2, 3))
    return hidden[:, 0]  # the CLS token


class FaceRunner:
    """The `faces` task: detect faces, then embed every crop with a vision model.

    Attributes:
        forward_passes: Embedding model calls made by `run_batch` (one per chunk of crops).
        dim: Embedding size (0 until `load()`).
    """

    def __init__(self, source: ModelSource, placement: Placement) -> None:
        self.source = source
        self.placement = placement
        self.forward_passes = 0
        self.dim = 0
        self._model: Any = None
        self._processor: Any = None
        self._image_features = False
        self._use_pooler = True

    @property
    def label(self) -> str:
        """The model and where it runs, e.g. `org/vit (cuda bf16)`."""
        return f"{self.source.name} ({self.placement.label})"

    def load(self) -> None:
        """Load the model and its image processor onto the placement's device.

        Raises:
            WorkerError: The model is not on disk or in the cache, or is not a vision model.
        """
        import torch
        from transformers import AutoImageProcessor

        name, kwargs = self.source.pretrained_args()
        placement = self.placement
        options = placement.pretrained_options()
        with self.source.loading(TASK_TITLE):
            processor = AutoImageProcessor.from_pretrained(name, **kwargs)
            model_class = _model_class(name, kwargs)
            model, info = model_class.from_pretrained(
                name, **kwargs, **options, output_loading_info=True
            )
        if not placement.placed_by_loader:
            model = model.to(placement.device)
        model.eval()
        # models with a text tower (CLIP, SigLIP) take text in forward(); ask for the image side
        self._image_features = callable(getattr(model, "get_image_features", None)) and (
            getattr(model, "main_input_name", "pixel_values") != "pixel_values"
        )
        # a classifier fine-tune (ViTForImageClassification) has no trained pooler: AutoModel
        # adds a random one, which would give other vectors on every load; use the CLS token
        self._use_pooler = not any("pooler" in key for key in info.get("missing_keys", ()))
        self._model, self._processor = model, processor
        try:
            from PIL import Image

            with torch.inference_mode():
                probe = self._call([Image.new("RGB", (64, 64), (128, 128, 128))])
        except BaseException:
            self.unload()
            raise
        self.dim = int(probe.shape[-1])

    def unload(self) -> None:
        """Drop the model and processor so their memory can be freed."""
        self._model = None
        self._processor = None

    def run_batch(self, items: Sequence[FaceRequest]) -> list[list[Face]]:
        """Find and embed the faces of every request: one list of faces per request.

        Args:
            items: The requests; their crops share forward passes of `placement.batch_size`.

        Returns:
            For each request its faces, largest first (empty when none was found).

        Raises:
            WorkerError: The model is not loaded.
        """
        import torch

        if self._model is None:
            raise WorkerError(f"The {TASK_TITLE} model is not loaded.", hint="Call load() first.")
        found: list[list[tuple[Box, float]]] = []
        crops: list[Image.Image] = []
        for item in items:
            image = item.image if item.image.mode == "RGB" else item.image.convert("RGB")
            if item.detect:
                boxes = _detect(image, MIN_FACE_SIZE)
            else:
                boxes = [((0, 0, image.width, image.height), 1.0)]
            found.append(boxes)
            for (x, y, w, h), _score in boxes:
                crops.append(image if not item.detect else image.crop((x, y, x + w, y + h)))
        vectors: list[tuple[float, ...]] = []
        size = max(1, self.placement.batch_size)
        with torch.inference_mode():
            for start in range(0, len(crops), size):
                embeddings = self._call(crops[start : start + size])
                self.forward_passes += 1
                vectors.extend(tuple(row) for row in embeddings.tolist())
        results: list[list[Face]] = []
        position = 0
        for boxes in found:
            faces = [
                Face(box=box, embedding=vectors[position + i], score=score)
                for i, (box, score) in enumerate(boxes)
            ]
            position += len(boxes)
            results.append(faces)
        return results

    def _call(self, crops: Sequence[Image.Image]) -> Any:
        """One forward pass over `crops`: L2-normalised float32 vectors on the CPU."""
        import torch

        inputs = self._processor(images=list(crops), return_tensors="pt")
        pixels = inputs["pixel_values"].to(
            device=self.placement.device, dtype=self.placement.torch_dtype()
        )
        if self._image_features:
            output = self._model.get_image_features(pixel_values=pixels)
        else:
            output = self._model(pixel_values=pixels)
        vectors = _vectors(output, pooler=self._use_pooler).float()
        return torch.nn.functional.normalize(vectors, dim=-1).cpu()


__all__ = ["Face", "FaceRequest", "FaceRunner", "detect_faces"]
