"""Data from the user's own code: ``data: {name: python, target: "mydata.py:load", args: {...}}``.

The target is called with ``**args`` and returns a mapping with ``train`` and ``test``, each an
``(images, labels)`` pair of arrays or tensors or a torch ``Dataset`` of ``(image, label)``
items, and optionally ``val`` (a validation split, used with ``data.val_from: given``) and
``classes`` (their names). Images are NCHW, NHWC or NHW (one channel);
uint8 0-255, or float 0-1 (stored as uint8: x 255, rounded). Labels are integers 0..K-1. The
result is materialised once into trainlab's in-memory uint8 tensors and cached on disk, keyed by
the code's identity (the file's source hash) and the args.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from trainlab.config import DataConfig
from trainlab.data.cache import load_or_build
from trainlab.data.splits import FullData, Split
from trainlab.errors import UserError
from trainlab.usercode import call_user, load_target, target_identity

CHANNELS = (1, 3, 4)  # a dimension of this size can be the channels
RETURNS = ("a mapping with 'train' and 'test', each (images, labels) or a torch Dataset, and optionally 'val' "
           "and 'classes'")


def read_python(cfg: DataConfig) -> FullData:
    """The user's data set, from the cache when the code and args are those it was built from."""
    if not cfg.cache:
        return _materialise(cfg)
    identity = {"name": "python", "target": target_identity(cfg.target), "args": cfg.args}
    return FullData.from_entry(load_or_build(identity, identity["target"], lambda: _materialise(cfg).to_entry()))


def _materialise(cfg: DataConfig) -> FullData:
    out = call_user(cfg.target, load_target(cfg.target), **cfg.args)
    if not isinstance(out, Mapping) or not {"train", "test"} <= set(out):
        got = f"a mapping with keys {sorted(map(str, out))}" if isinstance(out, Mapping) else f"a {type(out).__name__}"
        raise UserError(f"target {cfg.target!r} must return {RETURNS}; got {got}")
    splits = {which: _split(cfg.target, which, out[which]) for which in ("train", "test", "val")
              if which in ("train", "test") or out.get(which) is not None}
    train = splits["train"]
    for which, split in splits.items():
        if split.x.shape[1:] != train.x.shape[1:]:
            raise UserError(f"target {cfg.target!r}: train images are {tuple(train.x.shape[1:])} (C, H, W) but "
                            f"{which} images {tuple(split.x.shape[1:])}: give every split the same size")
    labels = torch.cat([split.y for split in splits.values()])
    classes = [str(name) for name in out.get("classes") or range(int(labels.max()) + 1 if len(labels) else 0)]
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise UserError(f"target {cfg.target!r}: labels must be 0..{len(classes) - 1} for {len(classes)} classes, "
                        f"got {int(labels.min())}..{int(labels.max())}")
    return FullData(train, splits["test"], classes, splits.get("val"))


def _split(target: str, which: str, value: Any) -> Split:
    """One split as uint8 NCHW images and int64 labels."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        images, labels = _tensor(value[0]), _tensor(value[1])
    elif hasattr(value, "__getitem__") and hasattr(value, "__len__"):
        images, labels = _from_dataset(target, which, value)
    else:
        raise UserError(f"target {target!r}: {which!r} is a {type(value).__name__}; give (images, labels) or a "
                        "torch Dataset of (image, label)")
    where = f"target {target!r}, {which}"
    if labels.ndim != 1 or labels.is_floating_point() or labels.dtype == torch.bool:
        raise UserError(f"{where}: labels must be one integer per image, got {labels.dtype} of shape "
                        f"{tuple(labels.shape)}")
    x = _uint8(where, _nchw(where, images))
    if len(x) != len(labels):
        raise UserError(f"{where}: {len(x)} images but {len(labels)} labels")
    return Split(x.contiguous(), labels.to(torch.int64))


def _from_dataset(target: str, which: str, dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Every ``(image, label)`` item of a Dataset, stacked; images of different shapes are a UserError."""
    images, labels = [], []
    for index in range(len(dataset)):
        item = dataset[index]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise UserError(f"target {target!r}, {which} item {index}: a Dataset item must be (image, label), "
                            f"got {type(item).__name__}")
        image = _tensor(item[0])
        if images and image.shape != images[0].shape:
            raise UserError(f"target {target!r}, {which}: images of mixed sizes: item 0 is {tuple(images[0].shape)}, "
                            f"item {index} is {tuple(image.shape)}; resize them to one size")
        images.append(image)
        labels.append(int(item[1]))
    if not images:
        raise UserError(f"target {target!r}: the {which} Dataset is empty")
    return torch.stack(images), torch.tensor(labels)


def _tensor(value: Any) -> torch.Tensor:
    """A tensor of an array, tensor, PIL image or list."""
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))


def _nchw(where: str, x: torch.Tensor) -> torch.Tensor:
    """Images as N, C, H, W: NHW gets one channel; NHWC (last dimension 1, 3 or 4, the second not) is permuted."""
    if x.ndim == 3:
        return x.unsqueeze(1)
    if x.ndim != 4:
        raise UserError(f"{where}: images must be NCHW, NHWC or NHW, got shape {tuple(x.shape)}")
    if x.shape[3] in CHANNELS and x.shape[1] not in CHANNELS:
        return x.permute(0, 3, 1, 2)
    return x


def _uint8(where: str, x: torch.Tensor) -> torch.Tensor:
    """uint8 images: uint8 as they are, floats in [0, 1] times 255, other integers in 0..255."""
    if x.dtype == torch.uint8:
        return x
    low, high = (float(x.min()), float(x.max())) if x.numel() else (0.0, 0.0)
    if x.is_floating_point():
        if low < 0 or high > 1:
            raise UserError(f"{where}: float images must lie in [0, 1] (or give uint8 0..255), got {low:g}..{high:g}")
        return (x * 255).round().to(torch.uint8)
    if x.dtype == torch.bool or low < 0 or high > 255:
        raise UserError(f"{where}: integer images must lie in 0..255, got {x.dtype} {low:g}..{high:g}")
    return x.to(torch.uint8)
