"""Reader for image-folder trees ``root/train/<class>/<images>`` and ``root/test/<class>/<images>``.

Classes and files are discovered with torchvision's ImageFolder helpers; images are decoded
with PIL (which reads 1-bit BMP and TIFF too) in a thread pool, into one uint8 array per split.
All images get the colour mode and size of the first training image, unless ``grayscale`` or
``resize`` say otherwise. Decoded splits are cached on disk (see :mod:`trainlab.data.cache`).
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from trainlab.data.cache import load_or_build
from trainlab.data.splits import FullData, Split
from trainlab.errors import UserError

GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
CHUNK = 256  # images decoded per thread-pool task
LAYOUT = "DIR/train/<class>/<images> and DIR/test/<class>/<images>"


def read_imagefolder(
    name: str, root: str | None, grayscale: bool, resize: int | None, use_cache: bool
) -> FullData:
    """Read and decode both splits of the tree at ``root`` (from the cache when it is up to date)."""
    root_path = _checked_root(name, root)
    if not use_cache:
        return _decode_tree(root_path, grayscale, resize)
    identity = {"name": name, "root": str(root_path), "grayscale": grayscale, "resize": resize}
    entry = load_or_build(
        identity, _listing_signature(root_path), lambda: _decode_tree(root_path, grayscale, resize).to_entry()
    )
    return FullData.from_entry(entry)


def _checked_root(name: str, root: str | None) -> Path:
    """The absolute root folder, after checking it has ``train/`` and ``test/``."""
    if root is None:
        raise UserError(f"data.root is not set for {name}: pass --data-root DIR with {LAYOUT}")
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise UserError(f"data root {path} does not exist: pass --data-root DIR with {LAYOUT}")
    for split in ("train", "test"):
        if not (path / split).is_dir():
            raise UserError(f"data root {path} has no {split}/ folder: an image-folder set needs {LAYOUT}")
    return path


def _listing_signature(root: Path) -> str:
    """A cheap fingerprint of the tree: each class folder's name, modification time and entry count."""
    listing = []
    for split in ("train", "test"):
        for entry in sorted(os.scandir(root / split), key=lambda e: e.name):
            if entry.is_dir():
                listing.append([split, entry.name, entry.stat().st_mtime_ns, len(os.listdir(entry.path))])
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def _decode_tree(root: Path, grayscale: bool, resize: int | None) -> FullData:
    """Discover classes and files of both splits and decode them."""
    classes = _classes(root / "train")
    test_classes = _classes(root / "test")
    if classes != test_classes:
        only_train = sorted(set(classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(classes))
        raise UserError(
            f"data root {root}: train/ and test/ must have the same class folders; "
            f"only in train/: {only_train or 'none'}; only in test/: {only_test or 'none'}"
        )
    class_to_idx = {name: i for i, name in enumerate(classes)}
    train_files = _files(root / "train", class_to_idx)
    test_files = _files(root / "test", class_to_idx)

    first_mode, first_size = _mode_and_size(train_files[0][0])
    mode = "L" if grayscale or first_mode in GREY_MODES else "RGB"
    size = (resize, resize) if resize else first_size
    train = _decode_split(train_files, mode, size, resize is not None, "train")
    test = _decode_split(test_files, mode, size, resize is not None, "test")
    return FullData(train, test, classes)


def _classes(directory: Path) -> list[str]:
    from torchvision.datasets.folder import find_classes  # imported on use: torchvision takes seconds

    try:
        classes, _ = find_classes(directory)
    except FileNotFoundError:
        raise UserError(f"{directory} has no class folders: an image-folder set needs {LAYOUT}") from None
    return classes


def _files(directory: Path, class_to_idx: dict[str, int]) -> list[tuple[str, int]]:
    """``(path, class index)`` of every image file, in :func:`interleaved` order."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    try:
        return interleaved(make_dataset(directory, class_to_idx, extensions=IMG_EXTENSIONS))
    except FileNotFoundError as error:
        raise UserError(
            f"{directory}: {error}; put at least one image into every class folder or remove the empty ones"
        ) from None


def interleaved(files: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Files sorted by class and name, reordered round-robin over the classes.

    The first file of each class, then the second of each, and so on: so ``data.limit`` (the
    first N training images) covers every class instead of the first few folders.
    """
    rank: dict[int, int] = {}
    keyed = []
    for path, label in files:
        keyed.append((rank.get(label, 0), label, path))
        rank[label] = rank.get(label, 0) + 1
    return [(path, label) for _, label, path in sorted(keyed)]


def _mode_and_size(path: str) -> tuple[str, tuple[int, int]]:
    """PIL colour mode and ``(width, height)`` of one image."""
    try:
        with Image.open(path) as image:
            return image.mode, image.size
    except (OSError, SyntaxError, ValueError) as error:
        raise _unreadable(path, error) from None


def _unreadable(path: str, error: Exception) -> UserError:
    return UserError(f"cannot read image {path}: {error}; replace or remove the file")


def _decode(path: str, mode: str, size: tuple[int, int], resize: bool) -> np.ndarray:
    """One image as uint8 ``(C, H, W)`` in ``mode``, resized to ``size`` when ``resize``."""
    try:
        with Image.open(path) as image:
            image = image.convert(mode)
    except (OSError, SyntaxError, ValueError) as error:
        raise _unreadable(path, error) from None
    if resize:
        image = image.resize(size, Image.Resampling.BILINEAR)
    elif image.size != size:
        width, height = image.size
        raise UserError(
            f"image {path} is {width}x{height} but the first training image is {size[0]}x{size[1]}; "
            "all images must have one size: set data.resize=N to resize every image to NxN"
        )
    pixels = np.asarray(image)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _decode_split(
    files: list[tuple[str, int]], mode: str, size: tuple[int, int], resize: bool, label: str
) -> Split:
    """Decode ``files`` into one array with a thread pool (PIL releases the GIL while decoding)."""
    channels = 1 if mode == "L" else 3
    x = np.empty((len(files), channels, size[1], size[0]), dtype=np.uint8)

    def decode_chunk(start: int) -> int:
        stop = min(start + CHUNK, len(files))
        for i in range(start, stop):
            x[i] = _decode(files[i][0], mode, size, resize)
        return stop - start

    pool = ThreadPoolExecutor(max_workers=os.cpu_count())
    try:
        with tqdm(total=len(files), desc=f"decoding {label} images", unit="img", disable=None) as bar:
            for done in pool.map(decode_chunk, range(0, len(files), CHUNK)):
                bar.update(done)
    finally:
        pool.shutdown(cancel_futures=True)  # after an error, skip the chunks not yet started
    y = torch.tensor([index for _, index in files], dtype=torch.int64)
    return Split(torch.from_numpy(x), y)
