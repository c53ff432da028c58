"""Receptive fields of a plain conv chain and the image patches that excite chosen channels the most.

Report 004's "interesting neurons"::

    table = top_activations(model, "act4", data.test.x, data.mean, data.std, channels=None, k=9)
    plot_neurons(data.test.x, table, interesting_channels(table, 10))

Coordinates are pixel indices of the input image: pixel ``(y, x)`` has its centre at ``(y, x)``.
Boxes are half-open ``(top, left, bottom, right)``, clipped to the image. The geometric box ignores
what a circular or reflecting ``padding_mode`` wraps in from the far side of the image.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from trainlab.capture import capture
from trainlab.data import to_float
from trainlab.errors import UserError, did_you_mean, unknown
from trainlab.models.activations import Maxout

FIELD_COLUMNS = [
    "layer", "type", "size_h", "size_w", "jump_h", "jump_w", "start_h", "start_w", "out_h", "out_w"
]
TOP_COLUMNS = ["layer", "channel", "rank", "image", "i", "j", "value", "top", "left", "bottom", "right"]
NEURON_ROWS = ("channel", "class")  # what a row of the neurons grid shows
# element-wise activations (the identity is the cnn's "identity" activation)
ACTIVATIONS = (
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, Maxout,
)
# layers that keep every pixel where it is: normalisation, activations, dropout
ELEMENTWISE = (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm, nn.Dropout, nn.Dropout2d, *ACTIVATIONS)
POOLS = (nn.MaxPool2d, nn.AvgPool2d)
ENDS = (nn.Flatten, nn.Linear, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)  # where spatial layout ends
# what a traced forward may call between layers (torch.fx function and method names)
ELEMENTWISE_FUNCTIONS = {
    "relu", "relu_", "sigmoid", "tanh", "gelu", "silu", "elu", "selu", "leaky_relu", "softplus", "mish",
    "hardswish", "dropout", "dropout2d", "contiguous",
}
LAYOUT_ENDS = {"flatten", "view", "reshape", "adaptive_avg_pool2d", "adaptive_max_pool2d", "mean"}
SHAPE_QUERIES = {"size", "dim"}


def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _axis_geometry(module: nn.Module) -> list[tuple[int, int, int, int, bool]]:
    """Per axis (height, width): effective kernel, stride, padding before, total padding, ceil_mode."""
    kernel, stride = _pair(module.kernel_size), _pair(module.stride)
    dilation = _pair(getattr(module, "dilation", 1))
    effective = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    if module.padding == "valid":
        before, total = (0, 0), (0, 0)
    elif module.padding == "same":  # torch puts the odd pixel of an even kernel's padding after
        total = tuple(e - 1 for e in effective)
        before = tuple(t // 2 for t in total)
    else:
        before = _pair(module.padding)
        total = tuple(2 * p for p in before)
    ceil = bool(getattr(module, "ceil_mode", False))
    return list(zip(effective, stride, before, total, (ceil, ceil)))


def _out_size(n: int, kernel: int, stride: int, before: int, total: int, ceil: bool) -> int:
    """Output length of a conv or pool over ``n`` pixels, as torch computes it."""
    span = n + total - kernel
    if not ceil:
        return span // stride + 1
    out = -(-span // stride) + 1
    return out - 1 if (out - 1) * stride >= n + before else out  # the last window must start inside


def _chain(model: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """The layers of a Sequential in forward order, nested Sequentials expanded (dotted names)."""
    for name, module in model.named_children():
        if isinstance(module, nn.Sequential):
            yield from _chain(module, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", module


def _traced_chain(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """The layers of any module in the order its ``forward`` calls them, from a ``torch.fx`` trace.

    The forward must pass one tensor straight from layer to layer (shape queries aside) until the
    spatial layout ends (a flatten, view, reshape or adaptive pool). Functions between layers must
    be element-wise activations; a module called twice, a sum of branches (a residual block) or
    anything else raises UserError.
    """
    kind = type(model).__name__
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as error:  # noqa: BLE001 - any tracing failure means: not a plain chain
        raise UserError(f"receptive fields need a network torch.fx can trace; {kind} cannot be "
                        f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from None
    modules, seen, previous = dict(model.named_modules()), set(), None
    for node in graph.nodes:
        if node.op in ("placeholder", "output") or node.target in SHAPE_QUERIES:
            previous = node if node.op == "placeholder" else previous
            continue
        inputs = [n for n in node.all_input_nodes if n.target not in SHAPE_QUERIES]
        what = node.target if node.op == "call_module" else getattr(node.target, "__name__", str(node.target))
        twice = node.op == "call_module" and what in seen
        if inputs != [previous] or twice:
            raise UserError(f"receptive fields need a plain chain of conv, pool and element-wise layers; {kind}'s "
                            f"forward {'calls ' + repr(what) + ' twice' if twice else 'combines tensors'} "
                            f"at {node.name!r}")
        previous = node
        if node.op == "call_module":
            seen.add(what)
            yield node.target, modules[node.target]
        elif what in LAYOUT_ENDS:
            yield node.name, nn.Flatten()
        elif what not in ELEMENTWISE_FUNCTIONS:
            raise UserError(f"receptive fields need conv and pool layers as modules; {kind}'s forward calls "
                            f"{what!r} (use an nn module, e.g. nn.MaxPool2d for F.max_pool2d)")


def last_conv_activation(model: nn.Module) -> str:
    """The default layer to look into: the activation after the last ``nn.Conv2d``, else that conv.

    Modules are taken in ``named_modules()`` order (forward order in a Sequential); the activation
    must come before any other conv and before the spatial layout ends (flatten, linear, adaptive pool).
    """
    modules = [(name, module) for name, module in model.named_modules() if name]
    convs = [i for i, (_, module) in enumerate(modules) if isinstance(module, nn.Conv2d)]
    if not convs:
        raise UserError("the model has no nn.Conv2d layer; name the layer to look into")
    for name, module in modules[convs[-1] + 1:]:
        if isinstance(module, (nn.Conv2d, *ENDS)):
            break
        if isinstance(module, ACTIVATIONS):
            return name
    return modules[convs[-1]][0]


def receptive_fields(model: nn.Module, input_shape: Sequence[int]) -> pd.DataFrame:
    """Receptive field of each layer of a Sequential conv chain, up to its first flatten/linear layer.

    ``input_shape`` is ``(channels, height, width)`` or ``(height, width)``. One row per layer (conv,
    max/avg pool, and size-preserving layers: batch norm, activations, dropout), with the height and
    width axes tracked separately: ``size_*`` is the field's extent in input pixels (the bounding box
    for dilated kernels), ``jump_*`` the input distance between neighbouring outputs (cumulative
    stride), ``start_*`` the input coordinate of the CENTRE of output pixel 0's field (it can be
    fractional or negative), ``out_*`` the layer's output size. The recursion per axis is
    ``size += (k - 1) * jump``, ``start += ((k - 1) / 2 - pad) * jump``, ``jump *= stride`` with the
    dilated kernel ``k``. The layers are a Sequential's, nested ones expanded, or those any other
    module's forward calls in a straight chain (:func:`_traced_chain`). Anything else (a ResNet's
    residual blocks, say) raises UserError.
    """
    if len(input_shape) not in (2, 3):
        raise UserError(
            f"input_shape must be (channels, height, width) or (height, width), got {input_shape!r}"
        )
    size, jump, start, out = [1, 1], [1, 1], [0.0, 0.0], [int(n) for n in input_shape[-2:]]
    rows = []
    for name, module in _chain(model) if isinstance(model, nn.Sequential) else _traced_chain(model):
        if isinstance(module, ENDS):
            break
        if isinstance(module, (nn.Conv2d, *POOLS)):
            for axis, (kernel, stride, before, total, ceil) in enumerate(_axis_geometry(module)):
                size[axis] += (kernel - 1) * jump[axis]
                start[axis] += ((kernel - 1) / 2 - before) * jump[axis]
                out[axis] = _out_size(out[axis], kernel, stride, before, total, ceil)
                jump[axis] *= stride
            if min(out) < 1:
                raise UserError(f"layer {name!r} leaves no pixels of the {tuple(input_shape)} input")
        elif not isinstance(module, ELEMENTWISE):
            raise UserError(
                f"receptive fields need a plain chain of conv, pool and element-wise layers; layer {name!r} "
                f"is a {type(module).__name__} (a ResNet's residual blocks are not supported)"
            )
        rows.append((name, type(module).__name__, *size, *jump, *start, *out))
    return pd.DataFrame(rows, columns=FIELD_COLUMNS)


def _image_hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    return (int(image_size), int(image_size)) if np.isscalar(image_size) else tuple(image_size[-2:])


def _boxes(row, i: np.ndarray, j: np.ndarray, height: int, width: int) -> tuple[np.ndarray, ...]:
    """Clipped half-open boxes ``(top, left, bottom, right)`` of output positions ``(i, j)``."""
    top = np.rint(row["start_h"] + i * row["jump_h"] - (row["size_h"] - 1) / 2).astype(np.int64)
    left = np.rint(row["start_w"] + j * row["jump_w"] - (row["size_w"] - 1) / 2).astype(np.int64)
    return (np.clip(top, 0, height), np.clip(left, 0, width),
            np.clip(top + int(row["size_h"]), 0, height), np.clip(left + int(row["size_w"]), 0, width))


def receptive_field_box(
    fields_row, i: int, j: int, image_size: int | Sequence[int]
) -> tuple[int, int, int, int]:
    """The input box ``(top, left, bottom, right)``, half-open and clipped, under output ``(i, j)``.

    ``fields_row`` is a row of :func:`receptive_fields`; ``image_size`` is ``H`` for square images,
    ``(H, W)`` or ``(C, H, W)``.
    """
    if not (0 <= i < fields_row["out_h"] and 0 <= j < fields_row["out_w"]):
        raise UserError(
            f"output position ({i}, {j}) is outside the layer's "
            f"{fields_row['out_h']}x{fields_row['out_w']} output"
        )
    height, width = _image_hw(image_size)
    return tuple(int(v) for v in _boxes(fields_row, np.array(i), np.array(j), height, width))


def _field_row(fields: pd.DataFrame, layer: str) -> pd.Series:
    matches = fields[fields.layer == layer]
    if matches.empty:
        raise UserError(
            f"layer {layer!r} has no spatial receptive field{did_you_mean(layer, fields.layer)}; "
            f"choose one of {', '.join(fields.layer)}"
        )
    return matches.iloc[0]


def top_activations(
    model: nn.Module,
    layer: str,
    images_uint8: torch.Tensor | np.ndarray,
    mean: torch.Tensor | Sequence[float],
    std: torch.Tensor | Sequence[float],
    channels: Sequence[int] | None = None,
    k: int = 9,
    batch_size: int = 256,
) -> pd.DataFrame:
    """The ``k`` images that excite each channel of ``layer`` the most, with where and the input box.

    ``images_uint8`` are ``(N, C, H, W)`` uint8 images, normalised with ``to_float(x, mean, std)``
    and run in eval mode without gradients on the model's device in batches of ``batch_size``.
    The activation is ``layer``'s output (:func:`~trainlab.capture.capture`; later layers are skipped),
    so pass ``act{i}`` to look after the nonlinearity rather than ``conv{i}``. An image's score for a channel
    is its maximum over positions, so each image appears at most once per channel. ``channels=None``
    means all of the layer's channels. One row per (channel, rank): ``layer, channel, rank`` (0 is the
    strongest), ``image`` (index into ``images_uint8``), ``i, j`` (output position), ``value``, and the
    clipped half-open box ``top, left, bottom, right``. The model's train/eval modes are restored.
    """
    images = torch.as_tensor(images_uint8)
    if images.dtype != torch.uint8 or images.ndim != 4 or len(images) == 0:
        raise UserError(
            f"images must be a non-empty uint8 (N, C, H, W) batch, got {images.dtype} {tuple(images.shape)}"
        )
    if k < 1 or batch_size < 1:
        raise UserError(f"k and batch_size must be at least 1, got k={k}, batch_size={batch_size}")
    row = _field_row(receptive_fields(model, tuple(images.shape[1:])), layer)
    parameter = next(model.parameters(), None)
    device = torch.device("cpu") if parameter is None else parameter.device
    mean, std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
    chosen = None
    with torch.no_grad(), capture(model, [layer], stop=True, eval_mode=True) as seen:
        for first in range(0, len(images), batch_size):
            seen.run(to_float(images[first:first + batch_size].to(device), mean, std))
            y = seen[layer].pop()
            if chosen is None:
                chosen = _channels(channels, y.shape[1], layer, device)
                values = torch.empty(len(chosen), 0, device=device)
                images_ix = positions = torch.empty(len(chosen), 0, dtype=torch.long, device=device)
            # each image's maximum over positions, then the best k of (best so far + this batch)
            batch_values, batch_positions = y[:, chosen].flatten(2).max(dim=2)  # (B, K)
            batch_ix = torch.arange(first, first + len(y), device=device).expand(len(chosen), -1)
            values = torch.cat([values, batch_values.T.float()], dim=1)
            images_ix = torch.cat([images_ix, batch_ix], dim=1)
            positions = torch.cat([positions, batch_positions.T], dim=1)
            values, best = values.topk(min(k, values.shape[1]), dim=1)
            images_ix, positions = images_ix.gather(1, best), positions.gather(1, best)
    flat = torch.stack([values.double(), images_ix.double(), positions.double()]).cpu().numpy()
    count = flat.shape[2]
    values = flat[0].ravel()
    images_ix, positions = flat[1].ravel().astype(np.int64), flat[2].ravel().astype(np.int64)
    i, j = np.divmod(positions, int(row["out_w"]))
    top, left, bottom, right = _boxes(row, i, j, images.shape[2], images.shape[3])
    return pd.DataFrame({
        "layer": layer, "channel": np.repeat(chosen.cpu().numpy(), count),
        "rank": np.tile(np.arange(count), len(chosen)),
        "image": images_ix, "i": i, "j": j, "value": values,
        "top": top, "left": left, "bottom": bottom, "right": right,
    }, columns=TOP_COLUMNS)


def _channels(
    channels: Sequence[int] | None, available: int, layer: str, device: torch.device
) -> torch.Tensor:
    """The chosen channel indices as a tensor, checked against the layer's ``available`` channels."""
    if channels is None:
        return torch.arange(available, device=device)
    chosen = [int(c) for c in channels]
    if not chosen or not all(0 <= c < available for c in chosen):
        raise UserError(
            f"channels must be a non-empty list of channels 0..{available - 1} of {layer!r}, got {channels!r}"
        )
    return torch.tensor(chosen, device=device)


