"""The image-to-text worker: captions, prompted captions and visual question answering.

Supported: the BLIP family of transformers, picked from the checkpoint's `config.json`
(`architectures`): `BlipForConditionalGeneration` writes captions, plain or continuing a text
prefix ("a photo of"), and `BlipForQuestionAnswering` answers a question about the image.
BLIP only: other image-to-text families (BLIP-2, InstructBLIP, GIT, ViT-GPT2) are refused with
a `WorkerError` naming the supported architectures.

One batch is one `processor(...)` call and one `model.generate(...)` call. Requests share a batch
only when they have the same prompt and the same `max_new_tokens` (`CaptionRunner.batch_key`):
BLIP's caption decoder reads its prompt with no left padding, and its question-answering
decoder attends to the padded question positions, so mixing prompts of different lengths in one
call would change the answers. Identical prompts need no padding, so a batch gives every image
the text it would get alone: a folder captioned with one prompt or asked one question runs in
`ceil(n / batch_size)` generate calls.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ollagraph.agents.devices import Placement
from ollagraph.agents.errors import WorkerError
from ollagraph.agents.workers.sources import ModelSource

if TYPE_CHECKING:
    from PIL import Image

TASK = "image-to-text"
CAPTION_ARCHITECTURE = "BlipForConditionalGeneration"
VQA_ARCHITECTURE = "BlipForQuestionAnswering"
SUPPORTED_ARCHITECTURES = (CAPTION_ARCHITECTURE, VQA_ARCHITECTURE)


def _clean(text: str) -> str:
    """`text` with runs of whitespace made single spaces, and no space at either end."""
    return " ".join(text.split())


@dataclass(frozen=True)
class CaptionRequest:
    """One image to describe, or to ask about.

    Attributes:
        image: The decoded RGB image.
        prompt: Empty for a plain caption; a text the caption continues ("a photo of"); or,
            for a question-answering model, the question. Whitespace is normalized.
        max_new_tokens: Most tokens to generate (the prompt not counted).
    """

    image: Image.Image
    prompt: str = ""
    max_new_tokens: int = 40

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise WorkerError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}.")
        object.__setattr__(self, "prompt", _clean(self.prompt or ""))


class CaptionRunner:
    """Run a BLIP captioning or question-answering model on batches of `CaptionRequest`s.

    Construction is cheap; `load()` reads the checkpoint. Drive it through a `Worker`
    (`agents.workers.pool`), which calls `load`, `run_batch` and `unload` from one thread.

    Attributes:
        source: Where the checkpoint comes from.
        placement: Device, precision, device_map and quantization to load it with.
        forward_passes: `generate` calls run so far (one per batch of compatible requests).
    """

    def __init__(self, source: ModelSource, placement: Placement) -> None:
        self.source = source
        self.placement = placement
        self.forward_passes = 0
        self.architecture: str | None = None
        self._model: Any = None
        self._processor: Any = None

    @property
    def label(self) -> str:
        """The model class and placement, e.g. `BlipForConditionalGeneration on cpu fp32`."""
        return f"{self.architecture or 'BLIP'} on {self.placement.label}"

    @property
    def answers_questions(self) -> bool:
        """True when the loaded checkpoint is a question-answering (VQA) model."""
        return self.architecture == VQA_ARCHITECTURE

    @staticmethod
    def batch_key(item: CaptionRequest) -> Hashable:
        """Requests with different keys cannot share one `generate` call.

        Args:
            item: A request.

        Returns:
            The prompt and the token limit.
        """
        return (item.prompt, item.max_new_tokens)

    def load(self) -> None:
        """Read the config, pick the BLIP class, load model and processor onto the device.

        Raises:
            WorkerError: The checkpoint is missing, incomplete or not a supported BLIP model.
        """
        import transformers

        name, kwargs = self.source.pretrained_args()
        placement = self.placement
        with self.source.loading(TASK):
            config = transformers.AutoConfig.from_pretrained(name, **kwargs)
            architecture = self._pick_architecture(config)
            options = placement.pretrained_options()
            model_class = getattr(transformers, architecture)
            model = model_class.from_pretrained(name, config=config, **kwargs, **options)
            processor = transformers.AutoProcessor.from_pretrained(name, **kwargs)
        if not placement.placed_by_loader:
            model = model.to(placement.device)
        self._model = model.eval()
        self._processor = processor
        self.architecture = architecture

    def _pick_architecture(self, config: Any) -> str:
        architectures = list(getattr(config, "architectures", None) or [])
        for architecture in architectures:
            if architecture in SUPPORTED_ARCHITECTURES:
                return architecture
        if not architectures and getattr(config, "model_type", None) == "blip":
            return CAPTION_ARCHITECTURE  # a BLIP config saved without its model class
        found = ", ".join(architectures) or getattr(config, "model_type", None) or "unknown"
        raise WorkerError(
            f"The {TASK} model {self.source.name} is a {found} checkpoint; the {TASK} worker "
            f"supports {' and '.join(SUPPORTED_ARCHITECTURES)} (BLIP) checkpoints only.",
            hint="Use a BLIP captioning model such as Salesforce/blip-image-captioning-base, "
            "or Salesforce/blip-vqa-base to answer questions.",
        )

    def run_batch(self, items: Sequence[CaptionRequest]) -> list[str]:
        """Describe every image; one `generate` call per group of same-`batch_key` requests.

        Args:
            items: The requests (a `Worker` sends only requests with one `batch_key`).

        Returns:
            One text per request, in order: the caption (a prompted caption starts with its
            prompt), or the answer to the question.

        Raises:
            WorkerError: The model is not loaded, or a question-answering model got no question.
        """
        if self._model is None or self._processor is None:
            raise WorkerError(f"The {TASK} model is not loaded.", hint="Call load() first.")
        results: list[str] = [""] * len(items)
        groups: dict[Hashable, list[int]] = {}
        for index, item in enumerate(items):
            groups.setdefault(self.batch_key(item), []).append(index)
        for indices in groups.values():
            texts = self._generate([items[i] for i in indices])
            for index, text in zip(indices, texts, strict=True):
                results[index] = text
        return results

    def _generate(self, items: Sequence[CaptionRequest]) -> list[str]:
        import torch

        prompt, max_new_tokens = items[0].prompt, items[0].max_new_tokens
        if self.answers_questions and not prompt:
            raise WorkerError(
                f"{self.architecture} answers questions about an image: pass the question as "
                "the prompt.",
                hint="Or use a captioning model (BlipForConditionalGeneration) for captions.",
            )
        inputs = self._processor(
            images=[item.image for item in items],
            text=[prompt] * len(items) if prompt else None,
            padding=True,
            return_tensors="pt",
        )
        device = self.placement.device
        tensors: dict[str, Any] = {
            "pixel_values": inputs["pixel_values"].to(device, self.placement.torch_dtype())
        }
        for key in ("input_ids", "attention_mask"):
            if key in inputs:
                tensors[key] = inputs[key].to(device)
        with torch.inference_mode():
            output = self._model.generate(**tensors, max_new_tokens=max_new_tokens)
        self.forward_passes += 1
        texts = self._processor.batch_decode(output, skip_special_tokens=True)
        return [_clean(text) for text in texts]

    def unload(self) -> None:
        """Drop the model and processor so their memory can be freed."""
        self._model = None
        self._processor = None


__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "CaptionRequest",
    "CaptionRunner",
]
