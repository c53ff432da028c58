import numpy as np
import pytest
import torch
from torch import nn

from trainlab.analysis.equivariance import (
    default_shift,
    EQUIVARIANCE_COLUMNS,
    equivariance,
    SHARED_CONV_LAYERS,
    plot_equivariance,
    rotate,
    shared_conv,
    shift,
)
from trainlab.errors import UserError
from trainlab.models.registry import create_model


def circular_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, padding_mode="circular"), nn.ReLU(),
        nn.Conv2d(4, 4, 5, padding=2, padding_mode="circular"), nn.ReLU(inplace=True),
        nn.Conv2d(4, 3, 3, padding=1, padding_mode="circular"),
    )


def no_hooks(model):
    return all(not (m._forward_pre_hooks or m._forward_hooks) for m in model.modules())


def test_shift_and_rotate():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    moved = shift(x, 1, -2)
    assert torch.equal(moved[0, 0, 1:, :2], x[0, 0, :2, 2:])
    assert moved[0, 0, 0].abs().sum() == 0 and moved[0, 0, :, 2:].abs().sum() == 0
    assert torch.equal(shift(x, 1, -2, circular=True), torch.roll(x, (1, -2), dims=(2, 3)))
    assert torch.equal(shift(shift(x, 2, 3, circular=True), -2, -3, circular=True), x)
    assert shift(x, 3, 0).abs().sum() == 0
    square = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert torch.equal(rotate(square, 1), torch.tensor([[2.0, 4.0], [1.0, 3.0]]))  # counter-clockwise
    assert torch.equal(rotate(x, 4), x) and torch.equal(rotate(x, 1.0), rotate(x, 1))
    half = rotate(torch.ones(1, 1, 9, 9), 0.5)  # 45 degrees: the centre stays, the corners go dark
    assert half[0, 0, 4, 4] == pytest.approx(1) and half[0, 0, 0, 0] == 0


def test_circular_convolutions_are_exactly_shift_equivariant():
    model, x = circular_net(), torch.randn(3, 2, 12, 12)
    result = equivariance(model, x, "shift", (3, -5), circular=True)
    assert list(result.frame.columns) == EQUIVARIANCE_COLUMNS
    assert list(result.frame.layer) == ["0", "2", "4"] and not result.skipped
    assert (result.frame.relative_error < 1e-6).all() and (result.frame.error < 1e-6).all()
    assert all(m.shape == (12, 12) and m.max() < 1e-6 for m in result.maps.values())
    with torch.no_grad():  # the features as the layer gave them, before the in-place ReLU after it
        torch.testing.assert_close(result.features["2"][1], torch.roll(model[:3](x)[0], (3, -5), dims=(1, 2)))
    actual, expected = result.features["4"]
    assert actual.shape == (3, 12, 12) and (actual - expected).abs().max() < 1e-6
    # not vacuous: the features are not shift-invariant themselves
    assert (expected - torch.roll(expected, (3, -5), dims=(1, 2))).abs().max() > 1e-2


def test_random_kernels_are_not_rotation_equivariant():
    result = equivariance(circular_net(), torch.randn(3, 2, 12, 12), "rotate", 1)
    assert (result.frame.relative_error > 0.05).all()
    assert list(result.frame.amount) == [1, 1, 1]


def test_rotation_invariant_kernels_are_rotation_equivariant():
    model = circular_net()
    with torch.no_grad():
        for conv in model[::2]:
            conv.weight.copy_(sum(torch.rot90(conv.weight, k, dims=(2, 3)) for k in range(4)))
    result = equivariance(model, torch.randn(3, 2, 12, 12), "rotate", 1)
    assert (result.frame.relative_error < 1e-5).all()
    assert (equivariance(model, torch.randn(3, 2, 12, 12), "rotate", 0.5).frame.relative_error > 1e-3).all()


