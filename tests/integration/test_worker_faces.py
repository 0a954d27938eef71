"""The face worker on a tiny random ViT loaded through the real loading path, and Haar detection
on a real photo.

The photo is scikit-image's astronaut (a dev dependency; the detection tests skip without it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ollagraph.agents.config import Settings
from ollagraph.agents.devices import Placement
from ollagraph.agents.errors import WorkerError
from ollagraph.agents.workers.faces import Face, FaceRequest, FaceRunner, detect_faces
from ollagraph.agents.workers.pool import WorkerPool
from ollagraph.agents.workers.service import worker_for
from ollagraph.agents.workers.sources import ModelSource
from ollagraph.tools.face_store import FaceStore
from tests.requirements import require
from tests.tiny_faces import (
    HIDDEN_SIZE,
    PROJECTION_DIM,
    build_tiny_clip_vision,
    build_tiny_face_model,
    face_photo,
    no_face_photo,
)

pytestmark = [pytest.mark.torch, pytest.mark.integration]

# the middle of the astronaut's face in the 512x512 photo (measured by hand)
FACE_CENTER = (224, 113)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_face_model(tmp_path_factory.mktemp("tiny-face"))


def runner_for(model_dir: Path, batch_size: int = 8) -> FaceRunner:
    runner = FaceRunner(
        ModelSource(str(model_dir)), Placement("cpu", "float32", batch_size=batch_size)
    )
    runner.load()
    return runner


def crop(seed: int, size: tuple[int, int] = (48, 56)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def photo() -> Image.Image:
    path = face_photo()
    require(path is not None, "no face photo: install the dev dependency scikit-image")
    assert path is not None
    return Image.open(path).convert("RGB")


def test_crops_share_forward_passes_and_come_back_unit_norm(model_dir: Path) -> None:
    runner = runner_for(model_dir, batch_size=2)
    assert runner.dim == HIDDEN_SIZE
    before = runner.forward_passes
    images = [crop(1), crop(2, (20, 90)), crop(3)]
    results = runner.run_batch([FaceRequest(image, detect=False) for image in images])
    assert runner.forward_passes - before == 2  # 3 crops in chunks of 2
    assert len(results) == 3
    for faces, image in zip(results, images, strict=True):
        assert len(faces) == 1
        assert faces[0].box == (0, 0, image.width, image.height)
        assert faces[0].score == 1.0
        assert len(faces[0].embedding) == HIDDEN_SIZE
        assert np.linalg.norm(faces[0].embedding) == pytest.approx(1.0, abs=1e-5)
    vectors = [np.asarray(faces[0].embedding) for faces in results]
    assert not np.allclose(vectors[0], vectors[1], atol=1e-4)  # different images, other vectors

    # batching does not mix requests: one at a time gives the same vectors
    alone = [runner.run_batch([FaceRequest(image, detect=False)])[0][0] for image in images]
    for face, vector in zip(alone, vectors, strict=True):
        np.testing.assert_allclose(face.embedding, vector, atol=1e-5)
    runner.unload()
    with pytest.raises(WorkerError, match="not loaded"):
        runner.run_batch([FaceRequest(images[0], detect=False)])


def test_the_same_crop_is_found_first_in_the_store(model_dir: Path, tmp_path: Path) -> None:
    runner = runner_for(model_dir)
    images = [crop(seed) for seed in range(5)]
    results = runner.run_batch([FaceRequest(image, detect=False) for image in images])
    again = runner.run_batch([FaceRequest(images[3], detect=False)])[0][0]
    twice = runner.run_batch([FaceRequest(images[3], detect=False)])[0][0]
    assert again.embedding == twice.embedding  # deterministic: distance 0
    # in a batch of 5 other kernels run: equal up to float rounding
    np.testing.assert_allclose(again.embedding, results[3][0].embedding, atol=1e-5)

    with FaceStore(tmp_path / "faces.duckdb") as store:
        ids = [
            store.add(f"img{i}.png", faces, str(model_dir))[0] for i, faces in enumerate(results)
        ]
        found = store.find_similar(again.embedding, k=3, model=str(model_dir))
        assert len(found) == 3
        assert found[0].id == ids[3]
        assert found[0].source == "img3.png"
        assert found[0].distance == pytest.approx(0.0, abs=1e-5)
        assert found[1].distance > 1e-3
        assert store.find_similar(twice.embedding, k=1)[0].id == ids[3]


def test_no_face_gives_an_empty_list_and_no_forward_pass(model_dir: Path) -> None:
    runner = runner_for(model_dir)
    before = runner.forward_passes
    blank = Image.new("RGB", (200, 150), (90, 140, 200))
    assert runner.run_batch([FaceRequest(blank), FaceRequest(blank)]) == [[], []]
    assert runner.forward_passes == before


def test_a_classifier_checkpoint_gives_the_same_vectors_after_every_load(tmp_path: Path) -> None:
    # ViTForImageClassification has no pooler: AutoModel would add a random one per load
    folder = build_tiny_face_model(tmp_path / "classifier", classifier=True)
    image = crop(11)
    first = runner_for(folder).run_batch([FaceRequest(image, detect=False)])[0][0]
    second = runner_for(folder).run_batch([FaceRequest(image, detect=False)])[0][0]
    assert len(first.embedding) == HIDDEN_SIZE
    np.testing.assert_allclose(first.embedding, second.embedding, atol=1e-6)


def test_a_clip_vision_checkpoint_gives_its_projected_image_embeddings(tmp_path: Path) -> None:
    runner = runner_for(build_tiny_clip_vision(tmp_path / "clip"), batch_size=4)
    assert runner.dim == PROJECTION_DIM
    (faces,) = runner.run_batch([FaceRequest(crop(5), detect=False)])
    assert len(faces[0].embedding) == PROJECTION_DIM
    assert np.linalg.norm(faces[0].embedding) == pytest.approx(1.0, abs=1e-5)


def test_a_missing_model_folder_is_a_worker_error(tmp_path: Path) -> None:
    runner = FaceRunner(ModelSource(str(tmp_path / "nope")), Placement("cpu", "float32"))
    with pytest.raises(WorkerError, match="does not exist"):
        runner.load()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WorkerError, match="face-embedding"):
        FaceRunner(ModelSource(str(empty)), Placement("cpu", "float32")).load()


def test_the_service_builds_a_face_worker_from_settings(model_dir: Path) -> None:
    pool = WorkerPool()
    try:
        settings = Settings(face_model=str(model_dir), device="cpu", batch_size=4)
        worker = worker_for(settings, "faces", pool=pool)
        faces = worker.map([FaceRequest(crop(i), detect=False) for i in range(6)], timeout=60)
        assert all(isinstance(f, list) and isinstance(f[0], Face) for f in faces)
        assert worker.runner.forward_passes >= 2  # type: ignore[attr-defined]
    finally:
        pool.close()


# Haar detection on a real photo


def contains(box: tuple[int, int, int, int], point: tuple[float, float]) -> bool:
    x, y, w, h = box
    return x <= point[0] <= x + w and y <= point[1] <= y + h


def test_haar_finds_the_astronauts_face() -> None:
    image = photo()
    boxes = detect_faces(image)
    assert len(boxes) >= 1
    x, y, w, h = boxes[0]
    assert contains(boxes[0], FACE_CENTER)
    assert 80 <= w <= 220 and 80 <= h <= 220  # a face, widened by the margin, not the picture
    assert x >= 0 and y >= 0 and x + w <= image.width and y + h <= image.height
    areas = [bw * bh for _, _, bw, bh in boxes]
    assert areas == sorted(areas, reverse=True)
    assert detect_faces(image, min_size=300) == []


def test_haar_finds_no_face_in_a_temple() -> None:
    path = no_face_photo()
    require(path is not None, "scikit-learn's china.jpg is not installed")
    assert path is not None
    assert detect_faces(Image.open(path).convert("RGB")) == []


def test_large_images_are_shrunk_for_detection_and_boxes_mapped_back() -> None:
    image = photo()
    small = detect_faces(image)[0]
    big = detect_faces(image.resize((2048, 2048)))  # over MAX_DETECT_SIDE: shrunk to 1280
    assert len(big) >= 1
    scaled = tuple(v * 4 for v in small)
    assert big[0] == pytest.approx(scaled, abs=40)
    assert contains(big[0], (FACE_CENTER[0] * 4, FACE_CENTER[1] * 4))


def test_detect_then_embed_on_the_photo(model_dir: Path) -> None:
    image = photo()
    canvas = Image.new("RGB", (image.width + 300, image.height), "white")
    canvas.paste(image, (300, 0))  # the face moves 300 px right
    ImageDraw.Draw(canvas).rectangle((10, 10, 200, 200), fill="gray")
    runner = runner_for(model_dir)
    before = runner.forward_passes
    photo_faces, canvas_faces = runner.run_batch([FaceRequest(image), FaceRequest(canvas)])
    assert runner.forward_passes - before == 1  # both crops in one pass
    assert len(photo_faces) >= 1 and len(canvas_faces) >= 1
    assert 0.5 < photo_faces[0].score < 1.0
    assert contains(canvas_faces[0].box, (FACE_CENTER[0] + 300, FACE_CENTER[1]))
    moved = canvas_faces[0].box  # the histogram differs, so the cascade may shift a little
    assert (moved[0] - 300, *moved[1:]) == pytest.approx(photo_faces[0].box, abs=10)
    # the embedding is that of the box's crop
    x, y, w, h = photo_faces[0].box
    (alone,) = runner.run_batch([FaceRequest(image.crop((x, y, x + w, y + h)), detect=False)])
    np.testing.assert_allclose(alone[0].embedding, photo_faces[0].embedding, atol=1e-5)
