import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm, to_rgba
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from PIL import Image
from scipy import stats

from trainlab.errors import UserError
from trainlab.report.figures import (
    final_metrics, gradient_distributions, histograms_over_time, layer_means, learning_curves, palette, rebin,
    FIGURE_EDGE, LINES_PER_PANEL, LOG_LOSS_SPAN, overlapping_texts, runtime, stat_over_time,
)

LABELS = ["relu", "tanh"]
LAYERS = ["features.conv", "block.fc", "a_head"]  # forward order, deliberately not alphabetical


def _history(rng, epochs=5):
    frame = pd.DataFrame({"epoch": np.arange(1, epochs + 1)})
    for split in ("train", "val", "test"):
        frame[f"{split}_loss"] = rng.uniform(0.5, 2.0, epochs)
        frame[f"{split}_acc"] = rng.uniform(0.2, 0.9, epochs)
    return frame


def _histories(seeds=(3, 2)):
    rng = np.random.default_rng(0)
    return {label: [_history(rng) for _ in range(n)] for label, n in zip(LABELS, seeds)}


def _probes(rng, layers=LAYERS, steps=(0, 10, 20), scale=1.0):
    rows = [(step, layer, tensor, quantity, stat, scale * rng.lognormal())
            for step in steps for layer in layers for tensor in ("weight", "bias")
            for quantity in ("grad", "weight") for stat in ("norm", "abs_mean", "mean")]
    return pd.DataFrame(rows, columns=["step", "layer", "tensor", "quantity", "stat", "value"])


def _histograms(rng, layers=LAYERS, steps=(0, 10, 20), scale=1.0, bins=16):
    rows = []
    for step in steps:
        for layer in layers:
            x = rng.normal(0, scale * (1 + step / 10), 500)
            counts, edges = np.histogram(x, bins=bins, range=(x.min(), x.max()))
            rows.append((step, layer, "weight", "grad", counts.astype(np.float32), edges.astype(np.float32)))
    return pd.DataFrame(rows, columns=["step", "layer", "tensor", "quantity", "counts", "edges"])


def _finals(values=None):
    """Finished runs' test accuracy: three seeds of relu, one of tanh (no interval), a failed run."""
    values = values or {"relu": [0.80, 0.81, 0.82], "tanh": [0.74]}
    rows = [(label, seed, "done", v) for label, vs in values.items() for seed, v in enumerate(vs)]
    return pd.DataFrame(rows + [("tanh", 9, "failed", 0.1)], columns=["label", "seed", "status", "test_acc"])


def _runs():
    return pd.DataFrame({
        "run_id": ["a", "b", "c", "d", "e"], "label": ["relu", "relu", "relu", "tanh", "tanh"],
        "seed": [0, 1, 2, 0, 1], "status": ["done"] * 5,
        "wall_time": [10.0, 12.0, 14.0, 30.0, np.nan],
        "samples_per_s": [1000.0, 1100.0, 1200.0, 400.0, 410.0],
    })


