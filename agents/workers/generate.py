"""Text-to-image generation with a diffusers pipeline, many prompts per pipeline call.

`GenerateRunner` loads any text-to-image checkpoint that diffusers' `AutoPipelineForText2Image`
maps (Stable Diffusion 1.x/2.x and sd-turbo, SDXL and sdxl-turbo, FLUX.1 dev and schnell, SD3,
PixArt, ...), falling back to `DiffusionPipeline` for a checkpoint AutoPipeline does not know.
The tests check it on a tiny random-weight Stable Diffusion pipeline (`tests/tiny_diffusion.py`);
the other families go through the same calls but are not exercised there.

Requests that can share a pipeline call (same size, steps, guidance, and all with or all without
a negative prompt: see `GenerateRunner.batch_key`) run as one call with a list of prompts and one
`torch.Generator` per prompt, so each image depends on its own seed only: a seed reproduces its
image whether it ran alone or in a batch. The generators live on the CPU, so a seed gives the
same starting noise on every device. Sizes and steps are checked before anything runs, and a bad
request gets its own `WorkerError` while the others in its batch still run.

Every image is written as a PNG to the request's `output_dir` under a name made from the prompt
and the seed (a counter is added rather than overwrite a file), with the prompt, negative prompt,
seed, steps and guidance as PNG text metadata.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ollagraph.agents.errors import WorkerError

if TYPE_CHECKING:
    from PIL import Image

    from ollagraph.agents.devices import Placement
    from ollagraph.agents.workers.sources import ModelSource

TASK_TITLE = "image-generation"
DEFAULT_STEPS = 25
MAX_STEPS = 200
MIN_SIDE = 64
MAX_SIDE = 4096
SEED_LIMIT = 2**64  # torch generators take seeds in [0, 2**64)
_DENOISERS = ("unet", "transformer")  # the components quantization applies to
_SLUG_LENGTH = 48


@dataclass(frozen=True)
class GenerateRequest:
    """One image to generate.

    Attributes:
        prompt: What the image shows.
        output_dir: The folder the PNG is written to (created when missing).
        negative_prompt: What the image should not show (empty: nothing).
        width: Image width in pixels (None: the pipeline's default size).
        height: Image height in pixels (None: the pipeline's default size).
        steps: Denoising steps (None: the model family's default, e.g. 1 for sd-turbo,
            4 for FLUX schnell, 25 for others).
        guidance: Classifier-free guidance scale (None: the pipeline's default; 0.0 for turbo
            and schnell models).
        seed: Seed of the starting noise (None: a random seed, reported in the result).
    """

    prompt: str
    output_dir: Path
    negative_prompt: str = ""
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance: float | None = None
    seed: int | None = None


@dataclass(frozen=True)
class GeneratedImage:
    """A generated image on disk.

    Attributes:
        path: The PNG file.
        prompt: The prompt it was generated from.
        seed: The seed that reproduces it.
        width: Its width in pixels.
        height: Its height in pixels.
    """

    path: Path
    prompt: str
    seed: int
    width: int
    height: int


@dataclass(frozen=True)
class FamilyDefaults:
    """Defaults for a model family where the request leaves a setting to the model.

    Attributes:
        family: A short name (turbo, flux-schnell, lcm, lightning, standard).
        steps: Denoising steps.
        guidance: Guidance scale, or None for the pipeline's own default.
    """

    family: str
    steps: int
    guidance: float | None


def family_defaults(model_name: str, pipeline: Any = None) -> FamilyDefaults:
    """The default steps and guidance for a model, from its name and its loaded pipeline.

    Distilled models need few steps and no guidance: sd-turbo and sdxl-turbo take 1 step at
    guidance 0, FLUX.1 schnell (a FLUX transformer without guidance embeddings) 4 steps at 0,
    SDXL-Lightning 4 steps at 0, LCM models 4 steps at their pipeline's guidance. Everything
    else takes 25 steps at the pipeline's default guidance.

    Args:
        model_name: The repo id or path the model was loaded from.
        pipeline: The loaded pipeline, when there is one (to recognise FLUX schnell by config).

    Returns:
        The family's defaults.
    """
    name = model_name.lower()
    transformer_config = getattr(getattr(pipeline, "transformer", None), "config", None)
    is_flux = "flux" in type(pipeline).__name__.lower() or "flux" in name
    no_guidance_embeds = getattr(transformer_config, "guidance_embeds", None) is False
    if "turbo" in name:
        return FamilyDefaults("turbo", 1, 0.0)
    if "schnell" in name or (is_flux and no_guidance_embeds):
        return FamilyDefaults("flux-schnell", 4, 0.0)
    if "lightning" in name:
        return FamilyDefaults("lightning", 4, 0.0)
    if "lcm" in name:
        return FamilyDefaults("lcm", 4, None)
    return FamilyDefaults("standard", DEFAULT_STEPS, None)


def size_multiple(pipeline: Any) -> int:
    """What width and height must be multiples of for `pipeline`.

    UNet pipelines (Stable Diffusion, SDXL) need multiples of 8 (the VAE's scale); transformer
    pipelines (FLUX, SD3, PixArt) pack 2x2 latent patches and so need twice the VAE's scale.
    """
    scale = max(8, int(getattr(pipeline, "vae_scale_factor", 8) or 8))
    return scale * 2 if getattr(pipeline, "transformer", None) is not None else scale


class GenerateRunner:
    """Generate images from text prompts with one diffusers pipeline, batching the prompts.

    Args:
        source: The checkpoint (a diffusers folder or Hugging Face repo id).
        placement: The device, precision, spreading and quantization to load it with.
    """

    def __init__(self, source: ModelSource, placement: Placement) -> None:
        self.source = source
        self.placement = placement
        self.forward_passes = 0
        self.pipeline: Any = None
        self.defaults = FamilyDefaults("standard", DEFAULT_STEPS, None)

    @property
    def label(self) -> str:
        """The task, the model and its placement, e.g. `image-generation sd-turbo (cuda fp16)`."""
        return f"{TASK_TITLE} {self.source.name} ({self.placement.label})"

    @staticmethod
    def batch_key(item: GenerateRequest) -> Hashable:
        """What must match for two requests to share a pipeline call."""
        return (item.width, item.height, item.steps, item.guidance, bool(item.negative_prompt))

    def load(self) -> None:
        """Load the pipeline onto its device (or spread it over the GPUs).

        Raises:
            WorkerError: The checkpoint is missing, incomplete or not a diffusers pipeline.
        """
        from diffusers import AutoPipelineForText2Image, DiffusionPipeline

        name, kwargs = self.source.pretrained_args()
        kwargs["dtype"] = self.placement.torch_dtype()
        kwargs["low_cpu_mem_usage"] = self.placement.low_cpu_mem_usage
        if self.placement.device_map:
            kwargs["device_map"] = "balanced"  # the one strategy diffusers has for pipelines
        with self.source.loading(TASK_TITLE):
            quantization = self._quantization_config(name, kwargs)
            if quantization is not None:
                kwargs["quantization_config"] = quantization
            try:
                pipeline = AutoPipelineForText2Image.from_pretrained(name, **kwargs)
            except ValueError as exc:
                if "AutoPipeline" not in str(exc):
                    raise
                pipeline = DiffusionPipeline.from_pretrained(name, **kwargs)
        if not self.placement.device_map:
            pipeline.to(self.placement.device)  # bitsandbytes layers stay as they were loaded
        pipeline.set_progress_bar_config(disable=True)
        self.defaults = family_defaults(self.source.name, pipeline)
        self.pipeline = pipeline

    def run_batch(self, items: Sequence[GenerateRequest]) -> list[GeneratedImage | Exception]:
        """Generate one image per request, one pipeline call per group of compatible requests.

        Returns:
            One result per request, in order: the image, or the `WorkerError` that request
            raised (a bad size or step count, or a file that could not be written).

        Raises:
            WorkerError: The pipeline is not loaded.
        """
        import torch

        if self.pipeline is None:
            raise WorkerError(f"The {TASK_TITLE} model is not loaded.")
        results: list[GeneratedImage | Exception | None] = [None] * len(items)
        groups: dict[Hashable, list[tuple[int, GenerateRequest, int]]] = {}
        for index, item in enumerate(items):
            problem = self._check(item)
            if problem is not None:
                results[index] = problem
                continue
            seed = item.seed if item.seed is not None else secrets.randbelow(2**32)
            groups.setdefault(self.batch_key(item), []).append((index, item, seed))
        for group in groups.values():
            with torch.inference_mode():
                images = self._generate([item for _, item, _ in group], [s for _, _, s in group])
            for (index, item, seed), image in zip(group, images, strict=True):
                results[index] = self._save(item, seed, image)
        return [r if r is not None else WorkerError("no result") for r in results]

    def unload(self) -> None:
        """Drop the pipeline so its memory can be freed."""
        self.pipeline = None

    # helpers

    def _check(self, item: GenerateRequest) -> WorkerError | None:
        multiple = size_multiple(self.pipeline)
        for side, value in (("width", item.width), ("height", item.height)):
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                return WorkerError(f"Image {side} must be a whole number of pixels, got {value!r}.")
            if not MIN_SIDE <= value <= MAX_SIDE or value % multiple:
                nearest = max(MIN_SIDE, min(MAX_SIDE, value // multiple * multiple))
                return WorkerError(
                    f"Image {side} {value} is not supported: use a multiple of {multiple} "
                    f"between {MIN_SIDE} and {MAX_SIDE} pixels.",
                    hint=f"For example {side} {nearest}.",
                )
        if item.steps is not None and (
            not isinstance(item.steps, int) or not 1 <= item.steps <= MAX_STEPS
        ):
            return WorkerError(
                f"steps must be a whole number from 1 to {MAX_STEPS}, got {item.steps!r}."
            )
        if item.guidance is not None and (
            not isinstance(item.guidance, int | float)
            or not math.isfinite(item.guidance)
            or item.guidance < 0
        ):
            return WorkerError(f"guidance must be a number of 0 or more, got {item.guidance!r}.")
        if item.seed is not None and (
            not isinstance(item.seed, int) or not 0 <= item.seed < SEED_LIMIT
        ):
            return WorkerError(f"seed must be a whole number from 0 to 2**64-1, got {item.seed!r}.")
        return None

    def _generate(self, items: list[GenerateRequest], seeds: list[int]) -> list[Image.Image]:
        import torch

        first = items[0]  # the batch key makes the rest of the settings the same for all
        arguments: dict[str, Any] = {
            "prompt": [item.prompt for item in items],
            "num_inference_steps": first.steps or self.defaults.steps,
            "generator": [torch.Generator("cpu").manual_seed(seed) for seed in seeds],
        }
        guidance = first.guidance if first.guidance is not None else self.defaults.guidance
        if guidance is not None:
            arguments["guidance_scale"] = float(guidance)
        if first.width is not None:
            arguments["width"] = first.width
        if first.height is not None:
            arguments["height"] = first.height
        if first.negative_prompt:
            arguments["negative_prompt"] = [item.negative_prompt for item in items]
        images = list(self.pipeline(**arguments).images)
        self.forward_passes += 1
        if len(images) != len(items):
            raise WorkerError(
                f"The {TASK_TITLE} pipeline returned {len(images)} images for {len(items)} prompts."
            )
        return images

    def _save(
        self, item: GenerateRequest, seed: int, image: Image.Image
    ) -> GeneratedImage | Exception:
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_text("prompt", item.prompt)
        if item.negative_prompt:
            info.add_text("negative_prompt", item.negative_prompt)
        info.add_text("seed", str(seed))
        info.add_text("steps", str(item.steps or self.defaults.steps))
        guidance = item.guidance if item.guidance is not None else self.defaults.guidance
        if guidance is not None:
            info.add_text("guidance", str(guidance))
        info.add_text("model", self.source.name)
        try:
            path = _write_new(Path(item.output_dir), _slug(item.prompt), seed, image, info)
        except OSError as exc:
            return WorkerError(
                f"Cannot write the generated image to {item.output_dir}: {exc.strerror or exc}",
                hint="Pass a folder you can write to.",
            )
        width, height = image.size
        return GeneratedImage(path=path, prompt=item.prompt, seed=seed, width=width, height=height)

    def _quantization_config(self, name: str, kwargs: dict[str, Any]) -> Any:
        """A diffusers `PipelineQuantizationConfig` for the denoiser, or None."""
        if self.placement.quantization == "none":
            return None
        from diffusers import DiffusionPipeline
        from diffusers.quantizers import PipelineQuantizationConfig

        index = DiffusionPipeline.load_config(
            name,
            **{
                k: v
                for k, v in kwargs.items()
                if k in ("cache_dir", "local_files_only", "revision", "token")
            },
        )
        components = [c for c in _DENOISERS if c in index] or None
        if self.placement.quantization == "int8":
            return PipelineQuantizationConfig(
                quant_backend="bitsandbytes_8bit",
                quant_kwargs={"load_in_8bit": True},
                components_to_quantize=components,
            )
        return PipelineQuantizationConfig(
            quant_backend="bitsandbytes_4bit",
            quant_kwargs={
                "load_in_4bit": True,
                "bnb_4bit_quant_type": "nf4" if self.placement.quantization == "nf4" else "fp4",
                "bnb_4bit_compute_dtype": self.placement.torch_dtype(),
            },
            components_to_quantize=components,
        )


def _slug(prompt: str) -> str:
    """A file-name-safe short form of a prompt: `A red fox, at dawn!` -> `a-red-fox-at-dawn`."""
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")
    return slug[:_SLUG_LENGTH].rstrip("-") or "image"


def _write_new(folder: Path, stem: str, seed: int, image: Image.Image, info: Any) -> Path:
    """Write `image` as a PNG to a new file in `folder`, never replacing an existing one."""
    folder.mkdir(parents=True, exist_ok=True)
    counter = 0
    while True:
        suffix = f"-{counter}" if counter else ""
        path = folder / f"{stem}-{seed}{suffix}.png"
        try:
            handle = path.open("xb")  # exclusive: fails if another writer got there first
        except FileExistsError:
            counter += 1
            continue
        try:
            with handle:
                image.save(handle, format="PNG", pnginfo=info)
        except BaseException:
            path.unlink(missing_ok=True)  # no half-written file left behind
            raise
        return path


__all__ = [
    "FamilyDefaults",
    "GenerateRequest",
    "GenerateRunner",
    "GeneratedImage",
    "family_defaults",
    "size_multiple",
]
