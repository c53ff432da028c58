"""MNIST and Fashion-MNIST through torchvision, from small IDX files written here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from trainlab.config import DataConfig
from trainlab.data import load_data
from trainlab.errors import UserError


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array in the IDX format: magic (type 0x08, ndim), big-endian sizes, raw bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(size.to_bytes(4, "big") for size in array.shape)
    path.write_bytes(header + array.tobytes())


def write_mnist_layout(root: Path, folder: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Train (7) and test (4) images of 6x5 pixels in ``root/folder/raw``; returns what was written."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    written = {}
    for prefix, n in (("train", 7), ("t10k", 4)):
        written[f"{prefix}_x"] = rng.integers(0, 256, (n, 6, 5), dtype=np.uint8)
        written[f"{prefix}_y"] = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", written[f"{prefix}_x"])
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", written[f"{prefix}_y"])
    return written


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_idx_files_load_pixel_exact(tmp_path: Path, name: str, folder: str) -> None:
    written = write_mnist_layout(tmp_path, folder, np.random.default_rng(1))
    data = load_data(DataConfig(name=name, root=str(tmp_path), val_size=0, normalize=False))
    for split, prefix in ((data.train, "train"), (data.test, "t10k")):
        assert split.x.dtype == torch.uint8 and split.y.dtype == torch.int64
        assert torch.equal(split.x, torch.from_numpy(written[f"{prefix}_x"]).unsqueeze(1))
        assert torch.equal(split.y, torch.from_numpy(written[f"{prefix}_y"]).long())
    assert data.input_shape == (1, 6, 5)
    assert data.num_classes == 10


def test_missing_idx_file_names_the_layout(tmp_path: Path) -> None:
    write_mnist_layout(tmp_path, "MNIST", np.random.default_rng(2))
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UserError, match="--download") as error:
        load_data(DataConfig(name="mnist", root=str(tmp_path)))
    assert str(tmp_path / "MNIST" / "raw") in str(error.value)


def test_truncated_idx_file_is_a_user_error(tmp_path: Path) -> None:
    write_mnist_layout(tmp_path, "MNIST", np.random.default_rng(3))
    images = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:40])
    with pytest.raises(UserError, match="cannot load mnist"):
        load_data(DataConfig(name="mnist", root=str(tmp_path)))


@pytest.mark.parametrize("name", ["MNIST", "FashionMNIST"])
def test_an_idx_file_with_a_damaged_header_is_named(tmp_path: Path, name: str) -> None:
    write_mnist_layout(tmp_path, name, np.random.default_rng(4))
    labels = tmp_path / name / "raw" / "t10k-labels-idx1-ubyte"
    labels.write_bytes(b"\x12\x34" + labels.read_bytes()[2:])  # torchvision's header check fails without a message
    with pytest.raises(UserError) as error:
        load_data(DataConfig(name="mnist" if name == "MNIST" else "fashion_mnist", root=str(tmp_path)))
    assert "(not an IDX file: t10k-labels-idx1-ubyte)" in str(error.value)


def test_missing_cifar10_names_both_layouts(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="an image tree DIR/train/<class>") as error:
        load_data(DataConfig(name="cifar10", root=str(tmp_path)))
    assert "cifar-10-batches-py" in str(error.value)


def test_without_root_the_default_download_folder_is_used(data_cache: Path) -> None:
    with pytest.raises(UserError, match="data.root is not set") as error:
        load_data(DataConfig(name="fashion_mnist"))
    assert str(data_cache / "datasets" / "FashionMNIST" / "raw") in str(error.value)