def _bars(ax):
    (container,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    return container


def _same_colour(a, b):
    return np.allclose(to_rgba(a), to_rgba(b))


def test_palette_is_stable_and_distinct():
    colours = palette(LABELS)
    assert colours == palette(LABELS) == palette(LABELS + ["relu"])
    assert list(colours) == LABELS
    assert palette(["tanh", "relu"])["tanh"] == colours["relu"]  # by order, not by name
    for n in (10, 20):
        assert len(set(palette([f"v{i}" for i in range(n)]).values())) == n


def test_a_variant_has_the_same_colour_in_learning_curves_and_final_metrics():
    colours = palette(LABELS)
    curves = learning_curves(_histories(), colours)
    bars = final_metrics(_finals(), colours)
    for label in LABELS:
        lines = [line for ax in curves.axes for line in ax.get_lines()
                 if line.get_label().startswith(label + " ")]
        assert len(lines) == 6  # 3 splits x 2 panels
        assert all(_same_colour(line.get_color(), colours[label]) for line in lines)
    patches = _bars(bars.axes[0]).patches
    for label, patch in zip(LABELS, patches):
        assert _same_colour(patch.get_facecolor(), colours[label])
    assert not _same_colour(colours["relu"], colours["tanh"])


def test_learning_curve_lines_are_the_mean_over_seeds_with_split_styles():
    histories = _histories()
    fig = learning_curves(histories, palette(LABELS))
    acc = next(ax for ax in fig.axes if ax.get_ylabel() == "accuracy")
    lines = {line.get_label(): line for line in acc.get_lines()}
    for label in LABELS:
        for split, style in (("train", "--"), ("val", ":"), ("test", "-")):
            x, y = lines[f"{label} {split}"].get_data()
            expected = np.mean([h[f"{split}_acc"].to_numpy() for h in histories[label]], axis=0)
            np.testing.assert_allclose(x, np.arange(1, 6))
            np.testing.assert_allclose(y, expected)
            assert lines[f"{label} {split}"].get_linestyle() == style
    assert len(acc.collections) == 6  # a min-max band per variant and split: every variant has >= 2 seeds


@pytest.mark.parametrize("spike, log", [(48.6, True), (1.5, False)])
def test_a_loss_panel_spanning_more_than_30x_gets_a_log_axis(spike, log):
    calm = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [2.3, 1.2, 0.6], "train_acc": [0.2, 0.5, 0.8]})
    wild = calm.assign(train_loss=[spike, 3.0, 2.2])  # lr 1e-2 on raw pixels: a first epoch far above the rest
    fig = learning_curves({"calm": [calm], "wild": [wild]}, palette(["calm", "wild"]))
    loss, accuracy = fig.axes[:2]
    assert (loss.get_yscale() == "log") == log and accuracy.get_yscale() == "linear"
    assert loss.get_ylabel().endswith("(log scale)") == log
    assert (48.6 / 0.6 > LOG_LOSS_SPAN) and (2.3 / 0.6 < LOG_LOSS_SPAN)  # the two cases sit on either side


def test_learning_curves_of_many_variants_give_each_split_its_panels():
    rng = np.random.default_rng(2)
    labels = [f"M{i}" for i in range(1, 6)]  # 5 variants x 3 splits = 15 lines: more than a panel holds
    histories = {label: [_history(rng), _history(rng)] for label in labels}
    fig = learning_curves(histories, palette(labels))
    assert 5 * 3 > LINES_PER_PANEL
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["train loss", "val loss", "test loss", "train accuracy", "val accuracy", "test accuracy"]
    for ax, (metric, split) in zip(fig.axes, [(m, s) for m in ("loss", "acc") for s in ("train", "val", "test")]):
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert set(lines) == {f"{label} {split}" for label in labels}
        for label in labels:
            expected = np.mean([h[f"{split}_{metric}"].to_numpy() for h in histories[label]], axis=0)
            np.testing.assert_allclose(lines[f"{label} {split}"].get_ydata(), expected)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == labels  # the titles name the split
    assert overlapping_texts(fig) == []
    four = learning_curves({label: histories[label] for label in labels[:4]}, palette(labels[:4]))
    assert [ax.get_title() for ax in four.axes] == ["loss", "accuracy"]  # 12 lines: one panel per metric


def test_learning_curves_band_needs_two_seeds_and_missing_splits_are_skipped():
    histories = {"only": [_history(np.random.default_rng(1)).drop(columns=["val_loss", "val_acc"])]}
    fig = learning_curves(histories, palette(["only"]), metrics=("acc",))
    (ax,) = fig.axes
    assert sorted(line.get_label() for line in ax.get_lines()) == ["only test", "only train"]
    assert not ax.collections
    with pytest.raises(UserError):
        learning_curves(histories, palette(["only"]), metrics=("f1",))


def test_final_metrics_bars_are_the_means_with_each_seed_and_a_t_interval():
    ax = final_metrics(_finals(), palette(LABELS)).axes[0]
    container = _bars(ax)
    np.testing.assert_allclose([p.get_height() for p in container.patches], [0.81, 0.74])
    segments = container.errorbar.lines[2][0].get_segments()
    (_, lo), (_, hi) = segments[0]
    half = stats.t.ppf(0.975, 2) * np.std([0.80, 0.81, 0.82], ddof=1) / np.sqrt(3)
    assert (hi - lo) / 2 == pytest.approx(half) and (hi + lo) / 2 == pytest.approx(0.81)
    assert len(segments[1]) == 0  # one seed: no interval
    dots = [line.get_ydata() for line in ax.get_lines() if line.get_label() == "_seeds"]
    np.testing.assert_allclose(np.concatenate(dots), [0.80, 0.81, 0.82, 0.74])  # the failed run left out
    assert [t.get_text() for t in ax.get_xticklabels()] == ["relu\n0.81, n=3", "tanh\n0.74, n=1"]


