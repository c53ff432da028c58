"""The on-disk cache of decoded image-folder trees."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from trainlab.config import DataConfig
from trainlab.data import load_data


def folder_config(root: Path, **fields) -> DataConfig:
    return DataConfig(name="imagefolder", root=str(root), val_size=0, **fields)


def files_in(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def assert_same(first, second) -> None:
    for a, b in ((first.train, second.train), (first.test, second.test)):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert first.classes == second.classes
    assert torch.equal(first.mean, second.mean) and torch.equal(first.std, second.std)


def test_second_load_comes_from_the_cache(rgb_tree: Path, data_cache: Path, write_image: Callable) -> None:
    first = load_data(folder_config(rgb_tree))
    assert len(files_in(data_cache)) == 1
    # Rewriting a file in place keeps the folder listing, so the cache still answers with the old
    # pixels: proof that the second load did not decode the files again.
    write_image(rgb_tree / "train/cat/0.png", np.zeros((5, 6, 3), dtype=np.uint8))
    second = load_data(folder_config(rgb_tree))
    assert_same(first, second)
    assert first.train.x[0].any()


def test_adding_a_file_invalidates_the_cache(rgb_tree: Path, data_cache: Path, write_image: Callable) -> None:
    first = load_data(folder_config(rgb_tree))
    added = np.full((5, 6, 3), 7, dtype=np.uint8)
    write_image(rgb_tree / "train/cat/9.png", added)
    second = load_data(folder_config(rgb_tree))
    assert len(second.train) == len(first.train) + 1
    assert torch.equal(second.train.x[-1], torch.from_numpy(added).permute(2, 0, 1))
    assert len(files_in(data_cache)) == 1  # the stale entry was replaced, not kept beside


def test_options_get_their_own_entries(rgb_tree: Path, data_cache: Path) -> None:
    colour = load_data(folder_config(rgb_tree))
    grey = load_data(folder_config(rgb_tree, grayscale=True))
    assert colour.input_shape == (3, 5, 6) and grey.input_shape == (1, 5, 6)
    assert len(files_in(data_cache)) == 2


def test_unreadable_cache_entry_is_rebuilt(rgb_tree: Path, data_cache: Path) -> None:
    first = load_data(folder_config(rgb_tree))
    (entry,) = files_in(data_cache)
    entry.write_bytes(b"garbage")
    assert_same(first, load_data(folder_config(rgb_tree)))
    assert entry.stat().st_size > len(b"garbage")


def test_cache_false_writes_nothing(rgb_tree: Path, data_cache: Path) -> None:
    cached = load_data(folder_config(rgb_tree))
    for path in files_in(data_cache):
        path.unlink()
    uncached = load_data(folder_config(rgb_tree, cache=False))
    assert_same(cached, uncached)
    assert files_in(data_cache) == []


def test_unwritable_cache_only_warns(rgb_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("TRAINLAB_CACHE", str(blocker))
    with pytest.warns(UserWarning, match="cannot write the data cache"):
        data = load_data(folder_config(rgb_tree))
    assert len(data.train) == 6
