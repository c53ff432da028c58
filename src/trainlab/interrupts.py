"""Stopping on Ctrl-C and SIGTERM: runs that were training become ``interrupted``, and resume.

Python turns SIGINT (Ctrl-C) into :class:`KeyboardInterrupt`; :func:`stop_on_signals` does the
same for SIGTERM (what ``kill``, a job scheduler or a container stop sends), as
:class:`Interrupted`. The exception unwinds training: the executors stop their workers and the
:class:`~trainlab.train.record.Recorder` marks every run it had started and not finished
``interrupted``. The next ``trainlab run`` of the study resumes them from their checkpoints.

A terminal sends Ctrl-C to every process of the job, workers too, and an impatient user presses
it twice: so workers ignore SIGINT (:func:`ignore_interrupts`; their driver stops them), and after
the first signal the driver ignores further ones until it has finished stopping, which takes
well under a second.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Training was stopped by a signal (its name is the message); a KeyboardInterrupt, so every
    ``except KeyboardInterrupt`` treats SIGTERM as Ctrl-C."""

    @property
    def exit_code(self) -> int:
        """The shell's code for a process ended by this signal: 128 + its number."""
        return 128 + signal.Signals[str(self)].value


def interruption(error: KeyboardInterrupt) -> str:
    """What an interrupted run records as its reason."""
    return f"interrupted by {error if isinstance(error, Interrupted) else 'SIGINT'}"


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted` once; later ones are ignored
    from then on, as the process is stopping (a second Ctrl-C must not kill it half-way through
    marking its runs, or as it prints its last line). Without a signal the previous handlers come
    back at the block's end (main thread only)."""
    interrupted = False

    def stop(number: int, frame: object) -> None:
        nonlocal interrupted
        interrupted = True
        for each in SIGNALS:
            signal.signal(each, signal.SIG_IGN)
        raise Interrupted(signal.Signals(number).name)

    previous = {each: signal.signal(each, stop) for each in SIGNALS}
    try:
        yield
    finally:
        if not interrupted:
            for each, handler in previous.items():
                signal.signal(each, handler)


def ignore_interrupts() -> None:
    """For a worker process: leave Ctrl-C, which the terminal sends to it too, to its driver."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
