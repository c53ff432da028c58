"""Optimisers over stacked parameters: one update for many models, each with its own hyper-parameters.

A stacked tensor holds the same parameter of ``M`` models along its first dimension. The
update of model ``m`` is exactly the one ``torch.optim`` (SGD, Adam, AdamW, RMSprop) would
apply with model ``m``'s ``lr``, ``weight_decay``, ``momentum``, ``betas``, ``eps`` and
``alpha``; the per-model hyper-parameters are ``(M,)`` tensors broadcast along the first
dimension. The state of one model converts to and from a ``torch.optim`` state dict, so a
checkpoint written by an ensemble resumes in a plain run and the other way round.
"""

from __future__ import annotations

import torch
from torch import nn

from trainlab.config import TrainConfig
from trainlab.train.optim import make_optimizer

STATE_KEYS = {  # state per parameter, as torch.optim names it
    "sgd": ("momentum_buffer",),
    "adam": ("exp_avg", "exp_avg_sq"),
    "adamw": ("exp_avg", "exp_avg_sq"),
    "rmsprop": ("square_avg", "momentum_buffer"),
}


class StackedOptimizer:
    """``torch.optim``'s update rules applied to stacked parameters with per-model hyper-parameters."""

    def __init__(self, params: dict[str, torch.Tensor], configs: list[TrainConfig]):
        kinds = {c.optimizer for c in configs}
        if len(kinds) != 1 or any(c.nesterov != configs[0].nesterov for c in configs):
            raise ValueError("an ensemble's models must share the optimiser and nesterov")
        self.kind, self.nesterov = kinds.pop(), configs[0].nesterov
        self.params = params
        device = next(iter(params.values())).device

        def per_model(values: list[float]) -> torch.Tensor:
            """Float32 on the device, as torch.optim's kernels take Python floats."""
            return torch.tensor(values, device=device)

        self.lr = torch.tensor([c.lr for c in configs], dtype=torch.float64)
        self.weight_decay = per_model([c.weight_decay for c in configs])
        self.momentum = per_model([c.momentum for c in configs])
        # Adam's betas on the host in double for the bias corrections; on the device the factors of the
        # moving averages, 1 - beta computed in double first as torch.optim does with Python floats
        self.betas = torch.tensor([c.betas for c in configs], dtype=torch.float64)
        self.beta2 = per_model(self.betas[:, 1].tolist())
        self.one_minus_beta1 = per_model((1 - self.betas[:, 0]).tolist())
        self.one_minus_beta2 = per_model((1 - self.betas[:, 1]).tolist())
        self.alpha = per_model([c.alpha for c in configs])
        self.one_minus_alpha = per_model([1 - c.alpha for c in configs])
        self.eps = per_model([c.eps for c in configs])
        self.any_weight_decay = any(c.weight_decay for c in configs)  # a Python bool: no device sync per step
        self.steps = torch.zeros(len(configs), dtype=torch.float64)  # per model, on the host
        self.state = {key: {name: torch.zeros_like(p) for name, p in params.items()} for key in STATE_KEYS[self.kind]}

    @torch.no_grad()
    def step(self, grads: dict[str, torch.Tensor], lr: torch.Tensor | None = None) -> None:
        """Update every stacked parameter in place from its stacked gradient; ``lr`` (M,) overrides the base lr."""
        lr = (self.lr if lr is None else lr).double().cpu()  # like torch.optim's Python floats
        self.steps += 1
        device = self.weight_decay.device
        # per model, once per step: the lr, and Adam's step size and bias correction (double, then
        # float32, as torch.optim.Adam computes them)
        lr_all = lr.float().to(device)
        step_size = (lr / (1 - self.betas[:, 0] ** self.steps)).float().to(device)
        correction2_all = (1 - self.betas[:, 1] ** self.steps).sqrt().float().to(device)
        for name, p in self.params.items():
            g = grads[name]
            shape = (-1,) + (1,) * (p.dim() - 1)
            lr_, wd, mom = lr_all.view(shape), self.weight_decay.view(shape), self.momentum.view(shape)
            if self.kind == "adamw":
                p.mul_(1 - lr_ * wd)
            elif self.any_weight_decay:
                g = g + wd * p
            if self.kind == "sgd":
                buf = self.state["momentum_buffer"][name]
                buf.mul_(mom).add_(g)
                p.sub_(lr_ * (g + mom * buf if self.nesterov else buf))
            elif self.kind == "rmsprop":
                square_avg, buf = self.state["square_avg"][name], self.state["momentum_buffer"][name]
                square_avg.mul_(self.alpha.view(shape)).addcmul_(g * self.one_minus_alpha.view(shape), g)
                buf.mul_(mom).add_(g / square_avg.sqrt().add_(self.eps.view(shape)))
                p.sub_(lr_ * buf)
            else:
                exp_avg, exp_avg_sq = self.state["exp_avg"][name], self.state["exp_avg_sq"][name]
                exp_avg.lerp_(g, self.one_minus_beta1.view(shape))
                exp_avg_sq.mul_(self.beta2.view(shape)).addcmul_(g * self.one_minus_beta2.view(shape), g)
                denom = (exp_avg_sq.sqrt() / correction2_all.view(shape)).add_(self.eps.view(shape))
                p.sub_(exp_avg.mul(step_size.view(shape)).div_(denom))

    def torch_state_dict(self, index: int, model: nn.Module, cfg: TrainConfig) -> dict:
        """Model ``index``'s state as ``make_optimizer(model, cfg).state_dict()`` would hold it."""
        optimizer = make_optimizer(model, cfg)
        for name, p in _trainable(model):
            state = {key: self.state[key][name][index].clone() for key in STATE_KEYS[self.kind]}
            if self.kind in ("sgd", "rmsprop") and cfg.momentum == 0:
                state.pop("momentum_buffer")  # torch.optim keeps no buffer without momentum
            if self.kind != "sgd":
                state["step"] = self.steps[index].float()  # torch.optim keeps a float32 scalar
            if state:
                optimizer.state[p] = state
        return optimizer.state_dict()

    def load_torch_state_dict(self, index: int, model: nn.Module, cfg: TrainConfig, state_dict: dict) -> None:
        """Inverse of :meth:`torch_state_dict` for model ``index``."""
        optimizer = make_optimizer(model, cfg)
        optimizer.load_state_dict(state_dict)
        for name, p in _trainable(model):
            state = optimizer.state.get(p, {})
            for key in STATE_KEYS[self.kind]:
                if key in state:
                    self.state[key][name][index].copy_(state[key])
            if "step" in state:
                self.steps[index] = float(state["step"])


def _trainable(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]
