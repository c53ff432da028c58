"""Report figures of a study: learning curves, final metrics, gradient statistics and run time per variant.

Every function returns a ``matplotlib.figure.Figure`` (no pyplot, constrained layout) and colours a variant
with ``colours[label]``, so build the colours once with :func:`palette` and pass them to every figure.
Variants are drawn in the order given. A variant's runs (one per seed) are a list of per-run frames or
one frame; a frame with a ``run_id`` column is split into its runs.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm, to_hex
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from trainlab.errors import UserError, unknown
from trainlab.stats import MIN_CI_SEEDS, summarize

Runs = pd.DataFrame | Sequence[pd.DataFrame]

WIDTH, ROW_HEIGHT = 10.0, 4.0  # inches: a figure row readable on a laptop
SPLIT_STYLES = {"train": "--", "val": ":", "test": "-"}
LINES_PER_PANEL = 12  # learning curves: more variants x splits than this and each split gets its own panels
LEGEND_BESIDE = 12  # legend entries that fit beside a figure's axes; more go in columns below them
SEPARATE_RATIO = 10.0  # gradient_distributions: one panel per variant when value ranges differ this much
METRIC_NAMES = {"loss": "loss", "acc": "accuracy", "wall_time": "wall time", "epoch_time": "time per epoch",
                "samples_per_s": "samples/s", "lr": "learning rate"}
QUANTITY_NAMES = {"grad": "gradient", "weight": "weight", "update_ratio": "update/weight norm ratio",
                  "activation": "activation", "derivative": "activation derivative f'(z)",
                  "output_grad": "dL/dh"}
STAT_NAMES = {"norm": "L2 norm", "mean": "mean", "std": "std", "abs_mean": "mean absolute value",
              "max_abs": "max absolute value", "dead_frac": "dead fraction",
              "saturated_frac": "saturated fraction", "vanishing_frac": "fraction below 0.01",
              "min": "minimum", "max": "maximum"}


def palette(labels: Iterable[str]) -> dict[str, str]:
    """A hex colour per distinct label, by order: tab10 up to 10 variants, else tab20 (repeating after 20)."""
    unique = list(dict.fromkeys(labels))
    cmap = colormaps["tab10" if len(unique) <= 10 else "tab20"]
    return {label: to_hex(cmap(i % cmap.N)) for i, label in enumerate(unique)}


def rebin(counts: np.ndarray, edges: np.ndarray, new_edges: np.ndarray) -> np.ndarray:
    """Counts of a histogram on ``edges`` redistributed onto ``new_edges``, the density uniform within a bin.

    A zero-width bin is a point mass that goes to the new bin holding it; counts outside ``new_edges`` drop.
    """
    counts, edges, new_edges = (np.asarray(a, dtype=np.float64) for a in (counts, edges, new_edges))
    lo, hi = edges[:-1, None], edges[1:, None]
    overlap = np.clip(np.minimum(hi, new_edges[None, 1:]) - np.maximum(lo, new_edges[None, :-1]), 0.0, None)
    width = hi - lo
    share = np.divide(overlap, width, out=np.zeros_like(overlap), where=width > 0)
    points = np.flatnonzero(width[:, 0] <= 0)
    slot = np.minimum(np.searchsorted(new_edges, edges[points], side="right") - 1, len(new_edges) - 2)
    inside = (edges[points] >= new_edges[0]) & (edges[points] <= new_edges[-1])
    share[points[inside], slot[inside]] = 1.0
    return counts @ share


def learning_curves(histories_by_label: Mapping[str, Runs], colours: Mapping[str, str],
                    metrics: Sequence[str] = ("loss", "acc")) -> Figure:
    """One panel per metric (``loss``, ``acc``): per variant, the mean over seeds of each split per epoch.

    Colour is the variant, line style the split: test solid, train dashed, val dotted. With more than
    :data:`LINES_PER_PANEL` lines to a panel, each split gets a panel of its own (a row per metric, a
    column per split). The shaded band spans the minimum to the maximum across seeds (variants with
    at least two seeds). Metrics that no history has are left out.
    """
    histories = {label: _runs(runs) for label, runs in histories_by_label.items()}
    columns = {column for runs in histories.values() for h in runs for column in h}
    panels = [m for m in metrics if any(f"{s}_{m}" in columns for s in SPLIT_STYLES)]
    if not panels:
        raise UserError(f"no history has a train, val or test column for the metrics {list(metrics)}")
    splits = [s for s in SPLIT_STYLES if any(f"{s}_{m}" in columns for m in panels)]
    by_split = len(histories) * len(splits) > LINES_PER_PANEL
    fig, cells = _curve_panels(panels, splits, by_split)
    for ax, metric, shown in cells:
        _epoch_curves(ax, histories, colours, metric, shown)
        if by_split:
            ax.set_title(f"{shown[0]} {ax.get_title()}")
    styles = [] if by_split else [Line2D([], [], color="0.3", linestyle=SPLIT_STYLES[s], lw=2, label=s)
                                  for s in splits]
    _legend(fig, list(histories), colours, styles)
    fig.suptitle(f"Learning curves: mean over {_seeds(len(runs) for runs in histories.values())}, "
                 "band = min-max across seeds")
    return fig


def _curve_panels(metrics: list[str], splits: list[str], by_split: bool) -> tuple[Figure, list[tuple]]:
    """A learning-curves figure and its ``(axes, metric, splits shown)`` cells: a panel per metric in a
    row, or ``by_split`` a row per metric and a column per split."""
    if by_split:
        fig = Figure(figsize=(WIDTH, ROW_HEIGHT * len(metrics)), layout="constrained")
        grid = fig.subplots(len(metrics), len(splits), squeeze=False)
        return fig, [(grid[r, c], metric, [split]) for r, metric in enumerate(metrics) for c, split in enumerate(splits)]
    fig = Figure(figsize=(max(WIDTH, 5.0 * len(metrics)), ROW_HEIGHT), layout="constrained")
    return fig, [(ax, metric, splits) for ax, metric in zip(fig.subplots(1, len(metrics), squeeze=False)[0], metrics)]


def _epoch_curves(ax: Axes, histories: Mapping[str, list[pd.DataFrame]], colours: Mapping[str, str], metric: str,
                  splits: Sequence[str]) -> None:
    """One panel of learning curves: per variant and split, the mean over seeds of ``split_metric`` per epoch."""
    for label, runs in histories.items():
        for split in splits:
            column = f"{split}_{metric}"
            series = [h.set_index("epoch")[column].dropna() for h in runs if column in h]
            if any(len(s) for s in series):
                _mean_and_band(ax, [s for s in series if len(s)], colours[label], SPLIT_STYLES[split],
                               f"{_name(label)} {split}")
    name = METRIC_NAMES.get(metric, metric)
    ax.set(title=name, xlabel="epoch", ylabel=name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if metric == "loss":
        _log_when_wide(ax)


LOG_LOSS_SPAN = 30  # a loss panel whose plotted values span more than this factor gets a log axis


def _log_when_wide(ax: Axes) -> None:
    """A logarithmic y axis when the panel's lines are positive and span more than :data:`LOG_LOSS_SPAN`
    (one diverging variant's 48 would otherwise flatten every other curve near 0)."""
    values = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()] or [np.zeros(0)])
    values = values[np.isfinite(values)]
    if len(values) and values.min() > 0 and values.max() / values.min() > LOG_LOSS_SPAN:
        ax.set_yscale("log")
        ax.set_ylabel(f"{ax.get_ylabel()} (log scale)")


