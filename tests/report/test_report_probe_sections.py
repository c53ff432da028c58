"""The report's total gradient norm, activation derivative and dL/dh sections and their figures."""

import io
import re

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import trainlab
from trainlab.errors import UserError
from trainlab.models import create_model
from trainlab.report import build_report
from trainlab.report.figures import derivative_histograms, gradient_norm_per_epoch, palette, total_gradient_norm
from trainlab.store import RunStore
from trainlab.study import run_study

LABELS = ["sigmoid", "relu"]


def test_total_gradient_norm_is_the_norm_of_all_gradients_together_averaged_per_epoch():
    torch.manual_seed(0)
    model = create_model({"kind": "mlp", "hidden": [8, 8]}, (1, 4, 4), 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(32, 1, 4, 4), torch.randint(0, 3, (32,))
    direct = []
    with trainlab.probe(model, output_grads=True) as p:  # dL/dh rows must not count: they are not parameters
        for _ in range(6):
            F.cross_entropy(model(x), y).backward()
            direct.append(torch.linalg.vector_norm(torch.cat([q.grad.flatten() for q in model.parameters()])).item())
            p.step()
            opt.step()
            opt.zero_grad()
    per_epoch = gradient_norm_per_epoch(p.frame(), steps_per_epoch=4)  # steps 0-3 are epoch 1, 4-5 epoch 2
    assert list(per_epoch.index) == [1, 2]
    np.testing.assert_allclose(per_epoch.to_numpy(), [np.mean(direct[:4]), np.mean(direct[4:])], rtol=1e-5)


def _norm_rows(rng, steps, scale=1.0):
    rows = [(step, layer, tensor, "grad", "norm", scale * rng.lognormal())
            for step in steps for layer in ("fc1", "out") for tensor in ("weight", "bias")]
    return pd.DataFrame(rows, columns=["step", "layer", "tensor", "quantity", "stat", "value"])


def test_total_gradient_norm_figure_is_the_mean_over_seeds_per_epoch():
    rng = np.random.default_rng(0)
    probes = {"sigmoid": [_norm_rows(rng, range(0, 30, 5)), _norm_rows(rng, range(0, 30, 5))],
              "relu": [_norm_rows(rng, range(0, 60, 5), scale=10.0)]}
    fig = total_gradient_norm(probes, palette(LABELS), {"sigmoid": 10, "relu": 20})
    ax = fig.axes[0]
    sigmoid, relu = ax.get_lines()
    expected = np.mean([gradient_norm_per_epoch(r, 10).to_numpy() for r in probes["sigmoid"]], axis=0)
    np.testing.assert_allclose(sigmoid.get_ydata(), expected)
    np.testing.assert_array_equal(sigmoid.get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(relu.get_xdata(), [1, 2, 3])  # 20 steps an epoch
    assert ax.get_yscale() == "log" and len(ax.collections) == 1  # a band only for two seeds or more
    with pytest.raises(UserError, match="probes"):
        total_gradient_norm({"relu": [_norm_rows(rng, [0]).iloc[:0]]}, palette(["relu"]), {"relu": 1})


def _derivative_hists(rng, layers, values, step=40):
    rows = []
    for layer in layers:
        d = values(rng)
        lo, hi = min(0.0, d.min()), max(1.0, d.max())
        counts, edges = np.histogram(d, bins=16, range=(lo, hi))
        rows.append((step, layer, "input", "derivative", counts.astype(np.float32), edges.astype(np.float32)))
    return pd.DataFrame(rows, columns=["step", "layer", "tensor", "quantity", "counts", "edges"])


def test_derivative_histograms_have_a_panel_per_layer_and_variant_in_fractions():
    rng = np.random.default_rng(0)
    sigmoid = lambda r: 0.25 - r.uniform(0, 0.2, 500)  # noqa: E731
    relu = lambda r: r.integers(0, 2, 500).astype(float)  # noqa: E731
    hists = {"sigmoid": [_derivative_hists(rng, ["act1", "act2"], sigmoid) for _ in range(2)],
             "relu": [_derivative_hists(rng, ["act1"], relu)]}
    fig = derivative_histograms(hists, palette(LABELS), ["act1", "act2"])
    axes = fig.axes
    assert len(axes) == 4  # rows: layers; columns: variants
    for ax in axes[:3]:
        (patch,) = ax.patches
        values, edges, _ = patch.get_data()
        assert values.sum() == pytest.approx(1.0)  # the fraction of inputs per bin
        assert edges[0] == pytest.approx(0.0) and edges[-1] == pytest.approx(1.0)
    values, edges, _ = axes[1].patches[0].get_data()  # relu, act1: everything at 0 or 1
    assert values[0] + values[-1] == pytest.approx(1.0)
    assert "not recorded" in [t.get_text() for t in axes[3].texts]  # relu has no act2
    top, bottom = axes[:2], axes[2:]
    assert [ax.get_title() for ax in top] == ["sigmoid", "relu"] and not any(ax.get_title() for ax in bottom)
    assert [ax.get_ylabel().split("\n")[0] for ax in axes[::2]] == ["act1", "act2"]  # a row's layer, left
    assert all(ax.get_xlabel() == "f'(z)" for ax in bottom) and not any(ax.get_xlabel() for ax in top)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    assert Image.open(io.BytesIO(buffer.getvalue())).size[0] >= 600


STUDY = {
    "name": "derivatives",
    "base": {"data": {"name": "digits", "limit": 600}, "model": {"kind": "mlp", "hidden": [16, 16]},
             "train": {"epochs": 2, "batch_size": 100, "lr": 0.01},
             "probes": {"per_epoch": 2, "derivatives": True, "output_grads": True}},
    "vary": {"model.activation": ["sigmoid", "relu"]},
    "seeds": 2,
    "report": ["total_gradient_norm", "activation_derivatives", "output_gradients"],
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    result = run_study(STUDY, store=store)
    return store, result


def test_the_sections_show_what_the_runs_recorded(trained):
    store, result = trained
    html = build_report(STUDY, store=store).html.read_text()
    for title in ("Total gradient norm per epoch", "Activation derivatives", "Gradients with respect to layer outputs"):
        assert f"<h2>{title}</h2>" in html
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 3
    runs = RunStore(store)
    sigmoid = result.runs.loc[result.runs["label"] == "activation=sigmoid", "run_id"]
    lasts = []
    for run_id in sigmoid:
        rows = runs.probes(run_id)
        rows = rows[(rows.quantity == "derivative") & (rows.layer == "act2") & (rows.stat == "mean")]
        lasts.append(rows.loc[rows.step == rows.step.max(), "value"].item())
    table = html.split("<h2>Activation derivatives</h2>")[1].split("</table>")[0]
    row = re.search(r"<td[^>]*>activation=sigmoid</td>\s*<td[^>]*>act2</td>\s*<td[^>]*>([^<]+)</td>", table)
    assert float(row.group(1)) == pytest.approx(np.mean(lasts), rel=1e-2)  # the mean f'(z), 3 digits
    assert 0 < np.mean(lasts) <= 0.25


def test_the_report_reads_each_quantitys_layers_in_forward_order(trained):
    from trainlab.report.build import collect

    store, _ = trained
    data = collect(STUDY, store=store)
    first = next(iter(data.by_label(data.probes).values()))[0]
    for quantity, layers in (("output_grad", ["fc1", "act1", "fc2", "act2", "out"]), ("grad", ["fc1", "fc2", "out"]),
                             ("activation", ["act1", "act2"])):
        assert list(dict.fromkeys(first.loc[first.quantity == quantity, "layer"])) == layers  # not act1 before fc1


def test_without_the_probes_the_sections_say_which_setting_records_them(trained, tmp_path):
    store, _ = trained
    plain = {**STUDY, "name": "plain", "seeds": 1,
             "base": {**STUDY["base"], "probes": {"per_epoch": 1}, "train": {**STUDY["base"]["train"], "epochs": 1}}}
    run_study(plain, store=store)
    html = build_report(plain, store=store).html.read_text()
    assert "probes.derivatives: true" in html and "probes.output_grads: true" in html
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 1  # the total norm needs only the probes
    with pytest.raises(UserError, match="act1"):
        build_report({**STUDY, "report": [{"activation_derivatives": {"layer": "act9"}}]}, store=store)
