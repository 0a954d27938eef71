"""A tiny face-embedding checkpoint and a real face photo for the face tests.

`build_tiny_face_model` writes a 2-layer ViT (hidden size 32, 32x32 inputs) with random, seeded
weights and its image processor through `save_pretrained`, so the worker loads it exactly as it
would a real checkpoint folder (`classifier=True`: a `ViTForImageClassification`, which has no
pooler, like most face-recognition fine-tunes). `build_tiny_clip_vision` writes a
`CLIPVisionModelWithProjection` (image embeddings of `PROJECTION_DIM`). Nothing comes from the hub.

`face_photo` finds a real photograph with a frontal face shipped inside an installed package:
scikit-image's `astronaut.png` (Eileen Collins, NASA, public domain). It is looked up without
importing scikit-image; None when the package is not installed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

IMAGE_SIZE = 32
HIDDEN_SIZE = 32
PROJECTION_DIM = 24
_LAYERS: dict[str, Any] = {
    "hidden_size": HIDDEN_SIZE,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": IMAGE_SIZE,
    "patch_size": 8,
}


def build_tiny_face_model(path: Path, *, seed: int = 0, classifier: bool = False) -> Path:
    """Write a tiny random ViT checkpoint (model and image processor) to `path`.

    Args:
        path: The folder to write (created).
        seed: Seed of the random weights.
        classifier: Save a `ViTForImageClassification` (3 labels, no pooler) instead.

    Returns:
        The folder.
    """
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTModel

    try:  # transformers 5: the PIL backend (the default one needs torchvision)
        from transformers import ViTImageProcessorPil as Processor
    except ImportError:
        from transformers import ViTImageProcessor as Processor  # type: ignore[assignment]

    torch.manual_seed(seed)
    config = ViTConfig(**{**_LAYERS, "num_labels": 3})
    model = ViTForImageClassification(config) if classifier else ViTModel(config)
    processor = Processor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def build_tiny_clip_vision(path: Path, *, seed: int = 0) -> Path:
    """Write a tiny random `CLIPVisionModelWithProjection` and its image processor to `path`.

    Args:
        path: The folder to write (created).
        seed: Seed of the random weights.

    Returns:
        The folder.
    """
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    try:
        from transformers import CLIPImageProcessorPil as Processor
    except ImportError:
        from transformers import CLIPImageProcessor as Processor  # type: ignore[assignment]

    torch.manual_seed(seed)
    model = CLIPVisionModelWithProjection(
        CLIPVisionConfig(**_LAYERS, projection_dim=PROJECTION_DIM)
    )
    processor = Processor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def face_photo() -> Path | None:
    """scikit-image's astronaut photo (one frontal face), or None when it is not installed."""
    spec = importlib.util.find_spec("skimage")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        photo = Path(folder) / "data" / "astronaut.png"
        if photo.is_file():
            return photo
    return None


def no_face_photo() -> Path | None:
    """scikit-learn's china.jpg (a temple, no face), or None when it is not installed."""
    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        photo = Path(folder) / "datasets" / "images" / "china.jpg"
        if photo.is_file():
            return photo
    return None
