"""`trainlab run --tensorboard` writes each run's event files while it trains, with every executor."""

import json

import pytest

from tests.processes import finish, running, trainlab, wait_for
from trainlab.store import RunStore
from trainlab.train.fit import stored_history

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

# two digits MLPs of 60 short epochs: long enough to be read while they train
STUDY = {
    "name": "streamed",
    "base": {"data": {"name": "digits"}, "model": {"hidden": [64, 64]},
             "train": {"epochs": 60, "batch_size": 32, "threads": 1}},
    "vary": {"model.activation": ["tanh", "relu"]},
}


def _scalars(folder, tag):
    if not folder.is_dir():  # a run that has not sent an epoch yet
        return []
    reader = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0})
    reader.Reload()
    return [(e.step, e.value) for e in reader.Scalars(tag)] if tag in reader.Tags()["scalars"] else []


def _assert_events(events, steps, values):
    """``events`` are the stored ``values`` at ``steps``: each once, in order."""
    assert [step for step, _ in events] == list(steps)
    assert [value for _, value in events] == pytest.approx(list(values), rel=1e-6)


@pytest.mark.parametrize("executor", ["processes", "ray"])
def test_event_files_grow_while_runs_train_and_end_equal_to_the_store(tmp_path, executor):
    if executor == "ray":
        pytest.importorskip("ray", reason="ray is not installed")
    path, store, logdir = tmp_path / "study.json", tmp_path / "store", tmp_path / "tb"
    path.write_text(json.dumps(STUDY))
    driver = trainlab("run", path, "--store", store, "--executor", executor, "--tensorboard", logdir,
                      "--no-report", "--quiet", "--no-ensemble")
    training = wait_for(lambda: {r for r in running(store) if _scalars(logdir / r, "metrics/test_acc")},
                        "a training run's first epochs in its event file", timeout=180)
    seen = _scalars(logdir / next(iter(training)), "metrics/test_acc")
    # read mid-run: the first epochs are there, in order, the others not yet
    assert [step for step, _ in seen] == list(range(1, len(seen) + 1)) and len(seen) < 60

    code, _, err = finish(driver)
    assert code == 0, err
    runs = RunStore(store)
    for run_id in runs.runs()["run_id"]:
        history = stored_history(runs, run_id)
        _assert_events(_scalars(logdir / run_id, "metrics/test_acc"), history["epoch"], history["test_acc"])
        norm = runs.probes(run_id).query("quantity == 'grad' and layer == 'fc1' and tensor == 'weight' "
                                         "and stat == 'norm'")
        _assert_events(_scalars(logdir / run_id, "grad/fc1.weight/norm"), norm["step"], norm["value"])


def test_runs_finished_before_are_written_from_the_store(tmp_path):
    path, store = tmp_path / "study.json", tmp_path / "store"
    path.write_text(json.dumps({**STUDY, "base": {**STUDY["base"], "train": {"epochs": 2, "threads": 1}}}))
    code, _, err = finish(trainlab("run", path, "--store", store, "--no-report", "--quiet"))
    assert code == 0, err
    for _ in range(2):  # the second time, each run's events replace the first time's: one copy of each value
        code, _, err = finish(trainlab("run", path, "--store", store, "--tensorboard", tmp_path / "tb",
                                       "--no-report", "--quiet"))
        assert code == 0, err
    runs = RunStore(store)
    for run_id in runs.runs()["run_id"]:
        history = stored_history(runs, run_id)
        _assert_events(_scalars(tmp_path / "tb" / run_id, "metrics/test_acc"), history["epoch"], history["test_acc"])
