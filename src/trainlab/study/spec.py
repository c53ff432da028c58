"""A study file and its expansion into runs.

A study is one question, a base configuration, what varies and how many seeds::

    name: activations-depth
    question: Does the activation function decide whether deep MLPs train?
    base: {data: {...}, model: {...}, train: {...}}
    vary: {model.activation: [sigmoid, relu], model.hidden: [[256], [256, 256]]}   # crossed
    zip: {train.lr: [0.1, 0.01], train.batch_size: [512, 64]}                        # change together
    variants: [{label: BN, set: {model.batch_norm: true}}]                           # crossed with vary
    seeds: 3                                   # or {min: 3, max: 16}: seeds until the claims are decided
    scales: {quick: {data.limit: 2000, train.epochs: 2}}
    claims: [{metric: test_acc, of: {model.activation: relu}, greater_than: {model.activation: sigmoid}}]

Order of application for each run: base, the scale's overrides, the command line's
``--set``, the variant's ``set``, the ``vary`` and ``zip`` values, then the seed. Every run is
validated before any of them trains.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trainlab.config import RunConfig, apply_overrides, read_yaml
from trainlab.config import validate as validate_config
from trainlab.errors import UserError, did_you_mean
from trainlab.stats import METHODS
from trainlab.study.claims import VARIANT, Claim, ResolvedClaim, VariantValues, resolve
from trainlab.usercode import anchor_study_targets

MAX_SEEDS = 10_000  # a larger count is a typo, not a study


class SeedRange(BaseModel):
    """Adaptive seeds: ``min`` seeds for every variant, then ``step`` more at a time (default ``min``)
    for the variants whose claims (or, without claims, best-versus-rest comparisons) are undecided,
    up to ``max``."""

    model_config = ConfigDict(extra="forbid")
    min: int = Field(ge=2, le=MAX_SEEDS)
    max: int = Field(le=MAX_SEEDS)
    step: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> SeedRange:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must be at least min ({self.min})")
        return self

    @property
    def looks(self) -> int:
        """How many times the claims may be tested: after ``min`` seeds, then after each step up to ``max``."""
        step = self.step or self.min
        return 1 + -(-(self.max - self.min) // step)


class Statistics(BaseModel):
    """How claims are decided: the family-wise error rate ``alpha`` (Holm-corrected over the study's
    claims), the test (``t`` or ``permutation``) and the interval's confidence."""

    model_config = ConfigDict(extra="forbid")
    alpha: float = Field(default=0.05, gt=0, lt=1)
    test: str = "t"
    confidence: float = Field(default=0.95, gt=0, lt=1)

    @field_validator("test")
    @classmethod
    def _test(cls, test: str) -> str:
        if test not in METHODS:
            raise ValueError(f"unknown test {test!r}; valid choices: {', '.join(METHODS)}")
        return test

class Variant(BaseModel):
    """A labelled set of dotted overrides."""

    model_config = ConfigDict(extra="forbid")
    label: str
    set: dict[str, Any] = Field(default_factory=dict)


