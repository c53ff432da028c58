import copy
import warnings

import numpy as np
import pytest
import torch
from captum.attr import GuidedBackprop, NeuronGuidedBackprop, Saliency
from torch import nn

from trainlab.analysis.attribution import SIDE_BY_SIDE_PAIRS, guided_backprop, plot_attributions, saliency
from trainlab.report.figures import overlapping_texts
from trainlab.errors import UserError
from trainlab.models.registry import create_model

ATOL = 1e-5


def captum_guided(model, inputs, target):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GuidedBackprop(model).attribute(inputs.clone(), target=target)


def small_cnn(**overrides):
    torch.manual_seed(0)
    spec = {"kind": "cnn", "blocks": [{"channels": 4, "kernel": 3, "pool": "max"}, {"channels": 6}],
            "fc": [16], "batch_norm": True, **overrides}
    model = create_model(spec, (3, 16, 16), 10)
    with torch.no_grad():  # non-trivial batch norm statistics, so eval mode differs from identity
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def no_hooks(model):
    return all(not (m._forward_pre_hooks or m._forward_hooks or m._backward_hooks) for m in model.modules())


def test_guided_backprop_equals_captum_on_a_batch_norm_cnn():
    model, x = small_cnn(), torch.randn(4, 3, 16, 16)
    ours = guided_backprop(model, x, 3)
    assert ours.shape == x.shape
    assert ours.abs().max() > 1e-4
    torch.testing.assert_close(ours, captum_guided(model, x, 3), atol=ATOL, rtol=0)
    # guided backprop differs from the plain gradient: the ReLU hooks did act
    assert (ours - saliency(model, x, 3, abs=False)).abs().max() > 1e-4


def test_guided_backprop_equals_captum_on_a_resnet():
    torch.manual_seed(1)
    spec = {"kind": "resnet", "stem_channels": 4, "stages": [{"channels": 4}, {"channels": 6, "stride": 2}]}
    model, x = create_model(spec, (3, 12, 12), 5).eval(), torch.randn(3, 3, 12, 12)
    torch.testing.assert_close(guided_backprop(model, x, 2), captum_guided(model, x, 2), atol=ATOL, rtol=0)


def inplace_net(inplace):
    torch.manual_seed(2)
    return nn.Sequential(
        nn.ReLU(inplace=inplace), nn.Conv2d(2, 3, 3), nn.ReLU(inplace=inplace), nn.Conv2d(3, 3, 3),
        nn.ReLU(inplace=inplace), nn.Flatten(), nn.Linear(3 * 4 * 4, 6), nn.ReLU(inplace=inplace),
        nn.Linear(6, 4),
    )


def test_guided_backprop_with_inplace_relus():
    x = torch.randn(3, 2, 8, 8)
    kept = x.clone()
    ours = guided_backprop(inplace_net(True), x, 1)
    torch.testing.assert_close(ours, captum_guided(inplace_net(True), x, 1), atol=ATOL, rtol=0)
    torch.testing.assert_close(ours, guided_backprop(inplace_net(False), x, 1), atol=0, rtol=0)
    assert torch.equal(x, kept)  # the first, in-place ReLU did not clip the caller's tensor
    assert ours.abs().max() > 1e-5


@pytest.mark.parametrize("target", [[0, 3, 7, 9], torch.tensor([9, 1, 1, 4])])
def test_per_sample_targets_equal_captum_and_single_examples(target):
    model, x = small_cnn(), torch.randn(4, 3, 16, 16)
    ours = guided_backprop(model, x, target)
    torch.testing.assert_close(ours, captum_guided(model, x, target), atol=ATOL, rtol=0)
    for i, t in enumerate(target):
        alone = guided_backprop(model, x[i : i + 1], int(t))
        torch.testing.assert_close(ours[i : i + 1], alone, atol=ATOL, rtol=0)


@pytest.mark.parametrize("abs_", [True, False])
@pytest.mark.parametrize("target", [5, [1, 2, 3, 4]])
def test_saliency_equals_captum(abs_, target):
    model, x = small_cnn(), torch.randn(4, 3, 16, 16)
    ours = saliency(model, x, target, abs=abs_)
    theirs = Saliency(model).attribute(x.clone().requires_grad_(), target=target, abs=abs_)
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)
    assert (ours.min() >= 0) if abs_ else (ours.min() < 0)


def test_saliency_is_the_input_gradient():
    torch.manual_seed(3)
    weight = torch.randn(4, 5)
    x = torch.randn(2, 5)
    model = nn.Linear(5, 4, bias=False)
    with torch.no_grad():
        model.weight.copy_(weight)
    grad = saliency(model, x, 2, abs=False)
    torch.testing.assert_close(grad, weight[2].expand(2, 5))


