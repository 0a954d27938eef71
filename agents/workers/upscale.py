"""Image upscaling (super-resolution) in tiles, so device memory stays bounded for any image size.

Two kinds of model load:
- Swin2SR checkpoints for transformers (a folder or Hugging Face repo with a config.json); the
  scale is the config's `upscale`.
- RRDBNet weights files (ESRGAN, Real-ESRGAN, BasicSR; `.pth` read with `weights_only=True`, or
  `.safetensors`), built by `rrdb`. Other architectures (SwinIR, HAT, DAT, ...) are refused:
  the spandrel package that reads them needs torchvision, which cannot live beside this torch.

Every image is cut into tiles of `tile` input pixels that overlap by at least `overlap` pixels
(an image no larger than one tile is one tile); tiles start on the model's grid (its window, or
its pixel-unshuffle factor), so each tile sees the pixels as the whole image would. Tiles of all
the requests in a `run_batch` are sorted by size and run `placement.batch_size` at a time, each
group mirror-padded on the bottom and right to a common size the model accepts (Swin2SR: a
multiple of its window; Real-ESRGAN x2/x1: of its pixel-unshuffle factor). The upscaled tiles
are cropped back and blended: across each overlap a tile's weight ramps from 0 to 1 over the
middle half, so the outer quarter next to a tile's cut edge (where it lacks context) never
counts and the two weights sum to one. The output is exactly (width * scale, height * scale),
clamped to [0, 1] and rounded to 8-bit RGB. Near the right and bottom edges an image's pixels
can differ slightly with the tiles it shares a pass with (a smaller tile is padded further).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ollagraph.agents.devices import Placement
from ollagraph.agents.errors import WorkerError
from ollagraph.agents.workers.rrdb import NotRRDBNet, read_rrdbnet
from ollagraph.agents.workers.sources import ModelSource

if TYPE_CHECKING:
    from PIL import Image
    from torch import Tensor

TASK_TITLE = "image-upscale"
WEIGHT_SUFFIXES = frozenset({".pth", ".pt", ".bin", ".safetensors"})
SUPPORTED = (
    "The upscale task runs Swin2SR checkpoints (a folder or repo with config.json, via "
    "transformers) and RRDBNet weights (ESRGAN, Real-ESRGAN, BasicSR) as .pth or .safetensors. "
    "Other architectures (SwinIR, HAT, DAT, OmniSR, ...) need spandrel, which needs torchvision "
    "and cannot be installed beside this torch build."
)


@dataclass(frozen=True)
class UpscaleRequest:
    """One image to upscale.

    Attributes:
        image: The decoded image (see `images.load_image`); converted to RGB if it is not.
    """

    image: Image.Image


@dataclass(frozen=True)
class _Tile:
    """One tile of one request: where it lies in the input, and its blend weights per axis."""

    request: int
    top: int
    left: int
    height: int
    width: int
    row_weights: Tensor  # (height * scale,)
    column_weights: Tensor  # (width * scale,)


class _Canvas:
    """One output image, accumulated from weighted upscaled tiles (float32, on the CPU)."""

    def __init__(self, shape: Sequence[int], scale: int) -> None:
        import torch

        channels, height, width = shape
        self.scale = scale
        self.sum = torch.zeros(channels, height * scale, width * scale)
        self.weight = torch.zeros(1, height * scale, width * scale)

    def add(self, tile: _Tile, output: Tensor) -> None:
        """Blend in one tile's upscaled pixels (channels, height * scale, width * scale)."""
        weights = tile.row_weights[:, None] * tile.column_weights[None, :]
        rows = slice(tile.top * self.scale, (tile.top + tile.height) * self.scale)
        columns = slice(tile.left * self.scale, (tile.left + tile.width) * self.scale)
        self.sum[:, rows, columns] += output * weights
        self.weight[:, rows, columns] += weights

    def image(self) -> Image.Image:
        """The blended image, as 8-bit RGB."""
        return _to_image(self.sum / self.weight)


