import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from trainlab.config import load_config
from trainlab.data import load_data
from trainlab.probes.stats import PROBE_COLUMNS
from trainlab.report.findings import Finding, find
from trainlab.train import fit

LAYERS = ("fc1", "act1", "fc2", "act2", "out")  # forward order; fc1 is the first layer, out the last


def make_probe(abs_mean, norm=None, dead=None):
    """Probe rows per step: ``abs_mean[step]`` and ``norm[step]`` = weight-gradient stats of (fc1, fc2, out),
    ``dead[step]`` = dead fractions of (act1, act2)."""
    rows = []
    for step, means in abs_mean.items():
        grads = dict(zip(("fc1", "fc2", "out"), zip(means, norm[step] if norm else (1.0, 1.0, 1.0))))
        deads = dict(zip(("act1", "act2"), dead[step] if dead else (0.0, 0.0)))
        for layer in LAYERS:
            if layer in grads:
                mean, n = grads[layer]
                rows += [(step, layer, "weight", "grad", "abs_mean", mean),
                         (step, layer, "weight", "grad", "norm", n),
                         (step, layer, "bias", "grad", "abs_mean", 7.0),
                         (step, layer, "bias", "grad", "norm", n / 2),
                         (step, layer, "weight", "weight", "abs_mean", 0.1)]
            else:
                rows += [(step, layer, "output", "activation", "mean", 0.3),
                         (step, layer, "output", "activation", "dead_frac", deads[layer])]
    return pd.DataFrame(rows, columns=PROBE_COLUMNS)


def make_runs(rows):
    """rows: (label, seed, status, extra columns)."""
    return pd.DataFrame([{"run_id": f"{label}-{seed}", "label": label, "seed": seed, "status": status,
                          **extra} for label, seed, status, extra in rows])


def make_history(train_loss, train_acc=None, val_loss=None):
    epochs = len(train_loss)
    history = {"epoch": np.arange(1, epochs + 1), "train_loss": train_loss,
               "train_acc": train_acc if train_acc is not None else np.linspace(0.5, 0.9, epochs)}
    if val_loss is not None:
        history["val_loss"] = val_loss
    return pd.DataFrame(history)


def of_kind(findings, kind, label=None):
    return [f for f in findings if f.kind == kind and (label is None or f.label == label)]


def only(findings, kind, label=None) -> Finding:
    chosen = of_kind(findings, kind, label)
    assert len(chosen) == 1, [f.text for f in findings]
    return chosen[0]


# ----------------------------------------------------------------------------- gradients
def test_vanishing_ratio_is_the_median_over_seeds_of_the_median_over_steps():
    per_seed = [  # step -> (fc1, fc2, out) mean |weight gradient|
        {0: (1e-6, 1e-3, 1.0), 10: (4e-6, 1e-3, 2.0), 20: (9e-6, 1e-3, 3.0)},  # ratios 1e-6, 2e-6, 3e-6
        {0: (5e-5, 1e-3, 1.0), 10: (1e-4, 1e-3, 1.0), 20: (1e-4, 1e-3, 4.0)},  # 5e-5, 1e-4, 2.5e-5
        {0: (1e-3, 1e-3, 1.0), 10: (2e-3, 1e-3, 1.0), 20: (3e-3, 1e-3, 1.0)},  # 1e-3, 2e-3, 3e-3
    ]
    runs = make_runs([("sig", s, "done", {}) for s in range(3)])
    probes = {f"sig-{s}": make_probe(p) for s, p in enumerate(per_seed)}
    finding = only(find(runs, {}, probes), "vanishing_gradients")
    expected = np.median([np.median([m[0] / m[2] for m in p.values()]) for p in per_seed])
    assert finding.numbers == {"ratio": pytest.approx(expected), "seeds": 3}
    assert expected == pytest.approx(5e-5)
    assert finding.label == "sig" and finding.figure == "layer_grad_means"
    assert "5e-05" in finding.text and "median over 3 seeds" in finding.text and "fc1 / out" in finding.text


@pytest.mark.parametrize("ratio, fires", [(0.0099, True), (0.0101, False)])
def test_vanishing_threshold(ratio, fires):
    runs = make_runs([("a", 0, "done", {})])
    probes = {"a-0": make_probe({0: (ratio, 0.5, 1.0), 5: (ratio * 2, 0.5, 2.0)})}
    findings = find(runs, {}, probes)
    assert len(of_kind(findings, "vanishing_gradients")) == int(fires)
    assert not of_kind(findings, "exploding_gradients")


