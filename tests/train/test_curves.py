"""Per-iteration curves (probes.curve_every): values against the training steps, storage, resume, relay."""

import math

import numpy as np
import pandas as pd
import pytest

from tests.conftest import tiny_config
from trainlab.train.bookkeeping import TIMING as TIMING_METRICS
from trainlab.config import load_config
from trainlab.store import RunStore
from trainlab.train import train_run
from trainlab.train.ensemble import train_ensemble
from trainlab.train.plain import PlainTrainer
from trainlab.train.record import Recorder, Relay

TIMING = list(TIMING_METRICS)
BATCH, TRAIN = 30, 256  # 9 steps per epoch, the last of 16 images


def _config(every: int | None, seed: int = 0, epochs: int = 3):
    raw = tiny_config(seed=seed, epochs=epochs, batch_size=BATCH, optimizer="sgd", lr=0.05, momentum=0.9)
    raw["model"]["dropout"] = 0.0
    return load_config(raw | {"probes": {"enabled": False, "curve_every": every}})


@pytest.fixture
def steps(monkeypatch):
    """``(loss, correct, batch size)`` of every training step of plain runs trained in the test."""
    seen: list[tuple[float, int, int]] = []
    step = PlainTrainer.step

    def recording(self, x, y, global_step):
        loss, hits = step(self, x, y, global_step)
        seen.append((loss.item(), hits.item(), len(y)))
        return loss, hits

    monkeypatch.setattr(PlainTrainer, "step", recording)
    return seen


def _direct(seen: list[tuple[float, int, int]], every: int) -> pd.DataFrame:
    """The curve computed from the steps: per group of ``every`` steps of an epoch, the mean over its
    images."""
    per_epoch = math.ceil(TRAIN / BATCH)
    rows = []
    for start in range(0, len(seen), per_epoch):
        epoch = seen[start : start + per_epoch]
        for first in range(0, per_epoch, every):
            group = np.array(epoch[first : first + every], dtype=np.float64)
            n = group[:, 2].sum()
            rows.append({"step": start + first + len(group) - 1, "train_acc": group[:, 1].sum() / n,
                         "train_loss": (group[:, 0] * group[:, 2]).sum() / n})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("every", [1, 4, 9])
def test_the_curve_is_the_mean_of_each_group_of_steps(steps, every):
    result = train_run(_config(every))
    pd.testing.assert_frame_equal(result.curves, _direct(steps, every), rtol=1e-6)
    if every == 9:  # one group per epoch: the epoch's training metrics
        np.testing.assert_allclose(result.curves["train_loss"], result.history["train_loss"], rtol=1e-6)
        np.testing.assert_allclose(result.curves["train_acc"], result.history["train_acc"], rtol=1e-12)
    steps.clear()
    without = train_run(_config(None))  # recording curves does not change training
    assert without.curves.empty
    pd.testing.assert_frame_equal(without.history.drop(columns=TIMING), result.history.drop(columns=TIMING))


def test_an_ensemble_records_each_models_curve():
    configs = [_config(4, seed) for seed in (0, 1)]
    for ours, cfg in zip(train_ensemble(configs), configs):
        pd.testing.assert_frame_equal(ours.curves, train_run(cfg).curves, rtol=2e-4, atol=2e-5)


class Crash(Exception):
    pass


def test_curve_rows_survive_a_resume_once_each_and_reach_the_store_through_a_relay(tmp_path):
    cfg = _config(4)
    whole = train_run(cfg)
    store, run_id = RunStore(tmp_path / "store"), cfg.run_id()
    store.create_run(run_id, cfg.to_dict())
    recorder = Recorder(store)
    relay = Relay(recorder.apply)  # as a worker's messages are replayed by the driver
    sent: list[int] = []

    def curves(rows):
        sent.extend(step for step, name, _ in rows if name == "train_loss")
        relay.curves(run_id, rows)

    def crash(row):
        if row["epoch"] == 2:
            raise Crash

    with pytest.raises(Crash):
        train_run(cfg, run_dir=tmp_path / "run", on_epoch=crash, on_curves=curves)
    train_run(cfg, run_dir=tmp_path / "run", on_curves=curves)
    # groups end at steps 3, 7, 8 of each epoch: epoch 1 sent, then replayed; the crash came before epoch 2
    # was sent, so it is sent once, on the replay; epoch 3 trained once
    assert [sent.count(step) for step in (3, 12, 26)] == [2, 1, 1]
    count = store.conn.execute("SELECT COUNT(*) FROM step_metrics WHERE run_id=?", (run_id,)).fetchone()[0]
    assert count == 2 * len(whole.curves) == 2 * 3 * 3  # three groups per epoch, two metrics each
    pd.testing.assert_frame_equal(store.curves(run_id)[whole.curves.columns], whole.curves, check_dtype=False)


def test_the_store_upserts_curve_rows_forgets_them_on_reset_and_exports_them(tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    from trainlab.probes.tensorboard import write_tensorboard

    store = RunStore(tmp_path)
    store.create_run("r1", {})
    store.log_curves("r1", [(3, "train_loss", 2.0), (3, "train_acc", 0.25), (7, "train_loss", 1.0)])
    store.log_curves("r1", [(7, "train_loss", 0.5), (7, "train_acc", 0.75)])
    expected = pd.DataFrame({"step": [3, 7], "train_acc": [0.25, 0.75], "train_loss": [2.0, 0.5]})
    pd.testing.assert_frame_equal(store.curves("r1"), expected)
    write_tensorboard(tmp_path / "tb", curves=store.curves("r1"))
    reader = event_accumulator.EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    reader.Reload()
    assert [(e.step, e.value) for e in reader.Scalars("curves/train_loss")] == [(3, 2.0), (7, 0.5)]
    store.reset_run("r1")
    assert list(store.curves("r1").columns) == ["step"] and store.curves("r1").empty


def test_a_store_from_before_curves_gains_their_table(tmp_path):
    with RunStore(tmp_path) as old:
        old.create_run("r1", {})
        old.conn.execute("DROP TABLE step_metrics")  # as a store written before curves existed
    with RunStore(tmp_path) as store:
        store.log_curves("r1", [(0, "train_loss", 1.5)])
        assert store.curves("r1").to_dict(orient="records") == [{"step": 0, "train_loss": 1.5}]
