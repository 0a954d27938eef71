"""RRDBNet, the network of ESRGAN and Real-ESRGAN weights, read from a plain state dict.

The network: a first conv, `nb` residual-in-residual dense blocks (three residual dense blocks
of five convs each, every residual scaled by 0.2), a trunk conv added back to the first conv's
features, one nearest-neighbour x2 upsample + conv per doubling, an HR conv and a last conv,
with LeakyReLU(0.2) between them. Real-ESRGAN's x2 (and x1) models pixel-unshuffle the input by
2 (by 4) first and keep two doublings, so every variant shares one body.

`read_rrdbnet` takes what `torch.load` or safetensors returned and works out the variant (in/out
channels, nf, nb, gc, doublings, unshuffle) from the keys and shapes. Three key styles load:
BasicSR / Real-ESRGAN (`conv_first`, `body.N.rdb1.conv1`, `conv_body`, `conv_up1`, `conv_hr`,
`conv_last`), the ESRGAN repository's (`RRDB_trunk.N.RDB1.conv1`, `trunk_conv`, `upconv1`,
`HRconv`) and the original ESRGAN's sequential one (`model.0`, `model.1.sub.N.RDB1.conv1.0`,
`model.3`, ...), also inside `params_ema` / `params` / `state_dict` wrappers. Anything else raises
`NotRRDBNet`. torch is imported only when a network is built.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor, nn

_WRAPPERS = ("params_ema", "params", "state_dict", "model_state_dict")
_RDB_CONVS = 5


class NotRRDBNet(Exception):
    """The weights are not an RRDBNet state dict (another architecture, or damaged)."""


@dataclass(frozen=True)
class RRDBSpec:
    """One RRDBNet variant, as read from its weights.

    Attributes:
        in_channels: Image channels in (3 for RGB, 1 for grayscale).
        out_channels: Image channels out.
        nf: Feature channels of the trunk.
        nb: Residual-in-residual dense blocks.
        gc: Growth channels of each dense conv.
        upsamples: Nearest x2 + conv stages.
        unshuffle: Pixel-unshuffle factor applied to the input (1, 2 or 4).
    """

    in_channels: int = 3
    out_channels: int = 3
    nf: int = 64
    nb: int = 23
    gc: int = 32
    upsamples: int = 2
    unshuffle: int = 1

    @property
    def scale(self) -> int:
        """How many times larger the output is than the input, per side."""
        return 2**self.upsamples // self.unshuffle

    @property
    def multiple(self) -> int:
        """Input sides must be a multiple of this (the pixel-unshuffle factor)."""
        return self.unshuffle

    @property
    def label(self) -> str:
        """A short description such as `RRDBNet x4 (nf 64, nb 23)`."""
        return f"RRDBNet x{self.scale} (nf {self.nf}, nb {self.nb})"


def unwrap_state_dict(obj: Any) -> dict[str, Any]:
    """The tensors of a loaded checkpoint, out of its `params_ema`/`params` wrapper if any.

    Raises:
        NotRRDBNet: The object is not a mapping of names to tensors.
    """
    if not isinstance(obj, Mapping):
        raise NotRRDBNet(f"the file holds a {type(obj).__name__}, not a state dict of tensors")
    for wrapper in _WRAPPERS:
        if isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    state = {str(k).removeprefix("module."): v for k, v in obj.items() if hasattr(v, "shape")}
    if not state:
        raise NotRRDBNet("the file holds no tensors")
    return state


def normalize_keys(state: Mapping[str, Any]) -> dict[str, Any]:
    """Rename the ESRGAN key styles to the BasicSR ones (`conv_first`, `body.N.rdb1.conv1`, ...).

    Keys already in BasicSR style, and keys of no known style, are kept as they are.
    """
    if "model.0.weight" in state:
        return _from_sequential(state)
    if "conv_first.weight" in state and any(k.startswith("RRDB_trunk.") for k in state):
        return _from_esrgan_repo(state)
    return dict(state)


_ESRGAN_REPO = (
    (re.compile(r"^RRDB_trunk\.(\d+)\.RDB(\d)\.conv(\d)\."), r"body.\1.rdb\2.conv\3."),
    (re.compile(r"^trunk_conv\."), "conv_body."),
    (re.compile(r"^upconv(\d)\."), r"conv_up\1."),
    (re.compile(r"^HRconv\."), "conv_hr."),
)


def _from_esrgan_repo(state: Mapping[str, Any]) -> dict[str, Any]:
    renamed: dict[str, Any] = {}
    for key, value in state.items():
        for pattern, replacement in _ESRGAN_REPO:
            key = pattern.sub(replacement, key)
        renamed[key] = value
    return renamed


_SEQ_BLOCK = re.compile(r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$")
_SEQ_TRUNK = re.compile(r"^model\.1\.sub\.(\d+)\.(weight|bias)$")
_SEQ_TOP = re.compile(r"^model\.(\d+)\.(weight|bias)$")


def _from_sequential(state: Mapping[str, Any]) -> dict[str, Any]:
    """The original ESRGAN layout: one nn.Sequential whose conv indices name the layers."""
    renamed: dict[str, Any] = {}
    top: dict[int, dict[str, Any]] = {}
    for key, value in state.items():
        if match := _SEQ_BLOCK.match(key):
            block, rdb, conv, kind = match.groups()
            renamed[f"body.{block}.rdb{rdb}.conv{conv}.{kind}"] = value
        elif match := _SEQ_TRUNK.match(key):
            renamed[f"conv_body.{match.group(2)}"] = value
        elif match := _SEQ_TOP.match(key):
            top.setdefault(int(match.group(1)), {})[match.group(2)] = value
        else:
            renamed[key] = value  # unknown: strict loading reports it
    first = top.pop(0, {})
    for kind, value in first.items():
        renamed[f"conv_first.{kind}"] = value
    # After the trunk: the upsample convs, then the HR conv and the last conv, in index order.
    later = [top[index] for index in sorted(top)]
    if len(later) < 2:
        return renamed  # no HR and last conv: detect_spec says what is missing
    names = [f"conv_up{i + 1}" for i in range(len(later) - 2)] + ["conv_hr", "conv_last"]
    for name, params in zip(names, later, strict=True):
        for kind, value in params.items():
            renamed[f"{name}.{kind}"] = value
    return renamed


_BLOCK = re.compile(r"^body\.(\d+)\.rdb\d\.conv\d\.weight$")
_UP = re.compile(r"^conv_up(\d+)\.weight$")


def detect_spec(state: Mapping[str, Any]) -> RRDBSpec:
    """Read the variant from BasicSR-style keys and the shapes of their tensors.

    Raises:
        NotRRDBNet: A key the network needs is missing or has an impossible shape.
    """
    needed = ("conv_first.weight", "conv_body.weight", "conv_hr.weight", "conv_last.weight")
    missing = [key for key in needed if key not in state]
    blocks = {int(m.group(1)) for key in state if (m := _BLOCK.match(key))}
    if missing or not blocks:
        sample = ", ".join(list(state)[:4])
        lacks = ", ".join(missing) if missing else "body.0.rdb1.conv1.weight"
        raise NotRRDBNet(f"it lacks {lacks} (its first keys: {sample})")
    first, last = state["conv_first.weight"], state["conv_last.weight"]
    if len(first.shape) != 4 or len(last.shape) != 4:
        raise NotRRDBNet("conv_first and conv_last are not 2-D convolutions")
    nf, in_packed = int(first.shape[0]), int(first.shape[1])
    out_channels = int(last.shape[0])
    ratio, rest = divmod(in_packed, out_channels)
    unshuffle = {1: 1, 4: 2, 16: 4}.get(ratio, 0)
    if rest or not unshuffle:
        raise NotRRDBNet(
            f"conv_first takes {in_packed} channels for {out_channels} out: no pixel-unshuffle "
            "factor fits"
        )
    upsamples = len({int(m.group(1)) for key in state if (m := _UP.match(key))})
    if "body.0.rdb1.conv1.weight" not in state:
        raise NotRRDBNet("it lacks body.0.rdb1.conv1.weight")
    return RRDBSpec(
        in_channels=in_packed // unshuffle**2,
        out_channels=out_channels,
        nf=nf,
        nb=max(blocks) + 1,
        gc=int(state["body.0.rdb1.conv1.weight"].shape[0]),
        upsamples=upsamples,
        unshuffle=unshuffle,
    )


def read_rrdbnet(obj: Any) -> tuple[nn.Module, RRDBSpec]:
    """Build the RRDBNet a loaded checkpoint describes and load its weights (on the CPU, fp32).

    Args:
        obj: What `torch.load` or `safetensors.torch.load_file` returned.

    Returns:
        The network in eval mode, and its variant.

    Raises:
        NotRRDBNet: The weights are of another architecture, or do not fit the detected variant.
    """
    state = normalize_keys(unwrap_state_dict(obj))
    spec = detect_spec(state)
    model = build_rrdbnet(spec)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise NotRRDBNet(f"the weights do not fit {spec.label}: {detail[:300]}") from None
    return model.eval(), spec


def build_rrdbnet(spec: RRDBSpec) -> nn.Module:
    """A new RRDBNet of the variant `spec`, with random weights (imports torch)."""
    return _network_class()(spec)


@cache
def _network_class() -> type[nn.Module]:
    """Define the torch modules on first use, so importing this file does not import torch."""
    import torch
    from torch import nn
    from torch.nn import functional

    def conv(channels_in: int, channels_out: int) -> nn.Conv2d:
        return nn.Conv2d(channels_in, channels_out, 3, 1, 1)

    class ResidualDenseBlock(nn.Module):
        """Five densely connected convs; the fifth's output, scaled by 0.2, is added back."""

        def __init__(self, nf: int, gc: int) -> None:
            super().__init__()
            for index in range(1, _RDB_CONVS + 1):
                out = nf if index == _RDB_CONVS else gc
                self.add_module(f"conv{index}", conv(nf + (index - 1) * gc, out))
            self.act = nn.LeakyReLU(0.2, inplace=True)

        def forward(self, x: Tensor) -> Tensor:
            features = [x]
            for index in range(1, _RDB_CONVS):
                layer = getattr(self, f"conv{index}")
                features.append(self.act(layer(torch.cat(features, 1))))
            return x + 0.2 * getattr(self, f"conv{_RDB_CONVS}")(torch.cat(features, 1))

    class RRDB(nn.Module):
        """Three residual dense blocks in a row, with their own 0.2-scaled residual."""

        def __init__(self, nf: int, gc: int) -> None:
            super().__init__()
            self.rdb1 = ResidualDenseBlock(nf, gc)
            self.rdb2 = ResidualDenseBlock(nf, gc)
            self.rdb3 = ResidualDenseBlock(nf, gc)

        def forward(self, x: Tensor) -> Tensor:
            return x + 0.2 * self.rdb3(self.rdb2(self.rdb1(x)))

    class RRDBNet(nn.Module):
        """The ESRGAN generator; input and output are images in [0, 1] (NCHW)."""

        def __init__(self, spec: RRDBSpec) -> None:
            super().__init__()
            self.spec = spec
            self.conv_first = conv(spec.in_channels * spec.unshuffle**2, spec.nf)
            self.body = nn.Sequential(*(RRDB(spec.nf, spec.gc) for _ in range(spec.nb)))
            self.conv_body = conv(spec.nf, spec.nf)
            for index in range(1, spec.upsamples + 1):
                self.add_module(f"conv_up{index}", conv(spec.nf, spec.nf))
            self.conv_hr = conv(spec.nf, spec.nf)
            self.conv_last = conv(spec.nf, spec.out_channels)
            self.act = nn.LeakyReLU(0.2, inplace=True)

        def forward(self, x: Tensor) -> Tensor:
            if self.spec.unshuffle > 1:
                x = functional.pixel_unshuffle(x, self.spec.unshuffle)
            features = self.conv_first(x)
            features = features + self.conv_body(self.body(features))
            for index in range(1, self.spec.upsamples + 1):
                upsampled = functional.interpolate(features, scale_factor=2, mode="nearest")
                features = self.act(getattr(self, f"conv_up{index}")(upsampled))
            return self.conv_last(self.act(self.conv_hr(features)))

    return RRDBNet


__all__ = [
    "NotRRDBNet",
    "RRDBSpec",
    "build_rrdbnet",
    "detect_spec",
    "normalize_keys",
    "read_rrdbnet",
    "unwrap_state_dict",
]
