"""The epoch loop shared by a plain run (:mod:`trainlab.train.plain`) and an ensemble (:mod:`trainlab.train.ensemble`).

The two differ only in their :class:`Trainer`: the model (or the stack of models) and its
step. Everything else is here or in the runs' :class:`~trainlab.train.bookkeeping.RunBook`:
the epoch's batches, the sums kept on the device and brought to the host once per epoch with
the evaluation (the per-iteration curves of ``probes.curve_every`` too), the divergence check,
the metric rows and the checkpoints.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

import torch
from tqdm.auto import tqdm

from trainlab.config import ProbesConfig, RunConfig
from trainlab.data import ImageData, Split
from trainlab.errors import UserError
from trainlab.train.batches import epoch_batches
from trainlab.train.bookkeeping import CurveRows, ProbeRows, RunBook, TrainResult
from trainlab.train.cores import LoadMeter, free_cores


class Trainer(Protocol):
    """A model, or a stack of ``n_models`` models, and how one training step changes it."""

    n_models: int
    stacked: bool  # batches have the models along their first dimension

    def set_lr(self, lrs: list[float]) -> None:
        """Each model's learning rate for the coming epoch."""

    def train_mode(self) -> None:
        """Put the model(s) in training mode."""

    def step(self, x: torch.Tensor, y: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One training step at global ``step``: each model's mean loss and correct count, ``(M,)`` each."""

    def evaluate(self, split: Split, batch_size: int) -> torch.Tensor:
        """``(M, 2)``: each model's summed loss and correct count over ``split``."""

    def module(self, m: int) -> torch.nn.Module:
        """Model ``m`` as a plain module with its current weights."""

    def state(self, m: int) -> dict:
        """Model ``m``'s ``model`` and ``optimizer`` state dicts, as a plain run checkpoints them."""

    def probe_rows(self) -> list[ProbeRows]:
        """Each model's probe rows since the last call."""

    def close(self) -> None:
        """Remove hooks."""


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when present, else CPU; a GPU this machine does not have is a UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    gpus = torch.cuda.device_count() if device.type == "cuda" and torch.cuda.is_available() else 0
    if device.type == "cuda" and (device.index or 0) >= gpus:
        valid = ["auto", "cpu", *(["cuda"] if gpus else []), *(f"cuda:{i}" for i in range(gpus))]
        problem = f"there is no GPU {device.index} ({gpus} found)" if gpus else "CUDA is not available"
        raise UserError(f"train.device {name!r}: {problem} on this machine; valid choices: "
                        + ", ".join(valid))
    return device


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """bfloat16 autocast on ``device`` when ``precision`` is ``bf16`` (or ``auto`` resolves to it,
    :func:`resolve_precision`); a no-op context for ``fp32``."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=resolve_precision(precision, device) == "bf16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``fp32`` or ``bf16``: ``auto`` is ``bf16`` where ``device`` computes in bfloat16 natively."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device.type) else "fp32"


@functools.lru_cache(maxsize=None)
def native_bf16(device_type: str) -> bool:
    """Whether ``device_type`` (``cpu``, ``cuda``) has bfloat16 arithmetic in hardware.

    CUDA: ``torch.cuda.is_bf16_supported()`` without emulation (compute capability 8.0 and later).
    CPU: the AVX512-BF16 or AMX-BF16 instructions, from the kernel's CPU flags (Linux); False elsewhere.
    """
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device_type == "cpu":
        return bool(BF16_FLAGS & cpu_flags())
    return False


def cpu_flags() -> set[str]:
    """The CPU's feature flags as the Linux kernel lists them (``/proc/cpuinfo``); empty elsewhere."""
    try:
        with open("/proc/cpuinfo") as info:
            return next((set(line.split(":", 1)[1].split()) for line in info if line.startswith("flags")), set())
    except OSError:
        return set()


@contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` CPU threads for torch's operators; when None, with as many as
    torch has, but no more than the cores other jobs leave free (:mod:`trainlab.train.cores`)."""
    previous = torch.get_num_threads()
    threads = threads or (min(previous, free_cores()) if previous > 1 else None)
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


BF16_FLAGS = {"avx512_bf16", "amx_bf16"}  # CPU flags of native bfloat16 arithmetic
# A probed step costs about two training steps on 2 CPU cores (the 001 MLP: bench/probe_step.py, bench/run.py):
# one probed step in 10 keeps the probes under about 10% of the training time (bench/run.py --only probes).
PROBE_GAP = 10


def probe_schedule(cfg: ProbesConfig, steps: int) -> Callable[[int], bool]:
    """Which global steps are probed: every N-th (``every``), or the per-epoch schedule.

    Per epoch of ``steps``: its last step and up to ``per_epoch`` evenly spaced ones from its first,
    at most one probed step in every ``PROBE_GAP`` (short epochs probe fewer steps, so that probes
    cost at most about a tenth of the training time), and the run's very first step (the network
    as initialised) in any case.
    """
    if cfg.every:
        return lambda step: step % cfg.every == 0
    spaced = min(cfg.per_epoch, steps // PROBE_GAP - 1)
    chosen = {i * steps // spaced for i in range(spaced)} | {steps - 1}
    return lambda step: step == 0 or step % steps in chosen


def steps_per_epoch(cfg: RunConfig, data: ImageData) -> int:
    """Training steps in one epoch of ``cfg`` on ``data`` (the last batch may be smaller)."""
    return math.ceil(len(data.train) / cfg.train.batch_size)


def run_epochs(trainer: Trainer, books: list[RunBook], data: ImageData, progress: bool = False) -> list[TrainResult]:
    """Train every run of ``books`` from its last recorded epoch to the end, with ``trainer``'s step.

    All books are at the same epoch. A run that diverges or stops early stops being recorded;
    its model still trains with the others until none is left. An epoch's time is shared
    equally among the runs still recorded.
    """
    tc, train = books[0].cfg.train, data.train
    steps = steps_per_epoch(books[0].cfg, data)
    splits = {name: s for name, s in (("val", data.val), ("test", data.test)) if s is not None}
    start_epoch = len(books[0].history)
    bar = tqdm(total=tc.epochs * steps, initial=start_epoch * steps,
               disable=not progress, unit="step", leave=False, dynamic_ncols=True)
    load = LoadMeter()
    for epoch in range(start_epoch, tc.epochs):
        live = _live_runs(books)
        if not live:
            break
        ensemble = f"ensemble of {len(live)}, " if trainer.stacked else ""
        bar.set_description(f"{ensemble}epoch {epoch + 1}/{tc.epochs}")
        lrs = [book.schedule.lr(epoch) for book in books]
        trainer.set_lr(lrs)

        start = time.perf_counter()
        step_losses, step_hits = _train_epoch(trainer, books, data, epoch * steps, bar)
        train_time = time.perf_counter() - start
        evals = [trainer.evaluate(split, tc.eval_batch_size) for split in splits.values()]
        sums, curves = _to_host(step_losses, step_hits, evals, books[0].cfg, len(train), epoch * steps)
        epoch_time = time.perf_counter() - start
        elsewhere = load.lap()
        probed = trainer.probe_rows()
        for m in live:
            if not math.isfinite(sums[m][0]):
                books[m].diverge(epoch * steps + int((~torch.isfinite(step_losses[:, m])).nonzero()[0]))
                continue
            row = {"epoch": epoch + 1, **_metrics(sums[m], {"train": train, **splits}), "lr": lrs[m],
                   "samples_per_s": len(train) * len(live) / train_time, "epoch_time": epoch_time / len(live),
                   "wall_time": books[m].wall_time + epoch_time / len(live),
                   "runs_together": len(live) if trainer.stacked else 1, "cpu_elsewhere": elsewhere}
            trainer.module(m)  # brings a stacked model's weights into its plain module for the embeddings
            books[m].end_epoch(row, probed[m], curves[m], lambda m=m: trainer.state(m))
        if not trainer.stacked:
            _show_metrics(bar, books[0])
    bar.close()
    trainer.close()
    return [book.result(trainer.module(m)) for m, book in enumerate(books)]


def _live_runs(books: list[RunBook]) -> list[int]:
    """Indices of the runs still training, after each has checked its early stopping."""
    for book in books:
        if book.active:
            book.check_early_stop()
    return [m for m, book in enumerate(books) if book.active]


def _show_metrics(bar: tqdm, book: RunBook) -> None:
    """The last epoch's loss, accuracies and throughput of a run on its progress bar."""
    if book.history:
        row = book.history[-1]
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", acc=f"{row['train_acc']:.3f}",
                        test_acc=f"{row.get('test_acc', float('nan')):.3f}", sps=f"{row['samples_per_s']:.0f}")


def _metrics(sums: list[float], splits: dict[str, Split]) -> dict[str, float]:
    """``<split>_loss`` and ``<split>_acc`` from a run's summed losses and correct counts, split by split."""
    row = {}
    for i, (name, split) in enumerate(splits.items()):
        row |= {f"{name}_loss": sums[2 * i] / len(split), f"{name}_acc": sums[2 * i + 1] / len(split)}
    return row


def _to_host(step_losses: torch.Tensor, step_hits: torch.Tensor, evals: list[torch.Tensor], cfg: RunConfig,
             n_train: int, first_step: int) -> tuple[list[list[float]], list[CurveRows]]:
    """An epoch's sums per model (training loss and correct count, then each split's) and, with
    ``probes.curve_every``, its curve rows per model: one transfer to the host."""
    every = cfg.probes.curve_every
    parts = [step_losses.sum(0)[:, None], step_hits.sum(0)[:, None].float(), *evals]
    width = 2 + 2 * len(evals)
    if every:
        parts += [_grouped(step_losses, every), _grouped(step_hits.float(), every)]
    host = torch.cat(parts, dim=1).tolist()
    if not every:
        return host, [[] for _ in host]
    sizes = _group_sizes(len(step_losses), cfg.train.batch_size, n_train, every)
    return [row[:width] for row in host], [_curve_rows(row[width:], sizes, first_step) for row in host]


def _grouped(per_step: torch.Tensor, every: int) -> torch.Tensor:
    """``(M, G)``: the ``(steps, M)`` values summed over each group of ``every`` consecutive steps (the last
    group of the epoch may be shorter), on the device."""
    steps = per_step.shape[0]
    groups = torch.arange(steps, device=per_step.device) // every
    return torch.zeros(math.ceil(steps / every), per_step.shape[1], device=per_step.device) \
        .index_add_(0, groups, per_step.float()).T


def _group_sizes(steps: int, batch_size: int, n_train: int, every: int) -> list[tuple[int, int]]:
    """Per group of ``every`` steps of an epoch: its last step (0-based, within the epoch) and its samples."""
    sizes = [batch_size] * (steps - 1) + [n_train - (steps - 1) * batch_size]
    starts = range(0, steps, every)
    return [(min(start + every, steps) - 1, sum(sizes[start : start + every])) for start in starts]


def _curve_rows(sums: list[float], sizes: list[tuple[int, int]], first_step: int) -> CurveRows:
    """One model's curve rows ``(step, name, value)`` from its group sums (losses, then correct counts):
    the mean training loss and accuracy over each group's samples, at the group's last global step."""
    rows: CurveRows = []
    for g, (last, n) in enumerate(sizes):
        step = first_step + last
        rows += [(step, "train_loss", sums[g] / n), (step, "train_acc", sums[len(sizes) + g] / n)]
    return rows


def _train_epoch(trainer: Trainer, books: list[RunBook], data: ImageData, first_step: int,
                 bar: tqdm) -> tuple[torch.Tensor, torch.Tensor]:
    """One epoch of steps; ``(steps, M)`` summed losses and correct counts per step, on the device."""
    cfg, train = books[0].cfg, data.train
    device = train.x.device
    step_losses = torch.empty(steps_per_epoch(cfg, data), trainer.n_models, device=device)
    step_hits = torch.empty(steps_per_epoch(cfg, data), trainer.n_models, device=device, dtype=torch.long)
    trainer.train_mode()
    batches = epoch_batches(train, cfg.train.batch_size, cfg.data.augment, [b.generator for b in books],
                            data.mean, data.std, stacked=trainer.stacked)
    for step, (x, y) in enumerate(batches):
        loss, hits = trainer.step(x, y, first_step + step)
        step_losses[step] = loss * y.shape[-1]
        step_hits[step] = hits
        bar.update(1)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return step_losses, step_hits