@pytest.mark.parametrize("ratio, fires", [(101.0, True), (99.0, False)])
def test_exploding_ratio_threshold(ratio, fires):
    runs = make_runs([("a", 0, "done", {})])
    probes = {"a-0": make_probe({0: (ratio, 1.0, 1.0), 5: (ratio, 1.0, 1.0)})}
    chosen = of_kind(find(runs, {}, probes), "exploding_gradients")
    assert len(chosen) == int(fires)
    if fires:
        assert chosen[0].numbers == {"ratio": pytest.approx(ratio), "seeds": 1}
        assert "101" in chosen[0].text and "above 100" in chosen[0].text


@pytest.mark.parametrize("scale, fires", [(1001.0, True), (999.0, False)])
def test_exploding_growth_of_the_gradient_norm(scale, fires):
    norms = {0: (0.3, 0.4, 1.0), 10: (1.0, 1.0, 1.0), 20: tuple(scale * v for v in (0.3, 0.4, 1.0))}
    probe = make_probe({s: (1.0, 1.0, 1.0) for s in norms}, norm=norms)
    runs = make_runs([("a", 0, "done", {})])
    chosen = of_kind(find(runs, {}, {"a-0": probe}), "exploding_gradients")
    assert len(chosen) == int(fires)
    g = probe[(probe["quantity"] == "grad") & (probe["stat"] == "norm")]
    total = [math.sqrt((g.loc[g["step"] == s, "value"] ** 2).sum()) for s in (0, 20)]
    if fires:
        assert chosen[0].numbers["growth"] == pytest.approx(total[1] / total[0])
        assert "1e+03x" in chosen[0].text


def test_no_gradient_finding_without_probes_and_seeds_count_only_probed_runs():
    runs = make_runs([("a", 0, "done", {}), ("a", 1, "done", {}), ("b", 0, "done", {})])
    probes = {"a-0": make_probe({0: (1e-4, 1.0, 1.0)}), "a-1": pd.DataFrame(columns=PROBE_COLUMNS)}
    findings = find(runs, {}, probes)
    assert only(findings, "vanishing_gradients").label == "a"
    assert only(findings, "vanishing_gradients").numbers["seeds"] == 1
    assert not [f for f in findings if f.label == "b"]


# ----------------------------------------------------------------------------- dead units
def test_dead_units_mean_over_seeds_at_the_last_probed_step():
    runs = make_runs([("r", 0, "done", {}), ("r", 1, "done", {})])
    probes = {  # an earlier step with many dead units does not count, only the last one
        "r-0": make_probe({0: (1, 1, 1), 9: (1, 1, 1)}, dead={0: (0.9, 0.9), 9: (0.60, 0.2)}),
        "r-1": make_probe({0: (1, 1, 1), 9: (1, 1, 1)}, dead={0: (0.9, 0.9), 9: (0.44, 0.3)}),
    }
    finding = only(find(runs, {}, probes), "dead_units")
    assert finding.numbers == {"dead_frac": pytest.approx(0.52), "layers_above": 1, "seeds": 2}
    assert "0.52 of the units of act1" in finding.text


@pytest.mark.parametrize("dead, fires", [(0.5, False), (0.51, True)])
def test_dead_units_threshold(dead, fires):
    runs = make_runs([("r", 0, "done", {})])
    probes = {"r-0": make_probe({3: (1, 1, 1)}, dead={3: (0.1, dead)})}
    chosen = of_kind(find(runs, {}, probes), "dead_units")
    assert len(chosen) == int(fires)
    if fires:
        assert "act2" in chosen[0].text


