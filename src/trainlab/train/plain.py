"""A plain run: one model trained by :func:`train_run`, resumable from its last epoch.

:class:`PlainTrainer.step` is the whole training step; the epoch loop around it
(:func:`~trainlab.train.loop.run_epochs`) is shared with vectorised ensembles. The data
stay on the device as uint8 tensors; a batch is gathered, augmented and normalised there.
Loss and accuracy are summed on the device and brought to the host once per epoch, together
with the evaluation results, so there is no host sync per step.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from trainlab.config import RunConfig
from trainlab.data import ImageData, Split, load_data, to_float
from trainlab.models import create_model
from trainlab.probes.probe import Probe
from trainlab.train.bookkeeping import ProbeRows, RunBook, TrainResult
from trainlab.train.checkpoint import resume_checkpoint
from trainlab.train.loop import (
    autocast, intra_op_threads, probe_schedule, resolve_device, run_epochs, steps_per_epoch,
)
from trainlab.train.optim import keras_decay, make_optimizer, penalised_weights, penalty


def train_run(
    cfg: RunConfig,
    data: ImageData | None = None,
    run_dir: Path | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    progress: bool = False,
    on_probes: Callable[[list[tuple], list[tuple]], None] | None = None,
    on_curves: Callable[[list[tuple]], None] | None = None,
) -> TrainResult:
    """Train ``cfg`` to the end, resuming from the last readable checkpoint in ``run_dir`` when there is one.

    ``on_epoch`` receives each epoch's metrics row (including rows replayed from a checkpoint,
    so a store that upserts them ends up with exactly one row per epoch); ``on_probes`` the
    epoch's probe rows (see :meth:`trainlab.probes.Probe.take`) and ``on_curves`` its curve rows
    ``(step, name, value)`` (with ``probes.curve_every``), replayed the same way. With
    ``train.threads`` set, torch uses that many CPU threads for the run.
    """
    with intra_op_threads(cfg.train.threads):
        device = resolve_device(cfg.train.device)
        data = (data or load_data(cfg.data)).to(device)
        book = RunBook(cfg, run_dir, device, on_epoch, on_probes, on_curves)
        model = new_model(cfg, data, device)
        trainer = PlainTrainer(cfg, model, data)
        state = resume_checkpoint(run_dir)
        if state is not None:
            trainer.load(state)
        book.resume(state)
        book.watch_embeddings(model, data)
        return run_epochs(trainer, [book], data, progress)[0]


def new_model(cfg: RunConfig, data: ImageData, device: torch.device) -> nn.Module:
    """``cfg``'s model with the initial weights of seed ``train.seed``, on ``device``."""
    torch.manual_seed(cfg.train.seed)
    return create_model(cfg.model, data.input_shape, data.num_classes).to(device)


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, mean: torch.Tensor, std: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Summed cross-entropy and correct count over ``split``, as a device tensor ``[loss_sum, correct]``."""
    model.eval()
    sums = torch.zeros(2, device=split.x.device)
    for i in range(0, len(split), batch_size):
        logits = model(to_float(split.x[i : i + batch_size], mean, std))
        y = split.y[i : i + batch_size]
        sums[0] += F.cross_entropy(logits.float(), y, reduction="sum")
        sums[1] += (logits.argmax(1) == y).sum()
    return sums


class PlainTrainer:
    """One model, its optimizer and its probe (see :class:`~trainlab.train.loop.Trainer`)."""

    n_models, stacked = 1, False

    def __init__(self, cfg: RunConfig, model: nn.Module, data: ImageData):
        self.cfg, self.tc = cfg, cfg.train
        self.mean, self.std = data.mean, data.std
        self.device = next(model.parameters()).device
        self.memory_format = torch.channels_last if self.tc.channels_last else torch.contiguous_format
        self.model = model.to(memory_format=self.memory_format)
        self.optimizer = make_optimizer(model, self.tc)
        self.epoch_lr = self.tc.lr
        self.weights = penalised_weights(model)
        pc = cfg.probes
        self.probe = Probe(model, bins=pc.bins, histograms=pc.histograms, log_magnitude=pc.log_magnitude,
                           activations=pc.activations, derivatives=pc.derivatives, output_grads=pc.output_grads,
                           schedule=probe_schedule(pc, steps_per_epoch(cfg, data))).__enter__() if pc.enabled else None

    def load(self, state: dict) -> None:
        """Take up a checkpoint's model and optimizer state."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])

    def set_lr(self, lrs: list[float]) -> None:
        self.epoch_lr = lrs[0]
        self._apply_lr(self.epoch_lr)

    def _apply_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def train_mode(self) -> None:
        self.model.train()

    def step(self, x: torch.Tensor, y: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        tc, model = self.tc, self.model
        if self.probe is not None:
            self.probe.steps_seen = step
        with autocast(self.device, tc.precision):
            logits = model(x.contiguous(memory_format=self.memory_format) if x.dim() == 4 else x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=tc.label_smoothing)
        objective = loss + penalty(self.weights, tc.l1, tc.l2, tc.penalty) if (tc.l1 or tc.l2) else loss
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        if self.probe is not None:
            self.probe.step()
        if tc.clip_grad:
            nn.utils.clip_grad_norm_(model.parameters(), tc.clip_grad, foreach=True)
        if tc.lr_decay:  # a host float: no device sync
            self._apply_lr(keras_decay(self.epoch_lr, tc.lr_decay, step))
        self.optimizer.step()
        return loss.detach().view(1), (logits.detach().argmax(1) == y).sum().view(1)

    def evaluate(self, split: Split, batch_size: int) -> torch.Tensor:
        with autocast(self.device, self.tc.precision):
            return evaluate(self.model, split, self.mean, self.std, batch_size).view(1, 2)

    def module(self, m: int) -> nn.Module:
        return self.model

    def state(self, m: int) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def probe_rows(self) -> list[ProbeRows]:
        return [self.probe.take() if self.probe is not None else ([], [])]

    def close(self) -> None:
        if self.probe is not None:
            self.probe.close()
