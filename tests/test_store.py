import sqlite3

import pytest

from trainlab.errors import UserError
from trainlab.store import RunStore


def test_epochs_are_upserted_never_duplicated(tmp_path):
    store = RunStore(tmp_path)
    assert store.create_run("abc123", {"x": 1}) is True
    assert store.create_run("abc123", {"x": 1}) is False
    store.log_epoch("abc123", {"epoch": 1, "train_loss": 2.0, "test_acc": 0.5})
    store.log_epoch("abc123", {"epoch": 2, "train_loss": 1.0, "test_acc": 0.6})
    store.log_epoch("abc123", {"epoch": 2, "train_loss": 1.5, "test_acc": 0.7})  # replayed after a resume
    rows = store.conn.execute("SELECT COUNT(*) FROM metrics WHERE run_id='abc123'").fetchone()[0]
    assert rows == 4
    history = store.history("abc")
    assert history["epoch"].tolist() == [1, 2]
    assert history["train_loss"].tolist() == [2.0, 1.5] and history["test_acc"].tolist() == [0.5, 0.7]
    assert store.get_run("abc")["epochs_done"] == 2


def test_status_life_cycle_and_listing(tmp_path):
    store = RunStore(tmp_path)
    config = {"data": {"name": "digits"}, "model": {"kind": "mlp", "preset": None}}
    store.create_run("r1", config)
    store.start_run("r1")
    run = store.get_run("r1")
    assert run["status"] == "running" and run["versions"]["torch"] and run["host"]
    store.log_epoch("r1", {"epoch": 1, "test_acc": 0.9})
    store.finish_run("r1", "diverged", diverged_step=17)
    run = store.get_run("r1")
    assert run["status"] == "diverged" and run["diverged_step"] == 17 and run["duration"] >= 0
    listing = store.runs()
    assert listing.loc[0, "run_id"] == "r1" and listing.loc[0, "test_acc"] == 0.9 and listing.loc[0, "data"] == "digits"


def test_resolve_prefixes(tmp_path):
    store = RunStore(tmp_path)
    store.create_run("aa11", {})
    store.create_run("aa22", {})
    assert store.resolve("aa1") == "aa11"
    with pytest.raises(UserError, match="ambiguous"):
        store.resolve("aa")
    with pytest.raises(UserError, match="no run 'zz'"):
        store.resolve("zz")


def test_reader_reads_while_a_writer_holds_a_transaction(tmp_path):
    store = RunStore(tmp_path)
    store.create_run("r1", {})
    store.log_epoch("r1", {"epoch": 1, "train_loss": 1.0})
    writer = sqlite3.connect(store.db_path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT OR REPLACE INTO metrics VALUES ('r1', 2, 'train_loss', 0.5)")
    reader = RunStore(tmp_path)  # a second process's view, e.g. `trainlab runs`
    assert reader.history("r1")["epoch"].tolist() == [1]  # sees the committed state, not blocked
    writer.execute("COMMIT")
    assert reader.history("r1")["epoch"].tolist() == [1, 2]
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_reset_run_forgets_metrics_and_folder(tmp_path):
    store = RunStore(tmp_path)
    store.create_run("r1", {})
    store.run_dir("r1").mkdir(parents=True)
    (store.run_dir("r1") / "checkpoint.pt").write_bytes(b"x")
    store.log_epoch("r1", {"epoch": 1, "train_loss": 1.0})
    store.add_artifact("r1", "curve", store.run_dir("r1") / "curve.png", "figure")
    assert store.artifacts("r1")["path"].tolist() == ["runs/r1/curve.png"]
    store.reset_run("r1")
    assert store.history("r1").empty and store.artifacts("r1").empty
    assert not (tmp_path / "runs" / "r1").exists() and store.get_run("r1")["status"] == "pending"


def test_a_file_is_not_a_store(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(UserError, match="is a file"):
        RunStore(tmp_path / "f")


def test_prefixes_are_literal_not_patterns(tmp_path):
    store = RunStore(tmp_path)
    store.create_run("0a_c1", {})
    store.create_run("0_c2", {})
    store.create_run("0%c3", {})
    assert store.resolve("0_c") == "0_c2"
    assert store.resolve("0%") == "0%c3"
    with pytest.raises(UserError, match="no run '_'"):
        store.resolve("_")


def test_a_claim_is_held_by_one_holder_at_a_time(tmp_path):
    store, other = RunStore(tmp_path), RunStore(tmp_path)  # within one process as between two
    claim = store.claim("r1")
    assert claim is not None and other.claim("r1") is None and other.claim("r2") is not None
    claim.release()
    assert other.claim("r1") is not None


def test_probe_rows_come_back_in_forward_order_not_by_name(tmp_path):
    import torch
    import torch.nn.functional as F

    import trainlab
    from trainlab.models import create_model
    from trainlab.probes.measures import gradient_ratio, parameterised_layers

    torch.manual_seed(0)
    model = create_model({"kind": "mlp", "hidden": [4] * 11, "activation": "sigmoid"}, (1, 2, 2), 3)
    forward = [name for name, module in model.named_modules() if any(True for _ in module.parameters(False))]
    assert forward != sorted(forward)  # fc10 and fc11 sort before fc2 by name
    store = RunStore(tmp_path)
    store.create_run("deep", {})
    x, y = torch.randn(16, 1, 2, 2), torch.randint(0, 3, (16,))
    with trainlab.probe(model, histograms=True) as p:
        for _ in range(2):  # two epochs' writes, as a run makes them
            F.cross_entropy(model(x), y).backward()
            p.step()
            model.zero_grad()
            store.log_probes("deep", *p.take())
    stats, hists = store.probes("deep"), store.probe_histograms("deep")
    assert parameterised_layers(stats) == forward
    for frame in (stats, hists):
        for _, rows in frame[frame["quantity"] == "grad"].groupby("step"):
            assert list(dict.fromkeys(rows["layer"])) == forward
    direct = p.frame()  # the probe's own frame, in forward order
    grads = direct[(direct.quantity == "grad") & (direct.stat == "abs_mean") & (direct.tensor == "weight")]
    first, last = (grads[grads.layer == layer].set_index("step")["value"] for layer in ("fc1", "out"))
    assert gradient_ratio(stats) == pytest.approx(float((first / last).median()))
    store.conn.execute("DELETE FROM probe_layers")  # a run recorded before layer positions were stored
    assert parameterised_layers(store.probes("deep")) == forward  # natural order: fc2 before fc10
    old = store.probe_histograms("deep")
    assert list(old.loc[old["quantity"] == "grad", "layer"].unique()) == forward
    store.log_probes("deep", *p.take())  # nothing new: no positions appear
    store.reset_run("deep")
    assert store.conn.execute("SELECT COUNT(*) FROM probe_layers").fetchone()[0] == 0
