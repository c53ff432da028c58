"""data.val_from: validation images at random, the last training images (Keras) or the first test images."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainlab.config import DataConfig, RunConfig, SyntheticConfig
from trainlab.data import load_data, to_float
from trainlab.data.normalize import channel_stats
from trainlab.errors import UserError
from trainlab.train.plain import train_run

SIZES = SyntheticConfig(n_train=120, n_test=50, channels=1, size=6, classes=3)


def synthetic(**fields) -> DataConfig:
    return DataConfig(name="synthetic", synthetic=SIZES, **fields)


def same(a, b) -> bool:
    return torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


@pytest.mark.parametrize("limit, val_size, n_val", [(None, 30, 30), (100, 0.25, 25), (None, 0.1, 12)])
def test_last_takes_the_end_of_the_limited_training_split(limit: int | None, val_size: float | int,
                                                          n_val: int) -> None:
    full = load_data(synthetic(val_size=0)).train
    data = load_data(synthetic(val_size=val_size, val_from="last", limit=limit))
    n = limit or len(full)
    assert same(data.train, full.subset(slice(0, n - n_val)))
    assert same(data.val, full.subset(slice(n - n_val, n)))
    assert torch.equal(data.mean, channel_stats(full.x[: n - n_val])[0])  # statistics of what it trains on


@pytest.mark.parametrize("test_limit, val_size, n_val", [(None, 20, 20), (40, 0.25, 10), (None, 0.1, 5)])
def test_test_takes_the_start_of_the_limited_test_split(test_limit: int | None, val_size: float | int,
                                                        n_val: int) -> None:
    whole = load_data(synthetic(val_size=0))
    data = load_data(synthetic(val_size=val_size, val_from="test", test_limit=test_limit))
    test = whole.test.subset(slice(0, test_limit))
    assert same(data.val, test.subset(slice(0, n_val)))
    assert same(data.test, test)  # the test split stays whole
    assert same(data.train, whole.train)
    assert torch.equal(data.mean, whole.mean) and torch.equal(data.std, whole.std)


@pytest.mark.parametrize("val_from", ["random", "last", "test"])
def test_val_size_zero_means_no_validation_split(val_from: str) -> None:
    whole = load_data(synthetic(val_size=0))
    data = load_data(synthetic(val_size=0, val_from=val_from))
    assert data.val is None and same(data.train, whole.train) and same(data.test, whole.test)


def test_random_is_the_former_hold_out() -> None:
    default = load_data(synthetic(val_size=30))
    random = load_data(synthetic(val_size=30, val_from="random"))
    assert same(default.train, random.train) and same(default.val, random.val)
    assert not same(random.val, load_data(synthetic(val_size=30, val_from="last")).val)


@pytest.mark.parametrize("fields, message", [
    ({"val_from": "last", "val_size": 120}, "120 of the 120 training images"),
    ({"val_from": "last", "val_size": 10, "limit": 10}, "leaving none for training"),
    ({"val_from": "test", "val_size": 51}, "51 images from the test split.*only 50.*at most 50"),
    ({"val_from": "test", "val_size": 20, "test_limit": 19}, "only 19.*data.test_limit"),
])
def test_too_large_a_validation_split_is_a_user_error(fields: dict, message: str) -> None:
    with pytest.raises(UserError, match=f"data.val_size.*{message}"):
        load_data(synthetic(**fields))


def test_test_may_take_the_whole_test_split() -> None:
    data = load_data(synthetic(val_size=50, val_from="test"))
    assert same(data.val, data.test)


@pytest.mark.parametrize("val_from", ["random", "last", "test"])
def test_early_stopping_watches_the_validation_loss_of_every_mode(val_from: str) -> None:
    cfg = RunConfig.model_validate({
        "data": {"name": "synthetic", "val_size": 20, "val_from": val_from, "synthetic": SIZES.model_dump()},
        "model": {"kind": "mlp", "hidden": [8]},
        "train": {"epochs": 2, "batch_size": 32, "early_stopping": 3},
        "probes": {"enabled": False},
    })
    data = load_data(cfg.data)
    result = train_run(cfg, data)
    model = result.model.eval()
    with torch.no_grad():
        logits = model(to_float(data.val.x, data.mean, data.std))
    last = result.history.iloc[-1]
    assert last["val_loss"] == pytest.approx(F.cross_entropy(logits, data.val.y).item(), rel=1e-5)
    assert last["val_acc"] == pytest.approx((logits.argmax(1) == data.val.y).float().mean().item())
