import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from trainlab.stats import (best_versus_rest, difference_test, equivalence_test, higher_is_better, holm,
                            location_test, mean_ci, seeds_needed, summarize, trend_test)

T_975 = {1: 12.70620474, 2: 4.302652730, 3: 3.182446305, 4: 2.776445105}  # Student-t 97.5% quantiles, by df


def runs_frame(rows):
    """rows: (label, seed, status, metrics dict)."""
    return pd.DataFrame([{"run_id": f"{label}-{seed}", "label": label, "seed": seed, "status": status,
                          **metrics} for label, seed, status, metrics in rows])


def test_mean_ci_matches_hand_computation():
    values = [0.91, 0.93, 0.88, 0.95]
    x = np.array(values)
    mean, half, n = mean_ci(values)
    assert n == 4
    assert mean == pytest.approx(x.mean())
    assert half == pytest.approx(T_975[3] * x.std(ddof=1) / math.sqrt(4), rel=1e-8)
    _, half90, _ = mean_ci(values, confidence=0.90)
    assert half90 == pytest.approx(2.353363435 * x.std(ddof=1) / 2, rel=1e-8)


def test_mean_ci_drops_nan_and_has_no_interval_for_one_seed():
    mean, half, n = mean_ci([1.0, np.nan, 3.0, 2.0])
    assert (mean, n) == (2.0, 3)
    assert half == pytest.approx(T_975[2] * 1.0 / math.sqrt(3))
    mean, half, n = mean_ci([0.7, np.nan])
    assert (mean, n) == (0.7, 1) and math.isnan(half)
    mean, half, n = mean_ci([])
    assert n == 0 and math.isnan(mean) and math.isnan(half)


def test_summarize_means_best_marks_and_failed_runs():
    runs = runs_frame([
        ("wide", 0, "done", {"test_acc": 0.80, "test_loss": 0.60, "epoch_time": 2.0, "samples_per_s": 100.0}),
        ("wide", 1, "done", {"test_acc": 0.84, "test_loss": 0.50, "epoch_time": 2.2, "samples_per_s": 90.0}),
        # included, this diverged run would make wide the most accurate (0.88 > 0.86)
        ("wide", 2, "diverged",
         {"test_acc": 1.0, "test_loss": np.nan, "epoch_time": 0.1, "samples_per_s": 1e6}),
        ("deep", 0, "done", {"test_acc": 0.88, "test_loss": 0.40, "epoch_time": 3.0, "samples_per_s": 50.0}),
        ("deep", 1, "failed", {"test_acc": 0.10, "test_loss": 9.0, "epoch_time": 0.1, "samples_per_s": 1e6}),
        ("deep", 2, "done", {"test_acc": 0.84, "test_loss": 0.80, "epoch_time": 3.4, "samples_per_s": 40.0}),
        ("deep", 3, "pending", {}),
    ])
    table = summarize(runs, metrics=("test_acc", "test_loss", "epoch_time", "samples_per_s", "val_acc"))
    assert list(table.index) == ["wide", "deep"]  # first-appearance order
    assert "val_acc_mean" not in table.columns  # absent metrics are left out
    assert table.loc["wide", "test_acc_mean"] == pytest.approx(0.82)
    assert table.loc["deep", "test_acc_mean"] == pytest.approx(0.86)
    half = T_975[1] * np.std([0.88, 0.84], ddof=1) / math.sqrt(2)
    assert table.loc["deep", "test_acc_ci"] == pytest.approx(half)
    assert table.loc["wide", "test_loss_mean"] == pytest.approx(0.55)
    assert table["n"].tolist() == [2, 2] and table["n_failed"].tolist() == [1, 1]
    assert table["test_acc_best"].tolist() == [False, True]  # highest accuracy
    assert table["test_loss_best"].tolist() == [True, False]  # lowest loss: 0.55 < 0.60
    assert table["epoch_time_best"].tolist() == [True, False]  # shortest time: 2.1 < 3.2
    assert table["samples_per_s_best"].tolist() == [True, False]  # highest throughput: 95 > 45


def test_summarize_marks_no_best_when_no_variant_has_a_value():
    runs = runs_frame([("a", 0, "diverged", {"test_acc": np.nan}), ("b", 0, "failed", {"test_acc": np.nan})])
    table = summarize(runs, metrics=("test_acc",))
    assert not table["test_acc_best"].any() and table["n"].tolist() == [0, 0]


