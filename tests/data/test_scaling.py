"""data.scaling: per-channel, per-pixel, [0, 1] and raw 0-255 input, against direct float64 computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import DEVICES
from trainlab.config import DataConfig, RunConfig, SyntheticConfig
from trainlab.data import load_data, to_float
from trainlab.data.normalize import channel_stats, pixel_stats, scaling_stats
from trainlab.errors import UserError
from trainlab.train import plain

SCALINGS = ("per_channel", "per_pixel", "unit", "raw")


def images(n: int = 50, seed: int = 0) -> torch.Tensor:
    """Random uint8 images ``(n, 2, 5, 6)`` whose channel 1, row 0 is constant (7), like MNIST's border."""
    x = torch.randint(0, 256, (n, 2, 5, 6), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
    x[:, 1, 0] = 7
    return x


def expected_scaled(x: torch.Tensor, scaling: str, train: torch.Tensor | None = None) -> np.ndarray:
    """What the model should see for uint8 images ``x`` (N, C, H, W), computed in float64 with numpy.

    The statistics are those of the training images ``train`` (default: ``x``), on the 0-255 scale
    (where a constant position's deviations are exactly 0) and then divided by 255.
    """
    pixels = x.numpy().astype(np.float64)
    if scaling == "raw":
        return pixels
    if scaling == "unit":
        return pixels / 255
    reference = (x if train is None else train).numpy().astype(np.float64)
    axes = (0, 2, 3) if scaling == "per_channel" else 0
    mean = reference.mean(axis=axes, keepdims=True) / 255
    std = reference.std(axis=axes, keepdims=True) / 255
    return (pixels / 255 - mean) / np.where(std > 0, std, 1.0)


@pytest.mark.parametrize("chunk", [1, 90, 1 << 22])  # one image per chunk, three images, everything
def test_pixel_stats_match_numpy(chunk: int) -> None:
    x = images()
    mean, std = pixel_stats(x, chunk=chunk)
    pixels = x.numpy().astype(np.float64)
    expected_std = pixels.std(axis=0) / 255
    assert mean.dtype == std.dtype == torch.float32 and mean.shape == std.shape == (2, 5, 6)
    np.testing.assert_allclose(mean.double().numpy(), pixels.mean(axis=0) / 255, rtol=1e-7, atol=0)
    assert torch.all(std[1, 0] == 1) and np.all(expected_std[1, 0] == 0)  # constant positions get std 1
    varies = expected_std > 0
    np.testing.assert_allclose(std.double().numpy()[varies], expected_std[varies], rtol=1e-7)


def test_scaling_stats_shapes_and_constants() -> None:
    x = images()
    assert [tuple(scaling_stats(x, s)[0].shape) for s in SCALINGS] == [(2,), (2, 5, 6), (2,), (2,)]
    assert all(torch.equal(a, b) for a, b in zip(scaling_stats(x, "per_channel"), channel_stats(x)))
    mean, std = scaling_stats(x, "unit")
    assert torch.equal(mean, torch.zeros(2)) and torch.equal(std, torch.ones(2))
    mean, std = scaling_stats(x, "raw")
    assert torch.equal(mean, torch.zeros(2)) and torch.equal(std, torch.full((2,), 1 / 255))
    with pytest.raises(UserError, match="data.scaling.*per_pixel"):
        scaling_stats(x, "per_image")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("scaling", SCALINGS)
def test_to_float_gives_each_scaling(device: str, scaling: str) -> None:
    x = images()
    mean, std = scaling_stats(x, scaling)
    out = to_float(x.to(device), mean.to(device), std.to(device))
    assert out.dtype == torch.float32 and out.device.type == device
    expected = expected_scaled(x, scaling)
    if scaling == "raw":  # the pixel values, to within one float32 rounding
        assert np.all(np.abs(out.cpu().numpy() - expected) <= np.spacing(expected.astype(np.float32)))
    else:
        np.testing.assert_allclose(out.cpu().double().numpy(), expected, rtol=1e-5, atol=1e-5)


def test_per_channel_is_bit_identical_to_the_former_normalisation() -> None:
    colour = SyntheticConfig(channels=3)
    data = load_data(DataConfig(name="synthetic", synthetic=colour, scaling="per_channel"))
    mean, std = channel_stats(data.train.x)
    assert torch.equal(data.mean, mean) and torch.equal(data.std, std)
    x = data.test.x
    former = x.float().div_(255).sub_(mean.view(-1, 1, 1)).div_(std.view(-1, 1, 1))
    assert torch.equal(to_float(x, data.mean, data.std), former)
    old_key = load_data(DataConfig(name="synthetic", synthetic=colour, normalize=True))
    assert torch.equal(old_key.mean, data.mean) and torch.equal(old_key.std, data.std)


@pytest.mark.parametrize("scaling", SCALINGS)
def test_statistics_come_from_the_training_split_only(scaling: str) -> None:
    data = load_data(DataConfig(name="synthetic", synthetic=SyntheticConfig(channels=3), val_size=0.25,
                                scaling=scaling))
    scaled = to_float(data.train.x, data.mean, data.std).double().numpy()
    np.testing.assert_allclose(scaled, expected_scaled(data.train.x, scaling), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scaling", SCALINGS)
def test_the_first_batch_a_model_sees(scaling: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = RunConfig.model_validate({
        "data": {"name": "synthetic", "scaling": scaling, "val_size": 16,
                 "synthetic": {"n_train": 80, "n_test": 16, "channels": 2, "size": 6, "classes": 3}},
        "model": {"kind": "mlp", "hidden": [8]},
        "train": {"epochs": 1, "batch_size": 24, "seed": 5},
        "probes": {"enabled": False},
    })
    seen: list[torch.Tensor] = []
    build = plain.new_model

    def record(module: torch.nn.Module, inputs: tuple) -> None:
        if module.training:
            seen.append(inputs[0].clone())

    def watched_model(*args, **kwargs):
        model = build(*args, **kwargs)
        model.register_forward_pre_hook(record)
        return model

    monkeypatch.setattr(plain, "new_model", watched_model)
    plain.train_run(cfg)
    train = load_data(cfg.data).train
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(5))  # the run's data order
    expected = expected_scaled(train.x[order[:24]], scaling, train.x)
    assert seen[0].dtype == torch.float32 and seen[0].shape == (24, 2, 6, 6)
    np.testing.assert_allclose(seen[0].double().numpy(), expected, rtol=1e-5, atol=1e-5)


def test_per_pixel_statistics_broadcast_over_an_ensemble_stack() -> None:
    stack = images(n=12).view(3, 4, 2, 5, 6)  # (models, batch, C, H, W), as an ensemble's batches are
    mean, std = pixel_stats(images(n=30, seed=1))
    out = to_float(stack, mean, std)
    assert all(torch.equal(out[m], to_float(stack[m], mean, std)) for m in range(3))
    np.testing.assert_allclose(out.view(12, 2, 5, 6).double().numpy(),
                               expected_scaled(stack.reshape(12, 2, 5, 6), "per_pixel", images(n=30, seed=1)),
                               rtol=1e-5, atol=1e-5)
