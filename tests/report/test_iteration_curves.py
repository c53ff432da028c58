"""The iteration_curves report section and its figure."""

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from trainlab.errors import UserError
from trainlab.report import collect, report_document
from trainlab.report.document import Picture, Text
from trainlab.report.figures import iteration_curves, palette
from trainlab.study import run_study
from trainlab.study.report_sections import DEFAULT_SECTIONS, SECTIONS


def _curve(rng, steps=(3, 7, 8, 12)):
    return pd.DataFrame({"step": steps, "train_acc": rng.uniform(0, 1, len(steps)),
                         "train_loss": rng.uniform(0.5, 2, len(steps))})


def test_the_figure_draws_the_mean_over_seeds_against_the_step_with_a_min_max_band():
    rng = np.random.default_rng(0)
    curves = {"relu": [_curve(rng), _curve(rng)], "tanh": [_curve(rng)]}
    fig = iteration_curves(curves, palette(curves))
    loss = next(ax for ax in fig.axes if ax.get_ylabel() == "train loss")
    lines = {line.get_label(): line.get_data() for line in loss.get_lines()}
    np.testing.assert_allclose(lines["relu"][0], [3, 7, 8, 12])
    relu = [c["train_loss"].to_numpy() for c in curves["relu"]]
    np.testing.assert_allclose(lines["relu"][1], (relu[0] + relu[1]) / 2)
    np.testing.assert_allclose(lines["tanh"][1], curves["tanh"][0]["train_loss"])
    assert len(loss.collections) == 1  # a band only for the variant with two seeds
    band = loss.collections[0].get_paths()[0].vertices[:, 1]
    both = np.stack([c["train_loss"] for c in curves["relu"]])
    assert band.min() == pytest.approx(both.min()) and band.max() == pytest.approx(both.max())
    assert all(ax.get_title() and ax.get_xlabel() == "training step" for ax in fig.axes) and fig.legends
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    assert Image.open(io.BytesIO(buffer.getvalue())).format == "PNG"
    with pytest.raises(UserError):
        iteration_curves(curves, palette(curves), metrics=("val_loss",))


def _study(curve_every):
    return {
        "name": "curves",
        "base": {"data": {"name": "synthetic", "val_size": 32, "synthetic": {"n_train": 160, "n_test": 32}},
                 "model": {"hidden": [8]}, "train": {"epochs": 2, "batch_size": 32},
                 "probes": {"enabled": False, "curve_every": curve_every}},
        "vary": {"train.lr": [0.01, 0.1]},
        "seeds": 2,
        "report": ["iteration_curves"],
    }


@pytest.mark.parametrize("curve_every", [2, None])
def test_the_section_shows_the_curves_or_says_how_to_record_them(tmp_path, curve_every):
    assert "iteration_curves" in SECTIONS and "iteration_curves" not in DEFAULT_SECTIONS
    run_study(_study(curve_every), store=tmp_path)
    doc = report_document(collect(_study(curve_every), store=tmp_path))
    (section,) = doc.sections
    assert section.title == "Per-iteration curves"
    if curve_every:
        (picture,) = section.blocks
        assert isinstance(picture, Picture) and "band from the lowest to the highest seed" in picture.caption
    else:
        (text,) = section.blocks
        assert isinstance(text, Text) and "probes.curve_every" in text.text
