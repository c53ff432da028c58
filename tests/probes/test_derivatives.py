"""Activation derivatives f'(z) and gradients with respect to layer outputs (dL/dh): against autograd,
and equal in a plain run and an ensemble."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import trainlab
from tests.conftest import tiny_config
from trainlab.config import load_config
from trainlab.models.activations import Maxout
from trainlab.train import train_run
from trainlab.train.ensemble import ensemble_key, train_ensemble

BINS = 20


def _rows(frame, layer, quantity):
    rows = frame[(frame.layer == layer) & (frame.quantity == quantity)]
    return rows.set_index("stat")["value"] if "stat" in rows else rows.iloc[0]


def _probe_one_step(model, x, y, **options):
    with trainlab.probe(model, bins=BINS, **options) as p:
        F.cross_entropy(model(x), y).backward()
        p.step()
    return p.frame(), p.histograms()


def _autograd_derivative(act, z):
    z = z.detach().clone().requires_grad_()
    (d,) = torch.autograd.grad(act(z).sum(), z)
    return d


def _slopes(prelu):
    with torch.no_grad():
        prelu.weight.copy_(torch.linspace(0.05, 0.4, len(prelu.weight)))
    return prelu


ACTS = {
    "sigmoid": lambda: nn.Sigmoid(),
    "tanh": lambda: nn.Tanh(),
    "relu": lambda: nn.ReLU(),
    "leaky": lambda: nn.LeakyReLU(0.3),
    "prelu": lambda: _slopes(nn.PReLU(8)),
    "maxout": lambda: Maxout(2),
    "gelu": lambda: nn.GELU(),
}


@pytest.mark.parametrize("name", ACTS)
def test_derivative_statistics_and_histograms_equal_autograd(name):
    torch.manual_seed(0)
    act = ACTS[name]()
    model = nn.Sequential(nn.Linear(6, 8), act, nn.Linear(4 if name == "maxout" else 8, 3))
    x, y = torch.randn(64, 6) * 3, torch.randint(0, 3, (64,))
    frame, hists = _probe_one_step(model, x, y, derivatives=True)
    d = _autograd_derivative(act, model[0](x)).flatten()
    stats = _rows(frame[frame.tensor == "input"], "1", "derivative")
    assert stats["mean"] == pytest.approx(d.mean().item(), abs=1e-6)
    assert stats["std"] == pytest.approx(d.std().item(), abs=1e-6)
    assert stats["min"] == pytest.approx(d.min().item(), abs=1e-7)
    assert stats["max"] == pytest.approx(d.max().item(), abs=1e-7)
    assert stats["vanishing_frac"] == pytest.approx((d.abs() < 0.01).float().mean().item())
    hist = _rows(hists[hists.tensor == "input"], "1", "derivative")
    lo, hi = min(0.0, d.min().item()), max(1.0, d.max().item())
    assert hist.edges[0] == pytest.approx(lo) and hist.edges[-1] == pytest.approx(hi)
    expected, _ = np.histogram(d.numpy(), bins=BINS, range=(lo, hi))
    assert np.abs(hist.counts - expected).sum() <= 2  # float edge cases at bin boundaries
    assert hist.counts.sum() == d.numel()


def test_derivatives_take_the_values_each_activation_allows():
    torch.manual_seed(1)
    z = torch.randn(256, 8) * 4
    values = {}
    for name in ("sigmoid", "tanh", "relu", "leaky", "prelu", "maxout"):
        act = ACTS[name]()
        model = nn.Sequential(nn.Linear(8, 8), act)  # the identity map, so that z is the input
        with torch.no_grad():
            model[0].weight.copy_(torch.eye(8))
            model[0].bias.zero_()
        with trainlab.probe(model, derivatives=True) as p:
            model(z.clone().requires_grad_()).sum().backward()
            p.step()
        frame = p.frame()
        values[name] = _rows(frame[frame.tensor == "input"], "1", "derivative")
    assert 0 <= values["sigmoid"]["min"] and values["sigmoid"]["max"] <= 0.25
    assert 0 <= values["tanh"]["min"] and values["tanh"]["max"] <= 1
    for name, low in [("relu", 0.0), ("leaky", 0.3), ("maxout", 0.0)]:  # only {low, 1}
        stats = values[name]
        assert stats["min"] == pytest.approx(low) and stats["max"] == 1.0
        share_of_ones = (stats["mean"] - low) / (1 - low)
        assert stats["std"] ** 2 == pytest.approx(share_of_ones * (1 - share_of_ones) * (1 - low) ** 2, rel=1e-2)
    assert values["maxout"]["mean"] == pytest.approx(0.5)  # one winner of each pair
    assert values["prelu"]["min"] == pytest.approx(0.05) and values["prelu"]["max"] == 1.0  # the learned slopes


def test_output_gradients_equal_autograd_of_the_loss_with_respect_to_each_output():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Tanh(), nn.Flatten(), nn.Linear(12, 5))
    x, y = torch.randn(16, 1, 4, 4), torch.randint(0, 5, (16,))
    frame, hists = _probe_one_step(model, x, y, output_grads=True)
    outputs, h = {}, x
    for name, module in model.named_children():
        h = module(h)
        outputs[name] = h
    watched = ["0", "1", "2", "4"]  # layers with parameters, and activations
    grads = torch.autograd.grad(F.cross_entropy(h, y), [outputs[n] for n in watched])
    assert set(frame.loc[frame.quantity == "output_grad", "layer"]) == set(watched)
    for name, grad in zip(watched, grads):
        stats = _rows(frame[frame.tensor == "output"], name, "output_grad")
        assert stats["norm"] == pytest.approx(grad.norm().item(), rel=1e-5)
        assert stats["mean"] == pytest.approx(grad.mean().item(), abs=1e-8)
        assert stats["std"] == pytest.approx(grad.std().item(), rel=1e-5)
        assert stats["abs_mean"] == pytest.approx(grad.abs().mean().item(), rel=1e-5)
        assert stats["max_abs"] == pytest.approx(grad.abs().max().item(), rel=1e-5)
        hist = _rows(hists[hists.tensor == "output"], name, "output_grad")
        assert hist.counts.sum() == grad.numel()
        assert hist.edges[0] == pytest.approx(grad.min().item()) and hist.edges[-1] == pytest.approx(grad.max().item())


def test_nothing_extra_is_recorded_unless_asked():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    frame, hists = _probe_one_step(model, torch.randn(8, 4), torch.randint(0, 2, (8,)))
    assert not {"derivative", "output_grad"} & (set(frame.quantity) | set(hists.quantity))


def _config(seed, activation):
    raw = tiny_config(seed=seed, epochs=1, optimizer="sgd", momentum=0.9)
    raw["model"] = {"kind": "cnn", "blocks": [{"channels": 4, "pool": "max"}], "fc": [8], "activation": activation}
    raw["probes"] = {"per_epoch": 2, "bins": 8, "derivatives": True, "output_grads": True}
    return load_config(raw)


def test_a_plain_run_and_an_ensemble_record_the_same_derivatives_and_output_gradients():
    configs = [_config(seed, "prelu") for seed in (0, 1)]  # prelu: a learned slope, one per model
    assert ensemble_key(configs[0]) == ensemble_key(configs[1]) is not None
    key = ["step", "layer", "tensor", "quantity", "stat"]
    for cfg, ours in zip(configs, train_ensemble(configs)):
        reference = train_run(cfg)
        new = ["derivative", "output_grad"]
        a, b = (r.probes[r.probes.quantity.isin(new)] for r in (ours, reference))
        merged = a.merge(b, on=key, suffixes=("", "_ref"), how="outer", indicator=True)
        assert (merged["_merge"] == "both").all() and len(merged) > 0
        assert set(merged.quantity) == set(new)
        np.testing.assert_allclose(merged["value"], merged["value_ref"], rtol=1e-3, atol=1e-6)
        ha, hb = (r.probe_histograms[r.probe_histograms.quantity.isin(new)] for r in (ours, reference))
        hist = ha.merge(hb, on=key[:-1], suffixes=("", "_ref"))
        assert len(hist) == len(ha) == len(hb)
        for row in hist.itertuples():
            np.testing.assert_allclose(row.edges, row.edges_ref, rtol=1e-3, atol=1e-6)
            assert np.abs(row.counts - row.counts_ref).sum() <= 2
