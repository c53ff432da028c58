"""Gradient attributions of any torch model: saliency maps and guided backpropagation, and their figure.

``target`` picks what is differentiated, as in Captum:

* ``None``: the model gives one value per example;
* an int (or one-element tensor): that output column for every example;
* a tuple of ints: that index into each example's output (outputs with more than two dims);
* a list or 1-d tensor of ints (or a list of tuples), one per example;
* a neuron ``(layer, channel)`` or ``(layer, channel, "max")``: ``layer`` names a module of
  ``model.named_modules()``; per example, the sum of that channel's activation over all positions,
  or with ``"max"`` its activation at its strongest position (Springenberg et al. visualise
  single neurons that way). ``channel`` may also be a list or 1-d tensor of channels, one per
  example: each example gets the gradient of its own neuron, as if attributed one at a time.

Every example's selected value is summed before differentiating, so each example gets the gradient
of its own value (examples do not interact in eval mode).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from numbers import Integral
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from trainlab.capture import capture
from trainlab.errors import unknown

NEURON_REDUCTIONS = ("sum", "max")


def saliency(model: nn.Module, inputs: torch.Tensor, target: Any = None, abs: bool = True) -> torch.Tensor:
    """Gradient of the target w.r.t. ``inputs`` (Simonyan et al.), its absolute value when ``abs``.

    Equals Captum's ``Saliency(model).attribute(inputs, target=target, abs=abs)``. The model runs in
    its current mode; ``inputs`` and the model's parameters and their ``.grad`` are left untouched.
    """
    grad = _input_gradient(model, inputs, target, guided=False)
    return grad.abs() if abs else grad


def guided_backprop(model: nn.Module, inputs: torch.Tensor, target: Any = None) -> torch.Tensor:
    """Guided backpropagation (Springenberg et al.): the input gradient where every ReLU passes back
    only positive gradients, and only where its input was positive.

    Like Captum's ``GuidedBackprop``, this acts on ``nn.ReLU`` modules (in-place ones included) and
    not on functional ``relu`` calls: the gradient reaching the input of each ``nn.ReLU`` call is
    clamped at zero. Equals ``GuidedBackprop(model).attribute(inputs, target=target)``; also takes
    neuron targets (see the module docstring). The model runs in its current mode (call
    ``model.eval()`` first for batch norm and dropout); its hooks are removed afterwards.
    """
    return _input_gradient(model, inputs, target, guided=True)


def guides(model: nn.Module) -> bool:
    """Whether :func:`guided_backprop` of ``model`` differs from its plain input gradient: whether it
    has ``nn.ReLU`` modules (a net of sigmoid or tanh units, or of functional ``relu``, has none)."""
    return any(isinstance(m, nn.ReLU) for m in model.modules())


def _input_gradient(model: nn.Module, inputs: torch.Tensor, target: Any, guided: bool) -> torch.Tensor:
    """Gradient of the summed target values w.r.t. ``inputs``, optionally with guided ReLUs.

    The model gets a copy that is not a leaf of the graph, so in-place operations on it are allowed; a
    neuron's layer hands a copy of its output on, so in-place operations after it cannot change it.
    """
    x = inputs.detach().requires_grad_(True)
    neuron = _neuron(target)
    with ExitStack() as stack, torch.enable_grad():
        if guided:
            stack.enter_context(_guided_relus(model))
        if neuron is not None:
            layer, channel, reduction = neuron
            seen = stack.enter_context(capture(model, [layer], hand_on_copy=True))
        output = model(x.clone())
        if neuron is None:
            objective = _select(output, target).sum()
        else:
            objective = _neuron_values(layer, seen[layer], channel, reduction).sum()
        (grad,) = torch.autograd.grad(objective, x)
    return grad.detach()


@contextmanager
def _guided_relus(model: nn.Module) -> Iterator[None]:
    """While open, the gradient reaching the input of every ``nn.ReLU`` call in ``model`` is clamped at 0.

    An in-place ReLU gets a copy of its input, so the hooked tensor keeps its values.
    """

    def before_relu(module: nn.ReLU, args: tuple) -> tuple | None:
        x = args[0]
        if not (isinstance(x, torch.Tensor) and x.requires_grad):
            return None
        x.register_hook(lambda grad: grad.clamp(min=0))
        return (x.clone(), *args[1:]) if module.inplace else None

    handles = [m.register_forward_pre_hook(before_relu) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _neuron(target: Any) -> tuple[str, int | torch.Tensor, str] | None:
    """``(layer, channel, reduction)`` of a neuron target, None for any other target; ``channel`` is an
    int or a 1-d tensor with one channel per example."""
    if not (isinstance(target, tuple) and target and isinstance(target[0], str)):
        return None
    channel = target[1] if len(target) in (2, 3) else None
    if not isinstance(channel, Integral):
        channel = _channel_per_example(channel)
    if channel is None:
        raise ValueError(f"a neuron target is (layer, channel or channels[, reduction]), not {target!r}")
    reduction = target[2] if len(target) == 3 else "sum"
    if reduction not in NEURON_REDUCTIONS:
        raise unknown("neuron reduction", reduction, NEURON_REDUCTIONS)
    return target[0], channel if isinstance(channel, torch.Tensor) else int(channel), reduction


def _channel_per_example(channels: Any) -> torch.Tensor | None:
    """A list or 1-d integer tensor of channels as a tensor; None for anything else."""
    if isinstance(channels, list) and channels and all(isinstance(c, Integral) for c in channels):
        return torch.tensor(channels)
    if isinstance(channels, torch.Tensor) and channels.ndim == 1 and not channels.is_floating_point():
        return channels
    return None


def _neuron_values(
    layer: str, outputs: list[torch.Tensor], channel: int | torch.Tensor, reduction: str
) -> torch.Tensor:
    """Per example: the sum or the maximum of channel ``channel`` (or of its own channel, one per
    example) of the layer's single output."""
    if len(outputs) != 1:
        raise ValueError(f"layer {layer!r} ran {len(outputs)} times in one forward pass; it must run once")
    if not isinstance(outputs[0], torch.Tensor):
        raise TypeError(f"layer {layer!r} returns {type(outputs[0]).__name__}, not a tensor")
    output, n = outputs[0], len(outputs[0])
    if isinstance(channel, torch.Tensor):
        if len(channel) != n:
            raise ValueError(f"{len(channel)} neuron channels for {n} examples")
        selected = output[torch.arange(n, device=output.device), channel.to(output.device)]
    else:
        selected = output[:, channel]
    values = selected.reshape(n, -1)
    return values.sum(dim=1) if reduction == "sum" else values.amax(dim=1)


