"""Vectorised ensembles: runs that differ only in seed or scalar hyper-parameters, trained as one.

Each model is built exactly as :func:`~trainlab.train.loop.train_run` builds it (same seed,
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
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from trainlab.config import RunConfig
from trainlab.data import ImageData, Split, augment_batch, load_data, to_float
from trainlab.models import create_model
from trainlab.probes.probe import (
    ACTIVATIONS, LOG_RANGE, PROBE_COLUMNS, PROBE_HISTOGRAM_COLUMNS, TENSOR_STATS, activation_stats, histogram,
)
from trainlab.train.checkpoint import (
    load_checkpoint, load_probe_rows, restore_rng_state, rng_state, save_checkpoint,
)
from trainlab.train.loop import (
    METRICS, TrainResult, _embedder, autocast, intra_op_threads, probe_schedule, resolve_device,
)
from trainlab.train.optim import LRSchedule, penalised_weights, penalty
from trainlab.train.stacked_optim import StackedOptimizer

VARYING = ("seed", "lr", "weight_decay", "momentum")  # train.* keys that may differ within an ensemble
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
        warnings.warn(f"ensemble of {n_runs} runs failed ({type(error).__name__}: {error}); "
                      "training them one by one", stacklevel=3)
        return None


def ensemble_key(cfg: RunConfig) -> str | None:
    """Runs with equal keys can train as one ensemble; None for a run that trains alone.

    The key is the configuration without ``train.seed``, ``lr``, ``weight_decay``, ``momentum``
    and the value of ``model.dropout`` (only whether it is on, since that changes the layers).
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
) -> list[TrainResult]:
    """Train ``configs`` (all with one :func:`ensemble_key`) as one vectorised ensemble.

    Like :func:`~trainlab.train.loop.train_run` for each run: ``run_dirs[m]`` holds run ``m``'s
    checkpoint, ``on_epoch(m, row)`` and ``on_probes(m, stats, histograms)`` receive its rows
    (replayed ones included). A run's ``epoch_time`` and ``samples_per_s`` are its share of the
    ensemble's: the ensemble's time divided by the number of models still training.
    After a kill between two models' checkpoints, the models ahead go back to their kept
    previous checkpoint; :class:`MixedResume` is raised when that does not line them up.
    """
    keys = {ensemble_key(c) for c in configs}
    if len(keys) != 1 or None in keys:
        raise ValueError("an ensemble's runs must differ only in train.seed, lr, weight_decay, momentum "
                         "or the value of model.dropout, and must not use early stopping or channels_last")
    with intra_op_threads(configs[0].train.threads):
        return _Ensemble(configs, data, run_dirs, progress).train(on_epoch, on_probes)


