"""One configuration, trained and recorded in the run store: what ``trainlab train`` does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch

from trainlab.config import RunConfig, load_config, warn_of_ignored_constants
from trainlab.data import ImageData, load_data
from trainlab.models import check_external_model, create_model
from trainlab.store import DEFAULT_STORE, FINISHED, RunStore
from trainlab.train.bookkeeping import METRICS, TrainResult
from trainlab.train.checkpoint import load_checkpoint
from trainlab.train.loop import resolve_device
from trainlab.train.plain import train_run
from trainlab.train.record import Recorder, train_recorded


def fit(
    config: str | Path | dict[str, Any] | RunConfig | None = None,
    overrides: dict[str, Any] | list[str] | None = None,
    store: str | Path | RunStore | None = DEFAULT_STORE,
    download: bool = False,
    rerun: bool = False,
    progress: bool = False,
    data: ImageData | None = None,
) -> TrainResult:
    """Train a configuration (YAML path, dict or RunConfig, plus dotted overrides).

    With a ``store`` (a directory or a RunStore) the run is recorded there under the hash
    of its configuration: a finished run is returned from the store without training again
    (unless ``rerun``; its ``model`` is loaded from the run's last checkpoint), an interrupted one resumes from its last checkpoint. ``store=None``
    trains in memory and writes nothing. ``data`` skips loading when the caller has it already.
    A run that another process is training (:meth:`~trainlab.store.RunStore.claim`) is waited for.
    A run that raises (Ctrl-C included) is recorded ``failed`` with the reason, and the error propagates.
    """
    cfg = load_config(config, overrides)
    warn_of_ignored_constants([cfg])
    data = data or load_data(cfg.data, download=download)  # user mistakes surface before anything is written
    check_external_model(cfg.model, data.input_shape, data.num_classes)
    resolve_device(cfg.train.device)  # a GPU this machine lacks, too
    if store is None:
        return train_run(cfg, data, progress=progress)

    store = store if isinstance(store, RunStore) else RunStore(store)
    run_id = cfg.run_id()
    store.create_run(run_id, cfg.to_dict())
    with store.claim(run_id, wait=True):  # another process training this run: wait for it to let go
        record = store.get_run(run_id)
        if record["status"] in FINISHED and not rerun:
            return TrainResult(run_id, record["status"], stored_history(store, run_id),
                               record["diverged_step"], probes=store.probes(run_id),
                               probe_histograms=store.probe_histograms(run_id), curves=store.curves(run_id),
                               model=_stored_model(cfg, data, store.run_dir(run_id)), reused=True)
        if rerun:
            store.reset_run(run_id)
        with Recorder(store) as recorder:
            recorder.start(run_id)
            return train_recorded(cfg, data, store.run_dir(run_id), recorder, progress)


def _stored_model(cfg: RunConfig, data: ImageData, run_dir: Path) -> torch.nn.Module | None:
    """The network of a finished run as its last checkpoint holds it, on the CPU; None without one."""
    state = load_checkpoint(run_dir)
    if state is None:
        return None
    model = create_model(cfg.model, data.input_shape, data.num_classes)
    model.load_state_dict(state["model"])
    return model


def stored_history(store: RunStore, run_id: str) -> pd.DataFrame:
    """A run's per-epoch metrics from the store, columns in the loop's order."""
    history = store.history(run_id)
    order = [c for c in ("epoch", *METRICS) if c in history.columns]
    return history[order + [c for c in history.columns if c not in order]]
