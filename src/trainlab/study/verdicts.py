"""Verdicts: each claim of a study tested over its seeds, and said supported, contradicted or undecided.

A claim's test (:mod:`trainlab.stats`) gives a two-sided p-value against the claim's null value;
the p-values of a study's claims are Holm-corrected together. A claim is decided when its
corrected p-value is below the study's ``alpha`` (divided by the number of looks when seeds are
added until claims are decided, so that looking again does not inflate the error rate), and then
supported or contradicted by the side of the null its effect lies on. Everything else is
undecided, with the estimated number of seeds that would decide it.

Values are one per finished run (status ``done``): the final epoch's metrics, a generalisation
gap, or a probe measure (:mod:`trainlab.probes.measures`); ratios are tested as log10.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trainlab.probes.measures import dead_fractions, gradient_growth, gradient_ratio
from trainlab.stats import (MAX_SEEDS_NEEDED, TestResult, difference_test, equivalence_test, holm, location_test, seeds_needed,
                            trend_test)
from trainlab.store import RunStore
from trainlab.study.claims import ANALYSIS_METRICS, GAP_METRICS, LOG_METRICS, PROBE_METRICS, Claim, ResolvedClaim, show_value
from trainlab.study.spec import StudySpec

VERDICTS = ("supported", "contradicted", "undecided")
EQUIVARIANCE = {"shift_error": "shift", "rotation_error": "rotate"}  # claim metric -> transform measured
PROBE_MEASURES = {"grad_ratio": gradient_ratio, "grad_growth": gradient_growth,
                  "dead_frac": lambda probe: float(dead_fractions(probe).max())}
WORDS = {"train_acc": "train accuracy", "val_acc": "validation accuracy", "test_acc": "test accuracy",
         "train_loss": "train loss", "val_loss": "validation loss", "test_loss": "test loss",
         "epoch_time": "epoch time", "samples_per_s": "samples/s", "acc_gap": "train-validation accuracy gap",
         "loss_gap": "validation-train loss gap", **PROBE_METRICS, **ANALYSIS_METRICS}


@dataclass
class Verdict:
    """A claim's verdict: ``verdict`` is one of VERDICTS; ``result`` the test (None without enough
    seeds, ``reason`` says why); ``p_adjusted`` Holm-corrected; ``seeds`` the values used per variant;
    ``seeds_needed`` per variant to decide it (undecided claims, where it can be estimated)."""

    index: int
    claim: Claim
    statement: str
    verdict: str
    result: TestResult | None
    p_adjusted: float
    level: float
    seeds: dict[str, int]
    seeds_needed: int | None
    reason: str
    involved: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """Plain values, for ``--json`` and tables."""
        r = self.result
        return {"claim": self.index, "statement": self.statement, "quote": self.claim.quote,
                "verdict": self.verdict, "metric": self.claim.metric, "form": self.claim.form,
                "effect": r.effect if r else None, "low": r.low if r else None, "high": r.high if r else None,
                "null": r.null if r else None, "test": r.test if r else None,
                "p_value": r.p_value if r else None, "p_adjusted": _number(self.p_adjusted), "level": self.level,
                "prob_improvement": _number(r.prob_improvement) if r else None,
                "standardized": _number(r.standardized) if r else None,
                "seeds": self.seeds, "seeds_needed": self.seeds_needed, "reason": self.reason}


def claim_values(runs: pd.DataFrame, metrics: set[str], store: RunStore | None = None) -> pd.DataFrame:
    """One row per finished run (``label``, ``seed``) with a column per claimed metric.

    ``runs`` is :attr:`~trainlab.study.run.StudyResult.runs`; probe measures read the run's probes
    from ``store``. A run without the metric has NaN there.
    """
    done = runs[runs["status"] == "done"]
    out = done[["run_id", "label", "seed"]].copy()
    for metric in metrics:
        if metric in GAP_METRICS:
            minuend, subtrahend = GAP_METRICS[metric]
            out[metric] = (done[minuend] - done[subtrahend]) if {minuend, subtrahend} <= set(done.columns) \
                else math.nan
        elif metric in PROBE_MEASURES:
            out[metric] = [_probe_measure(store, run_id, metric) for run_id in done["run_id"]]
        elif metric in ANALYSIS_METRICS:
            errors = [_equivariance(store, run_id) for run_id in done["run_id"]]
            out[metric] = [e[EQUIVARIANCE[metric]] for e in errors]
        else:
            out[metric] = done[metric] if metric in done.columns else math.nan
    return out.reset_index(drop=True)


def judge(spec: StudySpec, claims: list[ResolvedClaim], values: pd.DataFrame,
          counts: dict[str, int] | None = None) -> list[Verdict]:
    """The verdict of every claim on ``values`` (:func:`claim_values`).

    ``counts`` (variant label -> n) keeps only each variant's seeds below n: the data as it was
    when the study had that many seeds of each (see :mod:`trainlab.study.adaptive`).
    """
    if counts is not None:
        values = seeds_below(values, counts)
    looks = spec.adaptive.looks if spec.adaptive else 1
    level = spec.statistics.alpha / looks
    tested = [_test(c, values, spec.statistics.confidence, spec.statistics.test) for c in claims]
    adjusted = holm([r.p_value if r is not None else math.nan for r, _, _ in tested])
    family = sum(r is not None for r, _, _ in tested)
    out = []
    for resolved, (result, seeds, reason), p in zip(claims, tested, adjusted):
        claim = resolved.claim
        needed = None
        if result is None:
            verdict = "undecided"
        elif p < level:
            verdict = "supported" if _on_claimed_side(claim, result) else "contradicted"
            reason = f"Holm-corrected {_p(p)} < {level:.3g}"
        else:
            verdict = "undecided"
            reason = f"Holm-corrected {_p(p)} >= {level:.3g}"
            if claim.trend is None:
                one_sample = result.paired or claim.form in ("at_least", "at_most")
                total = seeds_needed(result.standardized, level / family, one_sample)
                groups = len(resolved.pairs) or len(resolved.labels)  # pooled pairs or variants share the seeds
                needed = None if total is None else max(2, math.ceil(total / groups))
        out.append(Verdict(resolved.index, claim, statement(claim), verdict, result, p, level, seeds, needed,
                           reason, resolved.involved))
    return out


def seeds_below(values: pd.DataFrame, counts: dict[str, int]) -> pd.DataFrame:
    """The rows of ``values`` whose seed is below its variant's count in ``counts`` (a boolean mask, not
    a list: an empty list would select no columns of an empty frame)."""
    below = [seed < counts.get(label, 0) for label, seed in zip(values["label"], values["seed"])]
    return values[np.array(below, dtype=bool)]


def statement(claim: Claim) -> str:
    """The claim in words, e.g. ``test accuracy: model.activation=relu > model.activation=sigmoid``."""
    metric = WORDS[claim.metric] + (" (log10)" if claim.metric in LOG_METRICS else "")
    where = f" where {_selector(claim.where)}" if claim.where else ""
    if claim.trend is not None:
        over = claim.over.rsplit(".", 1)[-1]
        return f"{metric} {'rises' if claim.trend == 'increasing' else 'falls'} with {over}{where}"
    of = _selector(claim.of) or "every run"
    if claim.form == "same_as":
        return f"{metric}: {of} within {claim.within:g} of {_selector(claim.other)}{where}"
    if claim.form in ("greater_than", "less_than"):
        relation = ">" if claim.form == "greater_than" else "<"
        margin = f" by more than {claim.margin:g}" if claim.margin else ""
        return f"{metric}: {of} {relation} {_selector(claim.other)}{margin}{where}"
    relation = ">=" if claim.form == "at_least" else "<="
    return f"{metric}: {of} {relation} {claim.bound:g}{where}"


# ----------------------------------------------------------------------------- one claim's test
def _test(resolved: ResolvedClaim, values: pd.DataFrame, confidence: float,
          method: str) -> tuple[TestResult | None, dict[str, int], str]:
    """The claim's test on ``values``, the values used per variant, and why there is no test if none."""
    claim = resolved.claim
    series = {label: _series(values, label, claim.metric) for label in resolved.involved}
    seeds = {label: len(s) for label, s in series.items()}
    short = [label for label, n in seeds.items() if n < 2]
    if short:
        return None, seeds, f"{short[0]} has {_runs(seeds[short[0]])} with {claim.metric}: a test needs 2"
    if claim.trend is not None:
        levels = np.concatenate([np.full(len(series[label]), i) for i, label in enumerate(resolved.labels)])
        x = np.concatenate([series[label].to_numpy() for label in resolved.labels])
        return trend_test(levels, x, confidence), seeds, ""
    if claim.form in ("at_least", "at_most"):
        x = np.concatenate([series[label].to_numpy() for label in resolved.labels])
        null = math.log10(claim.bound) if claim.metric in LOG_METRICS else claim.bound
        return location_test(x, null, confidence, method), seeds, ""
    a, b, paired = _sides(series, resolved.pairs)
    if paired:  # only the seeds both sides of a pair have count
        seeds = {label: 0 for label in seeds}
        for mine, theirs in resolved.pairs:
            shared = len(series[mine].index.intersection(series[theirs].index))
            seeds[mine] += shared
            seeds[theirs] += shared
    if claim.form == "same_as":
        return equivalence_test(a, b, claim.within, paired, confidence), seeds, ""
    null = claim.sign * claim.margin
    return difference_test(a, b, null, paired, confidence, method), seeds, ""


