"""Vectorised ensembles: runs that differ only in seed or scalar hyper-parameters, trained as one.

Each model is built exactly as :func:`~trainlab.train.plain.train_run` builds it (same seed,
same initial weights); their parameters are stacked along a new first dimension and every
training step runs all of them in one ``torch.func.vmap`` over ``functional_call``. Each
model keeps its own data order and augmentation (its own generator), learning rate,
schedule, probes and checkpoint. A checkpoint has the format of a plain run, so either path
resumes the other's. Without dropout each model's result equals sequential training up to
floating-point rounding; dropout masks come from one shared random stream instead of one per run.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap
from torch.utils.flop_counter import FlopCounterMode

from trainlab.config import RunConfig
from trainlab.data import ImageData, Split, load_data, to_float
from trainlab.models import create_model
from trainlab.probes.stacked import StackedProbe
from trainlab.train.bookkeeping import ProbeRows, RunBook, TrainResult
from trainlab.train.checkpoint import resume_checkpoint
from trainlab.train.loop import (
    autocast, intra_op_threads, probe_schedule, resolve_device, run_epochs, steps_per_epoch,
)
from trainlab.train.plain import new_model
from trainlab.train.optim import keras_decay, penalised_weights, penalty
from trainlab.train.stacked_optim import StackedOptimizer

# train.* keys that may differ within an ensemble
VARYING = ("seed", "lr", "weight_decay", "momentum", "betas", "eps", "alpha", "lr_decay")
MAX_MODELS = 8
# Training FLOPs per model and step above which, on CPU, an ensemble is no faster than training
# its runs one after another: the step is compute-bound already (measured: docs/performance.md).
CPU_MAX_FLOPS = 100e6
T = TypeVar("T")


class MixedResume(Exception):
    """The runs of an ensemble have checkpoints from different epochs: train them one by one."""


def train_together(train: Callable[[], T], n_runs: int) -> T | None:
    """``train()`` an ensemble of ``n_runs``; None when its runs must train one by one instead.

    That is when their checkpoints are from different epochs (:class:`MixedResume`), or when the
    ensemble fails (a warning says why; each run then resumes from its own checkpoint).
    """
    try:
        return train()
    except MixedResume:
        return None
    except Exception as error:
        reason = str(error).split(". ")[0].split("\n")[0][:200]
        warnings.warn(f"ensemble of {n_runs} runs failed ({type(error).__name__}: {reason}); "
                      "training them one by one", stacklevel=3)
        return None


def ensemble_key(cfg: RunConfig) -> str | None:
    """Runs with equal keys can train as one ensemble; None for a run that trains alone.

    The key is the configuration without ``train.seed``, ``lr``, ``weight_decay``, ``momentum``,
    ``betas``, ``eps``, ``alpha``, ``lr_decay`` and the value of ``model.dropout`` (only whether it
    is on, since that changes the layers).
    Early stopping ends runs at different epochs, so such runs train alone, as do runs with
    ``channels_last`` (a layout for 4-d tensors; stacked ones have 5 dimensions).
    """
    raw = cfg.to_dict()
    if raw["train"]["early_stopping"] or raw["train"]["channels_last"]:
        return None
    for key in VARYING:
        raw["train"].pop(key)
    raw["model"]["dropout"] = raw["model"]["dropout"] > 0
    return json.dumps(raw, sort_keys=True)


def ensemble_groups(configs: list[RunConfig], max_models: int = MAX_MODELS) -> list[list[int]]:
    """Indices of ``configs`` in ensembles of at most ``max_models``, in order of first appearance."""
    groups: dict[object, list[list[int]]] = {}
    order: list[list[int]] = []
    for i, cfg in enumerate(configs):
        key = ensemble_key(cfg)
        chunks = groups.setdefault(key if key is not None else ("alone", i), [])
        if not chunks or len(chunks[-1]) >= max_models:
            chunks.append([])
            order.append(chunks[-1])
        chunks[-1].append(i)
    return order


def training_flops(cfg: RunConfig, input_shape: tuple[int, int, int], num_classes: int) -> int:
    """FLOPs of one training step (forward and backward) of ``cfg``'s model at its batch size, counted by PyTorch."""
    with torch.random.fork_rng():
        model = create_model(cfg.model, input_shape, num_classes)
    x = torch.zeros(cfg.train.batch_size, *input_shape)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), torch.zeros(len(x), dtype=torch.long)).backward()
    return counter.get_total_flops()