def test_direction_of_metrics():
    assert higher_is_better("val_acc") and higher_is_better("samples_per_s")
    assert not higher_is_better("test_loss") and not higher_is_better("wall_time")
    with pytest.raises(ValueError, match="lr"):
        higher_is_better("lr")



# ----------------------------------------------------------------------------- tests that decide
A = np.array([0.912, 0.905, 0.921, 0.899, 0.917])  # five seeds of two variants, seed i in position i
B = np.array([0.884, 0.893, 0.887, 0.880, 0.901])


def welch_p(a, b, null=0.0):
    """Welch's two-sided p-value of mean(a) - mean(b) against ``null``, from its formula."""
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    t = (np.mean(a) - np.mean(b) - null) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return 2 * stats.t.sf(abs(t), df)


def test_difference_test_paired_is_scipys_paired_t_test():
    r = difference_test(A, B, paired=True)
    d = A - B
    assert r.paired and r.test == "paired t-test" and r.n == 5 and r.null == 0.0
    assert r.effect == pytest.approx(d.mean())
    assert r.p_value == pytest.approx(stats.ttest_rel(A, B).pvalue, rel=1e-12)
    assert r.standardized == pytest.approx(d.mean() / d.std(ddof=1))  # Cohen's d_z
    with pytest.raises(ValueError, match="equal lengths"):
        difference_test(A, B[:4], paired=True)


def test_difference_test_unpaired_is_welchs_t_test():
    b = B[:4]
    r = difference_test(A, b)
    assert not r.paired and r.test == "Welch t-test" and r.n == 4
    assert r.effect == pytest.approx(A.mean() - b.mean())
    assert r.p_value == pytest.approx(stats.ttest_ind(A, b, equal_var=False).pvalue, rel=1e-12)
    assert r.p_value == pytest.approx(welch_p(A, b), rel=1e-9)
    pooled = math.sqrt((A.var(ddof=1) + b.var(ddof=1)) / 2)
    assert r.standardized == pytest.approx((A.mean() - b.mean()) / pooled)
    with pytest.raises(ValueError, match="two values on each side"):
        difference_test(A, [0.5])


def test_null_shifts_the_difference_test():
    m = 0.02
    paired = difference_test(A, B, null=m, paired=True)
    assert paired.null == m
    assert paired.p_value == pytest.approx(stats.ttest_1samp(A - B, m).pvalue, rel=1e-12)
    assert paired.standardized == pytest.approx(((A - B).mean() - m) / (A - B).std(ddof=1))
    unpaired = difference_test(A, B, null=m)
    assert unpaired.p_value == pytest.approx(welch_p(A, B, m), rel=1e-9)
    assert unpaired.effect == pytest.approx(A.mean() - B.mean())  # the effect itself is not shifted
    at_effect = difference_test(A, B, null=float((A - B).mean()), paired=True)
    assert at_effect.p_value == pytest.approx(1.0)


def test_prob_improvement_counts_pairs_of_seeds_and_halves_ties():
    a, b = [1.0, 2.0, 3.0, 3.0], [3.0, 0.0, 2.0]
    wins = 0.0
    for x in a:
        for y in b:
            wins += 1.0 if x > y else 0.5 if x == y else 0.0
    assert wins == 7.5  # 1 > 0; 2 > 0, 2 = 2; twice 3 = 3, 3 > 0, 3 > 2
    assert difference_test(a, b).prob_improvement == pytest.approx(wins / 12)
    # paired: still over all pairs of seeds, not only those sharing one
    a, b = [1.0, 2.0, 3.0], [3.0, 0.0, 2.0]
    wins = sum(1.0 if x > y else 0.5 if x == y else 0.0 for x in a for y in b)
    assert difference_test(a, b, paired=True).prob_improvement == pytest.approx(wins / 9)


@pytest.mark.parametrize("paired", [True, False])
def test_bootstrap_interval_contains_the_effect_and_narrows_with_the_spread(paired):
    wide = difference_test(A, B, paired=paired)
    if paired:  # the same mean difference, a tenth of the spread of the differences
        d = A - B
        a, b = A, A - (d.mean() + 0.1 * (d - d.mean()))
    else:  # each sample a tenth as spread around its mean
        a, b = A.mean() + 0.1 * (A - A.mean()), B.mean() + 0.1 * (B - B.mean())
    narrow = difference_test(a, b, paired=paired)
    assert narrow.effect == pytest.approx(wide.effect)
    for r in (wide, narrow):
        assert r.low < r.effect < r.high
    assert narrow.high - narrow.low < 0.5 * (wide.high - wide.low)


