"""Where a study's jobs train: in this process, in worker processes, or on a Ray cluster.

A job is one run, or runs that train together as a vectorised ensemble. Every executor reports
to the driver's :class:`~trainlab.train.record.Recorder`, the only writer of the run store: the
local one directly, workers through messages (over their pipe, or a Ray queue) sent as each
epoch ends, so the store shows their runs' progress while they train. A worker that dies
(killed, out of memory) fails the runs of its job that had not finished, with the reason; the
study carries on with the others. A worker never outlives its driver (:func:`_exit_with_driver`).

Executors take jobs from an iterable as they start them, so the caller can claim each job
(:mod:`trainlab.study.locks`) just before it trains.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import signal
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainlab.data import ImageData
    from trainlab.train.record import Recorder, Sink

EXECUTORS = ("local", "processes", "ray")


@dataclass
class Task:
    """A run to train: its id, resolved configuration (a dict) and folder, and the user's Python
    files its configuration names (:func:`trainlab.study.code.code_of`), which travel with it."""

    run_id: str
    config: dict[str, Any]
    run_dir: str
    code: dict[str, dict[str, str]] = field(default_factory=dict)


_DATA: dict[str, Any] = {}  # per worker process: data sets already loaded, by data_key


def data_key(data_config: dict[str, Any]) -> str:
    """Identity of a ``data`` section (a dict), for loading each data set once per process."""
    return json.dumps(data_config, sort_keys=True)


def execute(job: list[Task], sink: Sink, data: ImageData | None = None, threads: int | None = None,
            progress: bool = False) -> None:
    """Train a job (:func:`~trainlab.train.record.train_job`) from its checkpoints, reporting to ``sink``.

    ``data`` defaults to the job's data set, loaded once per process; ``threads`` sets torch's thread count.
    """
    import torch

    from trainlab.config import RunConfig
    from trainlab.study.code import with_code
    from trainlab.train.record import train_job

    if threads:
        torch.set_num_threads(threads)
    configs = [with_code(task.config, task.code) for task in job]
    train_job([RunConfig.model_validate(config) for config in configs], data or _data(configs[0]),
              [Path(task.run_dir) for task in job], sink, progress)


def _data(config: dict[str, Any]):
    """The data set of a run configuration (a dict), loaded once per process."""
    from trainlab.config import RunConfig
    from trainlab.data import load_data

    key = data_key(config["data"])
    if key not in _DATA:
        _DATA[key] = load_data(RunConfig.model_validate(config).data)
    return _DATA[key]


def threads_per_worker(workers: int) -> int:
    """Divide this machine's cores among ``workers`` (at least one thread each)."""
    return max(1, (os.cpu_count() or 1) // workers)


def run_locally(jobs: Iterable[list[Task]], recorder: Recorder, data: dict[str, ImageData],
                progress: bool = False) -> None:
    """Train ``jobs`` one after another in this process, on the driver's data sets (by :func:`data_key`)."""
    for job in jobs:
        for task in job:
            recorder.start(task.run_id)
        execute(job, recorder, data[data_key(job[0].config["data"])], progress=progress)


def run_in_processes(jobs: Iterable[list[Task]], workers: int, recorder: Recorder) -> None:
    """Train ``jobs`` on up to ``workers`` worker processes, recording their messages as they arrive.

    Workers are forked from a fork server that has trainlab and torch imported (so no worker
    inherits the driver's thread pools) when a job needs one, and live for the whole study,
    keeping the data sets they have loaded. A worker that dies is replaced while jobs remain.
    """
    _check_main_guard()
    pool = _Pool(workers, threads_per_worker(workers))
    pending, more = iter(jobs), True
    try:
        while True:
            while more and pool.has_room:
                job = next(pending, None)
                more = job is not None
                if more:
                    pool.give(job, recorder)
            if not pool.busy:
                break
            for connection in wait(list(pool.busy)):
                pool.receive(connection, recorder)
    finally:
        pool.close()


def _check_main_guard() -> None:
    """A UserError when a script calls this at its top level outside ``if __name__ == "__main__":``.

    Each worker imports the script that started the driver (as multiprocessing does for its
    ``forkserver`` and ``spawn`` methods), so an unguarded call would start a study again inside every
    worker, and fail there with Python's bootstrapping traceback.
    """
    import ast
    import inspect
    import sys

    from trainlab.errors import UserError

    main = sys.modules["__main__"]
    if getattr(getattr(main, "__spec__", None), "name", "").endswith("__main__"):
        return  # `python -m package`: multiprocessing does not import a package's __main__ again
    path = getattr(main, "__file__", None)
    if path == "<stdin>":  # `python - < script`: a worker cannot read the script again
        raise UserError("a script read from standard input cannot start worker processes, since each worker "
                        "imports the script again: save it as a file and run that, or use executor local")
    frame = next((f for f in inspect.stack()[1:] if f.function == "<module>" and f.frame.f_globals.get("__name__")
                  == "__main__" and f.filename == path), None)
    if frame is None:  # an interactive session or notebook, `python -m trainlab`, or a call from elsewhere
        return
    try:
        tree = ast.parse(Path(path).read_text())
    except (OSError, SyntaxError, ValueError):
        return
    guards = [node for node in ast.walk(tree) if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)
              and "__name__" in ast.unparse(node.test)]
    if not any(node.body[0].lineno <= frame.lineno <= node.end_lineno for node in guards):
        raise UserError(f"{Path(path).name} line {frame.lineno} starts worker processes outside "
                        "`if __name__ == \"__main__\":`, but each worker imports the script again: put the "
                        "code that runs the study under that guard (see docs/studies.md, Executors)")


