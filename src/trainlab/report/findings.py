"""Plain-language findings computed from a study's data, each a sentence with the numbers behind it.

Every rule looks at one variant (the runs sharing a label) over its seeds and says how it
aggregated them. A rule skips a run that lacks its data (no probes, no history), and a variant
with no run left gets no finding from that rule. Probe rules use every run with probes (a
diverged run's gradients are evidence too); history rules use finished runs (status ``done``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trainlab.probes.measures import dead_fractions, gradient_growth, gradient_ratio, parameterised_layers
from trainlab.stats import (
    MIN_CI_SEEDS, Comparison, best_versus_rest, factorial_anova, higher_is_better, mean_ci, seeds_needed,
)
from trainlab.study.claims import show_value

VANISHING_RATIO = 1e-2  # first/last layer mean |weight gradient| below this: input side learns 100x slower
EXPLODING_RATIO = 1e2  # ... above this: the input side gets 100x the output layer's gradient
EXPLODING_GROWTH = 1e3  # gradient norm at the last probed step / at the first above this: blowing up
DEAD_FRAC = 0.5  # more than half of a layer's units zero for a whole batch: most of the layer does nothing
NOT_TRAINING_LOSS = 0.95  # final train loss >= 95% of the first epoch's, or of ln(classes) (a uniform guess's) ...
CHANCE_MARGIN = 0.05  # ... and the final train accuracy within 0.05 of chance (1 / num_classes)
OVERFIT_RISE = 0.10  # final validation loss more than 10% above its minimum ...
OVERFIT_AFTER = 2  # ... reached at least 2 epochs before the end (not one late jump) ...
OVERFIT_TRAIN_DROP = 0.05  # ... while the train loss fell at least 5% more since then ...
# ... in the mean curve and in at least half of the seeds' own curves (not one seed's noise)
BARELY = 0.2  # final train accuracy less than a fifth of the way from chance to the best variant's ...
CLEARLY_LEARNS = 0.25  # ... whose accuracy is at least this far above chance: barely training

FIGURES = {  # the id of the report figure that shows each kind of finding (None: no figure shows it)
    "best_variant": "final_metrics",
    "factor_effect": "final_metrics",
    "divergence": "learning_curves",
    "not_training": "learning_curves",
    "barely_training": "learning_curves",
    "vanishing_gradients": "layer_grad_means",
    "exploding_gradients": "layer_grad_means",
    "dead_units": None,
    "overfitting": "learning_curves",
}
SPLITS = {"train": "train", "val": "validation", "test": "test"}
QUANTITIES = {"acc": "accuracy", "loss": "loss"}


@dataclass
class Finding:
    """One statement: ``text`` is a sentence with its numbers to 3 significant digits, ``numbers`` the
    unrounded values behind it, ``figure`` the id of the report figure that shows it."""

    kind: str
    label: str
    text: str
    numbers: dict[str, float] = field(default_factory=dict)
    figure: str | None = None


def find(runs: pd.DataFrame, histories: dict[str, pd.DataFrame], probes: dict[str, pd.DataFrame],
         metric: str = "test_acc", num_classes: int = 10, alpha: float = 0.05,
         method: str = "t", factors: Sequence[str] = ()) -> list[Finding]:
    """All findings: the best variant on ``metric`` first, then, for a study of two or more ``factors``
    (columns of ``runs``: the varied keys), each factor's effect, then each variant's findings in
    first-appearance order.

    ``num_classes`` sets chance accuracy (``1 / num_classes``) for the not-training rule; ``alpha``
    the family-wise error rate of the best variant's comparisons with the others, ``method`` their
    test (:data:`trainlab.stats.METHODS`), and the level of the factors' ANOVA.
    """
    findings = _best_variant(runs, metric, alpha, method) + _factor_effects(runs, factors, metric, alpha)
    curves_of = {}
    for label, group in runs.groupby("label", sort=False, dropna=False):
        done = group.loc[group["status"] == "done", "run_id"]
        curves_of[label] = [histories[r] for r in done if r in histories and len(histories[r])]
    best = _best_train_accuracy(curves_of)
    for label, group in runs.groupby("label", sort=False, dropna=False):
        probed = [probes[r] for r in group["run_id"] if r in probes and len(probes[r])]
        curves = curves_of[label]
        findings += _divergence(label, group)
        if curves:
            curve = _mean_curve(curves)
            findings += _not_training(label, curve, len(curves), num_classes, best)
            findings += _overfitting(label, curve, curves)
        if probed:
            findings += _gradients(label, probed)
            findings += _dead_units(label, probed)
    return findings


# ----------------------------------------------------------------------------- rules
def _best_variant(runs: pd.DataFrame, metric: str, alpha: float, method: str) -> list[Finding]:
    if metric not in runs.columns:
        return []
    done = runs[(runs["status"] == "done") & runs[metric].notna()]
    if done["label"].nunique(dropna=False) < 2:
        return []
    comparisons = best_versus_rest(runs, metric, alpha=alpha, method=method)
    best, best_mean = comparisons[0].best, comparisons[0].best_mean
    words = f"{'highest' if higher_is_better(metric) else 'lowest'} mean {_metric_words(metric)}"
    means = done.groupby("label", sort=False, dropna=False)[metric].mean()
    tied = [label for label, mean in means.items() if math.isclose(mean, best_mean, rel_tol=1e-12)]
    if len(tied) > 1:  # no variant is best: say so rather than crown the first
        return [_tie(tied, words, best_mean)]
    values = done.loc[done["label"] == best, metric]
    mean, ci, n = mean_ci(values)
    if n >= MIN_CI_SEEDS:
        text = f"{_name(best)} has the {words}, {_value(mean, ci)} (95% CI over {_seeds(n)})"
    else:  # a t interval over 2 seeds spans 12.7 standard errors: show the seeds instead
        text = f"{_name(best)} has the {words}, {_g(mean)}" + (f" (seeds: {', '.join(map(_g, values))})" if n > 1 else "")
    numbers = {"best_mean": mean, "best_ci": ci, "best_n": float(n)}
    tested = [c for c in comparisons if c.result is not None]
    text += _against_the_rest(comparisons, alpha)
    numbers |= {f"p_adjusted[{c.other}]": c.p_adjusted for c in tested}
    numbers["better_than"] = float(sum(c.decided for c in tested))
    return [Finding("best_variant", best, text + ".", numbers, FIGURES["best_variant"])]


def _factor_effects(runs: pd.DataFrame, factors: Sequence[str], metric: str, alpha: float) -> list[Finding]:
    """For a full factorial study of two or more factors: per factor, whether one level is best at every
    setting of the others (and by how much at each) or which level wins where, with the p of its main
    effect and of its interactions (type II ANOVA, Holm-corrected over the terms)."""
    done = runs[(runs["status"] == "done") & runs[metric].notna()] if metric in runs.columns else runs.iloc[:0]
    factors = [f for f in factors
               if f in done.columns and done[f].notna().all() and done[f].map(show_value).nunique() > 1]
    if len(factors) < 2:
        return []
    levels = done[factors].map(show_value)  # as a study file and claims write them: true, not True
    cells = levels.drop_duplicates()
    if len(cells) < math.prod(levels[f].nunique() for f in factors):  # not every combination was run
        return []
    values = levels.assign(**{metric: done[metric]})
    anova = factorial_anova(values, metric, factors)
    means = values.groupby(factors, sort=False)[metric].mean()
    return [_factor_effect(factor, [f for f in factors if f != factor], means, anova, metric, alpha)
            for factor in factors]


def _factor_effect(factor: str, others: list[str], means: pd.Series, anova: pd.DataFrame | None, metric: str,
                   alpha: float) -> Finding:
    """One factor's effect in words: its winning level in each setting of the ``others``."""
    sign = 1 if higher_is_better(metric) else -1
    table = means.unstack(factor)  # rows: settings of the others; columns: this factor's levels
    table = table.reindex(columns=list(dict.fromkeys(means.index.get_level_values(factor))))
    winners = (sign * table).idxmax(axis=1)
    settings = [", ".join(f"{k}={v}" for k, v in zip(others, key if isinstance(key, tuple) else (key,)))
                for key in table.index]
    margins = [(sign * (row[w] - row.drop(w))).min() for (_, row), w in zip(table.iterrows(), winners)]
    per_setting = "; ".join(f"{where}: {w} by {_g(m)}" for where, w, m in zip(settings, winners, margins))
    words = _metric_words(metric)
    if winners.nunique() == 1:
        text = (f"{factor}: {winners.iloc[0]} gives the {'highest' if sign > 0 else 'lowest'} mean {words} at every "
                f"setting of {_listed(others)}, ahead of the next level by {_g(min(margins))} to {_g(max(margins))} "
                f"({per_setting})")
    else:
        text = f"{factor}: which level is best depends on {_listed(others)} ({per_setting})"
    numbers = {"consistent": float(winners.nunique() == 1), "margin_min": float(min(margins)),
               "margin_max": float(max(margins))}
    if anova is not None:
        main = anova.loc[factor, "p_holm"]
        text += f"; main effect {_p(main)}"
        numbers["p_main"] = float(main)
        for term in [t for t in anova.index if " x " in t and factor in t.split(" x ")]:
            other = next(part for part in term.split(" x ") if part != factor)
            p = anova.loc[term, "p_holm"]
            text += f", interaction with {other} {_p(p)}" + (" (the effect depends on it)" if p < alpha else "")
            numbers[f"p_interaction[{other}]"] = float(p)
        text += f" (two-way ANOVA of the {words}, type II, p Holm-corrected over {len(anova)} terms)"
    else:
        text += " (no seed repeats a setting, so no test)"
    return Finding("factor_effect", factor, text + ".", numbers, FIGURES["factor_effect"])


