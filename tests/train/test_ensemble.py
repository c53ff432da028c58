"""Vectorised ensembles: each model's numbers equal sequential training; optimisers equal torch.optim."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.func import vmap

from tests.conftest import DEVICES, tiny_config
from trainlab.config import TrainConfig, load_config
from trainlab.train import train_run
from trainlab.data import load_data
from trainlab.train.ensemble import (
    CPU_MAX_FLOPS, MixedResume, _StackedDropout, ensemble_groups, ensemble_key, ensemble_pays, train_ensemble,
    training_flops,
)
from trainlab.train.optim import make_optimizer
from trainlab.train.stacked_optim import StackedOptimizer

NUMBERS = ["train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "lr"]


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))


@pytest.mark.parametrize("optimizer, options", [
    ("sgd", [{"momentum": 0.0}, {"momentum": 0.9, "weight_decay": 1e-2}, {"momentum": 0.5}]),
    ("sgd", [{"momentum": 0.9, "nesterov": True}, {"momentum": 0.3, "nesterov": True, "weight_decay": 0.1}]),
    ("adam", [{}, {"weight_decay": 1e-2}, {"lr": 0.05}]),
    ("adamw", [{"weight_decay": 0.1}, {"weight_decay": 0.0, "lr": 3e-3}]),
    ("rmsprop", [{"momentum": 0.0}, {"momentum": 0.9, "weight_decay": 1e-3}]),
    # each model its own constants: Keras' (rho 0.9, eps 1e-7) next to PyTorch's defaults
    ("rmsprop", [{"rho": 0.9, "eps": 1e-7}, {"alpha": 0.5, "eps": 1e-3, "momentum": 0.5}, {}]),
    ("adam", [{"betas": (0.5, 0.9), "eps": 1e-7}, {},
              {"betas": (0.0, 0.5), "eps": 1e-2, "weight_decay": 0.1}]),
    ("adamw", [{"betas": (0.8, 0.99), "eps": 1e-4, "weight_decay": 0.1}, {"eps": 1e-7}]),
])
def test_stacked_optimizer_equals_torch_optim_per_model(optimizer, options):
    configs = [TrainConfig(optimizer=optimizer, lr=o.pop("lr", 0.01), **o) for o in options]
    models = [_net(i) for i in range(len(configs))]
    torch_optimizers = [make_optimizer(m, c) for m, c in zip(models, configs)]
    stacked = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]).clone()
               for n, _ in models[0].named_parameters()}
    ours = StackedOptimizer(stacked, configs)
    generator = torch.Generator().manual_seed(0)
    for _ in range(6):
        grads = {n: torch.randn(p.shape, generator=generator) for n, p in stacked.items()}
        for m, (model, opt) in enumerate(zip(models, torch_optimizers)):
            for n, p in model.named_parameters():
                p.grad = grads[n][m].clone()
            opt.step()
        ours.step(grads)
    for m, model in enumerate(models):
        for n, p in model.named_parameters():
            torch.testing.assert_close(stacked[n][m], p.detach(), rtol=1e-5, atol=1e-6)

    # the state converts to torch.optim's format and back: a resumed torch optimizer continues identically
    for m, (model, cfg) in enumerate(zip(models, configs)):
        fresh = make_optimizer(model, cfg)
        fresh.load_state_dict(ours.torch_state_dict(m, model, cfg))
        expected = torch_optimizers[m].state_dict()["state"]
        for index, state in fresh.state_dict()["state"].items():
            assert state.keys() == expected[index].keys()
            for key, value in state.items():
                torch.testing.assert_close(value, expected[index][key], rtol=1e-5, atol=1e-6)
    again = StackedOptimizer({n: p.clone() for n, p in stacked.items()}, configs)
    for m, (model, cfg) in enumerate(zip(models, configs)):
        again.load_torch_state_dict(m, model, cfg, torch_optimizers[m].state_dict())
    for key, tensors in ours.state.items():
        for m, cfg in enumerate(configs):
            if key == "momentum_buffer" and cfg.momentum == 0:
                continue  # unused without momentum, and torch.optim keeps none
            for n in tensors:
                torch.testing.assert_close(again.state[key][n][m], tensors[n][m], rtol=1e-5, atol=1e-6)
    if optimizer != "sgd":  # SGD counts no steps
        torch.testing.assert_close(again.steps, ours.steps)


def _cnn_config(seed: int, lr: float, **train) -> dict:
    return {
        "data": {"name": "synthetic", "val_size": 48, "augment": ["hflip", {"name": "crop", "padding": 1}],
                 "synthetic": {"n_train": 240, "n_test": 64, "channels": 2, "size": 8, "classes": 3}},
        "model": {"kind": "cnn", "blocks": [{"channels": 4, "pool": "max"}, {"channels": 6}], "fc": [8],
                  "batch_norm": True, "activation": "tanh"},
        "train": {"epochs": 3, "batch_size": 16, "seed": seed, "lr": lr, "optimizer": "sgd",
                  "momentum": 0.9, "clip_grad": 1.0, "schedule": "step", "step_size": 2, **train},
        "probes": {"per_epoch": 2, "bins": 8},
    }


def _assert_same_run(ours, reference, rtol=2e-4, atol=2e-5):
    assert ours.status == reference.status and ours.run_id == reference.run_id
    pd.testing.assert_frame_equal(ours.history[NUMBERS], reference.history[NUMBERS], rtol=rtol, atol=atol)
    for (name, a), (_, b) in zip(ours.model.state_dict().items(), reference.model.state_dict().items()):
        torch.testing.assert_close(a.float(), b.float(), rtol=rtol, atol=atol, msg=name)
    key = ["step", "layer", "tensor", "quantity", "stat"]
    merged = ours.probes.merge(reference.probes, on=key, suffixes=("", "_ref"), how="outer", indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"].head()
    np.testing.assert_allclose(merged["value"], merged["value_ref"], rtol=1e-3, atol=1e-5)
    for quantity in set(ours.probes["quantity"]):  # the same forward order of layers, whichever path probed
        ours_layers, reference_layers = (list(dict.fromkeys(frame.loc[frame["quantity"] == quantity, "layer"]))
                                         for frame in (ours.probes, reference.probes))
        assert ours_layers == reference_layers, quantity
    hist_key = ["step", "layer", "tensor", "quantity"]
    assert sorted(map(tuple, ours.probe_histograms[hist_key].values)) == \
        sorted(map(tuple, reference.probe_histograms[hist_key].values))


@pytest.mark.parametrize("device", DEVICES)
def test_ensemble_equals_sequential_runs_one_by_one(tmp_path, device):
    configs = [load_config(_cnn_config(seed, lr, device=device)) for seed, lr in [(0, 0.05), (1, 0.05), (2, 0.02)]]
    assert len({ensemble_key(c) for c in configs}) == 1
    results = train_ensemble(configs, run_dirs=[tmp_path / str(i) for i in range(3)])
    for cfg, ours in zip(configs, results):
        _assert_same_run(ours, train_run(cfg))


def test_an_interrupted_ensemble_resumes_and_its_checkpoints_resume_plain_runs(tmp_path):
    configs = []
    for seed, lr in [(0, 0.01), (1, 0.003)]:
        raw = tiny_config(seed=seed, lr=lr, optimizer="adam", epochs=4) | {"probes": {"per_epoch": 1}}
        raw["model"]["dropout"] = 0.0  # dropout masks differ from sequential training's
        configs.append(load_config(raw))
    dirs = [tmp_path / "a", tmp_path / "b"]

    def crash(m, row):  # killed after model 0 saved epoch 2, before model 1 did
        if row["epoch"] == 2 and m == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_ensemble(configs, run_dirs=dirs, on_epoch=crash)
    seen: list[tuple[int, int]] = []
    resumed = train_ensemble(configs, run_dirs=dirs, on_epoch=lambda m, row: seen.append((m, row["epoch"])))
    assert sorted(seen) == [(m, e) for m in range(2) for e in range(1, 5)]  # one replayed, three trained, per run
    uninterrupted = train_ensemble(configs)
    for ours, whole, cfg in zip(resumed, uninterrupted, configs):
        pd.testing.assert_frame_equal(ours.history[NUMBERS], whole.history[NUMBERS], check_exact=True)
        _assert_same_run(ours, train_run(cfg))

    # an ensemble's checkpoint resumes as a plain run
    crashed = [tmp_path / "c", tmp_path / "d"]
    with pytest.raises(KeyboardInterrupt):
        train_ensemble(configs, run_dirs=crashed, on_epoch=crash)
    _assert_same_run(train_run(configs[1], run_dir=crashed[1]), resumed[1])
    with pytest.raises(MixedResume):  # run 0 is at epoch 2, run 1 at epoch 4 with no checkpoint of epoch 2 kept
        train_ensemble(configs, run_dirs=crashed)


def test_dropout_probability_per_model():
    dropout = _StackedDropout().train()
    p = torch.tensor([0.1, 0.5, 0.8])
    x = torch.ones(3, 20000)
    out = vmap(lambda p_, x_: torch.func.functional_call(dropout, {"p": p_}, (x_,)), randomness="different")(p, x)
    dropped = (out == 0).float().mean(1)
    torch.testing.assert_close(dropped, p, atol=0.015, rtol=0)
    torch.testing.assert_close(out.mean(1), torch.ones(3), atol=0.05, rtol=0)  # kept units scaled by 1 / (1 - p)
    # in training, each model drops with its own p: at 0.9 the training loss stays far above 0.05's
    configs = [load_config(tiny_config(seed=seed) | {"model": {"kind": "mlp", "hidden": [16], "dropout": p}})
               for seed, p in [(0, 0.05), (1, 0.9), (2, 0.05), (3, 0.9)]]
    losses = [r.final["train_loss"] for r in train_ensemble(configs)]
    assert min(losses[1], losses[3]) > 10 * max(losses[0], losses[2])


def test_which_runs_share_an_ensemble():
    base = tiny_config()
    configs = [load_config(c) for c in [
        base,
        tiny_config(seed=1, lr=0.1, weight_decay=1e-3, momentum=0.5, optimizer="sgd") | {},
        tiny_config(seed=2) | {"model": {"kind": "mlp", "hidden": [32, 32], "dropout": 0.5}},  # p differs: shares
        tiny_config(seed=3) | {"model": {"kind": "mlp", "hidden": [32, 32], "dropout": 0.0}},  # no dropout layer
        tiny_config(seed=4) | {"model": {"kind": "mlp", "hidden": [32, 32], "dropout": 0.2, "activation": "tanh"}},
        tiny_config(seed=5, early_stopping=2),
        tiny_config(seed=6),
    ]]
    assert ensemble_key(configs[0]) != ensemble_key(configs[1])  # the optimiser differs
    assert ensemble_key(configs[5]) is None
    assert ensemble_groups(configs) == [[0, 2, 6], [1], [3], [4], [5]]
    assert ensemble_groups(configs, max_models=2) == [[0, 2], [1], [3], [4], [5], [6]]


def test_training_flops_count_the_matmuls_and_decide_where_an_ensemble_pays():
    cfg = load_config({"data": {"name": "digits"}, "model": {"hidden": [32]}, "train": {"batch_size": 16}})
    b, n_in, h, n_out = 16, 64, 32, 10
    forward = 2 * b * (n_in * h + h * n_out)
    # backward: weight gradients of both layers, input gradient of the second only (the images need none)
    assert training_flops(cfg, (1, 8, 8), 10) == forward + forward + 2 * b * h * n_out
    data = load_data(cfg.data)
    assert ensemble_pays(cfg, data)
    big = load_config(cfg.to_dict() | {"model": {"kind": "mlp", "hidden": [2048, 2048]}})
    assert training_flops(big, (1, 8, 8), 10) > CPU_MAX_FLOPS and not ensemble_pays(big, data)


@pytest.mark.parametrize("mode", ["mean", "layer_mean"])
def test_an_ensemble_applies_the_penalty_mode_as_a_plain_run_does(mode):
    configs = []
    for seed, l1, l2 in [(0, 1e-3, 1.0), (1, 1e-3, 1.0)]:
        raw = tiny_config(seed=seed, l1=l1, l2=l2, penalty=mode, epochs=3, optimizer="sgd", lr=0.05)
        raw["model"]["dropout"] = 0.0
        configs.append(load_config(raw | {"probes": {"enabled": False}}))
    results = train_ensemble(configs)
    for cfg, ours in zip(configs, results):
        reference = train_run(cfg)
        pd.testing.assert_frame_equal(ours.history[NUMBERS], reference.history[NUMBERS], rtol=2e-4, atol=2e-5)
    # report 001's coefficients: summed, l2 = 1 pulls every weight to zero; averaged, the network still learns
    raw = configs[0].to_dict()
    raw["train"]["penalty"] = "sum"
    summed = train_run(load_config(raw))
    assert summed.final["train_acc"] < 0.5 < results[0].final["train_acc"]


def test_optimiser_constants_and_lr_decay_may_differ_within_an_ensemble_the_penalty_may_not():
    base = load_config(tiny_config())
    same = [load_config(tiny_config(**extra)) for extra in
            [{"betas": (0.5, 0.9)}, {"eps": 1e-7}, {"rho": 0.9}, {"lr_decay": 1e-6}]]
    assert {ensemble_key(c) for c in same} == {ensemble_key(base)}
    assert ensemble_key(load_config(tiny_config(l2=1.0, penalty="mean"))) != \
        ensemble_key(load_config(tiny_config(l2=1.0)))
