"""Optimisers, the learning-rate schedule and the L1/L2 penalty terms."""

from __future__ import annotations

import math
from typing import TypeVar

import torch
from torch import nn

from trainlab.config import PENALTIES, TrainConfig

T = TypeVar("T", float, torch.Tensor)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser named by ``cfg.optimizer`` over all trainable parameters, with ``cfg``'s constants
    (``betas`` and ``eps`` for adam and adamw, ``alpha`` and ``eps`` for rmsprop)."""
    params = [p for p in model.parameters() if p.requires_grad]
    common = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    # the fused kernels update every tensor in one pass (CPU and CUDA); RMSprop has none
    fused = {"fused": True} if params and params[0].device.type in ("cpu", "cuda") else {}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, momentum=cfg.momentum, nesterov=cfg.nesterov, **common, **fused)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, betas=cfg.betas, eps=cfg.eps, **common, **fused)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, betas=cfg.betas, eps=cfg.eps, **common, **fused)
    return torch.optim.RMSprop(params, momentum=cfg.momentum, alpha=cfg.alpha, eps=cfg.eps, **common)


def penalised_weights(model: nn.Module) -> list[torch.Tensor]:
    """Weights the L1/L2 terms act on: matrices and kernels of linear and conv layers, not biases or norms."""
    return [
        m.weight for m in model.modules()
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) and m.weight.requires_grad
    ]


def penalty(weights: list[torch.Tensor], l1: float, l2: float, mode: str = "sum") -> torch.Tensor | float:
    """``l1 * R(|w|) + l2 * R(w**2)`` over ``weights`` (one tensor per layer; 0.0 when both are off).

    ``mode`` is the reduction R (``train.penalty``): ``sum`` over every weight; ``mean`` over every
    weight, all layers together; ``layer_mean`` the sum over layers of each layer's mean.
    """
    total: torch.Tensor | float = 0.0
    if l1:
        total = total + l1 * _reduce([w.abs() for w in weights], mode)
    if l2:
        total = total + l2 * _reduce([w.pow(2) for w in weights], mode)
    return total


def _reduce(terms: list[torch.Tensor], mode: str) -> torch.Tensor:
    """The per-weight ``terms`` of all layers reduced as :func:`penalty`'s ``mode`` says."""
    if mode not in PENALTIES:
        raise ValueError(f"unknown penalty mode {mode!r}; valid: {', '.join(PENALTIES)}")
    if mode == "layer_mean":
        return torch.stack([t.mean() for t in terms]).sum()
    total = torch.stack([t.sum() for t in terms]).sum()
    return total / sum(t.numel() for t in terms) if mode == "mean" else total


def keras_decay(lr: T, decay: T | float, step: int) -> T:
    """Keras' per-step learning-rate decay (``train.lr_decay``): ``lr / (1 + decay * step)`` at 0-based global
    optimizer ``step``; floats, or ``(M,)`` tensors of an ensemble's models."""
    return lr / (1 + decay * step)


class LRSchedule:
    """Learning rate per epoch: optional linear warmup, then constant, step, cosine or plateau.

    ``lr(epoch)`` is a closed form for every schedule but ``plateau``, whose scale drops by
    ``factor`` once the validation loss has not improved (relative 1e-4) for more than
    ``patience`` epochs; feed it with :meth:`observe`. The state is a small dict, saved in
    checkpoints.
    """

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.scale = 1.0
        self.best = math.inf
        self.bad_epochs = 0

    def lr(self, epoch: int) -> float:
        """Learning rate for 0-based ``epoch``."""
        cfg, warm = self.cfg, self.cfg.warmup_epochs
        if epoch < warm:
            return cfg.lr * (epoch + 1) / (warm + 1)
        t = epoch - warm
        if cfg.schedule == "step":
            return cfg.lr * cfg.gamma ** (t // cfg.step_size)
        if cfg.schedule == "cosine":
            span = max(1, cfg.epochs - warm)
            return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * t / span))
        if cfg.schedule == "plateau":
            return max(cfg.min_lr, cfg.lr * self.scale)
        return cfg.lr

    def observe(self, val_loss: float) -> None:
        """Record an epoch's validation loss (used by ``plateau`` only)."""
        if self.cfg.schedule != "plateau":
            return
        if val_loss < self.best * (1 - 1e-4):
            self.best, self.bad_epochs = val_loss, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.cfg.patience:
                self.scale *= self.cfg.factor
                self.bad_epochs = 0

    def state_dict(self) -> dict:
        return {"scale": self.scale, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.scale, self.best, self.bad_epochs = state["scale"], state["best"], state["bad_epochs"]