def _against_the_rest(comparisons: list[Comparison], alpha: float) -> str:
    """The best variant's comparisons with the others in words: which it beats, which not (yet), and the test."""
    tested = [c for c in comparisons if c.result is not None]
    better = [c for c in tested if c.decided]
    unclear = [c for c in comparisons if not c.decided]
    text = ""
    if better:
        text += "; it is better than " + _listed([f"{_name(c.other)} (by {_g(abs(c.result.effect))}, "
                                                  f"{_p(c.p_adjusted)})" for c in better])
    if unclear:
        text += "; not distinguishable from " + _listed([_undecided(c, alpha, len(tested)) for c in unclear])
    if tested:
        kinds = pd.Series([c.result.test for c in tested]).value_counts(sort=False)
        tests = " and ".join(f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in kinds.items())
        text += (f". Tests of {_name(comparisons[0].best)} against each other variant: {tests}, p Holm-corrected "
                 f"over {len(tested)}")
    return text


def _tie(tied: list[str], words: str, mean: float) -> Finding:
    names = ", ".join(_name(label) for label in tied[:-1]) + f" and {_name(tied[-1])}"
    text = f"{names} tie on the {words}, {_g(mean)}: no variant is best on it."
    return Finding("best_variant", tied[0], text, {"best_mean": mean, "tied": float(len(tied))},
                   FIGURES["best_variant"])


