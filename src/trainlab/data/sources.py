"""One reader per data set name (``data.name``), each returning the full train and test splits.

- ``mnist``, ``fashion_mnist``, ``cifar10``: torchvision's dataset classes, their raw arrays.
- ``imagefolder``, ``gurmukhi``: an image-folder tree, see :mod:`trainlab.data.imagefolder`.
- ``digits``: scikit-learn's bundled 8x8 digits with a fixed 20 % test split.
- ``synthetic``: class templates plus noise, generated with a fixed seed (for tests).
- ``python``: the user's own loader, see :mod:`trainlab.data.usersource`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from trainlab.config import DATASETS, DataConfig, SyntheticConfig
from trainlab.data.cache import cache_root
from trainlab.data.imagefolder import read_imagefolder
from trainlab.data.splits import FullData, Split
from trainlab.data.usersource import read_python
from trainlab.errors import UserError, unknown

if TYPE_CHECKING:
    from torchvision.datasets import VisionDataset

# torchvision dataset class and the files it expects under the root folder
TORCHVISION_SETS = {
    "mnist": ("MNIST", "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}"),
}
DIGITS_TEST_FRACTION = 0.2
DIGITS_SEED = 0  # fixed: the digits test split never changes
SYNTHETIC_SEED = 0
SYNTHETIC_NOISE = 64.0  # standard deviation of the pixel noise around a class template (0..255 scale)


def read_source(cfg: DataConfig, download: bool = False) -> FullData:
    """Read the full train and test splits of the data set ``cfg.name``."""
    uses_root = cfg.name not in ("digits", "synthetic", "python")
    if uses_root and cfg.root is not None and Path(cfg.root).expanduser().is_file():
        raise UserError(f"data root {cfg.root} is a file, not a folder: pass --data-root DIR, the folder "
                        f"that holds {cfg.name}")
    if cfg.name == "cifar10" and _is_image_tree(cfg.root):  # e.g. the CIFAR-10 JPEG version
        return read_imagefolder(cfg.name, cfg.root, cfg.grayscale, cfg.resize, cfg.cache)
    if cfg.name in TORCHVISION_SETS:
        return _read_torchvision(cfg.name, cfg.root, download)
    if cfg.name in ("imagefolder", "gurmukhi"):
        return read_imagefolder(cfg.name, cfg.root, cfg.grayscale, cfg.resize, cfg.cache)
    if cfg.name == "digits":
        return _read_digits()
    if cfg.name == "synthetic":
        return _read_synthetic(cfg.synthetic)
    if cfg.name == "python":
        return read_python(cfg)
    raise unknown("data set", cfg.name, DATASETS)


def _is_image_tree(root: str | None) -> bool:
    """Whether ``root`` holds an image-folder tree (``train/<class>/`` and ``test/<class>/``)."""
    if root is None:
        return False
    path = Path(root).expanduser()
    return (path / "train").is_dir() and (path / "test").is_dir()


def default_download_root() -> Path:
    """Where torchvision data sets live when ``data.root`` is not set."""
    return cache_root() / "datasets"


def _read_torchvision(name: str, root: str | None, download: bool) -> FullData:
    from torchvision import datasets  # imported on use: importing torchvision takes seconds

    class_name, layout = TORCHVISION_SETS[name]
    dataset_class = getattr(datasets, class_name)
    root_path = Path(root).expanduser() if root is not None else default_download_root()
    try:
        train = dataset_class(str(root_path), train=True, download=download)
        test = dataset_class(str(root_path), train=False, download=download)
    # torchvision: missing files -> RuntimeError, bad IDX header -> assert, network failure -> OSError
    except (RuntimeError, OSError, ValueError, TypeError, AssertionError) as error:
        where = " (data.root is not set: the default download folder)" if root is None else ""
        hint, cause = "", str(error) or _damaged_idx_files(root_path / class_name / "raw")
        if name == "cifar10":
            hint = "; or an image tree DIR/train/<class>/*.jpg and DIR/test/<class>/*.jpg (the JPEG version)"
        raise UserError(
            f"cannot load {name} from {root_path}{where} ({cause}): expected the files {root_path}/{layout}; "
            f"pass --data-root DIR with that layout, or --download to fetch it{hint}"
        ) from None
    return FullData(_torchvision_split(train), _torchvision_split(test), list(train.classes))


def _damaged_idx_files(folder: Path) -> str:
    """The IDX files in ``folder`` whose header is not IDX (torchvision's check of it fails without a
    message): two zero bytes, the type code 0x08 (uint8) and 1 to 3 dimensions."""
    damaged = []
    for path in sorted(folder.glob("*-ubyte")):
        with path.open("rb") as file:
            head = file.read(4)
        if len(head) < 4 or head[:3] != b"\x00\x00\x08" or not 1 <= head[3] <= 3:
            damaged.append(path.name)
    return f"not an IDX file: {', '.join(damaged)}" if damaged else "a file is damaged"


def _torchvision_split(dataset: VisionDataset) -> Split:
    """The raw arrays of a torchvision data set: ``(N, H, W)`` tensors or ``(N, H, W, C)`` numpy arrays."""
    x = torch.as_tensor(dataset.data)
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()
    return Split(x, torch.as_tensor(dataset.targets, dtype=torch.int64))


def _read_digits() -> FullData:
    """scikit-learn's 1797 8x8 digits (values 0..16, scaled to 0..255), 20 % held out as test set."""
    from sklearn.datasets import load_digits  # imported on use: importing scikit-learn takes a second

    digits = load_digits()
    x = torch.from_numpy(np.round(digits.images * 255 / 16).astype(np.uint8)).unsqueeze(1)
    y = torch.from_numpy(digits.target).to(torch.int64)
    n_test = math.ceil(DIGITS_TEST_FRACTION * len(y))
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(DIGITS_SEED))
    full = Split(x, y)
    train = full.subset(order[n_test:].sort().values)
    test = full.subset(order[:n_test].sort().values)
    return FullData(train, test, [str(digit) for digit in range(10)])


def _read_synthetic(cfg: SyntheticConfig) -> FullData:
    """Random class templates plus Gaussian noise; the same images on every call."""
    generator = torch.Generator().manual_seed(SYNTHETIC_SEED)
    shape = (cfg.channels, cfg.size, cfg.size)
    templates = torch.rand((cfg.classes, *shape), generator=generator) * 255

    def sample(n: int) -> Split:
        y = torch.randint(cfg.classes, (n,), generator=generator)
        noise = torch.randn((n, *shape), generator=generator) * SYNTHETIC_NOISE
        x = (templates[y] + noise).round().clamp(0, 255).to(torch.uint8)
        return Split(x, y)

    train = sample(cfg.n_train)
    test = sample(cfg.n_test)
    return FullData(train, test, [str(label) for label in range(cfg.classes)])