# ----------------------------------------------------------------------------- histories
@pytest.mark.parametrize("final_loss, final_acc, fires", [
    (2.2, 0.12, True),    # loss ratio 0.957 >= 0.95, accuracy 0.02 from chance
    (2.08, 0.12, False),  # loss ratio 0.945 < 0.95
    (2.2, 0.151, False),  # accuracy 0.051 from chance
    (2.3, 0.049, False),  # accuracy 0.051 below chance
])
def test_not_training(final_loss, final_acc, fires):
    runs = make_runs([("a", s, "done", {}) for s in range(2)])
    histories = {  # the two seeds' means: first loss 2.3, final ``final_loss``, final accuracy ``final_acc``
        "a-0": make_history([2.4, 2.3, final_loss + 0.1], [0.1, 0.1, final_acc + 0.01]),
        "a-1": make_history([2.2, 2.3, final_loss - 0.1], [0.1, 0.1, final_acc - 0.01]),
    }
    chosen = of_kind(find(runs, histories, {}), "not_training")
    assert len(chosen) == int(fires)
    if fires:
        assert chosen[0].numbers == {
            "first_train_loss": pytest.approx(2.3), "final_train_loss": pytest.approx(2.2),
            "loss_ratio": pytest.approx(2.2 / 2.3), "uniform_guess_loss": pytest.approx(np.log(10)),
            "final_train_acc": pytest.approx(0.12), "chance": 0.1, "seeds": 2}
        assert "from 2.3 in the first epoch to 2.2 (down 4.35%), and" in chosen[0].text
        assert "means over 2 seeds" in chosen[0].text


@pytest.mark.parametrize("final_loss, fires, says", [
    (2.35, True, "no better than the 2.3 of a uniform guess over 10 classes"),
    (2.2, True, "within 5% of the 2.3 of a uniform guess over 10 classes"),  # 2.2 >= 0.95 ln 10 = 2.19
    (2.15, False, ""),  # below 0.95 ln 10: the net predicts better than a uniform guess
])
def test_not_training_after_a_first_epoch_that_spiked_is_judged_against_a_uniform_guess(final_loss, fires, says):
    runs = make_runs([("a", 0, "done", {})])
    histories = {"a-0": make_history([2.76, 2.5, final_loss], [0.1, 0.1, 0.095])}  # 0.85x the first epoch's loss
    chosen = of_kind(find(runs, histories, {}), "not_training")
    assert len(chosen) == int(fires)
    if fires:
        assert f"the train loss ended at {final_loss:g} (down " in chosen[0].text and says in chosen[0].text
        assert chosen[0].numbers["uniform_guess_loss"] == pytest.approx(np.log(10))


def test_not_training_uses_num_classes_for_chance():
    runs = make_runs([("a", 0, "done", {})])
    histories = {"a-0": make_history([1.4, 1.39], [0.26, 0.27])}
    assert not of_kind(find(runs, histories, {}), "not_training")
    assert only(find(runs, histories, {}, num_classes=4), "not_training").numbers["chance"] == 0.25


@pytest.mark.parametrize("rise, fires", [(1.11, True), (1.09, False)])
def test_overfitting_threshold_and_numbers(rise, fires):
    val = [1.0, 0.7, 0.5, 0.5 * (1 + (rise - 1) / 2), 0.5 * rise]
    train = [1.0, 0.6, 0.4, 0.3, 0.2]
    runs = make_runs([("a", 0, "done", {})])
    chosen = of_kind(find(runs, {"a-0": make_history(train, val_loss=val)}, {}), "overfitting")
    assert len(chosen) == int(fires)
    if fires:
        n = chosen[0].numbers
        assert n["min_epoch"] == 3 and n["rise"] == pytest.approx(0.11)
        assert n["gap_at_min"] == pytest.approx(0.5 - 0.4) and n["gap_final"] == pytest.approx(0.555 - 0.2)
        assert "epoch 3" in chosen[0].text and "11% higher" in chosen[0].text


def test_no_overfitting_when_train_loss_stopped_falling():
    val, train = [1.0, 0.5, 0.7], [1.0, 0.4, 0.45]
    runs = make_runs([("a", 0, "done", {})])
    assert not of_kind(find(runs, {"a-0": make_history(train, val_loss=val)}, {}), "overfitting")


def _seeds_overfitting(curves):
    """A variant "a" with one seed per (train, val) loss curve, and its overfitting findings."""
    runs = make_runs([("a", seed, "done", {}) for seed in range(len(curves))])
    histories = {f"a-{seed}": make_history(train, val_loss=val) for seed, (train, val) in enumerate(curves)}
    return of_kind(find(runs, histories, {}), "overfitting")


FLAT = ([1.0, 0.8, 0.6, 0.5, 0.45, 0.4], [1.0, 0.8, 0.7, 0.65, 0.63, 0.62])  # train and val losses keep falling
RISING = ([1.0, 0.8, 0.6, 0.5, 0.45, 0.4], [1.0, 0.8, 0.7, 0.8, 0.9, 1.0])  # val lowest at epoch 3, then +43%


