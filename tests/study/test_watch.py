"""`trainlab status --watch`: a running study's progress per variant, from any process and executor."""

import json
import math

import pytest

from tests.processes import finish, running, trainlab, wait_for
from trainlab.cli import main
from trainlab.store import RunStore
from trainlab.study import run_study
from trainlab.study.watch import progress

STUDY = {
    "name": "watched",
    "base": {"data": {"name": "digits"}, "model": {"hidden": [64, 64]},
             "train": {"epochs": 60, "batch_size": 32, "threads": 1}},
    "vary": {"model.activation": ["tanh", "relu"]},
    "seeds": 2,
}


def test_progress_of_a_finished_study_equals_its_results(tmp_path):
    study = {**STUDY, "base": {**STUDY["base"], "train": {"epochs": 2, "threads": 1}}}
    result = run_study(study, store=tmp_path)
    frame = progress(study, RunStore(tmp_path)).set_index("variant")
    for label, runs in result.runs.groupby("label"):
        row = frame.loc[label]
        assert (row["runs"], row["done"], row["running"], row["ended"]) == (2, 2, 0, 2)
        assert (row["epochs"], row["planned_epochs"], row["left"]) == (4, 4, 0.0)
        assert row["final"] == pytest.approx(runs["test_acc"].mean()) and row["now"] == pytest.approx(row["final"])


@pytest.mark.parametrize("executor", ["processes"])
def test_watching_a_study_shows_it_advance_and_stops_when_it_ends(tmp_path, executor):
    path, store = tmp_path / "study.json", tmp_path / "store"
    path.write_text(json.dumps(STUDY))
    driver = trainlab("run", path, "--store", store, "--executor", executor, "--no-report", "--quiet",
                      "--no-ensemble")
    wait_for(lambda: running(store), "a run's first epoch", timeout=180)
    watcher = trainlab("status", path, "--store", store, "--watch", "0.2", "--json")
    assert finish(driver)[0] == 0
    code, out, err = finish(watcher, timeout=60)  # it ends by itself once every run has
    assert code == 0, err
    snapshots = [json.loads(line) for line in out.splitlines()]
    epochs = [sum(v["epochs"] for v in s) for s in snapshots]
    assert epochs == sorted(epochs) and epochs[-1] == 4 * 60  # never backwards, to the end
    assert any(0 < e < 4 * 60 and any(v["running"] for v in s) for e, s in zip(epochs, snapshots))
    assert any(not math.isnan(v["left"]) and v["left"] > 0 for s in snapshots[:-1] for v in s)
    runs = RunStore(store).runs()
    last = {v["variant"]: v for v in snapshots[-1]}
    assert {v["done"] for v in last.values()} == {2} and {v["left"] for v in last.values()} == {0.0}
    assert sum(v["final"] for v in last.values()) / 2 == pytest.approx(runs["test_acc"].mean())


def test_a_watch_interval_of_zero_is_a_clear_error(tmp_path, capsys):
    assert main(["status", "quickstart", "--store", str(tmp_path), "--watch", "0"]) == 2
    err = capsys.readouterr().err
    assert err == "trainlab: error: --watch takes a number of seconds above 0, got 0\n"


def test_a_study_after_watch_gets_told_where_the_study_goes(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["status", "--watch", "study.yaml", "--store", str(tmp_path)])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith("argument --watch: expected seconds, got 'study.yaml'; put the study first: "
                        "trainlab status STUDY --watch [SECONDS]")


def test_ctrl_c_stops_a_watch_in_one_line_that_promises_no_resume(tmp_path):
    import signal

    path = tmp_path / "study.json"
    path.write_text(json.dumps(STUDY))
    RunStore(tmp_path / "store")  # a store, and a study with nothing training: the watch waits
    watcher = trainlab("status", path, "--store", tmp_path / "store", "--watch", "0.2", "--json")
    wait_for(lambda: watcher.stdout.readline(), "the first snapshot")
    watcher.send_signal(signal.SIGINT)
    code, _, err = finish(watcher, timeout=30)
    assert code == 130 and err == "trainlab: interrupted by SIGINT\n"
