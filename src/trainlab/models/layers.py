"""Dense layer stacks shared by the networks: hidden fully connected layers and the output layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import nn

from trainlab.models.activations import make_activation, pieces_per_unit

if TYPE_CHECKING:
    from trainlab.config import ModelConfig

Layers = list[tuple[str, nn.Module]]


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
            layers.append((f"{prefix}bn{i}", nn.BatchNorm1d(width * pieces)))
        layers.append((f"{prefix}act{i}", make_activation(cfg.activation, cfg.maxout_pieces)))
        if cfg.dropout > 0:
            layers.append((f"{prefix}drop{i}", nn.Dropout(cfg.dropout)))
        in_features = width
    return layers, in_features


def output_layers(in_features: int, num_classes: int, cfg: ModelConfig) -> Layers:
    """The logits layer ``out``, then ``out_bn`` (BatchNorm1d) when ``cfg.output_batch_norm``."""
    layers: Layers = [("out", nn.Linear(in_features, num_classes))]
    if cfg.output_batch_norm:
        layers.append(("out_bn", nn.BatchNorm1d(num_classes)))
    return layers
