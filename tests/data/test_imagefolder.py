"""Image-folder trees: formats, labels, pixels, colour modes, sizes and every user error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainlab.config import DataConfig
from trainlab.data import imagefolder, load_data
from trainlab.errors import UserError


def folder_config(root: Path, **fields) -> DataConfig:
    return DataConfig(name="imagefolder", root=str(root), val_size=0, normalize=False, **fields)


def pil_pixels(path: Path, mode: str, size: tuple[int, int] | None = None) -> torch.Tensor:
    """PIL's own decode of ``path`` as uint8 ``(C, H, W)``."""
    with Image.open(path) as image:
        image = image.convert(mode)
    if size is not None:
        image = image.resize(size, Image.Resampling.BILINEAR)
    pixels = np.array(image)
    return torch.from_numpy(pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1))


def test_greyscale_formats_bmp_1bit_tiff_png(tmp_path: Path, write_image: Callable) -> None:
    rng = np.random.default_rng(0)
    root = tmp_path / "grey"
    bits = rng.random((4, 5)) < 0.5
    files = {
        ("train", "a"): [write_image(root / "train/a/0.bmp", bits)],  # 1-bit BMP, decides the mode: L
        ("train", "b"): [
            write_image(root / "train/b/1.tiff", rng.integers(0, 256, (4, 5), dtype=np.uint8)),
            write_image(root / "train/b/2.bmp", rng.integers(0, 256, (4, 5), dtype=np.uint8)),
        ],
        ("test", "a"): [write_image(root / "test/a/3.tif", rng.random((4, 5)) < 0.5)],  # 1-bit TIFF
        ("test", "b"): [write_image(root / "test/b/4.png", rng.integers(0, 256, (4, 5), dtype=np.uint8))],
    }
    with Image.open(files["train", "a"][0]) as image:
        assert image.mode == "1"
    data = load_data(folder_config(root))
    assert data.classes == ["a", "b"]
    assert data.input_shape == (1, 4, 5)
    assert torch.equal(data.train.x[0, 0], torch.from_numpy(bits.astype(np.uint8) * 255))
    for split_name, split in (("train", data.train), ("test", data.test)):
        paths = files[split_name, "a"] + files[split_name, "b"]
        labels = [0] * len(files[split_name, "a"]) + [1] * len(files[split_name, "b"])
        assert torch.equal(split.y, torch.tensor(labels))
        assert torch.equal(split.x, torch.stack([pil_pixels(path, "L") for path in paths]))


def test_rgb_png_is_exact_and_jpeg_matches_pil(tmp_path: Path, write_image: Callable) -> None:
    rng = np.random.default_rng(1)
    root = tmp_path / "rgb"
    png = rng.integers(0, 256, (6, 4, 3), dtype=np.uint8)
    write_image(root / "train/x/0.png", png)
    jpeg = write_image(root / "train/y/1.jpg", rng.integers(0, 256, (6, 4, 3), dtype=np.uint8))
    write_image(root / "test/x/2.png", png)
    write_image(root / "test/y/3.jpeg", rng.integers(0, 256, (6, 4, 3), dtype=np.uint8))
    data = load_data(folder_config(root))
    assert data.input_shape == (3, 6, 4)
    assert torch.equal(data.train.x[0], torch.from_numpy(png).permute(2, 0, 1))
    assert torch.equal(data.train.x[1], pil_pixels(jpeg, "RGB"))
    assert torch.equal(data.train.y, torch.tensor([0, 1]))


def test_grayscale_option_converts_rgb_with_pil(rgb_tree: Path) -> None:
    data = load_data(folder_config(rgb_tree, grayscale=True))
    files = in_stored_order((rgb_tree / "train").glob("*/*.png"))
    assert data.input_shape == (1, 5, 6)
    assert torch.equal(data.train.x, torch.stack([pil_pixels(path, "L") for path in files]))