class GuidedReLU(torch.autograd.Function):
    """ReLU whose backward passes only positive gradients where its input was positive."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad.clamp(min=0) * (x > 0)


def tiny_net():
    torch.manual_seed(4)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3),
        nn.Flatten(), nn.Linear(2 * 4 * 4, 3),
    )


def by_hand(model, x, channel, reduction):
    """Guided gradient of the third conv's channel, written out with GuidedReLU instead of hooks."""
    x = x.clone().requires_grad_(True)
    h = model[4](GuidedReLU.apply(model[2](GuidedReLU.apply(model[0](x)))))
    values = h[:, channel].flatten(1)
    objective = values.sum(1) if reduction == "sum" else values.amax(1)
    return torch.autograd.grad(objective.sum(), x)[0]


@pytest.mark.parametrize("reduction", ["sum", "max"])
def test_neuron_target_equals_hand_written_guided_relu_and_captum(reduction):
    model, x = tiny_net(), torch.randn(3, 1, 10, 10)
    target = ("4", 1) if reduction == "sum" else ("4", 1, "max")
    ours = guided_backprop(model, x, target)
    assert ours.abs().max() > 1e-4
    torch.testing.assert_close(ours, by_hand(model, x, 1, reduction), atol=ATOL, rtol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pick = (lambda out: out[:, 1].sum((1, 2))) if reduction == "sum" else (
            lambda out: out[:, 1].flatten(1).amax(1))
        theirs = NeuronGuidedBackprop(model, model[4]).attribute(x.clone(), neuron_selector=pick)
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)


def test_max_neuron_target_is_local_and_differs_from_sum():
    model, x = tiny_net(), torch.randn(2, 1, 10, 10)
    at_max = guided_backprop(model, x, ("4", 0, "max"))
    summed = guided_backprop(model, x, ("4", 0))
    # one position of the third conv sees a 7 x 7 window of the input, so most pixels get no gradient
    assert ((at_max != 0).flatten(1).sum(1) <= 49).all()
    assert ((summed != 0).flatten(1).sum(1) > 49).all()


@pytest.mark.parametrize("method", [guided_backprop, saliency])
def test_neuron_target_before_an_inplace_relu_reads_the_layer_output(method):
    x = torch.randn(2, 2, 8, 8)
    ours = method(inplace_net(True), x, ("1", 2))
    torch.testing.assert_close(ours, method(inplace_net(False), x, ("1", 2)), atol=0, rtol=0)


def test_hooks_removed_mode_and_inputs_kept():
    model, x = small_cnn(), torch.randn(2, 3, 16, 16)
    state = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        before = model(x)
    plain_before = saliency(model, x, 4, abs=False)
    guided_backprop(model, x, 4)
    assert no_hooks(model)
    assert not any(m.training for m in model.modules())
    assert not x.requires_grad and x.grad is None
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, atol=0, rtol=0)
    torch.testing.assert_close(saliency(model, x, 4, abs=False), plain_before, atol=0, rtol=0)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())

    model.train()
    leaf = torch.randn(2, 3, 16, 16, requires_grad=True)
    guided_backprop(model, leaf, 1)
    assert all(m.training for m in model.modules())
    assert leaf.requires_grad and leaf.grad is None


def test_hooks_removed_after_an_error():
    model, x = small_cnn(), torch.randn(2, 3, 16, 16)
    with pytest.raises(UserError, match="conv2"):
        guided_backprop(model, x, ("conv9", 0))
    with pytest.raises(ValueError, match="one per example"):
        guided_backprop(model, x, None)
    assert no_hooks(model)


def test_plot_attributions_scales_each_attribution_to_unit_range():
    images = (torch.rand(3, 8, 8, 3) * 255).to(torch.uint8)
    attributions = torch.randn(3, 3, 8, 8) * torch.tensor([1e-3, 1.0, 50.0]).view(3, 1, 1, 1)
    fig = plot_attributions(images, attributions, titles=["cat", "dog", "ship"])
    axes = fig.axes
    assert len(axes) == 6 and fig._suptitle.get_text()
    assert [axes[i].get_title() for i in (0, 2, 4)] == ["cat", "dog", "ship"]
    for row in range(3):
        shown = np.asarray(axes[2 * row + 1].images[0].get_array())
        assert shown.min() == 0 and shown.max() == pytest.approx(1)
        expected = attributions[row].permute(1, 2, 0).numpy()
        expected = (expected - expected.min()) / (expected.max() - expected.min())
        np.testing.assert_allclose(shown, expected, atol=1e-6)
        np.testing.assert_allclose(np.asarray(axes[2 * row].images[0].get_array()), images[row] / 255.0)


