"""Confusion matrix, per-class accuracy, batched prediction and the confusion figure."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from trainlab.analysis.confusion import confusion_matrix, per_class_accuracy, plot_confusion, predict
from trainlab.data import to_float
from trainlab.errors import UserError
from trainlab.models import create_model


def random_labels(n: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randint(classes, (n,), generator=generator) for _ in range(2))


@pytest.mark.parametrize(("n", "classes", "seed"), [(500, 7, 0), (3, 5, 1), (2000, 2, 2)])
def test_confusion_matrix_equals_sklearn(n: int, classes: int, seed: int) -> None:
    y_true, y_pred = random_labels(n, classes, seed)
    matrix = confusion_matrix(y_true, y_pred, classes)
    assert matrix.dtype == torch.int64 and matrix.shape == (classes, classes)
    expected = sk_confusion_matrix(y_true.numpy(), y_pred.numpy(), labels=list(range(classes)))
    np.testing.assert_array_equal(matrix.numpy(), expected)
    assert int(matrix.sum()) == n


def test_confusion_matrix_rows_are_true_classes() -> None:
    matrix = confusion_matrix(torch.tensor([0, 0, 0, 2]), torch.tensor([1, 1, 0, 2]), 3)
    assert matrix.tolist() == [[1, 2, 0], [0, 0, 0], [0, 0, 1]]
    empty = torch.empty(0, dtype=torch.int64)
    assert confusion_matrix(empty, empty, 2).tolist() == [[0, 0], [0, 0]]


@pytest.mark.parametrize(
    ("y_true", "y_pred", "message"),
    [([0, 3], [0, 1], r"true labels must be class indices in \[0, 3\)"), ([0, 1], [0, -1], "predictions"),
     ([0, 1, 2], [0, 1], "3 true labels but 2 predictions")],
)
def test_confusion_matrix_rejects_bad_labels(y_true, y_pred, message: str) -> None:
    with pytest.raises(UserError, match=message):
        confusion_matrix(torch.tensor(y_true), torch.tensor(y_pred), 3)


def test_per_class_accuracy_against_direct_computation() -> None:
    y_true, y_pred = random_labels(300, 4, 5)
    y_true[y_true == 3] = 0  # class 3 has no samples: accuracy NaN
    names = ["zero", "one", "two", "three"]
    frame = per_class_accuracy(confusion_matrix(y_true, y_pred, 4), names)
    assert list(frame.columns) == ["class", "correct", "total", "accuracy"] and list(frame["class"]) == names
    for k in range(3):
        correct, total = int(((y_true == k) & (y_pred == k)).sum()), int((y_true == k).sum())
        assert (frame.loc[k, "correct"], frame.loc[k, "total"]) == (correct, total)
        assert frame.loc[k, "accuracy"] == pytest.approx(correct / total)
    assert frame.loc[3, "total"] == 0 and np.isnan(frame.loc[3, "accuracy"])
    with pytest.raises(UserError, match="3 classes is 3x3"):
        per_class_accuracy(torch.zeros(4, 4), names[:3])


def test_predict_is_the_eval_argmax_in_batches_and_restores_modes() -> None:
    torch.manual_seed(0)
    model = create_model({"kind": "mlp", "hidden": [32], "dropout": 0.5, "batch_norm": True}, (2, 5, 5), 6)
    x = torch.randint(0, 256, (50, 2, 5, 5), dtype=torch.uint8)
    mean, std = torch.tensor([0.4, 0.6]), torch.tensor([0.2, 0.3])
    model.train()
    model.bn1.eval()  # a mixed state must come back as it was
    before = {name: module.training for name, module in model.named_modules()}
    with torch.no_grad():
        model.eval()
        expected = model(to_float(x, mean, std)).argmax(dim=1)
        model.train()
        model.bn1.eval()
    predicted = predict(model, x, mean, std, batch_size=7)  # 7 batches, the last one short
    assert predicted.dtype == torch.int64 and not predicted.requires_grad
    assert torch.equal(predicted, expected) and len(expected.unique()) > 1
    assert {name: module.training for name, module in model.named_modules()} == before
    model.eval()
    predict(model, x[:3], mean, std)
    assert not any(module.training for module in model.modules())
    assert predict(model, x[:0], mean, std).shape == (0,)


@pytest.mark.parametrize("normalize", [True, False])
def test_plot_confusion_labels_cells_and_png(normalize: bool) -> None:
    classes = ["cat", "dog", "bird"]
    matrix = torch.tensor([[5, 1, 0], [2, 6, 2], [0, 0, 0]])
    fig = plot_confusion(matrix, classes, normalize=normalize, title="test set")
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # the heat map and its colour bar
    assert ax.get_title() == "test set"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")
    assert [t.get_text() for t in ax.get_xticklabels()] == classes
    assert [t.get_text() for t in ax.get_yticklabels()] == classes
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert len(cells) == 9
    assert cells[1, 0] == ("0.20" if normalize else "2") and cells[0, 0] == ("0.83" if normalize else "5")
    assert cells[2, 2] == ("0.00" if normalize else "0")  # a class without samples
    shown = ax.images[0].get_array()
    np.testing.assert_allclose(shown[1], [0.2, 0.6, 0.2] if normalize else [2, 6, 2])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    image = Image.open(io.BytesIO(buffer.getvalue()))
    image.load()
    assert image.format == "PNG" and min(image.size) > 100


def test_plot_confusion_leaves_out_numbers_above_20_classes() -> None:
    classes = [f"c{k}" for k in range(21)]
    y_true, y_pred = random_labels(400, 21, 7)
    fig = plot_confusion(confusion_matrix(y_true, y_pred, 21), classes)
    assert len(fig.axes[0].get_xticklabels()) == 21 and not fig.axes[0].texts
