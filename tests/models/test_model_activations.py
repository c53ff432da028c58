"""Activations by name, leaky_relu's slope, PReLU against torch.nn.PReLU, and the Maxout unit."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from trainlab.config import ACTIVATIONS, ModelConfig
from trainlab.errors import UserError
from trainlab.models import Maxout, create_model, make_activation

FUNCTIONS = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": F.relu,
    "leaky_relu": lambda x: torch.where(x > 0, x, 0.01 * x),
    "elu": F.elu,
    "selu": F.selu,
    "gelu": F.gelu,
    "softplus": F.softplus,
    "identity": lambda x: x,
}


def activation(name: str, channels: int = 1, **fields) -> nn.Module:
    return make_activation(ModelConfig(activation=name, **fields), channels)


def test_functions_cover_the_config_names() -> None:
    assert set(FUNCTIONS) | {"maxout", "prelu"} == set(ACTIVATIONS)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_activation_computes_its_function(name: str) -> None:
    x = torch.linspace(-4, 4, 81)
    assert torch.allclose(activation(name)(x), FUNCTIONS[name](x))


@pytest.mark.parametrize("slope", [0.3, 0.0, 1.5])
def test_leaky_relu_uses_the_configured_slope(slope: float) -> None:
    x = torch.linspace(-4, 4, 81)
    assert torch.equal(activation("leaky_relu", leaky_slope=slope)(x), F.leaky_relu(x, slope))
    model = create_model("cnn", (1, 6, 6), 3, blocks=[{"channels": 2}], fc=[4], activation="leaky_relu",
                         leaky_slope=slope)
    h = torch.randn(5, 2, 6, 6)
    assert torch.equal(model.act1(h), F.leaky_relu(h, slope))
    assert torch.equal(model.fc_act1(h.flatten(1)), F.leaky_relu(h.flatten(1), slope))


def direct_prelu(x: torch.Tensor, slopes: torch.Tensor) -> torch.Tensor:
    """max(0, x) + a * min(0, x), with one slope per channel (dim 1) or one for all."""
    a = slopes.reshape(1, -1, *[1] * (x.dim() - 2)) if slopes.numel() > 1 else slopes
    return x.clamp(min=0) + a * x.clamp(max=0)


@pytest.mark.parametrize("shape", [(4, 6), (2, 6, 3, 5)])
@pytest.mark.parametrize("mode", ["channel", "one"])
def test_prelu_is_the_formula_and_torch_prelu(shape: tuple[int, ...], mode: str) -> None:
    torch.manual_seed(0)
    module = activation("prelu", shape[1], prelu=mode, prelu_init=0.1)
    assert isinstance(module, nn.PReLU)
    count = shape[1] if mode == "channel" else 1
    assert module.weight.shape == (count,) and torch.all(module.weight == 0.1)
    with torch.no_grad():
        module.weight.copy_(torch.randn(count))
    reference = nn.PReLU(count)
    reference.load_state_dict(module.state_dict())
    x = torch.randn(*shape)
    assert torch.allclose(module(x), direct_prelu(x, module.weight.detach()))
    assert torch.equal(module(x), reference(x))


def test_prelu_slopes_learn_with_the_gradient_of_the_formula() -> None:
    torch.manual_seed(0)
    module = activation("prelu", 3, prelu_init=0.25)
    x = torch.randn(8, 3, 4, 4)
    module(x).sum().backward()
    assert torch.allclose(module.weight.grad, x.clamp(max=0).sum(dim=(0, 2, 3)))


def direct_maxout(x: torch.Tensor, pieces: int) -> torch.Tensor:
    """Channel g of the output is the max of input channels g*pieces ... g*pieces + pieces - 1."""
    groups = [
        torch.stack([x[:, g * pieces + j] for j in range(pieces)]).max(dim=0).values
        for g in range(x.shape[1] // pieces)
    ]
    return torch.stack(groups, dim=1)


@pytest.mark.parametrize("shape", [(4, 12), (2, 12, 3, 5)])
@pytest.mark.parametrize("pieces", [2, 3, 4])
def test_maxout_is_max_over_consecutive_channel_groups(shape: tuple[int, ...], pieces: int) -> None:
    x = torch.randn(*shape)
    out = activation("maxout", maxout_pieces=pieces)(x)
    assert isinstance(activation("maxout", maxout_pieces=pieces), Maxout)
    assert out.shape == (shape[0], shape[1] // pieces, *shape[2:])
    assert torch.equal(out, direct_maxout(x, pieces))


def test_maxout_rejects_indivisible_channels() -> None:
    with pytest.raises(ValueError, match="divisible"):
        Maxout(3)(torch.randn(2, 7))


def test_unknown_activation_names_the_closest() -> None:
    with pytest.raises(UserError, match="relu"):
        make_activation(ModelConfig.model_construct(activation="relux"), 1)
