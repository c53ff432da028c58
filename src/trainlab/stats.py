"""Statistics over seeds: means with confidence intervals, per-variant tables, and tests that decide.

Only finished runs (status ``done``) enter a mean; diverged and failed runs are counted apart.
Every number comes from scipy.stats or statsmodels:

- :func:`difference_test` (one variant against another, paired where seeds pair),
  :func:`location_test` (a variant against a number) and :func:`trend_test` (a metric over an
  ordered variable) give an effect, its bootstrap interval and a two-sided p-value;
- :func:`holm` corrects a family of p-values;
- :func:`seeds_needed` estimates the seeds per variant at which a t-test would decide an effect.

Tests are Student t-tests by default (Colas et al. 2018, "How many random seeds?"): with n paired
seeds an exact two-sided permutation test cannot give a p-value below 2 x 2^-n (1/16 for 5 seeds), too coarse
to decide after a multiple-comparison correction; ``method="permutation"`` runs scipy's
permutation test instead.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

DEFAULT_METRICS = ("train_acc", "val_acc", "test_acc", "train_loss", "val_loss", "test_loss")
FAILED = ("diverged", "failed")  # statuses counted in ``n_failed``
HIGHER_IS_BETTER = ("_acc", "samples_per_s")  # endings of metric names where larger is better
LOWER_IS_BETTER = ("_loss", "_time")  # endings of metric names where smaller is better


def higher_is_better(metric: str) -> bool:
    """True for accuracies and throughput, False for losses and times; other metrics are a ValueError."""
    if metric.endswith(HIGHER_IS_BETTER):
        return True
    if metric.endswith(LOWER_IS_BETTER):
        return False
    raise ValueError(f"metric {metric!r} has no known direction: expected a name ending in "
                     f"{', '.join(HIGHER_IS_BETTER + LOWER_IS_BETTER)}")


MIN_CI_SEEDS = 3  # fewer seeds: reports show the seeds, not a t interval (with 2, its quantile alone is 12.7)


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float, int]:
    """Mean, half-width of the Student-t confidence interval, and n; NaNs are dropped.

    The half-width is ``t_{(1+confidence)/2, n-1} * s / sqrt(n)`` with the sample standard deviation
    ``s`` (ddof=1). One seed: no interval (half-width NaN); no values: the mean is NaN too.
    """
    x = np.asarray(list(values), dtype=float)
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return math.nan, math.nan, 0
    if n == 1:
        return float(x[0]), math.nan, 1
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * x.std(ddof=1) / math.sqrt(n)
    return float(x.mean()), float(half), n


def summarize(runs: pd.DataFrame, metrics: Sequence[str] = DEFAULT_METRICS, by: str = "label",
              confidence: float = 0.95) -> pd.DataFrame:
    """One row per variant, indexed by the ``by`` values in first-appearance order.

    Per metric present in ``runs``: ``<metric>_mean`` and ``<metric>_ci`` (half-width, see
    :func:`mean_ci`) over the variant's finished runs, and ``<metric>_best``, True where the mean is
    the best of all variants (highest for accuracies and throughput, lowest for losses and times).
    Then ``n`` (finished runs) and ``n_failed`` (diverged or failed runs, left out of the means).
    """
    present = [m for m in metrics if m in runs.columns]
    rows = {}
    for key, group in runs.groupby(by, sort=False, dropna=False):
        done = group[group["status"] == "done"]
        row: dict[str, float | int] = {}
        for metric in present:
            row[f"{metric}_mean"], row[f"{metric}_ci"], _ = mean_ci(done[metric], confidence)
        row["n"] = len(done)
        row["n_failed"] = int(group["status"].isin(FAILED).sum())
        rows[key] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = by
    for metric in present:
        means = table[f"{metric}_mean"]
        best = means.max() if higher_is_better(metric) else means.min()
        table.insert(table.columns.get_loc(f"{metric}_ci") + 1, f"{metric}_best", means == best)
    return table


# ----------------------------------------------------------------------------- tests that decide
METHODS = ("t", "permutation")
RESAMPLES = 9999  # bootstrap resamples and permutations; fixed seed, so a verdict is reproducible
POWER = 0.8  # the power seeds_needed aims for
MAX_SEEDS_NEEDED = 1000  # seeds_needed looks no further


@dataclass
class TestResult:
    """A test of one effect against its null value.

    ``effect``: the estimate (a difference of means, a mean, or Kendall's tau); ``low``/``high``: its
    bootstrap interval at the test's confidence; ``p_value``: two-sided, against ``null``;
    ``standardized``: (effect - null) / standard deviation, Cohen's d (d_z when paired), the input
    of :func:`seeds_needed`; ``prob_improvement``: P(a > b) over all pairs of seeds, ties halved
    (rliable's probability of improvement), for differences only.
    """

    __test__ = False  # not a pytest class
    test: str
    effect: float
    low: float
    high: float
    p_value: float
    null: float
    n: int
    standardized: float = math.nan
    prob_improvement: float = math.nan
    paired: bool = False
    inside: bool | None = None  # equivalence tests: whether the evidence is for |effect| < the bound


def difference_test(a: Sequence[float], b: Sequence[float], null: float = 0.0, paired: bool = False,
                    confidence: float = 0.95, method: str = "t") -> TestResult:
    """mean(a) - mean(b) against ``null``.

    ``paired``: ``a[i]`` and ``b[i]`` share seed ``i``: a paired t-test (or sign-flip permutation
    test) on the differences; otherwise Welch's t-test (or a permutation test of the labels).
    """
    a, b = _array(a), _array(b)
    if paired:
        if len(a) != len(b):
            raise ValueError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
        result = location_test(a - b, null, confidence, method)
        result.test = "paired " + result.test.replace("one-sample ", "")
        result.paired = True
    else:
        if len(a) < 2 or len(b) < 2:
            raise ValueError(f"a difference test needs two values on each side, got {len(a)} and {len(b)}")
        effect = float(a.mean() - b.mean())
        spread = _spread(a, b)
        exact = method == "permutation" or spread == 0  # no spread: no t-test, see _permutation_p
        p_value = _permutation_p((a - null, b)) if exact else float(
            stats.ttest_ind(a - null, b, equal_var=False).pvalue)
        low, high = _bootstrap((a, b), _mean_difference, confidence)
        result = TestResult("permutation test" if exact else "Welch t-test", effect, low, high,
                            p_value, null, min(len(a), len(b)), _ratio(effect - null, spread))
    result.prob_improvement = float(stats.mannwhitneyu(a, b).statistic / (len(a) * len(b)))
    return result


def equivalence_test(a: Sequence[float], b: Sequence[float], within: float, paired: bool = False,
                     confidence: float = 0.95) -> TestResult:
    """Whether mean(a) - mean(b) lies within (-within, within), or outside it.

    Equivalence is statsmodels' two one-sided t-tests (TOST); its opposite, the smaller of the
    one-sided t-tests of effect > within and effect < -within. ``p_value`` is twice the smaller of
    the two (Bonferroni over them), and ``inside`` says which it came from.
    """
    from statsmodels.stats.weightstats import ttost_ind, ttost_paired

    result = difference_test(a, b, null=0.0, paired=paired, confidence=confidence)
    a, b = _array(a), _array(b)
    x, y = (a - b, np.zeros(len(a))) if paired else (a, b)
    spread = _spread(a - b) if paired else _spread(a, b)
    if spread == 0:  # one-sided exact permutation tests of the effect against each bound
        sides = {bound: {side: _permutation_p((x - bound, *([] if paired else [y])), side)
                         for side in ("less", "greater")} for bound in (within, -within)}
        p_inside = max(sides[within]["less"], sides[-within]["greater"])
        p_outside = min(sides[within]["greater"], sides[-within]["less"])
    else:
        if paired:
            p_inside = float(ttost_paired(a, b, -within, within)[0])
        else:
            p_inside = float(ttost_ind(a, b, -within, within, usevar="unequal")[0])
        above, below = (stats.ttest_ind(x - bound, y, equal_var=False, alternative=side).pvalue
                        if not paired else stats.ttest_1samp(x, bound, alternative=side).pvalue
                        for bound, side in ((within, "greater"), (-within, "less")))
        p_outside = float(min(above, below))
    result.test = "TOST " + ("paired t-tests" if paired else "Welch t-tests")
    result.p_value = min(1.0, 2 * min(p_inside, p_outside))
    result.inside = p_inside <= p_outside
    result.null = within
    result.standardized = _ratio(within - abs(result.effect), spread)
    return result


def location_test(x: Sequence[float], null: float, confidence: float = 0.95, method: str = "t") -> TestResult:
    """mean(x) against ``null``: a one-sample t-test (or sign-flip permutation test of x - null)."""
    x = _array(x)
    if len(x) < 2:
        raise ValueError(f"a test needs at least two values, got {len(x)}")
    effect, spread = float(x.mean()), _spread(x)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid choices: {', '.join(METHODS)}")
    exact = method == "permutation" or spread == 0  # no spread: no t-test, see _permutation_p
    p_value = _permutation_p((x - null,)) if exact else float(stats.ttest_1samp(x, null).pvalue)
    low, high = _bootstrap((x,), np.mean, confidence)
    name = "sign-flip permutation test" if exact else "one-sample t-test"
    return TestResult(name, effect, low, high, p_value, null, len(x), _ratio(effect - null, spread))


def trend_test(levels: Sequence[float], x: Sequence[float], confidence: float = 0.95) -> TestResult:
    """Kendall's tau between an ordered variable's ``levels`` and the values ``x`` (null: no trend, tau 0).

    The interval resamples (level, value) pairs; ``n`` is the smallest number of values at one level.
    """
    levels, x = _array(levels), _array(x)
    if len(np.unique(levels)) < 2:
        raise ValueError("a trend needs values at two levels at least")
    tau = stats.kendalltau(levels, x)
    effect = 0.0 if np.isnan(tau.statistic) else float(tau.statistic)  # NaN: every value equal
    p_value = 1.0 if np.isnan(tau.pvalue) else float(tau.pvalue)
    low, high = _bootstrap((levels, x), lambda u, v: stats.kendalltau(u, v).statistic, confidence,
                           paired=True, vectorized=False, resamples=1999)
    n = int(np.unique(levels, return_counts=True)[1].min())
    return TestResult("Kendall's tau", effect, low, high, p_value, 0.0, n)


def factorial_anova(values: pd.DataFrame, response: str, factors: Sequence[str]) -> pd.DataFrame | None:
    """Main effects and two-way interactions of ``factors`` (columns of categorical levels) on
    ``response``: an ordinary least-squares fit and its type II ANOVA table (statsmodels), one row per
    term (``A`` or ``A x B``) with ``F``, ``p`` and ``p_holm`` (Holm-adjusted over the terms). None
    when the runs leave no residual degrees of freedom (no seed repeats a cell).
    """
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    names = {factor: f"f{i}" for i, factor in enumerate(factors)}
    frame = values[[response, *factors]].rename(columns={response: "y", **names}).astype({n: str for n in names.values()})
    terms = " + ".join(f"C({n})" for n in names.values())
    formula = f"y ~ ({terms})**2" if len(factors) > 1 else f"y ~ {terms}"
    fit = smf.ols(formula, data=frame).fit()
    if fit.df_resid < 1:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a perfect fit's F is infinite: p 0, which is what it means
        table = anova_lm(fit, typ=2).drop(index="Residual")
    back = {f"C({n})": factor for factor, n in names.items()}
    table.index = [" x ".join(back[part] for part in term.split(":")) for term in table.index]
    out = pd.DataFrame({"F": table["F"], "p": table["PR(>F)"]})
    out["p_holm"] = holm(out["p"].tolist())
    return out


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (statsmodels' ``multipletests``); NaNs stay NaN and are left out of the family."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=float)
    out = np.full(len(p), np.nan)
    known = ~np.isnan(p)
    if known.any():
        out[known] = multipletests(p[known], method="holm")[1]
    return out.tolist()


def seeds_needed(standardized: float, alpha: float, paired: bool, power: float = POWER) -> int | None:
    """Seeds per variant at which a two-sided t-test at level ``alpha`` finds a true standardized effect
    with probability ``power`` (statsmodels' power of the paired/one-sample or two-sample t-test).

    None when the effect is zero or NaN, or needs more than MAX_SEEDS_NEEDED seeds.
    """
    from statsmodels.stats.power import TTestIndPower, TTestPower

    if math.isnan(standardized) or standardized == 0:
        return None
    if math.isinf(standardized):  # no spread: the exact permutation test's smallest p, 2/2^n or 2/C(2n, n)
        for n in range(2, MAX_SEEDS_NEEDED + 1):
            if (2 * 0.5**n if paired else 2 / math.comb(2 * n, n)) < alpha:
                return n
        return None
    n = np.arange(2, MAX_SEEDS_NEEDED + 1)
    analysis = TTestPower() if paired else TTestIndPower()
    with np.errstate(all="ignore"):
        # positional: the sample size is ``nobs`` in TTestPower, ``nobs1`` in TTestIndPower
        reached = np.nonzero(analysis.power(abs(standardized), n, alpha) >= power)[0]
    return int(n[reached[0]]) if len(reached) else None


def _array(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=float)


def _spread(*samples: np.ndarray) -> float:
    """Root of the mean of the samples' variances (ddof=1): the standard deviation of one sample, the
    average one of two. Exactly 0 when every sample is constant to float rounding, where the mean
    would leave ~1e-17 (three seeds at 0.1) and a t-test would find that tiny spread significant."""
    if all(np.ptp(s) <= 1e-12 * np.abs(s).max() for s in samples):  # the same value, to float rounding
        return 0.0
    return math.sqrt(sum(s.var(ddof=1) for s in samples) / len(samples))


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def _ratio(numerator: float, spread: float) -> float:
    if spread == 0:
        return 0.0 if numerator == 0 else math.copysign(math.inf, numerator)
    return numerator / spread


def _permutation_p(samples: tuple[np.ndarray, ...], alternative: str = "two-sided") -> float:
    """scipy's permutation test of the mean (one sample: sign flips) or of the difference of means (two
    samples: labels), exact where there are at most ``RESAMPLES`` arrangements.

    It is also the test of samples without spread (every seed the same value, or differences that
    are: a test set's coarse accuracy steps do that), where a t-test would divide by zero and call
    any difference certain. Here n identical differences from 0 give p = 2/2^n: 0.5 for two seeds.
    """
    if len(samples) == 1:
        return float(stats.permutation_test(samples, np.mean, permutation_type="samples", vectorized=True,
                                            n_resamples=RESAMPLES, random_state=0, alternative=alternative).pvalue)
    return float(stats.permutation_test(samples, _mean_difference, permutation_type="independent",
                                        vectorized=True, n_resamples=RESAMPLES, random_state=0,
                                        alternative=alternative).pvalue)


def _bootstrap(samples: tuple[np.ndarray, ...], statistic, confidence: float, paired: bool = False,
               vectorized: bool = True, resamples: int = RESAMPLES) -> tuple[float, float]:
    """scipy's bootstrap interval (BCa, percentile where BCa is undefined); the point itself when nothing varies."""
    if all(np.ptp(s) == 0 for s in samples):
        value = float(statistic(*samples))
        return value, value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BCa on few or tied values: falls back below
        for method in ("BCa", "percentile"):
            interval = stats.bootstrap(samples, statistic, confidence_level=confidence, method=method,
                                       paired=paired, vectorized=vectorized, n_resamples=resamples,
                                       random_state=0).confidence_interval
            if not (np.isnan(interval.low) or np.isnan(interval.high)):
                return float(interval.low), float(interval.high)
    return math.nan, math.nan


# ----------------------------------------------------------------------------- best versus rest
@dataclass
class Comparison:
    """The variant with the best mean ``metric`` against one other variant.

    ``result``: the test of best - other (paired over the seeds both have, when they share two;
    Welch otherwise), None when a side has fewer than two seeds (``reason`` says so);
    ``p_adjusted``: Holm-corrected over the best's comparisons; ``decided``: ``p_adjusted < alpha``.
    """

    metric: str
    best: str
    other: str
    best_mean: float
    other_mean: float
    result: TestResult | None
    p_adjusted: float
    decided: bool
    reason: str


def best_versus_rest(runs: pd.DataFrame, metric: str = "test_acc", by: str = "label", alpha: float = 0.05,
                     confidence: float = 0.95, method: str = "t") -> list[Comparison]:
    """The variant with the best mean ``metric`` (finished runs) against every other, in first-appearance order.

    Higher is better for accuracies, lower for losses (:func:`higher_is_better`); ties keep the
    first-appearance order. Seeds pair by the ``seed`` column. Needs two variants with a value.
    """
    done = runs[(runs["status"] == "done") & runs[metric].notna()] if metric in runs.columns else runs.iloc[:0]
    samples = {key: group.set_index("seed")[metric].astype(float)
               for key, group in done.groupby(by, sort=False, dropna=False)}
    if len(samples) < 2:
        raise ValueError(f"best_versus_rest needs two variants with finished runs that have {metric!r}, "
                         f"got {len(samples)}")
    sign = -1.0 if higher_is_better(metric) else 1.0
    best = min(samples, key=lambda key: sign * samples[key].mean())
    tests, reasons = {}, {}
    for other in samples:
        if other == best:
            continue
        a, b = samples[best], samples[other]
        common = a.index.intersection(b.index)
        if len(common) >= 2:
            tests[other] = difference_test(a[common], b[common], paired=True, confidence=confidence, method=method)
        elif len(a) >= 2 and len(b) >= 2:
            tests[other] = difference_test(a, b, confidence=confidence, method=method)
        else:
            reasons[other] = f"one seed of {best if len(a) < 2 else other}: no test"
    adjusted = dict(zip(tests, holm([t.p_value for t in tests.values()])))
    out = []
    for other in samples:
        if other == best:
            continue
        result, p = tests.get(other), adjusted.get(other, math.nan)
        decided = bool(p < alpha)
        reason = reasons.get(other) or (f"Holm-corrected p={p:.3g} {'<' if decided else '>='} {alpha:g}")
        out.append(Comparison(metric, best, other, float(samples[best].mean()), float(samples[other].mean()),
                              result, p, decided, reason))
    return out
