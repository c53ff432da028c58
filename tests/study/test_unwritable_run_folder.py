"""A run whose folder cannot be written ends ``failed`` with the reason, and its study carries on."""

import json
import re

import pytest

from tests.conftest import tiny_config
from trainlab.cli import main
from trainlab.config import load_config
from trainlab.store import RunStore
from trainlab.study import plan_study, run_study

STUDY = {"name": "unwritable", "base": tiny_config(epochs=1, threads=1), "seeds": 2}


@pytest.mark.parametrize("executor, ensemble, blocked", [
    ("local", False, "config.yaml"), ("local", True, "config.yaml"), ("processes", True, "config.yaml"),
    ("local", False, "checkpoint.pt"), ("local", False, ""), ("processes", False, ""),
])
def test_a_run_whose_folder_cannot_be_written_fails_with_the_reason_and_the_study_carries_on(
        tmp_path, capsys, executor, ensemble, blocked):
    _, runs = plan_study(STUDY)
    broken, fine = runs[0].run_id, runs[1].run_id
    store = RunStore(tmp_path)
    if blocked:
        (store.run_dir(broken) / blocked).mkdir(parents=True)  # a folder where a file must go: unwritable for root too
    else:
        store.run_dir(broken).parent.mkdir(parents=True, exist_ok=True)
        store.run_dir(broken).write_text("a file where the run's folder must go")
    with pytest.warns(UserWarning) as caught:
        result = run_study(STUDY, store=tmp_path, executor=executor, workers=2, ensemble=ensemble)
    messages = [str(warning.message) for warning in caught]
    assert any(re.search(f"1 of 2 runs failed.*{broken}", message) for message in messages)
    # an ensemble that cannot write one run's folder says so and trains its runs one by one
    assert any(message.startswith("ensemble of 2 runs failed") for message in messages) == ensemble
    assert dict(zip(result.runs["run_id"], result.runs["status"])) == {broken: "failed", fine: "done"}
    error = RunStore(tmp_path).get_run(broken)["error"]
    where = f"{broken}/{blocked}" if blocked else broken
    assert error.startswith("IsADirectoryError" if blocked else "FileExistsError") and where in error
    capsys.readouterr()
    main(["show", broken, "--store", str(tmp_path)])
    assert f"/{where}" in capsys.readouterr().out


def test_trainlab_train_on_a_folder_that_cannot_be_written_fails_in_one_line(tmp_path, capsys):
    config = tmp_path / "run.json"
    config.write_text(json.dumps(tiny_config(epochs=1, threads=1)))
    run_id = load_config(str(config)).run_id()
    store = RunStore(tmp_path / "store")
    (store.run_dir(run_id) / "config.yaml").mkdir(parents=True)
    assert main(["train", "--config", str(config), "--store", str(tmp_path / "store"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "config.yaml" in err and "Traceback" not in err
    record = RunStore(tmp_path / "store").get_run(run_id)
    assert record["status"] == "failed" and record["error"].startswith("IsADirectoryError")
