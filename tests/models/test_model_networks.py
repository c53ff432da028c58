"""Every network kind and activation: output shape, gradients, layer names and widths."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from trainlab.config import ACTIVATIONS
from trainlab.errors import UserError
from trainlab.models import create_model

SHAPE = (3, 8, 8)
CLASSES = 5
SMALL = {
    "mlp": {"kind": "mlp", "hidden": [8, 8], "batch_norm": True, "dropout": 0.1},
    "cnn": {
        "kind": "cnn",
        "blocks": [{"channels": 4, "pool": "max"}, {"channels": 4, "stride": 2, "pool": "avg"}],
        "fc": [8],
        "batch_norm": True,
        "dropout": 0.1,
        "output_batch_norm": True,
    },
    "resnet_projection": {
        "kind": "resnet",
        "stem_channels": 4,
        "stages": [{"channels": 4}, {"channels": 8, "stride": 2, "blocks": 2}],
        "shortcut": "projection",
        "dropout": 0.1,
    },
    "resnet_identity": {
        "kind": "resnet",
        "stem_channels": 4,
        "stages": [{"channels": 4}, {"channels": 8, "stride": 2, "blocks": 2}],
        "shortcut": "identity",
    },
}
CASES = [(k, a) for k in SMALL for a in ACTIVATIONS if not (k.startswith("resnet") and a == "maxout")]


def assert_trains(model: torch.nn.Module, shape: tuple[int, int, int], classes: int, batch: int = 4) -> None:
    """Output is (batch, classes) and a backward pass gives every parameter a finite gradient."""
    torch.manual_seed(0)
    model.train()
    out = model(torch.randn(batch, *shape))
    assert out.shape == (batch, classes)
    F.cross_entropy(out, torch.randint(classes, (batch,))).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name


@pytest.mark.parametrize(("kind", "activation"), CASES)
def test_every_kind_and_activation_trains(kind: str, activation: str) -> None:
    assert_trains(create_model(SMALL[kind], SHAPE, CLASSES, activation=activation), SHAPE, CLASSES)


def test_vgg_cifar_trains() -> None:
    assert_trains(create_model("vgg_cifar", (3, 32, 32), 10), (3, 32, 32), 10)


def test_resnet_identity_on_odd_sizes() -> None:
    shape = (2, 7, 9)
    assert_trains(create_model(SMALL["resnet_identity"], shape, CLASSES), shape, CLASSES)


def test_mlp_layer_names_follow_the_spec() -> None:
    model = create_model(SMALL["mlp"], SHAPE, CLASSES, output_batch_norm=True)
    names = [name for name, _ in model.named_children()]
    assert names == [
        "flatten",
        "fc1",
        "bn1",
        "act1",
        "drop1",
        "fc2",
        "bn2",
        "act2",
        "drop2",
        "out",
        "out_bn",
    ]


def test_mlp_without_hidden_layers_is_linear() -> None:
    model = create_model("mlp", SHAPE, CLASSES, hidden=[])
    assert [name for name, _ in model.named_children()] == ["flatten", "out"]
    assert model.out.in_features == 3 * 8 * 8
    x = torch.randn(2, *SHAPE)
    assert torch.allclose(model(x), x.flatten(1) @ model.out.weight.T + model.out.bias)


def test_cnn_layer_names_and_block_fallbacks() -> None:
    blocks = [{"channels": 4, "pool": "max", "batch_norm": False, "dropout": 0.2}, {"channels": 4}]
    model = create_model("cnn", SHAPE, CLASSES, blocks=blocks, fc=[6], batch_norm=True)
    names = [name for name, _ in model.named_children()]
    assert names == [
        "conv1",
        "act1",
        "pool1",
        "drop1",
        "conv2",
        "bn2",
        "act2",
        "flatten",
        "fc1",
        "fc_bn1",
        "fc_act1",
        "out",
    ]
    assert model.drop1.p == 0.2


def test_cnn_conv_settings_and_flattened_size() -> None:
    blocks = [
        {"channels": 3, "kernel": 5, "padding_mode": "reflect"},
        {"channels": 6, "kernel": 4, "stride": 2, "padding": 0, "pool": "avg", "pool_size": 3},
    ]
    shape = (1, 11, 16)
    model = create_model("cnn", shape, CLASSES, blocks=blocks)
    conv1, conv2 = model.conv1, model.conv2
    assert (conv1.kernel_size, conv1.padding, conv1.padding_mode) == ((5, 5), (2, 2), "reflect")
    assert (conv2.kernel_size, conv2.stride, conv2.padding) == ((4, 4), (2, 2), (0, 0))
    # 11x16 -> conv1 same size -> conv2 (11-4)//2+1 = 4, (16-4)//2+1 = 7 -> avg pool 3: 1x2
    assert model.out.in_features == 6 * 1 * 2
    assert model(torch.randn(2, *shape)).shape == (2, CLASSES)


def test_cnn_block_that_shrinks_to_nothing_is_named() -> None:
    blocks = [{"channels": 2, "pool": "max"}] * 3
    with pytest.raises(UserError, match=r"model\.blocks\[2\]"):
        create_model("cnn", (1, 4, 4), CLASSES, blocks=blocks)


def test_resnet_layer_names() -> None:
    model = create_model(SMALL["resnet_projection"], SHAPE, CLASSES)
    names = [name for name, _ in model.named_children()]
    assert names == [
        "stem_conv",
        "stem_bn",
        "stem_act",
        "stage1_block1",
        "stage2_block1",
        "stage2_block2",
        "pool",
        "flatten",
        "drop",
        "out",
    ]


def test_maxout_mlp_widths() -> None:
    model = create_model(
        "mlp", SHAPE, CLASSES, hidden=[5, 7], activation="maxout", maxout_pieces=3, batch_norm=True
    )
    assert (model.fc1.out_features, model.bn1.num_features) == (15, 15)
    assert (model.fc2.in_features, model.fc2.out_features, model.bn2.num_features) == (5, 21, 21)
    assert model.out.in_features == 7
    hidden = model.act1(model.bn1(model.fc1(model.flatten(torch.randn(4, *SHAPE)))))
    assert hidden.shape == (4, 5)


def test_maxout_cnn_widths() -> None:
    blocks = [{"channels": 4}, {"channels": 6, "pool": "max"}]
    model = create_model("cnn", SHAPE, CLASSES, blocks=blocks, fc=[5], activation="maxout", batch_norm=True)
    assert (model.conv1.out_channels, model.bn1.num_features) == (8, 8)
    assert (model.conv2.in_channels, model.conv2.out_channels) == (4, 12)
    assert (model.fc1.in_features, model.fc1.out_features) == (6 * 4 * 4, 10)
    assert model.out.in_features == 5


def test_resnet_rejects_maxout() -> None:
    with pytest.raises(UserError, match="maxout"):
        create_model("resnet", SHAPE, CLASSES, activation="maxout")


@pytest.mark.parametrize("pieces", [2, 3])
def test_maxout_conv_is_the_max_of_parallel_convs(pieces: int) -> None:
    """Unit g of a maxout conv layer is the max over j of a conv with filter g * pieces + j."""
    torch.manual_seed(0)
    blocks = [{"channels": 4, "kernel": 3, "stride": 2}]
    model = create_model("cnn", SHAPE, CLASSES, blocks=blocks, activation="maxout", maxout_pieces=pieces)
    weight, bias = model.conv1.weight, model.conv1.bias
    x = torch.randn(2, *SHAPE)
    parallel = [F.conv2d(x, weight[j::pieces], bias[j::pieces], stride=2, padding=1) for j in range(pieces)]
    assert torch.allclose(model.act1(model.conv1(x)), torch.stack(parallel).amax(dim=0), atol=1e-6)


BN_MODELS = [
    (SMALL["mlp"], 3),  # bn1, bn2 and out_bn
    (SMALL["cnn"], 4),  # bn1, bn2, fc_bn1 and out_bn
    # stem_bn, 3 blocks x (bn1, bn2, shortcut.bn), out_bn
    ({**SMALL["resnet_projection"], "shortcut": "conv"}, 1 + 3 * 3 + 1),
]


@pytest.mark.parametrize(("fields", "count"), BN_MODELS)
def test_every_batch_norm_has_the_configured_momentum_and_eps(fields: dict, count: int) -> None:
    model = create_model(fields, SHAPE, CLASSES, batch_norm=True, output_batch_norm=True, bn_momentum=0.01,
                         bn_eps=1e-3)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(norms) == count
    assert all((norm.momentum, norm.eps) == (0.01, 1e-3) for norm in norms)
    default = create_model(fields, SHAPE, CLASSES, batch_norm=True, output_batch_norm=True)
    norm = next(m for m in default.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    assert (norm.momentum, norm.eps) == (0.1, 1e-5)


def test_batch_norm_momentum_is_pytorch_s_convention_and_eps_divides() -> None:
    """running = (1 - momentum) * running + momentum * batch statistic; eval divides by sqrt(var + eps)."""
    model = create_model("mlp", SHAPE, CLASSES, hidden=[6], batch_norm=True, bn_momentum=0.01, bn_eps=0.5)
    h = torch.randn(16, 6)
    model.bn1.train()
    model.bn1(h)
    assert torch.allclose(model.bn1.running_mean, 0.01 * h.mean(dim=0))
    assert torch.allclose(model.bn1.running_var, 0.99 + 0.01 * h.var(dim=0, unbiased=True))
    model.bn1.eval()
    expected = (h - model.bn1.running_mean) / torch.sqrt(model.bn1.running_var + 0.5)
    assert torch.allclose(model.bn1(h), expected, atol=1e-6)


@pytest.mark.parametrize("kind", ["mlp", "cnn", "resnet_projection"])
def test_output_softmax_turns_the_logits_into_probabilities(kind: str) -> None:
    torch.manual_seed(0)
    with_softmax = create_model(SMALL[kind], SHAPE, CLASSES, output_batch_norm=True, output_softmax=True)
    with_softmax.eval()
    torch.manual_seed(0)
    plain = create_model(SMALL[kind], SHAPE, CLASSES, output_batch_norm=True).eval()
    names = [name for name, _ in with_softmax.named_children()]
    assert names[-3:] == ["out", "out_bn", "out_softmax"]
    x = torch.randn(4, *SHAPE)
    probabilities = with_softmax(x)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(4))
    assert torch.allclose(probabilities, torch.softmax(plain(x), dim=1))
    assert torch.equal(probabilities.argmax(dim=1), plain(x).argmax(dim=1))
