"""Networks built from a ``model`` config, and a Keras-style layer table of any network.

``trainlab.config`` reads :mod:`trainlab.models.presets`, which runs this file, so it stays
light: the public names load their submodules (and torch) on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainlab.models.activations import Maxout, make_activation
    from trainlab.models.budgets import match_budget
    from trainlab.models.registry import create_model, model_names, register_model, resolve_model_config
    from trainlab.models.summarize import ModelSummary, summary

_HOMES = {
    "create_model": "registry",
    "model_names": "registry",
    "register_model": "registry",
    "resolve_model_config": "registry",
    "make_activation": "activations",
    "Maxout": "activations",
    "summary": "summarize",
    "ModelSummary": "summarize",
    "match_budget": "budgets",
}

__all__ = [
    "Maxout",
    "ModelSummary",
    "create_model",
    "make_activation",
    "match_budget",
    "model_names",
    "register_model",
    "resolve_model_config",
    "summary",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its submodule when it is first asked for."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
