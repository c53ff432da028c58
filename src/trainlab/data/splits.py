"""The in-memory data set: :class:`Split` (images and labels), :class:`FullData` (a source's
train and test splits as read) and :class:`ImageData` (the splits ready for training).

Also how the splits are cut down before use: :func:`take_first` (``data.limit``,
``data.test_limit``) and :func:`validation_split` (``data.val_size`` from where ``data.val_from``
says: :func:`hold_out` at random, with a fixed-seed permutation so the validation split does not
depend on the training seed; :func:`hold_out_last`, the end of the training split; or
:func:`first_of_test`, the start of the test split).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainlab.config import VAL_FROM
from trainlab.errors import UserError, unknown

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
    """A data set as read from its source: the full train and test splits, before limit and hold-out.

    ``val`` is a validation split of the source's own (a user's loader may give one), else None.
    """

    train: Split
    test: Split
    classes: list[str]
    val: Split | None = None

    def to_entry(self) -> dict:
        """The data set as a cache entry (:func:`trainlab.data.cache.load_or_build`)."""
        splits = {"train": self.train, "test": self.test, "val": self.val}
        entry = {f"{name}_{part}": getattr(split, part) for name, split in splits.items() if split is not None
                 for part in ("x", "y")}
        return {**entry, "classes": self.classes}

    @classmethod
    def from_entry(cls, entry: dict) -> FullData:
        """The data set of a cache entry written by :meth:`to_entry`."""
        val = Split(entry["val_x"], entry["val_y"]) if "val_x" in entry else None
        return cls(Split(entry["train_x"], entry["train_y"]), Split(entry["test_x"], entry["test_y"]), entry["classes"],
                   val)


@dataclass
class ImageData:
    """A loaded data set: train, optional validation and test splits, class names, channel statistics.

    ``mean`` and ``std`` are float32, per channel ``(C,)`` or per pixel position ``(C, H, W)``, on the
    [0, 1] scale, computed from the train split as ``data.scaling`` says
    (:func:`trainlab.data.normalize.scaling_stats`); pass them to :func:`trainlab.data.to_float`.
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


def validation_split(
    train: Split, test: Split, val_size: float | int, val_from: str, given: Split | None = None
) -> tuple[Split, Split | None]:
    """The training and validation splits for ``data.val_size`` taken as ``data.val_from`` says.

    ``random``: :func:`hold_out`; ``last``: :func:`hold_out_last`; ``test``: :func:`first_of_test`
    (the training split stays whole); ``given``: the source's own split ``given``, whole (``val_size``
    does not apply). ``val_size`` 0 means no validation split. Returns ``(train, val)``.
    """
    if val_from == "given":
        if given is None:
            raise UserError("data.val_from: given takes the 'val' split the data.target loader returns, but it "
                            "returned none; return {'train', 'val', 'test'} or choose data.val_from random, last "
                            "or test")
        return train, given
    if val_from == "random":
        return hold_out(train, val_size)
    if val_from == "last":
        return hold_out_last(train, val_size)
    if val_from == "test":
        return train, first_of_test(test, val_size)
    raise unknown("data.val_from", val_from, VAL_FROM)


def _count(val_size: float | int, n: int) -> int:
    """How many of ``n`` images ``val_size`` takes: a fraction (float, at least one image) or a count."""
    return max(1, round(val_size * n)) if isinstance(val_size, float) else val_size


def _check_leaves_training(val_size: float | int, n_val: int, n: int) -> None:
    if n_val >= n:
        raise UserError(
            f"data.val_size={val_size} holds out {n_val} of the {n} training images, leaving none "
            "for training; use a smaller data.val_size (or a larger data.limit)"
        )


def hold_out(split: Split, val_size: float | int) -> tuple[Split, Split | None]:
    """Split off a validation set: ``val_size`` is a fraction (float) or a count (int); 0 means none.

    The held-out samples are chosen by a permutation with a fixed seed; both parts keep the
    original order. Returns ``(train, val)``.
    """
    n = len(split)
    if val_size == 0:
        return split, None
    n_val = _count(val_size, n)
    _check_leaves_training(val_size, n_val, n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(VAL_SEED))
    val_index = order[:n_val].sort().values
    train_index = order[n_val:].sort().values
    return split.subset(train_index), split.subset(val_index)


def hold_out_last(split: Split, val_size: float | int) -> tuple[Split, Split | None]:
    """The last ``val_size`` samples (a fraction or a count) as validation, as Keras' ``validation_split``.

    Returns ``(train, val)``: the first ``n - n_val`` samples and the last ``n_val``; 0 means no validation.
    """
    n = len(split)
    if val_size == 0:
        return split, None
    n_val = _count(val_size, n)
    _check_leaves_training(val_size, n_val, n)
    return split.subset(slice(0, n - n_val)), split.subset(slice(n - n_val, n))


def first_of_test(test: Split, val_size: float | int) -> Split | None:
    """The first ``val_size`` samples of the test split (a fraction of it or a count); None for 0."""
    if val_size == 0:
        return None
    n_val = _count(val_size, len(test))
    if n_val > len(test):
        raise UserError(
            f"data.val_size={val_size} takes {n_val} images from the test split (data.val_from: test), "
            f"which has only {len(test)}; use a data.val_size of at most {len(test)} "
            "(or a larger data.test_limit)"
        )
    return test.subset(slice(0, n_val))
