"""Networks built from a ``model`` config, and a Keras-style layer table of any network.

``trainlab.config`` reads :mod:`trainlab.models.presets`, which runs this file, so it stays
light: the public names load their submodules (and torch) on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainlab.lazy import lazy_getattr

if TYPE_CHECKING:
    from trainlab.models.activations import Maxout, make_activation
    from trainlab.models.budgets import match_budget
    from trainlab.models.external import check_external_model
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
    "check_external_model": "external",
}

__all__ = [
    "Maxout",
    "ModelSummary",
    "check_external_model",
    "create_model",
    "make_activation",
    "match_budget",
    "model_names",
    "register_model",
    "resolve_model_config",
    "summary",
]


__getattr__ = lazy_getattr(__name__, globals(), _HOMES)
