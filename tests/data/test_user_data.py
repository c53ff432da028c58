"""Data from the user's own code (``data: {name: python, target: ...}``): formats, cache, mistakes."""

import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from trainlab.cli import main
from trainlab.config import DataConfig
from trainlab.data.load import load_data
from trainlab.data.sources import read_source
from trainlab.store import RunStore
from trainlab.study import run_study

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom-model"
RNG = np.random.default_rng(0)
NHWC = RNG.integers(0, 256, (6, 5, 4, 3), dtype=np.uint8)  # 6 images, 5 x 4 pixels, RGB
LABELS = np.array([0, 1, 2, 0, 1, 2])

LOADERS = textwrap.dedent("""
    import numpy as np
    import torch
    from torch.utils.data import Dataset

    def arrays(path, calls=None):
        if calls:
            with open(calls, "a") as log:
                log.write("called\\n")
        x, y = np.load(path)["x"], np.load(path)["y"]
        return {"train": (x, y), "test": (x[:2], y[:2]), "classes": ["a", "b", "c"]}

    def floats(path):
        x, y = np.load(path)["x"], np.load(path)["y"]
        return {"train": (torch.tensor(x).permute(0, 3, 1, 2) / 255.0, torch.tensor(y)),
                "test": (torch.tensor(x[:2]).permute(0, 3, 1, 2) / 255.0, torch.tensor(y[:2]))}

    class Pairs(Dataset):
        def __init__(self, x, y):
            self.x, self.y = x, y
        def __len__(self):
            return len(self.y)
        def __getitem__(self, i):
            return torch.tensor(self.x[i]).permute(2, 0, 1), int(self.y[i])

    def datasets(path):
        x, y = np.load(path)["x"], np.load(path)["y"]
        return {"train": Pairs(x, y), "test": Pairs(x[:2], y[:2])}

    def with_val(path):
        x, y = np.load(path)["x"], np.load(path)["y"]
        return {"train": (x[:4], y[:4]), "val": (x[4:], y[4:]), "test": (x[:2], y[:2])}

    def mixed_sizes(path):
        class Mixed(Dataset):
            def __len__(self):
                return 3
            def __getitem__(self, i):
                return torch.zeros(1, 8 if i < 2 else 9, 8, dtype=torch.uint8), 0
        return {"train": Mixed(), "test": Mixed()}

    def bad_labels(path):
        x = np.zeros((4, 8, 8), dtype=np.uint8)
        return {"train": (x, np.array([0, 1, 2, 3])), "test": (x, np.array([0, 1, 2, 3])), "classes": ["a", "b"]}

    def not_a_mapping(path):
        return [1, 2]

    def too_bright(path):
        return {"train": (np.full((2, 8, 8), 2.0), np.array([0, 1])), "test": (np.zeros((2, 8, 8)), np.array([0, 1]))}
    """)


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINLAB_CACHE", str(tmp_path / "cache"))
    np.savez(tmp_path / "images.npz", x=NHWC, y=LABELS)
    (tmp_path / "loaders.py").write_text(LOADERS)
    return tmp_path


def _read(folder: Path, name: str, **args) -> object:
    return read_source(DataConfig(name="python", target=f"{folder / 'loaders.py'}:{name}",
                                  args={"path": str(folder / "images.npz"), **args}))


@pytest.mark.parametrize("loader", ["arrays", "floats", "datasets"])
def test_arrays_tensors_and_datasets_become_the_same_uint8_nchw_split(folder, loader):
    data = _read(folder, loader)
    expected = torch.from_numpy(NHWC).permute(0, 3, 1, 2)
    assert data.train.x.dtype == torch.uint8 and data.train.x.shape == (6, 3, 5, 4)
    assert torch.equal(data.train.x, expected) and torch.equal(data.test.x, expected[:2])
    assert data.train.y.tolist() == LABELS.tolist() and data.train.y.dtype == torch.int64
    assert data.classes == (["a", "b", "c"] if loader == "arrays" else ["0", "1", "2"])


def test_the_data_is_cached_by_code_and_args_and_rebuilt_when_either_changes(folder):
    calls = folder / "calls.txt"
    first = _read(folder, "arrays", calls=str(calls))
    again = _read(folder, "arrays", calls=str(calls))
    assert torch.equal(first.train.x, again.train.x) and calls.read_text().count("called") == 1
    (folder / "loaders.py").write_text(LOADERS + "\n# edited\n")
    _read(folder, "arrays", calls=str(calls))
    assert calls.read_text().count("called") == 2


def test_a_validation_split_of_the_loader_is_used_whole_with_val_from_given(folder):
    args = {"path": str(folder / "images.npz")}
    config = {"name": "python", "target": f"{folder / 'loaders.py'}:with_val", "args": args, "scaling": "unit"}
    expected = torch.from_numpy(NHWC).permute(0, 3, 1, 2)
    for _ in range(2):  # built, then read back from the cache
        data = load_data(DataConfig(**config, val_from="given", val_size=1))
        assert torch.equal(data.val.x, expected[4:]) and data.val.y.tolist() == LABELS[4:].tolist()
        assert torch.equal(data.train.x, expected[:4]) and len(data.test) == 2
    with pytest.warns(UserWarning, match="returned a 'val' split that is not used: data.val_from: random"):
        held_out = load_data(DataConfig(**config, val_size=1))
    assert len(held_out.train) == 3 and len(held_out.val) == 1
    with pytest.raises(ValueError, match="data.val_from: given takes the validation split a data.target loader"):
        DataConfig(name="digits", val_from="given")


@pytest.mark.parametrize("loader, message", [
    ("arrays", "data.val_from: given takes the 'val' split the data.target loader returns, but it returned none"),
    ("mixed_sizes", "train: images of mixed sizes: item 0 is (1, 8, 8), item 2 is (1, 9, 8); resize them"),
    ("bad_labels", "labels must be 0..1 for 2 classes, got 0..3"),
    ("not_a_mapping", "must return a mapping with 'train' and 'test'"),
    ("too_bright", "float images must lie in [0, 1] (or give uint8 0..255), got 2..2"),
])
def test_bad_data_exits_2_with_one_line(folder, capsys, loader, message):
    code = main(["train", "--store", str(folder / "store"), "--set", "data.name=python", "data.val_from=given",
                 f"data.target={folder / 'loaders.py'}:{loader}", f"data.args.path={folder / 'images.npz'}"])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert RunStore(folder / "store").runs().empty


@pytest.mark.parametrize("executor", ["processes", "ray"])
def test_the_example_study_gives_the_same_numbers_with_every_executor(tmp_path, monkeypatch, executor):
    if executor == "ray":
        pytest.importorskip("ray", reason="ray is not installed")
    monkeypatch.setenv("TRAINLAB_CACHE", str(tmp_path / "cache"))
    study = shutil.copytree(EXAMPLE, tmp_path / "example") / "study.yaml"
    overrides = ["train.threads=1", "train.epochs=2"]
    reference = run_study(str(study), overrides=overrides, store=tmp_path / "local", ensemble=False)
    result = run_study(str(study), overrides=overrides, store=tmp_path / executor, executor=executor, workers=2,
                       ensemble=False)
    assert set(result.runs["status"]) == {"done"} and len(result.runs) == 6
    assert result.runs["run_id"].tolist() == reference.runs["run_id"].tolist()
    metrics = ["train_loss", "test_acc"]
    assert (result.runs[metrics].to_numpy() == reference.runs[metrics].to_numpy()).all()
    assert [v.verdict for v in result.verdicts] == ["supported"]
