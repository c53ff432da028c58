"""The real data sets in ``../shared/data`` next to the repository, for acceptance and slow tests.

Tests that need them skip, with the missing path as the reason, where they are absent.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared(relative: str) -> Path:
    """``../shared/data/<relative>``, or skip the test when it does not exist."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data not available: {path} does not exist")
    return path


def cifar10_jpeg_tree() -> Path:
    """The extracted CIFAR-10 JPEG tree, reused across test sessions while the tarball is unchanged."""
    tarball = shared("cifar10-jpeg.tar.gz")
    home = Path(tempfile.gettempdir()) / "trainlab-acceptance"
    root = home / "cifar10-jpeg"
    marker = home / "cifar10-jpeg.extracted"
    stamp = f"{tarball.stat().st_size} {tarball.stat().st_mtime_ns}"
    if not (marker.is_file() and marker.read_text() == stamp and root.is_dir()):
        home.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=home))
        with tarfile.open(tarball) as archive:
            archive.extractall(staging, filter="data")
        shutil.rmtree(root, ignore_errors=True)
        (staging / "cifar10-jpeg").rename(root)
        shutil.rmtree(staging)
        marker.write_text(stamp)
    return root