def ensemble_pays(cfg: RunConfig, data: ImageData) -> bool:
    """Whether ``cfg``'s ensemble beats one run after another: on CUDA always, on CPU for steps under ``CPU_MAX_FLOPS``."""
    if resolve_device(cfg.train.device).type == "cuda":
        return True
    return training_flops(cfg, data.input_shape, data.num_classes) < CPU_MAX_FLOPS


class _StackedDropout(nn.Module):
    """Dropout whose probability is a buffer, so each model of an ensemble has its own."""

    def __init__(self):
        super().__init__()
        self.register_buffer("p", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        return x * (torch.rand_like(x) >= self.p) / (1 - self.p)


def train_ensemble(
    configs: list[RunConfig],
    data: ImageData | None = None,
    run_dirs: list[Path] | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
    on_probes: Callable[[int, list[tuple], list[tuple]], None] | None = None,
    progress: bool = False,
    on_curves: Callable[[int, list[tuple]], None] | None = None,
) -> list[TrainResult]:
    """Train ``configs`` (all with one :func:`ensemble_key`) as one vectorised ensemble.

    Like :func:`~trainlab.train.plain.train_run` for each run: ``run_dirs[m]`` holds run ``m``'s
    checkpoint, ``on_epoch(m, row)``, ``on_probes(m, stats, histograms)`` and ``on_curves(m, rows)``
    receive its rows (replayed ones included). A run's ``epoch_time`` and ``samples_per_s`` are its share
    of the ensemble's: the ensemble's time divided by the number of models still training.
    After a kill between two models' checkpoints, the models ahead go back to their kept
    previous checkpoint; :class:`MixedResume` is raised when that does not line them up.
    """
    keys = {ensemble_key(c) for c in configs}
    if len(keys) != 1 or None in keys:
        raise ValueError(f"an ensemble's runs must differ only in train.{', '.join(VARYING)} "
                         "or the value of model.dropout, and must not use early stopping or channels_last")
    run_dirs = run_dirs or [None] * len(configs)
    with intra_op_threads(configs[0].train.threads):
        device = resolve_device(configs[0].train.device)
        data = (data or load_data(configs[0].data)).to(device)
        books = [RunBook(c, d, device, on_epoch and partial(on_epoch, m), on_probes and partial(on_probes, m),
                         on_curves and partial(on_curves, m))
                 for m, (c, d) in enumerate(zip(configs, run_dirs))]
        states = _aligned_checkpoints(run_dirs)
        models = [new_model(c, data, device) for c in configs]
        for model, state in zip(models, states):
            if state is not None:
                model.load_state_dict(state["model"])
        trainer = EnsembleTrainer(configs, models, data)
        for m, (book, state) in enumerate(zip(books, states)):
            if state is not None:
                trainer.optimizer.load_torch_state_dict(m, models[m], configs[m].train, state["optimizer"])
            book.resume(state)
        for m, book in enumerate(books):
            book.watch_embeddings(trainer.module(m), data)
        return run_epochs(trainer, books, data, progress)


def _aligned_checkpoints(run_dirs: list[Path | None]) -> list[dict | None]:
    """Each run's checkpoint, all of one epoch: after a kill between two models' saves (or a damaged
    checkpoint), the kept previous checkpoint of the runs ahead; :class:`MixedResume` when that does not
    line them up."""
    states = [resume_checkpoint(d) for d in run_dirs]
    epochs = {s["epoch"] if s else 0 for s in states}
    if len(epochs) == 1:
        return states
    first = min(epochs)
    if not first:
        return [None] * len(run_dirs)
    states = [s if s["epoch"] == first else resume_checkpoint(d, first) for d, s in zip(run_dirs, states)]
    if any(s is None for s in states):
        raise MixedResume("the runs' checkpoints are from different epochs")
    return states


class EnsembleTrainer:
    """Models stacked along a new first dimension and trained in one vmapped step
    (see :class:`~trainlab.train.loop.Trainer`)."""

    stacked = True

    def __init__(self, configs: list[RunConfig], models: list[nn.Module], data: ImageData):
        self.configs, self.tc, self.models, self.n_models = configs, configs[0].train, models, len(models)
        self.device, self.mean, self.std = data.train.x.device, data.mean, data.std
        self.base = copy.deepcopy(models[0])
        dropouts = [name for name, m in self.base.named_modules() if isinstance(m, nn.Dropout)]
        for name in dropouts:
            parent, _, child = name.rpartition(".")
            setattr(self.base.get_submodule(parent), child, _StackedDropout())
        self.base = self.base.to("meta")
        params, buffers = stack_module_state(models)
        self.params = {k: v.detach() for k, v in params.items()}
        self.buffers = {k: v.detach() for k, v in buffers.items()}
        for name in dropouts:
            self.buffers[f"{name}.p"] = torch.tensor([m.get_submodule(name).p for m in models], device=self.device)
        self.optimizer = StackedOptimizer(self.params, [c.train for c in configs])
        weight_ids = {id(w) for w in penalised_weights(models[0])}
        self.penalised = [n for n, p in models[0].named_parameters() if id(p) in weight_ids]
        pc = configs[0].probes
        self.probe = StackedProbe(self.base, self.n_models, pc, probe_schedule(pc, steps_per_epoch(configs[0], data))) \
            if pc.enabled else None
        self._grad_step = vmap(grad_and_value(self._objective, argnums=(0, 4), has_aux=True), randomness="different")
        self._lr = torch.zeros(self.n_models, dtype=torch.float64)
        self._decay = torch.tensor([c.train.lr_decay for c in configs], dtype=torch.float64)
        self._decays = bool(self._decay.any())
        self._synced: set[int] = set()  # models whose plain module holds the stacked weights of now

    def set_lr(self, lrs: list[float]) -> None:
        self._lr = torch.tensor(lrs, dtype=torch.float64)

    def train_mode(self) -> None:
        self.base.train()

    def step(self, x: torch.Tensor, y: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        probed = self.probe is not None and self.probe.start(step)
        zeros = self.probe.output_zeros(x) if probed else {}
        (grads, output_grads), (_, (loss, hits, measured)) = self._grad_step(self.params, self.buffers, x, y, zeros)
        if probed:
            self.probe.measure(measured, grads, self.params, output_grads)
        if self.tc.clip_grad:
            _clip_stacked(grads, self.tc.clip_grad)
        self.optimizer.step(grads, keras_decay(self._lr, self._decay, step) if self._decays else self._lr)
        self._synced.clear()
        if probed:
            self.probe.finish(self.params)
        return loss, hits

    def _objective(self, params: dict, buffers: dict, x: torch.Tensor, y: torch.Tensor, zeros: dict):
        """One model's training objective, and ``(loss, correct, probe measurements)`` (vmapped over models).

        ``zeros`` are added to the probed layers' outputs, so their gradients are dL/dh (see StackedProbe).
        """
        tc = self.tc
        if self.probe is not None:
            self.probe.perturb = zeros
        with autocast(self.device, tc.precision):
            logits = self._call(params, buffers, x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=tc.label_smoothing)
        total = loss + penalty([params[n] for n in self.penalised], tc.l1, tc.l2, tc.penalty) \
            if (tc.l1 or tc.l2) else loss
        hits = (logits.detach().argmax(1) == y).sum()
        return total, (loss.detach(), hits, self.probe.collected() if self.probe is not None else [])

    def _call(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.base, (params, buffers), (x,))

    @torch.no_grad()
    def evaluate(self, split: Split, batch_size: int) -> torch.Tensor:
        self.base.eval()
        sums = torch.zeros(self.n_models, 2, device=split.x.device)
        for i in range(0, len(split), batch_size):
            x, y = to_float(split.x[i : i + batch_size], self.mean, self.std), split.y[i : i + batch_size]
            with autocast(self.device, self.tc.precision):
                logits = vmap(self._call, in_dims=(0, 0, None))(self.params, self.buffers, x).float()
            losses = F.cross_entropy(logits.flatten(0, 1), y.repeat(self.n_models), reduction="none")
            sums[:, 0] += losses.view(self.n_models, -1).sum(1)
            sums[:, 1] += (logits.argmax(2) == y).sum(1)
        return sums

    def module(self, m: int) -> nn.Module:
        model = self.models[m]
        if m not in self._synced:  # copied once per step at most: the loop and the checkpoint both ask
            with torch.no_grad():
                for name, t in [*model.named_parameters(), *model.named_buffers()]:
                    t.copy_(self.params[name][m] if name in self.params else self.buffers[name][m])
            self._synced.add(m)
        return model

    def state(self, m: int) -> dict:
        model = self.module(m)
        return {"model": model.state_dict(),
                "optimizer": self.optimizer.torch_state_dict(m, model, self.configs[m].train)}

    def probe_rows(self) -> list[ProbeRows]:
        return self.probe.take() if self.probe is not None else [([], [])] * self.n_models

    def close(self) -> None:
        if self.probe is not None:
            self.probe.close()


def _clip_stacked(grads: dict[str, torch.Tensor], max_norm: float) -> None:
    """Per model, ``torch.nn.utils.clip_grad_norm_`` over all its gradients."""
    total = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads.values()]).sum(0).sqrt()
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in grads.values():
        g.mul_(scale.view((-1,) + (1,) * (g.dim() - 1)))
