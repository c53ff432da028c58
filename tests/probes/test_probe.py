import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import trainlab
from trainlab.config import load_config
from trainlab.data import load_data, to_float
from trainlab.models import create_model


def _value(frame, layer, tensor, quantity, stat, step=None):
    rows = frame[(frame.layer == layer) & (frame.tensor == tensor) & (frame.quantity == quantity)
                 & (frame.stat == stat)]
    if step is not None:
        rows = rows[rows.step == step]
    assert len(rows) == 1, (layer, tensor, quantity, stat, len(rows))
    return rows.value.iloc[0]


def _train_probed(model, steps=3, every=1, lr=0.1, **options):
    torch.manual_seed(0)
    x, y = torch.randn(32, 1, 4, 4), torch.randint(0, 3, (32,))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    grads, weights = [], []
    with trainlab.probe(model, every=every, **options) as p:
        for _ in range(steps):
            F.cross_entropy(model(x), y).backward()
            grads.append({n: q.grad.clone() for n, q in model.named_parameters()})
            weights.append({n: q.detach().clone() for n, q in model.named_parameters()})
            p.step()
            opt.step()
            opt.zero_grad()
    return p, grads, weights


def test_gradient_and_weight_stats_equal_direct_computations():
    model = create_model({"kind": "cnn", "blocks": [{"channels": 3}], "fc": [8], "activation": "tanh"}, (1, 4, 4), 3)
    p, grads, weights = _train_probed(model)
    frame = p.frame()
    for step in range(3):
        for name, grad in grads[step].items():
            layer, tensor = name.rsplit(".", 1)
            assert _value(frame, layer, tensor, "grad", "norm", step) == pytest.approx(grad.norm().item(), abs=1e-6)
            assert _value(frame, layer, tensor, "grad", "mean", step) == pytest.approx(grad.mean().item(), abs=1e-6)
            assert _value(frame, layer, tensor, "grad", "std", step) == pytest.approx(grad.std().item(), abs=1e-6)
            assert _value(frame, layer, tensor, "grad", "abs_mean", step) == pytest.approx(
                grad.abs().mean().item(), abs=1e-6)
            assert _value(frame, layer, tensor, "grad", "max_abs", step) == pytest.approx(
                grad.abs().max().item(), abs=1e-6)
            weight = weights[step][name]
            assert _value(frame, layer, tensor, "weight", "norm", step) == pytest.approx(weight.norm().item(), abs=1e-6)
    # the update ratio of step s is |w(s+1) - w(s)| / |w(s)|, the optimizer's step after the probe
    w0, w1 = weights[0]["fc1.weight"], weights[1]["fc1.weight"]
    expected = ((w1 - w0).norm() / w0.norm()).item()
    assert _value(frame, "fc1", "weight", "update_ratio", "norm", 0) == pytest.approx(expected, rel=1e-5)
    assert set(frame.columns) == {"step", "layer", "tensor", "quantity", "stat", "value"}


def test_layers_come_in_forward_order_and_every_selects_steps():
    model = create_model({"kind": "mlp", "hidden": [8, 8]}, (1, 4, 4), 3)
    p, _, _ = _train_probed(model, steps=7, every=3)
    frame = p.frame()
    assert sorted(frame.step.unique()) == [0, 3, 6]
    layers = list(dict.fromkeys(frame[frame.step == 0].layer))
    assert layers == ["fc1", "act1", "fc2", "act2", "out"]


def test_dead_and_saturated_fractions_on_hand_made_layers():
    layer = nn.Linear(3, 4)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0, 0], [-1, 0, 0], [0, 0, 0], [0, 100, 0]]))
        layer.bias.copy_(torch.tensor([0.0, -10, -1, 0]))
    x = torch.tensor([[1.0, 1, 0], [2, -1, 0], [3, 1, 0]])  # x0 > 0 for every sample
    for act, stat, expected in [(nn.ReLU(), "dead_frac", 2 / 4),  # units 1 and 2 are zero for the batch
                                (nn.Tanh(), "saturated_frac", np.mean(np.abs(np.tanh(
                                    (x @ layer.weight.T + layer.bias).detach().numpy())) > 0.99))]:
        model = nn.Sequential(layer, act)
        with trainlab.probe(model) as p:
            model(x).sum().backward()
            p.step()
        assert _value(p.frame(), "1", "output", "activation", stat) == pytest.approx(expected)
        layer.zero_grad()


def test_histograms_count_every_element():
    model = create_model({"kind": "mlp", "hidden": [8]}, (1, 4, 4), 3)
    p, grads, _ = _train_probed(model, steps=1, bins=10)
    hists = p.histograms()
    row = hists[(hists.layer == "fc1") & (hists.tensor == "weight") & (hists.quantity == "grad")].iloc[0]
    grad = grads[0]["fc1.weight"]
    assert row.counts.sum() == grad.numel() and len(row.edges) == 11
    assert row.edges[0] == pytest.approx(grad.min().item()) and row.edges[-1] == pytest.approx(grad.max().item())
    expected, _ = np.histogram(grad.numpy(), bins=row.edges)
    assert np.abs(row.counts - expected).sum() <= 2  # float edge cases at bin boundaries
    p_log, _, _ = _train_probed(create_model({"kind": "mlp", "hidden": [8]}, (1, 4, 4), 3), steps=1,
                                log_magnitude=True)
    log_row = p_log.histograms().iloc[0]
    assert log_row.edges[0] == -12 and log_row.edges[-1] == 2


def test_sigmoid_gradients_vanish_in_a_deep_mlp_and_relu_ones_do_not():
    cfg = load_config({"data": {"name": "digits"}})
    data = load_data(cfg.data)
    x, y = to_float(data.train.x[:256], data.mean, data.std), data.train.y[:256]
    first_layer = {}
    for activation in ("sigmoid", "relu"):
        torch.manual_seed(0)
        model = create_model({"kind": "mlp", "hidden": [64] * 10, "activation": activation,
                              "init": "xavier_uniform"}, data.input_shape, data.num_classes)
        with trainlab.probe(model) as p:
            F.cross_entropy(model(x), y).backward()
            p.step()
        first_layer[activation] = _value(p.frame(), "fc1", "weight", "grad", "abs_mean")
    assert first_layer["sigmoid"] * 100 <= first_layer["relu"]


def test_tensorboard_files_read_back_with_tensorboards_event_reader(tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    from trainlab.probes.tensorboard import write_tensorboard

    model = create_model({"kind": "mlp", "hidden": [8]}, (1, 4, 4), 3)
    p, grads, _ = _train_probed(model, steps=2, bins=8)
    history = __import__("pandas").DataFrame({"epoch": [1, 2], "test_acc": [0.5, 0.75]})
    write_tensorboard(tmp_path, p.frame(), p.histograms(), history)
    reader = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "histograms": 0})
    reader.Reload()
    norms = reader.Scalars("grad/fc1.weight/norm")
    assert [e.step for e in norms] == [0, 1]
    assert norms[1].value == pytest.approx(grads[1]["fc1.weight"].norm().item(), rel=1e-6)
    assert [e.value for e in reader.Scalars("metrics/test_acc")] == [0.5, 0.75]
    hist = reader.Histograms("grad/fc1.weight")[0].histogram_value
    expected = p.histograms().query("layer == 'fc1' and tensor == 'weight' and quantity == 'grad'").iloc[0]
    assert list(hist.bucket) == expected.counts.tolist() and hist.num == grads[0]["fc1.weight"].numel()