def test_final_metrics_of_two_seeds_show_them_within_the_metrics_range():
    # two seeds far apart: a t interval would run from 0.46 to 1.38 (the reported case)
    ax = final_metrics(_finals({"relu": [0.55, 0.99], "tanh": [0.6, 0.7, 0.98]}), palette(LABELS)).axes[0]
    segments = _bars(ax).errorbar.lines[2][0].get_segments()
    assert len(segments[0]) == 0  # 2 seeds: the dots, no interval
    (_, lo), (_, hi) = segments[1]
    assert hi == pytest.approx(1.0) and lo > 0  # 3 seeds: the interval, clipped at accuracy 1
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] <= 1.02  # room for a dot at 0.99, not 1.4


@pytest.mark.parametrize("variants", [3, 8, 12, 24])
def test_bar_charts_of_many_long_variant_names_keep_their_texts_apart(variants):
    labels = [f"softmax output (as printed), activation={a}, depth {d}"
              for d in (1, 2) for a in ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "selu", "silu", "mish",
                                        "prelu", "softplus", "hardtanh"]][:variants]
    finals = _finals({label: [0.3 + 0.01 * i, 0.32] for i, label in enumerate(labels)})
    runs = pd.DataFrame({"label": labels, "epoch_time": np.linspace(10, 20, variants)})
    flops = {label: 1.38e6 * (i + 1) for i, label in enumerate(labels)}  # 003-cnn-variants' 1.38 to 13.8 MFLOP
    for fig in (final_metrics(finals, palette(labels)), runtime(runs, palette(labels), flops)):
        assert overlapping_texts(fig) == []
        ticks = [t.get_text().split("\n")[0] for t in fig.axes[0].get_xticklabels()]
        legend = [t.get_text() for t in fig.legends[0].get_texts()]
        if variants == 3:  # wrapped under their bars
            assert ticks == ["softmax output (as printed),"] * 3 and legend == labels  # legend below: wide bars
            assert fig.axes[0].get_xticklabels()[0].get_rotation() == 0
        else:  # too long to wrap: the bars numbered, and the legend with them
            assert ticks == [str(i) for i in range(1, variants + 1)]
            assert legend == [f"{i}: {n}" for i, n in enumerate(labels, 1)]
            assert fig.axes[0].get_xticklabels()[0].get_rotation() == (90 if variants == 24 else 0)


def test_rebin_conserves_totals_and_is_exact_on_identical_edges():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 50, 16).astype(float)
    edges = np.sort(rng.uniform(-1, 1, 17))
    np.testing.assert_array_equal(rebin(counts, edges, edges), counts)
    wider = np.linspace(edges[0] - 0.3, edges[-1] + 0.1, 23)
    assert rebin(counts, edges, wider).sum() == pytest.approx(counts.sum())
    np.testing.assert_allclose(rebin([4.0], [0.0, 1.0], [0.0, 0.25, 1.0]), [1.0, 3.0])  # uniform within a bin
    np.testing.assert_allclose(rebin([6.0], [0.3, 0.3], [0.0, 0.25, 1.0]), [0.0, 6.0])  # a point mass
    np.testing.assert_allclose(rebin([2.0, 2.0], [0.0, 1.0, 2.0], [0.5, 1.5]), [2.0])  # outside drops


def test_layer_means_lines_equal_the_groupby_mean_in_forward_order():
    rng = np.random.default_rng(0)
    probes = {"relu": [_probes(rng), _probes(rng)], "tanh": [_probes(rng, scale=100.0)]}
    ax = layer_means(probes, palette(LABELS)).axes[0]
    for label, line in zip(LABELS, ax.get_lines()):
        rows = pd.concat(probes[label])
        rows = rows[(rows.quantity == "grad") & (rows.tensor == "weight") & (rows.stat == "abs_mean")]
        expected = rows.groupby("layer")["value"].mean()[LAYERS]
        x, y = line.get_data()
        np.testing.assert_array_equal(x, [1, 2, 3])
        np.testing.assert_allclose(y, expected.to_numpy())
        assert line.get_label() == label
    assert [t.get_text() for t in ax.get_xticklabels()] == LAYERS
    assert ax.get_yscale() == "log"