def _undecided(c: Comparison, alpha: float, family: int) -> str:
    """An undecided comparison in words: the difference, its interval, p and the seeds that would decide it."""
    if c.result is None:
        return f"{_name(c.other)} ({c.reason})"
    r = c.result
    words = f"{_name(c.other)} ({_g(r.effect)} [{_g(r.low)}, {_g(r.high)}], {_p(c.p_adjusted)}"
    needed = seeds_needed(r.standardized, alpha / family, r.paired)
    return words + (f"; about {needed} seeds would decide it)" if needed and needed > r.n else ")")


def _listed(items: list[str], most: int = 4) -> str:
    """``a, b and c``; beyond ``most`` items, the rest counted."""
    if len(items) > most:
        items = [*items[:most], f"{len(items) - most} more"]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" and {items[-1]}"


def _p(p: float) -> str:
    """``p=0.0123``, or ``p<0.001``."""
    return "p<0.001" if p < 0.001 else f"p={_g(p)}"


def _divergence(label: str, group: pd.DataFrame) -> list[Finding]:
    diverged = group[group["status"] == "diverged"]
    if diverged.empty:
        return []
    text = f"{_name(label)}: {len(diverged)} of {len(group)} runs diverged"
    numbers = {"diverged": float(len(diverged)), "runs": float(len(group))}
    if "diverged_step" in group.columns:
        steps = sorted(int(s) for s in diverged["diverged_step"].dropna())
        if steps:
            text += f" (at step{'s' if len(steps) > 1 else ''} {', '.join(map(str, steps))})"
            numbers["earliest_step"] = float(steps[0])
    return [Finding("divergence", label, text + ".", numbers, FIGURES["divergence"])]


