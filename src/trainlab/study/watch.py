"""A running study at a glance: per variant its runs, epochs, current and final metric, and time left.

:func:`progress` reads only the run store, which every executor's driver writes as each epoch
ends, so it shows a study trained by any executor, from any process; :func:`watch` repeats it until
every run has ended (``trainlab status STUDY --watch`` in a second terminal).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainlab.store import STOPPED, RunStore
from trainlab.study.run import findings_metric, plan_study, with_added_seeds
from trainlab.study.spec import PlannedRun, StudySpec


def progress(study: str | Path | dict[str, Any], store: RunStore, scale: str | None = None,
             overrides: list[str] | dict | None = None, metric: str | None = None) -> pd.DataFrame:
    """One row per variant of the study as the store has it now.

    Columns: ``variant``; ``runs`` planned, of them ``done``, ``running`` and ``ended`` (done, diverged,
    failed or interrupted: nothing trains them now); ``epochs`` recorded of ``planned_epochs``;
    ``now``, the mean over its runs with an epoch of each one's latest ``metric`` (default: the one the
    study's findings rank by, ``test_acc`` unless it says otherwise); ``final``, the mean
    over its done runs; ``left``, seconds until its runs end: the epochs still to train at its median
    epoch time so far, divided among its runs training now (NaN before its first epoch).
    """
    spec, runs = plan_study(study, scale, overrides)
    return _progress(spec, with_added_seeds(spec, runs, scale, overrides, store), store, metric)


def watch(study: str | Path | dict[str, Any], store: RunStore, every: float, scale: str | None = None,
          overrides: list[str] | dict | None = None, metric: str | None = None) -> Iterator[pd.DataFrame]:
    """:func:`progress` every ``every`` seconds, until a frame shows every run ended (that one included).
    The study is planned once; only the seeds an adaptive study adds are looked up each time."""
    spec, planned = plan_study(study, scale, overrides)
    while True:
        frame = _progress(spec, with_added_seeds(spec, planned, scale, overrides, store), store, metric)
        yield frame
        if len(frame) and (frame["ended"] == frame["runs"]).all():
            return
        time.sleep(every)


def _progress(spec: StudySpec, runs: list[PlannedRun], store: RunStore, metric: str | None) -> pd.DataFrame:
    metric = metric or findings_metric(spec)
    status = store.status_of([r.run_id for r in runs])
    rows = _run_rows(store, [r.run_id for r in runs], metric)
    out = []
    for label in dict.fromkeys(r.label for r in runs):
        mine = [r for r in runs if r.label == label]
        states = [status.get(r.run_id, "pending") for r in mine]
        per_run = rows.reindex([r.run_id for r in mine])
        planned, recorded = sum(r.config.train.epochs for r in mine), int(per_run["epochs"].fillna(0).sum())
        ended = sum(s in STOPPED for s in states)
        training = states.count("running")
        left = (planned - recorded) * per_run["epoch_time"].median() / max(1, training)
        done = [r.run_id for r, s in zip(mine, states) if s == "done"]
        out.append({"variant": label or "base", "runs": len(mine), "done": len(done), "running": training,
                    "ended": ended, "epochs": recorded, "planned_epochs": planned, "now": per_run["latest"].mean(),
                    "final": rows.reindex(done)["latest"].mean() if done else math.nan,
                    "left": 0.0 if ended == len(mine) else left})
    return pd.DataFrame(out)


def _run_rows(store: RunStore, run_ids: list[str], metric: str) -> pd.DataFrame:
    """Per run id in the store: epochs recorded, the latest value of ``metric`` and the median epoch time."""
    marks = ",".join("?" * len(run_ids))
    values = pd.read_sql_query(
        f"SELECT run_id, epoch, name, value FROM metrics WHERE run_id IN ({marks}) AND name IN (?, 'epoch_time')",
        store.conn, params=[*run_ids, metric])
    frame = pd.DataFrame(index=pd.Index([], name="run_id"), columns=["epochs", "latest", "epoch_time"], dtype=float)
    if values.empty:
        return frame
    wide = values.pivot_table(index=["run_id", "epoch"], columns="name", values="value").reset_index()
    by_run = wide.sort_values("epoch").groupby("run_id")
    frame = pd.DataFrame({"epochs": by_run["epoch"].max(),
                          "latest": by_run[metric].last() if metric in wide else np.nan,
                          "epoch_time": by_run["epoch_time"].median() if "epoch_time" in wide else np.nan})
    return frame
