"""summary(): report 004's layer table for vgg_cifar, totals, shapes, modes."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from torch import nn

from trainlab.models import ModelSummary, create_model, summary

# Report 004 (Keras, channels last): layer -> (params, output shape); BN: 20 trainable + 20 non-trainable
VGG_TABLE = {
    "conv1": (1792, (32, 32, 64)),
    "pool1": (0, (16, 16, 64)),
    "conv2": (73856, (16, 16, 128)),
    "pool2": (0, (8, 8, 128)),
    "conv3": (295168, (8, 8, 256)),
    "conv4": (590080, (8, 8, 256)),
    "pool4": (0, (4, 4, 256)),
    "flatten": (0, (4096,)),
    "fc1": (4195328, (1024,)),
    "fc2": (1049600, (1024,)),
    "out": (10250, (10,)),
    "out_bn": (40, (10,)),
}


def channels_last(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (*shape[1:], shape[0]) if len(shape) == 3 else shape


@pytest.fixture(scope="module")
def vgg() -> ModelSummary:
    return summary(create_model("vgg_cifar", (3, 32, 32), 10), (3, 32, 32))


def test_vgg_cifar_matches_report_004(vgg: ModelSummary) -> None:
    rows = vgg.frame.set_index("name")
    for name, (params, shape) in VGG_TABLE.items():
        row = rows.loc[name]
        assert row.trainable + row.non_trainable == params, name
        assert channels_last(row.output_shape) == shape, name
    assert (rows.loc["out_bn", "trainable"], rows.loc["out_bn", "non_trainable"]) == (20, 20)
    with_params = rows[rows.trainable + rows.non_trainable > 0].index
    assert set(with_params) == {name for name, (params, _) in VGG_TABLE.items() if params}
    assert (vgg.total, vgg.trainable, vgg.non_trainable) == (6_216_114, 6_216_094, 20)


def test_vgg_cifar_outline_and_conv_dense_split_match_report_004(vgg: ModelSummary) -> None:
    assert vgg.outline == ("conv3x3(64) maxpool drop0.5 conv3x3(128) maxpool drop0.5 conv3x3(256) drop0.5 conv3x3(256) "
                           "maxpool drop0.5 fc1024 drop0.5 fc1024 drop0.5 fc10 bn")
    conv = sum(params for name, (params, _) in VGG_TABLE.items() if name.startswith("conv"))
    assert vgg.trainable_of("Conv2d") == conv == 960_896  # the report's conv parameters
    assert vgg.trainable_of("Linear") == 4195328 + 1049600 + 10250  # its 5,255,218 dense ones less out_bn's 40
    assert vgg.to_dict()["outline"] == vgg.outline
    assert vgg.units_of("Conv2d") == 64 * 32 * 32 + 128 * 16 * 16 + 256 * 8 * 8 + 256 * 8 * 8 == 131072  # as the report
    assert vgg.units_of("Linear") == 1024 + 1024 + 10 == 2058


def test_outline_names_kernels_strides_and_channels() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 5, stride=2), nn.ReLU(), nn.BatchNorm2d(8), nn.AvgPool2d(2), nn.Flatten(),
                          nn.Dropout(0.25), nn.Linear(8 * 3 * 3, 4))
    assert summary(model, (3, 16, 16)).outline == "conv5x5(8)/s2 bn avgpool drop0.25 fc4"


def test_vgg_cifar_row_order_and_text(vgg: ModelSummary) -> None:
    names = list(vgg.frame["name"])
    assert [n for n in names if n in VGG_TABLE] == list(VGG_TABLE)
    text = str(vgg)
    assert "6,216,114" in text and "4,195,328" in text
    assert all(name in text for name in VGG_TABLE)


def direct_counts(model: nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    buffers = sum(b.numel() for b in model.buffers() if b.is_floating_point())
    return trainable, frozen + buffers


MODELS = [
    ("mlp", {"hidden": [16, 8], "batch_norm": True, "output_batch_norm": True}),
    (
        "cnn",
        {"blocks": [{"channels": 4, "pool": "max"}], "fc": [8], "batch_norm": True, "activation": "maxout"},
    ),
    ("resnet", {"stem_channels": 4, "stages": [{"channels": 4}, {"channels": 8, "stride": 2}]}),
]


@pytest.mark.parametrize(("kind", "fields"), MODELS)
def test_totals_equal_direct_counts(kind: str, fields: dict) -> None:
    model = create_model(kind, (3, 8, 8), 5, **fields)
    next(model.parameters()).requires_grad_(False)
    result = summary(model, (3, 8, 8))
    trainable, non_trainable = direct_counts(model)
    assert (result.trainable, result.non_trainable, result.total) == (
        trainable,
        non_trainable,
        trainable + non_trainable,
    )
    assert (result.frame.trainable.sum(), result.frame.non_trainable.sum()) == (trainable, non_trainable)


def test_rows_record_the_shapes_of_a_direct_forward() -> None:
    model = create_model(
        "cnn", (3, 8, 8), 5, blocks=[{"channels": 4, "pool": "avg"}], fc=[6], batch_norm=True
    )
    model.eval()
    x, expected = torch.zeros(2, 3, 8, 8), []
    for name, child in model.named_children():
        y = child(x)
        expected.append((name, type(child).__name__, tuple(x.shape[1:]), tuple(y.shape[1:])))
        x = y
    frame = summary(model, (3, 8, 8)).frame
    got = list(frame[["name", "type", "input_shape", "output_shape"]].itertuples(index=False, name=None))
    assert got == expected


def test_resnet_rows_are_qualified_names() -> None:
    model = create_model("resnet", (3, 8, 8), 5, stem_channels=4, stages=[{"channels": 8, "stride": 2}])
    names = list(summary(model, (3, 8, 8)).frame["name"])
    assert names[:5] == ["stem_conv", "stem_bn", "stem_act", "stage1_block1.conv1", "stage1_block1.bn1"]
    assert "stage1_block1.shortcut.conv" in names and names[-1] == "out"


def test_modes_and_state_are_restored() -> None:
    model = create_model("mlp", (1, 4, 4), 3, hidden=[8], batch_norm=True, dropout=0.5)
    model.train()
    model.bn1.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summary(model, (1, 4, 4))
    assert model.training and not model.bn1.training and model.drop1.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


class WithUnusedLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Linear(3, 2)
        self.unused = nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.used(x)


def test_modules_never_called_count_in_totals() -> None:
    result = summary(WithUnusedLayer(), (3,))
    assert list(result.frame["name"]) == ["used"]
    assert result.total == 8 + 16


def test_to_dict_is_json_and_matches_the_frame() -> None:
    model = create_model("mlp", (1, 4, 4), 3, hidden=[8], batch_norm=True)
    result = summary(model, (1, 4, 4))
    data = result.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert [row["name"] for row in data["layers"]] == list(result.frame["name"])
    assert data["layers"][1] == {
        "name": "fc1",
        "type": "Linear",
        "input_shape": [16],
        "output_shape": [8],
        "trainable": 16 * 8 + 8,
        "non_trainable": 0,
    }
    assert (data["total"], data["trainable"], data["non_trainable"]) == (
        result.total,
        result.trainable,
        result.non_trainable,
    )


@pytest.mark.parametrize(("mode", "per_layer"), [("channel", lambda width: width), ("one", lambda _: 1)])
def test_prelu_slopes_are_counted(mode: str, per_layer) -> None:
    blocks = [{"channels": 4, "pool": "max"}, {"channels": 6}]
    fields = {"blocks": blocks, "fc": [7], "batch_norm": True}
    model = create_model("cnn", (3, 8, 8), 5, activation="prelu", prelu=mode, **fields)
    result = summary(model, (3, 8, 8))
    rows = result.frame.set_index("name").loc[["act1", "act2", "fc_act1"]]
    assert rows["type"].eq("PReLU").all()
    assert list(rows["trainable"]) == [per_layer(4), per_layer(6), per_layer(7)]
    trainable, non_trainable = direct_counts(model)
    assert (result.trainable, result.total) == (trainable, trainable + non_trainable)
    assert result.trainable == sum(p.numel() for p in model.parameters())
    relu = summary(create_model("cnn", (3, 8, 8), 5, **fields), (3, 8, 8))
    assert result.trainable - relu.trainable == per_layer(4) + per_layer(6) + per_layer(7)
    assert f"{result.total:,}" in str(result)


@pytest.mark.parametrize("kind", ["mlp", "resnet"])
def test_output_softmax_is_flagged(kind: str) -> None:
    fields = {"stem_channels": 4, "stages": [{"channels": 4}]} if kind == "resnet" else {"hidden": [8]}
    flagged = summary(create_model(kind, (1, 6, 6), 3, output_softmax=True, **fields), (1, 6, 6))
    plain = summary(create_model(kind, (1, 6, 6), 3, **fields), (1, 6, 6))
    assert list(flagged.frame["name"])[-2:] == ["out", "out_softmax"]
    assert plain.notes == [] and "Note:" not in str(plain)
    [note] = flagged.notes
    assert note.startswith("out_softmax:") and "probabilities, not logits" in note
    assert f"Note: {note}" in str(flagged).splitlines()
    assert flagged.to_dict()["notes"] == [note]
    assert flagged.total == plain.total


def test_report_model_summary_section_carries_the_note() -> None:
    from trainlab.config import load_config
    from trainlab.report.build import StudyData, _model_summary
    from trainlab.report.document import Text

    configs = {
        "a": load_config({"model": {"hidden": [8]}}).to_dict(),
        "b": load_config({"model": {"hidden": [8], "output_softmax": True}}).to_dict(),
    }
    runs = pd.DataFrame({"run_id": ["a", "b"], "label": ["logits", "softmax output"]})
    data = StudyData("t", "q", runs, {}, {}, {}, configs, [], store=None)
    data.inputs = {run_id: ((1, 6, 6), 3, ["0", "1", "2"]) for run_id in configs}
    blocks = _model_summary(data, {})
    texts = [block.text for block in blocks if isinstance(block, Text)]
    [note] = summary(create_model(configs["b"]["model"], (1, 6, 6), 3), (1, 6, 6)).notes
    assert texts == [f"softmax output: {note}."]
    table = blocks[0].frame.set_index("variant")
    assert list(table["outline"]) == ["fc8 fc3", "fc8 fc3"] and list(table["in conv layers"]) == [0, 0]
    assert list(table["in dense layers"]) == [36 * 8 + 8 + 8 * 3 + 3] * 2
    assert list(table["units conv / dense"]) == ["0 / 11"] * 2


def test_cli_summary_counts_prelu_slopes_and_flags_a_softmax_output(capsys: pytest.CaptureFixture) -> None:
    from trainlab.cli import main

    spec = "{kind: cnn, blocks: [{channels: 8}], fc: [16], activation: prelu}"
    assert main(["summary", "--model", spec, "--input-shape", "3,8,8", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    model = create_model("cnn", (3, 8, 8), 10, blocks=[{"channels": 8}], fc=[16], activation="prelu")
    assert table["total"] == table["trainable"] == sum(p.numel() for p in model.parameters())
    assert [(row["type"], row["trainable"]) for row in table["layers"] if "act" in row["name"]] == [
        ("PReLU", 8), ("PReLU", 16)
    ]
    assert main(["summary", "--model", spec, "--input-shape", "3,8,8", "--set", "output_softmax=true"]) == 0
    assert "Note: out_softmax: the output is a softmax" in capsys.readouterr().out
