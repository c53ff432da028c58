import io
from collections import OrderedDict

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from trainlab.analysis.neurons import (
    class_rows,
    interesting_channels,
    last_conv_activation,
    neuron_patches,
    peak_activations,
    plot_neurons,
    receptive_field_box,
    receptive_fields,
    top_activations,
    top_activations_per_class,
)
from trainlab.data import to_float
from trainlab.errors import UserError
from trainlab.models import create_model


def _stack(pool=nn.MaxPool2d) -> nn.Sequential:
    """conv3x3 s1 p1 -> pool2 -> conv3x3 s1 p1 -> conv5x5 s2 p2, then a dense head."""
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 2, 3, padding=1)), ("act1", nn.ReLU()), ("pool1", pool(2)),
        ("conv2", nn.Conv2d(2, 2, 3, padding=1)), ("bn2", nn.BatchNorm2d(2)), ("drop2", nn.Dropout(0.5)),
        ("conv3", nn.Conv2d(2, 1, 5, stride=2, padding=2)),
        ("flatten", nn.Flatten()), ("fc", nn.Linear(16, 3)),
    ]))


def _odd_stack() -> nn.Sequential:
    """Non-square kernels and strides, dilation, a ceil-mode pool and an even 'same' kernel."""
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 2, (3, 5), stride=(1, 2), padding=(2, 0), dilation=(2, 1))),
        ("pool1", nn.MaxPool2d(2, ceil_mode=True)),
        ("conv2", nn.Conv2d(2, 1, 4, padding="same")),
    ]))


def _output_sizes(model, x) -> dict[str, tuple[int, int]]:
    sizes = {}
    handles = [m.register_forward_hook(lambda m, i, o, n=n: sizes.__setitem__(n, tuple(o.shape[-2:])))
               for n, m in model.named_children()]
    model.eval()
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return sizes


def _prefix(model, layer) -> nn.Sequential:
    """The layers of ``model`` up to and including ``layer``, in eval mode."""
    names = [name for name, _ in model.named_children()]
    return nn.Sequential(*list(model.children())[: names.index(layer) + 1]).eval()


def _fields(frame):
    return {r.layer: (r.size_h, r.size_w, r.jump_h, r.jump_w, r.start_h, r.start_w, r.out_h, r.out_w)
            for r in frame.itertuples()}


def test_receptive_fields_of_a_hand_computed_stack():
    # per layer: size += (k - 1) * jump; start += ((k - 1) / 2 - pad) * jump; jump *= stride (16x16 input)
    # conv1 k3 s1 p1: size 1 + 2*1 = 3, jump 1, start 0 + (1 - 1)*1 = 0, out 16
    # pool1 k2 s2 p0: size 3 + 1*1 = 4, jump 2, start 0 + (0.5 - 0)*1 = 0.5, out 8
    # conv2 k3 s1 p1: size 4 + 2*2 = 8, jump 2, start 0.5 + (1 - 1)*2 = 0.5, out 8
    # conv3 k5 s2 p2: size 8 + 4*2 = 16, jump 4, start 0.5 + (2 - 2)*2 = 0.5, out 4
    frame = receptive_fields(_stack(), (1, 16, 16))
    expected = {
        "conv1": (3, 3, 1, 1, 0.0, 0.0, 16, 16), "act1": (3, 3, 1, 1, 0.0, 0.0, 16, 16),
        "pool1": (4, 4, 2, 2, 0.5, 0.5, 8, 8),
        "conv2": (8, 8, 2, 2, 0.5, 0.5, 8, 8), "bn2": (8, 8, 2, 2, 0.5, 0.5, 8, 8),
        "drop2": (8, 8, 2, 2, 0.5, 0.5, 8, 8),
        "conv3": (16, 16, 4, 4, 0.5, 0.5, 4, 4),
    }
    assert _fields(frame) == expected  # stops at flatten
    assert list(frame.type[:3]) == ["Conv2d", "ReLU", "MaxPool2d"]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_receptive_fields_of_non_square_dilated_ceil_mode_and_same_padding_layers():
    # 11x13 input, (height, width):
    # conv1 k(3,5) d(2,1) -> effective (5,5), s(1,2), p(2,0): size (5,5), jump (1,2),
    #   start (0 + (2-2)*1, 0 + (2-0)*1) = (0, 2), out ((11+4-5)//1+1, (13-5)//2+1) = (11, 5)
    # pool1 k2 s2 ceil: size (5+1, 5+2) = (6, 7), start (0+0.5, 2+1) = (0.5, 3), jump (2, 4),
    #   out (ceil(9/2)+1, ceil(3/2)+1) = (6, 3)
    # conv2 k4 'same' (pad 1 before, 2 after): size (6+3*2, 7+3*4) = (12, 19),
    #   start (0.5 + (1.5-1)*2, 3 + (1.5-1)*4) = (1.5, 5), out (6, 3)
    model = _odd_stack()
    frame = receptive_fields(model, (11, 13))
    assert _fields(frame) == {
        "conv1": (5, 5, 1, 2, 0.0, 2.0, 11, 5),
        "pool1": (6, 7, 2, 4, 0.5, 3.0, 6, 3),
        "conv2": (12, 19, 2, 4, 1.5, 5.0, 6, 3),
    }
    sizes = _output_sizes(model, torch.zeros(1, 1, 11, 13))
    assert {r.layer: (r.out_h, r.out_w) for r in frame.itertuples()} == sizes


