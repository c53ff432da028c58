"""One configuration, trained and recorded in the run store: what ``trainlab train`` does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from trainlab.config import RunConfig, load_config
from trainlab.data import ImageData, load_data
from trainlab.store import DEFAULT_STORE, RunStore
from trainlab.train.ensemble import train_ensemble
from trainlab.train.bookkeeping import METRICS, TrainResult
from trainlab.train.loop import train_run

FINISHED = ("done", "diverged")


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
    (unless ``rerun``), an interrupted one resumes from its last checkpoint. ``store=None``
    trains in memory and writes nothing. ``data`` skips loading when the caller has it already.
    """
    cfg = load_config(config, overrides)
    data = data or load_data(cfg.data, download=download)  # user mistakes surface before anything is written
    if store is None:
        return train_run(cfg, data, progress=progress)

    store = store if isinstance(store, RunStore) else RunStore(store)
    run_id = cfg.run_id()
    store.create_run(run_id, cfg.to_dict())
    record = store.get_run(run_id)
    if record["status"] in FINISHED and not rerun:
        return TrainResult(run_id, record["status"], stored_history(store, run_id), record["diverged_step"],
                           probes=store.probes(run_id), probe_histograms=store.probe_histograms(run_id))
    if rerun:
        store.reset_run(run_id)

    return _recorded(store, [cfg], lambda ids, dirs: [train_run(
        cfg, data, dirs[0], on_epoch=lambda row: store.log_epoch(run_id, row), progress=progress,
        on_probes=lambda stats, hists: store.log_probes(run_id, stats, hists))])[0]


def fit_ensemble(configs: list[RunConfig], store: RunStore, data: ImageData,
                 progress: bool = False) -> list[TrainResult]:
    """Train runs that differ only in seed or scalar hyper-parameters as one vectorised ensemble
    (:func:`~trainlab.train.ensemble.train_ensemble`), recorded in ``store`` run by run as :func:`fit` does.

    The runs must be in the store already and not finished.
    """
    return _recorded(store, configs, lambda ids, dirs: train_ensemble(
        configs, data, dirs, progress=progress, on_epoch=lambda m, row: store.log_epoch(ids[m], row),
        on_probes=lambda m, stats, hists: store.log_probes(ids[m], stats, hists)))


def _recorded(store: RunStore, configs: list[RunConfig],
              train: Callable[[list[str], list[Path]], list[TrainResult]]) -> list[TrainResult]:
    """Start the runs in ``store`` (config.yaml in each folder), ``train(ids, run_dirs)`` them, record how they ended.

    Any exception, Ctrl-C included, marks every run ``failed`` with the reason, then propagates.
    """
    ids = [cfg.run_id() for cfg in configs]
    run_dirs = [store.run_dir(run_id) for run_id in ids]
    for cfg, run_id, run_dir in zip(configs, ids, run_dirs):
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        store.start_run(run_id)
    try:
        results = train(ids, run_dirs)
    except BaseException as error:
        reason = "interrupted" if isinstance(error, KeyboardInterrupt) else f"{type(error).__name__}: {error}"
        for run_id in ids:
            store.finish_run(run_id, "failed", error=reason)
        raise
    for run_id, result in zip(ids, results):
        store.finish_run(run_id, result.status, diverged_step=result.diverged_step)
    return results


def stored_history(store: RunStore, run_id: str):
    """A run's per-epoch metrics from the store, columns in the loop's order."""
    history = store.history(run_id)
    order = [c for c in ("epoch", *METRICS) if c in history.columns]
    return history[order + [c for c in history.columns if c not in order]]
