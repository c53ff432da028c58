"""Running a study: every planned run trained by an executor and recorded in the run store.

Finished runs are skipped, interrupted ones resume from their checkpoint, failed ones are
tried again; a run that fails is recorded ``failed`` with the reason and the study carries on.
Runs another process is training are left to it and waited for (:mod:`trainlab.study.locks`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from trainlab.config import warn_of_ignored_constants
from trainlab.data import ImageData, load_data
from trainlab.models import check_external_model
from trainlab.probes.tensorboard import TensorBoardStream
from trainlab.errors import UserError
from trainlab.store import DEFAULT_STORE, FINISHED, RunStore
from trainlab.study.adaptive import SeedRound, seed_rounds
from trainlab.study.executors import EXECUTORS, Task, data_key, run_in_processes, run_locally, run_on_ray
from trainlab.study.locks import RunLocks
from trainlab.study.report_sections import section_options
from trainlab.study.spec import PlannedRun, StudySpec, expand, read_study, resolve_claims
from trainlab.study.verdicts import Verdict, claim_values, judge
from trainlab.train.bookkeeping import METRICS
from trainlab.train.ensemble import ensemble_groups, ensemble_pays
from trainlab.train.fit import stored_history
from trainlab.train.loop import intra_op_threads, resolve_device
from trainlab.train.record import Recorder

ENDED = (*FINISHED, "failed")  # statuses of runs that a study does not train again by itself


@dataclass
class StudyResult:
    """A study's runs: ``runs`` has one row per run (label, seed, status, varied keys, final metrics);
    ``verdicts`` one per claim; ``rounds`` the looks of an adaptive study (:mod:`trainlab.study.adaptive`)."""

    spec: StudySpec
    runs: pd.DataFrame
    histories: dict[str, pd.DataFrame]
    verdicts: list[Verdict] = field(default_factory=list)
    rounds: list[SeedRound] = field(default_factory=list)
    planned: list[PlannedRun] = field(default_factory=list, repr=False)


def plan_study(
    study: str | Path | dict[str, Any], scale: str | None = None, overrides: list[str] | dict | None = None
) -> tuple[StudySpec, list[PlannedRun]]:
    """Read and expand a study without training: every run and the report sections validated."""
    spec = read_study(study).at_scale(scale)
    section_options(spec.name, spec.report)
    runs = expand(spec, scale, overrides)
    resolve_claims(spec, runs)
    warn_of_ignored_constants(r.config for r in runs)
    return spec, runs


@intra_op_threads(None)  # the whole study (data, FLOP counts, verdicts too) on the cores other jobs leave free
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
    tensorboard: str | Path | None = None,
) -> StudyResult:
    """Train every run of a study that is not finished yet, then return all of them.

    ``executor``: ``local`` (in this process), ``processes`` (``workers`` processes, the cores
    divided among them) or ``ray`` (the cluster at ``address``, or a local Ray instance).
    With ``ensemble``, runs that differ only in seed or scalar hyper-parameters train together
    as vectorised ensembles (:mod:`trainlab.train.ensemble`), with every executor, where that
    pays: on CUDA, and on CPU for small models (:func:`~trainlab.train.ensemble.ensemble_pays`,
    judged on the driver's device). Runs that fail are recorded so, and a warning names them.
    Runs that another process trains meanwhile are waited for, and taken over if it dies.
    ``tensorboard``: a folder that gets TensorBoard event files of each run (``DIR/RUN_ID``), written
    as its epochs end with every executor; runs finished before this call are written from the store.
    """
    if executor not in EXECUTORS:
        raise UserError(f"unknown executor {executor!r}; valid choices: {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    spec, runs = plan_study(study, scale, overrides)
    store = store if isinstance(store, RunStore) else RunStore(store)
    loaded = _load_data(runs, download)  # before anything is written: user mistakes surface first
    _check_external_models(runs, loaded)
    if executor != "ray":  # Ray's workers may have GPUs this machine lacks
        for device in {r.config.train.device for r in runs}:
            resolve_device(device)
    todo = _register(spec, runs, store)
    bar = tqdm(total=len(runs), initial=len(runs) - len(todo), desc=spec.name, unit="run",
               disable=not progress, dynamic_ncols=True)
    names: dict[str, str] = {}
    skipped = {r.run_id for r in runs} - {r.run_id for r in todo}
    show = _show_progress(bar, names, skipped)

    def changed(recorder: Recorder) -> None:
        locks.release(recorder.ended)  # a run that ended here is free for others at once
        show(recorder)

    stream = TensorBoardStream(tensorboard) if tensorboard else None
    with bar, RunLocks(store) as locks, Recorder(store, changed, [stream] if stream else []) as recorder:
        execute = _executor(executor, recorder, loaded, workers, address, progress)

        def train(todo: list[PlannedRun]) -> None:
            names.update({r.run_id: f"{r.label or 'base'} seed {r.seed}" for r in todo})
            locks.train(todo, lambda runs: _jobs(runs, loaded, ensemble), execute,
                        lambda waiting: bar.set_postfix_str(f"waiting for {len(waiting)} runs of others"))

        try:
            train(todo)
            if spec.adaptive:
                runs = _seeds_until_decided(spec, scale, overrides, runs, store, train, bar, skipped)
        finally:
            if stream:
                stream.close()
    _warn_failed(recorder.ended)
    result = study_results(spec, runs, store)
    if tensorboard:
        _tensorboard_of_earlier_runs(result.runs, store, Path(tensorboard), set(recorder.ended))
    return result


def _tensorboard_of_earlier_runs(runs: pd.DataFrame, store: RunStore, logdir: Path, streamed: set[str]) -> None:
    """Event files, from the store, of the study's finished runs that trained before this call."""
    from trainlab.probes.tensorboard import write_tensorboard

    for run_id in runs.loc[runs["status"].isin(FINISHED), "run_id"]:
        if run_id not in streamed:
            write_tensorboard(logdir / run_id, store.probes(run_id), store.probe_histograms(run_id),
                              stored_history(store, run_id), store.curves(run_id), replace=True)


def _seeds_until_decided(spec: StudySpec, scale: str | None, overrides: list[str] | dict | None,
                         runs: list[PlannedRun], store: RunStore, train: Callable[[list[PlannedRun]], None],
                         bar: tqdm, skipped: set[str]) -> list[PlannedRun]:
    """Add seeds round by round (:mod:`trainlab.study.adaptive`) and train them; all the study's runs.

    Each run trains at most once here; runs already finished (an earlier call) go into ``skipped``.
    """
    attempted = {r.run_id for r in runs}
    while True:
        wanted = study_results(spec, runs, store).rounds[-1].added
        have = {(r.label, r.seed) for r in runs}
        new = [r for r in expand(spec, scale, overrides, seeds=wanted) if (r.label, r.seed) not in have]
        runs = runs + new
        unfinished = _register(spec, [r for r in runs if r.seed in wanted.get(r.label, ())], store)
        todo = [r for r in unfinished if r.run_id not in attempted]
        if not new and not todo:
            return runs
        bar.total += len(new)
        skipped |= {r.run_id for r in new} - {r.run_id for r in unfinished}
        bar.refresh()
        attempted |= {r.run_id for r in todo}
        if todo:
            train(todo)


def _executor(name: str, recorder: Recorder, loaded: dict[str, ImageData], workers: int | None,
              address: str | None, progress: bool) -> Callable[[Iterable[list[Task]]], None]:
    """The executor ``name`` as a function of the jobs it trains."""
    if name == "local":
        return lambda jobs: run_locally(jobs, recorder, loaded, progress)
    if name == "processes":
        return lambda jobs: run_in_processes(jobs, workers or 2, recorder)
    return lambda jobs: run_on_ray(jobs, workers, address, recorder)


def _load_data(runs: list[PlannedRun], download: bool) -> dict[str, ImageData]:
    """Every data set the runs use, loaded once, by :func:`~trainlab.study.executors.data_key`."""
    loaded: dict[str, ImageData] = {}
    for run in runs:
        key = data_key(run.config.to_dict()["data"])
        if key not in loaded:
            loaded[key] = load_data(run.config.data, download=download)
    return loaded


def _check_external_models(runs: list[PlannedRun], loaded: dict[str, ImageData]) -> None:
    """Build each distinct python or torchvision network once, so a mistake in it stops the study before it starts."""
    seen = set()
    for run in runs:
        data = loaded[data_key(run.config.to_dict()["data"])]
        key = (run.config.model.model_dump_json(), data.input_shape, data.num_classes)
        if key not in seen:
            seen.add(key)
            check_external_model(run.config.model, data.input_shape, data.num_classes)


def _register(spec: StudySpec, runs: list[PlannedRun], store: RunStore) -> list[PlannedRun]:
    """Add the study's runs to the store (new ones ``pending``); those not finished yet."""
    for run in runs:
        store.create_run(run.run_id, run.config.to_dict())
        store.add_to_study(spec.name, run.run_id, run.label, run.seed, run.overrides)
    statuses = store.status_of([r.run_id for r in runs])
    return [r for r in runs if statuses[r.run_id] not in FINISHED]


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


def _show_progress(bar: tqdm, names: dict[str, str], skipped: set[str]) -> Callable[[Recorder], None]:
    """A recorder's ``on_change`` that keeps ``bar`` at the runs finished (``skipped``: finished before)
    and names those training (``names``: run id -> name, filled as runs are given to train)."""

    def show(recorder: Recorder) -> None:
        bar.n = len(skipped) + len(recorder.ended)
        bar.set_postfix_str("running: " + "; ".join(names[r] for r in recorder.running))

    return show


def _warn_failed(ended: dict[str, str]) -> None:
    failed = [run_id for run_id, status in ended.items() if status == "failed"]
    if failed:
        warnings.warn(f"{len(failed)} of {len(ended)} runs failed, recorded with the reason "
                      f"(`trainlab show RUN`): {', '.join(failed)}", stacklevel=3)


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
    frame = pd.DataFrame(rows)
    return StudyResult(spec, frame, histories, *_verdicts(spec, runs, frame, store), runs)


def load_study(study: str | Path | dict[str, Any], scale: str | None = None,
               overrides: list[str] | dict | None = None,
               store: str | Path | RunStore = DEFAULT_STORE) -> StudyResult:
    """A study's runs as the store has them (seeds an adaptive study added included) and its claims'
    verdicts, without training."""
    spec, runs = plan_study(study, scale, overrides)
    store = store if isinstance(store, RunStore) else RunStore(store)
    return study_results(spec, with_added_seeds(spec, runs, scale, overrides, store), store)


def _verdicts(spec: StudySpec, runs: list[PlannedRun], frame: pd.DataFrame,
              store: RunStore) -> tuple[list[Verdict], list[SeedRound]]:
    """The claims' verdicts on the stored results, and the rounds of seeds of an adaptive study."""
    claims = resolve_claims(spec, runs)
    metric = findings_metric(spec)
    metrics = {c.claim.metric for c in claims} | ({metric} if spec.adaptive and not claims else set())
    values = claim_values(frame, metrics, store)
    if not spec.adaptive:
        return judge(spec, claims, values), []
    ended = {(label, seed) for label, seed, status in zip(frame["label"], frame["seed"], frame["status"])
             if status in ENDED}
    labels = list(dict.fromkeys(frame["label"]))
    rounds = seed_rounds(spec, claims, values, labels, lambda label, seed: (label, seed) in ended, metric)
    return rounds[-1].verdicts, rounds


def findings_metric(spec: StudySpec) -> str:
    """The metric the study's findings rank variants by (the findings section's ``metric``, else test_acc)."""
    return section_options(spec.name, spec.report).get("findings", {}).get("metric", "test_acc")


def with_added_seeds(spec: StudySpec, runs: list[PlannedRun], scale: str | None,
                     overrides: list[str] | dict | None, store: RunStore) -> list[PlannedRun]:
    """``runs`` and the seeds an adaptive study added to them that the store has (:mod:`trainlab.study.adaptive`)."""
    if not spec.adaptive or spec.adaptive.max == spec.adaptive.min:
        return runs
    labels = dict.fromkeys(r.label for r in runs)
    extra = expand(spec, scale, overrides, seeds={label: list(range(spec.adaptive.min, spec.adaptive.max))
                                                  for label in labels})
    known = store.status_of([r.run_id for r in extra])
    return runs + [r for r in extra if r.run_id in known]


def study_status(
    study: str | Path | dict[str, Any], scale: str | None = None, overrides: list[str] | dict | None = None,
    store: str | Path | RunStore = DEFAULT_STORE,
) -> list[dict[str, Any]]:
    """Each run's ``run_id``, ``status``, ``epochs`` recorded so far (a running run's too),
    ``overrides`` (dotted key -> value) and ``final`` metrics (those of its last recorded epoch)."""
    return status_rows(load_study(study, scale, overrides, store))


def status_rows(result: StudyResult) -> list[dict[str, Any]]:
    """:func:`study_status`'s rows of a study already loaded (:func:`load_study`)."""
    frame = result.runs
    out = []
    for run, (_, row) in zip(result.planned, frame.iterrows()):
        final = {m: float(row[m]) for m in METRICS if m in frame.columns and pd.notna(row[m])}
        epochs = int(row["epochs"]) if "epochs" in frame.columns and pd.notna(row["epochs"]) else 0
        out.append({"run_id": run.run_id, "label": run.label, "seed": run.seed, "status": row["status"],
                    "epochs": epochs, "overrides": {**run.overrides, "train.seed": run.seed}, "final": final})
    return out
