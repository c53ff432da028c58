"""Run configuration: typed sections ``data``, ``model``, ``train`` and ``probes``.

A configuration is written as YAML or a Python dict and validated into :class:`RunConfig`.
Unknown keys and wrong types raise :class:`~trainlab.errors.UserError` naming the dotted key,
the bad value and the closest valid name. Dotted overrides (``model.activation=tanh``) are
applied with :func:`apply_overrides` before validation.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator, AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator,
    model_validator,
)

from trainlab.errors import UserError, did_you_mean
from trainlab.models.kinds import KINDS
from trainlab.models.presets import PRESETS
from trainlab.usercode import anchor_study_targets, anchored, target_identity, target_of

DATASETS = ("cifar10", "mnist", "fashion_mnist", "gurmukhi", "imagefolder", "digits", "synthetic", "python")
ACTIVATIONS = (
    "sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu", "selu", "gelu", "softplus", "maxout", "identity",
)
INITS = ("default", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "step", "cosine", "plateau")
SCALINGS = ("per_channel", "per_pixel", "unit", "raw")
VAL_FROM = ("random", "last", "test", "given")
PENALTIES = ("sum", "mean", "layer_mean")
INT_BITS = 64  # torch takes no larger integer, and the store keeps seeds as signed 64-bit integers
Width = Annotated[int, Field(gt=0)]  # units of a dense layer


def _from_working_directory(target: str | None) -> str | None:
    """A relative file target is taken from the working directory (study and config files anchor theirs)."""
    return None if target is None else anchored(target, Path.cwd())


# the user's code: FILE.py:NAME, module:NAME, or (from Python) an importable class or function
Target = Annotated[str | None, BeforeValidator(target_of), AfterValidator(_from_working_directory)]


class Section(BaseModel):
    """Base of every config section: unknown keys, infinities, NaNs and integers beyond 64 bits are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*")
    @classmethod
    def _fits_64_bits(cls, value: Any) -> Any:
        limit = 2 ** (INT_BITS - 1)
        items = value if isinstance(value, list) else [value]
        if any(isinstance(v, int) and not -limit <= v < limit for v in items):
            raise ValueError(f"not a {INT_BITS}-bit integer: give a whole number from -2**{INT_BITS - 1} "
                             f"to 2**{INT_BITS - 1} - 1")
        return value


# ----------------------------------------------------------------------------- data
class Crop(Section):
    """Random crop of the original size after zero padding by ``padding`` pixels."""

    name: Literal["crop"] = "crop"
    padding: int = Field(4, ge=0)


class HFlip(Section):
    """Horizontal flip with probability ``p``."""

    name: Literal["hflip"] = "hflip"
    p: float = Field(0.5, ge=0, le=1)


class VFlip(Section):
    """Vertical flip with probability ``p``."""

    name: Literal["vflip"] = "vflip"
    p: float = Field(0.5, ge=0, le=1)


class Translate(Section):
    """Random shift by up to ``max_shift`` pixels in each direction, zero fill."""

    name: Literal["translate"] = "translate"
    max_shift: int = Field(2, ge=0)


Augment = Crop | HFlip | VFlip | Translate
AUGMENTS = {"crop": Crop, "hflip": HFlip, "vflip": VFlip, "translate": Translate}


class SyntheticConfig(Section):
    """Size of the generated ``synthetic`` data set (class templates plus noise)."""

    n_train: int = Field(512, gt=0)
    n_test: int = Field(128, gt=0)
    channels: int = Field(1, gt=0)
    size: int = Field(8, gt=0)
    classes: int = Field(4, ge=2)