def iteration_curves(curves_by_label: Mapping[str, Runs], colours: Mapping[str, str],
                     metrics: Sequence[str] = ("train_loss", "train_acc")) -> Figure:
    """One panel per metric: per variant, the mean over seeds of the per-iteration curves against the step.

    A run's curve (:meth:`~trainlab.store.RunStore.curves`) holds the mean training loss and accuracy of
    each group of ``probes.curve_every`` steps at the group's last step. The shaded band spans the minimum
    to the maximum across seeds (variants with at least two seeds). Metrics that no curve has are left out.
    """
    curves = {label: _runs(runs) for label, runs in curves_by_label.items()}
    panels = [m for m in metrics if any(m in c for runs in curves.values() for c in runs)]
    if not panels:
        raise UserError(f"no per-iteration curve has the metrics {list(metrics)}")
    fig = Figure(figsize=(max(WIDTH, 5.0 * len(panels)), ROW_HEIGHT), layout="constrained")
    for ax, metric in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        for label, runs in curves.items():
            series = [c.set_index("step")[metric].dropna() for c in runs if metric in c]
            if any(len(s) for s in series):
                _mean_and_band(ax, [s for s in series if len(s)], colours[label], "-", _name(label))
        name = _metric_name(metric)
        ax.set(title=name, xlabel="training step", ylabel=name)
        if metric.endswith("loss"):
            _log_when_wide(ax)
    _legend(fig, list(curves), colours)
    fig.suptitle(f"Per-iteration curves: mean over {_seeds(len(runs) for runs in curves.values())}, "
                 "band = min-max across seeds")
    return fig