class _Ensemble:
    """The state of a training ensemble; :meth:`train` is the loop (compare ``train_run``)."""

    def __init__(self, configs: list[RunConfig], data: ImageData | None, run_dirs: list[Path] | None, progress: bool):
        self.configs, self.progress = configs, progress
        self.run_dirs = run_dirs or [None] * len(configs)
        cfg = configs[0]
        self.device = device = resolve_device(cfg.train.device)
        self.data = (data or load_data(cfg.data)).to(device)
        self.mean, self.std = self.data.mean.to(device), self.data.std.to(device)

        self.models = []
        for c in configs:
            torch.manual_seed(c.train.seed)
            self.models.append(create_model(c.model, self.data.input_shape, self.data.num_classes).to(device))
        self.generators = [torch.Generator(device=device).manual_seed(c.train.seed) for c in configs]
        self.schedules = [LRSchedule(c.train) for c in configs]
        self.states = [load_checkpoint(d) for d in self.run_dirs]
        epochs = {s["epoch"] if s else 0 for s in self.states}
        if len(epochs) > 1:  # killed between two models' saves: step the ones ahead back to their kept checkpoint
            self.states = [load_checkpoint(d, min(epochs)) if min(epochs) else None for d in self.run_dirs]
            if min(epochs) and any(s is None for s in self.states):
                raise MixedResume("the runs' checkpoints are from different epochs")
        for model, state in zip(self.models, self.states):
            if state is not None:
                model.load_state_dict(state["model"])

        self.base = copy.deepcopy(self.models[0])
        dropouts = [name for name, m in self.base.named_modules() if isinstance(m, nn.Dropout)]
        for name in dropouts:
            parent, _, child = name.rpartition(".")
            setattr(self.base.get_submodule(parent), child, _StackedDropout())
        self.base = self.base.to("meta")
        params, buffers = stack_module_state(self.models)
        self.params = {k: v.detach() for k, v in params.items()}
        self.buffers = {k: v.detach() for k, v in buffers.items()}
        for name in dropouts:
            self.buffers[f"{name}.p"] = torch.tensor([m.get_submodule(name).p for m in self.models], device=device)
        self.optimizer = StackedOptimizer(self.params, [c.train for c in configs])
        weight_ids = {id(w) for w in penalised_weights(self.models[0])}
        self.penalised = [n for n, p in self.models[0].named_parameters() if id(p) in weight_ids]

    def _sync(self, index: int) -> nn.Module:
        """Model ``index`` as a plain module with its current weights and buffers."""
        model = self.models[index]
        with torch.no_grad():
            for name, t in [*model.named_parameters(), *model.named_buffers()]:
                t.copy_(self.params[name][index] if name in self.params else self.buffers[name][index])
        return model

    def _call(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.base, (params, buffers), (x,))

    def train(self, on_epoch, on_probes) -> list[TrainResult]:
        cfgs, tc, n_models = self.configs, self.configs[0].train, len(self.configs)
        device, train = self.device, self.data.train
        steps_per_epoch = math.ceil(len(train) / tc.batch_size)
        results = [TrainResult(c.run_id(), "done", pd.DataFrame(), model=m) for c, m in zip(cfgs, self.models)]
        histories: list[list[dict]] = [[] for _ in cfgs]
        probe_histories: list[list[tuple[list, list]]] = [[] for _ in cfgs]
        for m, state in enumerate(self.states):
            if state is None:
                continue
            self.optimizer.load_torch_state_dict(m, self.models[m], cfgs[m].train, state["optimizer"])
            self.schedules[m].load_state_dict(state["schedule"])
            restore_rng_state(state["rng"], device, self.generators[m])
            histories[m], probe_histories[m] = state["history"], load_probe_rows(self.run_dirs[m], state["epoch"])
            for row, probed in zip(histories[m], probe_histories[m]):
                if on_epoch:
                    on_epoch(m, row)
                if on_probes:
                    on_probes(m, *probed)
        start_epoch = len(histories[0])
        pc = cfgs[0].probes
        probe = _EnsembleProbe(self.base, n_models, pc, probe_schedule(pc, steps_per_epoch)) if pc.enabled else None
        step_fn = self._step_function(probe)
        embedders = [_embedder(c, self._sync(m), self.data, d, r.embeddings)
                     for m, (c, d, r) in enumerate(zip(cfgs, self.run_dirs, results))]
        if start_epoch == 0:
            for embed in embedders:
                embed(0)

        active = [True] * n_models
        wall = [h[-1]["wall_time"] if h else 0.0 for h in histories]
        splits = {name: s for name, s in (("val", self.data.val), ("test", self.data.test)) if s is not None}
        bar = tqdm(total=tc.epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch,
                   disable=not self.progress, unit="step", leave=False, dynamic_ncols=True)
        for epoch in range(start_epoch, tc.epochs):
            if not any(active):
                break
            bar.set_description(f"ensemble of {sum(active)}, epoch {epoch + 1}/{tc.epochs}")
            lr = torch.tensor([s.lr(epoch) for s in self.schedules], dtype=torch.float64)

            # ---- one epoch of training, every model at once
            self.base.train()
            start = time.perf_counter()
            step_losses = torch.empty(steps_per_epoch, n_models, device=device)
            correct = torch.zeros(n_models, device=device, dtype=torch.long)
            orders = torch.stack([torch.randperm(len(train), generator=g, device=device) for g in self.generators])
            for step in range(steps_per_epoch):
                global_step = epoch * steps_per_epoch + step
                idx = orders[:, step * tc.batch_size : (step + 1) * tc.batch_size]
                x, y = train.take(idx)
                if cfgs[0].data.augment:
                    x = torch.stack([augment_batch(x[m], cfgs[0].data.augment, g) for m, g in enumerate(self.generators)])
                probed = probe is not None and probe.start(global_step)
                grads, (_, (loss, hits, measured)) = step_fn(self.params, self.buffers, to_float(x, self.mean, self.std), y)
                if probed:
                    probe.measure(global_step, measured, grads, self.params)
                if tc.clip_grad:
                    _clip_stacked(grads, tc.clip_grad)
                self.optimizer.step(grads, lr)
                if probed:
                    probe.finish(self.params)
                step_losses[step] = loss * idx.shape[1]
                correct += hits
                bar.update(1)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            train_time = time.perf_counter() - start

            # ---- evaluation, then one transfer to the host
            evals = [self._evaluate(split, tc.eval_batch_size) for split in splits.values()]
            sums = torch.cat([step_losses.sum(0)[:, None], correct[:, None].float(), *evals], dim=1).tolist()
            epoch_time = time.perf_counter() - start
            share = sum(active)
            taken = probe.take() if probe is not None else [([], [])] * n_models
            for m in range(n_models):
                if not active[m]:
                    continue
                if not math.isfinite(sums[m][0]):
                    first_bad = int((~torch.isfinite(step_losses[:, m])).nonzero()[0])
                    results[m].status, results[m].diverged_step = "diverged", epoch * steps_per_epoch + first_bad
                    active[m] = False
                    continue
                wall[m] += epoch_time / share
                row = {"epoch": epoch + 1, "train_loss": sums[m][0] / len(train), "train_acc": sums[m][1] / len(train)}
                for i, (name, split) in enumerate(splits.items()):
                    row |= {f"{name}_loss": sums[m][2 + 2 * i] / len(split),
                            f"{name}_acc": sums[m][3 + 2 * i] / len(split)}
                row |= {"lr": float(lr[m]), "samples_per_s": len(train) * share / train_time,
                        "epoch_time": epoch_time / share, "wall_time": wall[m]}
                histories[m].append(row)
                probe_histories[m].append(taken[m])
                model = self._sync(m)
                embedders[m](epoch + 1)
                self.schedules[m].observe(row.get("val_loss", row["train_loss"]))
                if self.run_dirs[m] is not None:
                    save_checkpoint(self.run_dirs[m], {
                        "epoch": epoch + 1, "model": model.state_dict(),
                        "optimizer": self.optimizer.torch_state_dict(m, model, cfgs[m].train),
                        "schedule": self.schedules[m].state_dict(), "rng": rng_state(device, self.generators[m]),
                        "history": histories[m],
                    }, taken[m], keep_previous=True)
                if on_epoch:
                    on_epoch(m, row)
                if on_probes:
                    on_probes(m, *taken[m])
        bar.close()
        if probe is not None:
            probe.close()
        for m, result in enumerate(results):
            self._sync(m)
            history = histories[m]
            result.probes = pd.DataFrame([r for rows, _ in probe_histories[m] for r in rows], columns=PROBE_COLUMNS)
            result.probe_histograms = pd.DataFrame([h for _, hists in probe_histories[m] for h in hists],
                                                   columns=PROBE_HISTOGRAM_COLUMNS)
            result.history = pd.DataFrame(history, columns=["epoch", *[k for k in METRICS if not history or k in history[0]]])
        return results

    def _step_function(self, probe: _EnsembleProbe | None):
        """``(params, buffers, x, y) -> (grads, (objective, (loss, correct, activation stats)))`` for every model."""
        tc = self.configs[0].train
        penalised = self.penalised

        def objective(params, buffers, x, y):
            with autocast(self.device, tc.precision):
                logits = self._call(params, buffers, x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=tc.label_smoothing)
            total = loss + penalty([params[n] for n in penalised], tc.l1, tc.l2) if (tc.l1 or tc.l2) else loss
            hits = (logits.detach().argmax(1) == y).sum()
            return total, (loss.detach(), hits, probe.collected() if probe is not None else [])

        return vmap(grad_and_value(objective, has_aux=True), randomness="different")

    @torch.no_grad()
    def _evaluate(self, split: Split, batch_size: int) -> torch.Tensor:
        """``(M, 2)``: each model's summed cross-entropy and correct count over ``split``."""
        self.base.eval()
        n_models = len(self.configs)
        sums = torch.zeros(n_models, 2, device=split.x.device)
        for i in range(0, len(split), batch_size):
            x, y = to_float(split.x[i : i + batch_size], self.mean, self.std), split.y[i : i + batch_size]
            with autocast(self.device, self.configs[0].train.precision):
                logits = vmap(self._call, in_dims=(0, 0, None))(self.params, self.buffers, x).float()
            losses = F.cross_entropy(logits.flatten(0, 1), y.repeat(n_models), reduction="none")
            sums[:, 0] += losses.view(n_models, -1).sum(1)
            sums[:, 1] += (logits.argmax(2) == y).sum(1)
        return sums


