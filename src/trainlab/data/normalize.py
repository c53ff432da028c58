"""Input scaling: statistics of a uint8 split and the uint8 -> float conversion.

Every scaling is a ``(mean, std)`` pair on the [0, 1] scale for :func:`to_float`, either per
channel ``(C,)`` or per pixel position ``(C, H, W)`` (see :func:`scaling_stats`).
"""

from __future__ import annotations

import torch

from trainlab.config import SCALINGS
from trainlab.errors import unknown

PIXEL_CHUNK = 1 << 22  # pixel values summed at a time by pixel_stats (32 MB of int64 temporaries)


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and population standard deviation of uint8 images ``(N, C, H, W)``, [0, 1] scale.

    Computed exactly from a 256-bin histogram per channel, so it needs no float copy of the data.
    A constant channel gets std 1 so that dividing by it is harmless. Returns float32 ``(C,)`` each.
    """
    counts = torch.stack([torch.bincount(x[:, c].reshape(-1), minlength=256) for c in range(x.shape[1])])
    counts = counts.to(torch.float64)
    values = torch.arange(256, dtype=torch.float64, device=x.device) / 255
    total = counts.sum(dim=1)
    mean = (counts * values).sum(dim=1) / total
    var = (counts * (values - mean[:, None]) ** 2).sum(dim=1) / total
    std = var.sqrt()
    std = torch.where(std > 0, std, torch.ones_like(std))
    return mean.float(), std.float()


def pixel_stats(x: torch.Tensor, chunk: int = PIXEL_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population standard deviation of each position ``(c, h, w)`` of uint8 images ``(N, C, H, W)``.

    The sums of the pixel values and of their squares are accumulated exactly as int64, about
    ``chunk`` values at a time (no float copy of the data); the variance
    ``(N * sum(x²) - sum(x)²) / N²`` is exact too, so a constant position (MNIST's border) has
    variance exactly 0 and gets std 1. Returns float32 ``(C, H, W)`` each, on the [0, 1] scale.
    """
    total = torch.zeros(x.shape[1:], dtype=torch.int64, device=x.device)
    squares = torch.zeros_like(total)
    for part in x.split(max(1, chunk // total.numel())):
        wide = part.to(torch.int64)
        total += wide.sum(dim=0)
        squares += wide.square_().sum(dim=0)
    n = len(x)
    spread = (n * squares - total.square()).to(torch.float64)  # n² · variance on the 0-255 scale
    mean = total.to(torch.float64) / (255 * n)
    std = spread.sqrt() / (255 * n)
    std = torch.where(spread > 0, std, torch.ones_like(std))
    return mean.float(), std.float()


def scaling_stats(x: torch.Tensor, scaling: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(mean, std)`` that :func:`to_float` applies for ``data.scaling`` on training images ``x``.

    ``per_channel``: :func:`channel_stats`; ``per_pixel``: :func:`pixel_stats`; ``unit``: mean 0,
    std 1 (x / 255); ``raw``: mean 0, std 1/255 (the 0-255 values, to within one float32 rounding).
    """
    channels = x.shape[1]
    if scaling == "per_channel":
        return channel_stats(x)
    if scaling == "per_pixel":
        return pixel_stats(x)
    zeros = torch.zeros(channels, device=x.device)
    if scaling == "unit":
        return zeros, torch.ones_like(zeros)
    if scaling == "raw":
        return zeros, torch.full_like(zeros, 1 / 255)
    raise unknown("data.scaling", scaling, SCALINGS)


def to_float(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 images ``(..., C, H, W)`` -> float32 ``(x / 255 - mean) / std``, on x's device.

    ``mean`` and ``std`` are per channel ``(C,)`` or per pixel position ``(C, H, W)``.
    """
    mean = mean.to(x.device, torch.float32)
    std = std.to(x.device, torch.float32)
    if mean.dim() == 1:
        mean, std = mean.view(-1, 1, 1), std.view(-1, 1, 1)
    return x.float().div_(255).sub_(mean).div_(std)  # in place on the fresh float copy