def test_one_seeds_last_epoch_jump_is_not_overfitting():
    jump = (FLAT[0], FLAT[1][:-1] + [1.5])  # the mean validation loss ends 26% above its minimum, one epoch late
    assert not _seeds_overfitting([FLAT, FLAT, jump])


def test_a_minimum_near_the_end_with_a_flat_train_loss_is_not_overfitting():
    # the reported case: lowest at epoch 14 of 15, train loss 0.207 -> 0.206
    train = list(np.linspace(1.0, 0.207, 14)) + [0.206]
    val = list(np.linspace(1.0, 0.3, 14)) + [0.36]
    assert not _seeds_overfitting([(train, val)])


@pytest.mark.parametrize("rising, fires", [(1, False), (2, True), (3, True)])
def test_overfitting_needs_half_the_seeds_to_overfit_on_their_own(rising, fires):
    chosen = _seeds_overfitting([RISING] * rising + [FLAT] * (3 - rising))
    assert len(chosen) == int(fires)
    if fires:
        assert chosen[0].numbers["seeds_overfitting"] == rising and f"{rising} of 3 seeds" in chosen[0].text


@pytest.mark.parametrize("stuck, best, fires", [(0.17, 0.97, True), (0.3, 0.97, False), (0.17, 0.3, False)])
def test_a_net_far_behind_the_best_variant_is_barely_training(stuck, best, fires):
    runs = make_runs([(label, 0, "done", {}) for label in ("sigmoid", "tanh")])
    histories = {"sigmoid-0": make_history([2.3, 2.2], [0.12, stuck]), "tanh-0": make_history([2.3, 0.5], [0.5, best])}
    findings = find(runs, histories, {})
    assert not of_kind(findings, "barely_training", "tanh") and not of_kind(findings, "not_training")
    chosen = of_kind(findings, "barely_training", "sigmoid")
    assert len(chosen) == int(fires)
    if fires:
        assert chosen[0].numbers["way"] == pytest.approx((stuck - 0.1) / (best - 0.1))
        assert "of the way to the 0.97 of tanh" in chosen[0].text and "down 4.35%" in chosen[0].text


def test_history_rules_skip_unfinished_runs():
    runs = make_runs([("a", 0, "diverged", {"diverged_step": 17.0})])
    findings = find(runs, {"a-0": make_history([2.3, 2.3], [0.1, 0.1])}, {})
    assert [f.kind for f in findings] == ["divergence"]


# ----------------------------------------------------------------------------- divergence, best variant
def test_divergence_count_and_steps():
    runs = make_runs([("hot", 0, "diverged", {"diverged_step": 340.0}),
                      ("hot", 1, "done", {"diverged_step": np.nan}),
                      ("hot", 2, "diverged", {"diverged_step": 120.0}),
                      ("cool", 0, "done", {"diverged_step": np.nan})])
    finding = only(find(runs, {}, {}), "divergence")
    assert finding.label == "hot"
    assert finding.numbers == {"diverged": 2, "runs": 3, "earliest_step": 120}
    assert finding.text == "hot: 2 of 3 runs diverged (at steps 120, 340)."
    runs = make_runs([("hot", 0, "diverged", {})])
    assert only(find(runs, {}, {}), "divergence").numbers == {"diverged": 1, "runs": 1}


def holm_by_hand(p):
    """Holm's step-down: the k-th smallest of m p-values times (m - k + 1), kept non-decreasing, at most 1."""
    out, running = {}, 0.0
    for k, key in enumerate(sorted(p, key=p.get)):
        running = max(running, min(1.0, (len(p) - k) * p[key]))
        out[key] = running
    return out


def seeds_for_power(dz, alpha, power=0.8):
    """The smallest n at which a two-sided paired t-test at ``alpha`` finds a true d_z with ``power``
    (the power from the noncentral t distribution)."""
    for n in range(2, 1001):
        crit, nc = stats.t.ppf(1 - alpha / 2, n - 1), dz * math.sqrt(n)
        if stats.nct.sf(crit, n - 1, nc) + stats.nct.cdf(-crit, n - 1, nc) >= power:
            return n
    return None


def best_runs(metric, values):
    """values: label -> {seed: value}."""
    return make_runs([(label, seed, "done", {metric: v}) for label, by_seed in values.items()
                      for seed, v in by_seed.items()])


