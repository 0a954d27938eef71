"""Tiny upscaling models built on disk for tests: random weights, real file formats.

`build_tiny_swin2sr` saves a transformers Swin2SR checkpoint (config, safetensors, image
processor config). `build_tiny_rrdb` writes an RRDBNet state dict by hand, key by key and shape
by shape as the published ESRGAN / Real-ESRGAN files have them (not through the network class
under test), in one of the three key styles, wrapped in `params_ema` like Real-ESRGAN's releases.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

RRDB_STYLES = ("basicsr", "esrgan", "sequential")


def build_tiny_swin2sr(path: Path, scale: int = 2, *, window_size: int = 4, seed: int = 0) -> Path:
    """Write a tiny random Swin2SR checkpoint (embed_dim 8, one stage of one layer) to `path`.

    Returns:
        The folder.
    """
    import torch
    from transformers import (
        Swin2SRConfig,
        Swin2SRForImageSuperResolution,
        Swin2SRImageProcessorPil,
    )

    torch.manual_seed(seed)
    config = Swin2SRConfig(
        image_size=16,
        embed_dim=8,
        depths=[1],
        num_heads=[1],
        window_size=window_size,
        mlp_ratio=2.0,
        upscale=scale,
        upsampler="pixelshuffledirect",
    )
    model = Swin2SRForImageSuperResolution(config).eval()
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    Swin2SRImageProcessorPil().save_pretrained(path)
    return path


def rrdb_state(
    scale: int = 4, *, nf: int = 8, nb: int = 1, gc: int = 4, seed: int = 0
) -> dict[str, Any]:
    """A random RRDBNet state dict in BasicSR key style (what Real-ESRGAN releases use).

    x4 has no pixel-unshuffle; x2 (x1) unshuffles by 2 (4), so conv_first takes 12 (48) channels.
    Weights are He-initialised (the dense convs scaled by 0.1, as BasicSR does), so the output
    depends on the input instead of fading to the biases.
    """
    import torch

    unshuffle = {4: 1, 2: 2, 1: 4}[scale]
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, Any] = {}

    def conv(name: str, channels_in: int, channels_out: int, gain: float = 1.0) -> None:
        std = gain * (2.0 / (channels_in * 9)) ** 0.5
        weight = torch.randn(channels_out, channels_in, 3, 3, generator=generator) * std
        state[f"{name}.weight"] = weight
        state[f"{name}.bias"] = torch.randn(channels_out, generator=generator) * 0.01

    conv("conv_first", 3 * unshuffle**2, nf)
    for block in range(nb):
        for rdb in range(1, 4):
            for index in range(1, 6):
                out = nf if index == 5 else gc
                conv(f"body.{block}.rdb{rdb}.conv{index}", nf + (index - 1) * gc, out, gain=0.1)
    conv("conv_body", nf, nf)
    conv("conv_up1", nf, nf)
    conv("conv_up2", nf, nf)
    conv("conv_hr", nf, nf)
    conv("conv_last", nf, 3, gain=0.2)
    # conv_last's bias centres the output on mid-grey, so clamping to [0, 1] rarely bites.
    state["conv_last.bias"] = torch.full((3,), 0.5)
    return state


def restyle(state: dict[str, Any], style: str) -> dict[str, Any]:
    """The same tensors under the ESRGAN repository's or the original sequential key names."""
    import re

    if style == "basicsr":
        return dict(state)
    out: dict[str, Any] = {}
    nb = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("body."))
    sequential = {
        "conv_first": "model.0",
        "conv_body": f"model.1.sub.{nb}",
        "conv_up1": "model.3",
        "conv_up2": "model.6",
        "conv_hr": "model.8",
        "conv_last": "model.10",
    }
    repo = {"conv_body": "trunk_conv", "conv_up1": "upconv1", "conv_up2": "upconv2"}
    repo["conv_hr"] = "HRconv"
    for key, value in state.items():
        layer, kind = key.rsplit(".", 1)
        block = re.match(r"body\.(\d+)\.rdb(\d)\.conv(\d)$", layer)
        if style == "esrgan":
            if block:
                layer = "RRDB_trunk.{}.RDB{}.conv{}".format(*block.groups())
            else:
                layer = repo.get(layer, layer)
        elif style == "sequential":
            if block:
                layer = "model.1.sub.{}.RDB{}.conv{}.0".format(*block.groups())
            else:
                layer = sequential[layer]
        else:
            raise ValueError(f"unknown style {style!r}; use one of {RRDB_STYLES}")
        out[f"{layer}.{kind}"] = value
    return out


def build_tiny_rrdb(
    path: Path,
    scale: int = 4,
    fmt: str = "pth",
    *,
    style: str = "basicsr",
    wrapper: str | None = "params_ema",
    seed: int = 0,
) -> Path:
    """Write a tiny RRDBNet weights file (nf 8, nb 1, gc 4).

    Args:
        path: A folder (the file is named `tiny_rrdb_x{scale}.{fmt}` in it) or a file path.
        scale: 4 (ESRGAN layout) or 2 / 1 (Real-ESRGAN, pixel-unshuffled input).
        fmt: `pth` (torch.save) or `safetensors`.
        style: Key names: `basicsr`, `esrgan` (the ESRGAN repository) or `sequential` (`model.N`).
        wrapper: Dict the tensors sit in (`params_ema`, `params`), or None for a bare state dict.
        seed: Seed of the random weights.

    Returns:
        The file.
    """
    import torch

    state = restyle(rrdb_state(scale, seed=seed), style)
    if path.suffix not in (".pth", ".safetensors"):
        path.mkdir(parents=True, exist_ok=True)
        path = path / f"tiny_rrdb_x{scale}.{fmt}"
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    elif fmt == "pth":
        torch.save({wrapper: state} if wrapper else state, path)
    else:
        raise ValueError(f"unknown format {fmt!r}; use pth or safetensors")
    return path
