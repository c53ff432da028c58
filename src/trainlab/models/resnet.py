"""Residual network of basic blocks (He et al. 2016) with projection or parameter-free shortcuts."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from trainlab.errors import UserError
from trainlab.models.activations import make_activation
from trainlab.models.layers import Layers, output_layers

if TYPE_CHECKING:
    from trainlab.config import ModelConfig


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (a batch norm follows)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)


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


def make_shortcut(in_channels: int, out_channels: int, stride: int, kind: str) -> nn.Module:
    """``projection``: 1x1 conv + batch norm; ``identity``: identity, or a :class:`ZeroPadShortcut`."""
    if kind == "projection":
        conv = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)
        return nn.Sequential(OrderedDict([("conv", conv), ("bn", nn.BatchNorm2d(out_channels))]))
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return ZeroPadShortcut(stride, out_channels - in_channels)


class BasicBlock(nn.Module):
    """``act2(bn2(conv2(act1(bn1(conv1(x))))) + shortcut(x))``; ``conv1`` has the block's stride."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, activation: str, shortcut: str
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.act1 = make_activation(activation)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = make_shortcut(in_channels, out_channels, stride, shortcut)
        self.act2 = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(branch + self.shortcut(x))


def build_resnet(cfg: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> nn.Sequential:
    """``stem_conv, stem_bn, stem_act``, blocks ``stage{s}_block{b}``, ``pool, flatten, drop, out, out_bn``.

    Raises UserError for maxout (the residual sum needs the branch and shortcut at one width)
    and for an identity shortcut asked to reduce the number of channels.
    """
    if cfg.activation == "maxout":
        raise UserError("model.activation: maxout is not available for kind resnet; use it with mlp or cnn")
    channels = cfg.stem_channels
    layers: Layers = [
        ("stem_conv", conv3x3(input_shape[0], channels)),
        ("stem_bn", nn.BatchNorm2d(channels)),
        ("stem_act", make_activation(cfg.activation)),
    ]
    for s, stage in enumerate(cfg.stages, 1):
        if cfg.shortcut == "identity" and stage.channels < channels:
            raise UserError(
                f"model.stages[{s - 1}]: an identity shortcut cannot reduce {channels} channels to "
                f"{stage.channels}; use model.shortcut: projection"
            )
        for b in range(1, stage.blocks + 1):
            stride = stage.stride if b == 1 else 1
            block = BasicBlock(channels, stage.channels, stride, cfg.activation, cfg.shortcut)
            layers.append((f"stage{s}_block{b}", block))
            channels = stage.channels
    layers += [("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten())]
    if cfg.dropout > 0:
        layers.append(("drop", nn.Dropout(cfg.dropout)))
    layers += output_layers(channels, num_classes, cfg)
    return nn.Sequential(OrderedDict(layers))