class DataConfig(Section):
    """Which data set, where it lives, and how it is split, scaled and augmented.

    ``scaling``: ``per_channel`` standardises each channel with the training split's mean and
    standard deviation; ``per_pixel`` each pixel position; ``unit`` divides by 255 ([0, 1]);
    ``raw`` keeps the 0-255 values. ``normalize: true`` / ``false`` is read as ``per_channel`` /
    ``unit``. ``val_from``: the validation split is ``val_size`` images held out at random (a
    fixed permutation), the ``last`` ones of the training split (Keras' ``validation_split``), or
    the first ones of the ``test`` split (which stays whole); ``given`` is the whole ``val`` split
    the user's loader returned. ``python`` calls the user's loader ``target`` with ``args``
    (:mod:`trainlab.data.usersource`).
    """

    name: Literal[DATASETS] = "digits"  # type: ignore[valid-type]
    root: str | None = None
    grayscale: bool = False
    scaling: Literal[SCALINGS] = "per_channel"  # type: ignore[valid-type]
    val_size: float | int = 0.1
    val_from: Literal[VAL_FROM] = "random"  # type: ignore[valid-type]
    limit: int | None = Field(None, gt=0)
    test_limit: int | None = Field(None, gt=0)
    resize: int | None = Field(None, gt=0)
    augment: list[Annotated[Augment, Field(discriminator="name")]] = Field(default_factory=list)
    cache: bool = True
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
    target: Target = None
    args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _python_needs_target(self) -> DataConfig:
        if self.name == "python" and not self.target:
            raise ValueError("data python needs data.target: FILE.py:NAME or MODULE:NAME, e.g. 'mydata.py:load'")
        if (self.target or self.args) and self.name != "python":
            raise ValueError(f"data.target and data.args are for data name python, not {self.name!r}")
        if self.val_from == "given" and self.name != "python":
            raise ValueError(f"data.val_from: given takes the validation split a data.target loader returns, which "
                             f"data {self.name!r} has not; valid choices here: random, last, test")
        return self

    @field_validator("root")
    @classmethod
    def _absolute_root(cls, root: str | None) -> str | None:
        """The data folder as one absolute path (``~`` expanded, ``..`` and links resolved, no trailing
        ``/``), so each way of spelling it gives the same run, readable from any folder."""
        return str(Path(root).expanduser().resolve()) if root else root

    @model_validator(mode="before")
    @classmethod
    def _normalize_shorthand(cls, data: Any) -> Any:
        """``normalize: true`` / ``false`` (the older key) as ``scaling: per_channel`` / ``unit``."""
        if not isinstance(data, dict) or "normalize" not in data:
            return data
        data = dict(data)
        flag = data.pop("normalize")
        if not isinstance(flag, bool):
            raise ValueError(f"normalize must be true or false (got {flag!r}); "
                             f"or give scaling: one of {', '.join(SCALINGS)}")
        scaling = "per_channel" if flag else "unit"
        if data.setdefault("scaling", scaling) != scaling:
            raise ValueError(f"normalize: {str(flag).lower()} contradicts scaling: {data['scaling']}; give scaling only")
        return data

    @field_validator("augment", mode="before")
    @classmethod
    def _augment_entries(cls, value: Any) -> Any:
        """Accept ``hflip`` or ``{name: crop, padding: 4}``; name unknown kinds."""
        if not isinstance(value, list):
            return value
        out = []
        for entry in value:
            if isinstance(entry, Section):
                entry = entry.model_dump()
            name = entry if isinstance(entry, str) else entry.get("name") if isinstance(entry, dict) else None
            if name not in AUGMENTS:
                raise ValueError(
                    f"unknown augmentation {name!r}{did_you_mean(str(name), AUGMENTS)}; "
                    f"valid choices: {', '.join(AUGMENTS)}"
                )
            out.append({"name": name} if isinstance(entry, str) else entry)
        return out

    @field_validator("val_size")
    @classmethod
    def _val_size(cls, value: float | int) -> float | int:
        if isinstance(value, float) and not 0 <= value < 1:
            raise ValueError("a fraction must be in [0, 1); give a whole number for a count")
        if value < 0:
            raise ValueError("must not be negative")
        return value


# ----------------------------------------------------------------------------- model
class ConvBlock(Section):
    """One conv layer: conv -> batch norm -> activation -> pool -> dropout.

    ``padding`` defaults to ``kernel // 2`` ("same" for odd kernels); ``batch_norm`` and
    ``dropout`` default to the model-level values.
    """

    channels: int = Field(gt=0)
    kernel: int = Field(3, gt=0)
    stride: int = Field(1, gt=0)
    padding: int | None = Field(None, ge=0)
    padding_mode: Literal["zeros", "circular", "reflect", "replicate"] = "zeros"
    pool: Literal["max", "avg"] | None = None
    pool_size: int = Field(2, gt=0)
    batch_norm: bool | None = None
    dropout: float | None = Field(None, ge=0, lt=1)


class ResStage(Section):
    """A ResNet stage: ``blocks`` residual blocks of ``channels``, the first with ``stride``."""

    channels: int = Field(gt=0)
    blocks: int = Field(1, gt=0)
    stride: int = Field(1, gt=0)


