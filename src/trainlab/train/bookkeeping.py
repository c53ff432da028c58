"""One run's bookkeeping, the same for a plain run and for each model of an ensemble.

A :class:`RunBook` holds what belongs to the run rather than to its model: its data order and
learning-rate schedule, its per-epoch history, probe rows and per-iteration curve rows, its
embedding snapshots and checkpoints, and how it ended. It resumes all of that from a checkpoint,
replaying the rows already recorded, and assembles the :class:`TrainResult`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from trainlab.config import RunConfig
from trainlab.data import ImageData
from trainlab.probes.embeddings import check_layer, features, sample_indices, save_embedding
from trainlab.probes.stats import PROBE_COLUMNS, PROBE_HISTOGRAM_COLUMNS
from trainlab.store import step_frame
from trainlab.train.checkpoint import restore_rng_state, rng_state, save_checkpoint
from trainlab.train.optim import LRSchedule

METRICS = (
    "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
    "lr", "samples_per_s", "epoch_time", "wall_time", "runs_together", "cpu_elsewhere",
)
# how an epoch was timed, which differs between two trainings of the same run: its throughput and times,
# how many runs trained with it as one vectorised ensemble (sharing its time), and the share of the
# machine's CPU that other processes used meanwhile (trainlab.train.cores.LoadMeter)
TIMING = ("samples_per_s", "epoch_time", "wall_time", "runs_together", "cpu_elsewhere")
ProbeRows = tuple[list[tuple], list[tuple]]  # one epoch's (statistic rows, histogram rows)
CurveRows = list[tuple[int, str, float]]  # one epoch's per-iteration curve rows (step, name, value)


@dataclass
class TrainResult:
    """Outcome of a run: ``status`` is ``done`` or ``diverged``; ``history`` has a row per epoch; ``curves``
    a row per group of ``probes.curve_every`` steps (``step``, ``train_loss``, ``train_acc``)."""

    run_id: str
    status: str
    history: pd.DataFrame
    diverged_step: int | None = None
    stopped_early: bool = False
    model: nn.Module | None = field(default=None, repr=False)
    probes: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    probe_histograms: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    embeddings: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)
    curves: pd.DataFrame = field(default_factory=lambda: step_frame([]), repr=False)
    reused: bool = False  # returned from the run store, finished earlier, not trained now

    @property
    def final(self) -> dict[str, float]:
        """The last epoch's metrics (empty if no epoch finished)."""
        if self.history.empty:
            return {}
        return {k: float(v) for k, v in self.history.iloc[-1].items() if k != "epoch" and pd.notna(v)}


def should_stop_early(history: list[dict], patience: int | None) -> bool:
    """Early stopping: the validation loss has not improved for ``patience`` epochs."""
    if not patience or len(history) <= patience:
        return False
    losses = [row["val_loss"] for row in history]
    return len(losses) - 1 - losses.index(min(losses)) >= patience


