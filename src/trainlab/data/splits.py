"""The in-memory data set: :class:`Split` (images and labels), :class:`FullData` (a source's
train and test splits as read) and :class:`ImageData` (the splits ready for training).

Also the two ways a training split is cut down before use: :func:`take_first` (``data.limit``)
and :func:`hold_out` (``data.val_size``), the latter with a fixed-seed permutation so the
validation split does not depend on the training seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainlab.errors import UserError

VAL_SEED = 1234  # fixed: the same images are held out for validation in every run


@dataclass
class Split:
    """Images as uint8 ``(N, C, H, W)`` and their class indices as int64 ``(N,)``."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device | str) -> Split:
        """The same split on ``device``."""
        return Split(self.x.to(device), self.y.to(device))

    def subset(self, index: torch.Tensor | slice) -> Split:
        """The samples at ``index`` (a slice or a tensor of positions)."""
        return Split(self.x[index], self.y[index])

    def take(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels at ``index``, positions of any shape, which leads the result's shape.

        One ``index_select`` per tensor: on CPU about twice as fast as ``x[index]``.
        """
        flat = index.reshape(-1)
        x = self.x.index_select(0, flat).view(*index.shape, *self.x.shape[1:])
        return x, self.y.index_select(0, flat).view(index.shape)


@dataclass
class FullData:
    """A data set as read from its source: the full train and test splits, before limit and hold-out."""

    train: Split
    test: Split
    classes: list[str]


@dataclass
class ImageData:
    """A loaded data set: train, optional validation and test splits, class names, channel statistics.

    ``mean`` and ``std`` are float32 ``(C,)`` on the [0, 1] scale, computed from the train split
    (zeros and ones when normalisation is off); pass them to :func:`trainlab.data.to_float`.
    """

    name: str
    train: Split
    val: Split | None
    test: Split
    classes: list[str]
    mean: torch.Tensor
    std: torch.Tensor

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        channels, height, width = self.train.x.shape[1:]
        return channels, height, width

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to(self, device: torch.device | str) -> ImageData:
        """The same data set with every tensor on ``device``."""
        return ImageData(
            name=self.name,
            train=self.train.to(device),
            val=self.val.to(device) if self.val is not None else None,
            test=self.test.to(device),
            classes=self.classes,
            mean=self.mean.to(device),
            std=self.std.to(device),
        )


def take_first(split: Split, limit: int | None) -> Split:
    """The first ``limit`` samples (all of them when ``limit`` is None or larger than the split)."""
    return split if limit is None else split.subset(slice(0, limit))


def hold_out(split: Split, val_size: float | int) -> tuple[Split, Split | None]:
    """Split off a validation set: ``val_size`` is a fraction (float) or a count (int); 0 means none.

    The held-out samples are chosen by a permutation with a fixed seed; both parts keep the
    original order. Returns ``(train, val)``.
    """
    n = len(split)
    if val_size == 0:
        return split, None
    n_val = max(1, round(val_size * n)) if isinstance(val_size, float) else val_size
    if n_val >= n:
        raise UserError(
            f"data.val_size={val_size} holds out {n_val} of the {n} training images, leaving none "
            "for training; use a smaller data.val_size (or a larger data.limit)"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(VAL_SEED))
    val_index = order[:n_val].sort().values
    train_index = order[n_val:].sort().values
    return split.subset(train_index), split.subset(val_index)
