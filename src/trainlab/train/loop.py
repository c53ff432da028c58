"""The training loop: one run of one configuration, resumable from its last epoch.

Read :func:`train_run` top to bottom to see the whole training step. The data stay on the
device as uint8 tensors; a batch is indexed, augmented and normalised there. Loss and
accuracy are summed on the device and brought to the host once per epoch, together with
the evaluation results, so there is no host sync per step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from trainlab.probes.embeddings import check_layer, features, sample_indices, save_embedding
from trainlab.config import ProbesConfig, RunConfig
from trainlab.data import ImageData, Split, augment_batch, load_data, to_float
from trainlab.models import create_model
from trainlab.probes.probe import PROBE_COLUMNS, PROBE_HISTOGRAM_COLUMNS, Probe
from trainlab.train.checkpoint import (
    load_checkpoint, load_probe_rows, restore_rng_state, rng_state, save_checkpoint,
)
from trainlab.train.optim import LRSchedule, make_optimizer, penalised_weights, penalty

METRICS = (
    "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
    "lr", "samples_per_s", "epoch_time", "wall_time",
)


@dataclass
class TrainResult:
    """Outcome of a run: ``status`` is ``done`` or ``diverged``; ``history`` has a row per epoch."""

    run_id: str
    status: str
    history: pd.DataFrame
    diverged_step: int | None = None
    stopped_early: bool = False
    model: nn.Module | None = field(default=None, repr=False)
    probes: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    probe_histograms: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    embeddings: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def final(self) -> dict[str, float]:
        """The last epoch's metrics (empty if no epoch finished)."""
        if self.history.empty:
            return {}
        return {k: float(v) for k, v in self.history.iloc[-1].items() if k != "epoch" and pd.notna(v)}


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """bfloat16 autocast on ``device`` when ``precision`` is ``bf16``; a no-op context for ``fp32``."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` CPU threads for torch's operators (unchanged when None)."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_run(
    cfg: RunConfig,
    data: ImageData | None = None,
    run_dir: Path | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    progress: bool = False,
    on_probes: Callable[[list[tuple], list[tuple]], None] | None = None,
) -> TrainResult:
    """Train ``cfg`` to the end, resuming from ``run_dir/checkpoint.pt`` when there is one.

    ``on_epoch`` receives each epoch's metrics row (including rows replayed from a checkpoint,
    so a store that upserts them ends up with exactly one row per epoch); ``on_probes`` the
    epoch's probe rows (see :meth:`trainlab.probes.Probe.take`), replayed the same way. With
    ``train.threads`` set, torch uses that many CPU threads for the run.
    """
    with intra_op_threads(cfg.train.threads):
        return _train(cfg, data, run_dir, on_epoch, progress, on_probes)


def probe_schedule(cfg: ProbesConfig, steps_per_epoch: int) -> Callable[[int], bool]:
    """Which global steps are probed: every N-th, or ``per_epoch`` evenly spaced ones plus each epoch's last."""
    if cfg.every:
        return lambda step: step % cfg.every == 0
    chosen = {i * steps_per_epoch // cfg.per_epoch for i in range(cfg.per_epoch)} | {steps_per_epoch - 1}
    return lambda step: step % steps_per_epoch in chosen


def _train(cfg: RunConfig, data: ImageData | None, run_dir: Path | None,
           on_epoch: Callable[[dict], None] | None, progress: bool,
           on_probes: Callable[[list[tuple], list[tuple]], None] | None) -> TrainResult:
    tc = cfg.train
    device = resolve_device(tc.device)
    data = (data or load_data(cfg.data)).to(device)
    mean, std = data.mean.to(device), data.std.to(device)
    train = data.train

    torch.manual_seed(tc.seed)
    model = create_model(cfg.model, data.input_shape, data.num_classes).to(device)
    memory_format = torch.channels_last if tc.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = make_optimizer(model, tc)
    schedule = LRSchedule(tc)
    generator = torch.Generator(device=device).manual_seed(tc.seed)
    weights = penalised_weights(model)
    steps_per_epoch = math.ceil(len(train) / tc.batch_size)

    history: list[dict] = []
    probe_history: list[tuple[list[tuple], list[tuple]]] = []  # per epoch: (stat rows, histogram rows)
    state = load_checkpoint(run_dir)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        restore_rng_state(state["rng"], device, generator)
        history, probe_history = state["history"], load_probe_rows(run_dir, state["epoch"])
        for row, probed in zip(history, probe_history):
            if on_epoch:
                on_epoch(row)
            if on_probes:
                on_probes(*probed)
    pc = cfg.probes
    probe = Probe(model, bins=pc.bins, histograms=pc.histograms, log_magnitude=pc.log_magnitude,
                  activations=pc.activations, schedule=probe_schedule(pc, steps_per_epoch)) if pc.enabled else None
    if probe is not None:
        probe.steps_seen = len(history) * steps_per_epoch
        probe.__enter__()

    result = TrainResult(cfg.run_id(), "done", pd.DataFrame(), model=model)
    embed = _embedder(cfg, model, data, run_dir, result.embeddings)
    if not history:
        embed(0)
    wall_start = time.perf_counter() - (history[-1]["wall_time"] if history else 0.0)
    bar = tqdm(total=tc.epochs * steps_per_epoch, initial=len(history) * steps_per_epoch,
               disable=not progress, unit="step", leave=False, dynamic_ncols=True)
    splits = {name: s for name, s in (("val", data.val), ("test", data.test)) if s is not None}
    for epoch in range(len(history), tc.epochs):
        if _should_stop(history, tc.early_stopping):
            break
        bar.set_description(f"epoch {epoch + 1}/{tc.epochs}")
        lr = schedule.lr(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr

        # ---- one epoch of training
        model.train()
        start = time.perf_counter()
        step_losses = torch.empty(steps_per_epoch, device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        order = torch.randperm(len(train), generator=generator, device=device)
        shuffled_x, shuffled_y = train.take(order)  # one gather per epoch; batches are slices
        for step in range(steps_per_epoch):
            batch = slice(step * tc.batch_size, (step + 1) * tc.batch_size)
            x = to_float(augment_batch(shuffled_x[batch], cfg.data.augment, generator), mean, std)
            y = shuffled_y[batch]
            with autocast(device, tc.precision):
                logits = model(x.contiguous(memory_format=memory_format) if x.dim() == 4 else x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=tc.label_smoothing)
            objective = loss + penalty(weights, tc.l1, tc.l2) if (tc.l1 or tc.l2) else loss
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            if probe is not None:
                probe.step()
            if tc.clip_grad:
                nn.utils.clip_grad_norm_(model.parameters(), tc.clip_grad, foreach=True)
            optimizer.step()
            step_losses[step] = loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            bar.update(1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_time = time.perf_counter() - start

        # ---- evaluation, then one transfer to the host
        with autocast(device, tc.precision):
            evals = [evaluate(model, split, mean, std, tc.eval_batch_size) for split in splits.values()]
        sums = torch.cat([step_losses.sum().view(1), correct.view(1).float(), *evals]).tolist()
        if not math.isfinite(sums[0]):
            first_bad = int((~torch.isfinite(step_losses)).nonzero()[0])
            result.status, result.diverged_step = "diverged", epoch * steps_per_epoch + first_bad
            break

        row = {"epoch": epoch + 1, "train_loss": sums[0] / len(train), "train_acc": sums[1] / len(train)}
        for i, (name, split) in enumerate(splits.items()):
            row |= {f"{name}_loss": sums[2 + 2 * i] / len(split), f"{name}_acc": sums[3 + 2 * i] / len(split)}
        row |= {
            "lr": lr,
            "samples_per_s": len(train) / train_time,
            "epoch_time": time.perf_counter() - start,
            "wall_time": time.perf_counter() - wall_start,
        }
        history.append(row)
        probe_history.append(probe.take() if probe is not None else ([], []))
        embed(epoch + 1)
        schedule.observe(row.get("val_loss", row["train_loss"]))
        if run_dir is not None:
            save_checkpoint(run_dir, {
                "epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(), "rng": rng_state(device, generator), "history": history,
            }, probe_history[-1])
        if on_epoch:
            on_epoch(row)
        if on_probes:
            on_probes(*probe_history[-1])
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", acc=f"{row['train_acc']:.3f}",
                        test_acc=f"{row['test_acc']:.3f}", sps=f"{row['samples_per_s']:.0f}")
    bar.close()
    if probe is not None:
        probe.close()
    result.probes = pd.DataFrame([r for rows, _ in probe_history for r in rows], columns=PROBE_COLUMNS)
    result.probe_histograms = pd.DataFrame([h for _, hists in probe_history for h in hists],
                                           columns=PROBE_HISTOGRAM_COLUMNS)
    result.history = pd.DataFrame(history, columns=["epoch", *[m for m in METRICS if not history or m in history[0]]])
    result.stopped_early = _should_stop(history, tc.early_stopping) and len(history) < tc.epochs
    return result


def _embedder(cfg: RunConfig, model: nn.Module, data: ImageData, run_dir: Path | None,
              kept: dict[int, torch.Tensor]) -> Callable[[int], None]:
    """``embed(epoch)``: save the embedding features when ``epoch`` is in ``probes.embeddings_at``.

    Features go to ``run_dir/embeddings/`` (before the checkpoint, so a resumed run has them) or,
    without a run folder, into ``kept``.
    """
    pc = cfg.probes
    if not pc.embeddings_at:
        return lambda epoch: None
    check_layer(model, pc.embedding_layer)
    split = data.test if data.test is not None else data.val
    indices = sample_indices(len(split), pc.embedding_samples).to(split.x.device)
    x, y = split.take(indices)

    def embed(epoch: int) -> None:
        if epoch not in pc.embeddings_at:
            return
        feats = features(model, x, data.mean.to(x.device), data.std.to(x.device), pc.embedding_layer,
                         cfg.train.eval_batch_size)
        if run_dir is None:
            kept[epoch] = feats
        else:
            save_embedding(run_dir, epoch, feats, y, indices)

    return embed


def _should_stop(history: list[dict], patience: int | None) -> bool:
    """Early stopping: the validation loss has not improved for ``patience`` epochs."""
    if not patience or len(history) <= patience:
        return False
    losses = [row["val_loss"] for row in history]
    best = losses.index(min(losses))
    return len(losses) - 1 - best >= patience
