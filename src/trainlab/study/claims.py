"""Claims: what a study expects, stated in its file, checked against its variants at plan time.

A claim names a metric and one of three forms::

    claims:
      - quote: "Maxout gave the highest accuracy"          # optional: the sentence it tests
        metric: test_acc
        of: {variant: maxout}                               # a variant against another ...
        greater_than: {variant: tanh}                       # ... or less_than; optional margin
      - {metric: test_acc, of: {variant: depth 10}, at_most: 0.12}            # against a number (or at_least)
      - {metric: test_acc, trend: decreasing, over: variant, where: {model.activation: sigmoid}}
      - {metric: grad_ratio, of: {model.activation: sigmoid}, at_most: 0.01}  # a probe quantity
      - {metric: acc_gap, of: {variant: dropout}, less_than: {variant: baseline}}   # train - val accuracy
      - {metric: test_acc, of: {variant: M2}, same_as: {variant: M1}, within: 0.01}  # no difference

Selectors (``of``, ``greater_than``/``less_than``, ``where``) map a key to a value: a dotted key the
study varies, or ``variant`` (a label of its ``variants:`` list). :func:`resolve` turns each claim
into the variant labels it compares, or raises a UserError naming the claim and the valid choices.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trainlab.errors import UserError, did_you_mean

FINAL_METRICS = ("train_acc", "val_acc", "test_acc", "train_loss", "val_loss", "test_loss", "epoch_time",
                 "samples_per_s")
GAP_METRICS = {  # generalisation gaps of the final epoch: name -> (minuend, subtrahend)
    "acc_gap": ("train_acc", "val_acc"),
    "loss_gap": ("val_loss", "train_loss"),
}
PROBE_METRICS = {  # name -> what it is; tested on a log10 scale where it is a ratio
    "grad_ratio": "first-to-last layer gradient ratio",
    "grad_growth": "gradient norm growth",
    "dead_frac": "largest dead-unit fraction",
}
ANALYSIS_METRICS = {  # name -> what it is; measured on the trained model (trainlab.analysis)
    "shift_error": "relative shift-equivariance error of the first conv",
    "rotation_error": "relative rotation-equivariance error of the first conv",
}
LOG_METRICS = ("grad_ratio", "grad_growth")
METRICS = (*FINAL_METRICS, *GAP_METRICS, *PROBE_METRICS, *ANALYSIS_METRICS)
FORMS = ("greater_than", "less_than", "same_as", "at_least", "at_most", "trend")
COMPARISONS = ("greater_than", "less_than", "same_as")  # forms that compare variants with variants
VARIANT = "variant"  # the selector key of a label of the study's variants: list


class Claim(BaseModel):
    """One claim of a study file (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    metric: str
    quote: str = ""
    of: dict[str, Any] = Field(default_factory=dict)
    greater_than: dict[str, Any] | None = None
    less_than: dict[str, Any] | None = None
    same_as: dict[str, Any] | None = None
    within: float | None = Field(default=None, gt=0)
    at_least: float | None = None
    at_most: float | None = None
    trend: Literal["increasing", "decreasing"] | None = None
    over: str | None = None
    where: dict[str, Any] = Field(default_factory=dict)
    margin: float = Field(default=0.0, ge=0)
    scales: list[str] | None = None  # judged only at these scales ("full": no scale); default: all

    @model_validator(mode="after")
    def _one_form(self) -> Claim:
        given = [form for form in FORMS if getattr(self, form) is not None]
        if len(given) != 1:
            raise ValueError(f"a claim needs exactly one of {', '.join(FORMS)}; got "
                             f"{', '.join(given) or 'none'}")
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}{did_you_mean(self.metric, METRICS)}; "
                             f"valid choices: {', '.join(METRICS)}")
        if (self.trend is None) != (self.over is None):
            raise ValueError("`trend` and `over` go together: over which varied key the metric rises or falls")
        if self.form in COMPARISONS and not self.of:
            raise ValueError(f"`{self.form}` compares the variants of `of` with others: give `of`")
        if (self.same_as is None) != (self.within is None):
            raise ValueError("`same_as` and `within` go together: the largest difference that counts as the same")
        if self.margin and self.form not in ("greater_than", "less_than"):
            raise ValueError("`margin` applies to greater_than and less_than; move the number itself instead")
        return self

    @property
    def form(self) -> str:
        return next(form for form in FORMS if getattr(self, form) is not None)

    @property
    def other(self) -> dict[str, Any]:
        """The selector of the variants ``of`` is compared with (greater_than, less_than or same_as)."""
        return next((selector for selector in (self.greater_than, self.less_than, self.same_as)
                     if selector is not None), {})

    @property
    def bound(self) -> float:
        """The number of an at_least/at_most claim."""
        return self.at_least if self.at_least is not None else self.at_most

    @property
    def sign(self) -> int:
        """+1 where the claim expects the effect above its null value, -1 below."""
        return 1 if self.form in ("greater_than", "at_least") or self.trend == "increasing" else -1


@dataclass
class VariantValues:
    """A variant of a study as claims see it: its label and its value of every selectable key."""

    label: str
    values: dict[str, Any]


@dataclass
class ResolvedClaim:
    """A claim with the variants it involves: ``pairs`` (of, other) labels for a comparison, ``labels``
    (those pooled, against a number; or one per level of ``over``, in order, for a trend)."""

    index: int
    claim: Claim
    pairs: list[tuple[str, str]]
    labels: list[str]

    @property
    def involved(self) -> list[str]:
        """Every variant label the claim's verdict depends on."""
        return list(dict.fromkeys([label for pair in self.pairs for label in pair] + self.labels))


