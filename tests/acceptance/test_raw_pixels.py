"""Report 002 on real MNIST: raw 0-255 pixels at Adam lr 0.01 fail to train its MLP; normalised ones learn.

The network and optimiser are those of ``002-normalisation-lr.yaml`` (784-256-256-10 ReLU MLP,
Adam, batch 128) at the learning rate the report calls high (0.01), briefly: two epochs of the
first 6,000 training images. In trainlab the raw runs do not reach NaN (the cross-entropy works
on the logits with a stable log-softmax); they fail to learn: over seeds 0-14 the raw runs ended
at a median test accuracy of 0.42 (0.23 to 0.86, one seed in fifteen learns) and a training loss
above 1 in 14 of 15, while the normalised runs (per_channel and per_pixel, seeds 0-4) ended at
0.86 to 0.89 with a loss from 0.20 to 0.27. Longer
training does not bring raw runs to NaN or to chance either: after 5,000 steps (about 11 epochs)
on all 60,000 images, four seeds ended between 0.44 and 0.76. The test asserts the median over
five seeds, so one seed that learns does not decide it.
"""

from __future__ import annotations

import statistics

import pytest

from tests.shared_data import SHARED_DATA, shared
from trainlab.config import RunConfig
from trainlab.data import load_data
from trainlab.train.plain import train_run

pytestmark = pytest.mark.acceptance

RAW_SEEDS = range(5)


def study_mlp(scaling: str, seed: int) -> RunConfig:
    """Report 002's MLP at Adam lr 0.01 on the first 6,000 MNIST training images, two epochs."""
    return RunConfig.model_validate({
        "data": {"name": "mnist", "root": str(SHARED_DATA), "scaling": scaling, "limit": 6000,
                 "test_limit": 2000, "val_size": 0},
        "model": {"kind": "mlp", "hidden": [256, 256], "activation": "relu"},
        "train": {"optimizer": "adam", "lr": 0.01, "batch_size": 128, "epochs": 2, "seed": seed,
                  "threads": 2},
        "probes": {"enabled": False},
    })


def outcomes(scaling: str, seeds: range) -> list[tuple[float, float]]:
    """Final test accuracy and training loss of each seed's run (a diverged one: chance and infinity)."""
    data = load_data(study_mlp(scaling, 0).data)
    results = [train_run(study_mlp(scaling, seed), data) for seed in seeds]
    return [(0.1, float("inf")) if r.status == "diverged" else (r.final["test_acc"], r.final["train_loss"])
            for r in results]


def test_raw_pixels_fail_to_train_where_normalised_ones_learn() -> None:
    shared("MNIST/raw")
    for scaling in ("per_channel", "per_pixel"):
        [(accuracy, loss)] = outcomes(scaling, range(1))
        assert accuracy > 0.8 and loss < 0.5, f"{scaling}: test accuracy {accuracy:.3f}, loss {loss:.3f}"
    raw = outcomes("raw", RAW_SEEDS)
    accuracies, losses = zip(*raw)
    assert statistics.median(accuracies) < 0.6, f"raw test accuracies {accuracies}"
    assert statistics.median(losses) > 0.8, f"raw training losses {losses}"
