"""Networks from the user's own code (``kind: python``) and from torchvision (``kind: torchvision``)."""

import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from trainlab.cli import main
from trainlab.config import load_config
from trainlab.errors import UserError
from trainlab.models import create_model
from trainlab.store import RunStore
from trainlab.study import plan_study, run_study

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom-model"
NETS = (EXAMPLE / "nets.py").read_text()


def _study_folder(folder: Path, nets: str = NETS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "nets.py").write_text(nets)
    (folder / "study.yaml").write_text(textwrap.dedent("""\
        name: own-net
        base:
          data: {name: digits}
          model: {kind: python, target: nets.py:TinyNet}
          train: {epochs: 1, batch_size: 64, threads: 1}
        vary:
          model.args.width: [4, 8]
        seeds: 2
        """))
    return folder / "study.yaml"


def test_a_file_target_builds_the_users_module_with_its_args():
    target = f"{EXAMPLE / 'nets.py'}:TinyNet"
    model = create_model({"kind": "python", "target": target, "args": {"width": 5}}, (1, 8, 8), 10)
    assert type(model).__name__ == "TinyNet"
    assert model.features[0].out_channels == 5 and model.head.out_features == 10
    assert model(torch.zeros(3, 1, 8, 8)).shape == (3, 10)


def test_a_study_anchors_its_target_at_its_folder_and_ids_follow_the_code_not_the_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the target is found from the study's folder, not the working directory
    first = _study_folder(tmp_path / "a")
    _, runs = plan_study(str(first))
    assert {r.config.model.target for r in runs} == {f"{(tmp_path / 'a' / 'nets.py').resolve()}:TinyNet"}
    assert sorted({r.config.model.args["width"] for r in runs}) == [4, 8]
    moved = shutil.copytree(tmp_path / "a", tmp_path / "b") / "study.yaml"
    _, same = plan_study(str(moved))
    assert [r.run_id for r in same] == [r.run_id for r in runs]
    (tmp_path / "b" / "nets.py").write_text(NETS + "\n# edited\n")
    _, edited = plan_study(str(moved))
    assert not {r.run_id for r in edited} & {r.run_id for r in runs}


def test_editing_the_model_file_trains_new_runs_and_keeps_the_old(tmp_path):
    study = _study_folder(tmp_path / "study")
    first = run_study(str(study), store=tmp_path / "store")
    (tmp_path / "study" / "nets.py").write_text(NETS.replace("nn.ReLU()", "nn.Tanh()"))
    second = run_study(str(study), store=tmp_path / "store")
    assert set(first.runs["status"]) == set(second.runs["status"]) == {"done"}
    assert not set(first.runs["run_id"]) & set(second.runs["run_id"])
    stored = RunStore(tmp_path / "store").runs()  # both generations stay in the store
    assert set(first.runs["run_id"]) | set(second.runs["run_id"]) <= set(stored["run_id"])
    assert not (first.runs["test_acc"].to_numpy() == second.runs["test_acc"].to_numpy()).all()


@pytest.mark.parametrize("executor", ["processes", "ray"])
def test_workers_import_the_users_file_and_give_the_local_numbers(tmp_path, executor):
    if executor == "ray":
        pytest.importorskip("ray", reason="ray is not installed")
    study = _study_folder(tmp_path / "study")
    local = run_study(str(study), store=tmp_path / "local", ensemble=False)
    other = run_study(str(study), store=tmp_path / executor, executor=executor, workers=2, ensemble=False)
    assert other.runs["run_id"].tolist() == local.runs["run_id"].tolist()
    assert set(other.runs["status"]) == {"done"}
    metrics = ["train_loss", "test_acc"]
    assert (other.runs[metrics].to_numpy() == local.runs[metrics].to_numpy()).all()


