"""A torchvision network through a study, on the real CIFAR-10 JPEG tree (with ``pytest -m studies``)."""

import pytest

from tests.shared_data import cifar10_jpeg_tree
from trainlab.store import RunStore
from trainlab.study import run_study

pytestmark = pytest.mark.studies


def test_torchvision_resnet18_trains_on_the_cifar10_jpeg_tree_through_a_study(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINLAB_CACHE", str(tmp_path / "cache"))
    study = {
        "name": "resnet18-cifar10",
        "base": {"data": {"name": "cifar10", "root": str(cifar10_jpeg_tree()), "limit": 512, "test_limit": 256,
                          "val_size": 0},
                 "model": {"kind": "torchvision", "name": "resnet18"},
                 "train": {"epochs": 2, "batch_size": 64, "optimizer": "adam", "lr": 1e-3}},
        "seeds": 1,
    }
    result = run_study(study, store=tmp_path / "store")
    assert result.runs["status"].tolist() == ["done"]
    history = result.histories[result.runs["run_id"].iloc[0]]
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]  # it learns
    assert 0.1 < result.runs["train_acc"].iloc[0] <= 1.0
    layers = set(RunStore(tmp_path / "store").probes(result.runs["run_id"].iloc[0])["layer"])
    assert {"conv1", "layer4.1.conv2", "fc"} <= layers  # probes name torchvision's modules by their path
