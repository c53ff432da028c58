"""Data sets as uint8 tensors: loading, splitting, caching, normalisation and batched augmentation.

``load_data(cfg.data)`` returns an :class:`ImageData` with train, val and test :class:`Split` objects
(uint8 images, int64 labels) and the scaling's mean/std (per channel or per pixel); per training step use
``to_float(augment_batch(x, cfg.augment, generator), mean, std)``.
"""

from __future__ import annotations

from trainlab.data.augment import augment_batch
from trainlab.data.load import load_data
from trainlab.data.normalize import to_float
from trainlab.data.splits import ImageData, Split

__all__ = ["ImageData", "Split", "augment_batch", "load_data", "to_float"]
