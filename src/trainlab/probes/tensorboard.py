"""TensorBoard export of probe statistics, histograms, per-epoch metrics and per-iteration curves."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter


def write_tensorboard(
    logdir: str | Path,
    stats: pd.DataFrame | None = None,
    histograms: pd.DataFrame | None = None,
    history: pd.DataFrame | None = None,
    curves: pd.DataFrame | None = None,
    replace: bool = False,
) -> Path:
    """Write TensorBoard event files into ``logdir`` and return it; with ``replace``, the event files
    already there first go (a run written again from the store shows each value once).

    ``stats`` and ``histograms`` are :meth:`Probe.frame` and :meth:`Probe.histograms` (tags
    ``grad/fc1.weight/norm``, ...; x axis: training step); ``history`` is a run's per-epoch
    metrics (tags ``metrics/test_acc``, ...; x axis: epoch); ``curves`` its per-iteration curves
    (:meth:`~trainlab.store.RunStore.curves`; tags ``curves/train_loss``, ...; x axis: training step).
    """
    from torch.utils.tensorboard import SummaryWriter

    logdir = Path(logdir)
    if replace:
        for old in logdir.glob("events.out.tfevents.*"):
            old.unlink()
    with SummaryWriter(str(logdir)) as writer:
        _probe_rows(writer, _rows(stats), _rows(histograms))
        for record in _records(history):
            _metrics(writer, record, "metrics", "epoch")
        for record in _records(curves):
            _metrics(writer, record, "curves", "step")
    return logdir


class TensorBoardStream:
    """TensorBoard event files written as runs train: an observer of a
    :class:`~trainlab.train.record.Recorder`, so every executor's epochs arrive as they end. Each run
    gets ``logdir/RUN_ID``, flushed after each message and closed when the run finishes."""

    def __init__(self, logdir: str | Path):
        self.logdir = Path(logdir)
        self._writers: dict[str, SummaryWriter] = {}

    def _writer(self, run_id: str) -> SummaryWriter:
        from torch.utils.tensorboard import SummaryWriter

        if run_id not in self._writers:
            self._writers[run_id] = SummaryWriter(str(self.logdir / run_id))
        return self._writers[run_id]

    def epoch(self, run_id: str, row: dict[str, Any]) -> None:
        writer = self._writer(run_id)
        _metrics(writer, row, "metrics", "epoch")
        writer.flush()

    def probes(self, run_id: str, stats: list[tuple], histograms: list[tuple]) -> None:
        _probe_rows(self._writer(run_id), stats, histograms)

    def curves(self, run_id: str, rows: list[tuple]) -> None:
        writer = self._writer(run_id)
        for step, name, value in rows:
            writer.add_scalar(f"curves/{name}", value, int(step))

    def finish(self, run_id: str, status: str, error: str | None = None, diverged_step: int | None = None) -> None:
        if run_id in self._writers:
            self._writers.pop(run_id).close()

    def close(self) -> None:
        """Close the event files of runs that did not finish (an interrupted study)."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


def _probe_rows(writer: SummaryWriter, stats: Iterable[tuple], histograms: Iterable[tuple]) -> None:
    """Probe statistic rows ``(step, layer, tensor, quantity, stat, value)`` as scalars and histogram rows
    ``(step, layer, tensor, quantity, counts, edges)`` as histograms."""
    for step, layer, tensor, quantity, stat, value in stats:
        writer.add_scalar(f"{quantity}/{layer}.{tensor}/{stat}", value, int(step))
    for step, layer, tensor, quantity, counts, edges in histograms:
        counts, edges = np.asarray(counts), np.asarray(edges)
        centres = (edges[:-1] + edges[1:]) / 2
        writer.add_histogram_raw(
            f"{quantity}/{layer}.{tensor}", min=float(edges[0]), max=float(edges[-1]), num=int(counts.sum()),
            sum=float(np.dot(counts, centres)), sum_squares=float(np.dot(counts, centres**2)),
            bucket_limits=edges[1:].tolist(), bucket_counts=counts.tolist(), global_step=int(step),
        )


def _metrics(writer: SummaryWriter, record: dict[str, Any], prefix: str, x: str) -> None:
    """Each value of ``record`` but ``x`` as a scalar tagged ``prefix/name`` against ``x``; NaN left out."""
    for name, value in record.items():
        if name != x and value is not None and pd.notna(value):
            writer.add_scalar(f"{prefix}/{name}", value, int(record[x]))


def _rows(frame: pd.DataFrame | None) -> list[tuple]:
    return [] if frame is None else list(frame.itertuples(index=False, name=None))


def _records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    return [] if frame is None else frame.to_dict(orient="records")