class ModelConfig(Section):
    """The network: ``kind`` mlp, cnn, resnet, python, torchvision (or one added with ``register_model``) or a preset name.

    ``python`` calls the user's ``target`` (``FILE.py:NAME`` or ``module:NAME``) with
    ``input_shape``, ``num_classes`` and ``args``; ``torchvision`` builds torchvision's ``name``
    with ``args`` (docs/your-own-code.md).

    ``hidden`` applies to mlp; ``blocks`` and ``fc`` to cnn; ``stem_channels``, ``stages``,
    ``shortcut`` and ``block_padding`` to resnet; activation, dropout, batch norm, init and output
    batch norm to all.
    ``leaky_slope`` is leaky_relu's negative slope (PyTorch 0.01, Keras 0.3); ``prelu`` learns one
    slope per ``channel`` or ``one`` for the layer, starting at ``prelu_init`` (PyTorch 0.25,
    Keras 0). ``bn_momentum`` and ``bn_eps`` follow PyTorch (Keras' momentum 0.99 is 0.01 here).
    ``output_softmax`` puts a softmax after the logits, before the cross-entropy (which then
    applies a second one): a mistake some reports made, kept to reproduce them.

    A preset fills in its fields and is then recorded as ``preset`` with its base ``kind``,
    so a stored configuration is explicit and reloads to the same network. Fields given next
    to a preset name override the preset's.
    """

    kind: str = "mlp"
    preset: str | None = None
    hidden: list[Width] = Field(default_factory=lambda: [256])
    activation: Literal[ACTIVATIONS] = "relu"  # type: ignore[valid-type]
    maxout_pieces: int = Field(2, ge=2)
    leaky_slope: float = Field(0.01, ge=0)
    prelu: Literal["channel", "one"] = "channel"
    prelu_init: float = 0.25
    dropout: float = Field(0.0, ge=0, lt=1)
    batch_norm: bool = False
    bn_momentum: float = Field(0.1, gt=0, le=1)
    bn_eps: float = Field(1e-5, gt=0)
    init: Literal[INITS] = "default"  # type: ignore[valid-type]
    blocks: list[ConvBlock] = Field(default_factory=list)
    fc: list[Width] = Field(default_factory=list)
    output_batch_norm: bool = False
    output_softmax: bool = False
    stem_channels: int = Field(16, gt=0)
    stages: list[ResStage] = Field(
        default_factory=lambda: [ResStage(channels=16), ResStage(channels=32, stride=2), ResStage(channels=64, stride=2)]
    )
    shortcut: Literal["identity", "projection", "conv"] = "projection"
    block_padding: Literal["same", "valid"] = "same"
    target: Target = None
    name: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("kind") not in PRESETS:
            return data
        name = data["kind"]
        given = {k: v for k, v in data.items() if k != "kind"}
        return {**copy.deepcopy(PRESETS[name]), **given, "preset": name}

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        valid = [*KINDS, *PRESETS]  # kinds added with register_model count too
        if value not in KINDS:
            raise ValueError(f"unknown model kind {value!r}{did_you_mean(value, valid)}; valid choices: {', '.join(valid)}")
        return value

    @property
    def display_name(self) -> str:
        """The network's name for people: the target's callable, the torchvision name, the preset or the kind."""
        if self.kind == "python":
            return self.target.rpartition(":")[2]
        return self.name if self.kind == "torchvision" else self.preset or self.kind

    @model_validator(mode="after")
    def _kind_needs_its_fields(self) -> ModelConfig:
        if self.kind == "cnn" and not self.blocks:
            raise ValueError("a cnn needs at least one entry in model.blocks, e.g. [{channels: 32}]")
        if self.kind == "python" and not self.target:
            raise ValueError("kind python needs model.target: FILE.py:NAME or MODULE:NAME, e.g. 'nets.py:TinyNet'")
        if self.kind == "torchvision" and not self.name:
            raise ValueError("kind torchvision needs model.name, e.g. resnet18")
        if (self.target or self.args) and self.kind not in ("python", "torchvision"):
            raise ValueError(f"model.target and model.args are for kind python or torchvision, not {self.kind!r}")
        return self


# ----------------------------------------------------------------------------- train
OPTIMIZER_TAKES = {"sgd": {"momentum"}, "adam": {"betas", "eps"}, "adamw": {"betas", "eps"},
                   "rmsprop": {"momentum", "alpha", "eps"}}  # the constants each optimiser takes (make_optimizer)
