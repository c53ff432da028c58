"""How many CPU threads a run uses when ``train.threads`` is not set: the cores no other job keeps busy.

torch's CPU operators run on a pool of OpenMP threads that spin while they wait for each other.
When another job keeps some of the cores busy, a pool as large as the machine waits on threads
the scheduler has put aside: on 2 cores shared with another 2-thread job, the quickstart study
took 249 s with 2 threads against 33 s with one (docs/performance.md). So a run takes
``min(its threads, free_cores())``, where :func:`free_cores` watches the machine's CPU time for a
moment (Linux ``/proc/stat``, less this process's own) and counts the cores the others used.
"""

from __future__ import annotations

import math
import os
import time

WINDOW = 0.05  # seconds the machine is watched
FRESH = 5.0  # seconds a count is reused for the next run (short runs would otherwise pay WINDOW each)
_last: tuple[float, int] | None = None  # (when, free cores) of the latest count


def free_cores() -> int:
    """Cores of this machine that other processes left idle over the last moment (at least 1).

    All of :func:`usable_cores` where ``/proc/stat`` cannot be read (not Linux).
    """
    global _last
    now = time.monotonic()
    if _last is not None and now - _last[0] < FRESH:
        return _last[1]
    cores = usable_cores()
    first = _ticks()
    if first is None:
        return cores
    time.sleep(WINDOW)
    last = _ticks()
    if last is None:
        return cores
    (busy0, total0, own0, cpus), (busy1, total1, own1, _) = first, last
    others = max(0, (busy1 - busy0) - (own1 - own0)) / max(1, total1 - total0) * cpus  # cores' worth
    free = max(1, min(cores, cores - round(others)))
    _last = (time.monotonic(), free)
    return free


class LoadMeter:
    """The share of the machine's CPU time (0 to 1) that other processes used between two calls of
    :meth:`lap`: how busy the machine was while a run trained. NaN where ``/proc/stat`` cannot be read."""

    def __init__(self) -> None:
        self._mark = _ticks()

    def lap(self) -> float:
        """Other processes' share since the last lap (or since this meter was made)."""
        first, self._mark = self._mark, _ticks()
        if first is None or self._mark is None:
            return math.nan
        (busy0, total0, own0, _), (busy1, total1, own1, _) = first, self._mark
        return min(1.0, max(0, (busy1 - busy0) - (own1 - own0)) / max(1, total1 - total0))


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _ticks() -> tuple[int, int, int, int] | None:
    """(busy, total) clock ticks of all cores, this process's own busy ticks, and the number of cores counted."""
    try:
        with open("/proc/stat") as stat:
            lines = stat.read().splitlines()
        with open("/proc/self/stat") as own:
            fields = own.read().rpartition(")")[2].split()  # after the command name, which may hold spaces
    except OSError:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in lines[0].split()[1:9])
    busy = user + nice + system + irq + softirq + steal
    cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    return busy, busy + idle + iowait, int(fields[11]) + int(fields[12]), cpus
