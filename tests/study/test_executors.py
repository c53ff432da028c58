"""The same study through every executor, and a study killed mid-way then run again."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest

from trainlab.cli import main
from trainlab.config import load_config
from trainlab.store import RunStore
from trainlab.study import run_study
from trainlab.study.executors import Task, execute
from trainlab.train import record, train_run

# 3 activations x 2 depths x 2 seeds on digits = 12 runs. train.threads makes each run use the
# same CPU thread count whichever executor trains it, so the numbers must agree bit for bit
# (the local executor without ensembles; with them, up to float rounding).
STUDY = {
    "name": "executors",
    "base": {"data": {"name": "digits"}, "model": {"hidden": [32]},
             "train": {"epochs": 2, "batch_size": 64, "threads": 1}},
    "vary": {"model.activation": ["sigmoid", "tanh", "relu"], "model.hidden": [[32], [32, 32]]},
    "seeds": 2,
}
METRICS = ["train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"]


@pytest.fixture(scope="module")
def local_result(tmp_path_factory):
    return run_study(STUDY, store=tmp_path_factory.mktemp("local"), ensemble=False)


@pytest.mark.parametrize("executor", ["local", "processes", "ray"])
def test_runs_that_differ_only_in_seed_train_as_ensembles_with_the_same_numbers(local_result, tmp_path, executor):
    if executor == "ray":
        pytest.importorskip("ray", reason="ray is not installed")
    result = run_study(STUDY, store=tmp_path, executor=executor, workers=2)
    assert result.runs["run_id"].tolist() == local_result.runs["run_id"].tolist()
    pd.testing.assert_frame_equal(result.runs[METRICS], local_result.runs[METRICS], rtol=1e-4, atol=1e-5)
    # the two seeds of a configuration trained together: they share the ensemble's epoch time
    times = {run_id: history["epoch_time"].tolist() for run_id, history in result.histories.items()}
    by_config = result.runs.groupby(["model.activation", result.runs["model.hidden"].astype(str)])["run_id"]
    pairs = [list(ids) for _, ids in by_config]
    assert len(pairs) == 6 and all(times[a] == times[b] for a, b in pairs)
    assert len({tuple(times[a]) for a, _ in pairs}) == 6


@pytest.mark.parametrize("executor", ["processes", "ray"])
def test_every_executor_gives_identical_final_metrics(local_result, tmp_path, executor):
    if executor == "ray":
        pytest.importorskip("ray", reason="ray is not installed")
    result = run_study(STUDY, store=tmp_path, executor=executor, workers=2, ensemble=False)
    assert len(result.runs) == 12 and set(result.runs["status"]) == {"done"}
    assert result.runs["run_id"].tolist() == local_result.runs["run_id"].tolist()
    assert result.runs[METRICS].equals(local_result.runs[METRICS])
    history = result.histories[result.runs["run_id"][0]]
    assert history["epoch"].tolist() == [1, 2]  # the driver stored every epoch the worker returned


@pytest.mark.filterwarnings("ignore:1 of 2 runs failed")
def test_a_killed_worker_fails_its_run_and_the_study_carries_on(tmp_path):
    slow = {"data.name": "synthetic", "data.synthetic.n_train": 20000, "train.epochs": 50}
    study = {**STUDY, "vary": {}, "seeds": 1,
             "variants": [{"label": "slow", "set": slow}, {"label": "quick"}]}
    store = RunStore(tmp_path)
    outcome = {}
    driver = threading.Thread(target=lambda: outcome.update(result=run_study(
        study, store=tmp_path, executor="processes", workers=2)))
    driver.start()
    deadline = time.time() + 120
    victim = None
    while victim is None and time.time() < deadline:
        running = store.conn.execute(
            "SELECT r.pid FROM runs r JOIN study_runs s USING (run_id) "
            "WHERE s.label = 'slow' AND r.status = 'running'").fetchone()
        victim = running and running["pid"]
        time.sleep(0.05)
    os.kill(victim, signal.SIGKILL)  # as the OOM killer would
    driver.join(timeout=300)
    runs = outcome["result"].runs
    assert dict(zip(runs["label"], runs["status"])) == {"slow": "failed", "quick": "done"}
    error = store.get_run(runs["run_id"][0])["error"]
    assert "worker process died" in error and "-9" in error


def test_sigkill_during_a_study_then_rerun_gives_the_uninterrupted_results(tmp_path):
    study = {**STUDY, "base": {**STUDY["base"], "train": {"epochs": 4, "batch_size": 16, "threads": 1}}}
    path = tmp_path / "study.json"
    path.write_text(json.dumps(study))
    expected = run_study(study, store=tmp_path / "whole")

    store = tmp_path / "killed"
    argv = [sys.executable, "-m", "trainlab", "run", str(path), "--store", str(store), "--json", "--no-report"]
    victim = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (store / "trainlab.db").exists():
            runs = RunStore(store).runs()
            if (runs["status"] == "done").sum() >= 3 and (runs["epochs_done"].between(1, 3)).any():
                break
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    done_before = (RunStore(store).runs()["status"] == "done").sum()
    assert 3 <= done_before < 12

    rerun = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    rows = json.loads(rerun.stdout)["runs"]
    assert [r["run_id"] for r in rows] == expected.runs["run_id"].tolist()
    for row, (_, want) in zip(rows, expected.runs.iterrows()):
        assert {m: row[m] for m in METRICS} == {m: want[m] for m in METRICS}
    conn = RunStore(store).conn
    total, distinct = conn.execute("SELECT COUNT(*), COUNT(DISTINCT run_id || '/' || epoch || '/' || name) "
                                   "FROM metrics").fetchone()
    assert total == distinct == 12 * 4 * 12  # 12 metrics per epoch, no duplicates


def test_a_failing_ensemble_job_trains_its_runs_one_by_one(tmp_path, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(record, "train_ensemble", out_of_memory)
    configs = [load_config(STUDY["base"], [f"train.seed={seed}"]) for seed in (0, 1)]
    job = [Task(cfg.run_id(), cfg.to_dict(), str(tmp_path / str(i))) for i, cfg in enumerate(configs)]
    messages = []  # what a worker streams to the driver
    with pytest.warns(UserWarning, match="ensemble of 2 runs failed .*out of memory.* one by one"):
        execute(job, record.Relay(messages.append))
    ends = [args for method, args in messages if method == "finish"]
    assert [(run_id, status) for run_id, status, *_ in ends] == [(cfg.run_id(), "done") for cfg in configs]
    for cfg in configs:
        alone = train_run(cfg).history
        rows = [args[1] for method, args in messages if method == "epoch" and args[0] == cfg.run_id()]
        assert [{m: row[m] for m in METRICS} for row in rows] == alone[METRICS].to_dict(orient="records")


def test_status_shows_a_worker_runs_epochs_while_it_trains(tmp_path, capsys):
    epochs = 40  # about 0.2 s each: the run trains for seconds after its first epoch
    study = {"name": "slow", "seeds": 1,
             "base": {"data": {"name": "synthetic", "val_size": 64,
                               "synthetic": {"n_train": 3000, "n_test": 64, "channels": 1, "size": 8, "classes": 4}},
                      "model": {"hidden": [64]}, "train": {"epochs": epochs, "batch_size": 8, "threads": 1}}}
    path = tmp_path / "study.json"
    path.write_text(json.dumps(study))
    store = tmp_path / "store"
    argv = [sys.executable, "-m", "trainlab", "run", str(path), "--store", str(store), "--executor", "processes",
            "--workers", "1", "--json", "--no-report"]
    driver = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def status() -> dict:
        code = main(["status", str(path), "--store", str(store), "--json"])
        [row] = json.loads(capsys.readouterr().out)["runs"]
        assert code == (0 if row["status"] in ("done", "diverged") else 1)
        return row

    seen = None
    deadline = time.time() + 120
    while seen is None and driver.poll() is None and time.time() < deadline:
        if (store / "trainlab.db").exists():
            row = status()
            seen = row if row["status"] == "running" and row["epochs"] >= 1 else None
        time.sleep(0.05)
    _, err = driver.communicate(timeout=300)
    assert driver.returncode == 0, err
    assert seen is not None, "status never showed the running worker's finished epochs"
    assert 1 <= seen["epochs"] < epochs and "train_loss" in seen["final"]
    final = status()
    assert final["status"] == "done" and final["epochs"] == epochs
