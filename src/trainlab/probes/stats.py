"""The probe statistics, each defined once, for one model or for a stack of models.

A stack is what a vectorised ensemble trains: every tensor has the models along a new first
dimension. :class:`StepRecord` holds what one probed step measured, still on the device, and
brings it to the host in a single transfer as one ``(rows, histograms)`` pair per model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.func import vmap

from trainlab.models.activations import Maxout

ACTIVATIONS = (nn.Sigmoid, nn.Tanh, nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.GELU, nn.Softplus, Maxout)
TENSOR_STATS = ("norm", "mean", "std", "abs_mean", "max_abs")
VANISHING = 0.01  # |f'(z)| below this: the unit passes back less than 1% of the gradient it receives
LOG_RANGE = (-12.0, 2.0)  # log10 |x| range of log-magnitude histograms
PROBE_COLUMNS = ["step", "layer", "tensor", "quantity", "stat", "value"]
PROBE_HISTOGRAM_COLUMNS = ["step", "layer", "tensor", "quantity", "counts", "edges"]


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
    # clamped as floats (an int32 clamp is ten times slower), then a bincount: faster than histc or a scatter-add
    index = (x - lo).mul_(bins / (hi - lo)).clamp_(0, bins - 1).to(torch.int32)
    return torch.bincount(index, minlength=bins).float(), lo, hi


def activation_stats(module: nn.Module, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """``mean``, ``std``, ``dead_frac`` and (sigmoid, tanh) ``saturated_frac`` of an activation's float output.

    A unit (a neuron, or a conv channel) is dead when it is zero for the whole batch. The std is
    the norm of the centred output over ``sqrt(n - 1)`` (as :func:`tensor_stats`; a third of
    ``Tensor.std``'s time on CPU).
    """
    unit_dims = [d for d in range(y.ndim) if d != 1]
    dead = (y.amax(dim=unit_dims) == 0) & (y.amin(dim=unit_dims) == 0)
    mean = y.mean()
    std = torch.linalg.vector_norm(y - mean) / math.sqrt(max(y.numel() - 1, 1))
    stats = {"mean": mean, "std": std, "dead_frac": dead.float().mean()}
    if isinstance(module, nn.Tanh):
        stats["saturated_frac"] = (y.abs() > 0.99).float().mean()
    elif isinstance(module, nn.Sigmoid):
        stats["saturated_frac"] = ((y < 0.01) | (y > 0.99)).float().mean()
    return stats


def activation_derivative(module: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """f'(z): the derivative of an activation module at its input ``z``, elementwise, in float32.

    The gradient of ``module(z).sum()`` with respect to a detached copy of ``z``, through
    ``torch.func.vjp`` (so it works in a plain forward pass and inside ``vmap``/``grad`` alike).
    Maxout gives 1 where an input is its group's maximum and 0 elsewhere; PReLU its learned slope
    for negative inputs. The module's hooks do not run.
    """
    out, pullback = torch.func.vjp(module.forward, z.detach().float())
    return pullback(torch.ones_like(out))[0].detach()


def derivative_stats(d: torch.Tensor) -> dict[str, torch.Tensor]:
    """Statistics of activation derivatives: mean, std, min, max and the fraction with |f'| < ``VANISHING``."""
    low, high = torch.aminmax(d)
    vanishing = torch.count_nonzero(d.abs() < VANISHING) / d.numel()
    return {"mean": d.mean(), "std": d.std(), "min": low, "max": high, "vanishing_frac": vanishing}


def derivative_span(low: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The histogram range of derivatives between ``low`` and ``high``: ``[min(0, low), max(1, high)]``, so
    0 and 1 are always on it; [0, 1] where they are not finite."""
    return (torch.nan_to_num(low, nan=0.0, posinf=0.0, neginf=0.0).clamp(max=0.0),
            torch.nan_to_num(high, nan=1.0, posinf=1.0, neginf=1.0).clamp(min=1.0))


def tensor_stats(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``TENSOR_STATS`` of each tensor, as a ``(len(TENSOR_STATS), len(tensors))`` tensor.

    Fused multi-tensor passes where they are fast; the std is the norm of the centred tensor over
    ``sqrt(n - 1)``. The largest |value| comes from each tensor's min and max, and the sum of
    |values| from ``abs().sum()``: on CPU a tenth and a third of ``_foreach_norm``'s time for them.
    """
    tensors = [t.detach().float() for t in tensors]
    norms = torch.stack(torch._foreach_norm(tensors))
    max_abs = torch.stack([torch.stack(t.aminmax()).abs().max() for t in tensors])
    abs_sums = torch.stack([t.abs().sum() for t in tensors])
    numel = torch.tensor([t.numel() for t in tensors], device=norms.device, dtype=norms.dtype)
    means = torch.stack([t.mean() for t in tensors])
    centred = torch._foreach_sub(tensors, list(means.unbind()))
    stds = torch.stack(torch._foreach_norm(centred)) / (numel - 1).clamp_min(1).sqrt()
    return torch.stack([norms, means, stds, abs_sums / numel, max_abs])


def update_ratios(after: list[torch.Tensor], before: list[torch.Tensor]) -> torch.Tensor:
    """``|after - before| / |before|`` per tensor: how far one optimizer step moved each tensor."""
    deltas = torch._foreach_sub(after, before)
    return torch.stack(torch._foreach_norm(deltas)) / torch.stack(torch._foreach_norm(before)).clamp_min(1e-30)


def _per_model(tensors: list[torch.Tensor], stacked: bool) -> list[torch.Tensor]:
    """Each model's slice of every stacked tensor (tensor-major), or the tensors themselves."""
    return [t[m] for t in tensors for m in range(len(t))] if stacked else tensors


@dataclass
class StepRecord:
    """What one probed step measured, still on the device.

    Values are 0-d (one model) or have the models along their first dimension (a stack).
    """

    step: int
    keys: list[tuple[str, str, str, str]] = field(default_factory=list)  # layer, tensor, quantity, stat
    values: list[torch.Tensor] = field(default_factory=list)
    hist_keys: list[tuple[str, str, str]] = field(default_factory=list)  # layer, tensor, quantity
    hists: list[tuple] = field(default_factory=list)  # (counts, lo, hi)

    def add_activation(self, name: str, module: nn.Module, y: torch.Tensor, bins: int, histograms: bool,
                       sync_free: bool = False) -> None:
        """An activation module's output statistics (and histogram)."""
        y = y.detach().float()
        for stat, value in activation_stats(module, y).items():
            self.keys.append((name, "output", "activation", stat))
            self.values.append(value)
        if histograms:
            self.hist_keys.append((name, "output", "activation"))
            self.hists.append(histogram(y, bins, sync_free=sync_free))

    def add_derivative(self, name: str, module: nn.Module, z: torch.Tensor, bins: int, histograms: bool,
                       sync_free: bool = False) -> None:
        """An activation module's derivative at its input ``z`` (see :func:`activation_derivative`):
        statistics and a histogram over :func:`derivative_span`."""
        d = activation_derivative(module, z)
        stats = derivative_stats(d)
        for stat, value in stats.items():
            self.keys.append((name, "input", "derivative", stat))
            self.values.append(value)
        if histograms:
            self.hist_keys.append((name, "input", "derivative"))
            self.hists.append(histogram(d, bins, derivative_span(stats["min"], stats["max"]), sync_free=sync_free))

    def add_tensors(self, quantity: str, names: list[str], tensors: list[torch.Tensor], bins: int | None,
                    log_magnitude: bool = False, stacked: bool = False) -> None:
        """``TENSOR_STATS`` of named tensors' ``quantity`` (a parameter's grad or weight, a layer output's
        ``output_grad``), histograms unless ``bins`` is None."""
        stats = tensor_stats(_per_model(tensors, stacked))
        if stacked:
            stats = stats.view(len(TENSOR_STATS), len(tensors), -1)
        for s, stat in enumerate(TENSOR_STATS):
            for i, name in enumerate(names):
                self.keys.append((*_split(name), quantity, stat))
                self.values.append(stats[s, i])
        if bins is None:
            return
        for name, t in zip(names, tensors):
            self.hist_keys.append((*_split(name), quantity))
            self.hists.append(_tensor_histogram(t, bins, log_magnitude, stacked))

    def add_update_ratios(self, names: list[str], after: list[torch.Tensor], before: list[torch.Tensor],
                          stacked: bool = False) -> None:
        """The update ratio of each named parameter (see :func:`update_ratios`)."""
        ratios = update_ratios(_per_model(after, stacked), _per_model(before, stacked))
        ratios = ratios.view(len(names), -1) if stacked else ratios
        for name, ratio in zip(names, ratios):
            self.keys.append((*_split(name), "update_ratio", "norm"))
            self.values.append(ratio)

    def tensors(self) -> list[torch.Tensor]:
        """Every measured tensor in one flat list (how a vmapped step returns what it measured)."""
        return [*self.values, *(t for hist in self.hists for t in hist)]

    def refill(self, tensors: list[torch.Tensor]) -> None:
        """Replace the measured tensors by ``tensors``, in the order of :meth:`tensors` (the stacked results)."""
        self.values = list(tensors[: len(self.values)])
        rest = tensors[len(self.values):]
        self.hists = [tuple(rest[3 * i : 3 * i + 3]) for i in range(len(self.hists))]

    def rows(self, n_models: int, bins: int) -> list[tuple[list[tuple], list[tuple]]]:
        """Per model: ``(step, layer, tensor, quantity, stat, value)`` rows and ``(..., counts, edges)`` histograms."""
        m = n_models
        parts = [torch.stack(self.values).float().flatten()] if self.values else []  # value-major, then model
        for counts, lo, hi in self.hists:
            if isinstance(lo, float):  # measured on the CPU: the span is known already
                bounds = [torch.full((m, 1), b) for b in (lo, hi)]
            else:
                bounds = [torch.as_tensor(b, dtype=torch.float32, device=counts.device).reshape(-1).expand(m)[:, None]
                          for b in (lo, hi)]
            parts.append(torch.cat([counts.float().reshape(m, bins), *bounds], 1).flatten())
        host = torch.cat(parts).cpu().numpy() if parts else np.zeros(0, np.float32)
        scalars = host[: len(self.values) * m].reshape(len(self.values), m)
        blocks = host[len(self.values) * m:].reshape(len(self.hists), m, bins + 2)
        out = []
        for i in range(m):
            rows = [(self.step, *key, float(scalars[k, i])) for k, key in enumerate(self.keys)]
            hists = [(self.step, *key, block[:bins].copy(), np.linspace(block[bins], block[bins + 1], bins + 1))
                     for key, block in zip(self.hist_keys, blocks[:, i])]
            out.append((rows, hists))
        return out


def in_forward_order(rows: list[tuple], order: dict[str, int]) -> list[tuple]:
    """``(step, layer, ...)`` rows sorted by step, then by each layer's position in ``order`` (stable;
    layers not in it last), so that a store reading layers in order of first appearance reads them forward."""
    return sorted(rows, key=lambda row: (row[0], order.get(row[1], len(order))))


def _tensor_histogram(t: torch.Tensor, bins: int, log_magnitude: bool, stacked: bool) -> tuple:
    """Histogram of a tensor's values, or of log10 |values| over ``LOG_RANGE``; per model for a stack."""
    x = t.detach().abs().clamp_min(1e-30).log10() if log_magnitude else t.detach()
    span = LOG_RANGE if log_magnitude else None
    if not stacked:
        return histogram(x, bins, span)
    if span is None:
        return vmap(lambda u: histogram(u, bins, sync_free=True))(x)
    counts = vmap(lambda u: histogram(u, bins, span, sync_free=True)[0])(x)
    return counts, *(torch.full((len(x),), b, device=x.device) for b in span)


def _split(name: str) -> tuple[str, str]:
    """``stage1_block0.conv1.weight`` -> (``stage1_block0.conv1``, ``weight``)."""
    layer, _, tensor = name.rpartition(".")
    return layer, tensor
