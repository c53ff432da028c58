import numpy as np
import pytest
import torch
from torch import nn

from trainlab.config import TrainConfig
from trainlab.train.optim import LRSchedule, keras_decay, make_optimizer, penalised_weights, penalty


def _lrs(schedule, epochs, losses=None):
    out = []
    for epoch in range(epochs):
        out.append(schedule.lr(epoch))
        schedule.observe(losses[epoch] if losses else 1.0)
    return out


def _torch_lrs(make, epochs, losses=None, lr=0.1):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    sched = make(opt)
    out = []
    for epoch in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step(losses[epoch]) if losses else sched.step()
    return out


def test_step_schedule_equals_torch_steplr():
    cfg = TrainConfig(lr=0.1, schedule="step", step_size=3, gamma=0.5, epochs=10)
    ref = _torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5), 10)
    assert _lrs(LRSchedule(cfg), 10) == pytest.approx(ref, rel=1e-12)


def test_cosine_schedule_equals_torch_cosine_annealing():
    cfg = TrainConfig(lr=0.1, schedule="cosine", epochs=12, min_lr=0.001)
    ref = _torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=12, eta_min=0.001), 12)
    assert _lrs(LRSchedule(cfg), 12) == pytest.approx(ref, rel=1e-9)


def test_plateau_schedule_equals_torch_reduce_on_plateau():
    losses = [1.0, 0.9, 0.9, 0.95, 0.91, 0.92, 0.85, 0.86, 0.87, 0.88, 0.89, 0.9, 0.91, 0.92]
    cfg = TrainConfig(lr=0.1, schedule="plateau", patience=2, factor=0.5, epochs=len(losses))
    ref = _torch_lrs(lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, patience=2, factor=0.5), len(losses), losses)
    assert _lrs(LRSchedule(cfg), len(losses), losses) == pytest.approx(ref, rel=1e-12)
    assert min(ref) < 0.1  # the sequence does trigger reductions


def test_linear_warmup_then_schedule():
    cfg = TrainConfig(lr=0.1, schedule="step", step_size=2, gamma=0.1, warmup_epochs=3, epochs=8)
    lrs = _lrs(LRSchedule(cfg), 8)
    assert lrs[:3] == pytest.approx([0.025, 0.05, 0.075])
    assert lrs[3:] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])


def test_schedule_state_round_trips():
    cfg = TrainConfig(lr=0.1, schedule="plateau", patience=0, factor=0.5)
    a = LRSchedule(cfg)
    for loss in (1.0, 2.0, 3.0):
        a.observe(loss)
    b = LRSchedule(cfg)
    b.load_state_dict(a.state_dict())
    assert b.lr(5) == a.lr(5) == pytest.approx(0.025)


def test_penalty_matches_direct_computation_and_skips_biases_and_norms():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))
    weights = penalised_weights(model)
    assert [w.shape for w in weights] == [model[0].weight.shape, model[3].weight.shape]
    direct = 0.01 * (model[0].weight.abs().sum() + model[3].weight.abs().sum()) + 0.5 * (
        model[0].weight.pow(2).sum() + model[3].weight.pow(2).sum()
    )
    value = penalty(weights, 0.01, 0.5)
    assert torch.allclose(value, direct)
    value.backward()
    expected = 0.01 * model[3].weight.sign() + 2 * 0.5 * model[3].weight
    assert torch.allclose(model[3].weight.grad, expected)
    assert model[3].bias.grad is None and model[1].weight.grad is None
    assert penalty(weights, 0.0, 0.0) == 0.0


@pytest.mark.parametrize(
    "name, cls, extra",
    [("sgd", torch.optim.SGD, {"momentum": 0.9, "nesterov": True}), ("adam", torch.optim.Adam, {}),
     ("adamw", torch.optim.AdamW, {}), ("rmsprop", torch.optim.RMSprop, {"momentum": 0.5})],
)
def test_make_optimizer(name, cls, extra):
    cfg = TrainConfig(optimizer=name, lr=0.02, weight_decay=1e-4, momentum=extra.get("momentum", 0.0),
                      nesterov=extra.get("nesterov", False))
    opt = make_optimizer(nn.Linear(2, 2), cfg)
    assert isinstance(opt, cls)
    group = opt.param_groups[0]
    assert group["lr"] == 0.02 and group["weight_decay"] == 1e-4
    for key, value in extra.items():
        assert group[key] == value