def test_layer_means_of_different_depths_use_layer_indices():
    rng = np.random.default_rng(0)
    probes = {"deep": [_probes(rng, layers=["l1", "l2", "l3", "l4"])],
              "shallow": [_probes(rng, layers=["l1", "out"])]}
    ax = layer_means(probes, palette(probes), stat="mean").axes[0]
    assert [len(line.get_xdata()) for line in ax.get_lines()] == [4, 2]
    assert "out" not in [t.get_text() for t in ax.get_xticklabels()]


def test_stat_over_time_is_the_mean_over_seeds_per_step():
    rng = np.random.default_rng(0)
    probes = {"relu": [_probes(rng), _probes(rng)], "tanh": [_probes(rng, layers=["other"])]}
    ax = stat_over_time(probes, palette(LABELS), layer="block.fc").axes[0]
    (line,) = ax.get_lines()  # tanh has no such layer
    values = [p[(p.layer == "block.fc") & (p.tensor == "weight") & (p.quantity == "grad")
                & (p.stat == "norm")].value.to_numpy() for p in probes["relu"]]
    np.testing.assert_allclose(line.get_ydata(), np.mean(values, axis=0))
    np.testing.assert_array_equal(line.get_xdata(), [0, 10, 20])
    with pytest.raises(UserError, match="block.fc"):
        stat_over_time(probes, palette(LABELS), layer="block.fx")


def test_gradient_distributions_merge_seeds_at_the_last_step_of_the_first_layer():
    rng = np.random.default_rng(0)
    hists = {"relu": [_histograms(rng), _histograms(rng)], "tanh": [_histograms(rng, scale=2.0)]}
    fig = gradient_distributions(hists, palette(LABELS))
    (ax,) = fig.axes  # similar scales: one shared value axis
    steps = [p for p in ax.patches]
    assert len(steps) == 2
    for patch in steps:
        values, edges, _ = patch.get_data()
        assert np.sum(values * np.diff(edges)) == pytest.approx(1.0)
        assert "features.conv, step 20" in patch.get_label()
    seeds = [h[(h.layer == "features.conv") & (h.step == 20)].iloc[0] for h in hists["relu"]]
    values, edges, _ = steps[0].get_data()
    assert edges[0] == pytest.approx(min(s.edges[0] for s in seeds))
    assert edges[-1] == pytest.approx(max(s.edges[-1] for s in seeds))
    assert values.sum() * np.diff(edges)[0] * 1000 == pytest.approx(sum(s.counts.sum() for s in seeds))


def test_gradient_distributions_use_one_panel_per_variant_when_scales_differ():
    rng = np.random.default_rng(0)
    hists = {"relu": _histograms(rng), "tanh": _histograms(rng, scale=1e-3)}
    assert len(gradient_distributions(hists, palette(LABELS)).axes) == 2
    assert len(gradient_distributions(hists, palette(LABELS), separate=False).axes) == 1
    fig = gradient_distributions(hists, palette(LABELS), layer="a_head")
    assert all("a_head" in ax.get_title() for ax in fig.axes)


def test_gradient_distributions_name_the_power_of_ten_instead_of_an_offset_text():
    rng = np.random.default_rng(0)
    hists = {"relu": _histograms(rng), "tanh": _histograms(rng, scale=1e-4)}
    relu, tanh = gradient_distributions(hists, palette(LABELS)).axes
    rows = hists["tanh"][hists["tanh"].layer == "features.conv"]
    last = rows[rows.step == rows.step.max()].iloc[0]
    exponent = int(np.floor(np.log10(np.abs(last.edges).max())))  # -3: values up to about 0.001
    assert relu.get_xlabel() == "gradient value"
    assert tanh.get_xlabel() == f"gradient value ($\\times 10^{{{exponent}}}$)" and exponent < -2
    values, edges, _ = tanh.patches[0].get_data()
    np.testing.assert_allclose(edges, last.edges / 10.0**exponent, rtol=1e-5)  # the same histogram, rescaled
    assert (values * np.diff(edges)).sum() == pytest.approx(1.0)
    assert not tanh.xaxis.get_offset_text().get_text()