def interesting_channels(table: pd.DataFrame, n: int = 10) -> list[int]:
    """The ``n`` channels of a :func:`top_activations` table whose top-k activations have the highest mean.

    A channel that responds strongly to its best images is one whose patches are worth looking at;
    ties keep the lower channel first.
    """
    means = table.groupby("channel", sort=True)["value"].mean()
    return [int(c) for c in means.sort_values(ascending=False, kind="stable").index[:n]]


@torch.no_grad()
def peak_activations(
    model: nn.Module,
    layer: str,
    images_uint8: torch.Tensor,
    mean: torch.Tensor | Sequence[float],
    std: torch.Tensor | Sequence[float],
    batch_size: int = 256,
) -> torch.Tensor:
    """Each image's activation of each channel of ``layer`` at its strongest position: N x C on the CPU.

    Works on any model (no receptive fields needed): the output of ``layer`` (N x C x ... ) is reduced
    by its maximum over the positions after the channel axis. Images are normalised with ``to_float``
    and run in eval mode on the model's device; modes are restored and hooks removed.
    """
    parameter = next(model.parameters(), None)
    device = torch.device("cpu") if parameter is None else parameter.device
    mean, std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
    peaks = []
    with capture(model, [layer], stop=True, eval_mode=True) as seen:
        for first in range(0, len(images_uint8), batch_size):
            seen.run(to_float(images_uint8[first:first + batch_size].to(device), mean, std))
            output = seen[layer].pop()
            peaks.append(output.reshape(*output.shape[:2], -1).amax(dim=2).float().cpu())
    return torch.cat(peaks)


