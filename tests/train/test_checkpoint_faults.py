"""Damaged, crafted and half-written files in a run folder: a run resumes from its last good
checkpoint or trains from scratch, with a warning naming the file, and ends with the numbers
of an uninterrupted run; nothing in the folder runs code."""

import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import tiny_config
from trainlab.train.bookkeeping import TIMING as TIMING_METRICS
from trainlab.config import load_config
from trainlab.probes.embeddings import load_embeddings
from trainlab.train import train_run
from trainlab.train.ensemble import train_ensemble

TIMING = list(TIMING_METRICS)
CFG = load_config(tiny_config(epochs=4, threads=1) | {"probes": {"per_epoch": 1, "embeddings_at": [0, 2, 4],
                                                       "embedding_samples": 16}})


class Crash(Exception):
    pass


class Payload:
    """Unpickling this runs ``touch MARKER``: what a crafted file in a run folder could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    return train_run(CFG, run_dir=tmp_path_factory.mktemp("whole"))


def _crashed(run_dir, after=3):
    """A run folder whose run was stopped after epoch ``after``: checkpoint.pt of that epoch, the previous kept."""
    def crash(row):
        if row["epoch"] == after:
            raise Crash
    with pytest.raises(Crash):
        train_run(CFG, run_dir=run_dir, on_epoch=crash)
    return run_dir


def _damage(path, how="truncated"):
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": os.urandom(len(data)), "empty": b""}[how])


def _resume(run_dir, damaged, outcome):
    """Train on in ``run_dir``, expecting one warning naming ``damaged`` and ``outcome``; the epochs replayed."""
    replayed = []
    with pytest.warns(UserWarning, match=f"{outcome}.*{re.escape(str(damaged))}"):
        result = train_run(CFG, run_dir=run_dir, on_epoch=lambda row: replayed.append(row["epoch"]))
    return result, replayed


def _assert_same_run(ours, whole):
    pd.testing.assert_frame_equal(ours.history.drop(columns=TIMING), whole.history.drop(columns=TIMING))
    pd.testing.assert_frame_equal(ours.probes, whole.probes)
    key = ["step", "layer", "tensor", "quantity"]
    pd.testing.assert_frame_equal(ours.probe_histograms[key], whole.probe_histograms[key])
    for column in ["counts", "edges"]:
        for a, b in zip(ours.probe_histograms[column], whole.probe_histograms[column]):
            assert a.dtype == b.dtype and np.array_equal(a, b)
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(tensor, ours.model.state_dict()[name]), name


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty"])
def test_a_damaged_checkpoint_resumes_from_the_kept_previous_one(tmp_path, whole, how):
    run_dir = _crashed(tmp_path)
    _damage(run_dir / "checkpoint.pt", how)
    result, replayed = _resume(run_dir, run_dir / "checkpoint.pt", "resuming from epoch 2 of checkpoint.prev.pt")
    assert replayed == [1, 2, 3, 4]  # epochs 1-2 from the kept checkpoint, 3-4 trained again
    _assert_same_run(result, whole)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_run(CFG, run_dir=run_dir)  # no warning once the damaged file is replaced


def test_a_damaged_probe_file_trains_its_epoch_again(tmp_path, whole):
    run_dir = _crashed(tmp_path)
    _damage(run_dir / "probes" / "epoch-0003.pt")  # the rows of epoch 3, to which checkpoint.pt refers
    result, replayed = _resume(run_dir, run_dir / "probes" / "epoch-0003.pt", "resuming from epoch 2")
    assert replayed == [1, 2, 3, 4]
    _assert_same_run(result, whole)  # epoch 3's probe rows rewritten, as uninterrupted


@pytest.mark.parametrize("damaged", ["probes/epoch-0001.pt", "both checkpoints"])
def test_a_run_with_no_good_checkpoint_trains_from_scratch(tmp_path, whole, damaged):
    run_dir = _crashed(tmp_path)
    paths = [run_dir / "checkpoint.pt", run_dir / "checkpoint.prev.pt"] if damaged == "both checkpoints" \
        else [run_dir / damaged]  # rows of epoch 1, which both checkpoints need
    for path in paths:
        _damage(path)
    result, replayed = _resume(run_dir, paths[-1], "training from scratch")
    assert replayed == [1, 2, 3, 4]
    _assert_same_run(result, whole)


@pytest.mark.parametrize("target", ["checkpoint.pt", "probes/epoch-0002.pt"])
def test_a_crafted_file_in_a_run_folder_runs_no_code(tmp_path, whole, target):
    run_dir = _crashed(tmp_path / "run")
    marker = tmp_path / "marker"
    torch.save({"epoch": 3, "history": Payload(marker)} if target == "checkpoint.pt" else ([], [Payload(marker)]),
               run_dir / target)
    outcome = "resuming from epoch 2" if target == "checkpoint.pt" else "training from scratch"
    result, _ = _resume(run_dir, run_dir / target, outcome)
    assert not marker.exists()
    _assert_same_run(result, whole)
    crafted = run_dir / "embeddings" / "epoch_0002.npz"  # embeddings hold numbers only too
    np.savez(crafted, features=np.array([Payload(marker)], dtype=object), labels=np.zeros(1), indices=np.zeros(1))
    with pytest.raises(ValueError, match="allow_pickle"):
        load_embeddings(run_dir)
    assert not marker.exists()


def test_temporary_files_of_killed_writers_are_removed_on_resume(tmp_path, whole):
    run_dir = _crashed(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    live = os.getppid()  # a process that is alive and may be writing
    stale = [run_dir / f".checkpoint.pt.{dead}.tmp", run_dir / "probes" / f".epoch-0004.pt.{dead}.tmp",
             run_dir / "embeddings" / f".epoch_0004.{dead}.tmp.npz", run_dir / f".checkpoint.pt.{os.getpid()}.tmp"]
    kept = [run_dir / f".checkpoint.pt.{live}.tmp", run_dir / "notes.tmp"]
    for path in stale + kept:
        path.write_bytes(b"half written")
    _assert_same_run(train_run(CFG, run_dir=run_dir), whole)
    assert [p for p in stale if p.exists()] == [] and all(p.exists() for p in kept)


def test_an_ensemble_with_a_damaged_checkpoint_resumes_from_the_kept_previous_ones(tmp_path):
    configs = []
    for seed, lr in [(0, 0.01), (1, 0.003)]:
        raw = tiny_config(seed=seed, lr=lr, optimizer="adam", epochs=4, threads=1) | {"probes": {"per_epoch": 1}}
        raw["model"]["dropout"] = 0.0
        configs.append(load_config(raw))
    dirs = [tmp_path / "a", tmp_path / "b"]

    def crash(m, row):  # both models saved epoch 3
        if row["epoch"] == 3 and m == 1:
            raise Crash

    with pytest.raises(Crash):
        train_ensemble(configs, run_dirs=dirs, on_epoch=crash)
    _damage(dirs[0] / "checkpoint.pt")
    seen = []
    with pytest.warns(UserWarning, match=re.escape(str(dirs[0] / "checkpoint.pt"))):
        resumed = train_ensemble(configs, run_dirs=dirs, on_epoch=lambda m, row: seen.append((m, row["epoch"])))
    assert sorted(seen) == [(m, e) for m in range(2) for e in range(1, 5)]
    for ours, whole in zip(resumed, train_ensemble(configs)):
        _assert_same_run(ours, whole)
