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

from collections.abc import Callable
from contextlib import ExitStack
from functools import partial

import pandas as pd
import torch
from torch import nn

from trainlab.capture import capture
from trainlab.probes.stats import ACTIVATIONS, PROBE_COLUMNS, PROBE_HISTOGRAM_COLUMNS, StepRecord, in_forward_order


class Probe:
    """Hooks on a model that record statistics every ``every`` steps (see the module docstring).

    ``schedule(step) -> bool``, when given, chooses the probed steps instead of ``every``.
    ``bins`` is the number of histogram bins; a histogram spans its tensor's minimum to
    maximum at that step, or with ``log_magnitude`` the fixed log10 |x| range ``LOG_RANGE``.
    ``steps_seen`` is the step the next :meth:`step` call closes (set it to resume a count).
    ``derivatives`` also records each activation's derivative f'(z) at its inputs (tensor ``input``,
    quantity ``derivative``); ``output_grads`` the gradient of the loss with respect to each watched
    layer's output, dL/dh (tensor ``output``, quantity ``output_grad``), through tensor hooks.
    """

    def __init__(self, model: nn.Module, every: int = 1, bins: int = 32, histograms: bool = True,
                 log_magnitude: bool = False, activations: bool = True,
                 schedule: Callable[[int], bool] | None = None, derivatives: bool = False,
                 output_grads: bool = False):
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        self.model, self.bins = model, bins
        self.schedule = schedule or (lambda step: step % every == 0)
        self.with_histograms, self.log_magnitude, self.with_activations = histograms, log_magnitude, activations
        self.with_derivatives, self.with_output_grads = derivatives, output_grads
        self.params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        self.steps_seen = 0
        self.order: dict[str, int] = {}  # layer name -> position in the forward pass
        self._open: StepRecord | None = None  # the step being measured (activations, then gradients)
        self._awaiting: tuple[StepRecord, list[torch.Tensor]] | None = None  # measured, waiting for its update
        self._output_grads: dict[str, torch.Tensor] = {}  # layer -> dL/dh, filled during backward
        self._hooks = ExitStack()
        self._rows: list[tuple] = []
        self._hist_rows: list[tuple] = []
        self._taken = (0, 0)  # how many rows and histograms take() has handed out

    # ------------------------------------------------------------------ hooks
    def __enter__(self) -> Probe:
        watched = [name for name, module in self.model.named_modules()
                   if isinstance(module, ACTIVATIONS) or any(True for _ in module.parameters(recurse=False))]
        self._hooks.enter_context(capture(self.model, [n for n in watched if n], on_call=self._on_call))
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Remove the hooks (statistics already recorded stay available)."""
        self._hooks.close()

    def _due(self) -> bool:
        return self.schedule(self.steps_seen)

    def _on_call(self, name: str, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        self.order.setdefault(name, len(self.order))
        if not (module.training and self._due()):
            return
        if isinstance(module, ACTIVATIONS) and self.with_activations:
            self._current().add_activation(name, module, output, self.bins, self.with_histograms)
        if isinstance(module, ACTIVATIONS) and self.with_derivatives:
            self._current().add_derivative(name, module, args[0], self.bins, self.with_histograms)
        if self.with_output_grads and isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(partial(self._keep_output_grad, name))

    def _keep_output_grad(self, name: str, grad: torch.Tensor) -> None:
        self._output_grads[name] = grad.detach()

    def _current(self) -> StepRecord:
        if self._open is None or self._open.step != self.steps_seen:
            self._open = StepRecord(self.steps_seen)
        return self._open

    # ------------------------------------------------------------------ measuring
    def step(self) -> None:
        """Call once per training step, after ``backward()`` and before ``optimizer.step()``."""
        with torch.no_grad():
            self._finish_update()
            if self._due():
                record = self._current()
                bins = self.bins if self.with_histograms else None
                with_grad = [(n, p) for n, p in self.params if p.grad is not None]
                if with_grad:
                    record.add_tensors("grad", [n for n, _ in with_grad], [p.grad for _, p in with_grad], bins,
                                       self.log_magnitude)
                record.add_tensors("weight", [n for n, _ in self.params], [p for _, p in self.params], bins,
                                   self.log_magnitude)
                if self._output_grads:
                    names = sorted(self._output_grads, key=self.order.__getitem__)
                    record.add_tensors("output_grad", [f"{n}.output" for n in names],
                                       [self._output_grads[n] for n in names], bins, self.log_magnitude)
                self._awaiting = (record, [p.detach().clone() for _, p in self.params])
                self._open = None
        self._output_grads = {}
        self.steps_seen += 1

    def _finish_update(self) -> None:
        """Record the update the optimizer applied after the last probed step, then flush that step."""
        if self._awaiting is None:
            return
        record, before = self._awaiting
        record.add_update_ratios([n for n, _ in self.params], [p.detach() for _, p in self.params], before)
        self._awaiting = None
        self._flush(record)

    def take(self) -> tuple[list[tuple], list[tuple]]:
        """Statistic and histogram rows recorded since the last take; call it after ``optimizer.step()``.

        Rows are ``(step, layer, tensor, quantity, stat, value)`` and
        ``(step, layer, tensor, quantity, counts, edges)``, as in :meth:`frame` and :meth:`histograms`: each
        step's layers in forward order.
        """
        with torch.no_grad():
            self._finish_update()
        self._drain()
        rows, hists = self._rows[self._taken[0]:], self._hist_rows[self._taken[1]:]
        self._taken = (len(self._rows), len(self._hist_rows))
        return in_forward_order(rows, self.order), in_forward_order(hists, self.order)

    def _flush(self, record: StepRecord) -> None:
        """Bring one probed step to the host in a single transfer."""
        rows, hists = record.rows(1, self.bins)[0]
        self._rows += rows
        self._hist_rows += hists

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
        return pd.DataFrame(in_forward_order(self._rows, self.order), columns=PROBE_COLUMNS)

    def histograms(self) -> pd.DataFrame:
        """Histograms: ``step, layer, tensor, quantity, counts`` (``bins`` values) and ``edges`` (``bins + 1``)."""
        self._drain()
        return pd.DataFrame(in_forward_order(self._hist_rows, self.order), columns=PROBE_HISTOGRAM_COLUMNS)


def probe(model: nn.Module, every: int = 1, **options) -> Probe:
    """A :class:`Probe` on ``model``; use it as a context manager."""
    return Probe(model, every, **options)
