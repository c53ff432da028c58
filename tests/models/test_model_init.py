"""Weight initialisation schemes against their formulas."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainlab.config import INITS
from trainlab.errors import UserError
from trainlab.models import create_model
from trainlab.models.init import init_weights

SHAPE = (1, 32, 32)  # fc1 of the MLP below is 512 x 1024: enough samples for tight statistics
FAN_IN, FAN_OUT = 1024, 512


def fc1_weight(init: str, activation: str = "relu", **fields) -> torch.Tensor:
    torch.manual_seed(0)
    model = create_model("mlp", SHAPE, 10, hidden=[FAN_OUT], init=init, activation=activation, **fields)
    return model.fc1.weight.detach()


def test_xavier_uniform_bound_and_std() -> None:
    w = fc1_weight("xavier_uniform")
    bound = math.sqrt(6 / (FAN_IN + FAN_OUT))
    assert w.abs().max() <= bound
    assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)


def test_xavier_normal_std() -> None:
    w = fc1_weight("xavier_normal")
    assert w.mean().item() == pytest.approx(0, abs=1e-3)
    assert w.std().item() == pytest.approx(math.sqrt(2 / (FAN_IN + FAN_OUT)), rel=0.02)


def test_kaiming_normal_std() -> None:
    w = fc1_weight("kaiming_normal")
    assert w.std().item() == pytest.approx(math.sqrt(2 / FAN_IN), rel=0.02)


def test_kaiming_uniform_bound_and_std() -> None:
    w = fc1_weight("kaiming_uniform")
    bound = math.sqrt(6 / FAN_IN)
    assert w.abs().max() <= bound
    assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)


@pytest.mark.parametrize(
    ("fields", "slope"),
    [
        ({"activation": "relu"}, 0.0),
        ({"activation": "tanh"}, 0.0),
        ({"activation": "leaky_relu"}, 0.01),
        ({"activation": "leaky_relu", "leaky_slope": 0.3}, 0.3),
        ({"activation": "prelu"}, 0.25),
        ({"activation": "prelu", "prelu_init": 0.5}, 0.5),
    ],
)
def test_kaiming_normal_uses_the_gain_of_the_negative_slope(fields: dict, slope: float) -> None:
    w = fc1_weight("kaiming_normal", **fields)
    assert w.std().item() == pytest.approx(math.sqrt(2 / (1 + slope**2) / FAN_IN), rel=0.02)
    torch.manual_seed(0)
    create_model("mlp", SHAPE, 10, hidden=[FAN_OUT])  # the same draws up to fc1's initialisation
    reference = torch.empty(FAN_OUT, FAN_IN)
    nn.init.kaiming_normal_(reference, a=slope, nonlinearity="leaky_relu")
    assert torch.equal(w, reference)


def test_init_leaves_the_prelu_slopes_at_prelu_init() -> None:
    blocks = [{"channels": 4}]
    for init in INITS:
        model = create_model("cnn", (3, 8, 8), 10, blocks=blocks, fc=[8], activation="prelu", prelu_init=0.1,
                             init=init)
        slopes = [m.weight for m in model.modules() if isinstance(m, nn.PReLU)]
        assert [w.numel() for w in slopes] == [4, 8]
        assert all(torch.all(w == 0.1) for w in slopes), init


def test_orthogonal_rows_are_orthonormal() -> None:
    w = fc1_weight("orthogonal")
    assert torch.allclose(w @ w.T, torch.eye(FAN_OUT), atol=1e-4)


def test_default_keeps_pytorch_init() -> None:
    w = fc1_weight("default")
    assert w.abs().max() <= 1 / math.sqrt(FAN_IN)
    torch.manual_seed(0)
    model = create_model("mlp", SHAPE, 10, hidden=[FAN_OUT])
    assert model.fc1.bias.abs().sum() > 0


@pytest.mark.parametrize("init", [i for i in INITS if i != "default"])
def test_biases_zero_and_norm_layers_untouched(init: str) -> None:
    blocks = [{"channels": 4, "pool": "max"}, {"channels": 4}]
    model = create_model("cnn", (3, 8, 8), 10, blocks=blocks, fc=[8], batch_norm=True, init=init)
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert len(layers) == 4
    for layer in layers:
        assert torch.count_nonzero(layer.bias) == 0
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    assert len(norms) == 3
    for norm in norms:
        assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)


def test_vgg_cifar_convs_are_xavier_uniform() -> None:
    torch.manual_seed(0)
    conv = create_model("vgg_cifar", (3, 32, 32), 10).conv4
    fan_in = fan_out = 256 * 3 * 3
    bound = math.sqrt(6 / (fan_in + fan_out))
    assert conv.weight.abs().max() <= bound
    assert conv.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)


def test_unknown_init_is_a_user_error() -> None:
    with pytest.raises(UserError, match="xavier_uniform"):
        init_weights(nn.Linear(2, 2), "xavier_uniform_")