def test_samples_without_spread_get_the_exact_permutation_p_value_without_warnings(recwarn):
    same = [0.1, 0.1, 0.1]  # the mean of three 0.1s is 0.1 + 2e-17, the sample deviation 1.7e-17
    other = [0.3, 0.3, 0.3]
    for paired, smallest_p in ((True, 2 / 2**3), (False, 2 / math.comb(6, 3))):  # the two extreme arrangements
        assert difference_test(same, same, paired=paired).p_value == 1.0
        r = difference_test(other, same, paired=paired)
        assert r.p_value == pytest.approx(smallest_p) and "permutation" in r.test
        r = difference_test(other, same, null=float(np.float64(0.3) - np.float64(0.1)), paired=paired)
        assert r.p_value == 1.0  # the difference is the null
        r = difference_test(same, same, paired=paired)
        assert r.low == r.high == 0.0
    assert location_test(same, 0.1).p_value == 1.0 and location_test(same, 0.2).p_value == pytest.approx(0.25)
    assert location_test(same, 0.2).standardized == -math.inf
    equivalent = equivalence_test(same, same, within=0.01)
    assert equivalent.inside and equivalent.p_value == pytest.approx(2 / math.comb(6, 3))  # twice one-sided 1/20
    warned = [str(w.message) for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert not warned


def test_two_seeds_that_differ_by_the_same_test_images_decide_nothing():
    # 2 seeds, each 3 of 178 test images apart: the differences agree to float rounding (1e-16), where a
    # t-test gave p = 2e-15; two sign flips of two equal differences give p = 0.5
    a = np.array([120, 123]) / 178
    b = np.array([123, 126]) / 178
    assert np.ptp(a - b) > 0  # not exactly equal: the case a check for ptp == 0 missed
    r = difference_test(a, b, paired=True)
    assert r.p_value == pytest.approx(0.5) and r.effect == pytest.approx(-3 / 178)
    for n, paired in ((6, True), (4, False)):  # 2/2^6 = 0.031 and 2/C(8, 4) = 0.029 are the first below 0.05
        assert seeds_needed(-math.inf, 0.05, paired) == n


def test_paired_permutation_is_the_exact_sign_flip_test():
    a = np.array([0.71, 0.69, 0.74, 0.70, 0.73])
    b = np.array([0.68, 0.70, 0.70, 0.66, 0.68])  # differences 0.03, -0.01, 0.04, 0.04, 0.05
    d = a - b
    observed = abs(d.mean())
    flips = [abs(np.mean(np.array(signs) * d)) for signs in itertools.product((1, -1), repeat=len(d))]
    exact = np.mean([f >= observed * (1 - 1e-9) for f in flips])
    r = difference_test(a, b, paired=True, method="permutation")
    assert r.test == "paired sign-flip permutation test" and r.paired
    assert exact == 4 / 32  # the observed signs and one flip of -0.01, and their mirror images
    assert r.p_value == pytest.approx(exact)
    all_positive = difference_test(a + 1.0, b, paired=True, method="permutation")
    assert all_positive.p_value == pytest.approx(2 * 2 ** -5)  # the smallest a 5-seed sign-flip test can give


def test_unpaired_permutation_is_the_exact_relabelling_test():
    a, b = np.array([0.71, 0.69, 0.74]), np.array([0.68, 0.70, 0.66])
    pooled, observed = np.concatenate([a, b]), abs(a.mean() - b.mean())
    diffs = [abs(pooled[list(i)].mean() - np.delete(pooled, list(i)).mean())
             for i in itertools.combinations(range(6), 3)]
    exact = np.mean([x >= observed * (1 - 1e-9) for x in diffs])
    r = difference_test(a, b, method="permutation")
    assert r.test == "permutation test" and r.p_value == pytest.approx(exact)


def test_location_test_is_scipys_one_sample_t_test():
    r = location_test(A, 0.9)
    assert r.test == "one-sample t-test" and r.n == 5 and r.null == 0.9
    assert r.effect == pytest.approx(A.mean())
    assert r.p_value == pytest.approx(stats.ttest_1samp(A, 0.9).pvalue, rel=1e-12)
    assert r.standardized == pytest.approx((A.mean() - 0.9) / A.std(ddof=1))
    assert r.low < r.effect < r.high
    with pytest.raises(ValueError, match="at least two"):
        location_test([0.9], 0.5)
    with pytest.raises(ValueError, match="unknown method"):
        location_test(A, 0.9, method="bayes")


def test_trend_test_is_kendalls_tau_and_its_sign_follows_the_trend():
    levels = [0.1, 0.1, 0.1, 0.2, 0.2, 0.4, 0.4, 0.4]  # two values at 0.2: n is 2
    rising = [0.50, 0.55, 0.52, 0.60, 0.58, 0.66, 0.70, 0.57]
    r = trend_test(levels, rising)
    tau = stats.kendalltau(levels, rising)
    assert r.test == "Kendall's tau" and r.n == 2 and r.null == 0.0
    assert r.effect == pytest.approx(tau.statistic) and r.p_value == pytest.approx(tau.pvalue)
    assert r.effect > 0 and r.low <= r.effect <= r.high
    falling = trend_test(levels, [-v for v in rising])
    assert falling.effect == pytest.approx(-tau.statistic) and falling.p_value == pytest.approx(tau.pvalue)
    with pytest.raises(ValueError, match="two levels"):
        trend_test([1, 1, 1], [0.1, 0.2, 0.3])


def test_equivalence_inside_the_bound_is_statsmodels_tost():
    from statsmodels.stats.weightstats import ttost_paired

    b = A + np.array([0.002, -0.001, 0.000, 0.001, -0.002])  # differences of at most 0.002
    r = equivalence_test(A, b, within=0.01, paired=True)
    assert r.inside and r.test == "TOST paired t-tests" and r.null == 0.01
    p_inside = ttost_paired(A, b, -0.01, 0.01)[0]
    assert r.p_value == pytest.approx(min(1.0, 2 * p_inside), rel=1e-9) and r.p_value < 0.01
    assert r.effect == pytest.approx((A - b).mean())
    assert r.standardized == pytest.approx((0.01 - abs((A - b).mean())) / (A - b).std(ddof=1))


def test_equivalence_outside_the_bound_and_p_is_twice_the_smaller_one_sided_p():
    far = equivalence_test(A, B, within=0.005, paired=True)  # differences near 0.02 against a bound of 0.005
    d = A - B
    above = stats.ttest_1samp(d, 0.005, alternative="greater").pvalue
    below = stats.ttest_1samp(d, -0.005, alternative="less").pvalue
    assert not far.inside
    assert far.p_value == pytest.approx(min(1.0, 2 * min(above, below)), rel=1e-9) and far.p_value < 0.05
    at_bound = equivalence_test(A, B, within=float(d.mean()), paired=True)  # both one-sided p-values 1/2
    assert at_bound.p_value == pytest.approx(1.0) and at_bound.p_value <= 1.0
    unpaired = equivalence_test(A, B, within=0.005)
    above = stats.ttest_ind(A - 0.005, B, equal_var=False, alternative="greater").pvalue
    below = stats.ttest_ind(A + 0.005, B, equal_var=False, alternative="less").pvalue
    assert not unpaired.inside and unpaired.test == "TOST Welch t-tests"
    assert unpaired.p_value == pytest.approx(min(1.0, 2 * min(above, below)), rel=1e-9)


def holm_by_hand(p):
    """Holm's step-down: the k-th smallest of m p-values times (m - k + 1), kept non-decreasing, at most 1."""
    known = [i for i, x in enumerate(p) if not math.isnan(x)]
    out, running = [math.nan] * len(p), 0.0
    for k, i in enumerate(sorted(known, key=lambda i: p[i])):
        running = max(running, min(1.0, (len(known) - k) * p[i]))
        out[i] = running
    return out


def test_holm_is_the_step_down_and_leaves_nan_out_of_the_family():
    p = [0.01, math.nan, 0.04, 0.03, 0.005]
    adjusted = holm(p)
    assert adjusted == pytest.approx(holm_by_hand(p), nan_ok=True)
    assert adjusted == pytest.approx([0.03, math.nan, 0.06, 0.06, 0.02], nan_ok=True)  # a family of 4, not 5
    assert holm([0.3, 0.6]) == pytest.approx([0.6, 0.6])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert all(math.isnan(x) for x in holm([math.nan, math.nan])) and holm([]) == []


def test_seeds_needed_reproduces_textbook_sample_sizes():
    assert seeds_needed(0.5, 0.05, paired=True) == 34
    assert seeds_needed(0.5, 0.05, paired=False) == 64
    assert seeds_needed(-0.5, 0.05, paired=False) == 64  # the sign does not matter
    assert seeds_needed(0.0, 0.05, paired=True) is None and seeds_needed(math.nan, 0.05, paired=False) is None
    assert seeds_needed(math.inf, 0.05, paired=True) == 6 and seeds_needed(-math.inf, 0.05, paired=False) == 4
    assert seeds_needed(0.01, 0.05, paired=True) is None  # beyond 1000 seeds


@pytest.mark.parametrize("paired", [True, False])
def test_seeds_needed_gives_the_power_by_simulation(paired):
    effect, draws = 0.5, 6000
    n = seeds_needed(effect, 0.05, paired=paired)
    rng = np.random.default_rng(0)
    x = rng.normal(effect, 1.0, size=(draws, n))
    y = rng.normal(0.0, 1.0, size=(draws, n))

    def power(k):  # the first k seeds of every draw
        if paired:
            p = stats.ttest_1samp(x[:, :k], 0.0, axis=1).pvalue
        else:
            p = stats.ttest_ind(x[:, :k], y[:, :k], axis=1).pvalue
        return np.mean(p < 0.05)

    assert power(n) == pytest.approx(0.8, abs=0.03)
    assert power(n - 3) < power(n)


# ----------------------------------------------------------------------------- best versus rest
def test_best_versus_rest_picks_the_best_mean_and_leaves_failed_runs_out():
    rows = [("low", i, "done", {"test_acc": v, "test_loss": 1 - v}) for i, v in enumerate(B)]
    rows += [("high", i, "done", {"test_acc": v, "test_loss": 1 - v}) for i, v in enumerate(A)]
    rows += [("mid", i, "done", {"test_acc": v, "test_loss": 1 - v}) for i, v in enumerate((A + B) / 2)]
    # included, this diverged run would make low the best on both metrics
    rows += [("low", 5, "diverged", {"test_acc": 100.0, "test_loss": -100.0}),
             ("low", 6, "failed", {"test_acc": 100.0, "test_loss": -100.0})]
    runs = runs_frame(rows)
    for metric in ("test_acc", "test_loss"):
        comparisons = best_versus_rest(runs, metric=metric)
        pairs = [(c.best, c.other) for c in comparisons]
        assert pairs == [("high", "low"), ("high", "mid")]  # first-appearance order
        values = {"high": A, "low": B, "mid": (A + B) / 2}
        for c in comparisons:
            assert c.metric == metric
            sign = 1 if metric == "test_acc" else -1
            assert c.best_mean == pytest.approx(np.mean(sign * values["high"] + (1 - sign) / 2))
            assert c.other_mean == pytest.approx(np.mean(sign * values[c.other] + (1 - sign) / 2))
            assert c.result.n == 5 and c.result.paired


def test_best_versus_rest_pairs_by_the_seed_column_over_shared_seeds():
    best = {0: 0.91, 1: 0.93, 2: 0.90, 3: 0.94, 4: 0.92}
    other = {1: 0.90, 2: 0.86, 3: 0.93, 4: 0.89, 5: 0.70}  # seeds 1-4 shared; rows in another order
    runs = runs_frame([("other", s, "done", {"val_acc": other[s]}) for s in (5, 3, 1, 4, 2)]
                      + [("best", s, "done", {"val_acc": best[s]}) for s in (2, 0, 4, 1, 3)])
    (c,) = best_versus_rest(runs, metric="val_acc")
    shared = [1, 2, 3, 4]
    a, b = [best[s] for s in shared], [other[s] for s in shared]
    assert (c.best, c.other) == ("best", "other")
    assert c.result.paired and c.result.n == 4
    assert c.result.effect == pytest.approx(np.mean(a) - np.mean(b))
    assert c.result.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12)
    assert c.p_adjusted == pytest.approx(c.result.p_value)  # a family of one
    assert c.best_mean == pytest.approx(np.mean(list(best.values())))  # the means are over every seed
    assert c.other_mean == pytest.approx(np.mean(list(other.values())))