class UpscaleRunner:
    """Upscale images with a Swin2SR or RRDBNet model, tile by tile (a `BatchRunner`).

    Args:
        source: The Swin2SR folder or repo, or the RRDBNet weights file.
        placement: Device, precision and tiles per forward pass (`batch_size`). Quantization
            applies to Swin2SR only (bitsandbytes has no kernels for RRDBNet's convolutions).
        tile: Tile edge in input pixels.
        overlap: Least overlap between neighbouring tiles, in input pixels.

    Attributes:
        forward_passes: Model calls made so far (one per group of up to `batch_size` tiles).
        scale: Output pixels per input pixel, per side (0 until `load`).
        architecture: What was loaded, e.g. `Swin2SR x2` or `RRDBNet x4 (nf 64, nb 23)`.
    """

    tile: int = 256
    overlap: int = 16

    def __init__(
        self, source: ModelSource, placement: Placement, *, tile: int = 256, overlap: int = 16
    ) -> None:
        if tile < 1 or not 0 <= overlap < tile:
            raise ValueError(f"need tile >= 1 and 0 <= overlap < tile, got {tile} and {overlap}")
        self.source = source
        self.placement = placement
        self.tile = tile
        self.overlap = overlap
        self.forward_passes = 0
        self.scale = 0
        self.architecture = ""
        self._model: Any = None
        self._call: Callable[[Tensor], Tensor] | None = None
        self._processor: Any = None
        self._multiple = 1
        self._channels = 3

    @property
    def label(self) -> str:
        """What runs where, e.g. `image-upscale x.pth [RRDBNet x4 (nf 64, nb 23)] on cpu fp32`."""
        loaded = f" [{self.architecture}]" if self.architecture else ""
        return f"{TASK_TITLE} {self.source.name}{loaded} on {self.placement.label}"

    # Loading

    def load(self) -> None:
        """Load the model onto its device.

        Raises:
            WorkerError: The model is missing, unreadable, or of an unsupported architecture.
        """
        weights = self._weights_file()
        if weights is None:
            self._load_swin2sr()
        else:
            self._load_rrdbnet(weights)

    def _weights_file(self) -> Path | None:
        """The RRDBNet weights file to read, or None for a transformers (Swin2SR) checkpoint."""
        name = self.source.name
        path = self.source.local_path
        if path is None:
            if self.source.looks_local() or Path(name).suffix.lower() in WEIGHT_SUFFIXES:
                raise WorkerError(
                    f"Model file {name} for {TASK_TITLE} does not exist.",
                    hint="Pass an existing .pth/.safetensors file, a Swin2SR folder or a repo id.",
                )
            return None  # a repo id: a transformers checkpoint
        if path.is_file():
            if path.suffix.lower() in WEIGHT_SUFFIXES:
                return path
            raise WorkerError(f"{path} is not a weights file (.pth or .safetensors). {SUPPORTED}")
        if (path / "config.json").is_file():
            return None
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in WEIGHT_SUFFIXES)
        if len(files) == 1:
            return files[0]
        found = "several weights files" if files else "no weights file"
        raise WorkerError(f"{path} has no config.json and {found}. {SUPPORTED}")

    def _load_swin2sr(self) -> None:
        from transformers import AutoConfig, Swin2SRForImageSuperResolution
        from transformers import Swin2SRImageProcessorPil as Processor

        name, kwargs = self.source.pretrained_args()
        placement = self.placement
        with self.source.loading(TASK_TITLE):
            config = AutoConfig.from_pretrained(name, **kwargs)
            kind = getattr(config, "model_type", "unknown")
            if kind != "swin2sr":
                raise WorkerError(f"{name} is a {kind} checkpoint, not Swin2SR. {SUPPORTED}")
            if config.num_channels != config.num_channels_out or config.num_channels not in (1, 3):
                raise WorkerError(
                    f"{name} maps {config.num_channels} to {config.num_channels_out} channels; "
                    "only RGB or grayscale images are supported."
                )
            options = placement.pretrained_options()
            model: Any = Swin2SRForImageSuperResolution.from_pretrained(
                name, config=config, **options, **kwargs
            )
            try:
                processor = Processor.from_pretrained(name, **kwargs)
            except OSError:  # no preprocessor_config.json: Swin2SR's defaults (rescale 1/255)
                processor = Processor()
        if not placement.placed_by_loader:
            model.to(placement.device)
        self._model = model.eval()
        self._processor = processor
        self._call = lambda batch: model(pixel_values=batch).reconstruction
        self._multiple = int(config.window_size)
        self._channels = int(config.num_channels)
        self.scale = int(config.upscale)
        self.architecture = f"Swin2SR x{self.scale}"

    def _load_rrdbnet(self, path: Path) -> None:
        with self.source.loading(TASK_TITLE):
            state = _read_weights(path)
        try:
            model, spec = read_rrdbnet(state)
        except NotRRDBNet as exc:
            raise WorkerError(
                f"{path} is not an RRDBNet (ESRGAN / Real-ESRGAN) checkpoint: {exc}.",
                hint=SUPPORTED,
            ) from None
        if spec.in_channels != spec.out_channels or spec.in_channels not in (1, 3):
            raise WorkerError(
                f"{path} maps {spec.in_channels} to {spec.out_channels} channels; "
                "only RGB or grayscale images are supported."
            )
        model.to(device=self.placement.device, dtype=self.placement.torch_dtype())
        self._model = model.eval()
        self._processor = None
        self._call = model
        self._multiple = spec.multiple
        self._channels = spec.in_channels
        self.scale = spec.scale
        self.architecture = spec.label

    def unload(self) -> None:
        """Drop the model so its memory can be freed."""
        self._model = None
        self._call = None
        self._processor = None

    # Running

    def run_batch(self, items: Sequence[UpscaleRequest]) -> list[Image.Image]:
        """Upscale every request's image; the tiles of all of them share forward passes.

        Args:
            items: The requests.

        Returns:
            One RGB image per request, `scale` times its width and height.

        Raises:
            WorkerError: The model is not loaded, or returned an unexpected size.
        """
        import torch

        if self._call is None:
            raise WorkerError(f"The {TASK_TITLE} model is not loaded.")
        with torch.inference_mode():
            inputs = [self._to_tensor(item.image) for item in items]
            canvases = [_Canvas(pixels.shape, self.scale) for pixels in inputs]
            tiles = [
                tile
                for index, pixels in enumerate(inputs)
                for tile in _tiles(index, pixels.shape[1], pixels.shape[2], self)
            ]
            tiles.sort(key=lambda t: (t.height, t.width), reverse=True)  # less padding per pass
            for start in range(0, len(tiles), self.placement.batch_size):
                group = tiles[start : start + self.placement.batch_size]
                crops = [
                    inputs[t.request][:, t.top : t.top + t.height, t.left : t.left + t.width]
                    for t in group
                ]
                for tile, output in zip(group, self._forward(crops), strict=True):
                    canvases[tile.request].add(tile, output)
            return [canvas.image() for canvas in canvases]

    def _to_tensor(self, image: Image.Image) -> Tensor:
        """The image as a float (channels, height, width) tensor in [0, 1], on the CPU."""
        import numpy as np
        import torch

        mode = "L" if self._channels == 1 else "RGB"
        if image.mode != mode:
            image = image.convert(mode)
        if self._processor is not None:
            pixels = self._processor(images=image, do_pad=False, return_tensors="pt")
            return pixels["pixel_values"][0].float()
        array = np.asarray(image, dtype=np.float32) / 255.0
        if array.ndim == 2:
            array = array[:, :, None]
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()

    def _forward(self, crops: list[Tensor]) -> list[Tensor]:
        """Run one forward pass over tiles padded to a common size; crop each result back."""
        import torch

        assert self._call is not None
        height = _round_up(max(c.shape[1] for c in crops), self._multiple)
        width = _round_up(max(c.shape[2] for c in crops), self._multiple)
        batch = torch.stack([_mirror_pad(c, height, width) for c in crops])
        batch = batch.to(device=self.placement.device, dtype=self.placement.torch_dtype())
        output = self._call(batch)
        self.forward_passes += 1
        expected = (height * self.scale, width * self.scale)
        if tuple(output.shape[-2:]) != expected:
            raise WorkerError(
                f"The {TASK_TITLE} model turned {height}x{width} tiles into "
                f"{output.shape[-2]}x{output.shape[-1]}, not {expected[0]}x{expected[1]} "
                f"(scale {self.scale})."
            )
        output = output.float().cpu()
        return [
            output[i, :, : c.shape[1] * self.scale, : c.shape[2] * self.scale]
            for i, c in enumerate(crops)
        ]


