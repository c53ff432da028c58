import pytest
import torch

# CPU always; CUDA too where present, so a GPU machine checks the CUDA paths with the same tests
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own data cache, never the user's."""
    monkeypatch.setenv("TRAINLAB_CACHE", str(tmp_path_factory.mktemp("cache")))


def tiny_config(**train) -> dict:
    """A run on generated data that trains in well under a second."""
    return {
        "data": {"name": "synthetic", "val_size": 64,
                 "synthetic": {"n_train": 320, "n_test": 96, "channels": 1, "size": 8, "classes": 4}},
        "model": {"kind": "mlp", "hidden": [32, 32], "dropout": 0.2},
        "train": {"epochs": 4, "batch_size": 32, "lr": 0.01, **train},
    }
