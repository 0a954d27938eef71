"""The image-to-text worker on tiny random BLIP checkpoints, loaded from disk on the CPU.

The checkpoints (`tests/tiny_vision.py`) are built with `save_pretrained` and loaded through the
runner's real loading code. Their weights are random, so the captions are nonsense; the tests
check the contract: one text per request in order, the same text batched as alone, one
`generate` call per batch, prompts, question answering, errors, and the pool's batching.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ollagraph.agents.config import Settings
from ollagraph.agents.devices import DevicePolicy, Placement, resolve_placement
from ollagraph.agents.errors import WorkerError
from ollagraph.agents.workers.caption import CaptionRequest, CaptionRunner
from ollagraph.agents.workers.pool import Worker, WorkerKey, WorkerPool
from ollagraph.agents.workers.service import worker_for
from ollagraph.agents.workers.sources import ModelSource
from tests.requirements import require_module
from tests.tiny_vision import VOCAB, build_tiny_blip, build_tiny_vit

pytestmark = [pytest.mark.integration, pytest.mark.torch]

require_module("torch")
require_module("transformers")

from PIL import Image  # noqa: E402

TOKENS = 5
COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0), (128, 128, 0)]


@pytest.fixture(scope="module")
def blip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_blip(tmp_path_factory.mktemp("blip"))


@pytest.fixture(scope="module")
def blip_vqa(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_blip(tmp_path_factory.mktemp("blip-vqa"), vqa=True)


def images(count: int) -> list[Image.Image]:
    """Distinct images of different sizes (the processor resizes them all)."""
    return [
        Image.new("RGB", (30 + 7 * i, 20 + 5 * i), COLORS[i % len(COLORS)]) for i in range(count)
    ]


def requests(count: int, prompt: str = "", tokens: int = TOKENS) -> list[CaptionRequest]:
    return [CaptionRequest(image, prompt, tokens) for image in images(count)]


def runner_for(path: Path) -> CaptionRunner:
    return CaptionRunner(ModelSource.parse(str(path)), resolve_placement(DevicePolicy("cpu")))


@pytest.fixture
def captioner(blip: Path) -> CaptionRunner:
    runner = runner_for(blip)
    runner.load()
    return runner


def test_batch_is_one_generate_call_with_each_image_captioned_as_alone(
    captioner: CaptionRunner,
) -> None:
    batch = requests(5)
    captions = captioner.run_batch(batch)
    assert captioner.forward_passes == 1
    assert len(captions) == 5
    assert all(isinstance(caption, str) and caption for caption in captions)
    alone = [captioner.run_batch([request])[0] for request in batch]
    assert captioner.forward_passes == 6
    assert captions == alone  # order preserved, and batching changes no caption
    assert len(set(captions)) > 1, "the images must get different captions for order to show"
    words = set(VOCAB)
    assert all(set(caption.replace(".", " . ").split()) <= words for caption in captions)


def test_label_names_the_class_and_placement(blip: Path, blip_vqa: Path) -> None:
    runner = runner_for(blip)
    assert runner.label == "BLIP on cpu fp32"
    runner.load()
    assert runner.label == "BlipForConditionalGeneration on cpu fp32"
    vqa = runner_for(blip_vqa)
    vqa.load()
    assert vqa.label == "BlipForQuestionAnswering on cpu fp32"


def test_max_new_tokens_bounds_the_caption(blip: Path, captioner: CaptionRunner) -> None:
    from transformers import AutoTokenizer

    short = captioner.run_batch(requests(4, tokens=2))
    longer = captioner.run_batch(requests(4, tokens=TOKENS))
    tokenizer = AutoTokenizer.from_pretrained(blip, local_files_only=True)
    for text, full in zip(short, longer, strict=True):
        assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= 2
        assert full.startswith(text)  # greedy decoding: the short caption is a prefix


def test_prompted_caption_continues_the_prompt(captioner: CaptionRunner) -> None:
    plain = captioner.run_batch(requests(3))
    prompted = captioner.run_batch(requests(3, prompt="a photo of"))
    assert captioner.forward_passes == 2
    assert all(text.startswith("a photo of") for text in prompted)
    assert prompted != plain
    # whitespace in the prompt is normalized, so it batches and answers the same
    assert captioner.run_batch(requests(3, prompt="  a photo   of ")) == prompted


def test_mixed_prompts_in_one_call_run_one_generate_per_prompt(captioner: CaptionRunner) -> None:
    plain, prompted = requests(4), requests(4, prompt="the cat")
    mixed = [plain[0], prompted[1], plain[2], prompted[3]]
    assert CaptionRunner.batch_key(plain[0]) != CaptionRunner.batch_key(prompted[1])
    assert CaptionRunner.batch_key(plain[0]) == CaptionRunner.batch_key(plain[2])
    texts = captioner.run_batch(mixed)
    assert captioner.forward_passes == 2
    assert texts[1].startswith("the cat") and texts[3].startswith("the cat")
    plain_texts = captioner.run_batch([plain[0], plain[2]])
    prompted_texts = captioner.run_batch([prompted[1], prompted[3]])
    assert texts == [plain_texts[0], prompted_texts[0], plain_texts[1], prompted_texts[1]]


def test_question_answering_checkpoint(blip_vqa: Path) -> None:
    runner = runner_for(blip_vqa)
    runner.load()
    batch = requests(5, prompt="what color is the image?")
    answers = runner.run_batch(batch)
    assert runner.forward_passes == 1
    assert len(answers) == 5 and all(isinstance(answer, str) for answer in answers)
    assert runner.run_batch(batch[3:]) == answers[3:]  # a batch's answers are the images' own
    with pytest.raises(WorkerError, match="question"):
        runner.run_batch(requests(1))


def test_a_checkpoint_that_is_not_blip_names_the_supported_ones(tmp_path: Path) -> None:
    runner = runner_for(build_tiny_vit(tmp_path / "vit"))
    with pytest.raises(WorkerError) as caught:
        runner.load()
    message = str(caught.value)
    assert "ViTForImageClassification" in message
    assert "BlipForConditionalGeneration" in message and "BlipForQuestionAnswering" in message


def test_a_missing_path_is_a_worker_error(tmp_path: Path) -> None:
    with pytest.raises(WorkerError, match="does not exist"):
        runner_for(tmp_path / "no-such-model").load()


def test_a_folder_without_a_checkpoint_is_a_worker_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(WorkerError, match="Cannot load the image-to-text model"):
        runner_for(tmp_path / "empty").load()


def test_bad_requests_and_unloaded_runner(blip: Path) -> None:
    with pytest.raises(WorkerError, match="max_new_tokens"):
        CaptionRequest(images(1)[0], max_new_tokens=0)
    runner = runner_for(blip)
    with pytest.raises(WorkerError, match="not loaded"):
        runner.run_batch(requests(1))
    runner.load()
    runner.unload()
    with pytest.raises(WorkerError, match="not loaded"):
        runner.run_batch(requests(1))


def test_through_a_worker_batches_and_reloads(blip: Path) -> None:
    runner = runner_for(blip)
    worker: Worker[CaptionRequest, str] = Worker(
        WorkerKey("caption", str(blip), "cpu fp32"),
        runner,
        batch_size=4,
        idle_timeout=0,
        batch_key=CaptionRunner.batch_key,
    )
    try:
        batch = requests(10)
        first = [future.result(timeout=60) for future in worker.submit_many(batch)]
        assert runner.forward_passes == math.ceil(10 / 4)
        assert worker.stats.batch_sizes == [4, 4, 2]
        assert worker.stats.loads == 1
        worker.unload()
        assert not worker.loaded
        with pytest.raises(WorkerError, match="not loaded"):
            runner.run_batch(batch[:1])
        again = [future.result(timeout=60) for future in worker.submit_many(batch)]
        assert worker.stats.loads == 2
        assert again == first
    finally:
        worker.close()


def test_settings_build_a_caption_worker(blip: Path) -> None:
    pool = WorkerPool()
    try:
        worker = worker_for(Settings(caption_model=str(blip), device="cpu"), "caption", pool=pool)
        assert isinstance(worker.runner, CaptionRunner)
        assert worker.batch_key is not None
        assert worker.batch_key(requests(1, prompt="a")[0]) == ("a", TOKENS)
        text = worker.run(CaptionRequest(images(1)[0], "a photo of", TOKENS), timeout=60)
        assert text.startswith("a photo of")
    finally:
        pool.close()


def test_a_bf16_placement_loads_bf16_weights_and_runs(blip: Path) -> None:
    import torch

    # resolve_placement keeps the CPU at fp32; a hand-built placement stands in for a GPU's bf16
    runner = CaptionRunner(ModelSource.parse(str(blip)), Placement("cpu", "bfloat16"))
    runner.load()
    assert runner.label == "BlipForConditionalGeneration on cpu bf16"
    assert next(runner._model.parameters()).dtype == torch.bfloat16
    texts = runner.run_batch(requests(2, prompt="a photo of"))
    assert len(texts) == 2 and all(text.startswith("a photo of") for text in texts)
