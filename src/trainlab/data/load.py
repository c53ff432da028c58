"""load_data: a data set from its configuration, ready for training."""

from __future__ import annotations

import warnings

import torch

from trainlab.config import DataConfig
from trainlab.data.normalize import scaling_stats
from trainlab.data.sources import read_source
from trainlab.data.splits import ImageData, Split, take_first, validation_split
from trainlab.errors import UserError

GRAYSCALE_CHUNK = 8192  # images converted at a time, to bound the float temporaries


def load_data(cfg: DataConfig, download: bool = False) -> ImageData:
    """Load the data set ``cfg.name`` (``download`` lets torchvision fetch missing files).

    Steps: full train and test splits -> grayscale (if asked) -> the first ``cfg.limit`` training
    and ``cfg.test_limit`` test images -> the validation split (``cfg.val_size`` images, taken as
    ``cfg.val_from`` says) -> the scaling's mean/std (``cfg.scaling``) of the remaining train split.
    """
    full = read_source(cfg, download)
    train, test, given = take_first(full.train, cfg.limit), take_first(full.test, cfg.test_limit), full.val
    if cfg.grayscale:
        train, test = _grayscale(train), _grayscale(test)
        given = _grayscale(given) if given is not None else None
    if given is not None and cfg.val_from != "given":
        warnings.warn(f"data.target {cfg.target!r} returned a 'val' split that is not used: data.val_from: "
                      f"{cfg.val_from} takes the validation split elsewhere; set data.val_from: given to use it",
                      stacklevel=2)
    train, val = validation_split(train, test, cfg.val_size, cfg.val_from, given)
    mean, std = scaling_stats(train.x, cfg.scaling)
    return ImageData(cfg.name, train, val, test, full.classes, mean, std)


def _grayscale(split: Split) -> Split:
    """RGB images converted with torchvision's ``rgb_to_grayscale``; single-channel ones unchanged."""
    from torchvision.transforms.functional import rgb_to_grayscale  # imported on use: takes seconds

    channels = split.x.shape[1]
    if channels == 1:
        return split
    if channels != 3:
        raise UserError(f"data.grayscale needs RGB images, but these have {channels} channels")
    x = torch.cat([rgb_to_grayscale(chunk) for chunk in split.x.split(GRAYSCALE_CHUNK)])
    return Split(x, split.y)
