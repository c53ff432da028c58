import pytest

from trainlab.config import RunConfig, apply_overrides, load_config, parse_value
from trainlab.errors import UserError


def test_defaults_are_a_valid_run():
    cfg = load_config()
    assert cfg.data.name == "digits" and cfg.model.kind == "mlp" and cfg.train.optimizer == "adam"


def test_overrides_parse_values_as_yaml():
    cfg = load_config({}, ["train.lr=0.01", "model.hidden=[64, 32]", "data.augment=[hflip]", "train.nesterov=false"])
    assert cfg.train.lr == 0.01 and isinstance(cfg.train.lr, float)
    assert cfg.model.hidden == [64, 32]
    assert cfg.data.augment[0].name == "hflip" and cfg.data.augment[0].p == 0.5
    assert parse_value("1e-3") == 1e-3 and parse_value("none") == "none"


def test_overrides_nest_into_sections_without_touching_the_input():
    raw = {"train": {"lr": 1.0}}
    out = apply_overrides(raw, {"train.epochs": 3, "model.activation": "tanh"})
    assert out == {"train": {"lr": 1.0, "epochs": 3}, "model": {"activation": "tanh"}}
    assert raw == {"train": {"lr": 1.0}}


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({"model": {"activaton": "relu"}}, ["model.activaton", "did you mean 'activation'"]),
        ({"modle": {}}, ["'modle'", "did you mean 'model'"]),
        ({"model": {"activation": "rellu"}}, ["model.activation", "'rellu'", "did you mean 'relu'", "sigmoid"]),
        ({"model": {"kind": "vgg"}}, ["model.kind", "did you mean 'vgg_cifar'", "resnet"]),
        ({"train": {"lr": "fast"}}, ["train.lr", "'fast'"]),
        ({"train": {"optimizer": "sgdd"}}, ["train.optimizer", "did you mean 'sgd'", "rmsprop"]),
        ({"data": {"augment": ["hflp"]}}, ["data.augment", "did you mean 'hflip'"]),
        ({"model": {"kind": "cnn", "blocks": [{"chanels": 8}]}}, ["model.blocks.0.chanels", "did you mean 'channels'"]),
        ({"data": {"val_size": 1.5}}, ["data.val_size"]),
        ({"train": {"nesterov": True}}, ["nesterov", "momentum"]),
        ({"data": {"val_size": 0}, "train": {"early_stopping": 3}}, ["early_stopping", "val_size"]),
    ],
)
def test_mistakes_name_the_key_and_the_valid_choices(raw, expected):
    with pytest.raises(UserError) as info:
        load_config(raw)
    message = str(info.value)
    assert "\n" not in message
    for part in expected:
        assert part in message


def test_preset_expands_and_round_trips_to_the_same_run():
    cfg = load_config({"model": {"kind": "vgg_cifar", "dropout": 0.2}})
    assert cfg.model.kind == "cnn" and cfg.model.preset == "vgg_cifar"
    assert cfg.model.dropout == 0.2  # a field next to the preset name wins
    assert [b.channels for b in cfg.model.blocks] == [64, 128, 256, 256]
    again = load_config(cfg.to_dict())
    assert again == cfg and again.run_id() == cfg.run_id()


def test_run_id_is_a_hash_of_the_resolved_config():
    a = load_config({"train": {"seed": 1, "lr": 0.01}})
    b = load_config({"train": {"lr": 0.01, "seed": 1}})
    c = load_config({"train": {"seed": 2, "lr": 0.01}})
    assert a.run_id() == b.run_id() != c.run_id()
    assert a.run_id() == RunConfig.model_validate(a.to_dict()).run_id()


def test_yaml_files(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  activation: tanh\ntrain:\n  epochs: 3\n")
    cfg = load_config(path, ["train.epochs=4"])
    assert cfg.model.activation == "tanh" and cfg.train.epochs == 4
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    path.write_text("model: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(UserError, match="KEY=VALUE"):
        load_config({}, ["train.lr"])
