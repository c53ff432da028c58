"""Confusion matrices: a model's predictions, the matrix, per-class accuracy and a labelled figure.

``m = confusion_matrix(data.test.y, predict(model, data.test.x, data.mean, data.std), data.num_classes)``,
then ``per_class_accuracy(m, data.classes)`` and ``plot_confusion(m, data.classes)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from trainlab.data import to_float
from trainlab.errors import UserError

MAX_ANNOTATED = 20  # numbers are written in the cells up to this many classes


def predict(
    model: nn.Module, x_uint8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, batch_size: int = 1024
) -> torch.Tensor:
    """Predicted class indices (int64, on the CPU) of uint8 images ``(N, C, H, W)``.

    Batches of ``batch_size`` go to the model's device, normalised with ``to_float(x, mean, std)``,
    and are classified by the logits' argmax in eval mode without gradients; every module's
    train/eval mode is restored afterwards.
    """
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}")
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else x_uint8.device
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            labels = [
                model(to_float(x_uint8[start : start + batch_size].to(device), mean, std)).argmax(dim=1).cpu()
                for start in range(0, len(x_uint8), batch_size)
            ]
    finally:
        for module, training in modes:
            module.training = training
    return torch.cat(labels) if labels else torch.empty(0, dtype=torch.int64)


def confusion_matrix(y_true: torch.Tensor, y_pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts ``(num_classes, num_classes)`` int64: ``[i, j]`` samples of true class ``i`` predicted ``j``."""
    y_true = torch.as_tensor(y_true).to("cpu", torch.int64).reshape(-1)
    y_pred = torch.as_tensor(y_pred).to("cpu", torch.int64).reshape(-1)
    if len(y_true) != len(y_pred):
        raise UserError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    for name, labels in (("true labels", y_true), ("predictions", y_pred)):
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise UserError(
                f"{name} must be class indices in [0, {num_classes}), got values from "
                f"{int(labels.min())} to {int(labels.max())}"
            )
    counts = torch.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _check(matrix: torch.Tensor, classes: Sequence[str]) -> torch.Tensor:
    """``matrix`` as a CPU tensor, after checking that it is square with one row per class."""
    matrix = torch.as_tensor(matrix).cpu()
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] != len(classes):
        raise UserError(
            f"a confusion matrix of {len(classes)} classes is {len(classes)}x{len(classes)}, "
            f"got shape {tuple(matrix.shape)}"
        )
    return matrix


def per_class_accuracy(matrix: torch.Tensor, classes: Sequence[str]) -> pd.DataFrame:
    """One row per class: ``class``, ``correct`` (diagonal), ``total`` (row sum), ``accuracy`` (NaN if 0)."""
    matrix = _check(matrix, classes).to(torch.int64)
    correct, total = matrix.diagonal().numpy(), matrix.sum(dim=1).numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(total > 0, correct / total, np.nan)
    return pd.DataFrame({"class": list(classes), "correct": correct, "total": total, "accuracy": accuracy})


def plot_confusion(
    matrix: torch.Tensor, classes: Sequence[str], normalize: bool = True, title: str = "Confusion matrix"
) -> Figure:
    """Heat map of ``matrix`` (rows: true class, columns: predicted class) with a colour bar.

    ``normalize`` divides each row by its total, so the diagonal shows per-class recall (rows without
    samples stay 0); otherwise the raw counts are shown. Up to 20 classes the values are written in
    the cells.
    """
    matrix = _check(matrix, classes).to(torch.float64).numpy()
    if normalize:
        totals = matrix.sum(axis=1, keepdims=True)
        matrix = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    n = len(classes)
    side = min(4.0 + 0.45 * n, 16.0)
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.add_subplot()
    top = 1.0 if normalize else max(float(matrix.max()), 1.0)
    image = ax.imshow(matrix, cmap="Blues", vmin=0.0, vmax=top, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="fraction of the true class" if normalize else "count")
    ax.set_xticks(range(n), labels=[str(c) for c in classes], rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), labels=[str(c) for c in classes])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    if n <= MAX_ANNOTATED:
        for (i, j), value in np.ndenumerate(matrix):
            text = f"{value:.2f}" if normalize else f"{int(value)}"
            color = "white" if value > top / 2 else "black"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=8)
    return fig