class RunBook:
    """The bookkeeping of one run (see the module docstring).

    ``on_epoch(row)``, ``on_probes(stats, histograms)`` and ``on_curves(rows)`` receive each epoch's
    rows, replayed ones included, so a store that upserts them ends with exactly one row per epoch.
    """

    def __init__(self, cfg: RunConfig, run_dir: Path | None, device: torch.device,
                 on_epoch: Callable[[dict], None] | None = None,
                 on_probes: Callable[[list[tuple], list[tuple]], None] | None = None,
                 on_curves: Callable[[CurveRows], None] | None = None):
        self.cfg, self.run_dir, self.device = cfg, run_dir, device
        self.on_epoch, self.on_probes, self.on_curves = on_epoch, on_probes, on_curves
        self.generator = torch.Generator(device=device).manual_seed(cfg.train.seed)
        self.schedule = LRSchedule(cfg.train)
        self.history: list[dict] = []
        self.probe_history: list[ProbeRows] = []
        self.curve_history: list[CurveRows] = []
        self.status, self.diverged_step, self.stopped_early = "done", None, False
        self.wall_time = 0.0
        self.embeddings: dict[int, torch.Tensor] = {}
        self._embed: Callable[[int], None] = lambda epoch: None

    @property
    def active(self) -> bool:
        """Whether the run still trains: it has neither diverged nor stopped early."""
        return self.status == "done" and not self.stopped_early

    def resume(self, state: dict[str, Any] | None) -> None:
        """Take up a checkpoint's schedule, random state, history, probe and curve rows, replaying the rows.

        ``state`` comes from :func:`~trainlab.train.checkpoint.resume_checkpoint`, with its probe rows;
        a checkpoint written before curves were recorded has none.
        """
        if state is None:
            return
        self.schedule.load_state_dict(state["schedule"])
        restore_rng_state(state["rng"], self.device, self.generator)
        self.history, self.probe_history = state["history"], state["probe_rows"]
        self.curve_history = state.get("curves") or [[] for _ in self.history]
        self.wall_time = self.history[-1]["wall_time"] if self.history else 0.0
        for row, probed, curves in zip(self.history, self.probe_history, self.curve_history):
            self._report(row, probed, curves)

    def watch_embeddings(self, model: nn.Module, data: ImageData) -> None:
        """Save ``model``'s embedding features at the epochs in ``probes.embeddings_at``.

        Features go to ``run_dir/embeddings/`` (before the checkpoint, so a resumed run has them) or,
        without a run folder, into :attr:`embeddings`.
        """
        pc = self.cfg.probes
        if not pc.embeddings_at:
            return
        check_layer(model, pc.embedding_layer)
        split = data.test if data.test is not None else data.val
        indices = sample_indices(len(split), pc.embedding_samples).to(split.x.device)
        x, y = split.take(indices)

        def embed(epoch: int) -> None:
            if epoch not in pc.embeddings_at:
                return
            feats = features(model, x, data.mean.to(x.device), data.std.to(x.device), pc.embedding_layer,
                             self.cfg.train.eval_batch_size)
            if self.run_dir is None:
                self.embeddings[epoch] = feats
            else:
                save_embedding(self.run_dir, epoch, feats, y, indices)

        self._embed = embed
        if not self.history:
            embed(0)

    def check_early_stop(self) -> None:
        """Stop the run when :func:`should_stop_early` says so for ``train.early_stopping``."""
        self.stopped_early = should_stop_early(self.history, self.cfg.train.early_stopping)

    def diverge(self, step: int) -> None:
        """The loss became non-finite at global ``step``: the run ends there."""
        self.status, self.diverged_step = "diverged", step

    def end_epoch(self, row: dict, probed: ProbeRows, curves: CurveRows,
                  state: Callable[[], dict[str, Any]]) -> None:
        """Record an epoch: history, probe and curve rows, embeddings, schedule, checkpoint, then callbacks.

        ``state()`` gives the model's and optimizer's state dicts for the checkpoint.
        """
        self.history.append(row)
        self.probe_history.append(probed)
        self.curve_history.append(curves)
        self.wall_time = row["wall_time"]
        self._embed(row["epoch"])
        self.schedule.observe(row.get("val_loss", row["train_loss"]))
        if self.run_dir is not None:
            save_checkpoint(self.run_dir, {
                "epoch": row["epoch"], **state(), "schedule": self.schedule.state_dict(),
                "rng": rng_state(self.device, self.generator), "history": self.history,
                "curves": self.curve_history,
            }, probed)
        self._report(row, probed, curves)

    def _report(self, row: dict, probed: ProbeRows, curves: CurveRows) -> None:
        if self.on_epoch:
            self.on_epoch(row)
        if self.on_probes:
            self.on_probes(*probed)
        if self.on_curves and curves:
            self.on_curves(curves)

    def result(self, model: nn.Module) -> TrainResult:
        """The run's :class:`TrainResult`, with ``model`` as trained."""
        history = self.history
        columns = ["epoch", *[m for m in METRICS if not history or m in history[0]]]
        return TrainResult(
            self.cfg.run_id(), self.status, pd.DataFrame(history, columns=columns), self.diverged_step,
            self.stopped_early, model,
            pd.DataFrame([r for rows, _ in self.probe_history for r in rows], columns=PROBE_COLUMNS),
            pd.DataFrame([h for _, hists in self.probe_history for h in hists], columns=PROBE_HISTOGRAM_COLUMNS),
            self.embeddings, step_frame([r for rows in self.curve_history for r in rows]),
        )