class _Pool:
    """Up to ``size`` worker processes, each idle or busy with one job; the driver talks to each
    over a pipe, and holds the write end of its lifeline (see :func:`_exit_with_driver`)."""

    def __init__(self, size: int, threads: int):
        self.context = mp.get_context("forkserver")
        self.context.set_forkserver_preload(["trainlab.study.executors", "trainlab.train.record"])
        self.size, self.threads = size, threads
        self.idle: list[tuple[Connection, BaseProcess]] = []
        self.busy: dict[Connection, tuple[list[Task], BaseProcess]] = {}
        self.lifelines: list[Connection] = []

    @property
    def has_room(self) -> bool:
        """Whether a job can start now: a worker is idle, or another may be started."""
        return bool(self.idle) or len(self.busy) < self.size

    def _spawn(self) -> tuple[Connection, BaseProcess]:
        driver_end, worker_end = self.context.Pipe()
        reader, writer = self.context.Pipe(duplex=False)  # the lifeline
        process = self.context.Process(target=_worker, args=(worker_end, reader, self.threads), daemon=True)
        process.start()
        worker_end.close()
        reader.close()
        self.lifelines.append(writer)
        return driver_end, process

    def give(self, job: list[Task], recorder: Recorder) -> None:
        """Send ``job`` to an idle (or a new) worker; its runs start, in that worker's process."""
        connection, process = self.idle.pop() if self.idle else self._spawn()
        connection.send(job)
        for task in job:
            recorder.start(task.run_id, process.pid)
        self.busy[connection] = (job, process)

    def receive(self, connection: Connection, recorder: Recorder) -> None:
        """Record one message of a busy worker; its job's end makes it idle, its death fails the job's runs."""
        job, process = self.busy[connection]
        try:
            message = connection.recv()
        except EOFError:
            del self.busy[connection]
            process.join()
            connection.close()
            recorder.fail([task.run_id for task in job], *_death(process.exitcode))
            return
        if message is None:
            del self.busy[connection]
            self.idle.append((connection, process))
        else:
            recorder.apply(message)

    def close(self) -> None:
        """Let idle workers exit; kill busy ones (the driver is stopping, or was interrupted)."""
        for connection, process in self.idle:
            try:
                connection.send(None)
            except OSError:  # it has died meanwhile
                pass
        for _, process in self.busy.values():
            process.kill()
        for _, process in self.idle + list(self.busy.values()):
            process.join(timeout=5)
            process.kill()  # an idle worker that did not exit in time (no-op once it has)
        for lifeline in self.lifelines:
            lifeline.close()


