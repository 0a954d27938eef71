"""Tiny vision-language checkpoints built on disk for tests: random weights, a real processor.

`build_tiny_blip` writes a BLIP checkpoint (2-layer vision and text towers, hidden size 32,
32x32 images) with a WordPiece tokenizer over a small English vocabulary and a
`BlipImageProcessor`, all through `save_pretrained`, so the code under test loads it exactly
as it would load a real checkpoint from a folder. Nothing comes from the hub. The weights are
random (seeded): the captions are nonsense made of the vocabulary's words.

`build_tiny_vit` writes a checkpoint of another architecture, for "not supported" tests.
"""

from __future__ import annotations

from pathlib import Path

# BLIP's tokenizer is BERT's plus [DEC] (the decoder's start token) and [ENC].
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]"]
_WORDS = (
    "a an the of on in with and is are what how many color there photo picture image "
    "cat cats dog dogs man woman person people car tree house sky grass water street "
    "red blue green white black yellow small large sitting standing next to two three "
    "yes no"
)
VOCAB = [*SPECIAL, *_WORDS.split(), ".", ",", "?"]
IMAGE_SIZE = 32


def _tokenizer() -> object:
    from transformers import BertTokenizer

    return BertTokenizer(
        vocab={token: index for index, token in enumerate(VOCAB)},
        do_lower_case=True,
        bos_token="[DEC]",
        additional_special_tokens=["[ENC]"],
    )


def build_tiny_blip(
    path: Path,
    *,
    vqa: bool = False,
    seed: int = 0,
    hidden: int = 32,
    layers: int = 2,
    image_size: int = IMAGE_SIZE,
    patch_size: int = 8,
    fixed_tokens: int | None = None,
) -> Path:
    """Write a tiny random BLIP checkpoint (model, tokenizer, image processor) to `path`.

    Args:
        path: The folder to write (created).
        vqa: Build `BlipForQuestionAnswering` instead of `BlipForConditionalGeneration`.
        seed: Seed of the random weights.
        hidden: Width of both towers (the benchmark builds a bigger one).
        layers: Layers of each tower.
        image_size: Input image edge in pixels.
        patch_size: ViT patch edge in pixels.
        fixed_tokens: Make every caption exactly this many tokens (generation_config's
            min_new_tokens), so timings do not depend on where random weights stop.

    Returns:
        The folder.
    """
    import torch
    from transformers import (
        BlipConfig,
        BlipForConditionalGeneration,
        BlipForQuestionAnswering,
        BlipImageProcessor,
        BlipProcessor,
    )

    ids = {token: index for index, token in enumerate(VOCAB)}
    config = BlipConfig(
        vision_config={
            "hidden_size": hidden,
            "intermediate_size": 2 * hidden,
            "projection_dim": hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": patch_size,
            "initializer_range": 0.02,
        },
        text_config={
            "vocab_size": len(VOCAB),
            "hidden_size": hidden,
            "intermediate_size": 2 * hidden,
            "projection_dim": hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": 2,
            "max_position_embeddings": 64,
            "bos_token_id": ids["[DEC]"],
            "eos_token_id": ids["[SEP]"],
            "pad_token_id": ids["[PAD]"],
            "sep_token_id": ids["[SEP]"],
            # Larger than BLIP's 0.02 so the image reaches the text through cross-attention:
            # with 0.02 every image gets the same caption, and order could not be tested.
            "initializer_range": 0.1,
        },
        projection_dim=hidden,
        image_text_hidden_size=hidden,
        initializer_range=0.1,
    )
    torch.manual_seed(seed)
    model_class = BlipForQuestionAnswering if vqa else BlipForConditionalGeneration
    model = model_class(config).eval()
    if fixed_tokens is not None:
        model.generation_config.min_new_tokens = fixed_tokens
    image_processor = BlipImageProcessor(
        size={"height": image_size, "width": image_size}, do_convert_rgb=True
    )
    processor = BlipProcessor(image_processor=image_processor, tokenizer=_tokenizer())
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def build_tiny_vit(path: Path, *, seed: int = 0) -> Path:
    """Write a tiny random ViT image classifier (not an image-to-text model) to `path`."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(seed)
    config = ViTConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=8,
    )
    path.mkdir(parents=True, exist_ok=True)
    ViTForImageClassification(config).save_pretrained(path)
    ViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(path)
    return path
