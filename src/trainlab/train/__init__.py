"""Training: the epoch loop with its plain and ensemble steps, checkpoints, optimisers, and recording in the store."""

from trainlab.train.bookkeeping import METRICS, TrainResult
from trainlab.train.loop import resolve_device
from trainlab.train.fit import fit
from trainlab.train.plain import evaluate, train_run

__all__ = ["METRICS", "TrainResult", "evaluate", "fit", "resolve_device", "train_run"]