def test_zero_padding_and_zero_fill_err_only_at_the_border():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Tanh(), nn.Conv2d(3, 2, 3, padding=1))
    x = torch.randn(4, 1, 16, 16)
    result = equivariance(model, x, "shift", (2, 3))
    for name, margin in [("0", 1), ("2", 2)]:
        error_map = result.maps[name]
        assert error_map[2 + margin : -margin, 3 + margin : -margin].max() < 1e-6  # interior
        assert error_map[:2].min() > 1e-3 and error_map[:, :3].min() > 1e-3  # where zeros came in
        assert error_map[-1, 4:-1].min() > 1e-3  # where the shifted image met the zero padding
        row = result.frame.set_index("layer").loc[name]
        assert 0 < row.relative_error_unfilled < row.relative_error  # the band left out, the padded edge kept
    # the first layer's numbers, computed directly
    conv = model[0]
    with torch.no_grad():
        difference = (conv(shift(x, 2, 3)) - shift(conv(x), 2, 3)).abs()
        torch.testing.assert_close(result.maps["0"], difference.mean((0, 1)))
        row = result.frame.set_index("layer").loc["0"]
        assert row.error == pytest.approx(difference.mean().item(), rel=1e-5)
        relative = difference.mean() / conv(x).abs().mean()
        assert row.relative_error == pytest.approx(relative.item(), rel=1e-5)


def test_the_unfilled_error_leaves_out_exactly_where_the_shifted_in_zeros_reach():
    torch.manual_seed(7)
    model = shared_conv(1, seed=3)  # unpadded, stride 1: the zeros are the only thing a shift changes
    x = torch.randn(4, 1, 20, 20)
    result = equivariance(model, x, "shift", (5, 2), layers=list(SHARED_CONV_LAYERS), stride=1)
    with torch.no_grad():
        act1 = torch.relu(model.conv(x))
        features = {"act1": act1, "act2": torch.relu(model.conv(act1))}
    for name in SHARED_CONV_LAYERS:
        row = result.frame.set_index("layer").loc[name]
        error_map = result.maps[name]
        assert error_map[5:, 2:].max() < 1e-6 and error_map[:5].max() > 1e-3  # all the error is in the band
        assert row.relative_error > 0.01 and row.relative_error_unfilled < 1e-6
        assert row.relative_error == pytest.approx((error_map.mean() / features[name].abs().mean()).item(), rel=1e-4)
    rotated = equivariance(model, x, "rotate", 1, layers=list(SHARED_CONV_LAYERS), stride=1).frame
    assert (rotated.relative_error_unfilled == rotated.relative_error).all()
    circular = equivariance(circular_net(), torch.randn(2, 2, 12, 12), "shift", 3, circular=True).frame
    assert (circular.relative_error_unfilled == circular.relative_error).all()


def strided_net():
    torch.manual_seed(6)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, padding_mode="circular"), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, stride=2, padding=1, padding_mode="circular"), nn.ReLU(),
        nn.Conv2d(4, 2, 3, padding=1, padding_mode="circular"),
    )


def test_strided_and_pooled_layers_are_equivariant_to_shifts_by_their_stride():
    model, x = strided_net(), torch.randn(2, 1, 16, 16)
    result = equivariance(model, x, "shift", (4, -8), layers=["0", "2", "3", "5"], circular=True)
    assert list(result.frame.layer) == ["0", "2", "3", "5"]
    assert (result.frame.error < 1e-6).all()
    assert [m.shape for m in result.maps.values()] == [(16, 16), (8, 8), (4, 4), (4, 4)]
    odd = equivariance(model, x, "shift", 2, circular=True)
    assert list(odd.frame.layer) == ["0"] and (odd.frame.error < 1e-6).all()
    assert set(odd.skipped) == {"3", "5"} and "stride 4x4" in odd.skipped["3"]


