import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from trainlab.cli import main
from trainlab.train.bookkeeping import TIMING
from trainlab.store import RunStore
from trainlab.study import plan_study
from trainlab.train import fit

TINY = ["data.name=synthetic", "data.val_size=64", "model.hidden=[32]", "train.batch_size=32"]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_stores_the_run_and_prints_json(tmp_path, capsys):
    store = str(tmp_path / "store")
    code, out, err = run_cli(capsys, "train", "--set", *TINY, "train.epochs=2", "--store", store, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "done" and len(result["history"]) == 2
    assert 0 <= result["final"]["test_acc"] <= 1
    started = RunStore(store).get_run(result["run_id"])["started"]

    code, out, _ = run_cli(capsys, "train", "--set", *TINY, "train.epochs=2", "--store", store, "--json")
    again = json.loads(out)
    assert again["run_id"] == result["run_id"] and again["final"] == pytest.approx(result["final"])
    assert RunStore(store).get_run(result["run_id"])["started"] == started  # finished runs are not retrained

    code, out, _ = run_cli(capsys, "runs", "--store", store, "--json")
    assert [r["run_id"] for r in json.loads(out)] == [result["run_id"]]
    code, out, _ = run_cli(capsys, "show", result["run_id"][:6], "--store", store, "--json")
    shown = json.loads(out)
    assert shown["config"]["train"]["epochs"] == 2 and len(shown["history"]) == 2
    code, out, _ = run_cli(capsys, "show", result["run_id"][:6], "--store", store)
    assert "test_acc" in out and "status: done" in out
    code, out, _ = run_cli(capsys, "runs", "--store", store)
    assert result["run_id"] in out


def test_config_file_with_overrides_and_data_root(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("data:\n  name: mnist\nmodel:\n  hidden: [16]\ntrain:\n  epochs: 1\n")
    code, _, err = run_cli(capsys, "train", "--config", str(config), "--data-root", str(tmp_path / "nowhere"),
                           "--store", str(tmp_path / "store"))
    assert code == 2
    assert "nowhere" in err and "Traceback" not in err
    assert not (tmp_path / "store").exists()  # nothing half-written


@pytest.mark.parametrize("argv, expected", [
    (["train", "--set", "model.activaton=relu"], ["model.activaton", "did you mean 'activation'"]),
    (["train", "--set", "model.activation=swish"], ["model.activation", "'swish'", "relu", "tanh"]),
    (["train", "--set", "train.epochs=many"], ["train.epochs", "'many'"]),
    (["train", "--set", "data.name=cifar100"], ["data.name", "cifar10"]),
    (["train", "--config", "missing.yaml"], ["missing.yaml", "not found"]),
    (["show", "nope"], ["no run 'nope'"]),
    (["summary", "--model", "vgg", "--input-shape", "3,32,32"], ["did you mean 'vgg_cifar'"]),
    (["summary", "--model", "mlp", "--input-shape", "3x32"], ["--input-shape", "C,H,W"]),
])
def test_user_mistakes_exit_2_with_one_message(tmp_path, capsys, argv, expected):
    if argv[0] == "show":
        RunStore(tmp_path / "s")  # a store, without that run
    code, out, err = run_cli(capsys, *argv, *(["--store", str(tmp_path / "s")] if argv[0] != "summary" else []))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trainlab: error:")
    for part in expected:
        assert part in lines[0]
    assert not (tmp_path / "s" / "runs").exists()


CNN = ["model.kind=cnn", "model.blocks=[{channels: 4}]"]
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


@pytest.mark.parametrize("argv, expected", [
    (["train", "--set", *TINY, "model.hidden=[0]"], ["model.hidden.0", "greater than 0", "(got 0)"]),
    (["train", "--set", *TINY, "model.hidden=[32, -5]"], ["model.hidden.1", "greater than 0", "(got -5)"]),
    (["train", "--set", *TINY, *CNN, "model.fc=[-3]"], ["model.fc.0", "greater than 0", "(got -3)"]),
    (["train", "--set", *TINY, f"train.seed={2**70}"], ["train.seed", "64-bit integer", str(2**70)]),
    pytest.param(["train", "--set", *TINY, "train.device=cuda"],
                 ["train.device 'cuda'", "CUDA is not available", "valid choices: auto, cpu"], marks=NO_GPU),
    (["train", "--set", *TINY, "train.device=cuda:x"], ["train.device", "'cuda:x'", "valid choices", "cuda:0"]),
    (["train", "--set", *TINY, "--tensorboard", "{tmp}/file"], ["--tensorboard", "is a file, not a folder"]),
    (["train", "--set", *TINY, "--tensorboard", "{tmp}/file/tb"], ["--tensorboard", "is a file, not a folder"]),
    (["train", "--set", *TINY, "data.augment=[{name: crop, paddin: 2}]"],
     ["data.augment.0.paddin", "did you mean 'padding'", "valid keys here: name, padding"]),
    (["train", "--set", "data.name=imagefolder", "--data-root", "{tmp}/file"],
     ["data root", "is a file, not a folder"]),
    (["summary", "--model", "{kind: mlp, hidden: [64"],
     ["--model", "not valid YAML", "expected ',' or ']'", "column 24"]),
    (["train", "--config", "{tmp}/twice.yaml"], ["twice.yaml", "not valid YAML", "key 'lr' given twice", "line 4"]),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, argv, expected):
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "twice.yaml").write_text("train:\n  lr: 0.1\n  epochs: 1\n  lr: 0.2\n")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, out, err = run_cli(capsys, *argv, *(["--store", str(tmp_path / "s")] if argv[0] != "summary" else []))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("trainlab: error:"), err
    for part in expected:
        assert part in lines[0]
    assert not (tmp_path / "s").exists()


def test_summary_of_the_vgg_preset(capsys):
    code, out, _ = run_cli(capsys, "summary", "--model", "vgg_cifar", "--input-shape", "3,32,32", "--json")
    table = json.loads(out)
    assert code == 0
    assert (table["total"], table["trainable"], table["non_trainable"]) == (6216114, 6216094, 20)
    code, out, _ = run_cli(capsys, "summary", "--model", "{kind: mlp, hidden: [64]}", "--input-shape", "1,8,8",
                           "--set", "activation=tanh")
    assert code == 0 and "4,160" in out and "Tanh" in out  # fc1: 64 * 64 weights + 64 biases


def _trainlab(*argv, **kw):
    return subprocess.Popen([sys.executable, "-m", "trainlab", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_console_entry_point_reports_errors_without_traceback(tmp_path):
    proc = _trainlab("train", "--set", "model.init=glorot", "--store", str(tmp_path))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "model.init" in err and "xavier_uniform" in err and "Traceback" not in err


def test_a_closed_pipe_ends_quietly():
    proc = _trainlab("plan", "003-cnn-variants")
    proc.stdout.close()  # the reader is gone before anything is written, as with `| head -0`
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0 and err == ""


def test_sigkill_mid_run_then_rerun_gives_the_uninterrupted_numbers(tmp_path):
    argv = ["train", "--set", *TINY, "train.epochs=6", "data.synthetic.n_train=4000", "--json"]
    whole = _trainlab(*argv, "--store", str(tmp_path / "whole"))
    expected = json.loads(whole.communicate(timeout=300)[0])

    store = tmp_path / "killed"
    victim = _trainlab(*argv, "--store", str(store))
    deadline = time.time() + 120
    while time.time() < deadline:
        if (store / "trainlab.db").exists():
            runs = RunStore(store).runs()
            if len(runs) and runs.loc[0, "epochs_done"] >= 2:
                break
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert 2 <= RunStore(store).runs().loc[0, "epochs_done"] < 6  # killed mid-run

    resumed = _trainlab(*argv, "--store", str(store))
    out, err = resumed.communicate(timeout=300)
    result = json.loads(out)
    assert result["run_id"] == expected["run_id"] and result["status"] == "done"
    timing = set(TIMING)
    for got, want in zip(result["history"], expected["history"], strict=True):
        assert {k: v for k, v in got.items() if k not in timing} == {k: v for k, v in want.items() if k not in timing}
    rows = RunStore(store).conn.execute(
        "SELECT COUNT(*), COUNT(DISTINCT epoch || name) FROM metrics").fetchone()
    assert rows[0] == rows[1]  # no duplicate rows


def test_tensorboard_flag_writes_event_files_of_the_run(tmp_path, capsys):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    for _ in range(2):  # the second time reuses the stored run, and its events replace the first time's
        code, out, err = run_cli(capsys, "train", "--set", *TINY, "train.epochs=2", "--store", str(tmp_path / "s"),
                                 "--tensorboard", str(tmp_path / "tb"), "--json")
        assert code == 0, err
    result = json.loads(out)
    reader = event_accumulator.EventAccumulator(str(tmp_path / "tb" / result["run_id"]), size_guidance={"scalars": 0})
    reader.Reload()
    accuracy = [e.value for e in reader.Scalars("metrics/test_acc")]
    assert accuracy == pytest.approx([row["test_acc"] for row in result["history"]], rel=1e-6)
    stored = RunStore(tmp_path / "s").probes(result["run_id"])
    norm = stored.query("quantity == 'grad' and layer == 'fc1' and tensor == 'weight' and stat == 'norm'")
    events = reader.Scalars("grad/fc1.weight/norm")
    assert [e.step for e in events] == norm.step.tolist()
    assert [e.value for e in events] == pytest.approx(norm.value.tolist(), rel=1e-6)


@pytest.mark.parametrize("command", [["status", "quickstart"], ["runs"], ["runs", "--json"], ["show", "3f2a"],
                                     ["analyze", "3f2a"], ["report", "quickstart"]])
def test_a_command_that_reads_a_store_that_is_not_there_says_so_and_creates_nothing(tmp_path, capsys, command):
    code, out, err = run_cli(capsys, *command, "--store", str(tmp_path / "nowhere"))
    assert code == 2 and out == ""
    assert err == (f"trainlab: error: no run store at {tmp_path / 'nowhere'} (it has no trainlab.db): run the study "
                   "first, or give the store it was run into with --store DIR\n")
    assert not (tmp_path / "nowhere").exists()


def test_status_names_its_store_and_shows_a_dash_for_runs_without_an_epoch(tmp_path, capsys):
    study = {"name": "two", "base": {"data": {"name": "digits"}, "model": {"hidden": [16]}, "train": {"epochs": 1}},
             "vary": {"model.activation": ["tanh", "relu"]}}
    path = tmp_path / "study.json"
    path.write_text(json.dumps(study))
    fit({**study["base"], "model": {"hidden": [32]}}, store=tmp_path / "s")  # a store, but not of this study's runs
    code, out, _ = run_cli(capsys, "status", str(path), "--store", str(tmp_path / "s"))
    assert code == 1 and out.startswith(f"store: {tmp_path / 's'}\n") and out.rstrip().endswith("2 pending")
    rows = [line.split() for line in out.splitlines()[2:4]]  # no epoch yet: a dash for each metric
    assert [row[-2:] for row in rows] == [["-", "-"], ["-", "-"]] and "None" not in out
    code, out, _ = run_cli(capsys, "status", str(path), "--store", str(tmp_path / "s"), "--json")
    assert code == 1 and {r["status"] for r in json.loads(out)["runs"]} == {"pending"}  # as without --json
    RunStore(tmp_path / "empty")  # a store without a single run (a mistyped --store of an earlier version made one)
    code, out, _ = run_cli(capsys, "status", str(path), "--store", str(tmp_path / "empty"))
    assert code == 1 and out.startswith(f"store: {tmp_path / 'empty'} (it holds no runs at all")


def test_plan_shows_base_where_a_variant_leaves_a_key_alone(capsys):
    code, out, _ = run_cli(capsys, "plan", "001-activations")
    assert code == 0 and "NaN" not in out and "(base)" in out


def test_run_labels_the_runs_of_a_study_without_variants_base_as_the_report_does(tmp_path, capsys):
    study = {"name": "one", "base": {"data": {"name": "digits"}, "model": {"hidden": [8]}, "train": {"epochs": 1}}}
    path = tmp_path / "study.json"
    path.write_text(json.dumps(study))
    code, out, _ = run_cli(capsys, "run", str(path), "--store", str(tmp_path), "--no-report")
    run_id = plan_study(study)[1][0].run_id
    (row,) = [line.split() for line in out.splitlines() if line.startswith(run_id)]
    assert code == 0 and row[1:4] == ["base", "0", "done"]


def test_plan_with_a_store_says_how_many_runs_of_each_variant_are_finished(tmp_path, capsys):
    study = {"name": "tiny", "base": {"data": {"name": "digits"}, "model": {"hidden": [16]}, "train": {"epochs": 1}},
             "vary": {"model.output_softmax": [True, False]}, "seeds": 2}
    path = tmp_path / "study.json"
    path.write_text(json.dumps(study))
    store = tmp_path / "store"
    code, out, _ = run_cli(capsys, "plan", str(path), "--store", str(store))
    assert code == 0 and "finished" not in out and not store.exists()  # plan never makes a store
    values = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.strip().startswith("output_")}
    assert values == {"output_softmax=true": "true", "output_softmax=false": "false"}  # as the study file writes it
    assert run_cli(capsys, "run", str(path), "--store", str(store), "--no-report", "--set", "train.epochs=1",
                   "--json")[0] == 0  # same runs: --set of a base value leaves the run ids alone
    RunStore(store).reset_run(plan_study(study)[1][0].run_id)  # one run of the first variant to train again
    code, out, _ = run_cli(capsys, "plan", str(path), "--store", str(store))
    assert f"3 of them finished in store {store}; `trainlab run` trains the other 1" in out
    rows = {line.split()[0]: line.split()[-1] for line in out.splitlines() if line.strip().startswith("output_")}
    assert rows == {"output_softmax=true": "1/2", "output_softmax=false": "2/2"}
    code, out, _ = run_cli(capsys, "plan", str(path), "--store", str(store), "--json")
    assert [g["finished"] for g in json.loads(out)["groups"]] == ["1/2", "2/2"]


def test_runs_lists_each_runs_study_and_variant_and_train_says_it_reused_a_stored_run(tmp_path, capsys):
    study = {"name": "tiny", "base": {"data": {"name": "digits"}, "model": {"hidden": [16]}, "train": {"epochs": 1}},
             "vary": {"model.activation": ["tanh"]}}
    path = tmp_path / "study.json"
    path.write_text(json.dumps(study))
    assert run_cli(capsys, "run", str(path), "--store", str(tmp_path), "--no-report", "--json")[0] == 0
    code, out, _ = run_cli(capsys, "runs", "--store", str(tmp_path), "--json")
    (row,) = json.loads(out)
    assert (row["study"], row["label"]) == ("tiny", "activation=tanh")
    again = ["train", "--set", "data.name=digits", "model.hidden=[16]", "model.activation=tanh", "train.epochs=1",
             "--store", str(tmp_path)]
    code, out, _ = run_cli(capsys, *again)
    assert code == 0 and f"run {row['run_id']}: done" in out
    assert "trained before: the stored run is shown, not trained again (--rerun trains it anew)" in out
    code, out, _ = run_cli(capsys, *again, "--rerun")
    assert code == 0 and "trained before" not in out


@pytest.mark.parametrize("optimizer, setting, taker, warned", [
    ("adam", "train.momentum=0.9", "sgd",
     "train.momentum=0.9 is ignored by optimizer adam (it applies to sgd, rmsprop)"),
    ("sgd", "train.betas=[0.8,0.9]", "adamw",
     "train.betas=[0.8, 0.9] is ignored by optimizer sgd (it applies to adam, adamw)"),
    ("rmsprop", "train.momentum=0.9", "sgd", None),
])
def test_a_constant_the_optimizer_ignores_is_said_once_where_runs_are_planned(optimizer, setting, taker, warned):
    import warnings

    from trainlab.config import load_config
    from trainlab.study.run import plan_study

    study = {"name": "optimisers", "base": {"data": {"name": "digits"}, "train": {"epochs": 1}},
             "vary": {"train.optimizer": [optimizer, taker]}, "seeds": 3}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan_study(study, overrides=[setting])  # three runs of the variant: one warning
        load_config({"train": {"optimizer": optimizer}}, [setting])  # as a worker reads its runs: none
    assert [str(w.message) for w in caught] == ([warned] if warned else [])


BOTH_KINDS = [{"label": "mlp", "set": {"model.hidden": [8]}},
              {"label": "cnn", "set": {"model.kind": "cnn", "model.blocks": [{"channels": 4}]}}]


@pytest.mark.parametrize("axes, warned", [
    ({"vary": {"model.fc": [[], [512]]}}, ["model.fc is ignored by model kind mlp (it applies to cnn)"]),
    ({"vary": {"model.shortcut": ["identity", "projection"]}},
     ["model.shortcut is ignored by model kind mlp (it applies to resnet)"]),
    ({"variants": BOTH_KINDS}, []),  # each kind's fields set by its own variant only
    ({"vary": {"model.hidden": [[8], [16]]}}, []),
])
def test_a_field_of_another_model_kind_is_said_once_where_runs_are_planned(axes, warned):
    import warnings

    from trainlab.study.run import plan_study

    study = {"name": "kinds", "base": {"data": {"name": "digits"}, "train": {"epochs": 1}}, "seeds": 2, **axes}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan_study(study)
    assert [str(w.message) for w in caught] == warned


SCRIPT = """
import json, sys
import trainlab
STUDY = {"name": "s", "base": {"data": {"name": "digits", "limit": 300, "val_size": 60}, "model": {"hidden": [8]},
         "train": {"epochs": 1}}, "vary": {"model.activation": ["tanh", "relu"]}}
"""


@pytest.mark.parametrize("guarded", [False, True])
def test_a_script_running_a_study_in_processes_needs_the_main_guard(tmp_path, guarded):
    call = f'trainlab.run_study(STUDY, store={str(tmp_path / "s")!r}, executor="processes")'
    body = f'if __name__ == "__main__":\n    {call}\n' if guarded else call + "\n"
    (tmp_path / "script.py").write_text(SCRIPT + body)
    done = subprocess.run([sys.executable, str(tmp_path / "script.py")], capture_output=True, text=True, timeout=300)
    if guarded:
        assert done.returncode == 0, done.stderr
        assert set(RunStore(tmp_path / "s").runs()["status"]) == {"done"}
    else:
        assert done.returncode == 1 and "bootstrapping" not in done.stderr
        assert ('UserError: script.py line 6 starts worker processes outside `if __name__ == "__main__":`, but each '
                "worker imports the script again") in done.stderr


def test_a_script_on_standard_input_cannot_start_workers_and_says_so(tmp_path):
    call = f'trainlab.run_study(STUDY, store={str(tmp_path / "s")!r}, executor="processes")'
    script = SCRIPT + f'if __name__ == "__main__":\n    {call}\n'
    done = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "ConnectionResetError" not in done.stderr
    assert "UserError: a script read from standard input cannot start worker processes" in done.stderr
    assert not set(RunStore(tmp_path / "s").runs()["status"]) & {"failed", "running"}  # refused before training
