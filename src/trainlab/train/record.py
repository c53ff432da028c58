"""Recording training in the run store, whichever process trains.

The driver (``trainlab train``, ``trainlab run``) holds the one :class:`Recorder`, the only
writer of the store. Training reports to a *sink* with the Recorder's ``epoch``, ``probes``,
``curves`` and ``finish`` methods: the Recorder itself in the driver's process, or in a worker a
:class:`Relay`, which turns each call into a message that the driver replays with
:meth:`Recorder.apply`.
"""

from __future__ import annotations

import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import yaml

from trainlab.config import RunConfig
from trainlab.data import ImageData
from trainlab.interrupts import interruption
from trainlab.store import RunStore
from trainlab.train.bookkeeping import TrainResult
from trainlab.train.ensemble import train_ensemble, train_together
from trainlab.train.plain import train_run


class Sink(Protocol):
    """Where training reports a run's progress: a :class:`Recorder` or a :class:`Relay`."""

    def epoch(self, run_id: str, row: dict[str, Any]) -> None: ...

    def probes(self, run_id: str, stats: list[tuple], histograms: list[tuple]) -> None: ...

    def curves(self, run_id: str, rows: list[tuple]) -> None: ...

    def finish(self, run_id: str, status: str, error: str | None = None,
               diverged_step: int | None = None) -> None: ...


class Recorder:
    """Writes runs into ``store`` as they train: started, each epoch's metrics, probe and curve rows,
    finished.

    ``on_change(recorder)`` is called after a run starts or finishes; ``observers`` (sinks, such as
    :class:`~trainlab.probes.tensorboard.TensorBoardStream`) get every call once the store has it. As a
    context manager, an exception marks every run started and not finished ``failed`` with the reason
    (Ctrl-C and SIGTERM: ``interrupted``, see :mod:`trainlab.interrupts`), then propagates.
    """

    def __init__(self, store: RunStore, on_change: Callable[[Recorder], None] | None = None,
                 observers: Sequence[Sink] = ()):
        self.store = store
        self.on_change = on_change
        self.observers = list(observers)
        self.running: dict[str, None] = {}  # run ids started and not finished, in start order
        self.ended: dict[str, str] = {}  # run id -> final status, for runs finished here

    def start(self, run_id: str, pid: int | None = None) -> None:
        """Mark a run ``running`` in process ``pid`` (default: this one); its training writes its folder."""
        self.store.start_run(run_id, pid)
        self.running[run_id] = None
        self._changed()

    def epoch(self, run_id: str, row: dict[str, Any]) -> None:
        self.store.log_epoch(run_id, row)
        for observer in self.observers:
            observer.epoch(run_id, row)

    def probes(self, run_id: str, stats: list[tuple], histograms: list[tuple]) -> None:
        self.store.log_probes(run_id, stats, histograms)
        for observer in self.observers:
            observer.probes(run_id, stats, histograms)

    def curves(self, run_id: str, rows: list[tuple]) -> None:
        self.store.log_curves(run_id, rows)
        for observer in self.observers:
            observer.curves(run_id, rows)

    def finish(self, run_id: str, status: str, error: str | None = None,
               diverged_step: int | None = None) -> None:
        self.store.finish_run(run_id, status, error=error, diverged_step=diverged_step)
        self.running.pop(run_id, None)
        self.ended[run_id] = status
        for observer in self.observers:
            observer.finish(run_id, status, error, diverged_step)
        self._changed()

    def fail(self, run_ids: list[str], reason: str, status: str = "failed") -> None:
        """Mark those of ``run_ids`` that are still running ``status`` (failed, interrupted) with ``reason``."""
        for run_id in [r for r in run_ids if r in self.running]:
            self.finish(run_id, status, error=reason)

    def warn(self, message: str) -> None:
        """A worker's warning, issued again here, where the user sees this process's warnings."""
        warnings.warn(message, UserWarning, stacklevel=2)

    def apply(self, message: tuple[str, tuple]) -> None:
        """Replay a :class:`Relay` message."""
        method, args = message
        handlers = {"epoch": self.epoch, "probes": self.probes, "curves": self.curves, "finish": self.finish,
                    "warn": self.warn}
        handlers[method](*args)

    def _changed(self) -> None:
        if self.on_change:
            self.on_change(self)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, exc_type, error, tb) -> None:
        if isinstance(error, KeyboardInterrupt):
            self.fail(list(self.running), interruption(error), "interrupted")
        elif error is not None:
            self.fail(list(self.running), failure_reason(error))