class StudySpec(BaseModel):
    """The fields of a study file (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    question: str = ""
    source: str = ""  # what it reproduces, e.g. "report 001, question 1"
    run_time: dict[str, str] = Field(default_factory=dict)  # scale -> measured wall time, e.g. {quick: 40 s}
    base: dict[str, Any] = Field(default_factory=dict)
    vary: dict[str, list[Any]] = Field(default_factory=dict)
    zip: dict[str, list[Any]] = Field(default_factory=dict)
    variants: list[Variant] = Field(default_factory=list)
    seeds: int | list[int] | SeedRange = 1
    scales: dict[str, dict[str, Any]] = Field(default_factory=dict)
    report: list[Any] = Field(default_factory=list)
    claims: list[Claim] = Field(default_factory=list)
    statistics: Statistics = Field(default_factory=Statistics)

    @field_validator("vary", "zip")
    @classmethod
    def _no_empty_axis(cls, axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in axes.items():
            if not values:
                raise ValueError(f"axis {key!r} has no values")
        return axes

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_range(cls, seeds: Any) -> Any:
        """A ``{min, max, step}`` mapping checked on its own, so a mistake names its field, not the union."""
        if not isinstance(seeds, dict):
            return seeds
        try:
            return SeedRange.model_validate(seeds)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"{where + ': ' if where else ''}{first['msg'].removeprefix('Value error, ')} (seeds {{min, max, step}}: at least "
                             "2 seeds first, max >= min)") from None

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: int | list[int] | SeedRange) -> int | list[int] | SeedRange:
        if isinstance(seeds, SeedRange):
            return seeds
        if (isinstance(seeds, int) and seeds < 1) or (isinstance(seeds, list) and not seeds):
            raise ValueError("give at least one seed: a count such as 3, or a list such as [0, 1, 2]")
        if isinstance(seeds, int) and seeds > MAX_SEEDS:
            raise ValueError(f"at most {MAX_SEEDS} seeds: give a count such as 3 or a list such as [0, 1, 2]")
        if isinstance(seeds, list) and len(set(seeds)) < len(seeds):
            twice = next(seed for seed in seeds if seeds.count(seed) > 1)
            raise ValueError(f"seed {twice} is listed twice: each seed must be a different run")
        return seeds

    @model_validator(mode="after")
    def _zip_axes_align(self) -> StudySpec:
        lengths = {len(values) for values in self.zip.values()}
        if len(lengths) > 1:
            raise ValueError(f"zip axes must have equal lengths, got {sorted(lengths)}")
        labels = [v.label for v in self.variants]
        if len(set(labels)) != len(labels):
            raise ValueError(f"variant labels must be unique, got {labels}")
        return self

    @property
    def seed_list(self) -> list[int]:
        """The seeds every variant runs (the first ``min`` of adaptive seeds)."""
        if isinstance(self.seeds, SeedRange):
            return list(range(self.seeds.min))
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    def at_scale(self, scale: str | None) -> StudySpec:
        """This study as it runs at ``scale``: seeds the scale sets (``seeds:`` among its overrides)
        replace the study's, and only the claims judged at that scale (a claim's ``scales``) remain."""
        name = scale or "full"
        if scale is not None and scale not in self.scales and scale != "full":
            raise UserError(f"study {self.name!r} has no scale {scale!r}; valid choices: "
                            f"{', '.join(['full', *self.scales])}")
        for index, claim in enumerate(self.claims, start=1):
            for unknown_scale in set(claim.scales or ()) - {"full", *self.scales}:
                raise UserError(f"study {self.name!r}, claim {index}: unknown scale {unknown_scale!r}; valid "
                                f"choices: {', '.join(['full', *self.scales])}")
        overrides = dict(self.scales.get(name, {}))
        if "seeds" not in overrides and all(not c.scales for c in self.claims):
            return self
        raw = self.model_dump(exclude_defaults=True)
        raw["seeds"] = overrides.pop("seeds", raw.get("seeds", 1))
        raw["scales"] = {**self.scales, **({name: overrides} if name in self.scales else {})}
        raw["claims"] = [c.model_dump(exclude_defaults=True) for c in self.claims if not c.scales or name in c.scales]
        return validate_config(raw, StudySpec, prefix=f"study (at scale {name}).")

    @property
    def adaptive(self) -> SeedRange | None:
        """The seed range when seeds are added until claims are decided, else None."""
        return self.seeds if isinstance(self.seeds, SeedRange) else None


@dataclass
class PlannedRun:
    """One run of a study: its group ``label`` (all but the seed), what it sets, its seed and config,
    and the label of its entry in the study's ``variants:`` list (empty without one)."""

    label: str
    overrides: dict[str, Any]
    seed: int
    config: RunConfig = field(repr=False)
    variant: str = ""

    @cached_property
    def run_id(self) -> str:
        """The run's id, computed once: a model or data file edited while the study runs does not change it."""
        return self.config.run_id()


STUDIES_DIR = Path(__file__).resolve().parent.parent / "studies"


def builtin_studies() -> list[StudySpec]:
    """The studies shipped with trainlab (``trainlab studies``), by name."""
    return [read_study(path) for path in sorted(STUDIES_DIR.glob("*.yaml"))]


STUDY_FILE = "a study: a mapping with name, base and vary, variants or seeds (docs/studies.md)"


