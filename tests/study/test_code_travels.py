"""The user's model and data files travel with each job: a worker without the study's folder (a
Ray worker on another machine) or after the files were edited trains the code of the job."""

import shutil
import textwrap
from pathlib import Path

import pytest

from trainlab.study import locks, run_study
import trainlab.study.run as run
from trainlab.study.code import code_of, with_code
from trainlab.usercode import target_identity

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom-model"
STUDY = textwrap.dedent("""\
    name: travels
    base:
      data: {name: python, target: data.py:load, args: {noise: 0.1}}
      model: {kind: python, target: nets.py:build}
      train: {epochs: 2, batch_size: 64, threads: 1}
    seeds: 1
    """)
NETS = textwrap.dedent("""\
    from layers.head import head  # a package beside the file
    from nets_of_example import TinyNet

    def build(input_shape, num_classes):
        net = TinyNet(input_shape, num_classes, width=6)
        net.head = head(net.head.in_features, num_classes)
        return net
    """)


def _folder(root: Path) -> Path:
    """A study folder whose model file imports a neighbour module and a package."""
    root.mkdir(parents=True)
    shutil.copy(EXAMPLE / "data.py", root / "data.py")
    shutil.copy(EXAMPLE / "nets.py", root / "nets_of_example.py")
    (root / "nets.py").write_text(NETS)
    (root / "layers").mkdir()
    (root / "layers" / "__init__.py").write_text("")
    (root / "layers" / "head.py").write_text("from torch import nn\n\ndef head(n, k):\n    return nn.Linear(n, k)\n")
    (root / "notes.txt").write_text("not Python: stays home")
    (root / "study.yaml").write_text(STUDY)
    return root / "study.yaml"


def test_a_job_uses_the_folder_while_it_holds_the_code_and_a_cached_copy_otherwise(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINLAB_CACHE", str(tmp_path / "cache"))
    folder = _folder(tmp_path / "study").parent
    config = {"model": {"target": f"{folder / 'nets.py'}:build"}, "data": {"target": f"{folder / 'data.py'}:load"}}
    code = code_of(config)
    assert sorted(code[str(folder)]) == ["data.py", "layers/__init__.py", "layers/head.py", "nets.py",
                                         "nets_of_example.py"]
    assert with_code(config, code) is config  # the folder holds the job's code: train from it
    before = target_identity(config["model"]["target"])
    (folder / "nets.py").write_text(NETS + "# edited while the study runs\n")
    moved = with_code(config, code)
    copy = Path(moved["model"]["target"].rpartition(":")[0]).parent
    assert copy.parent == tmp_path / "cache" / "code" and moved["data"]["target"] == f"{copy / 'data.py'}:load"
    assert target_identity(moved["model"]["target"]) == before  # the code the run's id was computed from
    assert (copy / "layers" / "head.py").read_text() == code[str(folder)]["layers/head.py"]
    shutil.rmtree(folder)
    assert with_code(config, code) == moved  # no folder at all (another machine): the same copy


@pytest.mark.parametrize("executor", ["processes", "ray"])
def test_a_worker_without_the_study_folder_trains_the_code_that_came_with_its_job(tmp_path, monkeypatch, executor):
    if executor == "ray":
        pytest.importorskip("ray", reason="ray is not installed")
    monkeypatch.setenv("TRAINLAB_CACHE", str(tmp_path / "cache"))
    study = _folder(tmp_path / "study")
    reference = run_study(str(study), store=tmp_path / "local")

    executor_of = {"processes": "run_in_processes", "ray": "run_on_ray"}[executor]
    send = getattr(run, executor_of)

    def without_the_folder(jobs, *args):  # the driver read the code; its workers cannot see the folder
        def then_remove():
            for job in jobs:
                shutil.rmtree(study.parent)
                yield job
        return send(then_remove(), *args)

    monkeypatch.setattr(run, executor_of, without_the_folder)
    result = run_study(str(study), store=tmp_path / executor,
                       executor=executor, workers=1)
    assert not study.parent.exists() and result.runs["status"].tolist() == ["done"]
    assert result.runs["run_id"].tolist() == reference.runs["run_id"].tolist()
    metrics = ["train_loss", "test_acc"]
    assert (result.runs[metrics].to_numpy() == reference.runs[metrics].to_numpy()).all()


def test_runs_whose_file_was_edited_after_planning_are_left_pending_for_the_next_run(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINLAB_CACHE", str(tmp_path / "cache"))
    study = _folder(tmp_path / "study")
    study.write_text(STUDY.replace("seeds: 1", "seeds: 2"))
    calls = []

    def edit_then_read(config):  # the user saved nets.py while the first job trained
        if calls:
            (study.parent / "nets.py").write_text(NETS + "# edited\n")
        calls.append(code_of(config))
        return calls[-1]

    monkeypatch.setattr(locks, "code_of", edit_then_read)
    with pytest.warns(UserWarning, match="a model or data file changed since the study was planned; runs not "
                                         "started yet are left pending"):
        first = run_study(str(study), store=tmp_path / "store", ensemble=False)
    assert first.runs["status"].tolist() == ["done", "pending"]
    again = run_study(str(study), store=tmp_path / "store", ensemble=False)
    assert again.runs["status"].tolist() == ["done", "done"]
    assert not set(again.runs["run_id"]) & set(first.runs["run_id"])  # the edited code's runs
