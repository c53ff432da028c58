"""``trainlab`` as real processes for the kill and concurrency tests: start, wait, compare stores."""

from __future__ import annotations

import base64
import io
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from trainlab.store import RunStore
from trainlab.train.bookkeeping import TIMING as TIMING_METRICS

TIMING = list(TIMING_METRICS)  # the history columns that differ between runs

# `python -c LOGGED ARGS` is `trainlab ARGS`, appending "pid run_id time" to $STARTS each time
# the process starts training a run: it observes Recorder.start and changes nothing.
LOGGED = """
import os, sys, time
from trainlab.train import record
start = record.Recorder.start
def logged(self, run_id, *args):
    with open(os.environ["STARTS"], "a") as log:
        log.write(f"{os.getpid()} {run_id} {time.time()}\\n")
    return start(self, run_id, *args)
record.Recorder.start = logged
from trainlab.cli import main
sys.exit(main(sys.argv[1:]))
"""


def trainlab(*argv: Any, fault: str | None = None, starts: Path | None = None) -> subprocess.Popen:
    """Start ``trainlab ARGV``; ``fault`` sets ``TRAINLAB_FAULT``, ``starts`` logs each run's start there."""
    env = {k: v for k, v in os.environ.items() if k != "TRAINLAB_FAULT"}
    env |= {"TRAINLAB_FAULT": fault} if fault else {}
    env |= {"STARTS": str(starts)} if starts else {}
    code = ["-c", LOGGED] if starts else ["-m", "trainlab"]
    return subprocess.Popen([sys.executable, *code, *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    """Wait for ``process``: its exit code, stdout and stderr."""
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    """Poll ``condition()`` until it returns something true, and return that."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def running(store: Path) -> dict[str, int]:
    """Run id -> pid of the runs the store shows training, with at least one epoch recorded."""
    if not (store / "trainlab.db").exists():
        return {}
    query = "SELECT run_id, pid FROM runs WHERE status = 'running' AND epochs_done >= 1"
    rows = RunStore(store).conn.execute(query)
    return {row["run_id"]: row["pid"] for row in rows}


def histories(store: Path) -> dict[str, list[dict]]:
    """Every run's history in the store without the timing columns, as records."""
    runs = RunStore(store)
    return {run_id: runs.history(run_id).drop(columns=TIMING, errors="ignore").to_dict(orient="records")
            for run_id in runs.runs()["run_id"]}


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def descendants(pid: int) -> dict[int, str]:
    """Pid -> command line of every process below ``pid``, read from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended while we looked
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child in (p for p, pp in parents.items() if pp == parent):
            try:
                found[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (FileNotFoundError, ProcessLookupError):
                continue
            frontier.append(child)
    return found


def assert_valid_report(folder: Path) -> None:
    """``folder`` holds a whole report: HTML whose every image decodes, Markdown whose every figure exists."""
    html = (folder / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert images and "</html>" in html
    for data in images:
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            image.load()
    linked = re.findall(r"!\[[^\]]*\]\(figures/([^)]+)\)", (folder / "report.md").read_text())
    assert len(linked) == len(images) and all((folder / "figures" / name).is_file() for name in linked)