def test_histograms_over_time_draws_each_step_over_its_own_edges_in_log_colour():
    hist = _histograms(np.random.default_rng(0))
    ax = histograms_over_time(hist, "block.fc").axes[0]
    mesh = ax.collections[0]
    assert isinstance(mesh.norm, LogNorm)
    rows = hist[hist.layer == "block.fc"]
    coords = mesh.get_coordinates()  # (bins + 1, 2 * steps, 2): each step a (left, right) pair of columns
    for i, (counts, edges) in enumerate(zip(rows.counts, rows.edges)):
        np.testing.assert_allclose(coords[:, 2 * i, 1], edges)  # each step over its own edges
        column = mesh.get_array()[:, 2 * i]  # the fraction of the step's values in each bin
        np.testing.assert_allclose(column.filled(0) * counts.sum(), counts, rtol=1e-5)
        assert column.mask.sum() == (counts == 0).sum()  # empty bins are blank
    assert mesh.get_array()[:, 1::2].mask.all()  # the zero-width gaps between steps
    np.testing.assert_allclose(coords[0, [0, -1], 0], [-5, 25])
    with pytest.raises(UserError, match="block.fc"):
        histograms_over_time(hist, "block.fcc")


def test_overlapping_texts_finds_texts_on_each_other_and_texts_cut_by_the_figure_edge():
    fig = Figure(figsize=(4, 3), layout="constrained")
    ax = fig.subplots()
    ax.set(title="a title", xlabel="x", ylabel="y")
    assert overlapping_texts(fig) == []
    ax.text(0.5, 0.5, "here")
    ax.text(0.5, 0.5, "there")
    assert overlapping_texts(fig) == [("here", "there")]
    fig.suptitle("a heading far too long for a figure four inches wide, whatever its layout does")
    assert (fig.get_suptitle(), FIGURE_EDGE) in overlapping_texts(fig)


def test_histograms_over_time_put_variants_side_by_side_on_one_step_axis_and_colour_scale():
    rng = np.random.default_rng(0)
    labels = ["activation=sigmoid, optimizer=sgd", "relu", "tanh"]
    hists = {label: _histograms(rng, scale=10.0**-i) for i, label in enumerate(labels)}
    hists["tanh"]["counts"] = [c * 100 for c in hists["tanh"]["counts"]]  # more values: the same fractions
    fig = histograms_over_time(hists, "block.fc")
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert [ax.get_title().replace("\n", "") for ax in panels] == labels and len(fig.axes) == 4  # one colour bar
    assert len({ax.collections[0].norm for ax in panels}) == 1  # one colour scale for every panel
    fig.canvas = FigureCanvasAgg(fig)
    fig.draw_without_rendering()
    boxes = [ax.get_position() for ax in panels]
    assert boxes[0].y0 == pytest.approx(boxes[1].y0) and boxes[2].y1 < boxes[0].y0  # two a row
    assert boxes[2].x0 == pytest.approx(boxes[0].x0)
    assert len({ax.get_xlim() for ax in panels}) == 1  # the steps line up
    assert panels[1].get_xlabel() == panels[2].get_xlabel() == "training step"  # the lowest of each column
    first = hists["tanh"].loc[hists["tanh"].layer == "block.fc", "counts"].iloc[0]  # its first step
    np.testing.assert_allclose(panels[2].collections[0].get_array()[:, 0].filled(0), first / first.sum(), rtol=1e-5)
    assert overlapping_texts(fig) == []
    with pytest.raises(UserError, match="block.fc"):
        histograms_over_time({"relu": hists["relu"], "tanh": hists["tanh"][hists["tanh"].layer != "block.fc"]},
                             "block.fc")


@pytest.mark.parametrize("growth", [1, 1e4])
def test_histograms_over_time_give_every_step_height_when_ranges_differ_by_decades(growth):
    # a sigmoid net's gradients: the first steps' values a ten-thousandth of the last ones'
    hist = _histograms(np.random.default_rng(0), steps=(0, 10, 20, 30))  # ranges up to 4x apart
    hist["edges"] = [e * (growth if step == 30 else 1) for e, step in zip(hist["edges"], hist["step"])]
    ax = histograms_over_time(hist, "block.fc").axes[0]
    assert ax.get_yscale() == ("symlog" if growth > 1 else "linear")
    ax.figure.canvas = FigureCanvasAgg(ax.figure)
    ax.figure.draw_without_rendering()
    coords = ax.collections[0].get_coordinates()
    height = ax.bbox.height
    for i in range(4):  # each step's column spans at least a twelfth of the axes, in pixels
        pixels = ax.transData.transform(np.c_[coords[[0, -1], 2 * i, 0], coords[[0, -1], 2 * i, 1]])[:, 1]
        assert abs(pixels[1] - pixels[0]) > height / 12


