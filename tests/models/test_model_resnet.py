"""ResNet shortcuts and the residual sum, checked against direct computations."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from trainlab.errors import UserError
from trainlab.models import create_model

SHAPE = (3, 8, 8)
STAGES = [{"channels": 4}, {"channels": 8, "stride": 2, "blocks": 2}]


def resnet(shortcut: str, **fields) -> nn.Module:
    torch.manual_seed(0)
    return create_model(
        "resnet", SHAPE, 5, stem_channels=4, stages=STAGES, shortcut=shortcut, **fields
    ).eval()


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_identity_shortcut_subsamples_and_zero_pads() -> None:
    block = resnet("identity").stage2_block1
    assert n_params(block.shortcut) == 0
    assert n_params(block) == sum(n_params(m) for m in (block.conv1, block.bn1, block.conv2, block.bn2))
    x = torch.randn(2, 4, 8, 8)
    expected = torch.zeros(2, 8, 4, 4)
    expected[:, :4] = x[:, :, ::2, ::2]
    assert torch.equal(block.shortcut(x), expected)


def test_projection_adds_a_1x1_conv_and_batch_norm_per_block() -> None:
    projection, identity = resnet("projection"), resnet("identity")
    extra, channels = 0, 4
    for stage in STAGES:
        for _ in range(stage.get("blocks", 1)):
            extra += channels * stage["channels"] + 2 * stage["channels"]  # 1x1 conv without bias + BN
            channels = stage["channels"]
    assert n_params(projection) - n_params(identity) == extra
    conv = projection.stage2_block1.shortcut.conv
    assert (conv.kernel_size, conv.stride) == ((1, 1), (2, 2))


@pytest.mark.parametrize("shortcut", ["identity", "projection"])
def test_block_output_is_activation_of_branch_plus_shortcut(shortcut: str) -> None:
    block = resnet(shortcut).stage2_block1
    x = torch.randn(2, 4, 8, 8)
    branch = block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x)))))
    assert torch.allclose(block(x), F.relu(branch + block.shortcut(x)))


@pytest.mark.parametrize("name", ["stage1_block1", "stage2_block1"])
def test_block_with_zero_second_conv_passes_the_shortcut(name: str) -> None:
    block = getattr(resnet("identity"), name)
    nn.init.zeros_(block.conv2.weight)
    x = torch.randn(2, block.conv1.in_channels, 8, 8)
    stride = block.conv1.stride[0]
    expected = torch.zeros(2, block.conv2.out_channels, 8 // stride, 8 // stride)
    expected[:, : x.shape[1]] = x[:, :, ::stride, ::stride]
    assert torch.allclose(block(x), F.relu(expected))


def test_identity_shortcut_cannot_reduce_channels() -> None:
    with pytest.raises(UserError, match=r"model\.stages\[1\]"):
        create_model(
            "resnet",
            SHAPE,
            5,
            stem_channels=4,
            stages=[{"channels": 8}, {"channels": 4}],
            shortcut="identity",
        )