def _sides(series: dict[str, pd.Series], pairs: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray, bool]:
    """Both sides' values over all pairs: paired over the seeds each pair shares when there are two
    such values at least, else every value of each side (unpaired)."""
    shared = [(mine, theirs, series[mine].index.intersection(series[theirs].index)) for mine, theirs in pairs]
    if sum(len(common) for *_, common in shared) >= 2:
        a = np.concatenate([series[mine][common].to_numpy() for mine, _, common in shared])
        b = np.concatenate([series[theirs][common].to_numpy() for _, theirs, common in shared])
        return a, b, True
    a = np.concatenate([series[mine].to_numpy() for mine, _ in pairs])
    b = np.concatenate([series[theirs].to_numpy() for _, theirs in pairs])
    return a, b, False


def _series(values: pd.DataFrame, label: str, metric: str) -> pd.Series:
    """A variant's values of ``metric`` by seed, NaNs dropped, log10 for ratios (non-positive dropped)."""
    rows = values[values["label"] == label]
    series = rows.set_index("seed")[metric].astype(float).dropna()
    if metric in LOG_METRICS:
        series = np.log10(series[series > 0])
    return series


def _on_claimed_side(claim: Claim, result: TestResult) -> bool:
    if claim.form == "same_as":
        return bool(result.inside)
    return claim.sign * (result.effect - result.null) > 0


