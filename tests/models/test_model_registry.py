"""create_model from a dict, a name or a ModelConfig, overrides, the registry and error messages."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from trainlab.config import ModelConfig
from trainlab.errors import UserError
from trainlab.models import create_model, kinds, model_names, register_model, resolve_model_config
from trainlab.models.presets import PRESETS

SHAPE = (3, 16, 16)


def built(spec, **overrides) -> nn.Module:
    torch.manual_seed(0)
    return create_model(spec, SHAPE, 10, **overrides)


def assert_same(a: nn.Module, b: nn.Module) -> None:
    assert repr(a) == repr(b)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_model_names_are_kinds_and_presets() -> None:
    assert model_names() == ["mlp", "cnn", "resnet", "python", "torchvision", *PRESETS]


def test_preset_from_name_dict_and_config_are_equal() -> None:
    by_name = built("vgg_cifar")
    assert by_name.conv1.out_channels == 64 and by_name.out_bn.num_features == 10
    assert_same(by_name, built({"kind": "vgg_cifar"}))
    assert_same(by_name, built(ModelConfig(kind="vgg_cifar")))


def test_overrides_equal_the_same_fields_in_the_spec() -> None:
    fields = {"dropout": 0.2, "fc": [32]}
    expected = built({"kind": "vgg_cifar", **fields})
    assert expected.drop1.p == 0.2 and expected.fc1.out_features == 32 and expected.conv4.out_channels == 256
    assert_same(expected, built("vgg_cifar", **fields))
    assert_same(expected, built(ModelConfig(kind="vgg_cifar"), **fields))
    assert_same(expected, built({"kind": "vgg_cifar", "dropout": 0.5}, **fields))


def test_kind_override_drops_the_preset_record() -> None:
    cfg = resolve_model_config(ModelConfig(kind="vgg_cifar"), kind="mlp")
    assert (cfg.kind, cfg.preset) == ("mlp", None)
    assert resolve_model_config("vgg_cifar").preset == "vgg_cifar"


@pytest.mark.parametrize(
    ("spec", "overrides", "message"),
    [
        ("vgg_cifr", {}, "vgg_cifar"),
        ("mlp", {"activation": "relux"}, r"model\.activation.*relu"),
        ("mlp", {"dropuot": 0.1}, r"model\.dropuot.*dropout"),
        ({"kind": "cnn"}, {}, "blocks"),
        (42, {}, "int"),
        ("mlp", {"hidden": [0]}, r"model\.hidden\.0.*greater than 0"),
        ("mlp", {"hidden": [-5]}, r"model\.hidden\.0.*greater than 0"),
        ("vgg_cifar", {"fc": [512, -3]}, r"model\.fc\.1.*greater than 0"),
    ],
)
def test_bad_specs_are_user_errors(spec, overrides: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        create_model(spec, SHAPE, 10, **overrides)


@pytest.mark.parametrize(("shape", "classes"), [((3, 16), 10), ((3, 0, 16), 10), (SHAPE, 0)])
def test_bad_shapes_are_user_errors(shape: tuple, classes: int) -> None:
    with pytest.raises(UserError):
        create_model("mlp", shape, classes)


def test_register_model() -> None:
    @register_model("linear")
    def build_linear(cfg, input_shape, num_classes) -> nn.Module:
        return nn.Linear(input_shape[0] * input_shape[1] * input_shape[2], num_classes)

    try:
        assert kinds.KINDS["linear"] is build_linear
        assert "linear" in model_names()
        model = create_model({"kind": "linear"}, (1, 2, 2), 3)  # the config accepts the new kind
        assert isinstance(model, nn.Linear) and model.out_features == 3
        for taken in ("mlp", "vgg_cifar"):
            with pytest.raises(ValueError, match="taken"):
                register_model(taken)(build_linear)
    finally:
        del kinds.KINDS["linear"]


def test_config_import_stays_light() -> None:
    code = "import sys, trainlab.config; print('trainlab.models.registry' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
