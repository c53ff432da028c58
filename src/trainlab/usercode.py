"""The user's own code named by a target string: ``file.py:name`` or ``package.module:name``.

A file target is a path to a Python file (relative to the study or config file that names it,
else to the working directory) and the name of a callable in it; a module target is an
importable module. :func:`load_target` imports it (a file once per process and content, under a
module name of its own), :func:`target_identity` says which code it is for run ids: the file's
name and a hash of its source, or the module's name and its distribution's version (the
module's source hash where it has none), so editing the code makes new runs.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainlab.errors import UserError

TARGET_KEYS = ("model.target", "data.target")
EXAMPLE = "'nets.py:TinyNet' or 'package.module:build'"


def split_target(target: str) -> tuple[str, str]:
    """``(where, name)`` of a target; a malformed one is a UserError."""
    where, sep, name = str(target).rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise UserError(f"target {target!r} is not FILE.py:NAME or MODULE:NAME, e.g. {EXAMPLE}")
    return where, name


def is_file_target(target: str) -> bool:
    """Whether ``target`` names a Python file (``*.py:name``) rather than a module."""
    return split_target(target)[0].endswith(".py")


def anchored(target: Any, base: Path) -> Any:
    """``target`` with a relative file path made absolute against ``base``; anything else unchanged."""
    if not isinstance(target, str) or ":" not in target or not is_file_target(target):
        return target
    where, name = split_target(target)
    path = Path(where).expanduser()
    return target if path.is_absolute() else f"{(base / path).resolve()}:{name}"


def anchor_study_targets(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """A study (or run config) dict with the relative file targets it names anchored at ``base``.

    Looks where a study can set them: ``base``'s or the config's own ``model``/``data`` sections,
    the scales, the variants' ``set``, and the values of ``vary`` and ``zip``.
    """
    sections = raw.get("base", raw)
    for part in ("model", "data"):
        if isinstance(sections, dict) and isinstance(sections.get(part), dict) and "target" in sections[part]:
            sections[part]["target"] = anchored(sections[part]["target"], base)
    dotted = [*(raw.get("scales") or {}).values(), *(v.get("set", {}) for v in raw.get("variants") or []
                                                   if isinstance(v, dict))]
    for mapping in dotted:
        for key in TARGET_KEYS:
            if isinstance(mapping, dict) and key in mapping:
                mapping[key] = anchored(mapping[key], base)
    for axis in ("vary", "zip"):
        for key in TARGET_KEYS:
            values = (raw.get(axis) or {}).get(key)
            if isinstance(values, list):
                raw[axis][key] = [anchored(v, base) for v in values]
    return raw


def target_of(value: Any) -> Any:
    """The target string of a callable given directly in Python (a class or function of an importable
    module: ``module:qualname``); strings and None unchanged. One defined in ``__main__`` or a notebook
    cannot be imported by worker processes: a UserError says to move it into a file."""
    if value is None or isinstance(value, str) or not callable(value):
        return value
    module, name = getattr(value, "__module__", None), getattr(value, "__qualname__", "")
    if not module or module == "__main__" or "<" in name:
        raise UserError(f"{getattr(value, '__name__', value)!r} is defined in a script, a notebook or a function, "
                        f"which worker processes cannot import: move it into a .py file and give its target, e.g. {EXAMPLE}")
    found = importlib.import_module(module)
    for part in name.split("."):
        found = getattr(found, part, None)
    if found is not value:
        raise UserError(f"{name!r} is not importable as {module}:{name}: give its target, e.g. {EXAMPLE}")
    return f"{module}:{name}"


def load_target(target: str) -> Callable[..., Any]:
    """The callable ``target`` names; a missing file, module or name, or a failing import, is a UserError."""
    where, name = split_target(target)
    module = _import_file(Path(where)) if where.endswith(".py") else _import_module(where)
    if not hasattr(module, name):
        found = sorted(n for n in vars(module) if not n.startswith("_") and callable(getattr(module, n)))
        raise UserError(f"target {target!r}: {where} has no {name!r}; its callables: {', '.join(found) or 'none'}")
    found = getattr(module, name)
    if not callable(found):
        raise UserError(f"target {target!r}: {name!r} is a {type(found).__name__}, not a callable")
    return found


def target_identity(target: str) -> str:
    """What identifies the code behind ``target`` in a run id (see the module docstring)."""
    where, name = split_target(target)
    if where.endswith(".py"):
        return f"{Path(where).name}:{name}@{_source_hash(Path(where))}"
    return f"{where}:{name}@{_module_version(where)}"


@functools.lru_cache(maxsize=None)
def _module_version(module: str) -> str:
    """The version of the distribution ``module`` comes from, else its source hash (asked once per process:
    a run id is computed for every planned run)."""
    try:
        return importlib.metadata.version(module.partition(".")[0])
    except importlib.metadata.PackageNotFoundError:
        origin = getattr(_import_module(module), "__file__", None)
        return _source_hash(Path(origin)) if origin else "builtin"


def call_user(target: str, function: Callable[..., Any], **kwargs: Any) -> Any:
    """``function(**kwargs)``; an exception inside the user's code becomes a one-line UserError naming ``target``."""
    try:
        return function(**kwargs)
    except UserError:
        raise
    except Exception as error:  # the user's code: any exception is theirs to fix
        raise UserError(f"target {target!r} raised {type(error).__name__}: {error}") from None


def _source_hash(path: Path) -> str:
    if not path.is_file():
        raise UserError(f"model or data file {str(path)!r} not found (a target's path is relative to the "
                        "study or config file that names it)")
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError as error:
        raise UserError(f"cannot read {str(path)!r}: {error.strerror or error}") from None


def _import_file(path: Path) -> Any:
    module_name = f"trainlab_user_{path.stem}_{_source_hash(path)}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    if str(path.parent) not in sys.path:  # the file may import its neighbours, as when run as a script
        sys.path.append(str(path.parent))
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # the user's file failed to import
        del sys.modules[module_name]
        raise UserError(f"importing {str(path)!r} raised {type(error).__name__}: {error}") from None
    return module


def _import_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        raise UserError(f"module {name!r} not found ({error}); a file target ends in .py, e.g. {EXAMPLE}") from None
    except Exception as error:  # the user's module failed to import
        raise UserError(f"importing {name!r} raised {type(error).__name__}: {error}") from None
