"""A run without train.threads takes the cores other jobs leave free."""

import subprocess
import sys
import time

import pytest
import torch

from trainlab.train import cores
from trainlab.train.loop import intra_op_threads


@pytest.fixture(autouse=True)
def fresh_count(monkeypatch):
    monkeypatch.setattr(cores, "_last", None)


def _ticks_from(samples):
    """``_ticks`` replaced by successive (busy, total, own, cpus) samples."""
    it = iter(samples)
    return lambda: next(it)


@pytest.mark.parametrize("samples, free", [
    ([(0, 0, 0, 4), (19, 20, 0, 4)], 1),    # others kept 3.8 of 4 cores busy: one is left
    ([(0, 0, 0, 4), (10, 20, 0, 4)], 2),    # others 2 of 4
    ([(0, 0, 0, 4), (10, 20, 10, 4)], 4),   # the busy time was this process's own: all 4 are free
    ([(0, 0, 0, 4), (0, 20, 0, 4)], 4),     # an idle machine
])
def test_free_cores_counts_the_cores_other_processes_used(monkeypatch, samples, free):
    monkeypatch.setattr(cores, "usable_cores", lambda: 4)
    monkeypatch.setattr(cores, "_ticks", _ticks_from(samples))
    monkeypatch.setattr(cores, "WINDOW", 0.0)
    assert cores.free_cores() == free
    assert cores.free_cores() == free  # reused while fresh: _ticks is not read again


def test_without_proc_stat_every_usable_core_is_free(monkeypatch):
    monkeypatch.setattr(cores, "usable_cores", lambda: 3)
    monkeypatch.setattr(cores, "_ticks", lambda: None)
    assert cores.free_cores() == 3


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
def test_two_busy_processes_take_two_cores_from_a_run():
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        time.sleep(0.5)  # both are spinning
        assert cores.free_cores() <= max(1, cores.usable_cores() - 2)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def test_a_run_without_threads_uses_no_more_than_the_free_cores(monkeypatch):
    monkeypatch.setattr(cores, "_last", (time.monotonic(), 1))  # one core free
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # as on a 2-core machine
    seen = []
    monkeypatch.setattr(torch, "set_num_threads", seen.append)
    with intra_op_threads(None):
        pass
    with intra_op_threads(3):  # set by the user: as asked
        pass
    assert seen == [1, 2, 3, 2]


@pytest.mark.parametrize("samples, share", [
    ([(0, 0, 0, 4), (10, 20, 0, 4), (12, 40, 2, 4)], [0.5, 0.0]),  # others half the machine, then none
    ([(0, 0, 0, 4), (20, 20, 15, 4)], [0.25]),  # of 20 busy ticks this process's own were 15
])
def test_a_load_meter_gives_the_share_other_processes_used_between_laps(monkeypatch, samples, share):
    monkeypatch.setattr(cores, "_ticks", _ticks_from(samples))
    meter = cores.LoadMeter()
    assert [meter.lap() for _ in share] == pytest.approx(share)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
def test_each_epoch_records_how_busy_the_machine_was_and_how_many_runs_trained_together():
    from trainlab.config import load_config
    from trainlab.train import train_run
    from trainlab.train.ensemble import train_ensemble

    # epochs of about a quarter second: /proc/stat counts in ticks of 10 ms
    config = {"data": {"name": "digits"}, "model": {"hidden": [256, 256]},
              "train": {"epochs": 2, "batch_size": 8, "threads": 1}}
    quiet = train_run(load_config(config)).history
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        busy = train_run(load_config(config)).history
    finally:
        spinner.kill()
        spinner.wait()
    # one spinning process holds about one core's worth of the machine's CPU, whatever else runs
    assert (busy["cpu_elsewhere"] > 0.6 / cores.usable_cores()).all() and (busy["cpu_elsewhere"] <= 1).all()
    assert quiet["cpu_elsewhere"].between(0, 1).all() and (quiet["runs_together"] == 1).all()
    together = train_ensemble([load_config(config, [f"train.seed={s}"]) for s in (0, 1, 2)])
    assert all((r.history["runs_together"] == 3).all() for r in together)