def test_cnn_from_create_model_stops_before_the_dense_layers():
    torch.manual_seed(7)
    spec = {"kind": "cnn", "fc": [8], "blocks": [
        {"channels": 3, "pool": "max", "padding_mode": "circular"},
        {"channels": 4, "stride": 2, "padding_mode": "circular"},
    ]}
    model = create_model(spec, (1, 16, 16), 3)
    ran = []
    model.fc1.register_forward_hook(lambda *args: ran.append(1))
    result = equivariance(model, torch.randn(2, 1, 16, 16), "shift", 4, circular=True)
    assert list(result.frame.layer) == ["conv1", "conv2"] and (result.frame.error < 1e-6).all()
    assert not ran
    # a rotated non-square input would not fit the dense layers, which never run
    wide = create_model(spec, (1, 8, 16), 3)
    assert len(equivariance(wide, torch.randn(2, 1, 8, 16), "rotate", 1).frame) == 2


def test_eval_mode_used_then_restored_and_hooks_removed():
    torch.manual_seed(8)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, padding_mode="circular"), nn.BatchNorm2d(4), nn.Dropout(0.5),
        nn.Conv2d(4, 2, 3, padding=1, padding_mode="circular"),
    ).train()
    stats = model[1].running_mean.clone()
    result = equivariance(model, torch.randn(2, 1, 10, 10), "shift", (1, 2), circular=True)
    assert (result.frame.error < 1e-6).all()  # dropout was off
    assert all(m.training for m in model.modules())
    assert torch.equal(model[1].running_mean, stats)
    assert no_hooks(model)
    model.eval()
    equivariance(model, torch.randn(2, 1, 10, 10))
    assert not any(m.training for m in model.modules())


def test_mistakes_leave_no_hooks():
    model = circular_net()
    with pytest.raises(UserError, match="layer"):
        equivariance(model, torch.randn(1, 2, 8, 8), layers=["0", "nine"])
    with pytest.raises(UserError, match="transform"):
        equivariance(model, torch.randn(1, 2, 8, 8), "flip")
    with pytest.raises(UserError, match="Conv2d"):
        equivariance(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), torch.randn(1, 1, 2, 2))
    bad = nn.Sequential(nn.Conv2d(2, 2, 3), nn.Flatten(), nn.Linear(3, 2))  # fails after the hooked layer
    with pytest.raises(RuntimeError):
        equivariance(bad, torch.randn(1, 2, 8, 8), layers=["0", "2"])
    assert no_hooks(model) and no_hooks(bad) and bad.training


def test_flatten_output_is_skipped_with_a_reason():
    torch.manual_seed(9)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(32, 2))
    result = equivariance(model, torch.randn(2, 1, 4, 4), "shift", 1, layers=["0", "1"])
    assert list(result.frame.layer) == ["0"] and "not N x C x H x W" in result.skipped["1"]


def test_plot_equivariance_panels():
    result = equivariance(circular_net(), torch.randn(2, 2, 12, 12), "shift", (3, 0))
    image = (torch.rand(12, 12) * 255).to(torch.uint8)
    fig = plot_equivariance(result, image=image[None])
    titles = [ax.get_title() for ax in fig.axes]
    assert fig._suptitle.get_text() == "Equivariance to a shift by (3, 0)"
    assert titles[:2] == ["input", "transformed input"]
    row = result.frame.iloc[0]
    assert titles[3:6] == ["0: features of transformed input", "0: transformed features",
                           f"mean |difference| (relative {row.relative_error:.2g};\n"
                           f"{row.relative_error_unfilled:.2g} where the shifted-in zeros do not reach)"]
    shown = np.asarray(fig.axes[1].images[0].get_array())
    np.testing.assert_allclose(shown[3:], image[:-3].numpy() / 255.0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(fig.axes[5].images[0].get_array()), result.maps["0"].numpy())
    one = plot_equivariance(result, channel=1)
    actual = result.features["0"][0][1].numpy()
    np.testing.assert_allclose(np.asarray(one.axes[0].images[0].get_array()), actual)


