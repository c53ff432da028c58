"""First-layer convolution filters as an image grid (report 004's conv1 figure).

``plot_filters(first_conv(model)[1].weight)`` shows every kernel twice: on one global colour scale
(the raw weights, comparable across filters) and each on its own scale (the pattern of each filter).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from trainlab.errors import UserError, unknown

PAD_VALUE = 1.0  # the separators between tiles and empty cells are white
SEPARATOR = "#9ecae1"  # plot_filters draws a grayscale grid's separators in a colour no kernel can take
NORMALIZE = ("filter", "global")


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """The name and module of the first ``nn.Conv2d`` in module order; UserError when there is none."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise UserError(
        f"the model ({type(model).__name__}) has no Conv2d layer, so it has no filters to show; "
        "use a convolutional network (kind cnn, resnet or a preset such as vgg_cifar)"
    )


def _as_array(weight: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(weight, torch.Tensor):
        weight = weight.detach().cpu().double().numpy()
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 4:
        raise UserError(f"filters are a (out, in, kh, kw) weight, got shape {weight.shape}")
    return weight


def filter_grid(
    weight: torch.Tensor | np.ndarray, normalize: str = "filter", columns: int | None = None, pad: int = 1,
    pad_value: float = PAD_VALUE,
) -> np.ndarray:
    """Tile the kernels of a ``(out, in, kh, kw)`` conv weight into one float image in [0, 1].

    Returns ``(H, W, 3)`` RGB when ``in == 3`` (input channel 0 is red), otherwise ``(H, W, 1)``
    grayscale showing each kernel's mean over its input channels. ``normalize="filter"`` scales each
    kernel by its own min and max (over all its channels); ``"global"`` uses one min and max for all.
    A constant kernel (or weight) maps to 0.5. Kernels fill ``columns`` (default ``ceil(sqrt(out))``)
    per row, left to right; ``pad`` pixels of ``pad_value`` (white) surround every tile, so
    ``H = rows * (kh + pad) + pad`` and ``W = columns * (kw + pad) + pad``; unused cells are ``pad_value`` too.
    """
    if normalize not in NORMALIZE:
        raise unknown("normalize", normalize, NORMALIZE)
    w = _as_array(weight)
    n, in_channels, kh, kw = w.shape
    if columns is None:
        columns = math.ceil(math.sqrt(n))
    if columns < 1 or pad < 0:
        raise UserError(f"columns must be at least 1 and pad at least 0, got columns={columns}, pad={pad}")
    tiles = w if in_channels == 3 else w.mean(axis=1, keepdims=True)
    axes = (1, 2, 3) if normalize == "filter" else None
    lo, hi = tiles.min(axis=axes, keepdims=True), tiles.max(axis=axes, keepdims=True)
    span = hi - lo
    tiles = np.where(span > 0, (tiles - lo) / np.where(span > 0, span, 1.0), 0.5)
    tiles = tiles.transpose(0, 2, 3, 1)  # (n, kh, kw, c)
    rows = math.ceil(n / columns)
    cells = np.full((rows * columns, kh + pad, kw + pad, tiles.shape[-1]), pad_value)
    cells[:n, pad:, pad:] = tiles
    grid = cells.reshape(rows, columns, kh + pad, kw + pad, -1).transpose(0, 2, 1, 3, 4)
    grid = grid.reshape(rows * (kh + pad), columns * (kw + pad), -1)
    return np.pad(grid, ((0, pad), (0, pad), (0, 0)), constant_values=pad_value)


def _show(ax, weight: np.ndarray, normalize: str, title: str) -> None:
    """One grid; ticks number the filters: a tile's number is its row's label plus its column's."""
    import matplotlib

    n, in_channels, kh, kw = weight.shape
    columns, pad = math.ceil(math.sqrt(n)), 1
    if in_channels == 3:
        ax.imshow(filter_grid(weight, normalize, columns, pad), interpolation="nearest")
    else:  # NaN separators take the colour map's "bad" colour, so a white kernel stands out from them
        grid = filter_grid(weight, normalize, columns, pad, pad_value=np.nan)[..., 0]
        cmap = matplotlib.colormaps["gray"].with_extremes(bad=SEPARATOR)
        ax.imshow(grid, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    rows = math.ceil(n / columns)
    ax.set_xticks([pad + c * (kw + pad) + (kw - 1) / 2 for c in range(columns)], [f"+{c}" for c in range(columns)])
    ax.set_yticks([pad + r * (kh + pad) + (kh - 1) / 2 for r in range(rows)], [str(r * columns) for r in range(rows)])
    ax.tick_params(length=0, labelsize=7)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title)


def plot_filters(weight: torch.Tensor | np.ndarray, title: str = "first-layer filters") -> Figure:
    """The kernels of ``weight`` on one global scale (raw) and each on its own scale, numbered from 0
    (row label plus column label). Single-value kernels (1x1, one shown channel) get the raw grid only:
    scaled on its own, each would be the same grey."""
    w = _as_array(weight)
    single_value = w.shape[2] * w.shape[3] == 1 and w.shape[1] != 3
    fig = Figure(figsize=(5.4 if single_value else 10, 5.4), layout="constrained")
    axes = [fig.subplots()] if single_value else fig.subplots(1, 2)
    _show(axes[0], w, "global", "raw, one global scale" + (" (1x1 kernels: one value each)" if single_value else ""))
    if not single_value:
        _show(axes[1], w, "filter", "each filter normalised")
    fig.suptitle(title)
    return fig
