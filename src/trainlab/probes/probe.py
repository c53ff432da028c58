"""Gradient, weight, update and activation statistics of a network while it trains.

Use it in any PyTorch loop::

    with trainlab.probe(model, every=10) as p:
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            p.step()            # after backward, before optimizer.step()
            optimizer.step()
            optimizer.zero_grad()
    p.frame()                   # long DataFrame: step, layer, tensor, quantity, stat, value
    p.histograms()              # one row per histogram: step, layer, tensor, quantity, counts, edges

Every statistic is computed on the model's device; a probed step brings everything it
measured to the host in one transfer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from trainlab.models.activations import Maxout

ACTIVATIONS = (nn.Sigmoid, nn.Tanh, nn.ReLU, nn.LeakyReLU, nn.ELU, nn.SELU, nn.GELU, nn.Softplus, Maxout)
TENSOR_STATS = ("norm", "mean", "std", "abs_mean", "max_abs")
LOG_RANGE = (-12.0, 2.0)  # log10 |x| range of log-magnitude histograms
PROBE_COLUMNS = ["step", "layer", "tensor", "quantity", "stat", "value"]
PROBE_HISTOGRAM_COLUMNS = ["step", "layer", "tensor", "quantity", "counts", "edges"]


@dataclass
class _Pending:
    """What one probed step has measured, still on the device."""

    step: int
    keys: list[tuple[str, str, str, str]] = field(default_factory=list)  # layer, tensor, quantity, stat
    values: list[torch.Tensor] = field(default_factory=list)
    hist_keys: list[tuple[str, str, str, float, float]] = field(default_factory=list)  # + lo, hi
    hists: list[torch.Tensor] = field(default_factory=list)


class Probe:
    """Hooks on a model that record statistics every ``every`` steps (see the module docstring).

    ``schedule(step) -> bool``, when given, chooses the probed steps instead of ``every``.
    ``bins`` is the number of histogram bins; a histogram spans its tensor's minimum to
    maximum at that step, or with ``log_magnitude`` the fixed log10 |x| range ``LOG_RANGE``.
    """

    def __init__(self, model: nn.Module, every: int = 1, bins: int = 32, histograms: bool = True,
                 log_magnitude: bool = False, activations: bool = True,
                 schedule: Callable[[int], bool] | None = None):
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        self.model, self.bins = model, bins
        self.schedule = schedule or (lambda step: step % every == 0)
        self.with_histograms, self.log_magnitude, self.with_activations = histograms, log_magnitude, activations
        self.params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        self.steps_seen = 0
        self.order: dict[str, int] = {}  # layer name -> position in the forward pass
        self._open: _Pending | None = None  # the step being measured (activations, then gradients)
        self._awaiting: tuple[_Pending, list[torch.Tensor]] | None = None  # measured, waiting for its update
        self._handles: list = []
        self._rows: list[tuple] = []
        self._hist_rows: list[tuple] = []
        self._taken = (0, 0)  # how many rows and histograms take() has handed out

    # ------------------------------------------------------------------ hooks
    def __enter__(self) -> Probe:
        for name, module in self.model.named_modules():
            owns_params = any(True for _ in module.parameters(recurse=False))
            is_activation = isinstance(module, ACTIVATIONS)
            if owns_params or is_activation:
                self._handles.append(module.register_forward_hook(self._hook(name, is_activation)))
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Remove the hooks (statistics already recorded stay available)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _due(self) -> bool:
        return self.schedule(self.steps_seen)

    def _hook(self, name: str, is_activation: bool):
        def hook(module: nn.Module, inputs, output) -> None:
            self.order.setdefault(name, len(self.order))
            if is_activation and self.with_activations and module.training and self._due():
                self._measure_activation(name, module, output.detach())
        return hook

    def _current(self) -> _Pending:
        if self._open is None or self._open.step != self.steps_seen:
            self._open = _Pending(self.steps_seen)
        return self._open

    # ------------------------------------------------------------------ measuring
    def _measure_activation(self, name: str, module: nn.Module, y: torch.Tensor) -> None:
        pending = self._current()
        y = y.float()
        for stat, value in activation_stats(module, y).items():
            pending.keys.append((name, "output", "activation", stat))
            pending.values.append(value)
        if self.with_histograms:
            counts, lo, hi = histogram(y, self.bins)
            pending.hists.append(counts)
            pending.hist_keys.append((name, "output", "activation", lo, hi))

    def _measure_tensors(self, pending: _Pending, quantity: str, tensors: list[torch.Tensor],
                         names: list[str]) -> None:
        norms = torch.stack(torch._foreach_norm(tensors))
        max_abs = torch.stack(torch._foreach_norm(tensors, math.inf))
        abs_sums = torch.stack(torch._foreach_norm(tensors, 1))
        numel = torch.tensor([t.numel() for t in tensors], device=norms.device, dtype=norms.dtype)
        means = torch.stack([t.mean() for t in tensors])
        # std as the norm of the centred tensor: two fused multi-tensor passes instead of one torch.std per tensor
        centred = torch._foreach_sub(tensors, list(means.unbind()))
        stds = torch.stack(torch._foreach_norm(centred)) / (numel - 1).clamp_min(1).sqrt()
        for stat, column in zip(TENSOR_STATS, (norms, means, stds, abs_sums / numel, max_abs)):
            for name, value in zip(names, column.unbind()):
                pending.keys.append((*_split(name), quantity, stat))
                pending.values.append(value)
        if self.with_histograms:
            for name, t, top in zip(names, tensors, max_abs.unbind()):
                if self.log_magnitude:
                    counts, lo, hi = histogram(t.abs().clamp_min(1e-30).log10(), self.bins, LOG_RANGE)
                else:
                    counts, lo, hi = histogram(t, self.bins)
                pending.hist_keys.append((*_split(name), quantity, lo, hi))
                pending.hists.append(counts)

    def step(self) -> None:
        """Call once per training step, after ``backward()`` and before ``optimizer.step()``."""
        with torch.no_grad():
            self._finish_update()
            if self._due():
                pending = self._current()
                with_grad = [(n, p) for n, p in self.params if p.grad is not None]
                if with_grad:
                    self._measure_tensors(pending, "grad", [p.grad for _, p in with_grad], [n for n, _ in with_grad])
                self._measure_tensors(pending, "weight", [p.detach() for _, p in self.params],
                                      [n for n, _ in self.params])
                self._awaiting = (pending, [p.detach().clone() for _, p in self.params])
                self._open = None
        self.steps_seen += 1

    def _finish_update(self) -> None:
        """Record the update the optimizer applied after the last probed step, then flush that step."""
        if self._awaiting is None:
            return
        pending, before = self._awaiting
        deltas = torch._foreach_sub([p.detach() for _, p in self.params], before)
        ratios = torch.stack(torch._foreach_norm(deltas)) / torch.stack(torch._foreach_norm(before)).clamp_min(1e-30)
        for (name, _), ratio in zip(self.params, ratios.unbind()):
            pending.keys.append((*_split(name), "update_ratio", "norm"))
            pending.values.append(ratio)
        self._awaiting = None
        self._flush(pending)

    def take(self) -> tuple[list[tuple], list[tuple]]:
        """Statistic and histogram rows recorded since the last take; call it after ``optimizer.step()``.

        Rows are ``(step, layer, tensor, quantity, stat, value)`` and
        ``(step, layer, tensor, quantity, counts, edges)``, as in :meth:`frame` and :meth:`histograms`.
        """
        with torch.no_grad():
            self._finish_update()
        self._drain()
        rows, hists = self._rows[self._taken[0]:], self._hist_rows[self._taken[1]:]
        self._taken = (len(self._rows), len(self._hist_rows))
        return rows, hists

    def _flush(self, pending: _Pending) -> None:
        """Bring one probed step to the host in a single transfer."""
        scalars = [v.float().reshape(1) for v in pending.values]
        bounds = [torch.as_tensor(b, dtype=torch.float32, device=self._device()).reshape(1)
                  for _, _, _, lo, hi in pending.hist_keys for b in (lo, hi)]
        hists = [h.float() for h in pending.hists]
        flat = torch.cat(scalars + bounds + hists).cpu().numpy() if scalars or hists else np.zeros(0)
        values, rest = flat[: len(scalars)], flat[len(scalars):]
        edges, counts = rest[: len(bounds)].reshape(-1, 2), rest[len(bounds):].reshape(-1, self.bins)
        for key, value in zip(pending.keys, values):
            self._rows.append((pending.step, *key, float(value)))
        for (layer, tensor, quantity, _, _), (lo, hi), hist in zip(pending.hist_keys, edges, counts):
            self._hist_rows.append((pending.step, layer, tensor, quantity, hist, np.linspace(lo, hi, self.bins + 1)))

    def _device(self) -> torch.device:
        return self.params[0][1].device if self.params else torch.device("cpu")

    # ------------------------------------------------------------------ results
    def _drain(self) -> None:
        """Flush steps still on the device (the last probed step has no update ratio yet)."""
        if self._awaiting is not None:
            self._flush(self._awaiting[0])
            self._awaiting = None
        if self._open is not None:
            self._flush(self._open)
            self._open = None

    def frame(self) -> pd.DataFrame:
        """Long-format statistics: ``step, layer, tensor, quantity, stat, value``, layers in forward order."""
        self._drain()
        frame = pd.DataFrame(self._rows, columns=PROBE_COLUMNS)
        return self._in_forward_order(frame)

    def histograms(self) -> pd.DataFrame:
        """Histograms: ``step, layer, tensor, quantity, counts`` (``bins`` values) and ``edges`` (``bins + 1``)."""
        self._drain()
        frame = pd.DataFrame(self._hist_rows, columns=PROBE_HISTOGRAM_COLUMNS)
        return self._in_forward_order(frame)

    def _in_forward_order(self, frame: pd.DataFrame) -> pd.DataFrame:
        position = frame["layer"].map(lambda layer: self.order.get(layer, len(self.order)))
        return frame.assign(_pos=position).sort_values(["step", "_pos"], kind="stable").drop(columns="_pos") \
            .reset_index(drop=True)


def histogram(
    x: torch.Tensor, bins: int, span: tuple[float, float] | None = None, sync_free: bool = False
) -> tuple[torch.Tensor, torch.Tensor | float, torch.Tensor | float]:
    """Counts of ``x`` in ``bins`` equal bins over ``span`` (default: its min to max).

    Values outside the span go to the first or last bin; NaN and infinities count as 0. On CPU
    this is one min/max pass and a ``bincount``; on other devices, or with ``sync_free`` (which
    ``vmap`` needs), it stays on the device, without reading the range back to Python.
    """
    if x.device.type == "cpu" and not sync_free:
        return _histogram_cpu(x, bins, span)
    x = torch.nan_to_num(x.detach().float().flatten(), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = span if span is not None else (x.min(), x.max())
    width = (hi - lo) / bins if span is not None else ((hi - lo) / bins).clamp_min(1e-30)
    index = ((x - lo) / width).long().clamp(0, bins - 1)
    counts = torch.zeros(bins, device=x.device).scatter_add(0, index, torch.ones_like(x))  # out of place: vmap-able
    return counts, lo, hi


def _histogram_cpu(x: torch.Tensor, bins: int, span: tuple[float, float] | None) -> tuple[torch.Tensor, float, float]:
    x = x.detach().float().flatten()
    lo, hi = span if span is not None else (float(v) for v in x.aminmax())
    if not (math.isfinite(lo) and math.isfinite(hi)) or span is not None:  # rare: non-finite values, or a fixed span
        x = torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = span if span is not None else (float(v) for v in x.aminmax())
        x = x.clamp(lo, hi)
    if hi <= lo:  # a constant tensor: everything in the first bin
        return torch.zeros(bins).index_fill_(0, torch.tensor([0]), float(x.numel())), lo, hi
    index = (x - lo).mul_(bins / (hi - lo)).to(torch.int32).clamp_(0, bins - 1)  # bincount: faster than histc or a scatter-add on CPU
    return torch.bincount(index, minlength=bins).float(), lo, hi


def activation_stats(module: nn.Module, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """``mean``, ``std``, ``dead_frac`` and (sigmoid, tanh) ``saturated_frac`` of an activation's float output.

    A unit (a neuron, or a conv channel) is dead when it is zero for the whole batch.
    """
    dead = (y == 0).transpose(0, 1).reshape(y.shape[1], -1).all(dim=1)
    stats = {"mean": y.mean(), "std": y.std(), "dead_frac": dead.float().mean()}
    if isinstance(module, nn.Tanh):
        stats["saturated_frac"] = (y.abs() > 0.99).float().mean()
    elif isinstance(module, nn.Sigmoid):
        stats["saturated_frac"] = ((y < 0.01) | (y > 0.99)).float().mean()
    return stats


def _split(name: str) -> tuple[str, str]:
    """``stage1_block0.conv1.weight`` -> (``stage1_block0.conv1``, ``weight``)."""
    layer, _, tensor = name.rpartition(".")
    return layer, tensor


def probe(model: nn.Module, every: int = 1, **options) -> Probe:
    """A :class:`Probe` on ``model``; use it as a context manager."""
    return Probe(model, every, **options)