def _death(exitcode: int | None) -> tuple[str, str]:
    """The reason and status of the runs of a worker that died with ``exitcode``: stopped by SIGTERM
    or SIGINT, they are ``interrupted`` (resumable); killed otherwise (SIGKILL: the OOM killer), ``failed``."""
    stopped = {-signal.SIGTERM: "SIGTERM", -signal.SIGINT: "SIGINT"}
    if exitcode in stopped:
        return f"worker process interrupted by {stopped[exitcode]}", "interrupted"
    return f"worker process died (exit code {exitcode})", "failed"


def _worker(connection: Connection, lifeline: Connection, threads: int) -> None:
    """A worker process: train the jobs it receives, streaming their messages, until it receives None."""
    from tqdm import tqdm

    from trainlab.allocator import reuse_freed_memory
    from trainlab.interrupts import ignore_interrupts
    from trainlab.train.record import Relay

    ignore_interrupts()
    reuse_freed_memory()
    tqdm.set_lock(threading.RLock())  # not tqdm's default process lock: a killed worker would leak its semaphore
    threading.Thread(target=_exit_with_driver, args=(lifeline,), daemon=True).start()
    relay = Relay(connection.send)
    relay.relay_warnings()
    while (job := connection.recv()) is not None:
        execute(job, relay, threads=threads)
        connection.send(None)  # the job is done


def _exit_with_driver(lifeline: Connection) -> None:
    """End this worker the moment its driver exits, however it does (SIGKILL too).

    The driver holds the only write end of ``lifeline`` and never writes: reading returns when
    the kernel closes it with the driver. A killed driver's claims on its runs are released at
    that instant (:meth:`~trainlab.store.RunStore.claim`), so its workers must not train on.
    """
    try:
        lifeline.recv()
    except EOFError:
        pass
    os._exit(1)


def run_on_ray(jobs: Iterable[list[Task]], workers: int | None, address: str | None,
               recorder: Recorder) -> None:
    """Train ``jobs`` as Ray tasks on the cluster at ``address`` (or a local Ray instance).

    Tasks put their messages on a Ray queue that the driver drains while it waits for them.
    """
    from trainlab.errors import UserError

    try:
        import ray
    except ImportError:
        raise UserError("the ray executor needs Ray: pip install 'ray[default]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False,
                 log_to_driver=False, ignore_reinit_error=True,
                 logging_level=logging.INFO if address else logging.ERROR)  # a local instance starts quietly
    try:
        _run_ray_tasks(ray, jobs, threads_per_worker(workers or int(ray.available_resources().get("CPU", 1))),
                       recorder)
    finally:
        if started_here:
            ray.shutdown()


def _run_ray_tasks(ray: Any, jobs: Iterable[list[Task]], threads: int, recorder: Recorder) -> None:
    from ray.util.queue import Queue

    messages = Queue()
    remote = ray.remote(num_cpus=1, max_retries=0)(_execute_on_ray)
    futures = {}
    for job in jobs:
        for task in job:
            recorder.start(task.run_id)
        futures[remote.remote(job, messages, threads)] = job
    try:
        while futures:
            done, _ = ray.wait(list(futures), num_returns=1, timeout=0.2)
            if count := messages.qsize():  # a task's messages are all queued by the time it is done
                for message in messages.get_nowait_batch(count):
                    recorder.apply(message)
            for ref in done:
                job = futures.pop(ref)
                try:
                    ray.get(ref)
                except Exception as error:  # the worker died: Ray reports it on get
                    reason = f"ray worker failed: {type(error).__name__}: {error}"
                    recorder.fail([task.run_id for task in job], reason)
    except KeyboardInterrupt:  # stop the tasks on the cluster too, not only this driver
        for ref in futures:
            ray.cancel(ref, force=True)
        raise
    finally:
        messages.shutdown()


def _execute_on_ray(job: list[Task], messages: Any, threads: int) -> None:
    """A Ray task: :func:`execute`, its messages put on the driver's queue."""
    from trainlab.allocator import reuse_freed_memory
    from trainlab.train.record import Relay

    reuse_freed_memory()
    relay = Relay(messages.put)
    relay.relay_warnings()
    execute(job, relay, threads=threads)
