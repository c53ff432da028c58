"""Translation and rotation equivariance of a network's feature maps.

A layer ``f`` is equivariant to a transform ``T`` when ``f(T(x)) == T'(f(x))``: convolutions are
(up to their borders) equivariant to shifts, not to rotations. :func:`equivariance` measures the
difference layer by layer; :func:`plot_equivariance` draws it.

For a shift, ``T'`` shifts the feature map by the input shift divided by the layer's cumulative
stride: the nearest integer of input size / feature size (so a convolution without padding, which
only trims a border, counts as stride 1). Layers whose cumulative stride does not divide the shift
are skipped, with the reason in ``EquivarianceResult.skipped``. For a rotation ``T'`` rotates the
feature map by the same angle.

:func:`shared_conv` makes report 002's probe: one freshly initialised 3x3 convolution applied twice
(the same weights both times), a ReLU after each; the report measured that, not a trained network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from trainlab.capture import capture, check_layers
from trainlab.errors import UserError, unknown

TRANSFORMS = ("shift", "rotate")
DEFAULT_AMOUNT = {"shift": 4, "rotate": 1}
EQUIVARIANCE_COLUMNS = ["layer", "transform", "amount", "error", "relative_error", "relative_error_unfilled"]


def shift(x: torch.Tensor, dy: int, dx: int, circular: bool = False) -> torch.Tensor:
    """``x`` (..., H, W) moved ``dy`` rows down and ``dx`` columns right.

    Pixels moved out are lost and zeros come in, or with ``circular`` they wrap around (``torch.roll``).
    """
    if circular:
        return torch.roll(x, (dy, dx), dims=(-2, -1))
    height, width = x.shape[-2:]
    out = torch.zeros_like(x)
    if abs(dy) < height and abs(dx) < width:
        out[..., max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = x[
            ..., max(-dy, 0) : height - max(dy, 0), max(-dx, 0) : width - max(dx, 0)
        ]
    return out


def rotate(x: torch.Tensor, quarter_turns: float) -> torch.Tensor:
    """``x`` (..., H, W) rotated counter-clockwise by ``quarter_turns`` x 90 degrees.

    Whole quarter turns are exact (``torch.rot90``); other amounts (0.5 is 45 degrees) rotate about
    the centre with bilinear interpolation, keeping the size and filling the corners with zeros.
    """
    if float(quarter_turns).is_integer():
        return torch.rot90(x, int(quarter_turns), dims=(-2, -1))
    return TF.rotate(x, 90.0 * quarter_turns, interpolation=InterpolationMode.BILINEAR)


SHARED_CONV_LAYERS = ("act1", "act2")  # the outputs of the first and the second application


class SharedConv(nn.Module):
    """One ``kernel`` x ``kernel`` convolution (``channels`` in and out, no padding) applied twice with
    the same weights, a ReLU after each application: modules ``conv``, ``act1`` and ``act2``."""

    def __init__(self, channels: int = 1, kernel: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel)
        self.act1, self.act2 = nn.ReLU(), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act2(self.conv(self.act1(self.conv(x))))


def shared_conv(channels: int = 1, seed: int = 0) -> SharedConv:
    """A :class:`SharedConv` in eval mode, initialised as torch does from ``seed`` (the global random
    state is left as it was); measure it at :data:`SHARED_CONV_LAYERS`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SharedConv(channels).eval()


