"""The upscale worker on tiny random models saved to disk and loaded through the real code.

Swin2SR goes through transformers' `from_pretrained`; RRDBNet files through `torch.load` /
safetensors and the key detection. The tiling tests compare tiled runs with the same model run
untiled (tile larger than the image): the tiny models' receptive fields are small, so the two
must agree except for rounding, while a shift of one pixel changes the output a lot.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ollagraph.agents.devices import Placement
from ollagraph.agents.errors import WorkerError
from ollagraph.agents.workers.pool import Worker, WorkerKey
from ollagraph.agents.workers.sources import ModelSource
from ollagraph.agents.workers.upscale import UpscaleRequest, UpscaleRunner, _spans
from tests.tiny_upscale import build_tiny_rrdb, build_tiny_swin2sr, rrdb_state

pytestmark = [pytest.mark.torch, pytest.mark.integration]


def image(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth random colours (a bicubic blow-up of noise), like a photo more than noise is."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, height // 10), max(2, width // 10), 3), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)


def runner(
    model: Path, *, tile: int = 256, overlap: int = 16, batch_size: int = 8
) -> UpscaleRunner:
    placement = Placement(device="cpu", dtype="float32", batch_size=batch_size)
    made = UpscaleRunner(ModelSource(str(model)), placement, tile=tile, overlap=overlap)
    made.load()
    return made


def pixels(picture: Image.Image) -> np.ndarray:
    return np.asarray(picture, dtype=np.float64)


def tiles_along(length: int, tile: int, overlap: int) -> int:
    """Fewest tiles of `tile` px, overlapping by `overlap`, that cover `length` px."""
    return 1 if length <= tile else math.ceil((length - tile) / (tile - overlap)) + 1


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    # The models are tiny: thread start-up and spinning cost more than the convolutions.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("upscale")
    return {
        "swin2sr": build_tiny_swin2sr(folder / "swin2sr", scale=2),
        "x4": build_tiny_rrdb(folder / "esrgan", scale=4),
        "x2": build_tiny_rrdb(folder / "realesrgan", scale=2),
    }


@pytest.mark.parametrize(("name", "scale"), [("swin2sr", 2), ("x4", 4), ("x2", 2)])
def test_odd_sizes_come_out_exactly_scaled(models: dict[str, Path], name: str, scale: int) -> None:
    upscaler = runner(models[name])
    [out] = upscaler.run_batch([UpscaleRequest(image(37, 23))])
    assert upscaler.scale == scale
    assert out.mode == "RGB"
    assert out.size == (37 * scale, 23 * scale)
    assert upscaler.forward_passes == 1  # smaller than a tile: one tile
    assert f"x{scale}" in upscaler.label


def test_tiled_output_matches_untiled(models: dict[str, Path]) -> None:
    picture = image(300, 200)
    whole = runner(models["x4"], tile=512)
    tiled = runner(models["x4"], tile=64, overlap=16, batch_size=4)
    [expected] = whole.run_batch([UpscaleRequest(picture)])
    [got] = tiled.run_batch([UpscaleRequest(picture)])
    assert got.size == expected.size == (1200, 800)
    assert whole.forward_passes == 1
    count = tiles_along(300, 64, 16) * tiles_along(200, 64, 16)
    assert tiled.forward_passes == math.ceil(count / 4)
    a, b = pixels(expected), pixels(got)
    seam_error = np.abs(a - b).mean()
    shift_error = np.abs(a[:, 4:] - a[:, :-4]).mean()  # a tile put 1 input px off
    assert shift_error > 1.0  # the output depends on where the input is
    assert seam_error < 0.05
    assert np.abs(a - b).max() <= 2


def test_tiling_respects_the_pixel_unshuffle_grid(models: dict[str, Path]) -> None:
    # Real-ESRGAN x2 unshuffles by 2: a tile starting at an odd pixel would see another grid.
    picture = image(150, 97)
    [expected] = runner(models["x2"], tile=512).run_batch([UpscaleRequest(picture)])
    [got] = runner(models["x2"], tile=48, overlap=24).run_batch([UpscaleRequest(picture)])
    assert got.size == expected.size == (300, 194)
    assert np.abs(pixels(expected) - pixels(got)).mean() < 0.5


def test_swin2sr_tiles_pad_to_its_window(models: dict[str, Path]) -> None:
    picture = image(101, 67)
    whole = runner(models["swin2sr"], tile=512)
    tiled = runner(models["swin2sr"], tile=40, overlap=16, batch_size=3)
    [expected] = whole.run_batch([UpscaleRequest(picture)])
    [got] = tiled.run_batch([UpscaleRequest(picture)])
    assert got.size == expected.size == (202, 134)
    assert tiled.forward_passes > 1
    a, b = pixels(expected), pixels(got)
    assert np.abs(a - b).mean() < 0.25 * np.abs(a[:, 2:] - a[:, :-2]).mean()


@pytest.mark.parametrize("batch_size", [1, 5, 100])
def test_forward_passes_are_tiles_over_batch_size(models: dict[str, Path], batch_size: int) -> None:
    upscaler = runner(models["x2"], tile=48, overlap=16, batch_size=batch_size)
    [out] = upscaler.run_batch([UpscaleRequest(image(120, 99))])
    assert out.size == (240, 198)
    count = tiles_along(120, 48, 16) * tiles_along(99, 48, 16)
    assert count == 12
    assert upscaler.forward_passes == math.ceil(count / batch_size)


def test_two_requests_share_forward_passes(models: dict[str, Path]) -> None:
    big, small = image(100, 80, seed=1), image(50, 40, seed=2)  # 2x2 tiles and 1 tile
    shared = runner(models["x4"], tile=64, overlap=16, batch_size=5)
    together = shared.run_batch([UpscaleRequest(big), UpscaleRequest(small)])
    assert shared.forward_passes == 1
    alone = runner(models["x4"], tile=64, overlap=16, batch_size=5)
    apart = [alone.run_batch([UpscaleRequest(big)])[0], alone.run_batch([UpscaleRequest(small)])[0]]
    assert alone.forward_passes == 2
    assert [p.size for p in together] == [(400, 320), (200, 160)]
    # The big image's tiles are the same either way; the small one is padded to 64x64 in the
    # shared pass, which may touch only its last pixels on the right and bottom.
    assert np.abs(pixels(together[0]) - pixels(apart[0])).max() <= 1
    inner = (slice(0, 160 - 16), slice(0, 200 - 16))
    assert np.abs(pixels(together[1])[inner] - pixels(apart[1])[inner]).max() <= 1


def test_through_a_worker(models: dict[str, Path]) -> None:
    upscaler = UpscaleRunner(
        ModelSource(str(models["x4"])), Placement("cpu", "float32", batch_size=4), tile=32
    )
    worker: Worker[UpscaleRequest, Image.Image] = Worker(
        WorkerKey("upscale", str(models["x4"]), "cpu fp32"), upscaler, batch_size=4
    )
    try:
        results = worker.map([UpscaleRequest(image(20, 30)), UpscaleRequest(image(45, 12))])
    finally:
        worker.close()
    assert [r.size for r in results if isinstance(r, Image.Image)] == [(80, 120), (180, 48)]
    assert worker.stats.loads == 1 and worker.stats.unloads == 1


def test_grayscale_and_rgba_inputs_come_out_rgb(models: dict[str, Path]) -> None:
    upscaler = runner(models["x2"])
    gray, rgba = image(21, 17).convert("L"), image(16, 9).convert("RGBA")
    outs = upscaler.run_batch([UpscaleRequest(gray), UpscaleRequest(rgba)])
    assert [(o.mode, o.size) for o in outs] == [("RGB", (42, 34)), ("RGB", (32, 18))]


def test_unload_then_load_again(models: dict[str, Path]) -> None:
    upscaler = runner(models["x4"])
    upscaler.unload()
    with pytest.raises(WorkerError, match="not loaded"):
        upscaler.run_batch([UpscaleRequest(image(8, 8))])
    upscaler.load()
    assert upscaler.run_batch([UpscaleRequest(image(8, 8))])[0].size == (32, 32)


# Weights files: formats, key styles, wrappers


@pytest.mark.parametrize(
    ("fmt", "style", "wrapper"),
    [
        ("safetensors", "basicsr", None),
        ("pth", "basicsr", "params"),
        ("pth", "basicsr", None),
        ("pth", "esrgan", None),
        ("pth", "sequential", None),
    ],
)
def test_weights_formats_and_key_styles_load_the_same_network(
    models: dict[str, Path], tmp_path: Path, fmt: str, style: str, wrapper: str | None
) -> None:
    other = build_tiny_rrdb(tmp_path, 4, fmt, style=style, wrapper=wrapper)
    picture = image(24, 18)
    [reference] = runner(models["x4"]).run_batch([UpscaleRequest(picture)])
    loaded = runner(other)
    assert loaded.architecture == "RRDBNet x4 (nf 8, nb 1)"
    [out] = loaded.run_batch([UpscaleRequest(picture)])
    assert np.array_equal(pixels(out), pixels(reference))


def test_a_folder_with_one_weights_file_loads_it(tmp_path: Path) -> None:
    build_tiny_rrdb(tmp_path / "folder", 2, "safetensors")
    assert runner(tmp_path / "folder").scale == 2


def test_another_architecture_is_refused_with_what_is_supported(tmp_path: Path) -> None:
    swinir_like = {
        "conv_first.weight": torch.zeros(8, 3, 3, 3),
        "layers.0.residual_group.blocks.0.attn.qkv.weight": torch.zeros(24, 8),
        "conv_after_body.weight": torch.zeros(8, 8, 3, 3),
    }
    path = tmp_path / "swinir.pth"
    torch.save({"params": swinir_like}, path)
    with pytest.raises(WorkerError) as info:
        runner(path)
    text = str(info.value)
    assert "not an RRDBNet" in text and "swinir.pth" in text
    assert "Swin2SR" in text and "spandrel" in text and "torchvision" in text


def test_rrdb_shapes_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    state = rrdb_state(4)
    state["body.0.rdb2.conv3.weight"] = torch.zeros(5, 16, 3, 3)  # gc 5 in one conv
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(WorkerError, match="do not fit RRDBNet x4"):
        runner(path)


def test_a_pickled_whole_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "whole.pth"
    torch.save(torch.nn.Conv2d(3, 3, 3), path)
    with pytest.raises(WorkerError, match="Cannot read the image-upscale weights"):
        runner(path)


def test_a_damaged_file_is_refused(tmp_path: Path) -> None:
    for name in ("junk.pth", "junk.safetensors"):
        (tmp_path / name).write_bytes(b"not a checkpoint at all")
        with pytest.raises(WorkerError, match="Cannot read the image-upscale weights"):
            runner(tmp_path / name)


@pytest.mark.parametrize("name", ["missing.pth", "models/missing.safetensors", "/nowhere/x.pth"])
def test_a_missing_file_is_a_worker_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WorkerError, match="does not exist"):
        runner(Path(name))


def test_a_folder_of_another_transformers_model_is_refused(tmp_path: Path) -> None:
    from transformers import BertConfig

    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1).save_pretrained(tmp_path)
    with pytest.raises(WorkerError, match="bert checkpoint, not Swin2SR"):
        runner(tmp_path)


def test_loading_is_lazy() -> None:
    made = UpscaleRunner(ModelSource("/nowhere/model.pth"), Placement("cpu", "float32"))
    assert made.scale == 0 and made.forward_passes == 0
    assert made.label == "image-upscale /nowhere/model.pth on cpu fp32"


# The tile plan


@pytest.mark.parametrize("multiple", [1, 2, 4, 8])
@pytest.mark.parametrize("length", [1, 63, 64, 65, 100, 127, 300, 1001])
def test_tiles_cover_overlap_and_sit_on_the_grid(length: int, multiple: int) -> None:
    tile, overlap = 64, 16
    spans = _spans(length, tile, overlap, multiple)
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(start % multiple == 0 for start, _ in spans)
    assert all(tile <= end - start < tile + multiple for start, end in spans if length > tile)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end - start >= overlap  # neighbours overlap enough
    assert len({start for start, _ in spans}) == len(spans)