def test_runtime_bars_are_the_mean_median_epoch_time_with_each_run_and_its_flops():
    runs = _runs().rename(columns={"wall_time": "epoch_time"})
    ax = runtime(runs, palette(LABELS), flops={"relu": 2.5e6, "tanh": 1.25e5}).axes[0]
    np.testing.assert_allclose([p.get_height() for p in _bars(ax).patches], [12.0, 30.0])  # no time: left out
    dots = [line.get_ydata() for line in ax.get_lines() if line.get_label() == "_seeds"]
    np.testing.assert_allclose(np.concatenate(dots), [10.0, 12.0, 14.0, 30.0])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["relu\n2.5", "tanh\n0.125"]
    assert ax.get_xlabel() == "variant (under it: training MFLOP per sample)"


def _all_figures():
    rng = np.random.default_rng(0)
    colours = palette(LABELS)
    probes = {"relu": [_probes(rng)], "tanh": [_probes(rng)]}
    hists = {"relu": [_histograms(rng)], "tanh": [_histograms(rng, scale=1e-3)]}
    return {
        "learning_curves": lambda: learning_curves(_histories(), colours),
        "final_metrics": lambda: final_metrics(_finals(), colours),
        "gradient_distributions": lambda: gradient_distributions(hists, colours),
        "layer_means": lambda: layer_means(probes, colours),
        "stat_over_time": lambda: stat_over_time(probes, colours, "block.fc"),
        "histograms_over_time": lambda: histograms_over_time({k: v[0] for k, v in hists.items()}, "features.conv"),
        "runtime": lambda: runtime(_runs().rename(columns={"wall_time": "epoch_time"}), colours),
    }


@pytest.mark.parametrize("name", list(_all_figures()))
def test_every_figure_is_labelled_and_saves_to_a_readable_png(name):
    fig = _all_figures()[name]()
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert axes and fig.get_layout_engine() is not None
    for ax in axes:
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    if name in ("gradient_distributions", "histograms_over_time"):  # a panel per variant, each titled with it
        assert [ax.get_title().split(":")[0] for ax in axes] == LABELS and not fig.legends
    else:
        assert fig.legends, "several variants need a legend"
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    image = Image.open(io.BytesIO(buffer.getvalue()))
    image.load()
    assert image.format == "PNG" and image.size[0] >= 600


@pytest.mark.parametrize("variants", [3, 20])
def test_a_long_legend_goes_below_the_axes_and_stays_inside_the_figure(variants):
    rng = np.random.default_rng(0)
    labels = [f"depth {d}, activation=sigmoid" for d in range(variants)]
    fig = learning_curves({label: [_history(rng)] for label in labels}, palette(labels))
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # lays the figure out
    renderer = canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    page = fig.bbox
    assert page.x0 <= legend.x0 and legend.x1 <= page.x1 and page.y0 <= legend.y0 and legend.y1 <= page.y1
    axes = [ax.get_window_extent(renderer) for ax in fig.axes]
    if variants + 2 > 12:  # train and test styles join the variants in the legend
        assert legend.y1 <= min(a.y0 for a in axes) and fig.get_figheight() > 4.0
    else:
        assert legend.x0 >= max(a.x1 for a in axes)


def test_band_figures_say_over_how_many_seeds():
    fig = learning_curves(_histories(seeds=(3, 2)), palette(LABELS))
    assert "mean over 2-3 seeds" in fig.get_suptitle()
    fig = learning_curves(_histories(seeds=(2, 2)), palette(LABELS))
    assert "mean over 2 seeds" in fig.get_suptitle()
    rng = np.random.default_rng(0)
    probes = {"relu": [_probes(rng) for _ in range(4)], "tanh": [_probes(rng)]}
    title = stat_over_time(probes, palette(LABELS), LAYERS[0]).axes[0].get_title()
    assert "mean over 1-4 seeds" in title
    ticks = final_metrics(_finals({"relu": [0.5] * 5, "tanh": [0.6] * 2}), palette(LABELS)).axes[0].get_xticklabels()
    assert [t.get_text().endswith(n) for t, n in zip(ticks, ("n=5", "n=2"))] == [True, True]
