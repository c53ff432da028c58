"""A run whose folder cannot be written ends ``failed`` with the reason, and its study carries on."""

import pytest

from tests.conftest import tiny_config
from trainlab.cli import main
from trainlab.store import RunStore
from trainlab.study import plan_study, run_study

STUDY = {"name": "unwritable", "base": tiny_config(epochs=1, threads=1), "seeds": 2}


@pytest.mark.parametrize("executor, ensemble, blocked", [
    ("local", False, "config.yaml"), ("local", True, "config.yaml"), ("processes", True, "config.yaml"),
    ("local", False, "checkpoint.pt"),
])
def test_a_run_whose_folder_cannot_be_written_fails_with_the_reason_and_the_study_carries_on(
        tmp_path, capsys, executor, ensemble, blocked):
    _, runs = plan_study(STUDY)
    broken, fine = runs[0].run_id, runs[1].run_id
    store = RunStore(tmp_path)
    (store.run_dir(broken) / blocked).mkdir()  # a folder where a file must go: unwritable, even for root
    with pytest.warns(UserWarning, match=f"1 of 2 runs failed.*{broken}"):
        result = run_study(STUDY, store=tmp_path, executor=executor, workers=2, ensemble=ensemble)
    assert dict(zip(result.runs["run_id"], result.runs["status"])) == {broken: "failed", fine: "done"}
    error = RunStore(tmp_path).get_run(broken)["error"]
    assert error.startswith("IsADirectoryError") and blocked in error
    capsys.readouterr()
    main(["show", broken, "--store", str(tmp_path)])
    assert f"/{broken}/{blocked}" in capsys.readouterr().out