def final_metrics(runs: pd.DataFrame, colours: Mapping[str, str], metric: str = "test_acc") -> Figure:
    """A bar per variant at the mean ``metric`` of its finished runs (``runs``: label, status, metric),
    each seed a dot on it, and the 95% confidence interval (Student t) where it has at least
    :data:`MIN_CI_SEEDS` seeds, clipped to the metric's range (0-1 for accuracies, >= 0 for losses and
    times), as is the axis. Each tick says the variant, its mean and n.
    """
    done = runs[runs["status"] == "done"].dropna(subset=[metric])
    summary = summarize(done, [metric])
    labels = list(summary.index)
    means = summary[f"{metric}_mean"].to_numpy(np.float64)
    lowest, highest = _metric_bounds(metric)
    ci = np.where(summary["n"] >= MIN_CI_SEEDS, summary[f"{metric}_ci"], np.nan)
    below, above = means - np.clip(means - ci, lowest, None), np.clip(means + ci, None, highest) - means
    fig = Figure(figsize=(WIDTH, ROW_HEIGHT), layout="constrained")
    ax = fig.subplots()
    ax.bar(np.arange(len(labels)), means, yerr=[below, above], capsize=8,
           color=[colours[label] for label in labels], error_kw={"elinewidth": 1.5})
    numbered = _bar_ticks(ax, labels, [f"{mean:.3g}, n={n}" for mean, n in zip(means, summary["n"])])
    for i, label in enumerate(labels):
        values = done.loc[done["label"] == label, metric].to_numpy(np.float64)
        spread = np.linspace(-0.2, 0.2, len(values)) if len(values) > 1 else np.zeros(1)
        ax.plot(i + spread, values, "o", color="black", markersize=4, alpha=0.7, label="_seeds")
    shown = np.concatenate([done[metric].to_numpy(np.float64), means - below, means + above])
    shown = shown[np.isfinite(shown)]
    top, bottom = (shown.max(), min(0.0, shown.min())) if shown.size else (1.0, 0.0)
    span = top - bottom or 1.0
    ax.set_ylim(max(bottom, lowest), min(top + 0.05 * span, highest + 0.02 * span))  # room for a dot at the top
    name = _metric_name(metric)
    ax.set(title=f"Final {name}: mean (bars), seeds (dots), 95% CI ({MIN_CI_SEEDS}+ seeds)",
           xlabel="variant (mean, seeds)", ylabel=name)
    _legend(fig, labels, colours, patches=True, numbered=numbered)
    return fig


def _metric_bounds(metric: str) -> tuple[float, float]:
    """The values ``metric`` can take: 0-1 for accuracies, >= 0 for losses, times and rates."""
    if metric.endswith("acc"):
        return 0.0, 1.0
    if metric.endswith(("loss", "time", "per_s")):
        return 0.0, math.inf
    return -math.inf, math.inf


def gradient_distributions(hist_by_label: Mapping[str, Runs], colours: Mapping[str, str],
                           layer: str | None = None, quantity: str = "grad",
                           separate: bool | None = None) -> Figure:
    """Per variant, the histogram of ``layer``'s weight ``quantity`` at each run's last probed step.

    ``layer`` defaults to each variant's first layer with that quantity; variants without the layer are
    left out. A variant's runs are merged by re-binning onto edges spanning all of them, and drawn as a
    density (area 1) so variants of any size compare. ``separate`` draws one panel per variant, titled
    with it; by default it does when the largest value range (max |edge|) is at least ``SEPARATE_RATIO``
    times the smallest. Tiny or huge values are shown in a power of ten that the axis label names.
    """
    tensor = _tensor(quantity)
    drawn = {}  # label -> (layer, step, density, edges)
    for label, runs in hist_by_label.items():
        merged = _last_histogram(_runs(runs), layer, quantity, tensor)
        if merged is not None:
            drawn[label] = merged
    if not drawn:
        raise _no_layer(layer, quantity, [r for runs in hist_by_label.values() for r in _runs(runs)])
    scales = [np.abs(edges[[0, -1]]).max() for *_, edges in drawn.values()]
    if separate is None:
        separate = len(drawn) > 1 and max(scales) >= SEPARATE_RATIO * min(scales)
    panels = len(drawn) if separate else 1
    columns = 2 if panels == 4 else min(panels, 3)
    fig = Figure(figsize=(WIDTH, ROW_HEIGHT * math.ceil(panels / columns)), layout="constrained")
    axes = fig.subplots(math.ceil(panels / columns), columns, squeeze=False).ravel()
    shared = _exponent(max(scales))
    for i, (label, histogram) in enumerate(drawn.items()):
        title = None if len(drawn) > 1 and not separate else WIDTH / columns - 0.8  # its width, in inches
        _distribution(axes[i if separate else 0], label, histogram, colours[label], quantity,
                      _exponent(scales[i]) if separate else shared, title)
    for ax in axes[panels:]:
        fig.delaxes(ax)
    if len(drawn) > 1 and not separate:
        axes[0].legend()
    where = layer or "first layer"
    name = QUANTITY_NAMES.get(quantity, quantity).capitalize()
    fig.suptitle(f"{name} distribution of the {where} {tensor} at the last probed step (seeds merged)")
    return fig


def _distribution(ax: Axes, label: str, histogram: tuple[str, int, np.ndarray, np.ndarray], colour: str,
                  quantity: str, exponent: int, title_inches: float | None) -> None:
    """One variant's merged histogram on ``ax``, values in units of 10**``exponent``; titled with the
    variant, wrapped to ``title_inches``, unless None (several variants share the axes)."""
    name, step, density, edges = histogram
    ax.stairs(density * 10.0**exponent, edges / 10.0**exponent, color=colour, lw=2,
              label=f"{_name(label)} ({name}, step {step})")
    unit = f" ($\\times 10^{{{exponent}}}$)" if exponent else ""
    title = (_wrap(f"{_name(label)}: {name}, step {step}", title_inches) if title_inches
             else "all variants on one value axis")
    ax.set(title=title, xlabel=f"{QUANTITY_NAMES.get(quantity, quantity)} value{unit}",
           ylabel="density (area 1)")
    ax.xaxis.set_major_locator(MaxNLocator(max(3, min(5, round(2 * (title_inches or WIDTH)) - 2))))


