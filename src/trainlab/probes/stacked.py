"""The statistics of :class:`~trainlab.probes.Probe` for every model of a vectorised ensemble at once.

Activation statistics and derivatives are computed by hooks inside the vmapped step and come out
of it as its auxiliary output (:meth:`StackedProbe.collected`); gradient, weight and update
statistics are computed on the stacked tensors. Tensor hooks do not run under ``torch.func``, so
the gradients with respect to layer outputs (dL/dh) are read another way: the hooks add zeros
(:meth:`StackedProbe.output_zeros`) to each layer's output, and the step differentiates the loss
with respect to those zeros too. A probed step reaches the host in one transfer.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack

import torch
from torch import nn

from trainlab.capture import capture
from trainlab.config import ProbesConfig
from trainlab.probes.stats import ACTIVATIONS, StepRecord, in_forward_order


class StackedProbe:
    """Probes ``n_models`` stacked models whose forward pass runs through ``base`` (under ``vmap``).

    Per step: :meth:`start`, the vmapped forward (which sets :attr:`perturb` to its share of
    :meth:`output_zeros`) returning :meth:`collected`, :meth:`measure` with those results and the
    gradients, the optimizer step, :meth:`finish`.
    """

    def __init__(self, base: nn.Module, n_models: int, cfg: ProbesConfig, schedule: Callable[[int], bool]):
        self.base, self.cfg, self.schedule, self.n_models = base, cfg, schedule, n_models
        self._record: StepRecord | None = None  # the step being measured
        self._before: list[torch.Tensor] = []
        self._rows: list[tuple[list, list]] = [([], []) for _ in range(n_models)]
        self._shapes: dict[tuple, dict[str, torch.Size]] = {}  # input shape -> each layer's output shape
        self.perturb: dict[str, torch.Tensor] = {}  # layer -> zeros added to its output (inside vmap)
        self._hooks = ExitStack()
        self._order = {name: i for i, (name, _) in enumerate(base.named_modules())}  # a Sequential's forward order
        activations = [name for name, module in base.named_modules() if isinstance(module, ACTIVATIONS)]
        self.outputs = [name for name, module in base.named_modules() if name and (
            isinstance(module, ACTIVATIONS) or any(True for _ in module.parameters(recurse=False)))] \
            if cfg.output_grads else []
        watched = [*(activations if cfg.activations or cfg.derivatives else []), *self.outputs]
        if watched:
            self._hooks.enter_context(capture(base, watched, on_call=self._on_call))

    def _on_call(self, name: str, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        record, cfg = self._record, self.cfg
        if record is None or not module.training:
            return None
        if isinstance(module, ACTIVATIONS) and cfg.activations:
            record.add_activation(name, module, output, cfg.bins, cfg.histograms, sync_free=True)
        if isinstance(module, ACTIVATIONS) and cfg.derivatives:
            record.add_derivative(name, module, args[0], cfg.bins, cfg.histograms, sync_free=True)
        if name in self.perturb:
            return output + self.perturb[name].to(output.dtype)
        return None

    def start(self, step: int) -> bool:
        """Whether ``step`` is probed; when it is, the next forward pass records activations."""
        self._record = StepRecord(step) if self.schedule(step) else None
        return self._record is not None

    def output_zeros(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Zeros shaped like each layer's stacked output for the stacked batch ``x`` ({} without ``output_grads``).

        The shapes come from one forward pass of ``base`` on the meta device per batch shape.
        """
        if not self.outputs:
            return {}
        if x.shape not in self._shapes:
            record, self._record = self._record, None
            shapes: dict[str, torch.Size] = {}

            def note(name: str, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
                shapes.setdefault(name, output.shape)

            with capture(self.base, self.outputs, on_call=note):
                self.base(torch.empty(x.shape[1:], device="meta"))
            self._record, self._shapes[x.shape] = record, shapes
        return {name: torch.zeros(len(x), *shape, device=x.device) for name, shape in self._shapes[x.shape].items()}

    def collected(self) -> list[torch.Tensor]:
        """The activation statistics recorded in this forward pass (returned from inside vmap)."""
        return self._record.tensors() if self._record is not None else []

    def measure(self, activations: list[torch.Tensor], grads: dict[str, torch.Tensor],
                params: dict[str, torch.Tensor], output_grads: dict[str, torch.Tensor]) -> None:
        """Record a probed step's stacked activation statistics, the gradients with respect to the
        parameters and to the layer outputs (the zeros), and the weights before the update."""
        record, cfg = self._record, self.cfg
        record.refill(activations)
        bins = cfg.bins if cfg.histograms else None
        record.add_tensors("grad", list(grads), list(grads.values()), bins, cfg.log_magnitude, stacked=True)
        if output_grads:
            record.add_tensors("output_grad", [f"{name}.output" for name in output_grads],
                               list(output_grads.values()), bins, cfg.log_magnitude, stacked=True)
        record.add_tensors("weight", list(params), list(params.values()), bins, cfg.log_magnitude, stacked=True)
        self._before = [p.clone() for p in params.values()]

    def finish(self, params: dict[str, torch.Tensor]) -> None:
        """After the optimizer step: add the update ratios and bring the step to the host."""
        record = self._record
        record.add_update_ratios(list(params), list(params.values()), self._before, stacked=True)
        for (rows, hists), (new_rows, new_hists) in zip(self._rows, record.rows(self.n_models, self.cfg.bins)):
            rows += new_rows
            hists += new_hists
        self._record, self._before, self.perturb = None, [], {}

    def take(self) -> list[tuple[list[tuple], list[tuple]]]:
        """Each model's statistic and histogram rows since the last take (as :meth:`Probe.take`)."""
        taken, self._rows = self._rows, [([], []) for _ in range(self.n_models)]
        return [(in_forward_order(rows, self._order), in_forward_order(hists, self._order)) for rows, hists in taken]

    def close(self) -> None:
        """Remove the hooks."""
        self._hooks.close()
