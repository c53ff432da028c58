"""SIGKILL ``trainlab run`` and ``trainlab report`` at each fault point (:mod:`trainlab.faults`), then
run again: the study ends with the numbers of an uninterrupted run and a whole report.

The killed commands are processes of their own; the last, uninterrupted one runs in this
process (the same code, without the seconds a fresh interpreter takes to import torch).
"""

import json
import os
import shutil

import pytest

from tests.processes import assert_valid_report, finish, histories, trainlab
from trainlab.cli import main
from trainlab.report import build_report
from trainlab.study import run_study

STUDY = {
    "name": "kills", "seeds": 2,
    "base": {"data": {"name": "synthetic", "val_size": 64,
                      "synthetic": {"n_train": 320, "n_test": 96, "channels": 1, "size": 8, "classes": 4}},
             "model": {"hidden": [16]}, "train": {"epochs": 3, "batch_size": 32, "threads": 1}},
    "report": ["question", "final_metrics", "learning_curves"],
}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The study trained in one go, and its file."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    (folder / "study.json").write_text(json.dumps(STUDY))
    run_study(STUDY, store=folder / "store")
    return folder


def _killed(*argv, fault: str) -> None:
    code, _, err = finish(trainlab(*argv, fault=fault))
    assert code == -9, f"{fault}: exit {code}\n{err}"


def _assert_prefix(store, expected: dict[str, list[dict]]) -> None:
    """What the store holds of each run is the start of the uninterrupted run's history."""
    for run_id, rows in histories(store).items():
        assert rows == expected[run_id][:len(rows)], run_id


def test_a_study_killed_at_each_fault_point_ends_with_the_numbers_of_one_run(uninterrupted, tmp_path, capsys):
    expected = histories(uninterrupted / "store")
    store = tmp_path / "store"
    argv = ["run", str(uninterrupted / "study.json"), "--store", str(store), "--json"]
    # the two seeds train as one ensemble, writing a probe file and a checkpoint per run and epoch
    # and two store rows per epoch: the kills land with the first run's epoch 1 checkpoint moved to
    # checkpoint.prev.pt and epoch 2's not in place; (a fresh process replays the stored epochs
    # first) with epoch 2 checkpointed but not recorded; before the first run is marked done; and
    # inside the report's folder swap
    for fault in ["checkpoint.rename:6", "store.epoch:3", "store.finish:1", "report.swap:1"]:
        _killed(*argv, fault=fault)
        _assert_prefix(store, expected)
    assert main(argv) == 0
    assert {row["status"] for row in json.loads(capsys.readouterr().out)["runs"]} == {"done"}
    assert histories(store) == expected
    assert_valid_report(store / "reports" / "kills")
    assert sorted(os.listdir(store / "reports")) == ["kills"]


def test_a_report_killed_inside_its_folder_swap_is_whole_after_the_next_build(uninterrupted, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(uninterrupted / "store", store)
    report, old = store / "reports" / "kills", store / "reports" / ".kills.old"
    argv = ["report", uninterrupted / "study.json", "--store", store]
    build_report(STUDY, store=store)
    _killed(*argv, fault="report.swap")  # the old report moved aside, the new one not in place
    assert not report.exists()
    assert_valid_report(old)
    _killed(*argv, fault="report.clean")  # the old one back, then replaced; not yet deleted
    assert_valid_report(report)
    assert old.exists()
    _killed(*argv, fault="report.write")  # a new one half written
    assert_valid_report(report)
    build_report(STUDY, store=store)
    assert_valid_report(report)
    assert sorted(os.listdir(store / "reports")) == ["kills"]


@pytest.mark.parametrize("left", ["old report next to the new one", "old report alone"])
def test_what_a_killed_swap_leaves_is_cleaned_up_or_put_back(uninterrupted, tmp_path, left):
    store = tmp_path / "store"
    shutil.copytree(uninterrupted / "store", store)
    report = build_report(STUDY, store=store).html.parent
    old = report.with_name(".kills.old")
    shutil.copytree(report, old)  # as a kill during the deletion of the old report leaves it
    if left == "old report alone":  # as a kill between the two renames leaves it
        shutil.rmtree(report)
    (report.with_name(".kills.tmp-x") / "figures").mkdir(parents=True)  # a half-written new report
    build_report(STUDY, store=store)
    assert_valid_report(report)
    assert sorted(os.listdir(report.parent)) == ["kills"]
