import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import DEVICES, tiny_config
from trainlab.config import load_config
from trainlab.data import load_data, to_float
from trainlab.train import evaluate, fit, train_run
from trainlab.train.bookkeeping import TIMING as TIMING_METRICS
from trainlab.train.bookkeeping import should_stop_early

TIMING = list(TIMING_METRICS)


def _numbers(history: pd.DataFrame) -> pd.DataFrame:
    return history.drop(columns=TIMING)


def test_digits_mlp_reaches_95_percent():
    result = fit({"data": {"name": "digits"}, "train": {"epochs": 15, "batch_size": 64}}, store=None)
    assert result.status == "done"
    assert result.final["test_acc"] >= 0.95
    assert list(result.history["epoch"]) == list(range(1, 16))


def test_epoch_metrics_match_a_direct_evaluation():
    cfg = load_config(tiny_config(epochs=2))
    result = train_run(cfg)
    data = load_data(cfg.data)
    model = result.model.eval()
    with torch.no_grad():
        logits = model(to_float(data.test.x, data.mean, data.std))
    loss = F.cross_entropy(logits, data.test.y).item()
    acc = (logits.argmax(1) == data.test.y).float().mean().item()
    assert result.final["test_loss"] == pytest.approx(loss, rel=1e-5)
    assert result.final["test_acc"] == pytest.approx(acc)
    sums = evaluate(model, data.test, data.mean, data.std, batch_size=7)  # batching does not change the sums
    assert sums[0].item() / len(data.test) == pytest.approx(loss, rel=1e-5)
    for column in ["train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "lr", "samples_per_s"]:
        assert result.history[column].notna().all()


def test_same_seed_same_numbers_other_seed_other_numbers():
    a = train_run(load_config(tiny_config()))
    b = train_run(load_config(tiny_config()))
    c = train_run(load_config(tiny_config(seed=1)))
    pd.testing.assert_frame_equal(_numbers(a.history), _numbers(b.history))
    assert not _numbers(a.history).equals(_numbers(c.history))


class Crash(Exception):
    pass


@pytest.mark.parametrize("extra", [
    {"model": {"kind": "mlp", "hidden": [32], "dropout": 0.3}, "train": {"schedule": "plateau", "patience": 0}},
    {"model": {"kind": "cnn", "blocks": [{"channels": 4, "pool": "max"}], "batch_norm": True},
     "data": {"augment": ["hflip", {"name": "crop", "padding": 1}]}, "train": {"optimizer": "sgd", "momentum": 0.9}},
])
@pytest.mark.parametrize("device", DEVICES)
def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path, extra, device):
    raw = tiny_config(epochs=5, device=device)
    for section, values in extra.items():
        raw[section] = {**raw[section], **values} if section != "model" else values
    cfg = load_config(raw)
    whole = train_run(cfg, run_dir=tmp_path / "whole")

    seen = []

    def crash_after_epoch_2(row):
        seen.append(row["epoch"])
        if row["epoch"] == 2:
            raise Crash
    with pytest.raises(Crash):
        train_run(cfg, run_dir=tmp_path / "broken", on_epoch=crash_after_epoch_2)
    replayed = []
    resumed = train_run(cfg, run_dir=tmp_path / "broken", on_epoch=lambda row: replayed.append(row["epoch"]))
    assert replayed == [1, 2, 3, 4, 5]  # epochs 1-2 replayed from the checkpoint, 3-5 trained
    pd.testing.assert_frame_equal(_numbers(whole.history), _numbers(resumed.history))
    pd.testing.assert_frame_equal(whole.probes, resumed.probes)  # probe rows of epochs 1-2 replayed too
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name


def test_nan_loss_ends_the_run_as_diverged_with_its_step(tmp_path):
    cfg = load_config(tiny_config(optimizer="sgd", lr=1e30, epochs=3))
    result = fit(cfg, store=tmp_path)  # returns instead of raising: the process carries on
    assert result.status == "diverged"
    steps_per_epoch = math.ceil(256 / 32)
    assert 0 <= result.diverged_step < steps_per_epoch * 3
    assert len(result.history) == result.diverged_step // steps_per_epoch
    from trainlab.store import RunStore

    run = RunStore(tmp_path).get_run(result.run_id)
    assert run["status"] == "diverged" and run["diverged_step"] == result.diverged_step


def test_early_stopping_rule():
    rows = [{"val_loss": v} for v in (1.0, 0.8, 0.9, 0.85, 0.95)]
    assert not should_stop_early(rows[:3], 2)
    assert should_stop_early(rows[:4], 2)  # best at epoch 2, two epochs without improvement
    assert not should_stop_early(rows, None)


def test_early_stopping_in_a_run():
    # A learning rate this large makes the validation loss rise after the first epochs.
    result = train_run(load_config(tiny_config(epochs=30, early_stopping=2, lr=0.5, optimizer="sgd")))
    losses = result.history["val_loss"].tolist()
    assert result.stopped_early and len(losses) < 30
    best = losses.index(min(losses))
    assert len(losses) - 1 - best == 2


def test_fit_with_a_store_skips_a_finished_run(tmp_path):
    first = fit(tiny_config(epochs=2), store=tmp_path)
    again = fit(tiny_config(epochs=2), store=tmp_path)
    assert again.run_id == first.run_id and again.reused and not first.reused  # not trained again
    pd.testing.assert_frame_equal(_numbers(first.history), _numbers(again.history), check_dtype=False)
    trained, stored = first.model.state_dict(), again.model.state_dict()  # the network, from the checkpoint
    assert trained.keys() == stored.keys() and all(torch.equal(trained[k].cpu(), stored[k]) for k in trained)
    rerun = fit(tiny_config(epochs=2), store=tmp_path, rerun=True)
    assert not rerun.reused


