"""The real data sets in ``../shared/data`` (next to the repository); skipped where absent.

MNIST through torchvision, Gurmukhi (1-bit BMP and TIFF) as an image folder, and the CIFAR-10
JPEG tree (extracted once from its tarball into a reusable temporary folder) loaded twice: the
second time from the cache.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.shared_data import SHARED_DATA, cifar10_jpeg_tree, shared
from trainlab.config import DataConfig
from trainlab.data import load_data

pytestmark = pytest.mark.acceptance


@pytest.fixture(autouse=True)
def data_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh trainlab cache per test, never the user's."""
    monkeypatch.setenv("TRAINLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def cifar10_jpeg_root() -> Path:
    return cifar10_jpeg_tree()


def read_idx(path: Path) -> np.ndarray:
    """An IDX file read directly: big-endian sizes after a 4-byte magic whose last byte is the rank."""
    raw = path.read_bytes()
    rank = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * rank).reshape(shape)


def test_mnist() -> None:
    raw = shared("MNIST/raw")
    data = load_data(DataConfig(name="mnist", root=str(SHARED_DATA), val_size=0))
    assert (len(data.train), len(data.test)) == (60000, 10000)
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    assert torch.equal(data.train.x[:, 0], torch.from_numpy(read_idx(raw / "train-images-idx3-ubyte").copy()))
    test_labels = read_idx(raw / "t10k-labels-idx1-ubyte").astype(np.int64)
    assert torch.equal(data.test.y, torch.from_numpy(test_labels))


def test_gurmukhi() -> None:
    root = shared("gurmukhi")
    data = load_data(DataConfig(name="gurmukhi", root=str(root), val_size=0))
    assert (len(data.train), len(data.test)) == (1000, 178)
    assert data.input_shape == (1, 32, 32) and data.num_classes == 10
    first_test_file = sorted((root / "test" / data.classes[0]).iterdir())[0]
    with Image.open(first_test_file) as image:
        expected = np.array(image.convert("L"))
    assert torch.equal(data.test.x[0, 0], torch.from_numpy(expected))
    assert set(torch.unique(data.train.x).tolist()) <= {0, 255}  # 1-bit images


def test_cifar10_jpeg_tree_and_its_cache(cifar10_jpeg_root: Path) -> None:
    cfg = DataConfig(name="imagefolder", root=str(cifar10_jpeg_root), val_size=0)
    start = time.perf_counter()
    first = load_data(cfg)
    decoded = time.perf_counter()
    second = load_data(cfg)
    cached = time.perf_counter()
    print(f"CIFAR-10 JPEG load: first {decoded - start:.1f} s, from cache {cached - decoded:.2f} s")
    assert (len(first.train), len(first.test)) == (50000, 10000)
    assert first.input_shape == (3, 32, 32) and first.num_classes == 10
    assert torch.equal(first.train.x, second.train.x) and torch.equal(first.train.y, second.train.y)
    assert torch.equal(first.test.x, second.test.x) and torch.equal(first.test.y, second.test.y)
    assert first.classes == second.classes
    assert cached - decoded < 5  # the cache must beat decoding 60,000 files by far