def _exponent(reach: float) -> int:
    """The power of ten a value axis reaching ``reach`` is shown in, so that its ticks need no offset
    text (which collides with the axis label in narrow panels); 0 for reaches from 0.01 to 1000."""
    exponent = math.floor(math.log10(reach)) if reach > 0 else 0
    return exponent if exponent < -2 or exponent > 3 else 0


def _last_histogram(runs: list[pd.DataFrame], layer: str | None, quantity: str,
                    tensor: str) -> tuple[str, int, np.ndarray, np.ndarray] | None:
    """``(layer, step, density, edges)``: the runs' histograms at their last probed step, merged; None without one."""
    lasts = []
    for run in runs:
        rows = run[(run["quantity"] == quantity) & (run["tensor"] == tensor)]
        rows = rows[rows["layer"] == (layer or (rows["layer"].iloc[0] if len(rows) else None))]
        if len(rows):
            lasts.append(rows.iloc[rows["step"].to_numpy().argmax()])
    if not lasts:
        return None
    edges = _common_edges([r["edges"] for r in lasts], max(len(r["counts"]) for r in lasts))
    counts = sum(rebin(r["counts"], r["edges"], edges) for r in lasts)
    density = counts / (counts.sum() * np.diff(edges)) if counts.sum() > 0 else counts
    return lasts[0]["layer"], int(max(r["step"] for r in lasts)), density, edges


def layer_means(probes_by_label: Mapping[str, Runs], colours: Mapping[str, str], quantity: str = "grad",
                stat: str = "abs_mean") -> Figure:
    """Per variant, ``stat`` of each layer's ``quantity`` (of its weight; of its output for ``activation`` and
    ``output_grad``), averaged over every probed step and seed.

    x is the layer index 1..L in forward order, labelled with the layer names when all variants share
    them; y is logarithmic unless some value is not positive (e.g. ``stat="mean"``).
    """
    tensor = _tensor(quantity)
    means = {}
    for label, runs in probes_by_label.items():
        runs = [r for r in _runs(runs) if len(r)]
        if runs:
            rows = pd.concat(runs)
            rows = rows[(rows["quantity"] == quantity) & (rows["tensor"] == tensor) & (rows["stat"] == stat)]
            if len(rows):
                means[label] = rows.groupby("layer", sort=False)["value"].mean()
    if not means:
        raise UserError(f"no probe has the statistic {stat!r} of the {quantity!r} of a {tensor}; "
                        "train with probes enabled")
    fig = Figure(figsize=(WIDTH, ROW_HEIGHT), layout="constrained")
    ax = fig.subplots()
    for label, values in means.items():
        ax.plot(np.arange(1, len(values) + 1), values.to_numpy(), marker="o", lw=2, color=colours[label],
                label=_name(label))
    names = {tuple(values.index) for values in means.values()}
    longest = max(len(values) for values in means.values())
    if len(names) == 1:
        ax.set_xticks(np.arange(1, longest + 1), next(iter(names)), rotation=30, ha="right")
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if all((values > 0).all() for values in means.values()):
        ax.set_yscale("log")
    what = f"{STAT_NAMES.get(stat, stat)} of {QUANTITY_NAMES.get(quantity, quantity)}"
    ax.set(title=f"{what[0].upper()}{what[1:]} per layer (mean over probed steps and seeds)",
           xlabel="layer (forward order)", ylabel=what)
    _legend(fig, list(means), colours)
    return fig


def stat_over_time(probes_by_label: Mapping[str, Runs], colours: Mapping[str, str], layer: str,
                   quantity: str = "grad", stat: str = "norm") -> Figure:
    """Per variant, ``stat`` of ``layer``'s weight ``quantity`` against the training step.

    The line is the mean over seeds, the band the min to max across seeds; variants without the layer
    are left out. y is logarithmic unless some value is not positive.
    """
    tensor = _tensor(quantity)
    fig = Figure(figsize=(WIDTH, ROW_HEIGHT), layout="constrained")
    ax = fig.subplots()
    series_by_label = {}
    for label, runs in probes_by_label.items():
        series_by_label[label] = []
        for run in _runs(runs):
            rows = run[(run["layer"] == layer) & (run["tensor"] == tensor) & (run["quantity"] == quantity)
                       & (run["stat"] == stat)]
            if len(rows):
                series_by_label[label].append(rows.set_index("step")["value"])
    drawn, seeds = _lines_with_bands(ax, series_by_label, colours)
    if not drawn:
        raise _no_layer(layer, quantity, [r for runs in probes_by_label.values() for r in _runs(runs)])
    what = f"{STAT_NAMES.get(stat, stat)} of {QUANTITY_NAMES.get(quantity, quantity)}"
    ax.set(title=f"{what.capitalize()}, {layer}.{tensor} (mean over {_seeds(seeds)}, band = min-max)",
           xlabel="training step", ylabel=what)
    _legend(fig, drawn, colours)
    return fig