_SHOW_WARNING = warnings.showwarning  # Python's, before a worker relays its warnings


class Relay:
    """A worker's sink: each call becomes a message ``(method, args)`` to ``send``, for :meth:`Recorder.apply`."""

    def __init__(self, send: Callable[[tuple[str, tuple]], None]):
        self.send = send

    def epoch(self, run_id: str, row: dict[str, Any]) -> None:
        self.send(("epoch", (run_id, row)))

    def probes(self, run_id: str, stats: list[tuple], histograms: list[tuple]) -> None:
        self.send(("probes", (run_id, stats, histograms)))

    def curves(self, run_id: str, rows: list[tuple]) -> None:
        self.send(("curves", (run_id, rows)))

    def finish(self, run_id: str, status: str, error: str | None = None,
               diverged_step: int | None = None) -> None:
        self.send(("finish", (run_id, status, error, diverged_step)))

    def warn(self, message: str) -> None:
        self.send(("warn", (message,)))

    def relay_warnings(self) -> None:
        """Send this worker process's UserWarnings (trainlab's) to the driver instead of printing them
        (a Ray worker that runs several tasks relays each task's to that task's driver)."""
        def relayed(message, category, *args, **kwargs) -> None:  # noqa: ANN001
            if issubclass(category, UserWarning):
                self.warn(str(message))
            else:
                _SHOW_WARNING(message, category, *args, **kwargs)
        warnings.showwarning = relayed


def failure_reason(error: BaseException) -> str:
    """What a failed run records: the error and its first traceback frames."""
    return f"{type(error).__name__}: {error}\n{''.join(traceback.format_exception(error, limit=3))}"


def _write_config(cfg: RunConfig, run_dir: Path) -> None:
    """Create the run folder ``run_dir`` with the run's ``config.yaml`` (OSError when it cannot be written)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def train_recorded(cfg: RunConfig, data: ImageData, run_dir: Path, sink: Sink,
                   progress: bool = False) -> TrainResult:
    """:func:`~trainlab.train.plain.train_run` in ``run_dir`` (its config.yaml written first), reporting its
    epochs and its end to ``sink``."""
    run_id = cfg.run_id()
    _write_config(cfg, run_dir)
    result = train_run(cfg, data, run_dir, progress=progress, on_epoch=lambda row: sink.epoch(run_id, row),
                       on_probes=lambda stats, hists: sink.probes(run_id, stats, hists),
                       on_curves=lambda rows: sink.curves(run_id, rows))
    sink.finish(run_id, result.status, diverged_step=result.diverged_step)
    return result


def train_job(configs: list[RunConfig], data: ImageData, run_dirs: list[Path], sink: Sink,
              progress: bool = False) -> None:
    """Train one run, or runs that train together as a vectorised ensemble, reporting to ``sink``.

    An ensemble that cannot train together trains one by one (see
    :func:`~trainlab.train.ensemble.train_together`). A run that fails (its folder cannot be
    written, say) is reported ``failed`` with the reason and the job carries on with the next run.
    """
    if len(configs) > 1 and train_together(lambda: _train_ensemble(configs, data, run_dirs, sink, progress),
                                           len(configs)) is not None:
        return
    for cfg, run_dir in zip(configs, run_dirs):
        try:
            train_recorded(cfg, data, run_dir, sink, progress)
        except Exception as error:  # reported to the sink as the run's end; the other runs still train
            sink.finish(cfg.run_id(), "failed", error=failure_reason(error))


def _train_ensemble(configs: list[RunConfig], data: ImageData, run_dirs: list[Path], sink: Sink,
                    progress: bool) -> list[TrainResult]:
    ids = [cfg.run_id() for cfg in configs]
    for cfg, run_dir in zip(configs, run_dirs):
        _write_config(cfg, run_dir)
    results = train_ensemble(configs, data, run_dirs, progress=progress,
                             on_epoch=lambda m, row: sink.epoch(ids[m], row),
                             on_probes=lambda m, stats, hists: sink.probes(ids[m], stats, hists),
                             on_curves=lambda m, rows: sink.curves(ids[m], rows))
    for run_id, result in zip(ids, results):
        sink.finish(run_id, result.status, diverged_step=result.diverged_step)
    return results