OPTIMIZER_DEFAULTS = {"momentum": 0.0, "betas": (0.9, 0.999), "eps": 1e-8, "alpha": 0.99}


class TrainConfig(Section):
    """Optimisation: optimiser, schedule, regularisation, stopping, seed and device.

    ``betas`` and ``eps`` are Adam's and AdamW's (``eps`` RMSprop's too), ``alpha`` RMSprop's
    smoothing constant (Keras calls it ``rho``; ``rho`` is accepted); PyTorch's defaults, Keras
    uses eps 1e-7 and rho 0.9. ``lr_decay`` divides the learning rate by ``1 + lr_decay * step``
    at every step (Keras' ``decay``), on top of the per-epoch ``schedule``. ``penalty`` says what
    ``l1`` and ``l2`` multiply: the ``sum`` over all penalised weights, their ``mean``, or the
    sum over layers of each layer's mean (``layer_mean``).

    ``precision: bf16`` runs the forward passes under bfloat16 autocast (weights, gradients and
    optimiser state stay float32); ``auto`` does so where the device computes in bfloat16
    natively (a CUDA GPU with bf16, a CPU with AVX512-BF16 or AMX) and stays fp32 elsewhere.
    ``channels_last`` stores conv weights and image batches in NHWC order, which convolutions on
    recent GPUs prefer.
    """

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, gt=0)
    eval_batch_size: int = Field(1024, gt=0)
    optimizer: Literal[OPTIMIZERS] = "adam"  # type: ignore[valid-type]
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    nesterov: bool = False
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    alpha: float = Field(0.99, ge=0, lt=1, validation_alias=AliasChoices("alpha", "rho"))
    lr_decay: float = Field(0.0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    l1: float = Field(0.0, ge=0)
    l2: float = Field(0.0, ge=0)
    penalty: Literal[PENALTIES] = "sum"  # type: ignore[valid-type]
    schedule: Literal[SCHEDULES] = "constant"  # type: ignore[valid-type]
    step_size: int = Field(30, gt=0)
    gamma: float = Field(0.1, gt=0)
    patience: int = Field(5, ge=0)
    factor: float = Field(0.1, gt=0, lt=1)
    min_lr: float = Field(0.0, ge=0)
    warmup_epochs: int = Field(0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    clip_grad: float | None = Field(None, gt=0)
    early_stopping: int | None = Field(None, gt=0)
    seed: int = 0
    device: str = "auto"
    threads: int | None = Field(None, gt=0)
    precision: Literal["fp32", "bf16", "auto"] = "fp32"
    channels_last: bool = False

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
            raise ValueError(f"unknown device {value!r}; valid choices: auto, cpu, cuda, cuda:0, cuda:1, ...")
        return value

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> TrainConfig:
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError("nesterov needs optimizer sgd and momentum > 0")
        return self

class ProbesConfig(Section):
    """Gradient, weight, update and activation statistics recorded while the run trains.

    By default up to ``per_epoch`` evenly spaced steps of each epoch plus its last step are probed,
    at most one in 10 (:func:`trainlab.train.loop.probe_schedule`); ``every`` probes every N-th step
    instead. ``embeddings_at`` lists the epochs (0: before
    training) at which the features of ``embedding_layer`` (default: the input of the last
    Linear layer) are saved for the same ``embedding_samples`` test images.

    ``derivatives`` also records, per activation layer, the activation's derivative f'(z) at its
    inputs, and ``output_grads`` the gradient of the loss with respect to each layer's output
    (dL/dh), at the probed steps. ``curve_every`` records the mean training loss and accuracy
    of every N steps (per-iteration curves).
    """

    enabled: bool = True
    every: int | None = Field(None, gt=0)
    per_epoch: int = Field(4, gt=0)
    bins: int = Field(32, gt=1)
    histograms: bool = True
    log_magnitude: bool = False
    activations: bool = True
    derivatives: bool = False
    output_grads: bool = False
    curve_every: int | None = Field(None, gt=0)
    embeddings_at: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list)
    embedding_layer: str | None = None
    embedding_samples: int = Field(1000, gt=0)


class RunConfig(Section):
    """A whole run: ``data``, ``model``, ``train`` and ``probes``."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    probes: ProbesConfig = Field(default_factory=ProbesConfig)

    @model_validator(mode="after")
    def _early_stopping_needs_val(self) -> RunConfig:
        if self.train.early_stopping and self.data.val_size == 0 and self.data.val_from != "given":
            raise ValueError("train.early_stopping watches the validation loss: set data.val_size > 0")
        late = [e for e in self.probes.embeddings_at if e > self.train.epochs]
        if late:
            raise ValueError(f"probes.embeddings_at has epochs {late} after the last one "
                             f"(train.epochs={self.train.epochs})")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field, defaults included."""
        return self.model_dump(mode="json")

    def run_id(self) -> str:
        """Identity of the run: a hash of the fully resolved configuration (seed included).

        Fields added after run ids were first given out are hashed only when they change what
        the run does (see ``LATER_FIELDS``), so a store keeps its runs when trainlab gains a setting.
        """
        identity = self.to_dict()
        for (section, key), before in LATER_FIELDS.items():
            if identity[section][key] == before:
                del identity[section][key]
        for section in ("model", "data"):  # the user's code itself, not where it lies on this machine
            if getattr(self, section).target:
                identity[section]["target"] = target_identity(getattr(self, section).target)
        data = identity["data"]
        if data["scaling"] in ("per_channel", "unit"):  # what the older key normalize said
            data["normalize"] = data.pop("scaling") == "per_channel"
        blob = json.dumps(identity, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


# Fields added after the first run ids were given out, with the value that does what runs did
# before the field existed (in to_dict()'s JSON form); the run id leaves them out at that value.
LATER_FIELDS: dict[tuple[str, str], Any] = {
    ("data", "val_from"): "random",
    ("model", "leaky_slope"): 0.01,
    ("model", "prelu"): "channel",
    ("model", "prelu_init"): 0.25,
    ("model", "bn_momentum"): 0.1,
    ("model", "bn_eps"): 1e-5,
    ("model", "output_softmax"): False,
    ("model", "block_padding"): "same",
    ("train", "betas"): [0.9, 0.999],
    ("train", "eps"): 1e-8,
    ("train", "alpha"): 0.99,
    ("train", "lr_decay"): 0.0,
    ("train", "penalty"): "sum",
    ("probes", "derivatives"): False,
    ("probes", "output_grads"): False,
    ("probes", "curve_every"): None,
    ("model", "target"): None,
    ("model", "name"): None,
    ("model", "args"): {},
    ("data", "target"): None,
    ("data", "args"): {},
}


# ----------------------------------------------------------------------------- loading
class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping that gives one key twice (plain YAML keeps the last silently)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # keys merged in with << may be overridden
            key = self.construct_object(key_node, deep=True)
            try:
                first = lines.get(key)
            except TypeError:
                continue  # unhashable: the base class reports it
            if first is not None:
                raise DuplicateKeyError(None, None, f"key {key!r} given twice", key_node.start_mark,
                                        f"first at line {first}")
            lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def yaml_reason(error: yaml.YAMLError) -> str:
    """The parser's reason in one line, with the line and column where it has them."""
    if not isinstance(error, yaml.MarkedYAMLError):
        return " ".join(str(error).split())
    context, mark, note = error.context, error.problem_mark, error.note
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"{context + ': ' if context else ''}{error.problem}{where}{f' ({note})' if note else ''}"


def parse_yaml(text: str, where: str) -> Any:
    """``text`` parsed as YAML (safe tags only, no key twice); a mistake is a UserError naming ``where``."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as error:
        raise UserError(f"{where}: not valid YAML: {yaml_reason(error)}") from None


def parse_value(text: str) -> Any:
    """Parse an override's value as YAML: ``0.01`` and ``1e-3`` -> float, ``[256, 256]`` -> list, ``true`` -> bool.

    Text that is not valid YAML stays text; a key given twice is an error.
    """
    try:
        value = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except DuplicateKeyError as error:
        raise UserError(f"{text!r}: not valid YAML: {yaml_reason(error)}") from None
    except yaml.YAMLError:
        return text
    if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
        try:
            return float(value)
        except ValueError:
            pass
    return value


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any] | list[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with dotted keys set, e.g. ``{"train.lr": 0.01}`` or ``["train.lr=0.01"]``."""
    if isinstance(overrides, list):
        pairs = {}
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise UserError(f"override {item!r} is not KEY=VALUE, e.g. model.activation=tanh")
            pairs[key.strip()] = parse_value(value)
        overrides = pairs
    out = copy.deepcopy(raw)
    for key, value in overrides.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UserError(f"override {key!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return out


def _field_names(model: type[BaseModel], path: tuple) -> list[str]:
    """Valid field names at a location of a validation error (for suggestions)."""
    for part in path:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            model = AUGMENTS.get(part, model)  # a data.augment entry's location names its kind
            continue
        annotation = field.annotation
        for candidate in getattr(annotation, "__args__", ()) + (annotation,):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
                break
    return list(model.model_fields)


def _explain(error: ValidationError, root: type[BaseModel], prefix: str) -> UserError:
    """Turn pydantic's first error into one message with the dotted key and suggestions."""
    errors = error.errors()
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = [p for p in first["loc"] if not (isinstance(p, str) and p in AUGMENTS and p != first["loc"][-1])]
    key = ".".join(str(p) for p in loc)
    key = f"{prefix}{key}" if key else prefix.rstrip(".") or "config"
    if first["type"] == "extra_forbidden":
        name = str(loc[-1])
        valid = _field_names(root, tuple(first["loc"][:-1]))
        return UserError(f"unknown key {key!r}{did_you_mean(name, valid)}; valid keys here: {', '.join(valid)}")
    message = first["msg"].removeprefix("Value error, ")
    value = first.get("input")
    if first["type"] == "literal_error":
        choices = re.findall(r"'([^']*)'", first["ctx"]["expected"])
        return UserError(f"{key}: unknown value {value!r}{did_you_mean(str(value), choices)}; valid choices: {', '.join(choices)}")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    return UserError(f"{key}: {message}{shown}")


def validate(raw: dict[str, Any], model: type[BaseModel] = RunConfig, prefix: str = "") -> Any:
    """Validate a dict into ``model``; a mistake becomes a UserError naming the dotted key."""
    if not isinstance(raw, dict):
        raise UserError(f"{prefix.rstrip('.') or 'config'}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise _explain(error, model, prefix) from None


def read_yaml(path: str | Path, expected: str = "a mapping with sections data, model, train, probes") -> dict[str, Any]:
    """Read a YAML mapping; a missing or unreadable file, bad syntax or a key given twice is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {str(path)!r} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
    raw = parse_yaml(text, str(path)) or {}
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected {expected}")
    return raw


def load_config(
    source: str | Path | dict[str, Any] | RunConfig | None = None,
    overrides: dict[str, Any] | list[str] | None = None,
) -> RunConfig:
    """Build a :class:`RunConfig` from a YAML path, a dict or nothing (defaults), plus overrides."""
    if isinstance(source, RunConfig):
        source = source.to_dict()
    if isinstance(source, (str, Path)):
        raw = anchor_study_targets(read_yaml(source), Path(source).resolve().parent)
    else:
        raw = copy.deepcopy(source or {})
    if overrides:
        raw = apply_overrides(raw, overrides)
    return validate(raw)


KIND_TAKES = {"mlp": {"hidden"}, "cnn": {"blocks", "fc"},
              "resnet": {"stem_channels", "stages", "shortcut", "block_padding"}}  # the built-in kinds' own fields


def warn_of_ignored_constants(configs: Iterable[RunConfig]) -> None:
    """Warn, once per setting, of each constant a configuration sets away from its default that its
    optimiser does not take (momentum with Adam), and of each field of another built-in model kind it
    sets (model.fc with an mlp): not an error, since a study may vary the optimiser or the kind over a
    base written for one of them. Called where runs are planned, not where workers train them."""
    said = set()
    defaults = ModelConfig().model_dump(mode="json")
    for cfg in configs:
        model = cfg.model
        if model.kind in KIND_TAKES:
            for name in set().union(*KIND_TAKES.values()) - KIND_TAKES[model.kind]:
                if name in model.model_fields_set and model.model_dump(mode="json")[name] != defaults[name]:
                    takers = ", ".join(k for k, names in KIND_TAKES.items() if name in names)
                    said.add(f"model.{name} is ignored by model kind {model.kind} (it applies to {takers})")
        train = cfg.train
        for name, default in OPTIMIZER_DEFAULTS.items():
            value = getattr(train, name)
            if name not in OPTIMIZER_TAKES[train.optimizer] and value != default:
                takers = ", ".join(o for o, names in OPTIMIZER_TAKES.items() if name in names)
                shown = list(value) if isinstance(value, tuple) else value
                said.add(f"train.{name}={shown} is ignored by optimizer {train.optimizer} (it applies to {takers})")
    for message in sorted(said):
        warnings.warn(message, UserWarning, stacklevel=3)
