"""Activations by name and the Maxout unit."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from trainlab.config import ACTIVATIONS
from trainlab.errors import UserError
from trainlab.models import Maxout, make_activation

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


def test_functions_cover_the_config_names() -> None:
    assert set(FUNCTIONS) | {"maxout"} == set(ACTIVATIONS)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_activation_computes_its_function(name: str) -> None:
    x = torch.linspace(-4, 4, 81)
    assert torch.allclose(make_activation(name)(x), FUNCTIONS[name](x))


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
    out = make_activation("maxout", pieces)(x)
    assert isinstance(make_activation("maxout", pieces), Maxout)
    assert out.shape == (shape[0], shape[1] // pieces, *shape[2:])
    assert torch.equal(out, direct_maxout(x, pieces))


def test_maxout_rejects_indivisible_channels() -> None:
    with pytest.raises(ValueError, match="divisible"):
        Maxout(3)(torch.randn(2, 7))


def test_unknown_activation_names_the_closest() -> None:
    with pytest.raises(UserError, match="relu"):
        make_activation("relux")
