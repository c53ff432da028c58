"""The user's Python files that travel with a job to the worker that trains it.

A run whose ``model.target`` or ``data.target`` is a file (``nets.py:TinyNet``) needs that file,
and the modules beside it that it may import, wherever it trains. The driver reads them when it
starts the job (:func:`code_of`: the ``.py`` files of each target's folder and of the packages
in it) and sends their text with the job's tasks. A worker trains on those files where they are
when they hold the same text (one machine: the usual case), else on a copy written to trainlab's
cache (:func:`with_code`): a Ray worker on another machine, which has no such folder, or any
worker after the files were edited while the study ran, so that a run always trains the code its
id was computed from when the job started.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from trainlab.data.cache import cache_root
from trainlab.errors import UserError
from trainlab.usercode import is_file_target, split_target

SECTIONS = ("model", "data")  # the configuration sections that may name a file target
MAX_BYTES = 20_000_000  # of Python source a job may carry

Code = dict[str, dict[str, str]]  # target folder -> {path relative to it: source text}


def code_of(config: dict[str, Any]) -> Code:
    """The sources a run's file targets may import: each target folder's ``.py`` files and packages."""
    folders = sorted({str(Path(split_target(target)[0]).parent) for target in _file_targets(config).values()})
    code = {folder: _sources(Path(folder)) for folder in folders}
    size = sum(len(text) for files in code.values() for text in files.values())
    if size > MAX_BYTES:
        raise UserError(f"the folders of the model and data files ({', '.join(folders)}) hold {size:,} bytes of "
                        f"Python, more than the {MAX_BYTES:,} a job carries to its workers: put nets.py and "
                        "data.py in a folder of their own")
    return code


def with_code(config: dict[str, Any], code: Code) -> dict[str, Any]:
    """``config`` with its file targets moved to a cached copy of ``code`` where their folder lacks it."""
    moved = {folder: _copy(files) for folder, files in code.items() if not _holds(Path(folder), files)}
    if not moved:
        return config
    config = copy.deepcopy(config)
    for section, target in _file_targets(config).items():
        path, name = split_target(target)
        folder = str(Path(path).parent)
        if folder in moved:
            config[section]["target"] = f"{moved[folder] / Path(path).name}:{name}"
    return config


def _file_targets(config: dict[str, Any]) -> dict[str, str]:
    targets = {section: config[section].get("target") for section in SECTIONS}
    return {section: target for section, target in targets.items() if target and is_file_target(target)}


def _sources(folder: Path) -> dict[str, str]:
    """The folder's ``.py`` files and every ``.py`` file of its packages (sub-folders with ``__init__.py``)."""
    paths = list(folder.glob("*.py"))
    for package in folder.glob("*/__init__.py"):
        paths += [p for p in package.parent.rglob("*.py") if "__pycache__" not in p.parts]
    try:
        return {str(p.relative_to(folder)): p.read_text() for p in sorted(set(paths))}
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read the Python files of {str(folder)!r} for the workers: {error}") from None


def _holds(folder: Path, files: dict[str, str]) -> bool:
    """Whether ``folder`` has every file with the same text."""
    try:
        return all((folder / name).read_text() == text for name, text in files.items())
    except (OSError, UnicodeDecodeError):
        return False


def _copy(files: dict[str, str]) -> Path:
    """A folder of the cache holding ``files``, named by their hash; written once, atomically."""
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
    folder = cache_root() / "code" / digest
    if folder.is_dir():
        return folder
    partial = folder.with_name(f"{digest}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    for name, text in files.items():
        (partial / name).parent.mkdir(parents=True, exist_ok=True)
        (partial / name).write_text(text)
    try:
        partial.rename(folder)
    except OSError:  # another worker put the same copy in place first
        shutil.rmtree(partial, ignore_errors=True)
    return folder