def test_plot_attributions_grayscale_channels_first():
    images = torch.rand(2, 1, 6, 6)
    fig = plot_attributions(images, torch.randn(2, 1, 6, 6))
    assert fig.axes[0].images[0].get_array().shape == (6, 6)
    with pytest.raises(ValueError, match="2 images but 3"):
        plot_attributions(images, torch.randn(3, 1, 6, 6))


@pytest.mark.parametrize("method", [guided_backprop, saliency])
@pytest.mark.parametrize("reduction", ["sum", "max"])
def test_several_neurons_equal_one_neuron_at_a_time(method, reduction):
    model, x = small_cnn(), torch.randn(6, 3, 16, 16)
    channels = [0, 0, 3, 3, 5, 1]  # one channel per example: each neuron on its own images
    together = method(model, x, ("bn2", torch.tensor(channels), reduction))
    assert together.abs().flatten(1).amax(1).min() > 1e-6
    for i, channel in enumerate(channels):
        alone = method(model, x[i:i + 1], ("bn2", channel, reduction))
        torch.testing.assert_close(together[i:i + 1], alone, atol=ATOL, rtol=0)
    torch.testing.assert_close(method(model, x, ("bn2", channels, reduction)), together, atol=0, rtol=0)
    with pytest.raises(ValueError, match="2 neuron channels for 6 examples"):
        method(model, x, ("bn2", [0, 1], reduction))
    with pytest.raises(ValueError, match="a neuron target is"):
        method(model, x, ("bn2", [0.5] * 6, reduction))


def test_plot_attributions_lays_out_a_grid_with_row_titles():
    images = (torch.rand(6, 5, 5) * 255).to(torch.uint8)
    attributions = torch.randn(6, 5, 5)
    fig = plot_attributions(images, attributions, titles=list("abcdef"), per_row=3,
                            row_titles=["ch 4", "ch 9"])
    axes = np.array(fig.axes).reshape(2, 6)  # 2 rows of 3 (image, attribution) pairs, not one tall column
    assert fig.get_figwidth() > fig.get_figheight()
    for i in range(6):
        row, column = divmod(i, 3)
        assert axes[row, 2 * column].get_title() == "abcdef"[i]
        np.testing.assert_allclose(np.asarray(axes[row, 2 * column].images[0].get_array()), images[i] / 255.0)
        shown = np.asarray(axes[row, 2 * column + 1].images[0].get_array())
        expected = attributions[i].numpy()
        np.testing.assert_allclose(shown, (expected - expected.min()) / (expected.max() - expected.min()),
                                   atol=1e-6)
    assert [axes[r, 0].get_ylabel() for r in range(2)] == ["ch 4", "ch 9"]
    partial = plot_attributions(images[:5], attributions[:5], per_row=3)  # the last pair's place stays empty
    assert len(partial.axes) == 12 and not partial.axes[-1].axison and not partial.axes[-1].images
    with pytest.raises(ValueError, match="1 row titles for 2 rows"):
        plot_attributions(images, attributions, per_row=3, row_titles=["x"])


def test_plot_attributions_puts_a_wide_rows_attributions_below_its_images():
    images = (torch.rand(12, 5, 5) * 255).to(torch.uint8)
    attributions = torch.randn(12, 5, 5)
    per_row = SIDE_BY_SIDE_PAIRS + 1
    fig = plot_attributions(images, attributions, titles=[f"t{i}" for i in range(12)], per_row=per_row,
                            row_titles=["ch 4", "ch 9"])
    axes = np.array(fig.axes).reshape(4, per_row)  # image row, attribution row, image row, attribution row
    for i in range(12):
        row, column = divmod(i, per_row)
        assert axes[2 * row, column].get_title() == f"t{i}"
        np.testing.assert_allclose(np.asarray(axes[2 * row, column].images[0].get_array()), images[i] / 255.0)
        shown = np.asarray(axes[2 * row + 1, column].images[0].get_array())
        expected = attributions[i].numpy()
        np.testing.assert_allclose(shown, (expected - expected.min()) / (expected.max() - expected.min()),
                                   atol=1e-6)
    assert [axes[r, 0].get_ylabel() for r in range(4)] == ["ch 4", "attribution", "ch 9", "attribution"]
    # per_row columns, not 2 x per_row: each panel twice as wide at the same page width
    assert fig.axes[0].get_subplotspec().get_gridspec().get_geometry() == (4, per_row)
    side_by_side = plot_attributions(images, attributions, per_row=SIDE_BY_SIDE_PAIRS)
    assert side_by_side.axes[0].get_subplotspec().get_gridspec().get_geometry() == (3, 2 * SIDE_BY_SIDE_PAIRS)
    assert not overlapping_texts(fig)