ACC = np.array([0.912, 0.905, 0.921, 0.899, 0.917])  # the best variant's five seeds


def test_best_variant_better_than_the_others_with_holm_corrected_p():
    b = ACC - np.array([0.050, 0.046, 0.052, 0.049, 0.055])
    c = ACC - np.array([0.012, 0.004, 0.015, 0.006, 0.010])
    runs = best_runs("test_acc", {label: dict(enumerate(v)) for label, v in (("a", ACC), ("b", b), ("c", c))})
    finding = only(find(runs, {}, {}), "best_variant")
    p = holm_by_hand({"b": stats.ttest_rel(ACC, b).pvalue, "c": stats.ttest_rel(ACC, c).pvalue})
    assert p["b"] < 0.001 < p["c"] < 0.05  # the text writes the one as p<0.001, the other as p=...
    ci = stats.t.ppf(0.975, 4) * ACC.std(ddof=1) / math.sqrt(5)
    assert finding.label == "a" and finding.figure == "final_metrics"
    assert finding.numbers == {"best_mean": pytest.approx(ACC.mean()), "best_ci": pytest.approx(ci),
                               "best_n": 5.0,
                               "p_adjusted[b]": pytest.approx(p["b"]), "p_adjusted[c]": pytest.approx(p["c"]),
                               "better_than": 2.0}
    assert finding.text == (
        f"a has the highest mean test accuracy, {ACC.mean():.3g} ± {ci:.3g} (95% CI over 5 seeds); "
        f"it is better than b (by {(ACC - b).mean():.3g}, p<0.001) and c (by {(ACC - c).mean():.3g}, "
        f"p={p['c']:.3g}). Tests of a against each other variant: 2 paired t-tests, p Holm-corrected over 2.")


def test_best_variant_not_distinguishable_from_a_close_one_with_the_seeds_that_would_decide_it():
    loss = np.array([0.41, 0.44, 0.39, 0.46, 0.42])  # lower is better
    b = loss + np.array([0.050, 0.046, 0.052, 0.049, 0.055])  # clearly worse
    c = loss + np.array([0.012, -0.004, 0.015, -0.006, 0.010])  # close
    e = {7: 0.47, 8: 0.49, 9: 0.48}  # no seed shared with a: Welch
    five = {label: dict(enumerate(v)) for label, v in (("a", loss), ("b", b), ("c", c))}
    runs = best_runs("val_loss", {**five, "d": {0: 0.5}, "e": e})  # d: one seed, no test
    finding = only(find(runs, {}, {}, metric="val_loss"), "best_variant")
    p = holm_by_hand({"b": stats.ttest_rel(loss, b).pvalue, "c": stats.ttest_rel(loss, c).pvalue,
                      "e": stats.ttest_ind(loss, list(e.values()), equal_var=False).pvalue})
    assert p["b"] < 0.001 < p["e"] < 0.05 < p["c"]
    d = loss - c
    interval = stats.bootstrap((d,), np.mean, confidence_level=0.95, method="BCa", n_resamples=9999,
                               random_state=0).confidence_interval
    assert interval.low < d.mean() < 0 < interval.high
    needed = seeds_for_power(d.mean() / d.std(ddof=1), 0.05 / 3)  # alpha split over the 3 tests
    assert needed > 5
    ci = stats.t.ppf(0.975, 4) * loss.std(ddof=1) / math.sqrt(5)
    assert finding.label == "a"
    assert finding.numbers == {"best_mean": pytest.approx(loss.mean()), "best_ci": pytest.approx(ci),
                               "best_n": 5.0,
                               "p_adjusted[b]": pytest.approx(p["b"]), "p_adjusted[c]": pytest.approx(p["c"]),
                               "p_adjusted[e]": pytest.approx(p["e"]), "better_than": 2.0}
    e_mean = np.mean(list(e.values()))
    assert finding.text == (
        f"a has the lowest mean validation loss, {loss.mean():.3g} ± {ci:.3g} (95% CI over 5 seeds); "
        f"it is better than b (by {(b - loss).mean():.3g}, p<0.001) and e (by {e_mean - loss.mean():.3g}, "
        f"p={p['e']:.3g}); not distinguishable from c ({d.mean():.3g} [{interval.low:.3g}, "
        f"{interval.high:.3g}], p={p['c']:.3g}; about {needed} seeds would decide it) "
        f"and d (one seed of d: no test). "
        f"Tests of a against each other variant: 2 paired t-tests and 1 Welch t-test, p Holm-corrected over 3.")