def resolve(study: str, claims: list[Claim], variants: list[VariantValues], axis_of: dict[str, str]) -> list[ResolvedClaim]:
    """Each claim with the variants it selects; a UserError names the claim and the valid keys or values.

    ``axis_of`` maps each selectable key to the axis it moves: a vary key to itself, zip keys to
    one shared axis, keys set by the variants list (and ``variant``) to ``variant``.
    """
    out = []
    for index, claim in enumerate(claims, start=1):
        where = f"study {study!r}, claim {index}"
        for name in ("of", "where", *COMPARISONS):
            _check_selector(where, name, getattr(claim, name) or {}, variants, axis_of)
        if claim.form in COMPARISONS:
            out.append(ResolvedClaim(index, claim, _pairs(where, claim, variants, axis_of), []))
        elif claim.trend is not None:
            out.append(ResolvedClaim(index, claim, [], _levels(where, claim, variants, axis_of)))
        else:
            chosen = _matching(variants, {**claim.of, **claim.where})
            if not chosen:
                raise UserError(f"{where}: no variant has {_show(claim.of | claim.where)}")
            out.append(ResolvedClaim(index, claim, [], [v.label for v in chosen]))
    return out


def _check_selector(where: str, name: str, selector: dict[str, Any], variants: list[VariantValues],
                    axis_of: dict[str, str]) -> None:
    for key, value in selector.items():
        if key not in axis_of:
            raise UserError(f"{where}: `{name}` names {key!r}, which the study does not vary"
                            f"{did_you_mean(key, axis_of)}; valid keys: {', '.join(axis_of)}")
        used = list(dict.fromkeys(show_value(v.values[key]) for v in variants if key in v.values))
        if show_value(value) not in used:
            raise UserError(f"{where}: `{name}` selects {key}={show_value(value)}, which no variant has"
                            f"{did_you_mean(show_value(value), used)}; valid values: {', '.join(used)}")


def _pairs(where: str, claim: Claim, variants: list[VariantValues], axis_of: dict[str, str]) -> list[tuple[str, str]]:
    """Each variant of ``of`` with the one of the other side that agrees on every key the selectors leave free."""
    mine = _matching(variants, {**claim.of, **claim.where})
    theirs = _matching(variants, {**claim.other, **claim.where})
    if not mine or not theirs:
        empty = claim.of if not mine else claim.other
        raise UserError(f"{where}: no variant has {_show({**empty, **claim.where})}")
    free_keys = _free_keys({*claim.of, *claim.other}, axis_of)
    pairs = []
    for variant in mine:
        free = {key: variant.values.get(key) for key in free_keys}
        partners = [v for v in theirs if all(show_value(v.values.get(k)) == show_value(x) for k, x in free.items())]
        if len(partners) != 1:
            found = f"{len(partners)}: " + "; ".join(v.label for v in partners) if partners else "none"
            raise UserError(f"{where}: {variant.label!r} needs one variant to compare with that has "
                            f"{_show(claim.other)} and the same {', '.join(free) or 'settings'}, found {found}; "
                            "narrow the claim with `where`")
        if partners[0].label == variant.label:
            raise UserError(f"{where}: {variant.label!r} is on both sides of the comparison")
        pairs.append((variant.label, partners[0].label))
    return pairs


def _free_keys(named: set[str], axis_of: dict[str, str]) -> list[str]:
    """The keys two paired variants must agree on: all but those named, and what moves with them
    (naming ``variant`` moves every key the variants list sets; naming a key a variant sets moves the
    variant's label; naming a zip key moves all zip keys)."""
    moved = {axis_of[key] for key in named}
    return [key for key, axis in axis_of.items()
            if key not in named and not (key == VARIANT and VARIANT in moved)
            and not (axis == VARIANT and VARIANT in named) and not (axis == "zip" and "zip" in moved)]


def _levels(where: str, claim: Claim, variants: list[VariantValues], axis_of: dict[str, str]) -> list[str]:
    """The variants of a trend claim, one per level of ``over`` in the study's order."""
    if claim.over not in axis_of:
        raise UserError(f"{where}: `over` names {claim.over!r}, which the study does not vary"
                        f"{did_you_mean(claim.over, axis_of)}; valid keys: {', '.join(axis_of)}")
    chosen = _matching(variants, {**claim.of, **claim.where})
    levels: dict[str, list[VariantValues]] = {}
    for variant in chosen:
        levels.setdefault(show_value(variant.values.get(claim.over)), []).append(variant)
    if len(levels) < 2:
        raise UserError(f"{where}: a trend over {claim.over} needs variants at two levels at least, "
                        f"found {len(levels)}")
    crowded = next((level for level, group in levels.items() if len(group) > 1), None)
    if crowded is not None:
        names = "; ".join(v.label for v in levels[crowded])
        raise UserError(f"{where}: {len(levels[crowded])} variants have {claim.over}={crowded} ({names}); "
                        "fix the other varied keys with `where` so each level has one")
    return [group[0].label for group in levels.values()]


def _matching(variants: list[VariantValues], selector: dict[str, Any]) -> list[VariantValues]:
    return [v for v in variants if all(show_value(v.values.get(k)) == show_value(x) for k, x in selector.items())]


def show_value(value: Any) -> str:
    """A selector value as text: strings as they are, anything else as compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _show(selector: dict[str, Any]) -> str:
    return ", ".join(f"{key}={show_value(value)}" for key, value in selector.items()) or "(any settings)"
