"""Residual network of basic blocks (He et al. 2016) with projection, conv or parameter-free shortcuts."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from trainlab.errors import UserError
from trainlab.models.activations import make_activation
from trainlab.models.layers import Layers, batch_norm, output_layers

if TYPE_CHECKING:
    from trainlab.config import ModelConfig


PADDING = {"same": 1, "valid": 0}  # of a 3x3 conv, by model.block_padding


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, padding: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1 unless given, without bias (a batch norm follows)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride, padding=padding, bias=False)


def block_output_size(size: int, stride: int, padding: str) -> int:
    """Spatial size after a block's two 3x3 convs, the first with ``stride``, padded as ``padding``."""
    pad = PADDING[padding]
    return (size + 2 * pad - 3) // stride + 1 + 2 * pad - 2


class ZeroPadShortcut(nn.Module):
    """Parameter-free shortcut ("option A"): keep every ``stride``-th pixel, append zero channels."""

    def __init__(self, stride: int, extra_channels: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra_channels}"


SHORTCUT_KERNEL = {"projection": 1, "conv": 3, "identity": 1}


def make_shortcut(in_channels: int, out_channels: int, stride: int, cfg: ModelConfig) -> nn.Module:
    """The shortcut of ``cfg.shortcut``, with the block's ``stride``.

    ``projection``: 1x1 conv + batch norm; ``conv``: 3x3 conv + batch norm, padded as the block's
    convs (``cfg.block_padding``); ``identity``: identity, or a :class:`ZeroPadShortcut`.
    """
    if cfg.shortcut in ("projection", "conv"):
        kernel = SHORTCUT_KERNEL[cfg.shortcut]
        padding = PADDING[cfg.block_padding] * (kernel // 2)
        conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding=padding, bias=False)
        return nn.Sequential(OrderedDict([("conv", conv), ("bn", batch_norm(out_channels, cfg, dims=2))]))
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return ZeroPadShortcut(stride, out_channels - in_channels)


class BasicBlock(nn.Module):
    """``act2(bn2(conv2(act1(bn1(conv1(x))))) + shortcut(x))``; ``conv1`` has the block's stride.

    With ``cfg.block_padding: valid`` the convs are unpadded and the branch's output pixel ``k``
    is centred on input pixel ``stride * k + stride + 1``, so the shortcut reads ``x`` from
    ``offset`` = ``stride + 1`` pixels in (``stride`` for the 3x3 conv shortcut, whose window is
    centred one pixel further) and is cut to the branch's size; for stride 1 and a 1x1 or no
    shortcut conv that is ``x`` without its 2 outer pixels on each side.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, cfg: ModelConfig) -> None:
        super().__init__()
        padding = PADDING[cfg.block_padding]
        self.conv1 = conv3x3(in_channels, out_channels, stride, padding)
        self.bn1 = batch_norm(out_channels, cfg, dims=2)
        self.act1 = make_activation(cfg, out_channels)
        self.conv2 = conv3x3(out_channels, out_channels, 1, padding)
        self.bn2 = batch_norm(out_channels, cfg, dims=2)
        self.shortcut = make_shortcut(in_channels, out_channels, stride, cfg)
        self.act2 = make_activation(cfg, out_channels)
        self.offset = 0 if padding else stride + 1 - SHORTCUT_KERNEL[cfg.shortcut] // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        shortcut = self.shortcut(x[:, :, self.offset :, self.offset :])
        return self.act2(branch + shortcut[:, :, : branch.shape[2], : branch.shape[3]])

    def extra_repr(self) -> str:
        return f"offset={self.offset}" if self.offset else ""


def build_resnet(cfg: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> nn.Sequential:
    """``stem_conv, stem_bn, stem_act``, blocks ``stage{s}_block{b}``, ``pool, flatten, drop``, output layers.

    The stem conv is always padded; ``cfg.block_padding`` applies to the blocks' convs. Raises
    UserError for maxout (the residual sum needs the branch and shortcut at one width), for an
    identity shortcut asked to reduce the number of channels, and for a block whose unpadded
    convs leave no pixels.
    """
    if cfg.activation == "maxout":
        raise UserError("model.activation: maxout is not available for kind resnet; use it with mlp or cnn")
    channels, (height, width) = cfg.stem_channels, input_shape[1:]
    layers: Layers = [
        ("stem_conv", conv3x3(input_shape[0], channels)),
        ("stem_bn", batch_norm(channels, cfg, dims=2)),
        ("stem_act", make_activation(cfg, channels)),
    ]
    for s, stage in enumerate(cfg.stages, 1):
        if cfg.shortcut == "identity" and stage.channels < channels:
            raise UserError(
                f"model.stages[{s - 1}]: an identity shortcut cannot reduce {channels} channels to "
                f"{stage.channels}; use model.shortcut: projection or conv"
            )
        for b in range(1, stage.blocks + 1):
            stride = stage.stride if b == 1 else 1
            out_height, out_width = (block_output_size(n, stride, cfg.block_padding) for n in (height, width))
            if min(out_height, out_width) < 1:
                raise UserError(
                    f"model.stages[{s - 1}] (stage{s}_block{b}): its unpadded convs (model.block_padding: "
                    f"valid) leave no pixels of its {height}x{width} input; use fewer stages or blocks, "
                    "less stride, block_padding: same or a larger input"
                )
            layers.append((f"stage{s}_block{b}", BasicBlock(channels, stage.channels, stride, cfg)))
            channels, height, width = stage.channels, out_height, out_width
    layers += [("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten())]
    if cfg.dropout > 0:
        layers.append(("drop", nn.Dropout(cfg.dropout)))
    layers += output_layers(channels, num_classes, cfg)
    return nn.Sequential(OrderedDict(layers))