@pytest.mark.parametrize("ceil", [False, True])
def test_output_sizes_match_torch_for_padded_strided_dilated_pools_and_convs(ceil):
    configs = [(k, s, p, d) for k in (1, 2, 3) for s in (1, 2, 3) for p in range(k // 2 + 1) for d in (1, 2)]
    for n in (1, 3, 4, 5):
        for k, s, p, d in configs:
            layers = [nn.MaxPool2d(k, s, p, d, ceil_mode=ceil), nn.AvgPool2d(k, s, p, ceil_mode=ceil)]
            for model in map(nn.Sequential, layers if ceil else [*layers, nn.Conv2d(1, 1, k, s, p, d)]):
                try:
                    expected = model(torch.zeros(1, 1, n, n + 1)).shape[-2:]
                except RuntimeError:  # torch: no pixels left
                    with pytest.raises(UserError, match="no pixels"):
                        receptive_fields(model, (n, n + 1))
                    continue
                frame = receptive_fields(model, (n, n + 1))
                assert (frame.out_h[0], frame.out_w[0]) == tuple(expected), (model, n)


def test_boxes_at_a_deep_layer_by_hand_including_clipping():
    frame = receptive_fields(_stack(), (1, 16, 16)).set_index("layer", drop=False)
    # conv3 (1, 2): centre (0.5 + 4*1, 0.5 + 4*2) = (4.5, 8.5), half-width 7.5 -> rows -3..13, cols 1..17
    assert receptive_field_box(frame.loc["conv3"], 1, 2, 16) == (0, 1, 13, 16)
    # conv3 (0, 0): centre 0.5 -> -7..9 both ways, clipped at the top-left corner
    assert receptive_field_box(frame.loc["conv3"], 0, 0, (16, 16)) == (0, 0, 9, 9)
    # conv2 (3, 4): centre (6.5, 8.5), half-width 3.5 -> rows 3..11, cols 5..13, inside the image
    assert receptive_field_box(frame.loc["conv2"], 3, 4, (1, 16, 16)) == (3, 5, 11, 13)
    # pool1 (7, 7): centre 14.5, half-width 1.5 -> 13..17, clipped at the bottom-right
    assert receptive_field_box(frame.loc["pool1"], 7, 7, 16) == (13, 13, 16, 16)
    with pytest.raises(UserError, match="outside"):
        receptive_field_box(frame.loc["conv3"], 4, 0, 16)


def _influence(model, layer, shape, i, j, delta, generator) -> np.ndarray:
    """Which input pixels change unit (0, i, j) of ``layer`` when moved by ``delta``, one pixel at a time."""
    height, width = shape
    base = torch.rand(1, 1, height, width, dtype=torch.float64, generator=generator)
    perturbed = base.repeat(height * width, 1, 1, 1)
    perturbed.view(height * width, -1)[torch.arange(height * width), torch.arange(height * width)] += delta
    with torch.no_grad():
        out = _prefix(model, layer)(torch.cat([base, perturbed]))[:, 0, i, j]
    return ((out[1:] - out[0]).abs() > 1e-9).reshape(height, width).numpy()


def _box_mask(box, shape):
    mask = np.zeros(shape, dtype=bool)
    top, left, bottom, right = box
    mask[top:bottom, left:right] = True
    return mask


@pytest.mark.parametrize("make, shape", [
    (lambda: _stack(nn.MaxPool2d), (16, 16)),
    (lambda: _stack(nn.AvgPool2d), (16, 16)),
    (_odd_stack, (11, 13)),
])
def test_only_pixels_inside_the_box_affect_a_unit(make, shape):
    generator = torch.Generator().manual_seed(0)
    model = make().double()
    frame = receptive_fields(model, shape).set_index("layer", drop=False)
    dilated = make is _odd_stack
    for layer in ["conv1", "pool1", "conv2", *([] if dilated else ["conv3"])]:
        row = frame.loc[layer]
        for i, j in [(0, 0), (row.out_h - 1, row.out_w - 1), (row.out_h // 2, row.out_w // 3)]:
            box = _box_mask(receptive_field_box(row, i, j, shape), shape)
            # any weights: a pixel outside the box never changes the unit
            with torch.no_grad():
                for p in model.parameters():
                    p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64))
            assert not (_influence(model, layer, shape, i, j, 0.7, generator) & ~box).any()
            # positive weights and a large push: every connected pixel changes it (through max pools too)
            with torch.no_grad():
                for name, p in model.named_parameters():
                    p.copy_(torch.rand(p.shape, generator=generator, dtype=torch.float64) + 0.1
                            if name.endswith("weight") else torch.zeros_like(p))
            changed = _influence(model, layer, shape, i, j, 1e4, generator)
            assert not (changed & ~box).any()
            rows, cols = np.nonzero(changed)
            bounds = (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)
            assert bounds == receptive_field_box(row, i, j, shape)
            if not dilated:  # dilation leaves holes in the box; without it the field is the full box
                assert changed[box].all()


def test_vgg_cifar_preset_receptive_fields():
    model = create_model("vgg_cifar", input_shape=(3, 32, 32), num_classes=10)
    frame = receptive_fields(model, (3, 32, 32))
    fields = {r.layer: (r.size_h, r.jump_h, r.start_h, r.out_h) for r in frame.itertuples()}
    assert fields["conv1"] == (3, 1, 0.0, 32)
    assert fields["pool1"] == (4, 2, 0.5, 16)
    assert fields["conv2"] == (8, 2, 0.5, 16)
    assert fields["pool2"] == (10, 4, 1.5, 8)
    assert fields["conv3"] == (18, 4, 1.5, 8)
    assert fields["conv4"] == (26, 4, 1.5, 8)
    assert fields["pool4"] == (30, 8, 3.5, 4)
    assert frame.layer.iloc[-1] == "drop4" and (frame.size_h == frame.size_w).all()
    sizes = _output_sizes(model, torch.zeros(2, 3, 32, 32))
    assert all(sizes[r.layer] == (r.out_h, r.out_w) for r in frame.itertuples())


def test_models_that_are_not_a_plain_conv_chain_raise_user_errors():
    resnet = create_model({"kind": "resnet", "stages": [{"channels": 4, "blocks": 1}]}, (3, 8, 8), 5)
    with pytest.raises(UserError, match="plain chain.*stage1_block1.*BasicBlock"):
        receptive_fields(resnet, (3, 8, 8))
    with pytest.raises(UserError, match="BasicBlock's forward combines tensors"):
        receptive_fields(resnet.stage1_block1, (4, 8, 8))
    with pytest.raises(UserError, match="no pixels"):
        receptive_fields(_stack(), (1, 1, 1))


def _images(n, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 12, 12), dtype=torch.uint8, generator=generator)


def _cnn():
    torch.manual_seed(0)
    blocks = [{"channels": 4, "kernel": 3, "pool": "max"}, {"channels": 6, "kernel": 3}]
    spec = {"kind": "cnn", "blocks": blocks,
            "fc": [8], "batch_norm": True, "dropout": 0.5}
    model = create_model(spec, (3, 12, 12), 5)
    with torch.no_grad():  # running statistics that make train and eval mode differ
        model.bn2.running_mean.uniform_(-1, 1)
        model.bn2.running_var.uniform_(0.5, 2)
    return model


def _brute_force(model, layer, images, mean, std, channel, k):
    """Loop over images: each image's maximum and its position, the k largest first."""
    prefix = _prefix(model, layer)
    best = []
    with torch.no_grad():
        for n in range(len(images)):
            act = prefix(to_float(images[n:n + 1], mean, std))[0, channel]
            position = int(act.argmax())
            best.append((float(act.max()), n, *divmod(position, act.shape[1])))
    return sorted(best, reverse=True)[:k]


def test_top_activations_equal_a_brute_force_loop_over_images():
    model = _cnn()
    model.train()
    model.drop1.eval()  # a mixed mode that must come back as it was
    images = _images(37, seed=1)
    mean, std = torch.tensor([0.4, 0.5, 0.6]), torch.tensor([0.2, 0.25, 0.3])
    table = top_activations(model, "bn2", images, mean, std, channels=[1, 3, 5], k=5, batch_size=8)
    assert model.training and model.bn2.training and not model.drop1.training
    assert not model.bn2._forward_hooks
    assert list(table.columns) == ["layer", "channel", "rank", "image", "i", "j", "value",
                                   "top", "left", "bottom", "right"]
    row = receptive_fields(model, (3, 12, 12)).set_index("layer").loc["bn2"]
    model.train()
    for channel in [1, 3, 5]:
        rows = table[table.channel == channel].sort_values("rank")
        expected = _brute_force(model, "bn2", images, mean, std, channel, 5)
        assert list(rows["rank"]) == list(range(5)) and (rows.layer == "bn2").all()
        assert list(rows.image) == [n for _, n, _, _ in expected]
        assert list(zip(rows.i, rows.j)) == [(i, j) for _, _, i, j in expected]
        np.testing.assert_allclose(rows.value, [v for v, _, _, _ in expected], rtol=1e-5)
        boxes = [receptive_field_box(row, i, j, 12) for i, j in zip(rows.i, rows.j)]
        assert list(zip(rows.top, rows.left, rows.bottom, rows.right)) == boxes


def test_top_activations_of_all_channels_after_the_nonlinearity():
    model = _cnn()
    images = _images(6, seed=2)
    mean, std = torch.full((3,), 0.5), torch.full((3,), 0.25)
    table = top_activations(model, "act2", images.numpy(), mean, std, channels=None, k=9, batch_size=4)
    assert sorted(set(table.channel)) == list(range(6))
    assert (table.groupby("channel").image.nunique() == 6).all()  # k > N: every image once per channel
    with torch.no_grad():
        act = _prefix(model, "act2")(to_float(images, mean, std))
    for r in table.itertuples():  # each entry is the image's maximum, at its position
        assert act[r.image, r.channel, r.i, r.j].item() == pytest.approx(r.value)
        assert r.value == pytest.approx(act[r.image, r.channel].max().item())
    assert (table.groupby("channel").value.diff().dropna() <= 0).all()  # strongest first


def test_bad_layers_and_channels_raise_user_errors():
    model, images = _cnn(), torch.zeros(2, 3, 12, 12, dtype=torch.uint8)
    with pytest.raises(UserError, match="fc1.*no spatial"):
        top_activations(model, "fc1", images, torch.zeros(3), torch.ones(3), channels=[0])
    with pytest.raises(UserError, match="channels"):
        top_activations(model, "conv2", images, torch.zeros(3), torch.ones(3), channels=[6])
    assert model.training and not model.conv2._forward_hooks
    with pytest.raises(UserError, match="uint8"):
        top_activations(model, "conv2", images.float(), torch.zeros(3), torch.ones(3), channels=[0])


def test_patches_have_the_box_shape_and_pixels():
    model = _cnn()
    images = _images(20, seed=3)
    table = top_activations(model, "act2", images, torch.full((3,), 0.5), torch.full((3,), 0.25), [0, 2], k=4)
    patches = neuron_patches(images, table)
    assert len(patches) == len(table) == 8
    for patch, r in zip(patches, table.itertuples()):
        assert patch.dtype == np.uint8 and patch.shape == (r.bottom - r.top, r.right - r.left, 3)
        box = images[r.image, :, r.top:r.bottom, r.left:r.right]
        np.testing.assert_array_equal(patch, box.permute(1, 2, 0))


def test_interesting_channels_rank_by_mean_top_k_activation():
    # means: channel 0 -> 1, 1 -> 2.5, 2 -> 3, 3 -> 1 (a tie with 0: the lower channel first)
    values = [1.0, 1.0, 5.0, 0.0, 3.0, 3.0, 1.5, 0.5]
    table = pd.DataFrame({"channel": [0, 0, 1, 1, 2, 2, 3, 3], "value": values})
    assert interesting_channels(table, 3) == [2, 1, 0]
    assert interesting_channels(table) == [2, 1, 0, 3]


def test_plot_neurons_has_a_row_per_channel_and_saves_as_png():
    model = _cnn()
    images = _images(10, seed=4)
    table = top_activations(model, "act2", images, torch.full((3,), 0.5), torch.full((3,), 0.25), None, k=3)
    fig = plot_neurons(images, table, [4, 1])
    assert len(fig.axes) == 2 * 3
    assert "act2" in fig.axes[0].get_ylabel() and "4" in fig.axes[0].get_ylabel()
    assert "1" in fig.axes[3].get_ylabel()
    shown = fig.axes[3].get_images()[0].get_array()
    first = table[(table.channel == 1) & (table["rank"] == 0)]
    np.testing.assert_array_equal(shown, neuron_patches(images, first)[0])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    assert Image.open(io.BytesIO(buffer.getvalue())).format == "PNG"
    with pytest.raises(UserError, match="not in the table"):
        plot_neurons(images, table, [9])


def test_default_layer_is_the_activation_after_the_last_conv_whatever_the_names():
    cnn = create_model({"kind": "cnn", "blocks": [{"channels": 4}, {"channels": 4}], "batch_norm": True},
                       (3, 12, 12), 3)
    assert last_conv_activation(cnn) == "act2"  # conv2, bn2, act2: batch norm is not the activation
    plain = nn.Sequential(OrderedDict([
        ("c", nn.Conv2d(1, 2, 3)), ("relu", nn.ReLU()),
        ("features", nn.Conv2d(2, 2, 3)), ("norm", nn.BatchNorm2d(2)), ("drop", nn.Dropout()),
        ("squash", nn.GELU()), ("flat", nn.Flatten()), ("head", nn.Linear(8, 2)),
    ]))
    assert last_conv_activation(plain) == "squash"
    unactivated = nn.Sequential(OrderedDict([  # the activation after the flatten is not spatial
        ("first", nn.Conv2d(1, 2, 3)), ("second", nn.Conv2d(2, 2, 3)), ("pool", nn.MaxPool2d(2)),
        ("flat", nn.Flatten()), ("relu", nn.ReLU()), ("head", nn.Linear(8, 2)),
    ]))
    assert last_conv_activation(unactivated) == "second"
    with pytest.raises(UserError, match="no nn.Conv2d"):
        last_conv_activation(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))


