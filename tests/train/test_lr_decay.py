"""Keras-style per-step learning-rate decay: the lr of every optimizer step against its formula."""

import pandas as pd
import pytest
import torch

from tests.conftest import tiny_config
from tests.train.test_ensemble import NUMBERS
from trainlab.config import load_config
from trainlab.train import plain, train_run
from trainlab.train.ensemble import ensemble_groups, train_ensemble
from trainlab.train.stacked_optim import StackedOptimizer

STEPS = 8  # tiny_config: 256 training images in batches of 32


def _config(seed: int = 0, lr: float = 0.01, lr_decay: float = 0.05, rho: float = 0.9, eps: float = 1e-7):
    raw = tiny_config(seed=seed, lr=lr, lr_decay=lr_decay, epochs=4, optimizer="rmsprop", rho=rho, eps=eps,
                      schedule="step", step_size=1, gamma=0.5)
    raw["model"]["dropout"] = 0.0  # so an ensemble equals its runs trained one by one
    return load_config(raw | {"probes": {"enabled": False}})


def _expected(cfg, steps: range) -> list[float]:
    """Keras' lr at each global step: the epoch's scheduled lr / (1 + decay * step)."""
    tc = cfg.train
    return [tc.lr * tc.gamma ** (step // STEPS) / (1 + tc.lr_decay * step) for step in steps]


@pytest.fixture
def plain_lrs(monkeypatch):
    """The learning rate of every optimizer step of plain runs trained in the test."""
    seen: list[float] = []
    make = plain.make_optimizer

    def recording(model, tc):
        optimizer = make(model, tc)
        optimizer.register_step_pre_hook(lambda opt, args, kwargs: seen.append(opt.param_groups[0]["lr"]))
        return optimizer

    monkeypatch.setattr(plain, "make_optimizer", recording)
    return seen


def _assert_same_run(ours, reference):
    pd.testing.assert_frame_equal(ours.history[NUMBERS], reference.history[NUMBERS], rtol=2e-4, atol=2e-5)
    for name, tensor in reference.model.state_dict().items():
        torch.testing.assert_close(ours.model.state_dict()[name], tensor, rtol=2e-4, atol=2e-5, msg=name)


class Crash(Exception):
    pass


def _crash_at(epoch: int):
    def on_epoch(row):
        if row["epoch"] == epoch:
            raise Crash
    return on_epoch


def test_a_plain_run_steps_with_the_decayed_lr_and_continues_it_after_a_resume(tmp_path, plain_lrs):
    cfg = _config()
    whole = train_run(cfg)
    assert plain_lrs == pytest.approx(_expected(cfg, range(4 * STEPS)), rel=1e-12)
    assert list(whole.history["lr"]) == pytest.approx([0.01, 0.005, 0.0025, 0.00125])  # the epoch's schedule

    plain_lrs.clear()
    with pytest.raises(Crash):
        train_run(cfg, run_dir=tmp_path, on_epoch=_crash_at(2))
    plain_lrs.clear()
    resumed = train_run(cfg, run_dir=tmp_path)
    assert plain_lrs == pytest.approx(_expected(cfg, range(2 * STEPS, 4 * STEPS)), rel=1e-12)
    pd.testing.assert_frame_equal(resumed.history[NUMBERS], whole.history[NUMBERS])


def test_an_ensemble_steps_each_model_with_its_decayed_lr_and_equals_its_runs(tmp_path, monkeypatch):
    # Keras' RMSprop constants next to PyTorch's: each model of the ensemble has its own
    configs = [_config(0, 0.01, 0.05), _config(1, 0.02, 0.0, rho=0.99, eps=1e-8), _config(2, 0.005, 0.3)]
    assert len(ensemble_groups(configs)) == 1
    seen = []
    step = StackedOptimizer.step

    def recording(self, grads, lr=None):
        seen.append(lr.tolist())
        step(self, grads, lr)

    monkeypatch.setattr(StackedOptimizer, "step", recording)
    results = train_ensemble(configs)
    for m, cfg in enumerate(configs):
        assert [lrs[m] for lrs in seen] == pytest.approx(_expected(cfg, range(4 * STEPS)), rel=1e-12)
        _assert_same_run(results[m], train_run(cfg))

    dirs = [tmp_path / str(m) for m in range(len(configs))]

    def crash(m, row):  # every model has saved epoch 2
        if row["epoch"] == 2 and m == len(configs) - 1:
            raise Crash
    with pytest.raises(Crash):
        train_ensemble(configs, run_dirs=dirs, on_epoch=crash)
    seen.clear()
    resumed = train_ensemble(configs, run_dirs=dirs)
    for m, cfg in enumerate(configs):
        expected = _expected(cfg, range(2 * STEPS, 4 * STEPS))
        assert [lrs[m] for lrs in seen] == pytest.approx(expected, rel=1e-12)
        _assert_same_run(resumed[m], results[m])
