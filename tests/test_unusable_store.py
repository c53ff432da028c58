"""A store that cannot be written or read is one line on stderr and exit 2, for every command.

Tests run as root, where file modes do not stop writes, so the read-only cases are made at the
boundary instead: SQLite opening the database read-only (``mode=ro``, as it does a file it may
not write), and ``os.mkdir`` raising what the OS raises under a folder that may not be written.
The errors themselves are the real ones.
"""

import errno
import json
import os
import sqlite3

import pytest

from trainlab.cli import main
from trainlab.store import RunStore

STUDY = {"name": "tiny", "base": {"data": {"name": "synthetic", "val_size": 64}, "train": {"epochs": 1}}}
TINY = ["data.name=synthetic", "data.val_size=64", "train.epochs=1"]


def _read_only_database(store, monkeypatch):
    RunStore(store).close()  # a store with its tables
    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect",
                        lambda path, **kw: connect(f"file:{path}?mode=ro", uri=True, **kw))
    return "cannot write"


def _read_only_parent(store, monkeypatch):
    mkdir = os.mkdir

    def refused(path, *args, **kwargs):
        if str(path).startswith(str(store.parent)):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", refused)
    return "cannot create"


def _garbage(store, monkeypatch):
    store.mkdir()
    (store / "trainlab.db").write_bytes(bytes(range(256)) * 16)
    return "is damaged"


def _directory(store, monkeypatch):
    (store / "trainlab.db").mkdir(parents=True)
    return "cannot write"


COMMANDS = {
    "run": ["run", "{study}", "--no-report"], "train": ["train", "--set", *TINY], "runs": ["runs"],
    "status": ["status", "{study}"], "report": ["report", "{study}"], "show": ["show", "abc"],
    "analyze": ["analyze", "abc"],
}


@pytest.mark.parametrize("fault", [_read_only_database, _read_only_parent, _garbage, _directory],
                         ids=["read-only", "under a read-only folder", "corrupt database", "not a file"])
@pytest.mark.parametrize("command", COMMANDS)
def test_a_store_that_cannot_be_used_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, command, fault):
    (tmp_path / "study.json").write_text(json.dumps(STUDY))
    store = tmp_path / "parent" / "store"
    store.parent.mkdir()
    said = fault(store, monkeypatch)
    if command not in ("run", "train") and fault is _read_only_parent:  # they only read: a store not there is said so
        said = "no run store"
    argv = [arg.format(study=tmp_path / "study.json") for arg in COMMANDS[command]]
    assert main([*argv, "--store", str(store)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trainlab: error:"), lines
    assert str(store) in lines[0] and said in lines[0] and "--store" in lines[0]