def top_activations_per_class(
    model: nn.Module,
    layer: str,
    images_uint8: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    mean: torch.Tensor | Sequence[float],
    std: torch.Tensor | Sequence[float],
    channels: Sequence[int] | None = None,
    k: int = 9,
    batch_size: int = 256,
) -> pd.DataFrame:
    """:func:`top_activations` of each class's images alone, with a ``class`` column.

    ``labels`` holds each image's class; ``image`` still indexes ``images_uint8``, and ``rank`` counts
    within the class and channel. Classes without images are left out.
    """
    images, labels = torch.as_tensor(images_uint8), torch.as_tensor(labels).cpu()
    if labels.shape != (len(images),):
        raise UserError(f"labels must hold one class per image: {tuple(labels.shape)} "
                        f"for {len(images)} images")
    tables = []
    for label in labels.unique(sorted=True).tolist():
        members = torch.nonzero(labels == label).flatten()
        table = top_activations(model, layer, images[members], mean, std, channels, k, batch_size)
        table["image"] = members.numpy()[table["image"].to_numpy()]
        tables.append(table.assign(**{"class": int(label)}))
    return pd.concat(tables, ignore_index=True)[["class", *TOP_COLUMNS]]


def class_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Per class of a :func:`top_activations_per_class` table, the rows of the channel most selective for it.

    A channel's score for class k is the mean of its top-k activations on class k's images minus the
    largest such mean on another class's images: the neuron that "gets excited by all car images"
    and less by any other class (report 004). The highest score wins, ties going to the lower
    channel; with a single class, the highest mean.
    """
    means = table.groupby(["class", "channel"])["value"].mean().unstack("channel")  # classes x channels
    rows = []
    for label in means.index:
        others = means.drop(index=label)
        score = means.loc[label] - (others.max() if len(others) else 0.0)
        channel = score.sort_index().idxmax()  # the first (lowest) channel among equal scores
        rows.append(table[(table["class"] == label) & (table.channel == channel)])
    return pd.concat(rows, ignore_index=True)


def _as_nchw(images_uint8: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(images_uint8, torch.Tensor):
        images_uint8 = images_uint8.cpu().numpy()
    return np.asarray(images_uint8)


def neuron_patches(images_uint8: torch.Tensor | np.ndarray, table: pd.DataFrame) -> list[np.ndarray]:
    """The box of each row of a :func:`top_activations` table cut out of its ``(N, C, H, W)`` image.

    Returns one ``(bottom - top, right - left, C)`` uint8 array (HWC) per row, in the table's order.
    """
    images = _as_nchw(images_uint8)
    return [
        np.ascontiguousarray(images[r.image, :, r.top:r.bottom, r.left:r.right].transpose(1, 2, 0))
        for r in table.itertuples(index=False)
    ]


def plot_neurons(
    images_uint8: torch.Tensor | np.ndarray,
    table: pd.DataFrame,
    channels: Sequence[int] | None = None,
    rows: str = "channel",
    classes: Sequence[str] | None = None,
) -> Figure:
    """Image patches of a :func:`top_activations` table, strongest first along each row.

    ``rows="channel"``: a row per channel (default: the table's channels). ``rows="class"``: a row per
    class of a table with a ``class`` column (:func:`top_activations_per_class`, :func:`class_rows`),
    holding only that class's images; ``classes`` names them.
    """
    if rows not in NEURON_ROWS:
        raise unknown("neuron rows", rows, NEURON_ROWS)
    if rows == "class":
        if "class" not in table:
            raise UserError("rows='class' needs a table with a class column (top_activations_per_class)")
        groups = [(k, part) for k, part in table.groupby("class", sort=True)]
    else:
        channels = list(dict.fromkeys(table.channel)) if channels is None else [int(c) for c in channels]
        missing = sorted(set(channels) - set(table.channel))
        if missing:
            raise UserError(f"channels {missing} are not in the table; it has {sorted(set(table.channel))}")
        groups = [(c, table[table.channel == c]) for c in channels]
    columns = max(len(part) for _, part in groups)
    layers = ", ".join(dict.fromkeys(table.layer))
    fig = Figure(figsize=(1.1 * columns + 1.2, 1.2 * len(groups) + 0.6), layout="constrained")
    axes = fig.subplots(len(groups), columns, squeeze=False)
    for axes_row, (key, part) in zip(axes, groups):
        part = part.sort_values("value", ascending=False, kind="stable")
        one_channel = part.channel.nunique() == 1
        for ax, patch, row in zip(axes_row, neuron_patches(images_uint8, part), part.itertuples()):
            if patch.shape[-1] == 1:
                ax.imshow(patch[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            else:
                ax.imshow(patch, interpolation="nearest")
            value = f"{row.value:.3g}"
            ax.set_title(value if one_channel else f"ch {row.channel}: {value}", fontsize=7)
        for ax in axes_row:
            ax.set_xticks([])
            ax.set_yticks([])
        axes_row[0].set_ylabel(_row_label(rows, key, part, layers, classes), fontsize=8)
    what = "channel" if rows == "channel" else "class"
    fig.suptitle(f"top-{columns} image patches per {what} of {layers}")
    return fig


def _row_label(rows: str, key: int, part: pd.DataFrame, layers: str, classes: Sequence[str] | None) -> str:
    """The label of a row of :func:`plot_neurons`: its channel, or its class (and channel when one)."""
    if rows == "channel":
        return f"{layers} ch {key}"
    name = classes[key] if classes is not None else f"class {key}"
    channels = part.channel.unique()
    return f"{name}\nch {channels[0]}" if len(channels) == 1 else name
