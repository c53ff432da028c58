import hashlib
import json

import pytest

from trainlab.config import LATER_FIELDS, RunConfig, apply_overrides, load_config, parse_value, read_yaml
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
        ({"data": {"augment": ["hflip", {"name": "crop", "paddin": 2}]}},
         ["'data.augment.1.paddin'", "did you mean 'padding'", "valid keys here: name, padding"]),
        ({"data": {"augment": [{"name": "translate", "max_shift": -1}]}}, ["data.augment.0.max_shift", "(got -1)"]),
        ({"model": {"hidden": [64, 0]}}, ["model.hidden.1", "greater than 0"]),
        ({"model": {"kind": "cnn", "blocks": [{"channels": 4}], "fc": [-3]}}, ["model.fc.0", "greater than 0"]),
        ({"train": {"seed": 2**63}}, ["train.seed", "64-bit integer", str(2**63)]),
        ({"train": {"device": "cuda:x"}}, ["train.device", "'cuda:x'", "cuda:0"]),
        ({"train": {"device": "gpu"}}, ["train.device", "'gpu'", "auto, cpu, cuda"]),
        ({"train": {"threads": 2**70}}, ["train.threads", "not a 64-bit integer"]),
        ({"probes": {"bins": 2**64}}, ["probes.bins", "not a 64-bit integer"]),
        ({"model": {"hidden": [8, 2**63]}}, ["model.hidden", "not a 64-bit integer"]),
        ({"train": {"lr": float("inf")}}, ["train.lr", "finite number"]),
        ({"train": {"weight_decay": float("nan")}}, ["train.weight_decay", "finite number"]),
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
    with pytest.raises(UserError, match="not valid YAML") as info:
        load_config(path)
    assert "\n" not in str(info.value) and "line 2" in str(info.value)


@pytest.mark.parametrize("text, key, line", [
    ("train:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n", "lr", 4),
    ("model: {hidden: [8]}\nmodel: {hidden: [16]}\n", "model", 2),
    ("train: {lr: 0.1, lr: 0.2}\n", "lr", 1),
])
def test_a_key_given_twice_in_a_yaml_file_is_an_error(tmp_path, text, key, line):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=f"key '{key}' given twice at line {line}"):
        load_config(path)
    with pytest.raises(UserError, match="given twice"):
        load_config({}, ["model={hidden: [8], hidden: [16]}"])
    path.write_text("base: &b {lr: 0.1}\ntrain:\n  <<: *b\n  lr: 0.2\n")  # a merged key may be overridden
    assert read_yaml(path)["train"] == {"lr": 0.2}
    with pytest.raises(UserError, match="KEY=VALUE"):
        load_config({}, ["train.lr"])


def _hash(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]


def test_a_later_field_at_its_former_behaviour_keeps_the_run_id_of_a_config_without_it():
    cfg = load_config({"data": {"normalize": False}, "model": {"activation": "tanh"}})
    older = cfg.to_dict()  # the same configuration as a version without the later fields wrote it
    for section, key in LATER_FIELDS:
        del older[section][key]
    older["data"]["normalize"] = older["data"].pop("scaling") == "per_channel"
    assert older["data"]["normalize"] is False
    assert cfg.run_id() == _hash(older)
    assert load_config({"data": {"scaling": "unit"}, "model": {"activation": "tanh"}}).run_id() == cfg.run_id()
    other_values = {
        "data.val_from": "last", "model.leaky_slope": 0.3, "model.prelu": "one", "model.prelu_init": 0.0,
        "model.bn_momentum": 0.01, "model.bn_eps": 1e-3, "model.output_softmax": True,
        "model.block_padding": "valid",
        "train.betas": [0.9, 0.99], "train.eps": 1e-7, "train.alpha": 0.9, "train.lr_decay": 1e-6,
        "train.penalty": "mean", "probes.derivatives": True, "probes.output_grads": True, "probes.curve_every": 5,
    }
    external = {"model.target", "model.name", "model.args", "data.target", "data.args"}  # need a kind: below
    later = {f"{section}.{key}" for section, key in LATER_FIELDS} - external
    assert later <= set(other_values), f"give test values for {later - set(other_values)}"
    for key in later:
        assert load_config(cfg, {key: other_values[key]}).run_id() != cfg.run_id(), key
    vision = load_config(cfg, {"model.kind": "torchvision", "model.name": "resnet18"})
    assert load_config(vision, {"model.name": "resnet34"}).run_id() != vision.run_id()
    assert load_config(vision, {"model.args.zero_init_residual": True}).run_id() != vision.run_id()
    own = load_config(cfg, {"model.kind": "python", "model.target": "torchvision.models:resnet18"})
    assert load_config(own, {"model.target": "torchvision.models:resnet34"}).run_id() != own.run_id()
    loaded = load_config(cfg, {"data.name": "python", "data.target": "torchvision.datasets:MNIST"})
    assert load_config(loaded, {"data.target": "torchvision.datasets:CIFAR10"}).run_id() != loaded.run_id()
    assert load_config(loaded, {"data.args.train": True}).run_id() != loaded.run_id()


def test_normalize_is_read_as_scaling_and_rho_as_alpha():
    assert load_config({"data": {"normalize": True}}).data.scaling == "per_channel"
    assert load_config({"data": {"normalize": False}}).data.scaling == "unit"
    assert load_config({}, ["train.rho=0.9"]).train.alpha == 0.9
    with pytest.raises(UserError, match="contradicts scaling: raw"):
        load_config({"data": {"normalize": False, "scaling": "raw"}})
    with pytest.raises(UserError, match="valid choices: per_channel, per_pixel, unit, raw"):
        load_config({}, ["data.scaling=pixel"])


def test_each_spelling_of_the_data_folder_is_one_run(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    monkeypatch.setenv("HOME", str(tmp_path))
    spellings = [str(data), f"{data}/", "../data", "../elsewhere/../data", "~/data"]
    configs = [load_config({"data": {"name": "mnist", "root": root}}) for root in spellings]
    assert {c.data.root for c in configs} == {str(data)}
    assert len({c.run_id() for c in configs}) == 1
    assert load_config({"data": {"name": "mnist", "root": str(tmp_path / "other")}}).run_id() != configs[0].run_id()
