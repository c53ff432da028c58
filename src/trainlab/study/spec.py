"""A study file and its expansion into runs.

A study is one question, a base configuration, what varies and how many seeds::

    name: activations-depth
    question: Does the activation function decide whether deep MLPs train?
    base: {data: {...}, model: {...}, train: {...}}
    vary: {model.activation: [sigmoid, relu], model.hidden: [[256], [256, 256]]}   # crossed
    zip: {train.lr: [0.1, 0.01], train.batch_size: [512, 64]}                        # change together
    variants: [{label: BN, set: {model.batch_norm: true}}]                           # crossed with vary
    seeds: 3
    scales: {quick: {data.limit: 2000, train.epochs: 2}}

Order of application for each run: base, the scale's overrides, the command line's
``--set``, the variant's ``set``, the ``vary`` and ``zip`` values, then the seed. Every run is
validated before any of them trains.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trainlab.config import RunConfig, apply_overrides, read_yaml
from trainlab.config import validate as validate_config
from trainlab.errors import UserError, did_you_mean

MAX_SEEDS = 10_000  # a larger count is a typo, not a study

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
    seeds: int | list[int] = 1
    scales: dict[str, dict[str, Any]] = Field(default_factory=dict)
    report: list[Any] = Field(default_factory=list)

    @field_validator("vary", "zip")
    @classmethod
    def _no_empty_axis(cls, axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in axes.items():
            if not values:
                raise ValueError(f"axis {key!r} has no values")
        return axes

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: int | list[int]) -> int | list[int]:
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
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)


@dataclass
class PlannedRun:
    """One run of a study: its group ``label`` (all but the seed), what it sets, its seed and config."""

    label: str
    overrides: dict[str, Any]
    seed: int
    config: RunConfig = field(repr=False)

    @property
    def run_id(self) -> str:
        return self.config.run_id()


STUDIES_DIR = Path(__file__).resolve().parent.parent / "studies"


def builtin_studies() -> list[StudySpec]:
    """The studies shipped with trainlab (``trainlab studies``), by name."""
    return [read_study(path) for path in sorted(STUDIES_DIR.glob("*.yaml"))]


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
        raw = read_yaml(path)
    return validate_config(raw, StudySpec, prefix="study.")


def expand(
    spec: StudySpec, scale: str | None = None, overrides: dict[str, Any] | list[str] | None = None
) -> list[PlannedRun]:
    """Every run of the study, validated; a mistake names the variant and the key."""
    if scale is not None and scale not in spec.scales and scale != "full":
        raise UserError(f"study {spec.name!r} has no scale {scale!r}; valid choices: {', '.join(spec.scales) or 'full'}")
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
                raw = apply_overrides(apply_overrides(base, variant.set), varied)
                for seed in spec.seed_list:
                    raw_seeded = apply_overrides(raw, {"train.seed": seed})
                    try:
                        config = validate_config(raw_seeded)
                    except UserError as error:
                        raise UserError(f"study {spec.name!r}, run {label or 'base'!r}: {error}") from None
                    runs.append(PlannedRun(label, {**variant.set, **varied}, seed, config))
    _no_run_twice(spec.name, runs)
    return runs


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