def test_best_versus_rest_uses_welch_when_fewer_than_two_seeds_are_shared():
    a, b = [0.91, 0.93, 0.90], [0.85, 0.88, 0.86, 0.87]
    runs = runs_frame([("a", s, "done", {"test_acc": v}) for s, v in zip((0, 1, 2), a)]
                      + [("b", s, "done", {"test_acc": v}) for s, v in zip((2, 3, 4, 5), b)])  # seed 2 shared
    (c,) = best_versus_rest(runs)
    assert not c.result.paired and c.result.test == "Welch t-test"
    assert c.result.p_value == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-12)


def test_best_versus_rest_one_seed_gives_no_test_and_stays_out_of_the_family():
    runs = runs_frame([("a", s, "done", {"test_acc": v}) for s, v in enumerate(A)]
                      + [("b", s, "done", {"test_acc": v}) for s, v in enumerate(B)]
                      + [("c", 0, "done", {"test_acc": 0.5})])
    by_other = {c.other: c for c in best_versus_rest(runs)}
    assert by_other["c"].result is None and math.isnan(by_other["c"].p_adjusted) and not by_other["c"].decided
    assert by_other["c"].reason == "one seed of c: no test"
    assert by_other["b"].p_adjusted == pytest.approx(stats.ttest_rel(A, B).pvalue)  # a family of one
    runs = runs_frame([("a", 0, "done", {"test_acc": 0.9}), ("b", 0, "done", {"test_acc": 0.2}),
                       ("b", 1, "done", {"test_acc": 0.3})])
    (c,) = best_versus_rest(runs)
    assert c.best == "a" and c.result is None and c.reason == "one seed of a: no test"


