"""One epoch of training batches: shuffle, gather, augment, normalise, all on the data's device."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from trainlab.data import Split, augment_batch, to_float


def epoch_batches(
    split: Split, batch_size: int, augment: list, generators: list[torch.Generator],
    mean: torch.Tensor, std: torch.Tensor, stacked: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield one epoch's ``(x, y)`` batches: float images, normalised, and their labels.

    Each generator is one model's: it draws that model's order of the split, then its
    augmentations batch by batch. For one model the shuffled split is gathered once and batches
    are slices of it; ``stacked`` (an ensemble) gathers every batch for all models at once, with
    the models along its first dimension: ``x`` is ``(M, B, C, H, W)``.
    """
    device = split.x.device
    orders = [torch.randperm(len(split), generator=g, device=device) for g in generators]
    if not stacked:
        shuffled_x, shuffled_y = split.take(orders[0])  # one gather per epoch; batches are slices
        for i in range(0, len(split), batch_size):
            x = augment_batch(shuffled_x[i : i + batch_size], augment, generators[0])
            yield to_float(x, mean, std), shuffled_y[i : i + batch_size]
        return
    every_order = torch.stack(orders)
    for i in range(0, len(split), batch_size):
        x, y = split.take(every_order[:, i : i + batch_size])
        if augment:
            x = torch.stack([augment_batch(x[m], augment, g) for m, g in enumerate(generators)])
        yield to_float(x, mean, std), y