def read_study(source: str | Path | dict[str, Any]) -> StudySpec:
    """A study from a YAML file, the name of a built-in study, or a dict."""
    if isinstance(source, dict):
        raw = source
    else:
        path = Path(source)
        builtin = STUDIES_DIR / f"{source}.yaml"
        if not path.is_file() and builtin.is_file():
            path = builtin
        if not path.is_file():
            names = [p.stem for p in STUDIES_DIR.glob("*.yaml")]
            raise UserError(f"study {str(source)!r} not found{did_you_mean(str(source), names)}: give a YAML file "
                            "or the name of a built-in study (`trainlab studies` lists them)")
        raw = read_yaml(path, STUDY_FILE)
        if not raw:
            raise UserError(f"{path} is empty: expected {STUDY_FILE}")
        raw = anchor_study_targets(raw, path.resolve().parent)
    return validate_config(raw, StudySpec, prefix="study.")


def expand(
    spec: StudySpec, scale: str | None = None, overrides: dict[str, Any] | list[str] | None = None,
    seeds: dict[str, list[int]] | None = None,
) -> list[PlannedRun]:
    """Every run of the study, validated; a mistake names the variant and the key.

    ``seeds`` (variant label -> seeds) plans those seeds of those variants instead of the study's seeds.
    """
    spec = spec.at_scale(scale)
    base = apply_overrides(spec.base, spec.scales.get(scale, {}) if scale else {})
    base = apply_overrides(base, overrides or {})

    variants = spec.variants or [Variant(label="")]
    crossed = [dict(zip(spec.vary, values)) for values in itertools.product(*spec.vary.values())]
    zipped = [dict(zip(spec.zip, values)) for values in zip(*spec.zip.values())] or [{}]
    runs = []
    for variant in variants:
        for point in crossed:
            for together in zipped:
                varied = {**point, **together}
                label = _label(variant.label, varied)
                if seeds is not None and label not in seeds:
                    continue
                raw = apply_overrides(apply_overrides(base, variant.set), varied)
                for seed in spec.seed_list if seeds is None else seeds[label]:
                    raw_seeded = apply_overrides(raw, {"train.seed": seed})
                    try:
                        config = validate_config(raw_seeded)
                    except UserError as error:
                        raise UserError(f"study {spec.name!r}, run {label or 'base'!r}: {error}") from None
                    runs.append(PlannedRun(label, {**variant.set, **varied}, seed, config, variant.label))
    _no_run_twice(spec.name, runs)
    return runs


def resolve_claims(spec: StudySpec, runs: list[PlannedRun]) -> list[ResolvedClaim]:
    """The study's claims with the variant labels each compares (:func:`trainlab.study.claims.resolve`)."""
    if spec.adaptive and not spec.claims and len({r.label for r in runs}) < 2:
        raise UserError(f"study {spec.name!r}: seeds {{min, max}} add seeds until claims or comparisons of "
                        "variants are decided, and it has neither: give claims, or a seed count")
    axis_of: dict[str, str] = {}
    if spec.variants:
        axis_of[VARIANT] = VARIANT
        axis_of |= {key: VARIANT for v in spec.variants for key in v.set}
    axis_of |= {key: key for key in spec.vary} | {key: "zip" for key in spec.zip}
    variants: dict[str, VariantValues] = {}
    for run in runs:
        if run.label not in variants:
            config = run.config.to_dict()
            values = {key: _lookup(config, key) for key in axis_of if key != VARIANT}  # the base's value too
            values |= {**run.overrides, **({VARIANT: run.variant} if spec.variants else {})}
            variants[run.label] = VariantValues(run.label, values)
    return resolve(spec.name, spec.claims, list(variants.values()), axis_of)


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    """The value of a dotted key in a nested configuration dict (None where it has none)."""
    for part in dotted.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


def _no_run_twice(study: str, runs: list[PlannedRun]) -> None:
    """A UserError naming two planned runs with one configuration (one run would count twice)."""
    first: dict[str, PlannedRun] = {}
    for run in runs:
        other = first.setdefault(run.run_id, run)
        if other is not run:
            raise UserError(
                f"study {study!r}: runs {other.label or 'base'!r} seed {other.seed} and "
                f"{run.label or 'base'!r} seed {run.seed} have the same configuration (run {run.run_id}); "
                "make them differ or drop one"
            )


def _label(variant: str, varied: dict[str, Any]) -> str:
    """``BN, activation=relu, hidden=[256]``: the variant label and the last part of each varied key."""
    parts = [variant] if variant else []
    parts += [f"{key.rsplit('.', 1)[-1]}={_show(value)}" for key, value in varied.items()]
    return ", ".join(parts)


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
