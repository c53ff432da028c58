"""Fixtures of the data tests: an isolated cache folder and small image-folder trees."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def data_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point trainlab's cache at a fresh folder so tests never touch the user's cache."""
    path = tmp_path / "cache"
    monkeypatch.setenv("TRAINLAB_CACHE", str(path))
    return path


@pytest.fixture
def write_image() -> Callable[[Path, np.ndarray], Path]:
    """Save a uint8 ``(H, W)`` or ``(H, W, 3)`` array (bool: 1-bit) as an image file; return its path."""

    def write(path: Path, pixels: np.ndarray) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
        return path

    return write


@pytest.fixture
def rgb_tree(tmp_path: Path, write_image: Callable) -> Path:
    """A lossless RGB tree: classes ``cat`` and ``dog``, 3 train and 2 test PNGs each, 5x6 pixels."""
    rng = np.random.default_rng(0)
    root = tmp_path / "tree"
    for split, count in (("train", 3), ("test", 2)):
        for name in ("cat", "dog"):
            for i in range(count):
                write_image(root / split / name / f"{i}.png", rng.integers(0, 256, (5, 6, 3), dtype=np.uint8))
    return root
