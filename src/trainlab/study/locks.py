"""Several processes on one store: a run trains in one process at a time, and once.

Two ``trainlab run`` of a study (or a ``trainlab train`` of one of its runs) may share a store.
A process trains a run only while it holds the run's claim (:meth:`RunStore.claim`: a lock that
the kernel releases when its holder exits, SIGKILL included), and only if the run is still
unfinished once it holds it. :meth:`RunLocks.train` claims each job just before an executor starts
it, skipping the runs another process holds; when its own jobs are done, it polls the store
until each skipped run has finished or its claim is free (its holder died, or the run failed
there), and trains the latter itself, resuming from the run's checkpoint, as a re-run would.
A claim is released as soon as its run ends here, so two processes never wait on each other.
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections.abc import Callable, Iterable, Iterator

from trainlab.store import FINISHED, FileLock, RunStore
from trainlab.study.code import code_of
from trainlab.study.executors import Task
from trainlab.study.spec import PlannedRun

POLL = 0.5  # seconds between looks at the runs another process trains


class RunLocks:
    """This process's claims on runs of ``store``; leaving the ``with`` block releases them all."""

    def __init__(self, store: RunStore):
        self.store = store
        self.held: dict[str, FileLock] = {}
        self.warned_edited = False  # said once that runs were left pending: their code changed after planning
        self.skipped: list[PlannedRun] = []

    def train(self, runs: list[PlannedRun], group: Callable[[list[PlannedRun]], list[list[PlannedRun]]],
              execute: Callable[[Iterable[list[Task]]], None],
              on_wait: Callable[[list[PlannedRun]], None] = lambda runs: None) -> None:
        """Train ``runs`` that no other process trains, then wait for the others (``on_wait(runs)``
        before each look) and train those that their holder left unfinished.

        ``group(runs)`` makes jobs of runs; ``execute(jobs)`` trains them with an executor.
        """
        while runs:
            self.skipped = []
            jobs = self.take(group(runs))
            first = next(jobs, None)
            if first is not None:
                execute(itertools.chain([first], jobs))
            statuses = self.store.status_of([r.run_id for r in self.skipped])
            runs = [r for r in self.skipped if statuses[r.run_id] not in FINISHED]
            if runs:
                on_wait(runs)
                time.sleep(POLL)

    def take(self, jobs: list[list[PlannedRun]]) -> Iterator[list[Task]]:
        """``jobs`` as tasks, each claimed when it is asked for, less the runs another process holds
        (noted in :attr:`skipped`) or has finished meanwhile; a job left empty is passed over."""
        for job in jobs:
            mine = [run for run in job if self._claim(run)]
            if not mine:
                continue
            configs = [r.config.to_dict() for r in mine]
            code = code_of(configs[0])  # the user's files (one model and data set per job), sent with it
            if code and mine[0].config.run_id() != mine[0].run_id:  # computed again: from the files as they are
                self._edited(mine)
                continue
            yield [Task(r.run_id, config, str(self.store.run_dir(r.run_id)), code) for r, config in zip(mine, configs)]

    def _edited(self, runs: list[PlannedRun]) -> None:
        """Leave pending the runs whose model or data file was edited since they were planned."""
        self.release(r.run_id for r in runs)
        if not self.warned_edited:
            self.warned_edited = True
            warnings.warn("a model or data file changed since the study was planned; runs not started yet are "
                          "left pending (their ids name the code as planned): run the study again to train the "
                          "edited code", stacklevel=2)

    def _claim(self, run: PlannedRun) -> bool:
        claim = self.store.claim(run.run_id)
        if claim is None:
            self.skipped.append(run)
            return False
        if self.store.status_of([run.run_id])[run.run_id] in FINISHED:  # by its last holder
            claim.release()
            return False
        self.held[run.run_id] = claim
        return True

    def release(self, run_ids: Iterable[str]) -> None:
        """Release the claims held on ``run_ids`` (those not held are ignored)."""
        for run_id in list(run_ids):
            if (claim := self.held.pop(run_id, None)) is not None:
                claim.release()

    def __enter__(self) -> RunLocks:
        return self

    def __exit__(self, *exc) -> None:
        self.release(self.held)
