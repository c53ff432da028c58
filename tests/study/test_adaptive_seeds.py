"""Seeds until decided, trained for real: a clear study stops at ``min``; a close comparison gets
more seeds, only for its variants; a kill while the added seeds train resumes to the same runs."""

import json

import pytest

from tests.processes import finish, histories, trainlab
from trainlab.cli import main
from trainlab.store import RunStore
from trainlab.study import load_study, run_study

DATA = {"name": "synthetic", "val_size": 64,
        "synthetic": {"n_train": 320, "n_test": 96, "channels": 1, "size": 8, "classes": 4}}
TRAIN = {"epochs": 2, "batch_size": 32, "threads": 1, "optimizer": "sgd", "momentum": 0.9}


def study(claims, lrs, seeds=None):
    return {"name": "adaptive", "seeds": seeds or {"min": 3, "max": 7, "step": 2},
            "base": {"data": DATA, "model": {"hidden": [16]}, "train": TRAIN},
            "vary": {"train.lr": lrs}, "claims": claims, "report": ["question", "final_metrics"]}


CLEAR = {"metric": "test_acc", "of": {"train.lr": 0.05}, "greater_than": {"train.lr": 0.0001}}
CLOSE = {"metric": "test_acc", "of": {"train.lr": 0.05}, "greater_than": {"train.lr": 0.045}}
CLOSE_STUDY = study([CLEAR, CLOSE], [0.05, 0.045, 0.0001])


def seeds_per_variant(result) -> dict[str, list[int]]:
    return {label: sorted(group["seed"]) for label, group in result.runs.groupby("label")}


def test_variants_that_differ_clearly_stop_at_min(tmp_path):
    result = run_study(study([CLEAR], [0.05, 0.0001]), store=tmp_path)
    [verdict] = result.verdicts
    assert verdict.verdict == "supported" and verdict.seeds == {"lr=0.05": 3, "lr=0.0001": 3}
    assert seeds_per_variant(result) == {"lr=0.05": [0, 1, 2], "lr=0.0001": [0, 1, 2]}
    assert len(RunStore(tmp_path).runs()) == 6 and len(result.rounds) == 1 and not result.rounds[0].added


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The close study trained in one go: its folder (study.json, store) and result."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    (folder / "study.json").write_text(json.dumps(CLOSE_STUDY))
    return folder, run_study(CLOSE_STUDY, store=folder / "store")


def test_a_close_comparison_gets_more_seeds_for_its_variants_only(uninterrupted):
    _, result = uninterrupted
    clear, close = result.verdicts
    assert clear.verdict == "supported"
    seeds = seeds_per_variant(result)
    assert seeds["lr=0.0001"] == [0, 1, 2]  # its only claim was decided at min
    n = len(seeds["lr=0.05"])
    assert seeds["lr=0.05"] == seeds["lr=0.045"] == list(range(n)) and n > 3  # seeds were added, in order
    first = result.rounds[0]
    assert first.added == {"lr=0.05": [3, 4], "lr=0.045": [3, 4]}
    assert first.why == {"lr=0.05": ["claim 2 undecided"], "lr=0.045": ["claim 2 undecided"]}
    # seeds stop at max, or once the claim is decided; the verdict uses every seed both variants have
    assert n == 7 or close.verdict != "undecided"
    assert close.seeds == {"lr=0.05": n, "lr=0.045": n}
    # the study read back from the store (status, report) sees the same runs and verdicts
    again = load_study(CLOSE_STUDY, store=result_store(uninterrupted))
    assert seeds_per_variant(again) == seeds
    assert [v.as_dict() for v in again.verdicts] == [v.as_dict() for v in result.verdicts]


def result_store(uninterrupted):
    return uninterrupted[0] / "store"


def test_a_kill_while_added_seeds_train_resumes_to_the_same_runs(uninterrupted, tmp_path, capsys):
    folder, result = uninterrupted
    store = tmp_path / "store"
    argv = ["run", str(folder / "study.json"), "--store", str(store), "--json", "--no-report"]
    # 9 runs finish in the first round; the 11th to finish is one of the seeds added after it
    code, _, err = finish(trainlab(*argv, fault="store.finish:11"))
    assert code == -9, err
    stored = RunStore(store).runs()
    assert 9 < (stored["status"] == "done").sum() < len(result.runs)
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    expected = histories(result_store(uninterrupted))
    assert histories(store) == expected  # the same runs, each with the numbers of an uninterrupted run
    assert [c["verdict"] for c in out["claims"]] == [v.verdict for v in result.verdicts]