@pytest.mark.parametrize("executor", ["local", "processes"])  # a worker's note reaches the driver's warnings
def test_a_module_vmap_cannot_batch_trains_its_runs_one_by_one_with_a_note(tmp_path, executor):
    gated = NETS + textwrap.dedent("""
        class Gated(TinyNet):
            def forward(self, x):
                if x.std() > 0:  # data-dependent control flow: torch.func.vmap refuses it
                    x = x * 1.0
                return super().forward(x)
        """)
    study = _study_folder(tmp_path / "study", gated)
    study.write_text(study.read_text().replace("TinyNet", "Gated"))
    with pytest.warns(UserWarning, match=r"ensemble of 2 runs failed \(RuntimeError: .*data-dependent.*one by one"):
        together = run_study(str(study), store=tmp_path / "together", executor=executor)
    alone = run_study(str(study), store=tmp_path / "alone", ensemble=False)
    assert set(together.runs["status"]) == {"done"} and len(together.runs) == 4
    metrics = ["train_loss", "test_acc"]
    assert (together.runs[metrics].to_numpy() == alone.runs[metrics].to_numpy()).all()


def test_embeddings_of_a_user_layer_and_the_summary_of_a_user_network(tmp_path, capsys):
    from trainlab.analysis.embeddings import features, load_embeddings
    from trainlab.data import load_data
    from trainlab.train import train_run

    target = f"{EXAMPLE / 'nets.py'}:TinyNet"
    cfg = load_config({"data": {"name": "digits"}, "train": {"epochs": 1, "threads": 1},
                       "model": {"kind": "python", "target": target, "args": {"width": 3}},
                       "probes": {"embeddings_at": [1], "embedding_layer": "features.5", "embedding_samples": 40}})
    result = train_run(cfg, run_dir=tmp_path / "run")
    saved = load_embeddings(tmp_path / "run")[1]
    assert all(np.array_equal(saved[k], v) for k, v in load_embeddings(str(tmp_path / "run"))[1].items())  # a str too
    data = load_data(cfg.data)
    x = data.test.x[torch.from_numpy(saved["indices"])]
    assert saved["features"].shape == (40, 3 * 2 * 2)  # 3 channels of 2 x 2 after two 2x2 pools of 8 x 8
    direct = features(result.model, x, data.mean, data.std, layer="features.5").numpy()
    assert np.allclose(saved["features"], direct, atol=1e-6)

    assert main(["summary", "--model", f"{{kind: python, target: '{target}', args: {{width: 3}}}}",
                 "--input-shape", "1,8,8", "--num-classes", "10", "--json"]) == 0
    table = pd.DataFrame(json.loads(capsys.readouterr().out)["layers"])
    model = create_model({"kind": "python", "target": target, "args": {"width": 3}}, (1, 8, 8), 10)
    assert table["name"].tolist() == [name for name, m in model.named_modules() if name and not list(m.children())]
    assert table["trainable"].sum() == sum(p.numel() for p in model.parameters())
    assert table.set_index("name").loc["features.5", "output_shape"] == [3, 2, 2]


def test_torchvision_models_take_the_datas_channels_and_classes():
    model = create_model({"kind": "torchvision", "name": "resnet18"}, (1, 28, 28), 7)
    assert model.conv1.in_channels == 1 and model.fc.out_features == 7
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 7)
    with pytest.raises(UserError, match=r"unknown torchvision model 'resnet181'.*did you mean 'resnet18'.*valid choices:"):
        create_model({"kind": "torchvision", "name": "resnet181"}, (3, 32, 32), 10)


BAD_NETS = """
import torch
from torch import nn
NOT_CALLABLE = 3
def raises(input_shape, num_classes):
    raise ValueError("width must be even")
def wrong_shape(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[1] * input_shape[2], num_classes + 1))
def not_a_module(input_shape, num_classes):
    return "a string"
"""


