"""The text-to-image worker on a tiny random-weight Stable Diffusion pipeline, loaded from disk.

The pipeline comes from `tests/tiny_diffusion.py` (configs and random weights, saved with
`save_pretrained`) and is loaded through the runner's real loading code. Its images are noise,
which is enough to check batching, sizes, seeds, files and metadata.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from ollagraph.agents.config import Settings
from ollagraph.agents.devices import Placement
from ollagraph.agents.errors import WorkerError
from ollagraph.agents.workers.generate import (
    GeneratedImage,
    GenerateRequest,
    GenerateRunner,
    family_defaults,
)
from ollagraph.agents.workers.pool import Worker, WorkerKey, WorkerPool
from ollagraph.agents.workers.service import worker_for
from ollagraph.agents.workers.sources import ModelSource
from tests.tiny_diffusion import build_tiny_sd

pytestmark = [pytest.mark.torch, pytest.mark.integration]

CPU = Placement(device="cpu", dtype="float32")
STEPS = 2


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="module")
def runner(tiny_sd: Path) -> GenerateRunner:
    runner = GenerateRunner(ModelSource(str(tiny_sd)), CPU)
    runner.load()
    return runner


def request(out: Path, prompt: str = "a red fox", **fields: object) -> GenerateRequest:
    return dataclasses.replace(GenerateRequest(prompt, out, steps=STEPS), **fields)  # type: ignore[arg-type]


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def png_text(path: Path) -> dict[str, str]:
    with Image.open(path) as png:
        assert isinstance(png, PngImagePlugin.PngImageFile)
        png.load()
        return dict(png.text)


def test_three_prompts_share_one_pipeline_call(runner: GenerateRunner, tmp_path: Path) -> None:
    out = tmp_path / "made" / "here"  # created by the runner
    prompts = ["a red fox, at dawn!", "A lighthouse", "a red fox, at dawn!"]
    before = runner.forward_passes
    results = runner.run_batch([request(out, p, width=96, height=64, seed=5) for p in prompts])
    assert runner.forward_passes == before + 1
    assert all(isinstance(r, GeneratedImage) for r in results)
    images = [r for r in results if isinstance(r, GeneratedImage)]
    paths = {image.path for image in images}
    assert len(paths) == 3  # same prompt and seed twice: the second file gets a new name
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)
    assert images[0].path.name.startswith("a-red-fox-at-dawn-5")
    for image, prompt in zip(images, prompts, strict=True):
        assert (image.prompt, image.seed, image.width, image.height) == (prompt, 5, 96, 64)
        with Image.open(image.path) as png:
            assert (png.format, png.size) == ("PNG", (96, 64))
        text = png_text(image.path)
        assert (text["seed"], text["prompt"], text["steps"]) == ("5", prompt, str(STEPS))


def test_default_size_and_random_seed_reproduce(runner: GenerateRunner, tmp_path: Path) -> None:
    first = runner.run_batch([request(tmp_path, "a boat")])[0]
    assert isinstance(first, GeneratedImage)
    assert (first.width, first.height) == (64, 64)  # the tiny pipeline's default size
    assert png_text(first.path)["seed"] == str(first.seed)
    again = runner.run_batch([request(tmp_path, "a boat", seed=first.seed)])[0]
    assert isinstance(again, GeneratedImage)
    assert again.path != first.path
    assert np.abs(pixels(again.path) - pixels(first.path)).max() <= 1


def test_a_seed_gives_the_same_image_alone_or_in_a_batch(
    runner: GenerateRunner, tmp_path: Path
) -> None:
    alone = runner.run_batch([request(tmp_path / "alone", seed=7)])[0]
    batch = runner.run_batch(
        [
            request(tmp_path / "batch", "a dog in the snow", seed=3),
            request(tmp_path / "batch", seed=7),
            request(tmp_path / "batch", "a city at night", seed=11),
        ]
    )
    assert isinstance(alone, GeneratedImage) and isinstance(batch[1], GeneratedImage)
    assert isinstance(batch[0], GeneratedImage)
    same = np.abs(pixels(alone.path) - pixels(batch[1].path))
    assert same.max() <= 2
    # the check above means something only if seeds (and prompts) change the picture
    other = runner.run_batch([request(tmp_path / "other", seed=8)])[0]
    assert isinstance(other, GeneratedImage)
    assert np.abs(pixels(alone.path) - pixels(other.path)).mean() > 2
    assert np.abs(pixels(alone.path) - pixels(batch[0].path)).mean() > 2


def test_negative_prompt_runs_with_guidance_and_is_recorded(
    runner: GenerateRunner, tmp_path: Path
) -> None:
    results = runner.run_batch(
        [
            request(tmp_path, "a cat", negative_prompt="blurry", guidance=5.0, seed=1),
            request(tmp_path, "a cat", negative_prompt="dark", guidance=5.0, seed=1),
        ]
    )
    images = [r for r in results if isinstance(r, GeneratedImage)]
    assert len(images) == 2
    text = png_text(images[0].path)
    assert (text["negative_prompt"], text["guidance"]) == ("blurry", "5.0")
    # same prompt and seed, different negative prompts: guidance used them
    assert np.abs(pixels(images[0].path) - pixels(images[1].path)).max() > 0


def test_worker_splits_sizes_into_separate_batches(tiny_sd: Path, tmp_path: Path) -> None:
    runner = GenerateRunner(ModelSource(str(tiny_sd)), CPU)
    worker: Worker[GenerateRequest, GeneratedImage | Exception] = Worker(
        WorkerKey("generate", str(tiny_sd), CPU.label),
        runner,
        batch_size=8,
        batch_window=0.2,
        batch_key=GenerateRunner.batch_key,
    )
    try:
        items = [
            request(tmp_path, "one", width=64, height=64, seed=1),
            request(tmp_path, "two", width=96, height=64, seed=2),
            request(tmp_path, "three", width=64, height=64, seed=3),
            request(tmp_path, "four", width=96, height=64, seed=4),
            request(tmp_path, "five", width=64, height=64, seed=5, negative_prompt="fog"),
        ]
        results = worker.map(items, timeout=120)
    finally:
        worker.close()
    assert runner.forward_passes == 3
    assert sorted(worker.stats.batch_sizes) == [1, 2, 2]
    sizes = [(r.width, r.height) for r in results if isinstance(r, GeneratedImage)]
    assert sizes == [(64, 64), (96, 64), (64, 64), (96, 64), (64, 64)]
    assert runner.pipeline is None  # closing the worker unloaded the model


def test_a_bad_request_fails_alone(tiny_sd: Path, tmp_path: Path) -> None:
    runner = GenerateRunner(ModelSource(str(tiny_sd)), CPU)
    worker: Worker[GenerateRequest, GeneratedImage | Exception] = Worker(
        WorkerKey("generate", str(tiny_sd), CPU.label),
        runner,
        batch_window=0.2,
        batch_key=lambda item: None,  # let every request share a batch: the runner must cope
    )
    try:
        results = worker.map(
            [
                request(tmp_path, "good", seed=1),
                request(tmp_path, "odd width", width=100, seed=2),
                request(tmp_path, "too many steps", steps=500, seed=3),
                request(tmp_path, "huge", height=8192, seed=4),
                request(tmp_path, "also good", seed=5),
            ],
            timeout=120,
        )
    finally:
        worker.close()
    assert runner.forward_passes == 1
    assert isinstance(results[0], GeneratedImage) and isinstance(results[4], GeneratedImage)
    assert isinstance(results[1], WorkerError)
    assert "width 100" in str(results[1]) and "multiple of 8" in str(results[1])
    assert isinstance(results[2], WorkerError) and "steps" in str(results[2])
    assert isinstance(results[3], WorkerError) and "4096" in str(results[3])
    assert len(list(tmp_path.glob("*.png"))) == 2


def test_mixed_settings_in_one_call_are_grouped(runner: GenerateRunner, tmp_path: Path) -> None:
    before = runner.forward_passes
    results = runner.run_batch(
        [request(tmp_path, "a", seed=1), request(tmp_path, "b", seed=2, steps=1)]
    )
    assert runner.forward_passes == before + 2
    assert all(isinstance(r, GeneratedImage) for r in results)


def test_missing_model_folder_is_a_worker_error(tmp_path: Path) -> None:
    with pytest.raises(WorkerError, match="does not exist"):
        GenerateRunner(ModelSource(str(tmp_path / "no-such-model")), CPU).load()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WorkerError, match="image-generation") as caught:
        GenerateRunner(ModelSource(str(empty)), CPU).load()
    assert caught.value.hint and "checkpoint" in caught.value.hint


def test_service_builds_a_worker_for_the_generate_task(tiny_sd: Path, tmp_path: Path) -> None:
    settings = dataclasses.replace(Settings(), image_model=str(tiny_sd), device="cpu")
    pool = WorkerPool()
    try:
        worker = worker_for(settings, "generate", pool=pool)
        result = worker.run(request(tmp_path, "through the service", seed=9), timeout=120)
    finally:
        pool.close()
    assert isinstance(result, GeneratedImage)
    assert result.path.exists()


def test_family_defaults_follow_the_model_name() -> None:
    assert family_defaults("stabilityai/sd-turbo") == family_defaults("stabilityai/sdxl-turbo")
    assert family_defaults("stabilityai/sdxl-turbo").steps == 1
    assert family_defaults("stabilityai/sdxl-turbo").guidance == 0.0
    assert family_defaults("black-forest-labs/FLUX.1-schnell").steps == 4
    assert family_defaults("black-forest-labs/FLUX.1-schnell").guidance == 0.0
    standard = family_defaults("stable-diffusion-v1-5/stable-diffusion-v1-5")
    assert (standard.steps, standard.guidance) == (25, None)
