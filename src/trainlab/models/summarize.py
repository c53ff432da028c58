"""Keras-style layer table of a network: shapes and parameter counts of every leaf module."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn

from trainlab.capture import capture

COLUMNS = ("name", "type", "input_shape", "output_shape", "trainable", "non_trainable")


@dataclass
class ModelSummary:
    """One row per leaf-module call in forward order (:data:`COLUMNS`), and parameter totals.

    ``non_trainable`` counts frozen parameters plus floating-point buffers such as batch-norm
    running statistics, as Keras does. ``notes`` are one-line warnings about the network, such as
    an output that is already a softmax. ``outline``: the architecture in one line (:func:`outline`).
    """

    frame: pd.DataFrame
    total: int
    trainable: int
    non_trainable: int
    notes: list[str] = field(default_factory=list)
    outline: str = ""

    def trainable_of(self, *types: str) -> int:
        """Trainable parameters of the layers of these types (``"Conv2d"``, ``"Linear"``, ...)."""
        return int(self.frame.loc[self.frame["type"].isin(types), "trainable"].sum())

    def units_of(self, *types: str) -> int:
        """Units (neurons) of the layers of these types: the sizes of their outputs, one example each."""
        shapes = self.frame.loc[self.frame["type"].isin(types), "output_shape"]
        return int(sum(math.prod(shape) for shape in shapes))

    def __str__(self) -> str:
        header = ["name", "type", "input", "output", "trainable", "non-trainable"]
        body = [
            [
                row.name,
                row.type,
                _format_shape(row.input_shape),
                _format_shape(row.output_shape),
                f"{row.trainable:,}",
                f"{row.non_trainable:,}",
            ]
            for row in self.frame.itertuples(index=False)
        ]
        widths = [max(len(cells[i]) for cells in [header, *body]) for i in range(len(header))]

        def line(cells: list[str]) -> str:
            # text columns left-aligned, counts right-aligned
            return "  ".join(
                cell.ljust(width) if i < 4 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
            )

        rule = "-" * len(line(header))
        totals = (
            f"Total params: {self.total:,}  "
            f"(trainable: {self.trainable:,}, non-trainable: {self.non_trainable:,})"
        )
        notes = [f"Note: {note}" for note in self.notes]
        return "\n".join([line(header), rule, *map(line, body), rule, totals, *notes])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: ``layers`` (one dict per row, shapes as lists) and the totals."""
        layers = [
            {
                "name": row.name,
                "type": row.type,
                "input_shape": list(row.input_shape),
                "output_shape": list(row.output_shape),
                "trainable": int(row.trainable),
                "non_trainable": int(row.non_trainable),
            }
            for row in self.frame.itertuples(index=False)
        ]
        return {
            "layers": layers,
            "total": self.total,
            "trainable": self.trainable,
            "non_trainable": self.non_trainable,
            "notes": list(self.notes),
            "outline": self.outline,
        }


def _format_shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) or "-"


def _shape(value: Any) -> tuple[int, ...]:
    """Shape without the batch dim of a tensor, or of the first tensor in a tuple/list."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape[1:])
    if isinstance(value, (tuple, list)):
        return next((_shape(v) for v in value if isinstance(v, torch.Tensor)), ())
    return ()


def _notes(frame: pd.DataFrame) -> list[str]:
    """Warnings about the layer table: a network whose last layer is a softmax."""
    if frame.empty or frame["type"].iloc[-1] != "Softmax":
        return []
    return [
        f"{frame['name'].iloc[-1]}: the output is a softmax, so the cross-entropy (which applies its own) "
        "gets probabilities, not logits: a softmax applied twice (model.output_softmax keeps report 001's "
        "mistake to reproduce it)"
    ]


def outline(model: nn.Module, frame: pd.DataFrame) -> str:
    """The layers of a summary's ``frame`` in one line, in forward order: ``conv5x5(6)`` (kernel, channels;
    ``/s2`` when strided), ``maxpool``, ``avgpool``, ``bn``, ``drop0.5``, ``fc120``; activations, flattens
    and other reshapes are left out."""
    modules = dict(model.named_modules())
    parts = []
    for name in frame["name"]:
        module = modules.get(name)
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            stride = f"/s{module.stride[0]}" if module.stride[0] > 1 else ""
            parts.append(f"conv{kh}x{kw}({module.out_channels}){stride}")
        elif isinstance(module, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)):
            parts.append("maxpool")
        elif isinstance(module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            parts.append("avgpool")
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            parts.append("bn")
        elif isinstance(module, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)):
            parts.append(f"drop{module.p:g}")
        elif isinstance(module, nn.Linear):
            parts.append(f"fc{module.out_features}")
    return " ".join(parts)


def _counts(params: Iterable[nn.Parameter], buffers: Iterable[torch.Tensor]) -> tuple[int, int]:
    """(trainable, non-trainable) numbers: frozen parameters and float buffers are non-trainable."""
    trainable = frozen = 0
    for p in params:
        if p.requires_grad:
            trainable += p.numel()
        else:
            frozen += p.numel()
    return trainable, frozen + sum(b.numel() for b in buffers if b.is_floating_point())


def summary(
    model: nn.Module, input_shape: Sequence[int], device: str | torch.device | None = None
) -> ModelSummary:
    """Tabulate the layers of ``model`` from one pass of 2 zero inputs of ``input_shape`` (no batch dim).

    The pass runs in eval mode without gradients; every module's train/eval mode is restored.
    Totals count all parameters and float buffers, including those of modules never called.
    """
    first = next(model.parameters(), None)
    if device is None:
        device = first.device if first is not None else "cpu"
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    names = {module: name for name, module in model.named_modules()}
    leaves = [module for module in names if next(module.children(), None) is None]
    rows: list[dict[str, Any]] = []
    seen: set[nn.Module] = set()

    def record(name: str, module: nn.Module, inputs: tuple, output: Any) -> None:
        # a module called again (shared) gets a row, but its parameters are counted once
        trainable, non_trainable = _counts(module.parameters(recurse=False), module.buffers(recurse=False))
        if module in seen:
            trainable = non_trainable = 0
        seen.add(module)
        rows.append(
            {
                "name": name,
                "type": type(module).__name__,
                "input_shape": _shape(inputs),
                "output_shape": _shape(output),
                "trainable": trainable,
                "non_trainable": non_trainable,
            }
        )

    with torch.no_grad(), capture(model, [names[leaf] for leaf in leaves], eval_mode=True, on_call=record) as watch:
        watch.run(torch.zeros(2, *input_shape, device=device, dtype=dtype))
    trainable, non_trainable = _counts(model.parameters(), model.buffers())
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return ModelSummary(frame, trainable + non_trainable, trainable, non_trainable, _notes(frame),
                        outline(model, frame))