def _not_training(label: str, curve: pd.DataFrame, n: int, num_classes: int,
                  best: tuple[str, float] | None) -> list[Finding]:
    """Not training: the accuracy is at chance and the train loss barely moved or ended no better than
    a uniform guess's ln(num_classes) (after a first epoch that spiked above it). Barely training: the
    accuracy is less than :data:`BARELY` of the way from chance to the best variant's (``best``: its
    label and mean final train accuracy), when that variant clearly learns."""
    if len(curve) < 2 or not {"train_loss", "train_acc"} <= set(curve.columns):
        return []
    first, final = curve["train_loss"].iloc[0], curve["train_loss"].iloc[-1]
    acc, chance = curve["train_acc"].iloc[-1], 1 / num_classes
    ratio = final / first
    name, means = _name(label), f"means over {_seeds(n)}"
    uniform = math.log(num_classes)  # the cross-entropy of predicting every class equally
    if (ratio >= NOT_TRAINING_LOSS or final >= NOT_TRAINING_LOSS * uniform) and abs(acc - chance) <= CHANCE_MARGIN:
        loss = (f"the train loss went from {_g(first)} in the first epoch to {_g(final)} ({_change(ratio)})"
                if ratio >= NOT_TRAINING_LOSS else
                f"the train loss ended at {_g(final)} ({_change(ratio)} from the first epoch's {_g(first)}), "
                + ("no better than" if final >= uniform else f"within {1 - NOT_TRAINING_LOSS:.0%} of")
                + f" the {_g(uniform)} of a uniform guess over {num_classes} classes")
        text = (f"{name}: not training: {loss}, and the final train accuracy {_g(acc)} is within "
                f"{CHANCE_MARGIN:g} of chance ({_g(chance)}) ({means}).")
        numbers = {"first_train_loss": first, "final_train_loss": final, "loss_ratio": ratio,
                   "uniform_guess_loss": uniform, "final_train_acc": acc, "chance": chance, "seeds": float(n)}
        return [Finding("not_training", label, text, numbers, FIGURES["not_training"])]
    if best is None or best[0] == label or best[1] - chance < CLEARLY_LEARNS:
        return []
    way = (acc - chance) / (best[1] - chance)
    if way >= BARELY:
        return []
    text = (f"{name}: barely training: its final train accuracy {_g(acc)} is {_g(acc - chance)} above chance "
            f"({_g(chance)}), {_g(100 * way)}% of the way to the {_g(best[1])} of {_name(best[0])}; the train loss "
            f"went from {_g(first)} to {_g(final)} ({_change(ratio)}) ({means}).")
    numbers = {"final_train_acc": acc, "chance": chance, "best_train_acc": best[1], "way": way,
               "first_train_loss": first, "final_train_loss": final, "seeds": float(n)}
    return [Finding("barely_training", label, text, numbers, FIGURES["barely_training"])]


def _overfitting(label: str, curve: pd.DataFrame, curves: list[pd.DataFrame]) -> list[Finding]:
    """The validation loss rose more than :data:`OVERFIT_RISE` above its minimum, reached at least
    :data:`OVERFIT_AFTER` epochs before the end, while the train loss fell at least
    :data:`OVERFIT_TRAIN_DROP` more: in the mean curve and in at least half of the seeds' curves."""
    rise = _overfit_rise(curve)
    if rise is None:
        return []
    agreeing = sum(_overfit_rise(c.set_index("epoch")) is not None for c in curves)
    if 2 * agreeing < len(curves):
        return []
    val, train = curve["val_loss"], curve["train_loss"]
    best = val.idxmin()
    gap_min, gap_end = val[best] - train[best], val.iloc[-1] - train.iloc[-1]
    text = (f"{_name(label)}: overfitting: the validation loss is lowest at epoch {best} of {val.index[-1]} "
            f"({_g(val[best])}) and ends {_g(100 * rise)}% higher ({_g(val.iloc[-1])}) while the train loss "
            f"keeps falling ({_g(train[best])} to {_g(train.iloc[-1])}); the validation-train loss gap grows "
            f"from {_g(gap_min)} to {_g(gap_end)} (mean curves over {_seeds(len(curves))}; {agreeing} of "
            f"{len(curves)} seeds overfit on their own).")
    numbers = {"min_epoch": float(best), "val_loss_min": val[best], "val_loss_final": val.iloc[-1],
               "rise": rise, "train_loss_at_min": train[best], "train_loss_final": train.iloc[-1],
               "gap_at_min": gap_min, "gap_final": gap_end, "seeds": float(len(curves)),
               "seeds_overfitting": float(agreeing)}
    return [Finding("overfitting", label, text, numbers, FIGURES["overfitting"])]


def _overfit_rise(curve: pd.DataFrame) -> float | None:
    """The relative rise of the validation loss above its minimum where one curve (indexed by epoch)
    overfits by :func:`_overfitting`'s rule, else None."""
    if len(curve) < 2 or not {"val_loss", "train_loss"} <= set(curve.columns):
        return None
    if curve[["val_loss", "train_loss"]].isna().any(axis=None):
        return None
    val, train = curve["val_loss"], curve["train_loss"]
    best = val.idxmin()
    rise = val.iloc[-1] / val[best] - 1
    after = len(val) - 1 - val.index.get_loc(best)
    if rise > OVERFIT_RISE and after >= OVERFIT_AFTER and train.iloc[-1] < (1 - OVERFIT_TRAIN_DROP) * train[best]:
        return float(rise)
    return None


