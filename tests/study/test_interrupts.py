"""Ctrl-C and SIGTERM stop a study with every executor: one line, no run left running, resumable."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.processes import histories, running, wait_for
from trainlab.store import RunStore
from trainlab.study import run_study

# 2 activations x 2 seeds of a digits MLP, long enough (20 epochs) to be caught mid-run.
STUDY = {
    "name": "interrupts",
    "base": {"data": {"name": "digits"}, "model": {"hidden": [64, 64]},
             "train": {"epochs": 20, "batch_size": 32, "threads": 1}},
    "vary": {"model.activation": ["tanh", "relu"]},
    "seeds": 2,
}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    store = tmp_path_factory.mktemp("whole")
    run_study(STUDY, store=store, ensemble=False)
    return histories(store)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("executor, stop, to_group, presses", [
    ("local", signal.SIGINT, True, 1),  # Ctrl-C in a terminal signals the whole process group
    ("processes", signal.SIGINT, True, 2),  # twice, as an impatient user does
    ("processes", signal.SIGTERM, False, 1),  # `kill PID` of the driver alone
    ("processes", signal.SIGTERM, True, 1),  # a scheduler stopping the job
    ("ray", signal.SIGINT, True, 1),
])
def test_a_stopped_study_stops_at_once_with_one_line_and_resumes(uninterrupted, tmp_path, executor, stop,
                                                                 to_group, presses):
    if executor == "ray":
        pytest.importorskip("ray", reason="ray is not installed")
    path = tmp_path / "study.json"
    path.write_text(json.dumps(STUDY))
    store = tmp_path / "store"
    argv = [sys.executable, "-m", "trainlab", "run", str(path), "--store", str(store), "--executor", executor,
            "--no-ensemble", "--no-report", "--quiet"]
    driver = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)  # its own process group, as a terminal's job
    wait_for(lambda: running(store), "a run with an epoch done", timeout=180)
    for _ in range(presses):
        if to_group:
            os.killpg(driver.pid, stop)
        else:
            os.kill(driver.pid, stop)
        time.sleep(0.05)
    _, err = driver.communicate(timeout=30)  # went on for minutes before
    name = signal.Signals(stop).name
    assert driver.returncode == 128 + stop
    assert err.splitlines() == [f"trainlab: interrupted by {name}; the same command again resumes where it stopped"]
    wait_for(lambda: not _group_alive(driver.pid), "the workers to exit", timeout=30)
    runs = RunStore(store).runs()
    assert "running" not in set(runs["status"])
    interrupted = runs[runs["status"] == "interrupted"]
    assert len(interrupted) >= 1 and (interrupted["epochs_done"] < STUDY["base"]["train"]["epochs"]).all()
    reasons = {RunStore(store).get_run(run_id)["error"] for run_id in interrupted["run_id"]}
    assert reasons <= {f"interrupted by {name}", f"worker process interrupted by {name}"}

    again = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert set(RunStore(store).runs()["status"]) == {"done"}
    assert histories(store) == uninterrupted  # resumed from checkpoints, as if never stopped
