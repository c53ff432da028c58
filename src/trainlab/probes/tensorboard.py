"""TensorBoard export of probe statistics, histograms, per-epoch metrics and per-iteration curves."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

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
) -> Path:
    """Write TensorBoard event files into ``logdir`` and return it.

    ``stats`` and ``histograms`` are :meth:`Probe.frame` and :meth:`Probe.histograms` (tags
    ``grad/fc1.weight/norm``, ...; x axis: training step); ``history`` is a run's per-epoch
    metrics (tags ``metrics/test_acc``, ...; x axis: epoch); ``curves`` its per-iteration curves
    (:meth:`~trainlab.store.RunStore.curves`; tags ``curves/train_loss``, ...; x axis: training step).
    """
    from torch.utils.tensorboard import SummaryWriter

    logdir = Path(logdir)
    with SummaryWriter(str(logdir)) as writer:
        for row in (stats if stats is not None else pd.DataFrame()).itertuples(index=False):
            writer.add_scalar(f"{row.quantity}/{row.layer}.{row.tensor}/{row.stat}", row.value, int(row.step))
        for row in (histograms if histograms is not None else pd.DataFrame()).itertuples(index=False):
            centres = (row.edges[:-1] + row.edges[1:]) / 2
            writer.add_histogram_raw(
                f"{row.quantity}/{row.layer}.{row.tensor}", min=float(row.edges[0]), max=float(row.edges[-1]),
                num=int(row.counts.sum()), sum=float(np.dot(row.counts, centres)),
                sum_squares=float(np.dot(row.counts, centres**2)), bucket_limits=row.edges[1:].tolist(),
                bucket_counts=row.counts.tolist(), global_step=int(row.step),
            )
        _columns(writer, history, "metrics", "epoch")
        _columns(writer, curves, "curves", "step")
    return logdir


def _columns(writer: SummaryWriter, frame: pd.DataFrame | None, prefix: str, x: str) -> None:
    """Each column of ``frame`` but ``x`` as scalars tagged ``prefix/column`` against ``x``; NaN left out."""
    for record in (frame if frame is not None else pd.DataFrame()).to_dict(orient="records"):
        for name, value in record.items():
            if name != x and pd.notna(value):
                writer.add_scalar(f"{prefix}/{name}", value, int(record[x]))
