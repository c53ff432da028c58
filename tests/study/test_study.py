import json

import pandas as pd
import pytest

from trainlab.cli import main
from trainlab.errors import UserError
from trainlab.store import RunStore
from trainlab.study import expand, plan_study, read_study, run_study, study_status
from trainlab.train import fit

STUDY = {
    "name": "tiny",
    "question": "Does the activation matter?",
    "base": {"data": {"name": "synthetic", "val_size": 32, "synthetic": {"n_train": 160, "n_test": 64}},
             "model": {"hidden": [16]}, "train": {"epochs": 2, "batch_size": 32}},
    "vary": {"model.activation": ["sigmoid", "relu"], "model.hidden": [[16], [16, 16]]},
    "seeds": 2,
    "scales": {"quick": {"train.epochs": 1}},
}


def test_expansion_crosses_axes_variants_and_seeds():
    spec = read_study({**STUDY, "variants": [{"label": "plain"}, {"label": "BN", "set": {"model.batch_norm": True}}],
                       "zip": {"train.lr": [0.1, 0.01], "train.batch_size": [64, 16]}})
    runs = expand(spec)
    assert len(runs) == 2 * 2 * 2 * 2 * 2  # variants x activation x hidden x zip x seeds
    bn_relu = [r for r in runs if r.label.startswith("BN") and r.overrides["model.activation"] == "relu"]
    assert all(r.config.model.batch_norm for r in bn_relu)
    pairs = {(r.config.train.lr, r.config.train.batch_size) for r in runs}
    assert pairs == {(0.1, 64), (0.01, 16)}  # zipped axes change together, never crossed
    assert len({r.run_id for r in runs}) == len(runs)
    assert {r.seed for r in runs} == {0, 1} and all(r.config.train.seed == r.seed for r in runs)


def test_scale_and_command_line_overrides_apply_to_the_base():
    runs = expand(read_study(STUDY), scale="quick", overrides=["train.lr=0.05"])
    assert {r.config.train.epochs for r in runs} == {1} and {r.config.train.lr for r in runs} == {0.05}
    with pytest.raises(UserError, match="no scale 'fast'"):
        expand(read_study(STUDY), scale="fast")


