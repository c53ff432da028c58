"""The statistics of :class:`~trainlab.probes.Probe` for every model of a vectorised ensemble at once.

Activation statistics are computed by hooks inside the vmapped step and come out of it as its
auxiliary output (:meth:`StackedProbe.collected`); gradient, weight and update statistics are
computed on the stacked tensors. A probed step reaches the host in one transfer.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack

import torch
from torch import nn

from trainlab.capture import capture
from trainlab.config import ProbesConfig
from trainlab.probes.stats import ACTIVATIONS, StepRecord


class StackedProbe:
    """Probes ``n_models`` stacked models whose forward pass runs through ``base`` (under ``vmap``).

    Per step: :meth:`start`, the vmapped forward returning :meth:`collected`, :meth:`measure`
    with those results, the optimizer step, :meth:`finish`.
    """

    def __init__(self, base: nn.Module, n_models: int, cfg: ProbesConfig, schedule: Callable[[int], bool]):
        self.cfg, self.schedule, self.n_models = cfg, schedule, n_models
        self._record: StepRecord | None = None  # the step being measured
        self._before: list[torch.Tensor] = []
        self._rows: list[tuple[list, list]] = [([], []) for _ in range(n_models)]
        self._hooks = ExitStack()
        if cfg.activations:
            names = [name for name, module in base.named_modules() if isinstance(module, ACTIVATIONS)]
            self._hooks.enter_context(capture(base, names, on_call=self._on_call))

    def _on_call(self, name: str, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if self._record is not None and module.training:
            self._record.add_activation(name, module, output, self.cfg.bins, self.cfg.histograms, sync_free=True)

    def start(self, step: int) -> bool:
        """Whether ``step`` is probed; when it is, the next forward pass records activations."""
        self._record = StepRecord(step) if self.schedule(step) else None
        return self._record is not None

    def collected(self) -> list[torch.Tensor]:
        """The activation statistics recorded in this forward pass (returned from inside vmap)."""
        return self._record.tensors() if self._record is not None else []

    def measure(self, activations: list[torch.Tensor], grads: dict[str, torch.Tensor],
                params: dict[str, torch.Tensor]) -> None:
        """Record a probed step's stacked activation statistics and the gradients and weights before the update."""
        record, cfg = self._record, self.cfg
        record.refill(activations)
        bins = cfg.bins if cfg.histograms else None
        record.add_tensors("grad", list(grads), list(grads.values()), bins, cfg.log_magnitude, stacked=True)
        record.add_tensors("weight", list(params), list(params.values()), bins, cfg.log_magnitude, stacked=True)
        self._before = [p.clone() for p in params.values()]

    def finish(self, params: dict[str, torch.Tensor]) -> None:
        """After the optimizer step: add the update ratios and bring the step to the host."""
        record = self._record
        record.add_update_ratios(list(params), list(params.values()), self._before, stacked=True)
        for (rows, hists), (new_rows, new_hists) in zip(self._rows, record.rows(self.n_models, self.cfg.bins)):
            rows += new_rows
            hists += new_hists
        self._record, self._before = None, []

    def take(self) -> list[tuple[list[tuple], list[tuple]]]:
        """Each model's statistic and histogram rows since the last take (as :meth:`Probe.take`)."""
        taken, self._rows = self._rows, [([], []) for _ in range(self.n_models)]
        return taken

    def close(self) -> None:
        """Remove the hooks."""
        self._hooks.close()