def test_best_variant_close_without_shared_seeds_counts_seeds_for_welch():
    a, b = [0.90, 0.93, 0.91, 0.92], [0.91, 0.89, 0.92, 0.90]  # seeds 0-3 and 4-7: nothing to pair
    runs = best_runs("test_acc", {"a": dict(enumerate(a)), "b": dict(zip(range(4, 8), b))})
    finding = only(find(runs, {}, {}), "best_variant")
    p = stats.ttest_ind(a, b, equal_var=False).pvalue
    effect = np.mean(a) - np.mean(b)
    d = effect / math.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)  # Cohen's d
    needed = next(n for n in range(2, 1001)  # two-sample power from the noncentral t, alpha 0.05 over 1 test
                  if stats.nct.sf(stats.t.ppf(0.975, 2 * n - 2), 2 * n - 2, d * math.sqrt(n / 2))
                  + stats.nct.cdf(-stats.t.ppf(0.975, 2 * n - 2), 2 * n - 2, d * math.sqrt(n / 2)) >= 0.8)
    assert p > 0.05 and needed > 4
    assert finding.numbers["p_adjusted[b]"] == pytest.approx(p) and finding.numbers["better_than"] == 0.0
    assert f"not distinguishable from b ({effect:.3g} [" in finding.text
    assert f"], p={p:.3g}; about {needed} seeds would decide it). Tests of a against each other variant: 1 Welch" in finding.text


def test_no_best_variant_claim_with_one_variant_or_one_finished():
    runs = make_runs([("a", 0, "done", {"test_acc": 0.9}), ("a", 1, "done", {"test_acc": 0.8})])
    assert not find(runs, {}, {})
    runs = make_runs([("a", 0, "done", {"test_acc": 0.9}), ("b", 0, "failed", {"test_acc": np.nan})])
    assert not of_kind(find(runs, {}, {}), "best_variant")


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def trained():
    """A deep sigmoid MLP and a ReLU MLP of the same depth on digits, two seeds each."""
    base = {"data": {"name": "digits", "limit": 600}, "model": {"kind": "mlp", "hidden": [32] * 6},
            "train": {"epochs": 2, "batch_size": 64, "lr": 0.01, "device": "cpu",
                      "threads": 1},  # one thread: fast on a busy CPU
            "probes": {"histograms": False}}
    data = load_data(load_config(base).data)
    rows, histories, probes = [], {}, {}
    for activation in ("sigmoid", "relu"):
        for seed in (0, 1):
            config = {**base, "model": {**base["model"], "activation": activation},
                      "train": {**base["train"], "seed": seed}}
            result = fit(config, store=None, data=data)
            rows.append({"run_id": result.run_id, "label": activation, "seed": seed, "status": result.status,
                         **result.final})
            histories[result.run_id], probes[result.run_id] = result.history, result.probes
    return pd.DataFrame(rows), histories, probes


def direct_ratio(probe):
    g = probe[(probe["quantity"] == "grad") & (probe["tensor"] == "weight") & (probe["stat"] == "abs_mean")]
    first, last = (g[g["layer"] == layer].set_index("step")["value"] for layer in ("fc1", "out"))
    return float(np.median(first / last))


def test_trained_sigmoid_mlp_has_vanishing_gradients_and_relu_does_not(trained):
    runs, histories, probes = trained
    ratios = {label: [direct_ratio(probes[r]) for r in runs.loc[runs["label"] == label, "run_id"]]
              for label in ("sigmoid", "relu")}
    assert max(ratios["sigmoid"]) < 1e-3 and min(ratios["relu"]) > 0.1
    findings = find(runs, histories, probes)
    vanishing = only(findings, "vanishing_gradients")
    assert vanishing.label == "sigmoid"
    assert vanishing.numbers["ratio"] == pytest.approx(np.median(ratios["sigmoid"]))
    assert not of_kind(findings, "exploding_gradients")
    assert only(findings, "best_variant").label == "relu"


