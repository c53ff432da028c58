"""Statistics over seeds: means with Student-t confidence intervals, per-variant tables, comparisons.

Only finished runs (status ``done``) enter a mean; diverged and failed runs are counted apart.
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


@dataclass
class Comparison:
    """The best variant against the runner-up on one metric.

    ``distinguishable``: the two confidence intervals do not overlap, i.e. the means differ by more
    than the sum of the half-widths (stricter than the Welch test at the same level). Without an
    interval for either variant (one seed) it is False; ``reason`` says why in words.
    ``p_value``: two-sided Welch t-test, None unless both variants have at least two seeds, NaN
    when their values are (nearly) constant.
    """

    metric: str
    best: str
    runner_up: str
    best_mean: float
    best_ci: float
    best_n: int
    runner_up_mean: float
    runner_up_ci: float
    runner_up_n: int
    p_value: float | None
    distinguishable: bool
    reason: str
    confidence: float = 0.95


def compare(runs: pd.DataFrame, metric: str = "test_acc", by: str = "label",
            confidence: float = 0.95) -> Comparison:
    """Compare the two variants with the best mean ``metric`` over their finished runs.

    Higher is better for accuracies, lower for losses (see :func:`higher_is_better`); ties keep the
    first-appearance order. Needs at least two variants with a finished run that has ``metric``.
    """
    done = runs[runs["status"] == "done"]
    samples = {key: group[metric].dropna().to_numpy(dtype=float)
               for key, group in done.groupby(by, sort=False, dropna=False)}
    samples = {key: x for key, x in samples.items() if len(x)}
    if len(samples) < 2:
        raise ValueError(f"compare needs two variants with finished runs that have {metric!r}, "
                         f"got {len(samples)}")
    sign = -1.0 if higher_is_better(metric) else 1.0
    best, runner_up = sorted(samples, key=lambda key: sign * samples[key].mean())[:2]
    (m1, h1, n1), (m2, h2, n2) = mean_ci(samples[best], confidence), mean_ci(samples[runner_up], confidence)
    p_value = None
    if n1 < 2 and n2 < 2:
        distinguishable, reason = False, "one seed per variant"
    elif n1 < 2 or n2 < 2:
        distinguishable, reason = False, f"one seed of {best if n1 < 2 else runner_up}: no interval"
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            p_value = float(stats.ttest_ind(samples[best], samples[runner_up], equal_var=False).pvalue)
        if caught:  # scipy lost precision: (nearly) constant samples, where the test means nothing
            p_value = math.nan
        distinguishable = abs(m1 - m2) > h1 + h2
        reason = f"the {confidence:.0%} intervals {'do not overlap' if distinguishable else 'overlap'}"
    return Comparison(metric, best, runner_up, m1, h1, n1, m2, h2, n2, p_value, distinguishable, reason,
                      confidence)