@pytest.mark.parametrize("change, expected", [
    ({"variants": [{"label": "ok"}, {"label": "broken", "set": {"model.batchnorm": True}}]},
     ["'broken", "model.batchnorm", "did you mean 'batch_norm'"]),
    ({"vary": {"model.activation": []}}, ["study.vary", "model.activation", "no values"]),
    ({"vary": {"train.epochs": ["two"]}}, ["epochs=two", "train.epochs", "'two'"]),
    ({"zip": {"train.lr": [0.1], "train.epochs": [1, 2]}}, ["equal lengths"]),
    ({"seedz": 3}, ["study.seedz", "did you mean 'seeds'"]),
    ({"report": ["question", "learning_curve"]}, ["report section", "'learning_curve'", "'learning_curves'"]),
])
def test_invalid_studies_fail_before_training_naming_variant_and_key(tmp_path, capsys, change, expected):
    path = tmp_path / "study.yaml"
    path.write_text(json.dumps({**STUDY, **change}))
    code = main(["run", str(path), "--store", str(tmp_path / "store")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    for part in expected:
        assert part in err
    assert not (tmp_path / "store" / "runs").exists()


@pytest.mark.parametrize("text, expected", [
    ("just a string\n", "study.yaml: expected a study: a mapping with name, base and"),
    ("", "study.yaml is empty: expected a study: a mapping with name, base and"),
    ("# nothing but a comment\n", "study.yaml is empty: expected a study"),
])
def test_a_study_file_that_is_not_a_mapping_says_what_a_study_is(tmp_path, capsys, text, expected):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and "sections data, model" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("report, expected", [
    (["question", "learnig_curves"],
     ["unknown report section", "'learnig_curves'", "did you mean 'learning_curves'", "valid choices: activation_derivatives, analyses,"]),
    ([{"final_metrics": {"metrc": "test_acc"}}],
     ["unknown option of report section final_metrics: 'metrc'", "did you mean 'metric'", "valid choices: metric, metrics"]),
    ([{"analyses": {"top_kk": 3}}], ["option of report section analyses: 'top_kk'", "did you mean 'top_k'", "runs"]),
])
def test_plan_rejects_a_report_typo_naming_the_key_and_writes_nothing(tmp_path, capsys, monkeypatch, report, expected):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "study.yaml"
    path.write_text(json.dumps({**STUDY, "report": report}))
    assert main(["plan", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    for part in expected:
        assert part in captured.err
    assert [p.name for p in tmp_path.iterdir()] == ["study.yaml"]


@pytest.mark.parametrize("extra, expected", [
    ("seeds: [0, 0]", ["study.seeds", "seed 0 is listed twice"]),
    ("seeds: 1\nvary: {train.lr: [0.001, 1e-3]}", ["runs 'lr=0.001' seed 0 and 'lr=1e-3' seed 0", "same configuration"]),
    ("seeds: [3]\nvariants: [{label: a, set: {train.lr: 0.01}}, {label: b, set: {train.lr: 0.01}}]",
     ["runs 'a' seed 3 and 'b' seed 3", "same configuration"]),
    ("seeds: [3]\nvariants: [{label: a}]\nvary: {model.activation: [relu, relu]}",
     ["runs 'a, activation=relu' seed 3 and 'a, activation=relu' seed 3", "same configuration"]),
    (f"seeds: [0, {2**70}]", ["train.seed", "64-bit integer", str(2**70)]),
    (f"seeds: {2**70}", ["study.seeds", "at most 10000 seeds"]),
    ("seeds: 2\nquestion: twice?\nseeds: 3", ["study.yaml", "key 'seeds' given twice", "line 3", "first at line 1"]),
])
def test_plan_rejects_runs_that_would_count_twice_and_bad_seeds(tmp_path, capsys, monkeypatch, extra, expected):
    import yaml

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "study.yaml"
    base = {k: v for k, v in STUDY.items() if k not in ("seeds", "vary", "question")}
    path.write_text(extra + "\n" + yaml.safe_dump(base))
    assert main(["plan", str(path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1 and lines[0].startswith("trainlab: error:"), captured.err
    for part in expected:
        assert part in lines[0]
    assert [p.name for p in tmp_path.iterdir()] == ["study.yaml"]


def test_a_study_runs_once_then_skips_finished_runs(tmp_path):
    first = run_study(STUDY, store=tmp_path)
    assert len(first.runs) == 8 and set(first.runs["status"]) == {"done"}
    started = RunStore(tmp_path).runs().set_index("run_id")["created"]
    again = run_study(STUDY, store=tmp_path)
    pd.testing.assert_frame_equal(first.runs, again.runs)
    assert RunStore(tmp_path).runs().set_index("run_id")["created"].equals(started)
    # Each run's numbers are those of the same configuration trained alone (up to float
    # rounding: seeds of one configuration train together as a vectorised ensemble).
    alone = fit(expand(read_study(STUDY))[3].config, store=None)
    row = first.runs.iloc[3]
    assert row["test_acc"] == pytest.approx(alone.final["test_acc"], abs=1e-6)
    assert row["train_loss"] == pytest.approx(alone.final["train_loss"], rel=1e-5)


def test_status_lists_each_run_with_overrides_and_final_metrics(tmp_path, capsys):
    _, runs = plan_study(STUDY)
    assert {r["status"] for r in study_status(STUDY, store=tmp_path)} == {"pending"}
    run_study(STUDY, store=tmp_path, overrides=None)
    rows = study_status(STUDY, store=tmp_path)
    assert [r["run_id"] for r in rows] == [r.run_id for r in runs]
    assert rows[0]["overrides"] == {"model.activation": "sigmoid", "model.hidden": [16], "train.seed": 0}
    assert set(rows[0]["final"]) >= {"train_loss", "test_acc", "val_acc"} and rows[0]["status"] == "done"

    path = tmp_path / "study.yaml"
    path.write_text(json.dumps(STUDY))
    assert main(["status", str(path), "--store", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"runs": json.loads(json.dumps(rows)), "claims": [], "rounds": []}
    assert main(["plan", str(path), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["runs"] == 8 and len(plan["groups"]) == 4 and plan["seeds"] == [0, 1]


def test_a_failing_run_is_marked_failed_and_the_study_carries_on(tmp_path, monkeypatch):
    from trainlab.train.ensemble import train_ensemble
    from trainlab.train.plain import train_run

    def train_run_or_die(cfg, *args, **kw):
        if cfg.model.activation == "sigmoid":
            raise RuntimeError("worker died")
        return train_run(cfg, *args, **kw)

    def train_ensemble_or_die(configs, *args, **kw):
        if configs[0].model.activation == "sigmoid":
            raise RuntimeError("worker died")
        return train_ensemble(configs, *args, **kw)

    # The failure is injected under the recorder's training functions; a failed ensemble is
    # tried again run by run, and the study warns of the runs that failed.
    monkeypatch.setattr("trainlab.train.record.train_run", train_run_or_die)
    monkeypatch.setattr("trainlab.train.record.train_ensemble", train_ensemble_or_die)
    with pytest.warns(UserWarning) as warned:
        result = run_study(STUDY, store=tmp_path)
    messages = [str(w.message) for w in warned]
    assert any("ensemble of 2 runs failed" in m for m in messages)
    assert any(m.startswith("4 of 8 runs failed") for m in messages)
    statuses = result.runs.groupby(result.runs["model.activation"])["status"].unique()
    assert list(statuses["sigmoid"]) == ["failed"] and list(statuses["relu"]) == ["done"]
    assert "worker died" in RunStore(tmp_path).get_run(result.runs.iloc[0]["run_id"])["error"]
    monkeypatch.undo()
    retried = run_study(STUDY, store=tmp_path)  # the next run retries failed runs
    assert set(retried.runs["status"]) == {"done"}