def _read_weights(path: Path) -> Any:
    """What a weights file holds: tensors only (`weights_only=True`; safetensors by design)."""
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        import torch

        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling, zip and safetensors errors of a damaged/foreign file
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise WorkerError(
            f"Cannot read the {TASK_TITLE} weights {path}: {first}",
            hint="The file must hold a state dict of tensors (a pickled whole model is refused "
            "for safety). " + SUPPORTED,
        ) from None


def _spans(length: int, tile: int, overlap: int, multiple: int = 1) -> list[tuple[int, int]]:
    """[start, end) of the tiles along one side, evenly spread, overlapping by >= `overlap`.

    Starts are multiples of `multiple`, so a tile sees the same pixel-unshuffle or window grid
    as the whole image would; the last tile runs to the end (up to `multiple - 1` longer).
    """
    if length <= tile:
        return [(0, length)]
    # Flooring a start to the grid moves it by < multiple: leave room for that in the step.
    step = max(1, tile - overlap - (multiple - 1))
    count = math.ceil((length - tile) / step) + 1
    spread = (i * (length - tile) // (count - 1) for i in range(count))
    starts = sorted({start // multiple * multiple for start in spread})
    return [(start, start + tile) for start in starts[:-1]] + [(starts[-1], length)]


def _ramp(spans: list[tuple[int, int]], index: int, scale: int) -> Tensor:
    """Blend weights of tile `index`'s output pixels along one side.

    Across an overlap of width `ov` with a neighbour, the weight is 0 for the outer `ov/4`
    (next to this tile's cut edge), rises linearly over the middle `ov/2` and is 1 beyond;
    the neighbour's weight falls over the same pixels, so the two sum to one.
    """
    import torch

    start, end = spans[index]
    # Centres of the output pixels, in input coordinates.
    x = (torch.arange((end - start) * scale, dtype=torch.float32) + 0.5) / scale + start
    weights = torch.ones_like(x)
    if index > 0 and (width := spans[index - 1][1] - start) > 0:
        weights = torch.minimum(weights, ((x - start - width / 4) / (width / 2)).clamp(0, 1))
    if index + 1 < len(spans) and (width := end - spans[index + 1][0]) > 0:
        weights = torch.minimum(weights, ((end - width / 4 - x) / (width / 2)).clamp(0, 1))
    return weights


def _tiles(request: int, height: int, width: int, runner: UpscaleRunner) -> list[_Tile]:
    """The tiles of one request's image, with their blend weights at the runner's scale."""
    scale, multiple = runner.scale, runner._multiple
    tile = max(runner.tile, runner.overlap + 2 * multiple)  # room for grid-aligned starts
    rows = _spans(height, tile, runner.overlap, multiple)
    columns = _spans(width, tile, runner.overlap, multiple)
    row_weights = [_ramp(rows, i, scale) for i in range(len(rows))]
    column_weights = [_ramp(columns, j, scale) for j in range(len(columns))]
    return [
        _Tile(request, top, left, bottom - top, right - left, row_weights[i], column_weights[j])
        for i, (top, bottom) in enumerate(rows)
        for j, (left, right) in enumerate(columns)
    ]


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _mirror_pad(pixels: Tensor, height: int, width: int) -> Tensor:
    """Pad a (channels, h, w) tile on the bottom and right to (height, width) by reflection.

    Reflection is repeated when the pad is longer than the tile; a side of one pixel repeats it.
    """
    from torch.nn import functional

    batch = pixels[None]
    while batch.shape[-2] < height or batch.shape[-1] < width:
        down = min(height - batch.shape[-2], batch.shape[-2] - 1)
        right = min(width - batch.shape[-1], batch.shape[-1] - 1)
        if down <= 0 and right <= 0:  # a one-pixel side cannot reflect
            down, right = height - batch.shape[-2], width - batch.shape[-1]
            return functional.pad(batch, (0, right, 0, down), mode="replicate")[0]
        batch = functional.pad(batch, (0, max(right, 0), 0, max(down, 0)), mode="reflect")
    return batch[0]


def _to_image(pixels: Tensor) -> Image.Image:
    """An 8-bit RGB image from a (channels, h, w) tensor in [0, 1] (clamped)."""
    import torch
    from PIL import Image

    array = pixels.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if array.shape[2] == 1:
        return Image.fromarray(array[:, :, 0]).convert("RGB")
    return Image.fromarray(array)


__all__ = ["SUPPORTED", "TASK_TITLE", "UpscaleRequest", "UpscaleRunner"]
