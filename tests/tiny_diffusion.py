"""A tiny Stable Diffusion pipeline built on disk for tests: random weights, a real tokenizer.

Every part comes from a config, nothing from the hub: a two-block UNet and VAE with a handful of
channels, a two-layer CLIP text encoder, and a CLIP tokenizer whose vocabulary is written here
(the 256 byte-level characters, each also with the `</w>` end-of-word suffix, plus the start and
end tokens; no merges, so every word is spelled out character by character). The VAE halves the
size once, so the pipeline's default image is 64x64 on a 32x32 latent: one denoising step costs
milliseconds on a CPU. The images are noise, which is all the worker tests need.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

TEXT_LENGTH = 16  # the tokenizer pads every prompt to this many tokens
SAMPLE_SIZE = 32  # the UNet's latent side; images are twice that (the VAE scales by 2)


def byte_characters() -> list[str]:
    """The 256 printable characters byte-level BPE uses for the bytes 0..255, in byte order."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    kept = set(keep)
    characters: list[str] = []
    shifted = 0
    for byte in range(256):
        if byte in kept:
            characters.append(chr(byte))
        else:  # unprintable bytes move above 255 so every byte has a visible stand-in
            characters.append(chr(256 + shifted))
            shifted += 1
    return characters


def write_clip_vocabulary(folder: Path) -> Path:
    """Write `vocab.json` and `merges.txt` of a character-level CLIP tokenizer to `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {}
    for character in byte_characters():
        vocab[character] = len(vocab)
    for character in byte_characters():
        vocab[character + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return folder


def build_tiny_sd(path: Path, *, seed: int = 0) -> Path:
    """Save a tiny random-weight Stable Diffusion pipeline (`StableDiffusionPipeline`) to `path`.

    Args:
        path: The folder to write (created).
        seed: Seed of the random weights.

    Returns:
        The folder, loadable with `AutoPipelineForText2Image.from_pretrained(path)`.
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    path = Path(path)
    with tempfile.TemporaryDirectory() as folder:
        vocabulary = write_clip_vocabulary(Path(folder))
        tokenizer = CLIPTokenizer.from_pretrained(str(vocabulary), model_max_length=TEXT_LENGTH)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=TEXT_LENGTH,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=SAMPLE_SIZE,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=4,
        sample_size=SAMPLE_SIZE * 2,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
    )
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(str(path))  # type: ignore[attr-defined]
    return path
