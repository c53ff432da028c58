"""Where a study's runs train: in this process, in worker processes, or on a Ray cluster.

Workers only train: each receives a job, one run's configuration and folder (for its
checkpoint) or those of runs that train together as a vectorised ensemble, and returns an
:class:`Outcome` per run with the per-epoch metrics. The driver alone writes the run store. A
worker that dies (killed, out of memory) fails its job's runs with the reason; the study
carries on with the others.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

EXECUTORS = ("local", "processes", "ray")


@dataclass
class Task:
    """A run to train: its id, resolved configuration (a dict) and folder."""

    run_id: str
    config: dict[str, Any]
    run_dir: str


@dataclass
class Outcome:
    """What a worker sends back: final status, the epochs' metric rows, and why it failed."""

    run_id: str
    status: str
    history: list[dict] = field(default_factory=list)
    diverged_step: int | None = None
    error: str | None = None
    probes: list[tuple] = field(default_factory=list)
    probe_histograms: list[tuple] = field(default_factory=list)


_DATA: dict[str, Any] = {}  # per worker process: data sets already loaded, by data_key


def data_key(data_config: dict[str, Any]) -> str:
    """Identity of a ``data`` section (a dict), for loading each data set once per process."""
    return json.dumps(data_config, sort_keys=True)


def execute(job: list[Task], threads: int | None = None) -> list[Outcome]:
    """Train a job, resuming from checkpoints, and return an outcome per run; never raises.

    A job is one run, or runs that train together as a vectorised ensemble
    (:func:`~trainlab.train.ensemble.train_ensemble`); if the ensemble cannot train (its runs
    stopped at different epochs) or fails, its runs train one by one.
    """
    import torch

    from trainlab.config import RunConfig
    from trainlab.train.ensemble import train_ensemble, train_together

    if threads:
        torch.set_num_threads(threads)
    if len(job) > 1:
        results = train_together(lambda: train_ensemble(
            [RunConfig.model_validate(task.config) for task in job], _data(job[0].config),
            [Path(task.run_dir) for task in job]), len(job))
        if results is not None:
            return [_outcome(task.run_id, result) for task, result in zip(job, results)]
    return [_execute_one(task) for task in job]


def _execute_one(task: Task) -> Outcome:
    """Train one run; a failure becomes a ``failed`` outcome with the reason."""
    from trainlab.config import RunConfig
    from trainlab.train.loop import train_run

    try:
        result = train_run(RunConfig.model_validate(task.config), _data(task.config), Path(task.run_dir))
    except Exception as error:  # reported to the driver, which records the run as failed
        return Outcome(task.run_id, "failed", error=f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=3)}")
    return _outcome(task.run_id, result)


def _data(config: dict[str, Any]):
    """The data set of a run configuration (a dict), loaded once per process."""
    from trainlab.config import RunConfig
    from trainlab.data import load_data

    key = data_key(config["data"])
    if key not in _DATA:
        _DATA[key] = load_data(RunConfig.model_validate(config).data)
    return _DATA[key]


def _outcome(run_id: str, result) -> Outcome:
    """A finished :class:`~trainlab.train.loop.TrainResult` as what the driver records."""
    return Outcome(run_id, result.status, result.history.to_dict(orient="records"), result.diverged_step,
                   probes=list(result.probes.itertuples(index=False, name=None)),
                   probe_histograms=list(result.probe_histograms.itertuples(index=False, name=None)))


def threads_per_worker(workers: int) -> int:
    """Divide this machine's cores among ``workers`` (at least one thread each)."""
    return max(1, (os.cpu_count() or 1) // workers)


def run_in_processes(
    jobs: list[list[Task]], workers: int, on_start: Callable[[Task, int | None], None]
) -> Iterator[Outcome]:
    """Train ``jobs`` (see :func:`execute`) on ``workers`` worker processes, yielding outcomes as runs finish.

    Workers are forked from a fork server that has trainlab and torch imported (so no worker
    inherits the driver's thread pools) and live for the whole study, keeping the data sets
    they have loaded. A worker that dies without answering yields a ``failed`` outcome with
    its exit code and is replaced.
    """
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(["trainlab.study.executors", "trainlab.train.loop"])
    threads = threads_per_worker(workers)

    def spawn() -> tuple[Connection, BaseProcess]:
        driver_end, worker_end = context.Pipe()
        process = context.Process(target=_worker, args=(worker_end, threads), daemon=True)
        process.start()
        worker_end.close()
        return driver_end, process

    pending = list(jobs)
    idle = [spawn() for _ in range(min(workers, len(jobs)))]
    busy: dict[Connection, tuple[list[Task], BaseProcess]] = {}
    try:
        while pending or busy:
            while pending and idle:
                connection, process = idle.pop()
                job = pending.pop(0)
                connection.send(job)
                for task in job:
                    on_start(task, process.pid)
                busy[connection] = (job, process)
            for connection in wait(list(busy)):
                job, process = busy.pop(connection)
                try:
                    outcomes = connection.recv()
                    idle.append((connection, process))
                except EOFError:
                    process.join()
                    connection.close()
                    reason = f"worker process died (exit code {process.exitcode})"
                    outcomes = [Outcome(task.run_id, "failed", error=reason) for task in job]
                    if pending:
                        idle.append(spawn())
                yield from outcomes
    finally:
        for connection, process in idle + [(c, p) for c, (_, p) in busy.items()]:
            if process.is_alive() and connection not in busy:
                connection.send(None)
            else:
                process.kill()
            process.join()


def _worker(connection: Connection, threads: int) -> None:
    """A worker process: train the jobs it receives until it receives None."""
    while (job := connection.recv()) is not None:
        connection.send(execute(job, threads))


def run_on_ray(
    jobs: list[list[Task]], workers: int | None, address: str | None, on_start: Callable[[Task, int | None], None]
) -> Iterator[Outcome]:
    """Train ``jobs`` (see :func:`execute`) as Ray tasks on the cluster at ``address`` (or a local Ray instance)."""
    from trainlab.errors import UserError

    try:
        import ray
    except ImportError:
        raise UserError("the ray executor needs Ray: pip install 'ray[default]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False,
                 log_to_driver=False, ignore_reinit_error=True)
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(execute)
        threads = threads_per_worker(workers or int(ray.available_resources().get("CPU", 1)))
        futures = {}
        for job in jobs:
            for task in job:
                on_start(task, None)
            futures[remote.remote(job, threads)] = job
        while futures:
            done, _ = ray.wait(list(futures), num_returns=1)
            job = futures.pop(done[0])
            try:
                yield from ray.get(done[0])
            except Exception as error:  # the worker died: Ray reports it on get
                reason = f"ray worker failed: {type(error).__name__}: {error}"
                yield from (Outcome(task.run_id, "failed", error=reason) for task in job)
    finally:
        if started_here:
            ray.shutdown()