def _equivariance(store: RunStore | None, run_id: str) -> dict[str, float]:
    from trainlab.analysis.catalog import equivariance_errors

    return equivariance_errors(store, run_id) if store is not None else {"shift": math.nan, "rotate": math.nan}


def _probe_measure(store: RunStore | None, run_id: str, metric: str) -> float:
    probe = store.probes(run_id) if store is not None else pd.DataFrame()
    return PROBE_MEASURES[metric](probe) if len(probe) else math.nan


def _selector(selector: dict) -> str:
    """``activation=relu, hidden=[32]``: the last part of each key, as variant labels name them."""
    return ", ".join(f"{key.rsplit('.', 1)[-1]}={show_value(value)}" for key, value in selector.items())


def _runs(n: int) -> str:
    return f"{n} finished run{'s' if n != 1 else ''}"


def _number(x: float) -> float | None:
    return None if x is None or math.isnan(x) else x


def _p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3g}"


def quotes(verdicts: list[Verdict]) -> list[tuple[list[int], str]]:
    """Each quoted sentence once, with the numbers of the claims that test it, in claim order."""
    by_quote: dict[str, list[int]] = {}
    for v in verdicts:
        if v.claim.quote:
            by_quote.setdefault(v.claim.quote, []).append(v.index)
    return [(numbers, quote) for quote, numbers in by_quote.items()]


def verdict_table(verdicts: list[Verdict]) -> pd.DataFrame:
    """One row per claim, in words and rounded numbers: claim, verdict, statement, effect [interval],
    p (Holm-corrected), seeds per variant, and a note (why undecided; the seeds that would decide it)."""
    rows = []
    for v in verdicts:
        r = v.result
        counts = sorted(set(v.seeds.values()))
        seeds = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        rows.append({"claim": v.index, "verdict": v.verdict, "statement": v.statement,
                     "effect [interval]": _effect(v),
                     "p (Holm)": "-" if r is None else _p(v.p_adjusted).removeprefix("p=").removeprefix("p"),
                     "P(better)": _better(v),
                     "seeds": seeds, "note": _note(v)})
    return pd.DataFrame(rows)


def _effect(v: Verdict) -> str:
    """The effect and its interval: signed for differences and trends, plain for a mean against a number."""
    r = v.result
    if r is None:
        return "-"
    signed = "+" if v.claim.form not in ("at_least", "at_most") else ""
    return f"{r.effect:{signed}.3g} [{r.low:.3g}, {r.high:.3g}]"


def _better(v: Verdict) -> str:
    """A comparison's probability of improvement: that a seed of the left side beats one of the right
    in the claimed direction (rliable's P(X > Y)); '-' for other claims."""
    if v.result is None or v.claim.form not in ("greater_than", "less_than"):
        return "-"
    p = v.result.prob_improvement
    return f"{p if v.claim.form == 'greater_than' else 1 - p:.2f}"


def _note(v: Verdict) -> str:
    """Why a claim is undecided and how many seeds would decide it; empty for a decided claim."""
    if v.verdict != "undecided":
        return ""
    if v.result is None:
        return v.reason
    if v.claim.trend is not None:
        return "seeds needed not estimated for trends"
    if v.seeds_needed is None:
        if v.result.standardized == 0 or math.isnan(v.result.standardized):
            return "no effect seen to estimate seeds from"
        return f"more than {MAX_SEEDS_NEEDED} seeds would be needed"
    have = min(v.seeds.values())
    return f"about {v.seeds_needed} seeds per variant would decide it" if v.seeds_needed > have else ""