def test_best_variant_says_a_tie_instead_of_crowning_the_first():
    runs = make_runs([(label, seed, "done", {"test_acc": 1.0}) for label in ("a", "b", "c") for seed in (0, 1)]
                     + [("d", 0, "done", {"test_acc": 0.5}), ("d", 1, "done", {"test_acc": 0.7})])
    finding = only(find(runs, {}, {}), "best_variant")
    assert finding.text == "a, b and c tie on the highest mean test accuracy, 1: no variant is best on it."
    assert finding.numbers == {"best_mean": 1.0, "tied": 3.0}
    runs.loc[runs["label"] == "c", "test_acc"] = 0.9  # two tie
    assert only(find(runs, {}, {}), "best_variant").text.startswith("a and b tie on the highest")


def _two_factor_runs(means, seeds=3, noise=0.005):
    """Runs of a 2 x 2 study: ``means[(optimizer, lr)]`` plus small seed noise."""
    rng = np.random.default_rng(0)
    return make_runs([(f"optimizer={o}, lr={lr}", seed, "done",
                       {"train.optimizer": o, "train.lr": lr, "test_acc": mean + rng.normal(0, noise)})
                      for (o, lr), mean in means.items() for seed in range(seeds)])


def test_a_factor_that_wins_everywhere_is_named_with_its_margin_at_each_setting():
    runs = _two_factor_runs({("sgd", 0.001): 0.40, ("sgd", 0.01): 0.60, ("adam", 0.001): 0.90, ("adam", 0.01): 0.92})
    findings = find(runs, {}, {}, factors=["train.optimizer", "train.lr"])
    optimizer = only(findings, "factor_effect", "train.optimizer")
    means = runs.groupby(["train.optimizer", "train.lr"])["test_acc"].mean()
    margins = [means["adam", lr] - means["sgd", lr] for lr in (0.001, 0.01)]
    assert optimizer.numbers["consistent"] == 1
    assert optimizer.numbers["margin_min"] == pytest.approx(min(margins))
    assert optimizer.numbers["margin_max"] == pytest.approx(max(margins))
    assert optimizer.text.startswith("train.optimizer: adam gives the highest mean test accuracy at every setting "
                                     "of train.lr")
    assert optimizer.numbers["p_main"] < 0.001 and optimizer.numbers["p_interaction[train.lr]"] < 0.05
    lr = only(findings, "factor_effect", "train.lr")
    assert lr.text.startswith("train.lr: 0.01 gives the highest")  # better for both optimizers
    assert [f.kind for f in findings[:3]] == ["best_variant", "factor_effect", "factor_effect"]


def test_a_crossed_interaction_says_the_best_level_depends_on_the_other_factor():
    runs = _two_factor_runs({("sgd", 0.001): 0.40, ("sgd", 0.1): 0.80, ("adam", 0.001): 0.85, ("adam", 0.1): 0.30})
    optimizer = only(find(runs, {}, {}, factors=["train.optimizer", "train.lr"]), "factor_effect", "train.optimizer")
    assert optimizer.numbers["consistent"] == 0
    assert "which level is best depends on train.lr (train.lr=0.001: adam by" in optimizer.text
    assert "train.lr=0.1: sgd by" in optimizer.text and "(the effect depends on it)" in optimizer.text


def test_no_factor_findings_without_every_combination_or_a_second_factor():
    runs = _two_factor_runs({("sgd", 0.001): 0.40, ("sgd", 0.01): 0.60, ("adam", 0.001): 0.90})
    assert not of_kind(find(runs, {}, {}, factors=["train.optimizer", "train.lr"]), "factor_effect")
    assert not of_kind(find(runs, {}, {}, factors=["train.optimizer"]), "factor_effect")


def test_factor_levels_are_written_as_a_study_file_writes_them():
    rng = np.random.default_rng(1)
    runs = make_runs([(f"bn={bn}, dropout={p}", seed, "done",
                       {"model.batch_norm": bn, "model.dropout": p, "test_acc": 0.6 + 0.2 * bn - 0.1 * p
                        + rng.normal(0, 0.005)})
                      for bn in (True, False) for p in (0.0, 0.5) for seed in range(3)])
    findings = find(runs, {}, {}, factors=["model.batch_norm", "model.dropout"])
    assert only(findings, "factor_effect", "model.batch_norm").text.startswith(
        "model.batch_norm: true gives the highest mean test accuracy at every setting of model.dropout")
    assert "(model.batch_norm=true: 0.0 by" in only(findings, "factor_effect", "model.dropout").text