def _conv_and_linear() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))


@pytest.mark.parametrize("mode", ["sum", "mean", "layer_mean"])
def test_each_penalty_mode_matches_a_direct_computation(mode):
    model = _conv_and_linear()
    layers = [model[0].weight.detach().numpy().ravel().astype(np.float64),
              model[3].weight.detach().numpy().ravel().astype(np.float64)]
    every = np.concatenate(layers)
    l1, l2 = 0.01, 0.5
    direct = {
        "sum": l1 * np.abs(every).sum() + l2 * (every ** 2).sum(),
        "mean": l1 * np.abs(every).mean() + l2 * (every ** 2).mean(),
        "layer_mean": sum(l1 * np.abs(w).mean() + l2 * (w ** 2).mean() for w in layers),
    }[mode]
    value = penalty(penalised_weights(model), l1, l2, mode)
    assert value.item() == pytest.approx(direct, rel=1e-6)
    value.backward()
    count = {"sum": 1, "mean": every.size, "layer_mean": model[3].weight.numel()}[mode]
    w = model[3].weight.detach()
    torch.testing.assert_close(model[3].weight.grad, (l1 * w.sign() + 2 * l2 * w) / count)
    assert penalty(penalised_weights(model), 0.0, 0.0, mode) == 0.0


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop", "adamw"])
def test_weight_decay_is_the_sum_penalty_with_half_the_coefficient(optimizer):
    """PyTorch's (coupled) weight_decay adds wd * w to the gradient: the gradient of (wd / 2) * sum w**2.
    AdamW's decoupled decay shrinks the weights outside Adam's scaling, which no loss term does."""
    wd, generator = 0.1, torch.Generator().manual_seed(0)
    decayed, penalised = _conv_and_linear(), _conv_and_linear()
    for model in (decayed, penalised):  # weight decay acts on every parameter, the penalty on weights only
        model[1].requires_grad_(False)
        model[0].bias.requires_grad_(False)
        model[3].bias.requires_grad_(False)
    momentum = 0.0 if optimizer == "adam" else 0.5
    a = make_optimizer(decayed, TrainConfig(optimizer=optimizer, lr=0.05, weight_decay=wd, momentum=momentum))
    b = make_optimizer(penalised, TrainConfig(optimizer=optimizer, lr=0.05, momentum=momentum))
    for _ in range(5):
        x = torch.randn(4, 1, 4, 4, generator=generator)
        decayed(x).square().mean().backward()
        (penalised(x).square().mean() + penalty(penalised_weights(penalised), 0.0, wd / 2)).backward()
        for opt in (a, b):
            opt.step()
            opt.zero_grad()
    pairs = zip(decayed.parameters(), penalised.parameters())
    same = [torch.allclose(p, q, rtol=1e-5, atol=1e-6) for p, q in pairs]
    assert all(same) == (optimizer != "adamw")


def test_make_optimizer_passes_betas_eps_and_alpha():
    adam = make_optimizer(nn.Linear(2, 2), TrainConfig(optimizer="adam", betas=(0.5, 0.9), eps=1e-7)) \
        .param_groups[0]
    assert adam["betas"] == (0.5, 0.9) and adam["eps"] == 1e-7
    adamw = make_optimizer(nn.Linear(2, 2), TrainConfig(optimizer="adamw", betas=(0.8, 0.95))).param_groups[0]
    assert adamw["betas"] == (0.8, 0.95) and adamw["eps"] == 1e-8
    keras = make_optimizer(nn.Linear(2, 2), TrainConfig(optimizer="rmsprop", rho=0.9, eps=1e-7)) \
        .param_groups[0]
    assert keras["alpha"] == 0.9 and keras["eps"] == 1e-7


def test_keras_decay_equals_lambda_lr_stepped_per_batch():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    reference = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 / (1 + 1e-3 * step))
    for step in range(50):
        assert keras_decay(0.1, 1e-3, step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        opt.step()
        reference.step()
    per_model = lambda *values: torch.tensor(values, dtype=torch.float64)  # noqa: E731
    lrs = keras_decay(per_model(0.1, 0.2), per_model(1e-3, 0.0), 7)
    assert lrs.tolist() == pytest.approx([0.1 / 1.007, 0.2])