def _select(output: torch.Tensor, target: Any) -> torch.Tensor:
    """One output value per example, chosen by a class-style ``target`` (see the module docstring)."""
    n = len(output)
    if target is None:
        selected = output
    elif isinstance(target, Integral) or (isinstance(target, torch.Tensor) and target.numel() == 1):
        selected = output[:, int(target)]
    elif isinstance(target, tuple):
        selected = output[(slice(None), *target)]
    elif isinstance(target, (list, torch.Tensor)):
        if len(target) != n:
            raise ValueError(f"{len(target)} targets for {n} examples")
        if all(isinstance(t, tuple) for t in target):
            selected = torch.stack([output[(i, *t)] for i, t in enumerate(target)])
        else:
            selected = output[torch.arange(n), torch.as_tensor(target, device=output.device)]
    else:
        raise TypeError(f"target must be None, int, tuple, list or tensor, not {type(target).__name__}")
    if selected.numel() != n:
        raise ValueError(
            f"target {target!r} selects {selected.numel()} values from outputs of shape "
            f"{tuple(output.shape)}; it must select one per example"
        )
    return selected


SIDE_BY_SIDE_PAIRS = 5  # up to this many examples to a row: (image, attribution) pairs side by side


def plot_attributions(
    images: Any,
    attributions: Any,
    titles: Sequence[str] | None = None,
    title: str = "Attributions",
    per_row: int = 4,
    row_titles: Sequence[str] | None = None,
) -> Figure:
    """Each example's input image and its attribution, min-max scaled to [0, 1] per image, ``per_row``
    examples to a row of the figure (a grid, not one tall column).

    Up to :data:`SIDE_BY_SIDE_PAIRS` examples to a row, each attribution sits right of its image; with
    more, each row of images gets a row of attributions below it, so the panels stay large enough to
    read at page width. ``images`` and ``attributions`` are batches (tensors or arrays) laid out
    N x C x H x W, N x H x W x C or N x H x W with 1 or 3 channels. uint8 images are divided by 255;
    float images are shown as they are when within [0, 1], else min-max scaled per image.
    ``titles`` names the examples, ``row_titles`` the rows of examples (e.g. the neuron of each row).
    """
    pictures, maps = _as_nhwc(images), _as_nhwc(attributions)
    if len(pictures) != len(maps):
        raise ValueError(f"{len(pictures)} images but {len(maps)} attributions")
    if titles is not None and len(titles) != len(pictures):
        raise ValueError(f"{len(titles)} titles for {len(pictures)} images")
    per_row = max(1, min(per_row, len(pictures)))
    rows = -(-len(pictures) // per_row)
    if row_titles is not None and len(row_titles) != rows:
        raise ValueError(f"{len(row_titles)} row titles for {rows} rows")
    if np.issubdtype(pictures.dtype, np.integer):
        pictures = pictures / 255.0
    stacked = per_row > SIDE_BY_SIDE_PAIRS
    if stacked:  # grid row 2r: images, 2r + 1: their attributions
        fig = Figure(figsize=(1.05 * per_row + 0.5, 2.2 * rows + 0.5), layout="constrained")
        axes = fig.subplots(2 * rows, per_row, squeeze=False)
        places = [((2 * (i // per_row), i % per_row), (2 * (i // per_row) + 1, i % per_row))
                  for i in range(rows * per_row)]
    else:
        fig = Figure(figsize=(2.6 * per_row + 0.4, 1.45 * rows + 0.5), layout="constrained")
        axes = fig.subplots(rows, 2 * per_row, squeeze=False)
        places = [((i // per_row, 2 * (i % per_row)), (i // per_row, 2 * (i % per_row) + 1))
                  for i in range(rows * per_row)]
    for image_at, attribution_at in places[len(pictures):]:
        axes[image_at].set_axis_off()
        axes[attribution_at].set_axis_off()
    for i, (picture, attribution) in enumerate(zip(pictures, maps, strict=True)):
        picture = picture.astype(np.float64)
        if picture.min() < 0 or picture.max() > 1:
            picture = _min_max(picture)
        image_at, attribution_at = places[i]
        _panel(axes[image_at], picture, titles[i] if titles is not None else "input")
        _panel(axes[attribution_at], _min_max(attribution.astype(np.float64)), "" if stacked else "attribution")
    for r, name in enumerate(row_titles or []):
        axes[places[r * per_row][0][0], 0].set_ylabel(name, fontsize=8)
    if stacked:
        for r in range(rows):
            axes[2 * r + 1, 0].set_ylabel("attribution", fontsize=8)
    fig.suptitle(title)
    return fig


def _panel(ax: Any, shown: np.ndarray, name: str) -> None:
    """An H x W x C image in [0, 1] on ``ax``, gray when it has one channel; no ticks, no frame."""
    gray = shown.shape[-1] == 1
    ax.imshow(shown[..., 0] if gray else shown, cmap="gray" if gray else None, vmin=0, vmax=1)
    ax.set_title(name, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _as_nhwc(batch: Any) -> np.ndarray:
    """A batch of 1- or 3-channel images as an N x H x W x C array."""
    array = batch.detach().cpu().numpy() if isinstance(batch, torch.Tensor) else np.asarray(batch)
    if array.ndim == 3:
        return array[..., None]
    if array.ndim == 4 and array.shape[1] in (1, 3):
        return array.transpose(0, 2, 3, 1)
    if array.ndim == 4 and array.shape[-1] in (1, 3):
        return array
    raise ValueError(
        f"images must be N x C x H x W, N x H x W x C or N x H x W with 1 or 3 channels, got {array.shape}"
    )


def _min_max(array: np.ndarray) -> np.ndarray:
    """``array`` scaled linearly to [0, 1]; all zeros when it is constant."""
    low, span = array.min(), array.max() - array.min()
    return (array - low) / span if span > 0 else np.zeros_like(array)
