import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from trainlab.report.stats import compare, higher_is_better, mean_ci, summarize

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


def test_compare_separated_samples_are_distinguishable_with_scipys_p_value():
    a, b = [0.91, 0.92, 0.915], [0.85, 0.86, 0.855]
    runs = runs_frame([("b", i, "done", {"test_acc": v}) for i, v in enumerate(b)]
                      + [("a", i, "done", {"test_acc": v}) for i, v in enumerate(a)]
                      + [("c", 0, "done", {"test_acc": 0.5})])
    c = compare(runs)
    assert (c.best, c.runner_up) == ("a", "b")
    assert c.best_mean == pytest.approx(np.mean(a)) and c.runner_up_mean == pytest.approx(np.mean(b))
    assert c.best_ci == pytest.approx(T_975[2] * np.std(a, ddof=1) / math.sqrt(3))
    assert (c.best_n, c.runner_up_n) == (3, 3)
    assert c.p_value == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-12)
    assert c.distinguishable and c.reason == "the 95% intervals do not overlap"


def test_compare_overlapping_intervals_are_not_distinguishable_even_when_welch_rejects():
    a = np.array([2.0, 3.0, 4.0, 5.0, 6.0]) / 10  # sd 0.158: means 0.3 apart give Welch t = 3, p = 0.017,
    b = a - 0.3                                   # yet each interval's half-width is 0.196 > 0.3 / 2
    runs = runs_frame([("a", i, "done", {"val_acc": v}) for i, v in enumerate(a)]
                      + [("b", i, "done", {"val_acc": v}) for i, v in enumerate(b)])
    c = compare(runs, metric="val_acc")
    assert c.best == "a"
    assert c.p_value == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue) and c.p_value < 0.05
    assert c.best_ci + c.runner_up_ci > c.best_mean - c.runner_up_mean
    assert not c.distinguishable and c.reason == "the 95% intervals overlap"


def test_compare_loss_lower_is_better_and_failed_runs_left_out():
    runs = runs_frame([("a", 0, "done", {"test_loss": 0.5}), ("a", 1, "done", {"test_loss": 0.7}),
                       ("b", 0, "done", {"test_loss": 0.3}), ("b", 1, "diverged", {"test_loss": 50.0}),
                       ("b", 2, "done", {"test_loss": 0.4})])
    c = compare(runs, metric="test_loss")
    assert (c.best, c.runner_up) == ("b", "a")
    assert c.best_mean == pytest.approx(0.35) and c.best_n == 2


def test_compare_one_seed_per_variant_is_not_distinguishable():
    runs = runs_frame([("a", 0, "done", {"test_acc": 0.9}), ("b", 0, "done", {"test_acc": 0.1})])
    c = compare(runs)
    assert c.best == "a" and c.p_value is None
    assert not c.distinguishable and c.reason == "one seed per variant"
    runs = runs_frame([("a", 0, "done", {"test_acc": 0.9}), ("b", 0, "done", {"test_acc": 0.1}),
                       ("b", 1, "done", {"test_acc": 0.2})])
    c = compare(runs)
    assert c.p_value is None and not c.distinguishable and c.reason == "one seed of a: no interval"


def test_compare_constant_samples_have_no_p_value_and_no_warning(recwarn):
    runs = runs_frame([(label, i, "done", {"test_acc": 0.1}) for label in "ab" for i in range(3)])
    c = compare(runs)
    assert math.isnan(c.p_value) and not c.distinguishable
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_compare_needs_two_variants_with_finished_runs():
    runs = runs_frame([("a", 0, "done", {"test_acc": 0.9}), ("b", 0, "failed", {"test_acc": np.nan})])
    with pytest.raises(ValueError, match="two variants"):
        compare(runs)