@dataclass
class EquivarianceResult:
    """What :func:`equivariance` measured.

    ``frame``: one row per compared layer (``EQUIVARIANCE_COLUMNS``): ``error`` is the mean
    |f(T(x)) - T'(f(x))|, ``relative_error`` that divided by the mean |f(x)|, ``relative_error_unfilled``
    the same over the positions that the zeros a shift brings in do not reach (every position for a
    rotation or a circular shift; NaN when the zeros reach every position).
    ``maps``: per layer, the H x W mean of |f(T(x)) - T'(f(x))| over examples and channels.
    ``features``: per layer, the first example's C x H x W ``(f(T(x)), T'(f(x)))``.
    ``skipped``: layers not compared, with the reason.
    """

    transform: str
    amount: Any
    circular: bool
    frame: pd.DataFrame
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    features: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def equivariance(
    model: nn.Module,
    inputs: torch.Tensor,
    transform: str = "shift",
    amount: Any = None,
    layers: Sequence[str] | None = None,
    circular: bool = False,
    stride: int | None = None,
) -> EquivarianceResult:
    """Compare each layer's features of transformed ``inputs`` (N x C x H x W) with its transformed features.

    ``transform`` is ``"shift"`` (``amount``: rows and columns ``(dy, dx)``, or one int for both;
    default 4; ``circular`` wraps around instead of filling zeros) or ``"rotate"`` (``amount``:
    quarter turns counter-clockwise, default 1). ``layers`` names modules of
    ``model.named_modules()``; by default every ``nn.Conv2d``. ``stride``: the cumulative stride of
    every compared layer when known (1 for :class:`SharedConv`); by default estimated per layer from
    its size (module docstring). The model runs in eval mode without gradients, only as far as the
    last of those layers; its modes are restored and its hooks removed.
    """
    if transform not in TRANSFORMS:
        raise unknown("transform", transform, TRANSFORMS)
    amount = DEFAULT_AMOUNT[transform] if amount is None else amount
    names = _layer_names(model, layers)
    loud_runs: list[dict[str, torch.Tensor]] = []
    if transform == "shift":
        dy, dx = _shift_amount(amount)
        moved_inputs = shift(inputs, dy, dx, circular)
        if not circular:  # loud values (of both signs) where zeros came in: the positions that change are reached
            band = shift(torch.ones_like(inputs[:1]), dy, dx) == 0
            loud = 1e3 * (1 + inputs.abs().max())
            loud_runs = [_features(model, torch.where(band, sign * loud, moved_inputs), names) for sign in (1, -1)]
    else:
        moved_inputs = rotate(inputs, amount)
    plain, moved = _features(model, inputs.clone(), names), _features(model, moved_inputs, names)
    rows: list[tuple] = []
    maps: dict[str, torch.Tensor] = {}
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    skipped: dict[str, str] = {}
    for name in names:
        if name not in plain or name not in moved:
            skipped[name] = "did not run in the forward pass"
            continue
        features, actual = plain[name], moved[name]
        if features.ndim != 4:
            skipped[name] = f"output of shape {tuple(features.shape)} is not N x C x H x W"
            continue
        if transform == "rotate":
            expected = rotate(features, amount)
        else:
            strides = _strides(inputs, features, stride)
            if dy % strides[0] or dx % strides[1]:
                skipped[name] = (
                    f"its cumulative stride {strides[0]}x{strides[1]} does not divide the shift ({dy}, {dx})"
                )
                continue
            expected = shift(features, dy // strides[0], dx // strides[1], circular)
        if actual.shape != expected.shape:
            skipped[name] = (
                f"transformed input gives shape {tuple(actual.shape)}, "
                f"transformed features {tuple(expected.shape)}"
            )
            continue
        difference = (actual - expected).abs()
        error, scale = difference.mean(), features.abs().mean()
        unfilled = difference
        if loud_runs:  # also leave out the band that the shifted features bring in as zeros
            untouched = shift(torch.ones_like(features[:1, :1]), dy // strides[0], dx // strides[1])[0, 0] != 0
            for run in loud_runs:
                untouched &= ((run[name] - actual).abs() <= 1e-4 * (1 + actual.abs())).all(dim=0).all(dim=0)
            unfilled = difference[..., untouched]
        rows.append((name, transform, amount, error.item(), (error / scale).item(),
                     (unfilled.mean() / scale).item() if unfilled.numel() else math.nan))
        maps[name] = difference.mean(dim=(0, 1))
        pairs[name] = (actual[0], expected[0])
    frame = pd.DataFrame(rows, columns=EQUIVARIANCE_COLUMNS)
    return EquivarianceResult(transform, amount, circular, frame, maps, pairs, skipped)


def _layer_names(model: nn.Module, layers: Sequence[str] | None) -> list[str]:
    """The named layers, checked, or every ``nn.Conv2d`` of ``model``."""
    if layers is None:
        names = [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
        if not names:
            raise UserError("the model has no nn.Conv2d layers; name the layers to compare with layers=[...]")
        return names
    check_layers(model, layers)
    return list(dict.fromkeys(layers))


def _shift_amount(amount: Any) -> tuple[int, int]:
    """``(dy, dx)`` of a shift amount: one int for both, or a pair of ints."""
    pair = (amount, amount) if isinstance(amount, int) else tuple(amount)
    if len(pair) != 2 or not all(isinstance(n, int) for n in pair):
        raise ValueError(f"a shift amount is an int or a pair of ints (dy, dx), got {amount!r}")
    return pair


def default_shift(model: nn.Module, inputs: torch.Tensor, layers: Sequence[str] | None = None) -> int:
    """The shift the analyses take when none is chosen: an eighth of the width (at least 1 pixel), raised
    to a multiple of the smallest cumulative stride among ``layers`` (default: every conv), so that a
    network whose first conv has stride 2 still has a layer to compare."""
    base = max(1, inputs.shape[-1] // 8)
    features = _features(model, inputs, _layer_names(model, layers)).values()
    step = min((math.lcm(*_strides(inputs, f)) for f in features if f.ndim == 4), default=1)
    return -(-base // step) * step


def _strides(inputs: torch.Tensor, features: torch.Tensor, stride: int | None = None) -> list[int]:
    """A layer's cumulative stride per axis: ``stride`` when known, else estimated from its size."""
    sizes = zip(inputs.shape[-2:], features.shape[-2:], strict=True)
    return [stride or max(1, round(size / feature_size)) for size, feature_size in sizes]


def _features(model: nn.Module, x: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    """Each named layer's first output for ``x``; the model runs in eval mode, without gradients,
    as far as the last of them."""
    with torch.no_grad(), capture(model, names, stop=True, eval_mode=True, hand_on_copy=True) as seen:
        seen.run(x)
    return {name: outputs[0] for name, outputs in seen.items() if outputs}


def plot_equivariance(result: EquivarianceResult, image: Any = None, channel: int | None = None) -> Figure:
    """Per compared layer: features of the transformed input, transformed features, mean |difference|.

    Features are the first example's, averaged over channels or only ``channel``. ``image``, one
    input (C x H x W or H x W, float or uint8), adds a first row with it and its transform.
    """
    names = list(result.maps)
    rows = len(names) + (image is not None)
    if rows == 0:
        raise ValueError("the result has no compared layers to plot")
    fig = Figure(figsize=(9, 2.8 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, 3, squeeze=False)
    if image is not None:
        _plot_image_row(axes[0], result, image)
    for ax_row, name in zip(axes[rows - len(names) :], names, strict=True):
        pair = [f if channel is None else f[channel : channel + 1] for f in result.features[name]]
        actual, expected = (f.float().mean(dim=0).cpu().numpy() for f in pair)
        low, high = min(actual.min(), expected.min()), max(actual.max(), expected.max())
        error = result.frame.set_index("layer").loc[name]
        unfilled = ("" if error.relative_error_unfilled == error.relative_error else
                    f";\n{error.relative_error_unfilled:.2g} where the shifted-in zeros do not reach")
        panels = [
            (actual, f"{name}: features of transformed input", "viridis", low, high),
            (expected, f"{name}: transformed features", "viridis", low, high),
            (result.maps[name].cpu().numpy(), f"mean |difference| (relative {error.relative_error:.2g}{unfilled})",
             "magma", 0, None),
        ]
        for ax, (values, title, cmap, vmin, vmax) in zip(ax_row, panels, strict=True):
            shown = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax)
            ax.set_title(title, fontsize=9)
            ax.set_axis_off()
        fig.colorbar(shown, ax=ax_row[2], shrink=0.8)
    if result.transform == "shift":
        wrap = ", circular" if result.circular else ""
        fig.suptitle(f"Equivariance to a shift by {_shift_amount(result.amount)}{wrap}")
    else:
        fig.suptitle(f"Equivariance to a rotation by {90 * result.amount:g} degrees")
    return fig


def _plot_image_row(axes: Sequence[Any], result: EquivarianceResult, image: Any) -> None:
    """The input image and the image under the result's transform; the third axis stays empty."""
    picture = image.detach().cpu() if isinstance(image, torch.Tensor) else torch.as_tensor(np.asarray(image))
    scale = 255.0 if not picture.is_floating_point() else 1.0
    picture = (picture.float() / scale).reshape(-1, *picture.shape[-2:])
    if result.transform == "shift":
        moved = shift(picture, *_shift_amount(result.amount), result.circular)
    else:
        moved = rotate(picture, result.amount)
    for ax, shown, title in [(axes[0], picture, "input"), (axes[1], moved, "transformed input")]:
        if shown.min() < 0 or shown.max() > 1:
            shown = (shown - shown.min()) / max((shown.max() - shown.min()).item(), 1e-12)
        gray = len(shown) == 1
        shown = (shown[0] if gray else shown.permute(1, 2, 0)).numpy()
        ax.imshow(shown, cmap="gray" if gray else None, vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    axes[2].set_axis_off()
