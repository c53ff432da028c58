"""Model kinds by name. Reading a config needs only the names, so a builder (and torch) loads on first use."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any

# kind -> builder(cfg, input_shape, num_classes), or "module:function" until first used
KINDS: dict[str, Callable[..., Any] | str] = {
    "mlp": "trainlab.models.mlp:build_mlp",
    "cnn": "trainlab.models.cnn:build_cnn",
    "resnet": "trainlab.models.resnet:build_resnet",
    "python": "trainlab.models.external:build_python",
    "torchvision": "trainlab.models.external:build_torchvision",
}


def builder(kind: str) -> Callable[..., Any]:
    """The builder registered for ``kind``, imported when it is first asked for."""
    found = KINDS[kind]
    if isinstance(found, str):
        module, _, name = found.partition(":")
        found = KINDS[kind] = getattr(import_module(module), name)
    return found