def _gradients(label: str, probed: list[pd.DataFrame]) -> list[Finding]:
    ratios = [r for r in map(gradient_ratio, probed) if not math.isnan(r)]
    growths = [g for g in map(gradient_growth, probed) if not math.isnan(g)]
    name, out, reasons, numbers = _name(label), [], [], {}
    if ratios:
        ratio = float(np.median(ratios))
        first, *_, last = next(ls for ls in map(parameterised_layers, probed) if len(ls) >= 2)
        described = (f"first-to-last layer gradient ratio {_g(ratio)} (mean |weight gradient| of {first} / "
                     f"{last}, median over {_seeds(len(ratios))})")
        if ratio < VANISHING_RATIO:
            out.append(Finding("vanishing_gradients", label,
                               f"{name}: vanishing gradients: {described} is below {VANISHING_RATIO:g}.",
                               {"ratio": ratio, "seeds": float(len(ratios))}, FIGURES["vanishing_gradients"]))
        elif ratio > EXPLODING_RATIO:
            reasons.append(f"{described} is above {EXPLODING_RATIO:g}")
            numbers |= {"ratio": ratio, "seeds": float(len(ratios))}
    if growths and (growth := float(np.median(growths))) > EXPLODING_GROWTH:
        reasons.append(f"the gradient norm grew {_g(growth)}x from the first to the last probed step "
                       f"(median over {_seeds(len(growths))})")
        numbers |= {"growth": growth, "growth_seeds": float(len(growths))}
    if reasons:
        out.append(Finding("exploding_gradients", label,
                           f"{name}: exploding gradients: {'; '.join(reasons)}.",
                           numbers, FIGURES["exploding_gradients"]))
    return out


def _dead_units(label: str, probed: list[pd.DataFrame]) -> list[Finding]:
    fractions = [f for f in map(dead_fractions, probed) if len(f)]
    if not fractions:
        return []
    mean = pd.concat(fractions, axis=1).mean(axis=1)
    above = mean[mean > DEAD_FRAC]
    if above.empty:
        return []
    layer = above.idxmax()
    text = (f"{_name(label)}: dead units: {_g(above[layer])} of the units of {layer} are zero for a whole "
            f"batch at the last probed step (mean over {_seeds(len(fractions))})")
    if len(above) > 1:
        text += f"; {len(above) - 1} more layer{'s' if len(above) > 2 else ''} above {DEAD_FRAC:g}"
    numbers = {"dead_frac": float(above[layer]), "layers_above": float(len(above)),
               "seeds": float(len(fractions))}
    return [Finding("dead_units", label, text + ".", numbers, FIGURES["dead_units"])]


# ----------------------------------------------------------------------------- helpers
def _best_train_accuracy(curves_of: dict[str, list[pd.DataFrame]]) -> tuple[str, float] | None:
    """The variant with the highest mean final train accuracy, and that accuracy; None without one."""
    finals = {label: _mean_curve(curves)["train_acc"].iloc[-1] for label, curves in curves_of.items()
              if curves and all("train_acc" in c for c in curves)}
    finals = {label: acc for label, acc in finals.items() if not math.isnan(acc)}
    return max(finals.items(), key=lambda item: item[1]) if finals else None


def _change(ratio: float) -> str:
    """A loss's final/first ``ratio`` in words: ``down 4.3%``, ``up 2%``, ``unchanged``."""
    percent = 100 * (ratio - 1)
    if abs(percent) < 0.05:
        return "unchanged"
    return f"{'up' if percent > 0 else 'down'} {_g(abs(percent))}%"



def _mean_curve(histories: list[pd.DataFrame]) -> pd.DataFrame:
    """Per-epoch means over runs (index: epoch), up to the last epoch that every run reached."""
    last = min(h["epoch"].max() for h in histories)
    return pd.concat([h[h["epoch"] <= last] for h in histories]).groupby("epoch").mean(numeric_only=True)


def _g(x: float) -> str:
    """A number to 3 significant digits."""
    return f"{x:.3g}"


def _value(mean: float, ci: float) -> str:
    return _g(mean) if math.isnan(ci) else f"{_g(mean)} ± {_g(ci)}"


def _seeds(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"


def _name(label) -> str:
    """A variant's name in a sentence: the base variant's label is empty."""
    return str(label) if label != "" else "base"


def _metric_words(metric: str) -> str:
    split, _, quantity = metric.partition("_")
    if split in SPLITS and quantity in QUANTITIES:
        return f"{SPLITS[split]} {QUANTITIES[quantity]}"
    return metric.replace("_", " ")
