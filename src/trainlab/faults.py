"""Fault injection for the kill tests: ``TRAINLAB_FAULT=NAME[:N]`` SIGKILLs this process the
N-th time (default: the first) it reaches ``fault_point(NAME)``.

The points sit at the instants where a kill could leave damage behind:

- ``checkpoint.rename``: a checkpoint (or probe file) is written to its temporary file, and the
  checkpoint it replaces already renamed to ``checkpoint.prev.pt``;
- ``store.epoch``: an epoch's checkpoint is on disk, the store has not recorded the epoch yet;
- ``store.finish``: every epoch is recorded, the run is not marked finished yet;
- ``report.write``: the new report is half written in its temporary folder;
- ``report.swap``: the old report is moved aside, the new one not yet in its place;
- ``report.clean``: the new report is in place, the old one not yet deleted.

``tests/test_kills.py`` kills ``trainlab run`` and ``trainlab report`` at each. The variable is
read once, at import; unset (always, outside those tests) a point costs one string comparison.
"""

from __future__ import annotations

import os
import signal

_NAME, _, _COUNT = os.environ.get("TRAINLAB_FAULT", "").partition(":")
_reached = 0


def fault_point(name: str) -> None:
    """A place where ``TRAINLAB_FAULT`` may kill this process (see the module docstring)."""
    global _reached
    if name != _NAME:
        return
    _reached += 1
    if _reached == int(_COUNT or 1):
        os.kill(os.getpid(), signal.SIGKILL)
