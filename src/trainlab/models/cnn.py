"""Plain convolutional network: conv blocks of ``model.blocks``, then dense layers of ``model.fc``."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from torch import nn

from trainlab.errors import UserError
from trainlab.models.activations import make_activation, pieces_per_unit
from trainlab.models.layers import Layers, batch_norm, dense_layers, output_layers

if TYPE_CHECKING:
    from trainlab.config import ConvBlock, ModelConfig

POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def block_padding(block: ConvBlock) -> int:
    """The block's padding: as given, or ``kernel // 2`` ("same" for odd kernels and stride 1)."""
    return block.kernel // 2 if block.padding is None else block.padding


def block_output_size(size: int, block: ConvBlock) -> int:
    """Spatial size after the block's convolution (no dilation) and pooling."""
    size = (size + 2 * block_padding(block) - block.kernel) // block.stride + 1
    return size // block.pool_size if block.pool else size


def conv_block(index: int, in_channels: int, block: ConvBlock, cfg: ModelConfig) -> Layers:
    """Layers ``conv{i}, bn{i}, act{i}, pool{i}, drop{i}`` of one block.

    Batch norm and dropout fall back to the model-level settings when the block leaves them unset.
    """
    pieces = pieces_per_unit(cfg.activation, cfg.maxout_pieces)
    width = block.channels * pieces
    conv = nn.Conv2d(
        in_channels, width, block.kernel, block.stride, block_padding(block), padding_mode=block.padding_mode
    )
    layers: Layers = [(f"conv{index}", conv)]
    if cfg.batch_norm if block.batch_norm is None else block.batch_norm:
        layers.append((f"bn{index}", batch_norm(width, cfg, dims=2)))
    layers.append((f"act{index}", make_activation(cfg, width)))
    if block.pool:
        layers.append((f"pool{index}", POOLS[block.pool](block.pool_size)))
    dropout = cfg.dropout if block.dropout is None else block.dropout
    if dropout > 0:
        layers.append((f"drop{index}", nn.Dropout(dropout)))
    return layers


def build_cnn(cfg: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> nn.Sequential:
    """A flat Sequential: conv blocks, ``flatten``, ``fc{j}, fc_bn{j}, fc_act{j}, fc_drop{j}``, ``out``.

    Raises UserError naming the first block whose output would have no pixels left.
    """
    channels, height, width = input_shape
    layers: Layers = []
    for index, block in enumerate(cfg.blocks, 1):
        out_height, out_width = block_output_size(height, block), block_output_size(width, block)
        if min(out_height, out_width) < 1:
            raise UserError(
                f"model.blocks[{index - 1}] (conv{index}) shrinks its {height}x{width} input to "
                f"{out_height}x{out_width}; use fewer blocks, less stride or pooling, more padding "
                "or a larger input"
            )
        layers += conv_block(index, channels, block, cfg)
        channels, height, width = block.channels, out_height, out_width
    dense, features = dense_layers(channels * height * width, cfg.fc, cfg, prefix="fc_")
    layers += [("flatten", nn.Flatten()), *dense, *output_layers(features, num_classes, cfg)]
    return nn.Sequential(OrderedDict(layers))