def _clip_stacked(grads: dict[str, torch.Tensor], max_norm: float) -> None:
    """Per model, ``torch.nn.utils.clip_grad_norm_`` over all its gradients."""
    total = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads.values()]).sum(0).sqrt()
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in grads.values():
        g.mul_(scale.view((-1,) + (1,) * (g.dim() - 1)))


class _EnsembleProbe:
    """The statistics of :class:`~trainlab.probes.Probe`, measured for every model of an ensemble at once.

    Activation statistics are computed by hooks inside the vmapped step and returned as its
    auxiliary output; gradient, weight and update statistics are reductions over all but the
    first (model) dimension of the stacked tensors. A probed step reaches the host in one transfer.
    """

    def __init__(self, base: nn.Module, n_models: int, cfg, schedule: Callable[[int], bool]):
        self.cfg, self.schedule, self.n_models = cfg, schedule, n_models
        self.active = False
        self._keys: list[tuple] = []  # activation keys of the current step, in forward order
        self._values: list[torch.Tensor] = []
        self._handles = [module.register_forward_hook(self._hook(name, module))
                         for name, module in base.named_modules() if isinstance(module, ACTIVATIONS)]
        self._pending: tuple[int, list, list, list, list, dict] | None = None
        self._rows: list[tuple[list, list]] = [([], []) for _ in range(n_models)]

    def _hook(self, name: str, module: nn.Module):
        def hook(_module, _inputs, output):
            if not (self.active and module.training and self.cfg.activations):
                return
            y = output.detach().float()
            for stat, value in activation_stats(module, y).items():
                self._keys.append(("scalar", (name, "output", "activation", stat)))
                self._values.append(value)
            if self.cfg.histograms:
                counts, lo, hi = histogram(y, self.cfg.bins, sync_free=True)
                self._keys.append(("hist", (name, "output", "activation")))
                self._values += [counts, lo, hi]
        return hook

    def start(self, step: int) -> bool:
        """Whether ``step`` is probed; when it is, the next forward pass records activations."""
        self.active = bool(self.schedule(step))
        self._keys, self._values = [], []
        return self.active

    def collected(self) -> list[torch.Tensor]:
        """The activation statistics recorded in this forward pass (returned from inside vmap)."""
        return list(self._values)

    def measure(self, step: int, activations: list[torch.Tensor], grads: dict, params: dict) -> None:
        """Record a probed step's activation statistics and the gradients and weights before the update."""
        keys, values, hist_keys, hists = [], [], [], []
        flat = iter(activations)
        for kind, key in self._keys:
            if kind == "scalar":
                keys.append(key)
                values.append(next(flat))
            else:
                hist_keys.append(key)
                hists.append(tuple(next(flat) for _ in range(3)))
        for quantity, tensors in (("grad", grads), ("weight", params)):
            for name, t in tensors.items():
                layer, _, tensor = name.rpartition(".")
                for stat, value in zip(TENSOR_STATS, _stacked_stats(t)):
                    keys.append((layer, tensor, quantity, stat))
                    values.append(value)
                if self.cfg.histograms:
                    hist_keys.append((layer, tensor, quantity))
                    hists.append(self._histograms(t))
        before = {name: p.clone() for name, p in params.items()}
        self._pending = (step, keys, values, hist_keys, hists, before)
        self.active = False

    def _histograms(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.cfg.log_magnitude:
            counts = vmap(lambda u: histogram(u.abs().clamp_min(1e-30).log10(), self.cfg.bins, LOG_RANGE, True)[0])(t)
            lo, hi = (torch.full((len(t),), b, device=t.device) for b in LOG_RANGE)
            return counts, lo, hi
        return vmap(lambda u: histogram(u, self.cfg.bins, sync_free=True))(t)

    def finish(self, params: dict) -> None:
        """After the optimizer step: add the update ratios and bring the step to the host."""
        step, keys, values, hist_keys, hists, before = self._pending
        for name, p in params.items():
            layer, _, tensor = name.rpartition(".")
            delta = (p - before[name]).flatten(1).norm(dim=1)
            keys.append((layer, tensor, "update_ratio", "norm"))
            values.append(delta / before[name].flatten(1).norm(dim=1).clamp_min(1e-30))
        bins, n_models = self.cfg.bins, self.n_models
        parts = [torch.stack(values).float().flatten()]
        parts += [torch.cat([c.float(), lo.float()[:, None], hi.float()[:, None]], 1).flatten() for c, lo, hi in hists]
        host = torch.cat(parts).cpu().numpy()
        scalars = host[: len(values) * n_models].reshape(len(values), n_models)
        blocks = host[len(values) * n_models:].reshape(len(hists), n_models, bins + 2)
        for m in range(n_models):
            rows, hist_rows = self._rows[m]
            rows += [(step, *key, float(scalars[i, m])) for i, key in enumerate(keys)]
            for key, block in zip(hist_keys, blocks[:, m]):
                hist_rows.append((step, *key, block[:bins].copy(), np.linspace(block[bins], block[bins + 1], bins + 1)))
        self._pending = None

    def take(self) -> list[tuple[list[tuple], list[tuple]]]:
        """Each model's statistic and histogram rows since the last take (as :meth:`Probe.take`)."""
        taken, self._rows = self._rows, [([], []) for _ in range(self.n_models)]
        return taken

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


def _stacked_stats(t: torch.Tensor) -> list[torch.Tensor]:
    """``TENSOR_STATS`` of each model's slice of a stacked tensor: norm, mean, std, abs_mean, max_abs."""
    flat = t.detach().flatten(1).float()
    std = flat.std(1) if flat.shape[1] > 1 else flat.new_zeros(len(flat))
    return [flat.norm(dim=1), flat.mean(1), std, flat.abs().mean(1), flat.abs().amax(1)]
