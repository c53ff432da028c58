"""Named module outputs of any torch model, through forward hooks: the one place trainlab hooks a model.

Probes (statistics while training) and every analysis (embeddings, neurons, attribution,
equivariance) see inside a network with :func:`capture`::

    with capture(model, ["conv3"], stop=True, eval_mode=True) as seen:
        seen.run(x)                # the forward pass stops once conv3 has run
    seen["conv3"]                  # [its output]

Hooks are removed, and with ``eval_mode`` every module's train/eval mode restored, when the
block ends, also when it ends with an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from trainlab.errors import unknown

OnCall = Callable[[str, nn.Module, tuple, Any], None]


class _StopForward(Exception):
    """Raised from a hook once every wanted module has run: nothing after them needs computing."""


class Captured(dict):
    """``{module name: [its output (or input) at each call]}`` while a :func:`capture` block is open."""

    def __init__(self, model: nn.Module, names: list[str], stop: bool):
        super().__init__({name: [] for name in names})
        self.model, self.stop = model, stop
        self._seen: set[str] = set()

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """``model(*args, **kwargs)``; None when the pass was stopped early (``stop=True``)."""
        self._seen = set()
        try:
            return self.model(*args, **kwargs)
        except _StopForward:
            return None

    def _record(self, name: str, value: Any) -> None:
        self[name].append(value)
        self._seen.add(name)
        if self.stop and len(self._seen) == len(self):
            raise _StopForward


def check_layers(model: nn.Module, names: Iterable[str], what: str = "layer") -> None:
    """UserError naming the valid module names unless every one of ``names`` is a module of ``model``
    (``""`` is the model itself)."""
    modules = {name for name, _ in model.named_modules()}
    for name in names:
        if name not in modules:
            raise unknown(what, name, modules - {""})


@contextmanager
def capture(
    model: nn.Module,
    layers: Iterable[str],
    *,
    inputs: bool = False,
    stop: bool = False,
    eval_mode: bool = False,
    hand_on_copy: bool = False,
    on_call: OnCall | None = None,
) -> Iterator[Captured]:
    """While open, record the output of each module named in ``layers`` (its first input with ``inputs``).

    ``stop``: :meth:`Captured.run` ends the forward pass as soon as every named module has run.
    ``eval_mode``: the model runs in eval mode; each module's mode is restored on exit.
    ``hand_on_copy``: the module passes a copy of its output on, so in-place operations after it
    cannot change what was recorded. ``on_call(name, module, args, output)``, when given, is called
    after each call of a named module instead of recording (the probes compute their statistics there);
    a tensor it returns replaces the module's output.
    """
    names = list(dict.fromkeys(layers))
    check_layers(model, names)
    seen = Captured(model, names, stop)
    modules = dict(model.named_modules())

    def hook_for(name: str) -> Callable[..., Any]:
        def after(module: nn.Module, args: tuple, output: Any = None) -> Any:
            if on_call is not None:
                replacement = on_call(name, module, args, output)
                if replacement is not None:
                    return replacement
            else:
                seen._record(name, args[0] if inputs else output)
            if hand_on_copy and isinstance(output, torch.Tensor):
                return output.clone()
            return None

        return after

    before = inputs and on_call is None  # recording inputs: before the module runs, so a stop skips it
    modes = [(module, module.training) for module in model.modules()] if eval_mode else []
    handles = [modules[name].register_forward_pre_hook(hook_for(name)) if before
               else modules[name].register_forward_hook(hook_for(name)) for name in names]
    try:
        if eval_mode:
            model.eval()
        yield seen
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.training = training
