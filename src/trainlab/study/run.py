"""Running a study: every planned run trained by an executor and recorded in the run store.

Finished runs are skipped, interrupted ones resume from their checkpoint, failed ones are
tried again; a run that fails marks itself ``failed`` and the study carries on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from tqdm.auto import tqdm

from trainlab.data import ImageData, load_data
from trainlab.errors import UserError
from trainlab.store import DEFAULT_STORE, RunStore
from trainlab.study.executors import EXECUTORS, Task, data_key, run_in_processes, run_on_ray
from trainlab.study.spec import PlannedRun, StudySpec, expand, read_study
from trainlab.train.ensemble import ensemble_groups, ensemble_pays, train_together
from trainlab.train.bookkeeping import METRICS
from trainlab.train.fit import FINISHED, fit, fit_ensemble, stored_history


@dataclass
class StudyResult:
    """A study's runs: ``runs`` has one row per run (label, seed, status, varied keys, final metrics)."""

    spec: StudySpec
    runs: pd.DataFrame
    histories: dict[str, pd.DataFrame]


def plan_study(
    study: str | Path | dict[str, Any], scale: str | None = None, overrides: list[str] | dict | None = None
) -> tuple[StudySpec, list[PlannedRun]]:
    """Read and expand a study without training: every run validated."""
    spec = read_study(study)
    return spec, expand(spec, scale, overrides)


def run_study(
    study: str | Path | dict[str, Any],
    scale: str | None = None,
    overrides: list[str] | dict | None = None,
    store: str | Path | RunStore = DEFAULT_STORE,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    download: bool = False,
    progress: bool = False,
    ensemble: bool = True,
) -> StudyResult:
    """Train every run of a study that is not finished yet, then return all of them.

    ``executor``: ``local`` (in this process), ``processes`` (``workers`` processes, the cores
    divided among them) or ``ray`` (the cluster at ``address``, or a local Ray instance).
    With ``ensemble``, runs that differ only in seed or scalar hyper-parameters train together
    as vectorised ensembles (:mod:`trainlab.train.ensemble`), with every executor, where that
    pays: on CUDA, and on CPU for small models (:func:`~trainlab.train.ensemble.ensemble_pays`,
    judged on the driver's device).
    """
    if executor not in EXECUTORS:
        raise UserError(f"unknown executor {executor!r}; valid choices: {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    spec, runs = plan_study(study, scale, overrides)
    store = store if isinstance(store, RunStore) else RunStore(store)
    loaded: dict[str, ImageData] = {}
    for run in runs:  # load every data set once, before anything trains: user mistakes surface first
        key = data_key(run.config.to_dict()["data"])
        if key not in loaded:
            loaded[key] = load_data(run.config.data, download=download)
    for run in runs:
        store.create_run(run.run_id, run.config.to_dict())
        store.add_to_study(spec.name, run.run_id, run.label, run.seed, run.overrides)

    statuses = store.status_of([r.run_id for r in runs])
    todo = [r for r in runs if statuses[r.run_id] not in FINISHED]
    bar = tqdm(total=len(runs), initial=len(runs) - len(todo), desc=spec.name, unit="run",
               disable=not progress, dynamic_ncols=True)
    jobs = _jobs(todo, loaded, ensemble)
    if executor == "local":
        for job in jobs:
            data = loaded[data_key(job[0].config.to_dict()["data"])]
            bar.set_postfix_str("; ".join(f"{r.label or 'base'} seed {r.seed}" for r in job))
            if len(job) > 1 and train_together(
                    lambda: fit_ensemble([r.config for r in job], store, data, progress=progress),  # noqa: B023
                    len(job)) is not None:
                bar.update(len(job))
                continue
            for run in job:
                try:
                    fit(run.config, store=store, data=data, progress=progress)
                except Exception:  # recorded as failed by fit; the study carries on
                    pass
                bar.update(1)
    else:
        workers = workers or (2 if executor == "processes" else None)
        task_jobs = [[Task(r.run_id, r.config.to_dict(), str(store.run_dir(r.run_id))) for r in job] for job in jobs]
        names = {r.run_id: f"{r.label or 'base'} seed {r.seed}" for r in todo}
        running: set[str] = set()

        def start(task: Task, pid: int | None) -> None:
            (Path(task.run_dir) / "config.yaml").write_text(yaml.safe_dump(task.config, sort_keys=False))
            store.start_run(task.run_id, pid)
            running.add(task.run_id)
            bar.set_postfix_str("running: " + "; ".join(names[r] for r in running))

        outcomes = (run_in_processes(task_jobs, workers, start) if executor == "processes"
                    else run_on_ray(task_jobs, workers, address, start))
        for outcome in outcomes:
            for row in outcome.history:
                store.log_epoch(outcome.run_id, row)
            store.log_probes(outcome.run_id, outcome.probes, outcome.probe_histograms)
            store.finish_run(outcome.run_id, outcome.status, error=outcome.error, diverged_step=outcome.diverged_step)
            running.discard(outcome.run_id)
            bar.update(1)
    bar.close()
    return study_results(spec, runs, store)


def _jobs(todo: list[PlannedRun], loaded: dict[str, ImageData], ensemble: bool) -> list[list[PlannedRun]]:
    """The runs to train, grouped into jobs: runs that can train as one ensemble where that pays, else one per job."""
    if not ensemble:
        return [[run] for run in todo]
    jobs = []
    for group in ensemble_groups([r.config for r in todo]):
        members = [todo[i] for i in group]
        data = loaded[data_key(members[0].config.to_dict()["data"])]
        if len(members) > 1 and ensemble_pays(members[0].config, data):
            jobs.append(members)
        else:
            jobs.extend([run] for run in members)
    return jobs


def study_results(spec: StudySpec, runs: list[PlannedRun], store: RunStore) -> StudyResult:
    """What the store knows of a study's runs: status, varied values and final metrics per run."""
    statuses = store.status_of([r.run_id for r in runs])
    rows, histories = [], {}
    for run in runs:
        status = statuses.get(run.run_id, "pending")
        row = {"run_id": run.run_id, "label": run.label, "seed": run.seed, "status": status, **run.overrides}
        if run.run_id in statuses:
            history = stored_history(store, run.run_id)
            if len(history):
                histories[run.run_id] = history
                row |= {k: v for k, v in history.iloc[-1].items() if k != "epoch"}
                row["epochs"] = int(history["epoch"].iloc[-1])
        rows.append(row)
    return StudyResult(spec, pd.DataFrame(rows), histories)


def study_status(
    study: str | Path | dict[str, Any], scale: str | None = None, overrides: list[str] | dict | None = None,
    store: str | Path | RunStore = DEFAULT_STORE,
) -> list[dict[str, Any]]:
    """Each run's ``run_id``, ``status``, ``overrides`` (dotted key -> value) and ``final`` metrics."""
    spec, runs = plan_study(study, scale, overrides)
    store = store if isinstance(store, RunStore) else RunStore(store)
    frame = study_results(spec, runs, store).runs
    out = []
    for run, (_, row) in zip(runs, frame.iterrows()):
        final = {m: float(row[m]) for m in METRICS if m in frame.columns and pd.notna(row[m])}
        out.append({"run_id": run.run_id, "label": run.label, "seed": run.seed, "status": row["status"],
                    "overrides": {**run.overrides, "train.seed": run.seed}, "final": final})
    return out
