"""On-disk cache of decoded data sets, so slow decoding (tens of thousands of image files) happens once.

An entry is one ``torch.save`` file in :func:`cache_dir`, named by a hash of what identifies the
data set (name, root, options). It also stores a ``signature`` of the source files; when the
files change, the signature differs and the entry is rebuilt and replaced. Entries are written
to a temporary file and renamed into place, so a crash or an error never leaves a partial entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

FORMAT_VERSION = 2  # bump when the stored layout or the decoding changes


def cache_root() -> Path:
    """trainlab's cache folder: ``$TRAINLAB_CACHE``, by default ``~/.cache/trainlab``."""
    return Path(os.environ.get("TRAINLAB_CACHE") or Path.home() / ".cache" / "trainlab")


def cache_dir() -> Path:
    """Folder of cached decoded data sets: ``cache_root() / "data"``."""
    return cache_root() / "data"


def load_or_build(
    identity: dict[str, Any], signature: str, build: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """Return the cached entry for ``identity`` if its signature matches, else ``build()`` it and store it.

    ``build`` returns a dict of tensors and plain values (lists, strings); tensors of a cached
    entry are memory-mapped from the file.
    """
    blob = json.dumps({"format": FORMAT_VERSION, **identity}, sort_keys=True)
    path = cache_dir() / f"{identity['name']}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}.pt"
    cached = _read(path)
    if cached is not None and cached.get("signature") == signature:
        return cached
    entry = build()
    _write(path, {**entry, "signature": signature})
    return entry


def _read(path: Path) -> dict[str, Any] | None:
    """The stored entry, or None when absent or unreadable (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, mmap=True, weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError):
        return None


def _write(path: Path, entry: dict[str, Any]) -> None:
    """Store ``entry`` atomically: a temporary file in the same folder, then ``os.replace``.

    A cache that cannot be written (read-only folder, full disk) only costs a warning.
    """
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
        with os.fdopen(fd, "wb") as file:
            torch.save(entry, file)
        os.replace(tmp, path)
    except OSError as error:
        warnings.warn(f"cannot write the data cache {path}: {error}", stacklevel=3)
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)  # no-op after a successful replace
