"""Several processes on one store: each run trains once, a killed holder's runs are taken over,
and no worker outlives its driver."""

import json
import os
import signal
import time

import pytest

from tests.processes import alive, descendants, finish, histories, running, trainlab, wait_for
from trainlab.config import load_config
from trainlab.store import RunStore
from trainlab.study import run_study

# 4 runs of about a second each, trained one by one (--no-ensemble), so that two processes
# started together share them
STUDY = {
    "name": "shared", "seeds": 4,
    "base": {"data": {"name": "synthetic", "val_size": 64,
                      "synthetic": {"n_train": 1000, "n_test": 64, "channels": 1, "size": 8, "classes": 4}},
             "model": {"hidden": [32]}, "train": {"epochs": 4, "batch_size": 8, "threads": 1}},
}
METRICS = ["train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"]


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    """The study trained by one process, and its file."""
    folder = tmp_path_factory.mktemp("alone")
    (folder / "study.json").write_text(json.dumps(STUDY))
    run_study(STUDY, store=folder / "store", ensemble=False)
    return folder


def _starts(log) -> dict[str, list[tuple[int, float]]]:
    """Run id -> (pid, time) of each start of its training, in order."""
    starts: dict[str, list[tuple[int, float]]] = {}
    for line in log.read_text().splitlines():
        pid, run_id, at = line.split()
        starts.setdefault(run_id, []).append((int(pid), float(at)))
    return starts


def _run(alone, store, log):
    return trainlab("run", alone / "study.json", "--store", store, "--no-ensemble", "--no-report", "--json",
                    starts=log)


def test_two_processes_running_one_study_train_each_run_once_with_the_numbers_of_one_alone(alone, tmp_path):
    store, log = tmp_path / "store", tmp_path / "starts"
    first, second = _run(alone, store, log), _run(alone, store, log)
    for process in (first, second):
        code, out, err = finish(process)
        assert code == 0, err
        rows = json.loads(out)["runs"]
        assert {row["status"] for row in rows} == {"done"}
        expected = {run_id: history[-1] for run_id, history in histories(alone / "store").items()}
        assert {row["run_id"]: {m: row[m] for m in METRICS} for row in rows} == \
            {run_id: {m: last[m] for m in METRICS} for run_id, last in expected.items()}
    starts = _starts(log)
    assert sorted(starts) == sorted(histories(alone / "store"))
    assert all(len(each) == 1 for each in starts.values()), starts
    assert histories(store) == histories(alone / "store")


def test_the_runs_of_a_killed_process_are_taken_over_by_the_other(alone, tmp_path):
    store, log = tmp_path / "store", tmp_path / "starts"
    victim, other = _run(alone, store, log), _run(alone, store, log)
    wait_for(lambda: {victim.pid, other.pid} <= set(running(store).values()), "both processes training a run")
    victim.send_signal(signal.SIGKILL)
    killed_at = time.time()
    victim.wait()
    code, out, err = finish(other)
    assert code == 0, err
    assert {row["status"] for row in json.loads(out)["runs"]} == {"done"}
    assert histories(store) == histories(alone / "store")
    starts = _starts(log)
    taken_over = [run_id for run_id, each in starts.items() if len(each) == 2]
    assert taken_over, starts  # the victim was killed while it trained a run
    for run_id, each in starts.items():
        pids = [pid for pid, _ in each]
        assert pids in ([victim.pid], [other.pid], [victim.pid, other.pid]), (run_id, each)
        assert len(each) == 1 or each[1][1] > killed_at  # taken over only once its holder was dead


def test_train_waits_for_the_process_that_holds_the_run(tmp_path):
    config = STUDY["base"]
    run_id = load_config(config).run_id()
    (tmp_path / "run.json").write_text(json.dumps(config))
    store = RunStore(tmp_path / "store")
    claim = store.claim(run_id)  # as a `trainlab run` training this run would
    process = trainlab("train", "--config", tmp_path / "run.json", "--store", tmp_path / "store", "--json")
    wait_for(lambda: store.status_of([run_id]), "the run registered")
    time.sleep(1)
    assert store.get_run(run_id)["status"] == "pending"
    claim.release()
    code, out, err = finish(process)
    assert code == 0, err
    assert json.loads(out)["status"] == "done" and store.get_run(run_id)["epochs_done"] == 4


@pytest.mark.parametrize("executor", ["processes", "ray"])
def test_workers_stop_at_once_when_their_driver_is_killed(tmp_path, executor):
    if executor == "ray":
        pytest.importorskip("ray", reason="ray is not installed")
    # one epoch takes many seconds: a worker that only notices at the end of an epoch lives on
    slow = {**STUDY, "seeds": 1, "base": {
        **STUDY["base"], "train": {**STUDY["base"]["train"], "batch_size": 2},
        "data": {**STUDY["base"]["data"], "synthetic": {
            "n_train": 40_000, "n_test": 64, "channels": 1, "size": 8, "classes": 4}}}}
    (tmp_path / "study.json").write_text(json.dumps(slow))
    store = RunStore(tmp_path / "store")
    driver = trainlab("run", tmp_path / "study.json", "--store", tmp_path / "store", "--no-report",
                      "--executor", executor, "--workers", "1")
    if executor == "processes":  # the store names the worker that trains the run
        query = "SELECT pid FROM runs WHERE status = 'running'"
        worker = wait_for(lambda: (row := store.conn.execute(query).fetchone()) and row["pid"], "the worker")
    else:  # the store names the driver; the task runs in a Ray worker below the local cluster's raylet
        worker = wait_for(lambda: next((pid for pid, command in descendants(driver.pid).items()
                                        if command.startswith("ray::_execute_on_ray")), None), "the Ray task")
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    try:  # Ray ends a dead driver's tasks itself, a little later than a pipe's end stops a process worker
        wait_for(lambda: not alive(worker), "the worker to stop", timeout=3 if executor == "processes" else 10)
    finally:
        if alive(worker):
            os.kill(worker, signal.SIGKILL)
