"""The run store: an embedded SQLite database plus one folder per run.

Layout of a store directory (default ``./trainlab-runs``)::

    trainlab.db          runs, per-epoch metrics and per-iteration curves (long format), probe rows, artifacts
    runs/<run_id>/       checkpoint.pt, probes/ (rows per epoch), config.yaml and the run's artifacts
    claims/<run_id>      empty lock files: the process that holds one trains that run (:meth:`RunStore.claim`)

The database is in WAL mode and every write is one transaction, so a reader (``trainlab
runs`` in another terminal, a notebook) can read while a run writes. Metric rows are keyed
by (run, epoch, name) and upserted, so replaying epochs after a resume never duplicates them; so are
curve rows, by (run, step, name). Tables are created if missing, so an older store gains the new ones.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import re
import shutil
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainlab.errors import UserError
from trainlab.faults import fault_point

DEFAULT_STORE = "trainlab-runs"

def _probe_query(table: str, columns: str, keys: str) -> str:
    """The SELECT of a run's rows of a probe ``table``: ``columns`` and each layer's ``position``, step by
    step and layer by layer in forward order (positions are NULL for runs recorded before probe_layers
    existed), then by the table's other ``keys``."""
    return (f"SELECT {columns}, l.position FROM {table} s "
            "LEFT JOIN probe_layers l ON l.run_id = s.run_id AND l.layer = s.layer "
            f"WHERE s.run_id=? ORDER BY s.step, l.position, s.layer, {keys}")


def _by_position(frame: pd.DataFrame) -> pd.DataFrame:
    """Probe rows read by :func:`_probe_query`, without the position column. A run recorded before
    positions were stored has none: its layers come in natural order (fc2 before fc10), the forward
    order of trainlab's numbered layers."""
    if len(frame) and frame["position"].isna().all():
        def natural(layer: str) -> list:
            return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", layer)]

        order = sorted(range(len(frame)), key=lambda i: (frame["step"].iat[i], natural(frame["layer"].iat[i])))
        frame = frame.iloc[order].reset_index(drop=True)
    return frame.drop(columns="position")


SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id        TEXT PRIMARY KEY,
    config        TEXT NOT NULL,
    status        TEXT NOT NULL,
    created       REAL NOT NULL,
    started       REAL,
    finished      REAL,
    duration      REAL,
    epochs_done   INTEGER NOT NULL DEFAULT 0,
    host          TEXT,
    pid           INTEGER,
    versions      TEXT,
    error         TEXT,
    diverged_step INTEGER
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    epoch  INTEGER NOT NULL,
    name   TEXT NOT NULL,
    value  REAL,
    PRIMARY KEY (run_id, epoch, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS step_metrics (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    step   INTEGER NOT NULL,
    name   TEXT NOT NULL,
    value  REAL,
    PRIMARY KEY (run_id, step, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS probe_stats (
    run_id   TEXT NOT NULL REFERENCES runs(run_id),
    step     INTEGER NOT NULL,
    layer    TEXT NOT NULL,
    tensor   TEXT NOT NULL,
    quantity TEXT NOT NULL,
    stat     TEXT NOT NULL,
    value    REAL,
    PRIMARY KEY (run_id, step, layer, tensor, quantity, stat)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS probe_histograms (
    run_id   TEXT NOT NULL REFERENCES runs(run_id),
    step     INTEGER NOT NULL,
    layer    TEXT NOT NULL,
    tensor   TEXT NOT NULL,
    quantity TEXT NOT NULL,
    counts   BLOB NOT NULL,
    edges    BLOB NOT NULL,
    PRIMARY KEY (run_id, step, layer, tensor, quantity)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS probe_layers (
    run_id   TEXT NOT NULL REFERENCES runs(run_id),
    layer    TEXT NOT NULL,
    position INTEGER NOT NULL,  -- order of first appearance in the probes' rows: forward order
    PRIMARY KEY (run_id, layer)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS study_runs (
    study     TEXT NOT NULL,
    run_id    TEXT NOT NULL REFERENCES runs(run_id),
    label     TEXT NOT NULL,
    seed      INTEGER NOT NULL,
    overrides TEXT NOT NULL,
    PRIMARY KEY (study, run_id)
);
CREATE TABLE IF NOT EXISTS artifacts (
    run_id  TEXT NOT NULL REFERENCES runs(run_id),
    name    TEXT NOT NULL,
    path    TEXT NOT NULL,
    kind    TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (run_id, name)
);
"""

STATUSES = ("pending", "running", "done", "failed", "diverged", "interrupted")  # interrupted: Ctrl-C, SIGTERM
FINISHED = ("done", "diverged")  # runs that need no more training
STOPPED = (*FINISHED, "failed", "interrupted")  # runs that nothing trains until a new `trainlab run`


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that decide a run's numbers."""
    import numpy
    import torch
    import torchvision

    import trainlab

    return {
        "python": platform.python_version(), "trainlab": trainlab.__version__, "torch": torch.__version__,
        "torchvision": torchvision.__version__, "numpy": numpy.__version__,
    }


class RunStore:
    """Runs, their per-epoch metrics and their artifacts, in ``root/trainlab.db``."""

    def __init__(self, root: str | Path = DEFAULT_STORE):
        """Open (or create) the store; UserError if it cannot be written or its database is damaged."""
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"store {str(self.root)!r} is a file; give a directory with --store DIR")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"cannot create the run store {str(self.root)!r} ({error.strerror}); "
                            "give a writable folder with --store DIR") from None
        self.db_path = self.root / "trainlab.db"
        try:
            self.conn = self._connect()
        except sqlite3.DatabaseError as error:
            raise _unusable(self.db_path, error) from None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(SCHEMA)
        conn.execute("PRAGMA busy_timeout=0")  # the probe below must not wait for another process's write
        conn.execute("BEGIN")
        try:
            conn.execute("DELETE FROM runs WHERE 0")  # writes nothing, yet fails on a read-only database
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode != sqlite3.SQLITE_BUSY:  # busy: another process writes, so one can
                raise
        finally:
            conn.execute("ROLLBACK")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def _transaction(self) -> _Transaction:
        return _Transaction(self.conn)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ writes
    def create_run(self, run_id: str, config: dict[str, Any]) -> bool:
        """Register a run as ``pending``; returns False if it was already there."""
        with self._transaction():
            cur = self.conn.execute(
                "INSERT OR IGNORE INTO runs (run_id, config, status, created) VALUES (?, ?, 'pending', ?)",
                (run_id, json.dumps(config, sort_keys=True), time.time()),
            )
        return cur.rowcount == 1

    def add_to_study(self, study: str, run_id: str, label: str, seed: int, overrides: dict[str, Any]) -> None:
        """Record that ``run_id`` is the run of ``study`` with group ``label`` and ``seed``."""
        with self._transaction():
            self.conn.execute(
                "INSERT OR REPLACE INTO study_runs VALUES (?, ?, ?, ?, ?)",
                (study, run_id, label, seed, json.dumps(overrides, sort_keys=True)),
            )

    def start_run(self, run_id: str, pid: int | None = None) -> None:
        """Mark a run ``running`` in process ``pid`` (default: this one) on this host, with library versions."""
        with self._transaction():
            self.conn.execute(
                "UPDATE runs SET status='running', started=COALESCE(started, ?), host=?, pid=?, versions=?, "
                "error=NULL WHERE run_id=?",
                (time.time(), socket.gethostname(), pid or os.getpid(), json.dumps(library_versions()), run_id),
            )

    def finish_run(self, run_id: str, status: str, error: str | None = None, diverged_step: int | None = None) -> None:
        """Record a run's final ``status`` (done, failed, diverged, interrupted) and its duration."""
        assert status in STATUSES, status
        fault_point("store.finish")
        now = time.time()
        with self._transaction():
            self.conn.execute(
                "UPDATE runs SET status=?, finished=?, duration=? - started, error=?, diverged_step=? WHERE run_id=?",
                (status, now, now, error, diverged_step, run_id),
            )

    def reset_run(self, run_id: str) -> None:
        """Forget a run's metrics, artifacts and checkpoint so that it trains again from scratch."""
        with self._transaction():
            self.conn.execute("DELETE FROM metrics WHERE run_id=?", (run_id,))
            self.conn.execute("DELETE FROM step_metrics WHERE run_id=?", (run_id,))
            self.conn.execute("DELETE FROM artifacts WHERE run_id=?", (run_id,))
            self.conn.execute("DELETE FROM probe_stats WHERE run_id=?", (run_id,))
            self.conn.execute("DELETE FROM probe_histograms WHERE run_id=?", (run_id,))
            self.conn.execute("DELETE FROM probe_layers WHERE run_id=?", (run_id,))
            self.conn.execute(
                "UPDATE runs SET status='pending', started=NULL, finished=NULL, duration=NULL, epochs_done=0, "
                "error=NULL, diverged_step=NULL WHERE run_id=?", (run_id,))
        shutil.rmtree(self.root / "runs" / run_id, ignore_errors=True)

    def log_epoch(self, run_id: str, row: dict[str, Any]) -> None:
        """Upsert one epoch's metrics (``row`` has ``epoch`` and metric name -> value)."""
        fault_point("store.epoch")
        epoch = int(row["epoch"])
        values = [(run_id, epoch, k, float(v)) for k, v in row.items() if k != "epoch" and v is not None]
        with self._transaction():
            self.conn.executemany("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?)", values)
            self.conn.execute(
                "UPDATE runs SET epochs_done=MAX(epochs_done, ?) WHERE run_id=?", (epoch, run_id)
            )

    def log_curves(self, run_id: str, rows: list[tuple]) -> None:
        """Upsert per-iteration curve rows ``(step, name, value)`` (``probes.curve_every``)."""
        with self._transaction():
            self.conn.executemany("INSERT OR REPLACE INTO step_metrics VALUES (?, ?, ?, ?)",
                                  [(run_id, int(step), name, float(value)) for step, name, value in rows])

    def log_probes(self, run_id: str, stats: list[tuple], histograms: list[tuple]) -> None:
        """Upsert probe rows ``(step, layer, tensor, quantity, stat, value)`` and histograms
        ``(step, layer, tensor, quantity, counts, edges)`` (arrays stored as float32 blobs).

        A layer's position is the order in which it first appears (a probe hands its rows over in forward
        order), so :meth:`probes` reads layers in forward order rather than by name (which puts fc10 before fc2).
        """
        layers = dict.fromkeys([r[1] for r in stats] + [h[1] for h in histograms])
        with self._transaction():
            self.conn.executemany(
                "INSERT OR IGNORE INTO probe_layers VALUES (?, ?, (SELECT COUNT(*) FROM probe_layers WHERE run_id=?))",
                [(run_id, layer, run_id) for layer in layers])
            self.conn.executemany("INSERT OR REPLACE INTO probe_stats VALUES (?, ?, ?, ?, ?, ?, ?)",
                                  [(run_id, int(r[0]), *r[1:5], float(r[5])) for r in stats])
            self.conn.executemany(
                "INSERT OR REPLACE INTO probe_histograms VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(run_id, int(h[0]), *h[1:4], np.asarray(h[4], np.float32).tobytes(),
                  np.asarray(h[5], np.float32).tobytes()) for h in histograms],
            )

    def add_artifact(self, run_id: str, name: str, path: str | Path, kind: str) -> None:
        """Record a file in the run's folder (``path`` relative to the store root when inside it)."""
        path, root = Path(path).resolve(), self.root.resolve()
        rel = path.relative_to(root) if path.is_relative_to(root) else path
        with self._transaction():
            self.conn.execute(
                "INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?, ?)", (run_id, name, str(rel), kind, time.time())
            )

    # ------------------------------------------------------------------ reads
    def run_dir(self, run_id: str) -> Path:
        """The run's folder; the job that trains the run creates it (so a folder that cannot be made fails that run)."""
        return self.root / "runs" / run_id

    def claim(self, run_id: str, wait: bool = False) -> FileLock | None:
        """This process's claim on training ``run_id``: a lock on ``claims/<run_id>``, or None while
        another process holds it (with ``wait``: once that process lets go). Only the holder trains the
        run; its exit, however it comes (SIGKILL too), releases the claim."""
        return FileLock.take(self.root / "claims" / run_id, wait)

    def resolve(self, ref: str) -> str:
        """Full run id from a unique prefix; UserError naming the candidates otherwise."""
        pattern = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self.conn.execute("SELECT run_id FROM runs WHERE run_id LIKE ? ESCAPE '\\' ORDER BY created",
                                 (pattern,)).fetchall()
        ids = [r["run_id"] for r in rows]
        if len(ids) == 1:
            return ids[0]
        if not ids:
            raise UserError(f"no run {ref!r} in store {str(self.root)!r}; `trainlab runs` lists them")
        raise UserError(f"run prefix {ref!r} is ambiguous: {', '.join(ids)}")

    def get_run(self, ref: str) -> dict[str, Any]:
        """One run's record with its config decoded."""
        row = dict(self.conn.execute("SELECT * FROM runs WHERE run_id=?", (self.resolve(ref),)).fetchone())
        row["config"] = json.loads(row["config"])
        row["versions"] = json.loads(row["versions"]) if row["versions"] else None
        return row

    def runs(self) -> pd.DataFrame:
        """All runs, oldest first, with the studies they belong to and their variant label there, and
        their last epoch's test and validation accuracy."""
        query = """
            SELECT r.run_id, r.status, r.epochs_done, r.created, r.duration, r.config,
                   (SELECT group_concat(s.study, ', ') FROM study_runs s WHERE s.run_id = r.run_id) AS study,
                   (SELECT s.label FROM study_runs s WHERE s.run_id = r.run_id LIMIT 1) AS label,
                   (SELECT value FROM metrics m WHERE m.run_id = r.run_id AND m.name = 'test_acc'
                    ORDER BY epoch DESC LIMIT 1) AS test_acc,
                   (SELECT value FROM metrics m WHERE m.run_id = r.run_id AND m.name = 'val_acc'
                    ORDER BY epoch DESC LIMIT 1) AS val_acc
            FROM runs r ORDER BY r.created"""
        frame = pd.read_sql_query(query, self.conn)
        configs = frame.pop("config").map(json.loads)
        frame.insert(2, "data", configs.map(lambda c: c["data"]["name"]))
        frame.insert(3, "model", configs.map(lambda c: c["model"]["preset"] or c["model"]["kind"]))
        return frame

    def status_of(self, run_ids: list[str]) -> dict[str, str]:
        """Status of each known run id (unknown ids are left out)."""
        marks = ",".join("?" * len(run_ids))
        rows = self.conn.execute(f"SELECT run_id, status FROM runs WHERE run_id IN ({marks})", run_ids)
        return {row["run_id"]: row["status"] for row in rows}

    def history(self, ref: str) -> pd.DataFrame:
        """Per-epoch metrics of a run, one row per epoch, one column per metric."""
        run_id = self.resolve(ref)
        long = pd.read_sql_query("SELECT epoch, name, value FROM metrics WHERE run_id=? ORDER BY epoch", self.conn,
                                 params=(run_id,))
        if long.empty:
            return pd.DataFrame(columns=["epoch"])
        wide = long.pivot(index="epoch", columns="name", values="value").reset_index()
        wide.columns.name = None
        return wide

    def curves(self, ref: str) -> pd.DataFrame:
        """A run's per-iteration curves, one row per recorded step, one column per metric
        (``step``, ``train_acc``, ``train_loss``); only ``step`` when none were recorded."""
        rows = self.conn.execute("SELECT step, name, value FROM step_metrics WHERE run_id=? ORDER BY step",
                                 (self.resolve(ref),)).fetchall()
        return step_frame([tuple(row) for row in rows])

    def probes(self, ref: str) -> pd.DataFrame:
        """A run's probe statistics: ``step, layer, tensor, quantity, stat, value``, each step's layers in
        forward order."""
        query = _probe_query("probe_stats", "s.step, s.layer, s.tensor, s.quantity, s.stat, s.value",
                             "s.tensor, s.quantity, s.stat")
        return _by_position(pd.read_sql_query(query, self.conn, params=(self.resolve(ref),)))

    def probe_histograms(self, ref: str) -> pd.DataFrame:
        """A run's probe histograms: ``step, layer, tensor, quantity, counts, edges`` (numpy arrays), each
        step's layers in forward order."""
        query = _probe_query("probe_histograms", "s.step, s.layer, s.tensor, s.quantity, s.counts, s.edges",
                             "s.tensor, s.quantity")
        frame = _by_position(pd.read_sql_query(query, self.conn, params=(self.resolve(ref),)))
        for column in ("counts", "edges"):
            frame[column] = frame[column].map(lambda blob: np.frombuffer(blob, np.float32))
        return frame

    def artifacts(self, ref: str) -> pd.DataFrame:
        """Files recorded for a run."""
        return pd.read_sql_query("SELECT name, path, kind, created FROM artifacts WHERE run_id=? ORDER BY created",
                                 self.conn, params=(self.resolve(ref),))


def step_frame(rows: list[tuple]) -> pd.DataFrame:
    """Rows ``(step, name, value)`` as one row per step and one column per name, by step."""
    if not rows:
        return pd.DataFrame(columns=["step"])
    long = pd.DataFrame(rows, columns=["step", "name", "value"])
    wide = long.pivot(index="step", columns="name", values="value").reset_index()
    wide.columns.name = None
    return wide


def _unusable(db_path: Path, error: sqlite3.DatabaseError) -> UserError:
    """The UserError for a store database that SQLite cannot open or write (``error``)."""
    if isinstance(error, sqlite3.OperationalError):  # read-only, not a file, no room, ...
        return UserError(f"cannot write the run store {str(db_path)!r} ({error}); "
                         "make it writable or give another folder with --store DIR")
    return UserError(f"the run store {str(db_path)!r} is damaged ({error}); "
                     "move it aside (its runs are lost) or give another folder with --store DIR")


class FileLock:
    """An exclusive ``flock`` on a file or a folder, held until :meth:`release` or the holder's exit.

    The kernel releases the lock when the process ends, killed or not, so a dead holder never
    blocks anyone. Lock files are never deleted: a process could otherwise lock a file that another
    has just replaced, and both would hold "the" lock. Locks on a network file system are only
    as good as its ``flock``.
    """

    def __init__(self, fd: int):
        self.fd: int | None = fd

    @classmethod
    def take(cls, path: Path, wait: bool = True) -> FileLock | None:
        """Lock the folder or file ``path`` (a file is created if missing); None if held, unless ``wait``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDONLY if path.is_dir() else os.O_RDONLY | os.O_CREAT
        fd = os.open(path, flags, 0o644)  # closed in programs this process starts
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return cls(fd)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, *_) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
