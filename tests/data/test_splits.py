"""Splitting (limit, validation hold-out), statistics, grayscale, and the digits and synthetic sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms.functional import rgb_to_grayscale

from trainlab.config import DataConfig, SyntheticConfig
from trainlab.data import ImageData, Split, load_data
from trainlab.errors import UserError


def synthetic(**fields) -> DataConfig:
    return DataConfig(name="synthetic", **fields)


def row_positions(rows: torch.Tensor, full: torch.Tensor) -> list[int]:
    """Position in ``full`` of each image in ``rows`` (images are told apart by their bytes)."""
    position = {image.tobytes(): i for i, image in enumerate(full.numpy())}
    assert len(position) == len(full), "test data must not contain duplicate images"
    return [position[image.tobytes()] for image in rows.numpy()]


def test_limit_takes_the_first_training_images() -> None:
    full = load_data(synthetic(val_size=0))
    limited = load_data(synthetic(val_size=0, limit=50))
    assert torch.equal(limited.train.x, full.train.x[:50]) and torch.equal(limited.train.y, full.train.y[:50])
    assert torch.equal(limited.test.x, full.test.x)
    assert len(load_data(synthetic(val_size=0, limit=10_000)).train) == len(full.train)
    test_limited = load_data(synthetic(val_size=0, test_limit=7))
    assert torch.equal(test_limited.test.x, full.test.x[:7]) and torch.equal(test_limited.test.y, full.test.y[:7])
    assert torch.equal(test_limited.train.x, full.train.x) and torch.equal(test_limited.mean, full.mean)


@pytest.mark.parametrize("val_size, expected", [(40, 40), (0.25, 128)])
def test_validation_hold_out_is_disjoint_and_complete(val_size: float | int, expected: int) -> None:
    full = load_data(synthetic(val_size=0)).train
    data = load_data(synthetic(val_size=val_size))
    assert len(data.val) == expected and len(data.train) == len(full) - expected
    train_at = row_positions(data.train.x, full.x)
    val_at = row_positions(data.val.x, full.x)
    assert sorted(train_at + val_at) == list(range(len(full)))
    assert torch.equal(data.train.y, full.y[train_at]) and torch.equal(data.val.y, full.y[val_at])


def test_hold_out_follows_the_limit_and_is_fixed() -> None:
    data = load_data(synthetic(limit=100, val_size=10))
    full = load_data(synthetic(val_size=0)).train
    assert set(row_positions(torch.cat([data.train.x, data.val.x]), full.x)) == set(range(100))
    again = load_data(synthetic(limit=100, val_size=10))
    assert torch.equal(data.val.x, again.val.x)


@pytest.mark.parametrize("fields", [{"val_size": 512}, {"limit": 10, "val_size": 10}])
def test_validation_larger_than_train_is_a_user_error(fields: dict) -> None:
    with pytest.raises(UserError, match="data.val_size"):
        load_data(synthetic(**fields))


def test_mean_and_std_come_from_the_train_split() -> None:
    data = load_data(synthetic(synthetic=SyntheticConfig(channels=3), val_size=0.2))
    pixels = data.train.x.double() / 255
    assert data.mean.dtype == torch.float32 and data.mean.shape == (3,)
    assert torch.allclose(data.mean.double(), pixels.mean(dim=(0, 2, 3)), atol=1e-6)
    assert torch.allclose(data.std.double(), pixels.std(dim=(0, 2, 3), correction=0), atol=1e-6)


def test_normalize_false_gives_zeros_and_ones() -> None:
    data = load_data(synthetic(synthetic=SyntheticConfig(channels=2), normalize=False))
    assert torch.equal(data.mean, torch.zeros(2)) and torch.equal(data.std, torch.ones(2))


def test_grayscale_uses_torchvision_on_rgb_sources() -> None:
    colour = load_data(synthetic(synthetic=SyntheticConfig(channels=3), val_size=0))
    grey = load_data(synthetic(synthetic=SyntheticConfig(channels=3), val_size=0, grayscale=True))
    assert grey.input_shape == (1, 8, 8)
    assert torch.equal(grey.train.x, rgb_to_grayscale(colour.train.x))
    assert torch.equal(grey.test.x, rgb_to_grayscale(colour.test.x))


def test_digits_split_and_scaling() -> None:
    from sklearn.datasets import load_digits

    data = load_data(DataConfig(name="digits", val_size=0))
    assert (len(data.train), len(data.test)) == (1437, 360)
    assert data.input_shape == (1, 8, 8) and data.classes == [str(d) for d in range(10)]
    digits = load_digits()
    expected = sorted(
        (np.round(image * 255 / 16).astype(np.uint8).tobytes(), int(label))
        for image, label in zip(digits.images, digits.target)
    )
    images = torch.cat([data.train.x, data.test.x]).numpy()
    labels = torch.cat([data.train.y, data.test.y]).tolist()
    assert sorted((image.tobytes(), label) for image, label in zip(images, labels)) == expected
    assert torch.equal(load_data(DataConfig(name="digits", val_size=0)).test.x, data.test.x)


def test_synthetic_is_deterministic_shaped_and_learnable() -> None:
    sizes = SyntheticConfig(n_train=300, n_test=100, channels=2, size=6, classes=5)
    cfg = synthetic(synthetic=sizes, val_size=0)
    data = load_data(cfg)
    again = load_data(cfg)
    assert torch.equal(data.train.x, again.train.x) and torch.equal(data.test.y, again.test.y)
    assert data.input_shape == (2, 6, 6) and data.num_classes == 5
    assert (len(data.train), len(data.test)) == (300, 100)
    # nearest class mean (a linear classifier) fitted on train must beat chance by far on test
    train_x, test_x = data.train.x.flatten(1).float(), data.test.x.flatten(1).float()
    means = torch.stack([train_x[data.train.y == c].mean(0) for c in range(5)])
    predicted = torch.cdist(test_x, means).argmin(1)
    assert (predicted == data.test.y).float().mean() > 0.8


def test_to_moves_every_tensor() -> None:
    data = load_data(synthetic()).to("cpu")
    assert isinstance(data, ImageData)
    assert all(t.device.type == "cpu" for t in (data.train.x, data.val.y, data.test.x, data.mean, data.std))


@pytest.mark.parametrize("shape", [(7,), (3, 5)])
def test_take_equals_advanced_indexing(shape: tuple[int, ...]) -> None:
    generator = torch.Generator().manual_seed(0)
    split = Split(torch.randint(0, 256, (20, 2, 4, 4), dtype=torch.uint8, generator=generator),
                  torch.randint(0, 10, (20,), generator=generator))
    index = torch.randint(0, 20, shape, generator=generator)
    x, y = split.take(index)
    assert x.shape == (*shape, 2, 4, 4) and y.shape == shape
    assert torch.equal(x, split.x[index]) and torch.equal(y, split.y[index])
