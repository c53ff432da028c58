"""Dense layer stacks shared by the networks: hidden fully connected layers and the output layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import nn

from trainlab.models.activations import make_activation, pieces_per_unit

if TYPE_CHECKING:
    from trainlab.config import ModelConfig

Layers = list[tuple[str, nn.Module]]


def batch_norm(features: int, cfg: ModelConfig, dims: int = 1) -> nn.Module:
    """``BatchNorm1d`` (``dims`` 1) or ``BatchNorm2d`` (2) with ``cfg.bn_momentum`` and ``cfg.bn_eps``."""
    norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    return norm(features, eps=cfg.bn_eps, momentum=cfg.bn_momentum)


def dense_layers(
    in_features: int, widths: Sequence[int], cfg: ModelConfig, prefix: str = ""
) -> tuple[Layers, int]:
    """Hidden layers ``fc{i}, {prefix}bn{i}, {prefix}act{i}, {prefix}drop{i}``, and their output width.

    Batch norm and dropout follow ``cfg.batch_norm`` and ``cfg.dropout``; with maxout each
    ``fc{i}`` gives ``width * cfg.maxout_pieces`` features so that the activation gives ``width``.
    """
    pieces = pieces_per_unit(cfg.activation, cfg.maxout_pieces)
    layers: Layers = []
    for i, width in enumerate(widths, 1):
        layers.append((f"fc{i}", nn.Linear(in_features, width * pieces)))
        if cfg.batch_norm:
            layers.append((f"{prefix}bn{i}", batch_norm(width * pieces, cfg)))
        layers.append((f"{prefix}act{i}", make_activation(cfg, width * pieces)))
        if cfg.dropout > 0:
            layers.append((f"{prefix}drop{i}", nn.Dropout(cfg.dropout)))
        in_features = width
    return layers, in_features


def output_layers(in_features: int, num_classes: int, cfg: ModelConfig) -> Layers:
    """The logits layer ``out``, then ``out_bn`` (BatchNorm1d) when ``cfg.output_batch_norm``.

    ``cfg.output_softmax`` appends ``out_softmax`` (``nn.Softmax(dim=1)``): the network then
    gives probabilities, on which the cross-entropy applies a second softmax (report 001's mistake).
    """
    layers: Layers = [("out", nn.Linear(in_features, num_classes))]
    if cfg.output_batch_norm:
        layers.append(("out_bn", batch_norm(num_classes, cfg)))
    if cfg.output_softmax:
        layers.append(("out_softmax", nn.Softmax(dim=1)))
    return layers
