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


def valid_resnet(shortcut: str, shape: tuple[int, int, int], stages: list[dict], **fields) -> nn.Module:
    torch.manual_seed(0)
    return create_model(
        "resnet", shape, 5, stem_channels=4, stages=stages, shortcut=shortcut, block_padding="valid", **fields
    ).eval()


def unpadded_size(size: int, stride: int) -> int:
    """Two unpadded 3x3 convs, the first with ``stride``: floor((size - 3) / stride) + 1, then 2 fewer."""
    return (size - 3) // stride + 1 - 2


@pytest.mark.parametrize("shortcut", ["identity", "projection", "conv"])
@pytest.mark.parametrize("shape", [(3, 16, 16), (3, 17, 20)])
def test_valid_padding_block_shapes_and_training(shortcut: str, shape: tuple[int, int, int]) -> None:
    stages = [{"channels": 4}, {"channels": 8, "stride": 2}]
    model = valid_resnet(shortcut, shape, stages).train()
    seen = {}
    for name in ("stem_act", "stage1_block1", "stage2_block1"):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: seen.update({name: o.shape}))
    x = torch.randn(4, *shape)
    out = model(x)
    height, width = shape[1:]
    assert seen["stem_act"][2:] == (height, width)  # the stem stays padded
    for name, stride in (("stage1_block1", 1), ("stage2_block1", 2)):
        height, width = unpadded_size(height, stride), unpadded_size(width, stride)
        assert seen[name][2:] == (height, width), name
    F.cross_entropy(out, torch.randint(5, (4,))).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def centre_tap(conv: nn.Conv2d) -> None:
    """Weights that pass each input channel's centre pixel to the same output channel."""
    with torch.no_grad():
        conv.weight.zero_()
        centre = conv.kernel_size[0] // 2
        for c in range(min(conv.in_channels, conv.out_channels)):
            conv.weight[c, c, centre, centre] = 1


@pytest.mark.parametrize("shortcut", ["identity", "projection", "conv"])
@pytest.mark.parametrize(("stride", "size"), [(1, 9), (1, 10), (2, 11), (2, 12), (3, 14)])
def test_valid_shortcut_reads_the_pixels_the_branch_is_centred_on(
    shortcut: str, stride: int, size: int
) -> None:
    """With centre-tap convs and identity activations, branch and shortcut both pass x at its centres."""
    stages = [{"channels": 4, "stride": stride}]
    model = valid_resnet(shortcut, (4, size, size), stages, activation="identity", bn_eps=1e-12)
    block = model.stage1_block1
    for conv in (m for m in block.modules() if isinstance(m, nn.Conv2d)):
        centre_tap(conv)
    x = torch.randn(2, 4, size, size)
    n = unpadded_size(size, stride)
    # conv2's pixel k covers conv1's k..k+2, centred on k+1, which is centred on input stride*(k+1)+1
    centres = torch.tensor([stride * (k + 1) + 1 for k in range(n)])
    expected = x[:, :, centres][:, :, :, centres]
    assert torch.allclose(block(x), 2 * expected, atol=1e-5)


def test_valid_identity_shortcut_of_stride_1_is_the_centre_crop() -> None:
    block = valid_resnet("identity", (4, 10, 10), [{"channels": 4}]).stage1_block1
    x = torch.randn(2, 4, 10, 10)
    branch = block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x)))))
    assert torch.allclose(block(x), F.relu(branch + x[:, :, 2:-2, 2:-2]))


def test_conv_shortcut_is_a_3x3_conv_and_batch_norm() -> None:
    conv, identity = resnet("conv"), resnet("identity")
    extra, channels = 0, 4
    for stage in STAGES:
        for _ in range(stage.get("blocks", 1)):
            extra += 9 * channels * stage["channels"] + 2 * stage["channels"]  # 3x3 conv without bias + BN
            channels = stage["channels"]
    assert n_params(conv) - n_params(identity) == extra
    shortcut = conv.stage2_block1.shortcut.conv
    assert (shortcut.kernel_size, shortcut.stride, shortcut.padding) == ((3, 3), (2, 2), (1, 1))
    valid = valid_resnet("conv", (3, 16, 16), [{"channels": 8, "stride": 2}]).stage1_block1.shortcut.conv
    assert (valid.kernel_size, valid.stride, valid.padding) == ((3, 3), (2, 2), (0, 0))
    x = torch.randn(2, 4, 8, 8)
    block = conv.stage2_block1
    branch = block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x)))))
    direct = block.shortcut.bn(F.conv2d(x, shortcut.weight, stride=2, padding=1))
    assert torch.allclose(block(x), F.relu(branch + direct), atol=1e-6)


def test_valid_padding_that_shrinks_to_nothing_names_the_stage() -> None:
    stages = [{"channels": 4}, {"channels": 8, "stride": 2, "blocks": 2}]
    with pytest.raises(UserError, match=r"model\.stages\[1\] \(stage2_block2\).*no pixels of its 3x3 input"):
        valid_resnet("projection", (3, 16, 16), stages)
    with pytest.raises(UserError, match=r"model\.stages\[0\] \(stage1_block1\).*block_padding: same"):
        valid_resnet("projection", (3, 4, 16), stages)
