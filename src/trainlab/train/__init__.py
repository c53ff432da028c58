"""Training: the loop, optimisers and schedules, checkpoints, and ``fit`` with the run store."""

from trainlab.train.loop import METRICS, TrainResult, evaluate, resolve_device, train_run
from trainlab.train.runner import fit

__all__ = ["METRICS", "TrainResult", "evaluate", "fit", "resolve_device", "train_run"]