def test_shared_conv_applies_one_fresh_conv_twice_from_its_seed():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    probe = shared_conv(channels=1, seed=4)
    assert torch.equal(torch.get_rng_state(), state)  # the global random state is left alone
    assert [type(m) for m in probe.modules()].count(nn.Conv2d) == 1 and not probe.training
    x = torch.randn(2, 1, 10, 10)
    with torch.no_grad():
        once = torch.relu(nn.functional.conv2d(x, probe.conv.weight, probe.conv.bias))
        twice = torch.relu(nn.functional.conv2d(once, probe.conv.weight, probe.conv.bias))
        torch.testing.assert_close(probe(x), twice)
    torch.manual_seed(4)
    torch.testing.assert_close(probe.conv.weight, nn.Conv2d(1, 1, 3).weight)  # torch's own initialisation
    assert not torch.equal(probe.conv.weight, shared_conv(channels=1, seed=5).conv.weight)


@pytest.mark.parametrize("amount", [1, 2, 5])
def test_shared_conv_at_chosen_shifts_against_a_direct_computation(amount):
    probe, x = shared_conv(channels=1, seed=0), torch.randn(3, 1, 16, 16)
    result = equivariance(probe, x, "shift", amount, layers=list(SHARED_CONV_LAYERS))
    assert list(result.frame.layer) == ["act1", "act2"] and list(result.frame.amount) == [amount, amount]
    with torch.no_grad():
        act1 = lambda t: torch.relu(probe.conv(t))  # noqa: E731
        for layer, f in (("act1", act1), ("act2", lambda t: act1(act1(t)))):
            direct = (f(shift(x, amount, amount)) - shift(f(x), amount, amount)).abs().mean()
            error = result.frame.set_index("layer").loc[layer, "error"]
            assert error == pytest.approx(direct.item(), rel=1e-6)
            assert error > 0  # zeros come in and the unpadded output is clipped: the report's border blob


@pytest.mark.parametrize("shifts", [[1], [2, 4, 7]])
def test_a_circular_single_conv_is_exactly_equivariant_at_every_chosen_shift_not_to_rotation(shifts):
    torch.manual_seed(0)
    conv, x = nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular").eval(), torch.randn(2, 1, 12, 12)
    for amount in shifts:
        assert equivariance(conv, x, "shift", amount, layers=[""], circular=True).frame.error[0] < 1e-6
    for quarter_turns in (1, 0.5):
        assert equivariance(conv, x, "rotate", quarter_turns, layers=[""]).frame.relative_error[0] > 0.05


def test_a_known_stride_replaces_the_estimate_where_trimming_misleads_it():
    probe, x = shared_conv(channels=1, seed=1), torch.randn(2, 1, 12, 12)  # 12 -> 10 -> 8 pixels
    estimated = equivariance(probe, x, "shift", 3, layers=list(SHARED_CONV_LAYERS))
    assert "act2" in estimated.skipped and "stride 2x2" in estimated.skipped["act2"]  # 12 / 8 rounds to 2
    known = equivariance(probe, x, "shift", 3, layers=list(SHARED_CONV_LAYERS), stride=1)
    with torch.no_grad():
        direct = (probe(shift(x, 3, 3)) - shift(probe(x), 3, 3)).abs().mean()
    assert known.frame.set_index("layer").loc["act2", "error"] == pytest.approx(direct.item(), rel=1e-6)


@pytest.mark.parametrize("first_stride, expected", [(1, 3), (2, 4)])
def test_the_default_shift_is_one_that_a_layer_is_compared_at(first_stride, expected):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, stride=first_stride, padding=1), nn.ReLU(),
                          nn.Conv2d(4, 4, 3, stride=2, padding=1))
    inputs = torch.randn(2, 1, 28, 28)
    assert default_shift(model, inputs) == expected  # 28 // 8 = 3, raised to a multiple of the first stride
    compared = equivariance(model, inputs, transform="shift", amount=expected).frame
    assert compared["layer"].tolist() == ["0"] + (["2"] if expected % (2 * first_stride) == 0 else [])
    if first_stride == 2:  # the eighth of the width itself compares no layer
        assert equivariance(model, inputs, transform="shift", amount=3).frame.empty
