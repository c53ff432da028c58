"""Multi-layer perceptron: ``flatten``, the hidden layers of ``model.hidden``, ``out``."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import TYPE_CHECKING

from torch import nn

from trainlab.models.layers import dense_layers, output_layers

if TYPE_CHECKING:
    from trainlab.config import ModelConfig


def build_mlp(cfg: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> nn.Sequential:
    """A flat Sequential ``flatten, fc1, bn1, act1, drop1, ..., out, out_bn, out_softmax``.

    No hidden layers: a linear model.
    """
    hidden, width = dense_layers(math.prod(input_shape), cfg.hidden, cfg)
    layers = [("flatten", nn.Flatten()), *hidden, *output_layers(width, num_classes, cfg)]
    return nn.Sequential(OrderedDict(layers))
