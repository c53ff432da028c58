"""create_model from a config, a dict of fields or a name, and register_model for kinds of your own."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from numbers import Integral
from typing import Any

from torch import nn

from trainlab.config import ModelConfig, validate
from trainlab.errors import UserError
from trainlab.models.activations import negative_slope
from trainlab.models.init import init_weights
from trainlab.models.kinds import KINDS, builder
from trainlab.models.presets import PRESETS

Builder = Callable[[ModelConfig, tuple[int, int, int], int], nn.Module]


def register_model(kind: str) -> Callable[[Builder], Builder]:
    """Decorator that registers ``builder(cfg, input_shape, num_classes) -> nn.Module`` as ``kind``."""

    def register(build: Builder) -> Builder:
        if kind in KINDS or kind in PRESETS:
            raise ValueError(f"model kind {kind!r} is already taken")
        KINDS[kind] = build
        return build

    return register


def model_names() -> list[str]:
    """Every name ``model.kind`` accepts: the registered kinds, then the preset names."""
    return [*KINDS, *PRESETS]


def resolve_model_config(spec: ModelConfig | dict[str, Any] | str, **overrides: Any) -> ModelConfig:
    """The validated :class:`~trainlab.config.ModelConfig` of ``spec``, with ``overrides`` (model fields).

    ``spec`` is a ModelConfig, a dict of model fields, or a kind or preset name. Mistakes raise
    UserError naming the ``model.`` key.
    """
    if isinstance(spec, ModelConfig):
        if not overrides:
            return spec
        raw = spec.model_dump(exclude_unset=True)
    elif isinstance(spec, str):
        raw = {"kind": spec}
    elif isinstance(spec, dict):
        raw = copy.deepcopy(spec)
    else:
        raise UserError(
            f"a model is a name, a dict of model fields or a ModelConfig, not {type(spec).__name__}"
        )
    if "kind" in overrides:
        raw.pop("preset", None)
    return validate({**raw, **overrides}, ModelConfig, prefix="model.")


def create_model(
    spec: ModelConfig | dict[str, Any] | str,
    input_shape: Sequence[int],
    num_classes: int,
    **overrides: Any,
) -> nn.Module:
    """Build and initialise the network of ``spec`` for ``(channels, height, width)`` inputs.

    ``spec`` is a ModelConfig, a dict of model fields or a kind/preset name such as ``"vgg_cifar"``;
    ``overrides`` are model fields that replace the spec's:
    ``create_model("mlp", (1, 28, 28), 10, hidden=[64])``.
    """
    cfg = resolve_model_config(spec, **overrides)
    if len(input_shape) != 3 or not all(isinstance(n, Integral) and n > 0 for n in input_shape):
        raise UserError(
            f"input_shape must be (channels, height, width) of positive ints, got {input_shape!r}"
        )
    shape = tuple(int(n) for n in input_shape)
    if num_classes < 1:
        raise UserError(f"num_classes must be at least 1, got {num_classes}")
    model = builder(cfg.kind)(cfg, shape, num_classes)
    init_weights(model, cfg.init, negative_slope(cfg))
    return model
