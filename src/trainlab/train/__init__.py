"""Training: the loop, optimisers and schedules, checkpoints, and ``fit`` with the run store."""

from trainlab.train.bookkeeping import METRICS, TrainResult
from trainlab.train.engine import resolve_device
from trainlab.train.fit import fit
from trainlab.train.loop import evaluate, train_run

__all__ = ["METRICS", "TrainResult", "evaluate", "fit", "resolve_device", "train_run"]
