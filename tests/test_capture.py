"""capture(): the one way trainlab hooks a model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainlab.capture import capture
from trainlab.errors import UserError


class Counting(nn.Module):
    """Counts its calls; returns its input."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(inplace=True), nn.Dropout(0.5), Counting())


def test_records_outputs_and_inputs_of_named_modules():
    model, x = net(), torch.randn(5, 4)
    with capture(model, ["1"]) as outputs, capture(model, ["0"], inputs=True) as inputs:
        model(x)
        model(x)
    assert len(outputs["1"]) == 2 and torch.equal(inputs["0"][0], x)
    assert torch.allclose(outputs["1"][0].detach(), torch.relu(x @ model[0].weight.T + model[0].bias))


def test_stop_ends_the_forward_pass_once_every_named_module_ran():
    model = net()
    with capture(model, ["0", "1"], stop=True) as seen:
        assert seen.run(torch.randn(5, 4)) is None
        assert seen.run(torch.randn(5, 4)) is None  # a second pass stops again
    assert model[3].calls == 0 and len(seen["1"]) == 2
    assert model(torch.randn(5, 4)).shape == (5, 3) and model[3].calls == 1  # hooks gone: runs to the end


def test_hand_on_copy_keeps_the_recorded_output_from_later_in_place_operations():
    model, x = net(), torch.randn(64, 4)
    linear = x @ model[0].weight.T + model[0].bias
    assert (linear < 0).any()
    with capture(model, ["0"]) as plain:
        model(x)
    assert torch.allclose(plain["0"][0].detach(), torch.relu(linear))  # the in-place ReLU overwrote it
    with capture(model, ["0"], hand_on_copy=True) as copied:
        model(x)
    assert torch.allclose(copied["0"][0].detach(), linear)  # the ReLU changed only the copy passed on


def test_eval_mode_and_hooks_are_restored_after_an_error():
    model = net()
    model.train()
    model[2].eval()  # a mixed state must come back as it was
    calls = []
    with pytest.raises(RuntimeError), capture(model, ["1"], eval_mode=True,
                                              on_call=lambda name, module, args, out: calls.append(name)) as seen:
        assert not model.training and not model[0].training
        seen.run(torch.randn(2, 4))
        raise RuntimeError("inside the block")
    assert model.training and model[0].training and not model[2].training
    model(torch.randn(2, 4))
    assert calls == ["1"]  # the hook was removed: the second pass called nothing
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_the_model_itself_and_unknown_names():
    model = nn.Linear(2, 2)
    with capture(model, [""]) as seen:
        model(torch.ones(1, 2))
    assert len(seen[""]) == 1
    with pytest.raises(UserError, match="unknown layer 'fc'.*valid choices: 0, 1"):
        with capture(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), ["fc"]):
            pass
