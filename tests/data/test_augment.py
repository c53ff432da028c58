"""Batched augmentation and the uint8 -> float conversion, against per-sample reference code."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import DEVICES
from trainlab.config import Crop, HFlip, Translate, VFlip
from trainlab.data import augment_batch, to_float
from trainlab.data.augment import shift_images


def images(batch: int = 32, device: str = "cpu") -> torch.Tensor:
    """Random non-zero uint8 images ``(batch, 3, 5, 7)``: zero fill is then visible."""
    generator = torch.Generator().manual_seed(batch)
    return torch.randint(1, 256, (batch, 3, 5, 7), generator=generator, dtype=torch.uint8).to(device)


def generator_on(device: str, seed: int = 0) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def test_shift_matches_a_per_pixel_loop() -> None:
    x = images(batch=8)
    dy = torch.tensor([0, 1, -2, 4, -5, 6, 3, -1])
    dx = torch.tensor([0, -3, 2, 7, 1, -8, -6, 5])
    expected = torch.zeros_like(x)
    for b in range(len(x)):
        for i in range(x.shape[2]):
            for j in range(x.shape[3]):
                source_i, source_j = i - int(dy[b]), j - int(dx[b])
                if 0 <= source_i < x.shape[2] and 0 <= source_j < x.shape[3]:
                    expected[b, :, i, j] = x[b, :, source_i, source_j]
    assert torch.equal(shift_images(x, dy, dx), expected)


def crops_of_padded(image: torch.Tensor, padding: int) -> list[torch.Tensor]:
    """Every crop of the original size from ``image`` zero-padded by ``padding``."""
    padded = F.pad(image, (padding,) * 4)
    height, width = image.shape[-2:]
    return [
        padded[:, top : top + height, left : left + width]
        for top in range(2 * padding + 1)
        for left in range(2 * padding + 1)
    ]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("spec", [Crop(padding=2), Translate(max_shift=1)], ids=["crop", "translate"])
def test_crop_and_translate_pick_one_padded_window_per_sample(device: str, spec: Crop | Translate) -> None:
    x = images(device=device)
    out = augment_batch(x, [spec], generator_on(device))
    assert out.dtype == torch.uint8 and out.shape == x.shape and out.device == x.device
    reach = spec.padding if isinstance(spec, Crop) else spec.max_shift
    chosen = []
    for image, result in zip(x, out):
        windows = crops_of_padded(image, reach)
        matches = [k for k, window in enumerate(windows) if torch.equal(window, result)]
        assert matches, "every output must be a window of the padded input"
        chosen.append(matches[0])
    assert len(set(chosen)) > 1, "offsets must be drawn per sample"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("flip, dim", [(HFlip, -1), (VFlip, -2)])
def test_flip_probabilities(device: str, flip: type, dim: int) -> None:
    x = images(batch=64, device=device)
    assert torch.equal(augment_batch(x, [flip(p=0.0)], generator_on(device)), x)
    assert torch.equal(augment_batch(x, [flip(p=1.0)], generator_on(device)), x.flip(dim))
    out = augment_batch(x, [flip(p=0.5)], generator_on(device))
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(dim)).flatten(1).all(1)
    assert (same | flipped).all()
    assert same.any() and flipped.any()


def test_same_seed_same_output_and_list_order() -> None:
    x = images(batch=16)
    specs = [Crop(padding=3), HFlip(), VFlip(p=0.3), Translate(max_shift=2)]
    first = augment_batch(x, specs, generator_on("cpu", 7))
    assert torch.equal(first, augment_batch(x, specs, generator_on("cpu", 7)))
    assert not torch.equal(first, augment_batch(x, specs, generator_on("cpu", 8)))
    assert torch.equal(augment_batch(x, [], generator_on("cpu")), x)


def test_resuming_from_a_generator_state_repeats_the_batches() -> None:
    x = images(batch=16)
    generator = generator_on("cpu", 3)
    augment_batch(x, [Crop()], generator)
    state = generator.get_state()
    second = augment_batch(x, [Crop(), HFlip()], generator)
    generator.set_state(state)
    assert torch.equal(augment_batch(x, [Crop(), HFlip()], generator), second)


@pytest.mark.parametrize("device", DEVICES)
def test_to_float_matches_a_direct_computation(device: str) -> None:
    x = images(batch=4, device=device)
    mean = torch.tensor([0.1, 0.5, 0.9])
    std = torch.tensor([0.2, 0.3, 0.4])
    out = to_float(x, mean, std)
    expected = torch.empty(x.shape, dtype=torch.float64)
    for c in range(3):
        expected[:, c] = (x[:, c].cpu().double() / 255 - mean[c].item()) / std[c].item()
    assert out.dtype == torch.float32 and out.device == x.device
    assert torch.allclose(out.cpu().double(), expected, atol=1e-5)