def test_best_versus_rest_holm_adjusts_over_the_comparisons_and_decides_below_alpha():
    best = np.array([0.90, 0.92, 0.91, 0.93, 0.90, 0.92])
    others = {"far": best - np.array([0.050, 0.046, 0.052, 0.049, 0.055, 0.047]),  # p 3e-7
              "near": best - np.array([0.012, 0.004, 0.015, 0.006, 0.010, 0.002]),  # p 0.010, Holm 0.021
              "close": best - np.array([0.010, -0.008, 0.004, -0.006, 0.012, -0.002])}  # p 0.64
    runs = runs_frame([(label, s, "done", {"test_acc": v})
                       for label, values in {"best": best, **others}.items() for s, v in enumerate(values)])
    raw = [stats.ttest_rel(best, others[k]).pvalue for k in others]
    expected = dict(zip(others, holm_by_hand(raw)))
    for alpha in (0.05, 0.001):
        comparisons = best_versus_rest(runs, alpha=alpha)
        assert [c.other for c in comparisons] == list(others)
        for c in comparisons:
            assert c.p_adjusted == pytest.approx(expected[c.other], rel=1e-9)
            assert c.decided == (expected[c.other] < alpha)
            assert c.reason == f"Holm-corrected p={c.p_adjusted:.3g} {'<' if c.decided else '>='} {alpha:g}"
    decided = [c.other for c in best_versus_rest(runs, alpha=0.05) if c.decided]
    assert decided == ["far", "near"]  # the example covers both outcomes


def test_best_versus_rest_needs_two_variants_with_finished_runs():
    runs = runs_frame([("a", 0, "done", {"test_acc": 0.9}), ("b", 0, "failed", {"test_acc": np.nan})])
    with pytest.raises(ValueError, match="two variants"):
        best_versus_rest(runs)
    with pytest.raises(ValueError, match="two variants"):
        best_versus_rest(runs, metric="val_acc")  # no such column


def test_factorial_anova_of_one_factor_is_scipys_one_way_anova():
    from trainlab.stats import factorial_anova

    rng = np.random.default_rng(0)
    groups = {level: rng.normal(mean, 0.1, 5) for level, mean in (("a", 0.5), ("b", 0.6), ("c", 0.55))}
    frame = pd.DataFrame([{"k": level, "y": v} for level, values in groups.items() for v in values])
    table = factorial_anova(frame, "y", ["k"])
    reference = stats.f_oneway(*groups.values())
    assert table.loc["k", "F"] == pytest.approx(reference.statistic)
    assert table.loc["k", "p"] == pytest.approx(reference.pvalue)
    assert factorial_anova(frame.drop_duplicates("k"), "y", ["k"]) is None  # one run per level: no test