@pytest.mark.parametrize("target, message", [
    ("missing.py:TinyNet", "model or data file '{dir}/missing.py' not found"),
    ("bad.py:Absent", "target '{dir}/bad.py:Absent': {dir}/bad.py has no 'Absent'; its callables: "
                      "not_a_module, raises, wrong_shape"),
    ("bad.py:NOT_CALLABLE", "'NOT_CALLABLE' is a int, not a callable"),
    ("bad.py:raises", "target '{dir}/bad.py:raises' raised ValueError: width must be even"),
    ("bad.py:wrong_shape", "must be [batch, num_classes] = (2, 10) logits, got (2, 11)"),
    ("bad.py:not_a_module", "returned a str, not a torch.nn.Module"),
    ("no_such_package.nets:Net", "module 'no_such_package.nets' not found"),
    ("bad.py", "target 'bad.py' is not FILE.py:NAME or MODULE:NAME"),
])
def test_bad_targets_exit_2_with_one_line(tmp_path, monkeypatch, capsys, target, message):
    (tmp_path / "bad.py").write_text(BAD_NETS)
    monkeypatch.chdir(tmp_path)
    code = main(["train", "--store", str(tmp_path / "store"), "--set", "data.name=digits", "model.kind=python",
                 f"model.target={target}", "train.epochs=1"])
    err = capsys.readouterr().err
    assert code == 2
    assert message.format(dir=tmp_path.resolve()) in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "store" / "runs").exists() or not any((tmp_path / "store" / "runs").iterdir())


def test_target_and_args_belong_to_python_and_torchvision_kinds():
    with pytest.raises(UserError, match="kind python needs model.target"):
        load_config({"model": {"kind": "python"}})
    with pytest.raises(UserError, match="model.target and model.args are for kind python or torchvision, not 'mlp'"):
        load_config({"model": {"kind": "mlp", "args": {"width": 3}}})


def test_a_module_target_is_identified_by_its_distributions_version():
    config = load_config({"model": {"kind": "python", "target": "torchvision.models:resnet18"}})
    other = load_config({"model": {"kind": "python", "target": "torchvision.models:resnet34"}})
    assert config.run_id() != other.run_id()
    from importlib.metadata import version

    from trainlab.usercode import target_identity
    assert target_identity(config.model.target) == f"torchvision.models:resnet18@{version('torchvision')}"


def test_a_study_whose_network_fails_to_build_stops_before_writing_a_run(tmp_path, capsys):
    broken = NETS.replace("super().__init__()", "super().__init__()\n        raise RuntimeError('width too small')")
    study = _study_folder(tmp_path / "study", nets=broken)
    code = main(["run", str(study), "--store", str(tmp_path / "store"), "--no-report"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"target '{(tmp_path / 'study' / 'nets.py').resolve()}:TinyNet' raised RuntimeError: width too small" in err
    assert RunStore(tmp_path / "store").runs().empty


def test_python_code_may_pass_the_class_itself_when_its_module_is_importable(tmp_path, monkeypatch):
    (tmp_path / "my_nets.py").write_text(NETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_nets

    study = {"name": "by-object", "base": {"data": {"name": "digits"}, "train": {"epochs": 1, "threads": 1},
                                           "model": {"kind": "python", "target": my_nets.TinyNet, "args": {"width": 4}}},
             "seeds": 1}
    by_object = run_study(study, store=tmp_path / "store")
    by_string = plan_study({**study, "base": {**study["base"], "model": {**study["base"]["model"],
                                                                          "target": "my_nets:TinyNet"}}})[1]
    assert by_object.runs["status"].tolist() == ["done"]
    assert by_object.runs["run_id"].tolist() == [r.run_id for r in by_string]

    class InScript(my_nets.TinyNet):
        pass

    with pytest.raises(UserError, match="is defined in a script, a notebook or a function, which worker processes cannot import"):
        load_config({"model": {"kind": "python", "target": InScript}})


def test_a_model_file_may_import_its_neighbours(tmp_path):
    (tmp_path / "blocks_of_mine.py").write_text("from torch import nn\n\ndef head(n, k):\n    return nn.Linear(n, k)\n")
    (tmp_path / "composed.py").write_text(
        "from torch import nn\nfrom blocks_of_mine import head\n\n"
        "def build(input_shape, num_classes):\n"
        "    c, h, w = input_shape\n    return nn.Sequential(nn.Flatten(), head(c * h * w, num_classes))\n")
    model = create_model({"kind": "python", "target": f"{tmp_path / 'composed.py'}:build"}, (1, 8, 8), 10)
    assert model[1].in_features == 64 and model[1].out_features == 10
