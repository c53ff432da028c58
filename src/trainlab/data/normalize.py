"""Per-channel normalisation: statistics of a uint8 split and the uint8 -> float conversion."""

from __future__ import annotations

import torch


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


def to_float(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 images ``(..., C, H, W)`` -> float32 ``(x / 255 - mean) / std`` per channel, on x's device."""
    mean = mean.to(x.device, torch.float32).view(-1, 1, 1)
    std = std.to(x.device, torch.float32).view(-1, 1, 1)
    return x.float().div_(255).sub_(mean).div_(std)  # in place on the fresh float copy
