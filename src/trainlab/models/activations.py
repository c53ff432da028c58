"""Activation functions by name, including maxout."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from trainlab.errors import unknown


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
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
    "elu": nn.ELU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
    "identity": nn.Identity,
}


def make_activation(name: str, pieces: int = 2) -> nn.Module:
    """A new activation module by config name; ``pieces`` is maxout's group size."""
    if name == "maxout":
        return Maxout(pieces)
    if name not in _FIXED:
        raise unknown("activation", name, [*_FIXED, "maxout"])
    return _FIXED[name]()


def pieces_per_unit(activation: str, pieces: int) -> int:
    """How many channels of the preceding layer feed one unit: ``pieces`` for maxout, else 1."""
    return pieces if activation == "maxout" else 1