def test_peak_activations_are_each_channels_maximum_over_positions():
    model, images = _cnn(), _images(11, seed=5)
    mean, std = torch.full((3,), 0.5), torch.full((3,), 0.25)
    model.train()
    peaks = peak_activations(model, "act2", images, mean, std, batch_size=4)
    assert model.training
    with torch.no_grad():
        direct = _prefix(model, "act2")(to_float(images, mean, std))
        dense = _prefix(model, "fc1")(to_float(images, mean, std))
    torch.testing.assert_close(peaks, direct.flatten(2).amax(2))
    torch.testing.assert_close(peak_activations(model, "fc1", images, mean, std), dense)  # no positions


def test_class_rows_hold_only_their_class_ranked_by_activation():
    model, images = _cnn(), _images(30, seed=6)
    labels = torch.tensor([0, 2, 2, 1, 0, 2] * 5)
    mean, std = torch.full((3,), 0.5), torch.full((3,), 0.25)
    per_class = top_activations_per_class(model, "act2", images, labels, mean, std, channels=None, k=4)
    assert list(per_class.columns[:2]) == ["class", "layer"]
    assert (labels.numpy()[per_class.image.to_numpy()] == per_class["class"].to_numpy()).all()
    with torch.no_grad():
        peaks = _prefix(model, "act2")(to_float(images, mean, std)).flatten(2).amax(2)  # N x channels
    rows = class_rows(per_class)
    assert sorted(set(rows["class"])) == [0, 1, 2]
    members = [torch.nonzero(labels == label).flatten() for label in (0, 1, 2)]
    means = torch.stack([peaks[m].topk(4, dim=0).values.mean(0) for m in members])  # classes x channels
    for label in (0, 1, 2):
        others = torch.cat([means[:label], means[label + 1:]]).amax(0)
        channel = int((means[label] - others).argmax())  # the channel most selective for the class
        best_values, best = peaks[members[label]].topk(4, dim=0)  # each channel's top 4 among its images
        row = rows[rows["class"] == label].sort_values("rank")
        assert set(row.channel) == {channel} and list(row["rank"]) == [0, 1, 2, 3]
        assert list(row.image) == members[label][best[:, channel]].tolist()  # its images, strongest first
        np.testing.assert_allclose(row.value, best_values[:, channel], rtol=1e-5)


