"""Activation functions by name, including maxout."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from trainlab.errors import unknown

if TYPE_CHECKING:
    from trainlab.config import ModelConfig


class Maxout(nn.Module):
    """Maximum over groups of ``pieces`` consecutive channels (dim 1): C channels become C / pieces.

    Works on (N, C) and (N, C, H, W) inputs; the layer before it must give ``width * pieces`` channels.
    """

    def __init__(self, pieces: int) -> None:
        super().__init__()
        self.pieces = pieces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        if channels % self.pieces:
            raise ValueError(
                f"maxout with {self.pieces} pieces needs a channel count divisible by it, got {channels}"
            )
        return x.unflatten(1, (channels // self.pieces, self.pieces)).amax(dim=2)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


_FIXED: dict[str, Callable[[], nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
    "identity": nn.Identity,
}
NAMES = (*_FIXED, "leaky_relu", "prelu", "maxout")


def make_activation(cfg: ModelConfig, channels: int) -> nn.Module:
    """A new activation module for ``cfg.activation`` after a layer of ``channels`` channels (dim 1).

    ``leaky_relu`` has slope ``cfg.leaky_slope``; ``prelu`` is ``nn.PReLU`` with one learned slope
    per channel (``cfg.prelu: channel``) or one for the layer (``one``), starting at
    ``cfg.prelu_init``; ``maxout`` takes the maximum over groups of ``cfg.maxout_pieces`` channels.
    """
    name = cfg.activation
    if name == "maxout":
        return Maxout(cfg.maxout_pieces)
    if name == "leaky_relu":
        return nn.LeakyReLU(cfg.leaky_slope)
    if name == "prelu":
        return nn.PReLU(channels if cfg.prelu == "channel" else 1, init=cfg.prelu_init)
    if name not in _FIXED:
        raise unknown("activation", name, NAMES)
    return _FIXED[name]()


def negative_slope(cfg: ModelConfig) -> float:
    """The activation's slope for negative inputs at initialisation: leaky_relu's, prelu's start, else 0."""
    return {"leaky_relu": cfg.leaky_slope, "prelu": cfg.prelu_init}.get(cfg.activation, 0.0)


def pieces_per_unit(activation: str, pieces: int) -> int:
    """How many channels of the preceding layer feed one unit: ``pieces`` for maxout, else 1."""
    return pieces if activation == "maxout" else 1