def test_default_probes_are_recorded_per_epoch_and_stored(tmp_path):
    from trainlab.store import RunStore
    from trainlab.train.loop import probe_schedule

    cfg = load_config(tiny_config(epochs=2))
    result = fit(cfg, store=tmp_path)
    steps_per_epoch = 8  # 256 training images / batch 32
    due = probe_schedule(cfg.probes, steps_per_epoch)
    expected_steps = [s for s in range(2 * steps_per_epoch) if due(s)]
    assert expected_steps == [0, 7, 15]  # the first step, and each epoch's last (1 in 10 at most: 8 steps)
    assert sorted(result.probes.step.unique()) == expected_steps
    stored = RunStore(tmp_path).probes(result.run_id)
    assert len(stored) == len(result.probes)
    merged = result.probes.merge(stored, on=["step", "layer", "tensor", "quantity", "stat"])
    assert (merged.value_x - merged.value_y).abs().max() < 1e-6
    hists = RunStore(tmp_path).probe_histograms(result.run_id)
    assert len(hists) == len(result.probe_histograms) and hists.counts.map(len).eq(cfg.probes.bins).all()
    assert {"grad", "weight", "update_ratio", "activation"} <= set(stored.quantity)
    assert train_run(load_config({**tiny_config(epochs=1), "probes": {"enabled": False}})).probes.empty


def test_the_default_schedule_probes_at_most_one_step_in_ten_and_each_epochs_last():
    from trainlab.config import ProbesConfig
    from trainlab.train.loop import probe_schedule

    def probed(steps: int, epoch: int, **options) -> list[int]:
        due = probe_schedule(ProbesConfig(**options), steps)
        return [s - epoch * steps for s in range(epoch * steps, (epoch + 1) * steps) if due(s)]

    assert probed(18, 0) == [0, 17] and probed(18, 1) == [17]  # the run's first step, then each epoch's last
    assert probed(40, 0) == probed(40, 3) == [0, 13, 26, 39]
    assert probed(100, 2) == [0, 25, 50, 75, 99]  # per_epoch 4 evenly spaced, and the last
    assert probed(100, 2, per_epoch=2) == [0, 50, 99]
    assert probed(10, 1, every=3) == [2, 5, 8]
    for steps in range(1, 300):
        later = probed(steps, 1)
        assert later[-1] == steps - 1 and len(later) <= max(1, steps // 10)


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_autocast_runs_the_forward_pass_in_bfloat16_and_still_learns(device):
    raw = {"data": {"name": "digits"}, "model": {"hidden": [64]},
           "train": {"epochs": 8, "batch_size": 64, "device": device}}
    fp32 = fit(raw, store=None)
    bf16 = fit(raw, ["train.precision=bf16"], store=None)
    seen = []
    bf16.model.fc1.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    data = load_data(load_config(raw).data).to(device)
    with torch.autocast(device, dtype=torch.bfloat16):
        bf16.model(to_float(data.test.x[:4], data.mean, data.std))
    assert seen == [torch.bfloat16]
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())  # the weights stay float32
    assert not _numbers(bf16.history).equals(_numbers(fp32.history))  # rounding differs: it did run in bf16
    assert bf16.final["test_acc"] >= fp32.final["test_acc"] - 0.03


@pytest.mark.parametrize("device", DEVICES)
def test_channels_last_gives_the_same_numbers_as_the_default_layout(device):
    raw = tiny_config(epochs=2, device=device) | {"model": {"kind": "cnn", "blocks": [{"channels": 4, "pool": "max"}, {"channels": 4}]}}
    plain = train_run(load_config(raw))
    nhwc = train_run(load_config(raw, ["train.channels_last=true"]))
    assert nhwc.model.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    assert not plain.model.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    pd.testing.assert_frame_equal(_numbers(nhwc.history), _numbers(plain.history), rtol=1e-4, atol=1e-5)


def test_precision_auto_is_bf16_only_where_the_cpu_has_bfloat16_instructions(monkeypatch):
    from trainlab.train import loop

    cpu = torch.device("cpu")
    for flags, expected in [({"avx2", "avx512f"}, "fp32"), ({"avx512f", "avx512_bf16"}, "bf16"),
                            ({"amx_bf16", "amx_tile"}, "bf16"), (set(), "fp32")]:
        loop.native_bf16.cache_clear()
        monkeypatch.setattr(loop, "cpu_flags", lambda flags=flags: flags)
        assert loop.resolve_precision("auto", cpu) == expected, flags
        assert loop.resolve_precision("fp32", cpu) == "fp32" and loop.resolve_precision("bf16", cpu) == "bf16"
    loop.native_bf16.cache_clear()


@pytest.mark.parametrize("device", DEVICES)
def test_precision_auto_trains_exactly_as_the_precision_it_resolves_to(device):
    from trainlab.train.loop import resolve_precision

    raw = {**tiny_config(epochs=2), "train": {**tiny_config(epochs=2)["train"], "device": device, "threads": 1}}
    auto = train_run(load_config(raw, ["train.precision=auto"])).history
    chosen = resolve_precision("auto", torch.device(device))
    same = train_run(load_config(raw, [f"train.precision={chosen}"])).history
    other = train_run(load_config(raw, [f"train.precision={'fp32' if chosen == 'bf16' else 'bf16'}"])).history
    columns = ["train_loss", "test_loss", "test_acc"]
    pd.testing.assert_frame_equal(auto[columns], same[columns])
    assert not auto[columns].equals(other[columns])