def gradient_norm_per_epoch(probe: pd.DataFrame, steps_per_epoch: int) -> pd.Series:
    """The L2 norm of all parameters' gradients together, averaged over each epoch's probed steps; index: epoch.

    At a probed step it is sqrt(sum of each parameter's squared gradient ``norm``), the norm
    ``torch.nn.utils.clip_grad_norm_`` measures; a step belongs to epoch ``step // steps_per_epoch + 1``.
    """
    norms = probe[(probe["quantity"] == "grad") & (probe["stat"] == "norm")]
    total = norms.groupby("step")["value"].apply(lambda v: float(np.sqrt(np.sum(v.to_numpy(np.float64) ** 2))))
    return total.groupby(total.index // steps_per_epoch + 1).mean().rename_axis("epoch")


def total_gradient_norm(probes_by_label: Mapping[str, Runs], colours: Mapping[str, str],
                        steps_per_epoch: Mapping[str, int]) -> Figure:
    """Per variant, :func:`gradient_norm_per_epoch` of its runs (``steps_per_epoch[label]`` steps an epoch).

    The line is the mean over seeds, the band the min to max across seeds; y is logarithmic unless some
    value is not positive. Variants without gradient norms are left out.
    """
    fig = Figure(figsize=(WIDTH, ROW_HEIGHT), layout="constrained")
    ax = fig.subplots()
    drawn, seeds = _lines_with_bands(ax, {
        label: [s for s in (gradient_norm_per_epoch(r, steps_per_epoch[label]) for r in _runs(runs)) if len(s)]
        for label, runs in probes_by_label.items()}, colours)
    if not drawn:
        raise UserError("no run has gradient norms; train with probes enabled")
    ax.set(title=f"Total gradient norm per epoch (mean over {_seeds(seeds)}, band = min-max)", xlabel="epoch",
           ylabel="L2 norm of all gradients (epoch mean)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend(fig, drawn, colours)
    return fig


def derivative_histograms(hist_by_label: Mapping[str, Runs], colours: Mapping[str, str],
                          layers: Sequence[str]) -> Figure:
    """One panel per activation layer (rows, in the order given) and variant (columns): the histogram of
    f'(z) at each run's last probed step, seeds merged, as the fraction of inputs per bin.

    Seeds are merged by re-binning onto edges spanning all of them; a recorded histogram spans
    ``[min(0, lowest), max(1, highest)]``, so sigmoid's [0, 0.25] and ReLU's {0, 1} read on one axis.
    A column's title names its variant and a row's label its layer, so the figure has no legend.
    """
    labels = list(hist_by_label)
    fig = Figure(figsize=(max(WIDTH, 3.2 * len(labels)), 2.4 * len(layers) + 1.2), layout="constrained")
    axes = fig.subplots(len(layers), len(labels), squeeze=False, sharex=True)
    for row, layer in enumerate(layers):
        for column, label in enumerate(labels):
            ax = axes[row, column]
            merged = _last_histogram(_runs(hist_by_label[label]), layer, "derivative", "input")
            if merged is None:
                ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
            else:
                _, step, density, edges = merged
                ax.stairs(density * np.diff(edges), edges, color=colours[label], lw=2, fill=True, alpha=0.6)
                ax.text(0.5, 0.97, f"step {step}", ha="center", va="top", fontsize="small", transform=ax.transAxes)
            if row == 0:
                ax.set_title(textwrap.fill(_name(label), 30), fontsize="medium")
            ax.set(xlabel="f'(z)" if row == len(layers) - 1 else "",
                   ylabel=f"{layer}\nfraction of inputs" if column == 0 else "")
    fig.suptitle("Activation derivatives f'(z) at the last probed step (seeds merged)")
    return fig


SYMLOG_SPREAD = 10  # steps' value ranges this many times apart get a symmetric-log value axis


def histograms_over_time(hists: Mapping[str, pd.DataFrame] | pd.DataFrame, layer: str, quantity: str = "grad",
                         title: str | None = None) -> Figure:
    """Histograms of ``layer``'s weight ``quantity`` at every probed step as heatmaps (x step, y value, log
    colour): one panel per run of ``hists`` (label -> one run's histograms; or a single run's frame), two
    panels a row on a shared step axis, so that variants line up step by step.

    Each probed step is a column drawn over its own edges (they follow that step's min..max), centred on
    the step and reaching halfway to its neighbours. The colour is the fraction of the step's values in a
    bin, so the shape of every step's distribution shows whatever its scale, on one colour scale for all
    panels; empty bins are left blank. When a panel's steps' ranges differ by more than
    :data:`SYMLOG_SPREAD` (a sigmoid net's gradients grow a thousandfold), its value axis is
    symmetric-log, linear within a tenth of the narrowest range, so that every step's histogram has height.
    """
    single = isinstance(hists, pd.DataFrame)
    tensor = _tensor(quantity)
    panels = {}  # label -> (fractions, edges, steps)
    for label, hist in ({"": hists} if single else hists).items():
        rows = hist[(hist["layer"] == layer) & (hist["tensor"] == tensor) & (hist["quantity"] == quantity)]
        if rows.empty:
            raise _no_layer(layer, quantity, [hist])
        rows = rows.sort_values("step")
        counts = np.stack(rows["counts"].to_numpy()).T.astype(np.float64)  # (bins, steps)
        edges = np.stack(rows["edges"].to_numpy()).T.astype(np.float64)  # (bins + 1, steps)
        panels[label] = (counts / np.maximum(counts.sum(axis=0), 1), edges, rows["step"].to_numpy(np.float64))
    positive = np.concatenate([f[f > 0] for f, _, _ in panels.values()])
    norm = LogNorm(positive.min(), max(positive.max(), positive.min() * 10)) if positive.size else None
    columns = min(len(panels), 2)
    fig = Figure(figsize=(WIDTH, ROW_HEIGHT + 0.5 if len(panels) == 1 else 0.6 + 2.8 * math.ceil(len(panels) / 2)),
                 layout="constrained")
    axes = fig.subplots(math.ceil(len(panels) / columns), columns, sharex=True, squeeze=False).ravel()
    name = QUANTITY_NAMES.get(quantity, quantity)
    for i, (ax, (label, (fractions, edges, steps))) in enumerate(zip(axes, panels.items())):
        mesh = _step_heatmap(ax, fractions, edges, steps, norm)
        ax.set_ylabel(f"{name} value" + (" (symlog)" if ax.get_yscale() == "symlog" else ""))
        if not single:
            ax.set_title(_wrap(_name(label), WIDTH / columns - 1.2))
        if i + columns >= len(panels):  # the lowest panel of its column
            ax.set_xlabel("training step")
            ax.xaxis.set_tick_params(labelbottom=True)
    for ax in axes[len(panels):]:
        fig.delaxes(ax)
    fig.colorbar(mesh, ax=list(axes[:len(panels)]), label="fraction of the step's values in a bin (log scale)")
    heading = _literal(title) if title else f"{name.capitalize()} histograms of {layer}.{tensor} over training"
    if single:
        axes[0].set_title(heading)
    else:
        fig.suptitle(heading)
    return fig


def _step_heatmap(ax: Axes, fractions: np.ndarray, edges: np.ndarray, steps: np.ndarray, norm: LogNorm | None):
    """Draw ``fractions`` (bins, steps) over each step's own ``edges`` (bins + 1, steps) on ``ax``, each step
    a column halfway to its neighbours; symmetric-log value axis when the steps' ranges differ by decades."""
    bounds = _step_bounds(steps)
    # each step is a pair of mesh columns (left, right); the zero-width quads between pairs stay masked
    x = np.broadcast_to(np.stack([bounds[:-1], bounds[1:]], axis=1).ravel(), (len(edges), 2 * len(steps)))
    y = np.repeat(edges, 2, axis=1)
    c = np.ma.masked_all((len(fractions), 2 * len(steps) - 1))
    c[:, ::2] = np.ma.masked_less_equal(fractions, 0)
    mesh = ax.pcolormesh(x, y, c, shading="flat", norm=norm, cmap="viridis")
    reach = np.abs(edges).max(axis=0)  # per step: the largest |value|
    reach = reach[reach > 0]
    if reach.size and reach.max() > SYMLOG_SPREAD * reach.min():
        linthresh = reach.min() / 10
        ax.set_yscale("symlog", linthresh=linthresh)
        limits = ax.get_ylim()
        ax.set_yticks([t for t in ax.get_yticks() if t == 0 or abs(t) >= 10 * linthresh])  # none crowding 0
        ax.set_ylim(limits)
    else:
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    return mesh


def runtime(runs: pd.DataFrame, colours: Mapping[str, str], flops: Mapping[str, float] | None = None) -> Figure:
    """A bar per variant at the mean over its runs of each run's median epoch time (``runs``: label,
    epoch_time), each run a dot; under each bar its training FLOPs per sample (``flops``, by label)
    where given. The median ignores an epoch slowed by a passing load; FLOPs say what the time buys.
    """
    runs = runs.dropna(subset=["epoch_time"])
    labels = list(dict.fromkeys(runs["label"]))
    groups = runs.groupby("label", sort=False)["epoch_time"]
    fig = Figure(figsize=(WIDTH, ROW_HEIGHT), layout="constrained")
    ax = fig.subplots()
    ax.bar(np.arange(len(labels)), groups.mean()[labels].to_numpy(), color=[colours[label] for label in labels])
    for i, label in enumerate(labels):
        values = groups.get_group(label).to_numpy(np.float64)
        ax.plot(i + (np.linspace(-0.2, 0.2, len(values)) if len(values) > 1 else 0), values, "o", color="black",
                markersize=4, alpha=0.7, label="_seeds")
    notes = [f"{flops[label] / 1e6:.3g}" for label in labels] if flops else None  # the unit in the axis label
    numbered = _bar_ticks(ax, labels, notes)
    ax.set_ylim(0, None)
    ax.set(title="Median epoch time per run: mean over seeds (bars), each run (dots)",
           xlabel="variant" + (" (under it: training MFLOP per sample)" if flops else ""), ylabel="epoch time (s)")
    _legend(fig, labels, colours, patches=True, numbered=numbered)
    return fig


FIGURE_EDGE = "(the figure's edge)"


def overlapping_texts(fig: Figure) -> list[tuple[str, str]]:
    """The pairs of texts of ``fig`` (titles, labels, drawn tick labels, legend entries, annotations)
    whose boxes, drawn, overlap or come closer than 2 pixels side by side or one above the other, and
    each text cut by the figure's edge paired with :data:`FIGURE_EDGE`: a layout check. An x and a y
    tick label of one axes may meet at its corner."""
    boxes = _drawn_texts(fig)
    edge = fig.bbox.expanded(1 + 2 / fig.bbox.width, 1 + 2 / fig.bbox.height)  # a pixel of slack each side
    pairs = [(text, FIGURE_EDGE) for text, box, _ in boxes if Bbox.union([box, edge]).bounds != edge.bounds]
    for i, (text, box, tick) in enumerate(boxes):
        for other, other_box, other_tick in boxes[i + 1:]:
            if tick and other_tick and tick[0] == other_tick[0] and tick[1] != other_tick[1]:
                continue  # the x and y tick labels at an axes' corner
            width = min(box.x1, other_box.x1) - max(box.x0, other_box.x0)
            height = min(box.y1, other_box.y1) - max(box.y0, other_box.y0)
            if (width > -2 and height > 0) or (width > 0 and height > -2):
                pairs.append((text, other))
    return pairs


def _drawn_texts(fig: Figure) -> list[tuple[str, Bbox, tuple[int, str] | None]]:
    """Each non-empty text ``fig`` draws: its string, its box in pixels and, for a tick label, the id of
    its axes and ``x`` or ``y`` (tick labels outside the view are not drawn, so left out)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.draw_without_rendering()
    ticks, drawn = set(), []
    for ax in fig.axes:
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            low, high = sorted(axis.get_view_interval())
            slack = 1e-9 * (high - low)
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                ticks.update((id(tick.label1), id(tick.label2)))
                if low - slack <= tick.get_loc() <= high + slack:
                    drawn += [(label, (id(ax), name)) for label in (tick.label1, tick.label2) if label.get_visible()]
    drawn += [(t, None) for t in fig.findobj(Text) if id(t) not in ticks and t.get_visible()]
    renderer = fig.canvas.get_renderer()
    return [(t.get_text(), t.get_window_extent(renderer), tick) for t, tick in drawn if t.get_text().strip()]


# ---------------------------------------------------------------------- helpers
def _name(label: str) -> str:
    """A variant's display name, drawn as written: a study without variants has the label ``""``."""
    return _literal(label or "base")


def _wrap(text: str, inches: float, points: float = 12.0) -> str:
    """``text`` broken into lines that fit ``inches`` at a font of ``points`` (a character is taken as
    0.65 em wide), after spaces, commas and ``=`` signs (``activation=`` / ``leaky_relu``)."""
    width = max(8, int(inches * 72 / (0.7 * points)) - 1)
    lines = [""]
    for piece in re.findall(r"[^ ,=]*[,=]?\s*", text):
        if lines[-1] and len(lines[-1] + piece.rstrip()) > width:
            lines.append("")
        lines[-1] += piece
    return "\n".join(line.strip() for line in lines)


def _bar_ticks(ax: Axes, labels: Sequence[str], notes: Sequence[str] | None = None) -> bool:
    """Variant names (each with its note) under the bars of ``ax``, wrapped to the bar's share of the
    axes (less the legend's width when it sits beside them, :func:`_legend_below`); where a name would take more than three lines,
    the bars are numbered instead and True returned: the legend then numbers them too. Many bars get a
    smaller font (down to 6 points), and where even that leaves no room for 8 characters a bar, the
    labels stand on end (two lines to a bar)."""
    names = [_name(label) for label in labels]
    legend = _legend_width(names) if len(labels) > 1 and not _legend_below(names) else 0.0
    share = (72 * WIDTH - 70 - legend) / max(1, len(labels))  # points of axes width per bar (70: the y axis)
    points = min(10.0, max(6.0, share / (0.7 * 9)))
    upright = share >= 0.7 * points * 8
    names = [_wrap(name, share / 72, points) for name in names]
    numbered = not upright or max(name.count("\n") for name in names) >= 3
    if numbered:
        names = [f"{i}" for i in range(1, len(labels) + 1)]
    if notes:
        names = [f"{name}\n{_wrap(note, share / 72, points) if upright else note}" for name, note in zip(names, notes)]
    if not upright:  # on end, a label's lines stand side by side: two of them fit the bar's share
        points = max(6.0, min(9.0, share / 2.6))
    ax.set_xticks(np.arange(len(labels)), names, fontsize=points, rotation=0 if upright else 90)
    return numbered


def _literal(text: str) -> str:
    """``text`` with its dollar signs escaped, so that matplotlib draws it as written, never as math."""
    return text.replace("$", r"\$")


def _metric_name(metric: str) -> str:
    """``test_acc`` -> ``test accuracy``."""
    split, _, kind = metric.partition("_")
    if split in SPLIT_STYLES and kind in METRIC_NAMES:
        return f"{split} {METRIC_NAMES[kind]}"
    return METRIC_NAMES.get(metric, metric.replace("_", " "))


def _tensor(quantity: str) -> str:
    """The tensor a quantity is measured on: a layer's ``output`` for activations and dL/dh, its ``input``
    for activation derivatives, else its ``weight``."""
    return {"activation": "output", "output_grad": "output", "derivative": "input"}.get(quantity, "weight")


def _runs(runs: Runs) -> list[pd.DataFrame]:
    """A variant's runs as a list of frames (a frame with a ``run_id`` column is split into its runs)."""
    if isinstance(runs, pd.DataFrame):
        return [run for _, run in runs.groupby("run_id", sort=False)] if "run_id" in runs else [runs]
    return list(runs)


def _no_layer(layer: str | None, quantity: str, frames: list[pd.DataFrame]) -> UserError:
    """The error for a layer (or, with ``layer=None``, any layer) that has no ``quantity`` data."""
    layers = {name for f in frames if len(f) for name in f.loc[f["quantity"] == quantity, "layer"]}
    if layer is None or not layers:
        return UserError(f"no run has {quantity!r} probe data{f' for layer {layer!r}' if layer else ''}; "
                         "train with probes (and histograms) enabled")
    return unknown(f"layer with {quantity!r} data", layer, layers)


def _seeds(counts: Iterable[int]) -> str:
    """How many seeds stand behind each variant's line: "2 seeds", or "2-5 seeds" when variants differ."""
    counts = sorted(int(c) for c in counts)
    if not counts:
        return "seeds"
    low, high = counts[0], counts[-1]
    span = f"{low}" if low == high else f"{low}-{high}"
    return f"{span} seed{'' if span == '1' else 's'}"


def _lines_with_bands(ax: Axes, series_by_label: Mapping[str, list[pd.Series]],
                      colours: Mapping[str, str]) -> tuple[list[str], list[int]]:
    """:func:`_mean_and_band` of each variant that has series; y logarithmic when every value is positive.

    Returns the variants drawn and their numbers of seeds.
    """
    drawn = [label for label, series in series_by_label.items() if series]
    for label in drawn:
        _mean_and_band(ax, series_by_label[label], colours[label], "-", _name(label))
    if drawn and all((s > 0).all() for label in drawn for s in series_by_label[label]):
        ax.set_yscale("log")
    return drawn, [len(series_by_label[label]) for label in drawn]


def _mean_and_band(ax: Axes, series: list[pd.Series], colour: str, style: str, label: str) -> None:
    """The mean of ``series`` (one per seed, indexed by x) per x as a line; min..max as a band (2+ seeds)."""
    table = pd.concat(series, axis=1, keys=range(len(series))).sort_index()
    x = table.index.to_numpy(np.float64)
    ax.plot(x, table.mean(axis=1).to_numpy(), color=colour, linestyle=style, lw=2, label=label)
    if len(series) >= 2:
        ax.fill_between(x, table.min(axis=1).to_numpy(), table.max(axis=1).to_numpy(), color=colour,
                        alpha=0.15, lw=0)


def _legend(fig: Figure, labels: list[str], colours: Mapping[str, str], extra: Sequence[Line2D] = (),
            patches: bool = False, numbered: bool = False) -> None:
    """A figure legend of the variants' colours (when more than one), numbered as their bars are when
    ``numbered``, followed by ``extra`` entries."""
    handles = []
    if len(labels) > 1:
        names = [f"{i}: {_name(label)}" if numbered else _name(label) for i, label in enumerate(labels, start=1)]
        handles = [Patch(color=colours[label], label=name) if patches
                   else Line2D([], [], color=colours[label], lw=3, label=name) for label, name in zip(labels, names)]
    handles += extra
    names = [h.get_label() for h in handles]
    if _legend_below(names):  # too tall or too wide beside the axes: in columns below them, the figure grown to fit
        columns = min(4, math.ceil(len(handles) / LEGEND_BESIDE), max(1, int(72 * WIDTH // _legend_width(names))))
        fig.set_figheight(fig.get_figheight() + 0.25 * math.ceil(len(handles) / columns))
        fig.legend(handles=handles, loc="outside lower center", ncols=columns)
    elif handles:  # centred: clear of the figure's title row
        fig.legend(handles=handles, loc="outside center right")


def _legend_width(names: Sequence[str]) -> float:
    """About how many points a legend of ``names`` takes beside the axes (10-point text and its handles)."""
    return 0.6 * 10 * max(map(len, names), default=0) + 40


def _legend_below(names: Sequence[str]) -> bool:
    """Whether a legend of ``names`` goes below the axes: too many entries, or wider than 40% of a figure."""
    return len(names) > LEGEND_BESIDE or _legend_width(names) > 0.4 * 72 * WIDTH


def _common_edges(edges: list[np.ndarray], bins: int) -> np.ndarray:
    """``bins`` equal bins spanning every histogram's range (widened around a single point)."""
    lo, hi = min(float(e[0]) for e in edges), max(float(e[-1]) for e in edges)
    if hi <= lo:
        lo, hi = lo - 0.5 * (abs(lo) or 1.0), hi + 0.5 * (abs(hi) or 1.0)
    return np.linspace(lo, hi, bins + 1)


def _step_bounds(steps: np.ndarray) -> np.ndarray:
    """Column boundaries around each step: halfway to the neighbours, ends mirrored (±0.5 for one step)."""
    if len(steps) == 1:
        return np.array([steps[0] - 0.5, steps[0] + 0.5])
    middle = (steps[1:] + steps[:-1]) / 2
    return np.concatenate([[2 * steps[0] - middle[0]], middle, [2 * steps[-1] - middle[-1]]])