def test_plot_neurons_with_a_row_per_class():
    model, images = _cnn(), _images(24, seed=7)
    labels = torch.arange(24) % 3
    table = class_rows(top_activations_per_class(model, "act2", images, labels, torch.full((3,), 0.5),
                                                 torch.full((3,), 0.25), k=3))
    fig = plot_neurons(images, table, rows="class", classes=["cat", "dog", "ship"])
    axes = np.array(fig.axes).reshape(3, 3)
    for label, name in enumerate(["cat", "dog", "ship"]):
        row = table[table["class"] == label].sort_values("rank")
        assert axes[label, 0].get_ylabel() == f"{name}\nch {row.channel.iloc[0]}"
        for ax, patch in zip(axes[label], neuron_patches(images, row)):
            np.testing.assert_array_equal(ax.get_images()[0].get_array(), patch)
    assert "per class" in fig.get_suptitle()
    with pytest.raises(UserError, match="class column"):
        plot_neurons(images, table.drop(columns="class"), rows="class")
    with pytest.raises(UserError, match="valid choices: channel, class"):
        plot_neurons(images, table, rows="classes")
    with pytest.raises(UserError, match="one class per image"):
        top_activations_per_class(model, "act2", images, labels[:3], torch.zeros(3), torch.ones(3))


