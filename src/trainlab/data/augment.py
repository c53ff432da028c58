"""Batched data augmentation on uint8 images, with random parameters drawn per sample.

Every function works on a whole batch ``(B, C, H, W)`` with tensor operations on the batch's
device and draws its random numbers from the given generator, so a run is reproducible and
can be resumed by restoring the generator state.
"""

from __future__ import annotations

import torch

from trainlab.config import AUGMENTS, Crop, HFlip, Translate, VFlip
from trainlab.errors import unknown


def augment_batch(x: torch.Tensor, specs: list, generator: torch.Generator) -> torch.Tensor:
    """Apply the augmentations ``specs`` (``data.augment`` entries) in list order; uint8 in, uint8 out.

    ``crop`` (zero-pad by ``padding``, crop back to the original size) and ``translate`` are both
    a random shift of up to ``padding`` / ``max_shift`` pixels per axis with zero fill; ``hflip``
    and ``vflip`` flip each image independently with probability ``p``.
    """
    for spec in specs:
        if isinstance(spec, Crop):
            x = random_shift(x, spec.padding, generator)
        elif isinstance(spec, Translate):
            x = random_shift(x, spec.max_shift, generator)
        elif isinstance(spec, HFlip):
            x = random_flip(x, spec.p, -1, generator)
        elif isinstance(spec, VFlip):
            x = random_flip(x, spec.p, -2, generator)
        else:
            raise unknown("augmentation", getattr(spec, "name", spec), AUGMENTS)
    return x


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by its own random offset in ``[-max_shift, max_shift]`` along each axis."""
    if max_shift == 0:
        return x
    offsets = torch.randint(
        -max_shift, max_shift + 1, (len(x), 2), generator=generator, device=generator.device
    ).to(x.device)
    return shift_images(x, offsets[:, 0], offsets[:, 1])


def shift_images(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Move image ``b`` down by ``dy[b]`` and right by ``dx[b]`` pixels (negative: up/left), zero fill.

    One gather over the flattened pixels: output pixel ``(i, j)`` of image ``b`` is input pixel
    ``(i - dy[b], j - dx[b])``, or 0 where that lies outside the image.
    """
    batch, channels, height, width = x.shape
    rows = torch.arange(height, device=x.device) - dy[:, None]  # (B, H) source row of each output row
    cols = torch.arange(width, device=x.device) - dx[:, None]  # (B, W) source column of each output column
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :]
    source = rows.clamp(0, height - 1)[:, :, None] * width + cols.clamp(0, width - 1)[:, None, :]
    index = source.reshape(batch, 1, height * width).expand(batch, channels, height * width)
    out = x.reshape(batch, channels, height * width).gather(2, index).reshape(x.shape)
    return out.masked_fill_(~inside[:, None], 0)


def random_flip(x: torch.Tensor, p: float, dim: int, generator: torch.Generator) -> torch.Tensor:
    """Flip each image along ``dim`` (-1: horizontally, -2: vertically) with probability ``p``."""
    flip = torch.rand(len(x), generator=generator, device=generator.device).to(x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(dim), x)
