import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from trainlab.analysis.filters import filter_grid, first_conv, plot_filters
from trainlab.errors import UserError
from trainlab.models import create_model


def _tile(grid, index, columns, kh, kw, pad):
    row, col = divmod(index, columns)
    top, left = pad + row * (kh + pad), pad + col * (kw + pad)
    return grid[top:top + kh, left:left + kw]


def _weights():
    """64 RGB 5x5 filters of very different scales."""
    scale = torch.linspace(0.1, 5, 64, dtype=torch.float64)[:, None, None, None]
    return torch.randn(64, 3, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * scale


def test_first_conv_finds_the_first_conv_in_module_order_and_rejects_an_mlp():
    cnn = create_model({"kind": "cnn", "blocks": [{"channels": 4}, {"channels": 6}], "fc": [8]}, (3, 8, 8), 5)
    name, conv = first_conv(cnn)
    assert name == "conv1" and conv is cnn.conv1 and conv.out_channels == 4
    resnet = create_model({"kind": "resnet", "stages": [{"channels": 4, "blocks": 1}]}, (3, 8, 8), 5)
    assert first_conv(resnet)[0] == "stem_conv"
    with pytest.raises(UserError, match="no Conv2d"):
        first_conv(create_model({"kind": "mlp", "hidden": [8]}, (1, 4, 4), 3))


def test_grid_of_64_rgb_5x5_filters_is_8x8_with_padding():
    weight = torch.randn(64, 3, 5, 5)
    grid = filter_grid(weight, pad=2)
    assert grid.shape == (8 * (5 + 2) + 2, 8 * (5 + 2) + 2, 3)
    assert grid.min() >= 0 and grid.max() <= 1
    # separators (first rows/columns and between tiles) are the pad value, not filter pixels
    assert np.all(grid[:2] == 1.0) and np.all(grid[:, 7:9] == 1.0)
    ten = filter_grid(torch.randn(10, 3, 3, 3), pad=0, columns=4)
    assert ten.shape == (3 * 3, 4 * 3, 3)
    assert np.all(ten[6:9, 6:12] == 1.0)  # the two unused cells of the last row


def test_per_filter_scaling_uses_each_filters_own_min_and_max():
    weight = _weights()
    grid = filter_grid(weight, normalize="filter", pad=1)
    w = weight.numpy()
    for index in range(64):
        own = w[index]
        expected = ((own - own.min()) / (own.max() - own.min())).transpose(1, 2, 0)
        np.testing.assert_allclose(_tile(grid, index, 8, 5, 5, 1), expected, atol=1e-12)


def test_global_scaling_uses_one_min_and_max_for_all_filters():
    weight = _weights()
    grid = filter_grid(weight, normalize="global", pad=1)
    w = weight.numpy()
    lo, hi = w.min(), w.max()
    for index in range(64):
        expected = ((w[index] - lo) / (hi - lo)).transpose(1, 2, 0)
        np.testing.assert_allclose(_tile(grid, index, 8, 5, 5, 1), expected, atol=1e-12)
    # a small-weight filter is squeezed near the middle of the global scale but spans [0, 1] on its own
    small = _tile(grid, 0, 8, 5, 5, 1)
    assert small.max() - small.min() < 0.2
    own = _tile(filter_grid(weight, normalize="filter"), 0, 8, 5, 5, 1)
    assert own.min() == pytest.approx(0) and own.max() == pytest.approx(1)


def test_channel_order_is_rgb():
    weight = torch.zeros(4, 3, 3, 3)
    for index in range(3):
        weight[index, index] = 1.0  # filter 0 is all red, 1 green, 2 blue
    weight[3] = -1.0  # constant filter
    grid = filter_grid(weight, normalize="filter", pad=1)
    for index, colour in enumerate(np.eye(3)):
        assert np.all(_tile(grid, index, 2, 3, 3, 1) == colour)
    assert np.all(_tile(grid, 3, 2, 3, 3, 1) == 0.5)


def test_non_rgb_filters_show_the_mean_over_input_channels_in_grayscale():
    weight = torch.randn(6, 2, 3, 3, dtype=torch.float64)
    grid = filter_grid(weight, normalize="filter", pad=1)
    assert grid.shape == (2 * 4 + 1, 3 * 4 + 1, 1)
    mean = weight.numpy().mean(axis=1)
    for index in range(6):
        expected = (mean[index] - mean[index].min()) / (mean[index].max() - mean[index].min())
        np.testing.assert_allclose(_tile(grid, index, 3, 3, 3, 1)[..., 0], expected, atol=1e-12)


def test_bad_arguments_raise_user_errors():
    with pytest.raises(UserError, match="normalize"):
        filter_grid(torch.randn(4, 3, 3, 3), normalize="local")
    with pytest.raises(UserError, match="shape"):
        filter_grid(torch.randn(4, 3, 3))


def test_plot_filters_saves_a_png_with_two_panels():
    conv = nn.Conv2d(3, 16, 5)
    fig = plot_filters(conv.weight, title="conv1")
    assert len(fig.axes) == 2
    assert fig.axes[0].get_images()[0].get_array().shape == filter_grid(conv.weight, "global").shape
    np.testing.assert_allclose(fig.axes[1].get_images()[0].get_array(), filter_grid(conv.weight, "filter"))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    image = Image.open(io.BytesIO(buffer.getvalue()))
    image.load()
    assert image.format == "PNG" and image.width > 100 and image.height > 50
    gray = plot_filters(nn.Conv2d(1, 8, 3).weight)
    assert gray.axes[0].get_images()[0].get_array().ndim == 2


def test_single_value_kernels_get_the_raw_grid_only_and_the_brightest_stands_out_from_the_separators():
    weight = torch.linspace(-1, 1, 25).reshape(25, 1, 1, 1)  # 1x1 kernels of one input channel, filter 24 the largest
    fig = plot_filters(weight)
    assert len(fig.axes) == 1  # scaled one by one, every kernel would be the same grey
    ax = fig.axes[0]
    image = ax.get_images()[0]
    grid = image.get_array()
    assert grid.shape == filter_grid(weight, "global").shape[:2]
    assert grid.mask[0, 0] and not grid.mask[-2, -2]  # separators are masked, the last tile is filter 24
    assert grid[-2, -2] == 1.0
    brightest, separator = image.to_rgba(grid)[-2, -2], image.to_rgba(grid)[0, 0]
    np.testing.assert_allclose(brightest, [1, 1, 1, 1])
    assert not np.allclose(separator, brightest)
    # numbered: tile (row 4, column 4) is 20 + 4
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "5", "10", "15", "20"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["+0", "+1", "+2", "+3", "+4"]
    assert ax.get_xticks()[4] == pytest.approx(4 * 2 + 1) and ax.get_yticks()[4] == pytest.approx(4 * 2 + 1)