def test_size_mismatch_names_the_file_and_resize_fixes_it(rgb_tree: Path, write_image: Callable) -> None:
    odd = write_image(rgb_tree / "train/dog/odd.png", np.zeros((9, 7, 3), dtype=np.uint8))
    with pytest.raises(UserError, match="data.resize") as error:
        load_data(folder_config(rgb_tree))
    assert str(odd) in str(error.value) and "7x9" in str(error.value) and "6x5" in str(error.value)

    data = load_data(folder_config(rgb_tree, resize=4))
    files = in_stored_order((rgb_tree / "train").glob("*/*.png"))
    assert data.input_shape == (3, 4, 4)
    assert torch.equal(data.train.x, torch.stack([pil_pixels(path, "RGB", (4, 4)) for path in files]))


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_image_is_named_and_leaves_no_cache(rgb_tree: Path, data_cache: Path, damage: str) -> None:
    bad = rgb_tree / "train/dog/1.png"
    bad.write_bytes(b"not an image" if damage == "garbage" else bad.read_bytes()[:60])
    with pytest.raises(UserError, match="cannot read image") as error:
        load_data(folder_config(rgb_tree))
    assert str(bad) in str(error.value)
    assert [path for path in data_cache.rglob("*") if path.is_file()] == []


def test_root_not_set_or_missing(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="data.root is not set"):
        load_data(DataConfig(name="gurmukhi"))
    missing = tmp_path / "nowhere"
    with pytest.raises(UserError, match="does not exist") as error:
        load_data(folder_config(missing))
    assert str(missing) in str(error.value)


def test_missing_test_folder(rgb_tree: Path) -> None:
    (rgb_tree / "test").rename(rgb_tree / "testing")
    with pytest.raises(UserError, match="no test/ folder"):
        load_data(folder_config(rgb_tree))


def test_no_class_folders(tmp_path: Path) -> None:
    (tmp_path / "empty" / "train").mkdir(parents=True)
    (tmp_path / "empty" / "test").mkdir()
    with pytest.raises(UserError, match="no class folders") as error:
        load_data(folder_config(tmp_path / "empty"))
    assert str(tmp_path / "empty" / "train") in str(error.value)


def test_class_folder_without_images(rgb_tree: Path) -> None:
    for split in ("train", "test"):
        (rgb_tree / split / "emu").mkdir()
        (rgb_tree / split / "emu" / "notes.txt").write_text("no image here")
    with pytest.raises(UserError, match="emu") as error:
        load_data(folder_config(rgb_tree))
    assert str(rgb_tree / "train") in str(error.value)


def test_train_test_class_mismatch_names_the_classes(rgb_tree: Path) -> None:
    (rgb_tree / "test" / "dog").rename(rgb_tree / "test" / "wolf")
    with pytest.raises(UserError, match="same class folders") as error:
        load_data(folder_config(rgb_tree))
    assert "'dog'" in str(error.value) and "'wolf'" in str(error.value)


def test_decoding_in_many_chunks_keeps_the_order(rgb_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imagefolder, "CHUNK", 4)  # 6 train images: a full and a partial chunk
    data = load_data(folder_config(rgb_tree, cache=False))
    files = in_stored_order((rgb_tree / "train").glob("*/*.png"))
    assert torch.equal(data.train.x, torch.stack([pil_pixels(path, "RGB") for path in files]))


def in_stored_order(paths) -> list[Path]:
    """Expected order of a split: round-robin over the class folders, each sorted by name."""
    by_class: dict[str, list[Path]] = {}
    for path in sorted(paths):
        by_class.setdefault(path.parent.name, []).append(path)
    return [path for rank in range(max(map(len, by_class.values())))
            for name in sorted(by_class) for path in by_class[name][rank:rank + 1]]


def test_limit_takes_every_class_from_a_class_sorted_tree(tmp_path: Path, write_image: Callable) -> None:
    for name in ("a", "b", "c"):
        for i in range(4):
            write_image(tmp_path / f"train/{name}/{i}.png", np.full((2, 2), i, dtype=np.uint8))
        write_image(tmp_path / f"test/{name}/0.png", np.zeros((2, 2), dtype=np.uint8))
    data = load_data(folder_config(tmp_path, limit=6))
    assert data.train.y.tolist() == [0, 1, 2, 0, 1, 2]



def test_cifar10_reads_an_image_tree_like_imagefolder(rgb_tree: Path) -> None:
    as_cifar = load_data(DataConfig(name="cifar10", root=str(rgb_tree), val_size=0))
    as_folder = load_data(DataConfig(name="imagefolder", root=str(rgb_tree), val_size=0))
    assert torch.equal(as_cifar.train.x, as_folder.train.x) and torch.equal(as_cifar.test.y, as_folder.test.y)
    assert as_cifar.classes == as_folder.classes