class _OwnForward(nn.Module):
    """_stack's layers in a module of its own: nested containers, a functional ReLU and a view."""

    def __init__(self):
        super().__init__()
        stack = _stack()
        self.first = nn.Sequential(stack.conv1, stack.act1)
        self.rest = nn.ModuleDict({"pool1": stack.pool1, "conv2": stack.conv2, "bn2": stack.bn2})
        self.drop2, self.conv3, self.fc = stack.drop2, stack.conv3, stack.fc

    def forward(self, x):
        x = self.rest["pool1"](self.first(x))
        x = self.drop2(torch.nn.functional.relu(self.rest["bn2"](self.rest["conv2"](x))))
        x = self.conv3(x)
        return self.fc(x.view(x.size(0), -1))


def test_a_module_whose_forward_chains_its_layers_has_the_fields_of_the_same_sequential():
    own = receptive_fields(_OwnForward(), (1, 16, 16))
    sequential = receptive_fields(_stack(), (1, 16, 16))
    names = {"first.0": "conv1", "first.1": "act1", "rest.pool1": "pool1", "rest.conv2": "conv2",
             "rest.bn2": "bn2", "drop2": "drop2", "conv3": "conv3"}
    assert own["layer"].tolist() == list(names)
    own["layer"] = own["layer"].map(names)
    pd.testing.assert_frame_equal(own, sequential.iloc[:len(own)])
    model = _OwnForward()
    assert last_conv_activation(model) == "conv3"
    table = top_activations(model.eval(), "conv3", torch.randint(0, 256, (5, 1, 16, 16), dtype=torch.uint8),
                            torch.zeros(1), torch.ones(1), channels=[0], k=2)
    assert table["layer"].eq("conv3").all() and len(table) == 2


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.act = nn.Conv2d(1, 1, 3, padding=1), nn.ReLU()

    def forward(self, x):
        return self.act(self.conv(x) + x)


class _SharedActivation(_Residual):
    def forward(self, x):
        return self.act(self.conv(self.act(x)))


class _FunctionalPool(_Residual):
    def forward(self, x):
        return torch.nn.functional.max_pool2d(self.conv(x), 2)


@pytest.mark.parametrize("model, message", [
    (_Residual(), "_Residual's forward combines tensors at 'add'"),
    (_SharedActivation(), "_SharedActivation's forward calls 'act' twice"),
    (_FunctionalPool(), "_FunctionalPool's forward calls 'max_pool2d' (use an nn module"),
])
def test_a_forward_that_is_not_a_plain_chain_is_named(model, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        receptive_fields(model, (1, 8, 8))
