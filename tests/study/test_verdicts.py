"""Verdicts on synthetic values whose answer is known: every claim form against scipy's own tests, the Holm
correction over a study's claims, the level under adaptive seeds, and the rounds of adaptive seeds."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.power import TTestPower

from trainlab.study.adaptive import seed_rounds
from trainlab.study.spec import expand, read_study, resolve_claims
from trainlab.study.verdicts import judge, quotes, statement, verdict_table

BASE = {"data": {"name": "digits"}, "model": {"kind": "mlp", "hidden": [16]}, "train": {"epochs": 1}}
N = 6  # seeds per variant


def study(claims, labels=("A", "B", "C"), seeds=N, **fields):
    """A valid study whose variants are ``labels`` (each its own learning rate), with ``claims``."""
    variants = [{"label": label, "set": {"train.lr": 0.01 * (i + 1)}} for i, label in enumerate(labels)]
    spec = read_study({"name": "verdicts", "base": BASE, "variants": variants, "seeds": seeds, "claims": claims,
                       **fields})
    return spec, resolve_claims(spec, expand(spec))


def frame(metric="test_acc", **by_label):
    """One row per (label, seed) with ``metric``; a label's values are seeds 0, 1, ... unless given as a Series."""
    rows = []
    for label, values in by_label.items():
        series = values if isinstance(values, pd.Series) else pd.Series(values)
        rows += [{"label": label, "seed": int(seed), metric: float(x)} for seed, x in series.items()]
    return pd.DataFrame(rows)


def standardized(n, rng):
    """n values with mean exactly 0 and sample standard deviation exactly 1."""
    z = rng.normal(size=n)
    return (z - z.mean()) / z.std(ddof=1)


def differences_with_p(p, n, rng, spread=0.01):
    """n paired differences whose one-sample t-test against 0 has two-sided p-value ``p`` (positive mean)."""
    mean = stats.t.isf(p / 2, n - 1) * spread / math.sqrt(n)
    return mean + spread * standardized(n, rng)


def compare(form="greater_than", of="A", other="B", **extra):
    return {"metric": "test_acc", "of": {"variant": of}, form: {"variant": other}, **extra}


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


# ----------------------------------------------------------------------------- variant against variant
def test_a_clear_difference_is_supported_and_its_reverse_contradicted(rng):
    base = rng.normal(0.8, 0.03, N)
    a, b = base + 0.05 + rng.normal(0, 0.004, N), base
    spec, claims = study([compare(), compare("less_than"), compare(of="B", other="A")])
    verdicts = judge(spec, claims, frame(A=a, B=b, C=base))
    assert [v.verdict for v in verdicts] == ["supported", "contradicted", "contradicted"]
    expected = stats.ttest_rel(a, b).pvalue
    for v in verdicts:
        assert v.result.paired and v.result.p_value == pytest.approx(expected, rel=1e-9)
        assert v.seeds == {"A": N, "B": N} and v.seeds_needed is None and v.involved in (["A", "B"], ["B", "A"])
    assert verdicts[0].result.effect == pytest.approx(np.mean(a - b))
    assert verdicts[2].result.effect == pytest.approx(np.mean(b - a))
    assert verdicts[0].result.low < verdicts[0].result.effect < verdicts[0].result.high


def test_a_tiny_noisy_difference_is_undecided_with_the_seeds_it_would_need(rng):
    base = rng.normal(0.8, 0.03, N)
    diff = 0.002 + 0.01 * standardized(N, rng)  # standardized effect exactly 0.2
    spec, claims = study([compare()])
    (v,) = judge(spec, claims, frame(A=base + diff, B=base))
    assert v.verdict == "undecided" and v.p_adjusted >= 0.05
    assert v.result.p_value == pytest.approx(stats.ttest_rel(base + diff, base).pvalue)
    assert v.result.standardized == pytest.approx(0.2)
    n = TTestPower().solve_power(effect_size=0.2, alpha=0.05, power=0.8)
    assert v.seeds_needed == math.ceil(n) and v.seeds_needed > N


def test_sides_without_common_seeds_are_compared_with_welch(rng):
    a = pd.Series(rng.normal(0.85, 0.02, N), index=range(N))
    b = pd.Series(rng.normal(0.80, 0.05, N + 2), index=range(100, 100 + N + 2))
    spec, claims = study([compare()])
    (v,) = judge(spec, claims, frame(A=a, B=b))
    assert not v.result.paired and v.seeds == {"A": N, "B": N + 2}
    assert v.result.p_value == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-9)
    assert v.result.effect == pytest.approx(a.mean() - b.mean())


def test_pairs_are_made_over_the_seeds_both_sides_have(rng):
    a, b = rng.normal(0.85, 0.02, N), rng.normal(0.80, 0.02, N)
    b_some = pd.Series(b[:4], index=range(4))  # B's seeds 4 and 5 are missing (failed runs)
    spec, claims = study([compare()])
    (v,) = judge(spec, claims, frame(A=a, B=b_some))
    assert v.result.paired and v.seeds == {"A": 4, "B": 4} and v.result.n == 4  # the seeds the test used
    assert v.result.p_value == pytest.approx(stats.ttest_rel(a[:4], b[:4]).pvalue, rel=1e-9)


def test_a_comparison_over_several_pairs_pools_them_paired(rng):
    spec = read_study({"name": "pooled", "base": BASE, "seeds": 4, "claims": [
        {"metric": "test_acc", "of": {"model.activation": "relu"}, "greater_than": {"model.activation": "sigmoid"}}],
        "vary": {"model.activation": ["relu", "sigmoid"], "model.hidden": [[16], [16, 16]]}})
    claims = resolve_claims(spec, expand(spec))
    pairs = claims[0].pairs
    values = {label: rng.normal(0.9 - 0.05 * ("sigmoid" in label) - 0.1 * ("16,16" in label), 0.01, 4)
              for pair in pairs for label in pair}
    (v,) = judge(spec, claims, frame(**values))
    a = np.concatenate([values[mine] for mine, _ in pairs])
    b = np.concatenate([values[theirs] for _, theirs in pairs])
    assert v.verdict == "supported" and v.seeds == {label: 4 for label in values}
    assert v.result.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)


def test_a_margin_is_supported_only_when_the_difference_clearly_exceeds_it(rng):
    base = rng.normal(0.8, 0.03, N)
    a = base + 0.05 + 0.003 * standardized(N, rng)  # A - B: 0.05 on average, little noise
    values = frame(A=a, B=base)
    for margin, expected in ((0.03, "supported"), (0.05, "undecided"), (0.07, "contradicted")):
        spec, claims = study([compare(margin=margin)])
        (v,) = judge(spec, claims, values)
        assert v.verdict == expected, margin
        assert v.result.null == pytest.approx(margin)
        assert v.result.p_value == pytest.approx(stats.ttest_1samp(a - base, margin).pvalue, rel=1e-9)
    # less_than by a margin: B below A by more than 0.03
    spec, claims = study([compare("less_than", of="B", other="A", margin=0.03)])
    (v,) = judge(spec, claims, values)
    assert v.verdict == "supported" and v.result.null == pytest.approx(-0.03)
    assert v.result.p_value == pytest.approx(stats.ttest_1samp(base - a, -0.03).pvalue, rel=1e-9)


# ----------------------------------------------------------------------------- against a number
def test_at_least_and_at_most_are_one_sample_t_tests_of_the_pooled_variants(rng):
    a, b = rng.normal(0.9, 0.01, N), rng.normal(0.92, 0.01, N)
    claims = [{"metric": "test_acc", "of": {"variant": "A"}, "at_least": 0.8},
              {"metric": "test_acc", "of": {"variant": "A"}, "at_most": 0.8},
              {"metric": "test_acc", "of": {"variant": "A"}, "at_most": 0.9005}]
    spec, resolved = study(claims)
    verdicts = judge(spec, resolved, frame(A=a, B=b))
    assert [v.verdict for v in verdicts[:2]] == ["supported", "contradicted"]
    assert verdicts[2].verdict == "undecided" and verdicts[2].seeds_needed is not None
    for v in verdicts:
        assert v.result.p_value == pytest.approx(stats.ttest_1samp(a, v.claim.bound).pvalue, rel=1e-9)
        assert v.result.effect == pytest.approx(a.mean()) and v.result.null == v.claim.bound

    # a selector that matches two variants pools their values
    spec = read_study({"name": "pooled", "base": BASE, "seeds": N, "vary": {"model.hidden": [[16], [16, 16]]},
                       "claims": [{"metric": "test_acc", "at_most": 0.95}]})
    resolved = resolve_claims(spec, expand(spec))
    (v,) = judge(spec, resolved, frame(**dict(zip(resolved[0].labels, (a, b)))))
    assert v.verdict == "supported" and v.seeds == dict(zip(resolved[0].labels, (N, N)))
    assert v.result.p_value == pytest.approx(stats.ttest_1samp(np.concatenate([a, b]), 0.95).pvalue, rel=1e-9)


def test_a_gradient_ratio_is_tested_on_a_log10_scale(rng):
    ratios = 10 ** rng.normal(-3, 0.3, N)
    spec, claims = study([{"metric": "grad_ratio", "of": {"variant": "A"}, "at_most": 0.01},
                          {"metric": "grad_ratio", "of": {"variant": "A"}, "at_least": 1e-4}])
    verdicts = judge(spec, claims, frame("grad_ratio", A=ratios))
    assert [v.verdict for v in verdicts] == ["supported", "supported"]
    for v, bound in zip(verdicts, (0.01, 1e-4)):
        assert v.result.null == pytest.approx(math.log10(bound))
        assert v.result.effect == pytest.approx(np.log10(ratios).mean())
        assert v.result.p_value == pytest.approx(stats.ttest_1samp(np.log10(ratios), math.log10(bound)).pvalue,
                                                 rel=1e-9)
        assert "log10" in v.statement


# ----------------------------------------------------------------------------- trends and equivalence
def test_a_trend_is_kendalls_tau_over_the_levels_in_order(rng):
    depths = [[16], [16, 16], [16, 16, 16]]
    spec = read_study({"name": "trend", "base": BASE, "seeds": N, "vary": {"model.hidden": depths},
                       "claims": [{"metric": "test_acc", "trend": "decreasing", "over": "model.hidden"},
                                  {"metric": "test_acc", "trend": "increasing", "over": "model.hidden"}]})
    claims = resolve_claims(spec, expand(spec))
    means = (0.9, 0.8, 0.7)
    values = {label: rng.normal(mean, 0.03, N) for label, mean in zip(claims[0].labels, means)}
    falling, rising = judge(spec, claims, frame(**values))
    assert (falling.verdict, rising.verdict) == ("supported", "contradicted")
    tau = stats.kendalltau(np.repeat([0, 1, 2], N), np.concatenate([values[label] for label in claims[0].labels]))
    for v in (falling, rising):
        assert v.result.effect == pytest.approx(tau.statistic) and v.result.effect < 0
        assert v.result.p_value == pytest.approx(tau.pvalue, rel=1e-9)
        assert v.seeds_needed is None

    same = rng.normal(0.8, 0.03, N)  # the same values at every level: no trend at all
    (flat,) = judge(spec, claims[:1], frame(**{label: same for label in claims[0].labels}))
    assert flat.verdict == "undecided" and flat.seeds_needed is None
    assert flat.result.effect == pytest.approx(0, abs=1e-12) and flat.result.p_value == pytest.approx(1)


def test_equivalence_within_the_bound_is_supported_and_far_apart_contradicted(rng):
    base = rng.normal(0.8, 0.03, N)
    near = base + 0.001 + 0.002 * standardized(N, rng)
    far = base + 0.1 + 0.002 * standardized(N, rng)
    spec, claims = study([compare("same_as", within=0.02), compare("same_as", of="C", within=0.02),
                          compare("same_as", within=0.0015)])
    same, apart, tight = judge(spec, claims, frame(A=near, B=base, C=far))
    assert (same.verdict, apart.verdict, tight.verdict) == ("supported", "contradicted", "undecided")
    assert same.result.inside and not apart.result.inside
    d = near - base
    p_inside = max(stats.ttest_1samp(d, -0.02, alternative="greater").pvalue,
                   stats.ttest_1samp(d, 0.02, alternative="less").pvalue)
    assert same.result.p_value == pytest.approx(min(1.0, 2 * p_inside), rel=1e-6)
    d = far - base
    p_outside = stats.ttest_1samp(d, 0.02, alternative="greater").pvalue
    assert apart.result.p_value == pytest.approx(min(1.0, 2 * p_outside), rel=1e-6)
    assert same.result.effect == pytest.approx(np.mean(near - base))


# ----------------------------------------------------------------------------- the family and the level
def holm_by_hand(p):
    m, adjusted, running = len(p), [0.0] * len(p), 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda i: p[i])):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def test_holm_over_the_studys_claims_can_undecide_a_claim_decided_alone(rng):
    ps = (0.02, 0.2, 0.4, 0.7)
    labels = ("A", "B", "C", "D", "E")
    base = rng.normal(0.8, 0.03, N)
    values = {"B": base} | {label: base + differences_with_p(p, N, rng) for label, p in zip("ACDE", ps)}
    claims = [compare(of=label) for label in "ACDE"]

    spec, alone = study(claims[:1], labels)
    (v,) = judge(spec, alone, frame(**values))
    assert v.result.p_value == pytest.approx(0.02) and v.p_adjusted == pytest.approx(0.02)
    assert v.verdict == "supported" and v.level == 0.05

    spec, four = study(claims, labels)
    verdicts = judge(spec, four, frame(**values))
    assert [v.result.p_value for v in verdicts] == pytest.approx(list(ps))
    assert [v.p_adjusted for v in verdicts] == pytest.approx(holm_by_hand([v.result.p_value for v in verdicts]))
    assert verdicts[0].p_adjusted == pytest.approx(0.08)
    assert [v.verdict for v in verdicts] == ["undecided"] * 4
    assert "Holm" in verdicts[0].reason and verdicts[0].seeds_needed > N


def test_adaptive_seeds_test_each_look_at_alpha_over_the_looks(rng):
    base = rng.normal(0.8, 0.03, 3)
    values = frame(A=base + differences_with_p(0.02, 3, rng), B=base)
    spec, claims = study([compare()], seeds=3)
    (fixed,) = judge(spec, claims, values)
    assert fixed.verdict == "supported" and fixed.level == 0.05

    spec, claims = study([compare()], seeds={"min": 3, "max": 9})
    assert spec.adaptive.looks == 3
    (adaptive,) = judge(spec, claims, values)
    assert adaptive.level == pytest.approx(0.05 / 3)
    assert adaptive.p_adjusted == pytest.approx(0.02) and adaptive.verdict == "undecided"

    spec, claims = study([compare()], seeds={"min": 3, "max": 9}, statistics={"alpha": 0.1})
    assert judge(spec, claims, values)[0].level == pytest.approx(0.1 / 3)


def test_a_variant_with_fewer_than_two_values_leaves_its_claim_undecided_and_out_of_the_family(rng):
    base = rng.normal(0.8, 0.03, N)
    a = base + differences_with_p(0.03, N, rng)
    c = pd.Series([0.7], index=[0])  # one finished run
    spec, claims = study([compare(), compare(of="C"), compare(of="D")], labels=("A", "B", "C", "D"))
    complete, short, missing = judge(spec, claims, frame(A=a, B=base, C=c))
    assert short.verdict == "undecided" and short.result is None and math.isnan(short.p_adjusted)
    assert "C" in short.reason and "1 finished run" in short.reason and short.seeds == {"C": 1, "B": N}
    assert missing.verdict == "undecided" and "D has 0 finished runs" in missing.reason
    assert short.as_dict()["p_adjusted"] is None and short.as_dict()["effect"] is None
    # the claims without a test do not count in the correction of the one that has one
    assert complete.p_adjusted == pytest.approx(0.03) and complete.verdict == "supported"


def test_a_study_with_no_finished_runs_is_undecided_not_an_error():
    empty = pd.DataFrame({"label": pd.Series([], dtype=str), "seed": pd.Series([], dtype=int),
                          "test_acc": pd.Series([], dtype=float)})
    spec, claims = study([compare()], seeds={"min": 3, "max": 9})
    for counts in (None, {"A": 3, "B": 3, "C": 3}):
        (v,) = judge(spec, claims, empty, counts)
        assert v.verdict == "undecided" and v.result is None
    rounds = seed_rounds(spec, claims, empty, ["A", "B", "C"], lambda label, seed: False)
    assert len(rounds) == 1 and rounds[0].added == {"A": [3, 4, 5], "B": [3, 4, 5]}


# ----------------------------------------------------------------------------- statements
@pytest.mark.parametrize("claim, parts", [
    (compare(), ["test accuracy", "variant=A > variant=B"]),
    (compare("less_than", margin=0.02, where={"model.activation": "relu"}),
     ["variant=A < variant=B", "by more than 0.02", "where activation=relu"]),
    (compare("same_as", within=0.01), ["variant=A within 0.01 of variant=B"]),
    ({"metric": "test_loss", "of": {"variant": "A"}, "at_least": 0.5}, ["test loss", "variant=A >= 0.5"]),
    ({"metric": "dead_frac", "at_most": 0.25}, ["dead-unit fraction", "every run <= 0.25"]),
    ({"metric": "grad_ratio", "of": {"variant": "A"}, "at_most": 0.01}, ["gradient ratio (log10)", "<= 0.01"]),
    ({"metric": "acc_gap", "of": {"variant": "A"}, "greater_than": {"variant": "B"}}, ["accuracy gap", ">"]),
    ({"metric": "val_acc", "trend": "increasing", "over": "variant"}, ["validation accuracy rises with variant"]),
    ({"metric": "test_acc", "trend": "decreasing", "over": "model.hidden", "where": {"variant": "A"}},
     ["test accuracy falls with hidden", "where variant=A"]),
    ({"metric": "test_acc", "of": {"model.hidden": [16, 16]}, "greater_than": {"model.hidden": [16]}},
     ["hidden=[16,16] > hidden=[16]"]),
])
def test_a_statement_reads_as_the_claim(claim, parts):
    from trainlab.study.claims import Claim

    text = statement(Claim(**claim))
    for part in parts:
        assert part in text, (part, text)
    assert "None" not in text and "{" not in text


# ----------------------------------------------------------------------------- rounds of adaptive seeds
SEEDS = {"min": 3, "max": 8, "step": 2}  # rounds at 3, 5, 7 and 8 seeds: four looks


def test_a_clear_difference_stops_after_the_first_round(rng):
    base = rng.normal(0.8, 0.03, 8)
    values = frame(A=base + 0.1 + rng.normal(0, 0.002, 8), B=base, C=base - 0.3)
    spec, claims = study([compare()], seeds=SEEDS)
    rounds = seed_rounds(spec, claims, values, ["A", "B", "C"], lambda label, seed: True)
    assert len(rounds) == 1 and rounds[0].added == {} and rounds[0].why == {}
    assert rounds[0].counts == {"A": 3, "B": 3, "C": 3}
    assert rounds[0].verdicts[0].verdict == "supported" and rounds[0].verdicts[0].seeds == {"A": 3, "B": 3}


def noisy_values(rng, n=8):
    base = rng.normal(0.8, 0.03, n)
    return base, frame(A=base + 0.001 + rng.normal(0, 0.02, n), B=base, C=base - 0.2)


def test_an_undecided_claim_adds_seeds_to_its_two_variants_round_by_round_up_to_max(rng):
    _, values = noisy_values(rng)
    spec, claims = study([compare()], seeds=SEEDS)
    assert spec.adaptive.looks == 4
    rounds = seed_rounds(spec, claims, values, ["A", "B", "C"], lambda label, seed: True)
    assert [r.counts for r in rounds] == [{"A": n, "B": n, "C": 3} for n in (3, 5, 7, 8)]
    assert [r.added for r in rounds] == [{"A": [3, 4], "B": [3, 4]}, {"A": [5, 6], "B": [5, 6]},
                                         {"A": [7], "B": [7]}, {}]
    for r in rounds:
        assert [v.verdict for v in r.verdicts] == ["undecided"]
        assert r.verdicts[0].seeds == {"A": r.counts["A"], "B": r.counts["B"]}  # only the seeds it had then
        assert r.verdicts[0].level == pytest.approx(0.05 / 4)
    for r in rounds[:-1]:
        assert set(r.why) == {"A", "B"} and all(any("claim 1" in why for why in r.why[x]) for x in r.why)
    # the verdict of a round is the verdict on that round's seeds
    a, b = values[values.label == "A"].test_acc.to_numpy(), values[values.label == "B"].test_acc.to_numpy()
    assert rounds[1].verdicts[0].result.p_value == pytest.approx(stats.ttest_rel(a[:5], b[:5]).pvalue, rel=1e-9)


def test_a_round_whose_seeds_have_not_all_ended_is_the_last(rng):
    _, values = noisy_values(rng)
    spec, claims = study([compare()], seeds=SEEDS)
    seen = []

    def ended(label, seed):
        seen.append((label, seed))
        return not (label == "B" and seed == 6)  # B's seed 6 is still training

    rounds = seed_rounds(spec, claims, values, ["A", "B", "C"], ended)
    assert len(rounds) == 2 and rounds[-1].counts == {"A": 5, "B": 5, "C": 3}
    assert rounds[-1].added == {"A": [5, 6], "B": [5, 6]}  # still to train (or to finish)
    assert ("B", 6) in seen and not any(label == "C" for label, _ in seen)

    rounds = seed_rounds(spec, claims, values, ["A", "B", "C"], lambda label, seed: False)
    assert len(rounds) == 1 and rounds[0].added == {"A": [3, 4], "B": [3, 4]}


def test_without_claims_the_best_variant_gets_seeds_with_those_it_is_not_told_apart_from(rng):
    base = rng.normal(0.8, 0.03, 8)
    values = frame(A=base + 0.001 + rng.normal(0, 0.02, 8), B=base, C=base - 0.3 + rng.normal(0, 0.002, 8))
    spec, claims = study([], seeds=SEEDS)
    assert claims == []
    rounds = seed_rounds(spec, claims, values, ["A", "B", "C"], lambda label, seed: True)
    first = rounds[0]
    assert first.verdicts == [] and first.added == {"A": [3, 4], "B": [3, 4]}
    best = max("AB", key=lambda x: values[(values.label == x) & (values.seed < 3)].test_acc.mean())
    other = "B" if best == "A" else "A"
    assert first.why == {"A": [f"{best} vs {other} undecided"], "B": [f"{best} vs {other} undecided"]}
    assert all("C" not in r.added for r in rounds)  # clearly worse: no more seeds
    assert rounds[-1].added == {} and len(rounds) == 4


def test_without_claims_the_findings_metric_decides(rng):
    base = rng.normal(0.5, 0.03, 8)
    values = frame("test_loss", A=base, B=base + 0.3 + rng.normal(0, 0.002, 8))
    spec, claims = study([], labels=("A", "B"), seeds=SEEDS)
    rounds = seed_rounds(spec, claims, values, ["A", "B"], lambda label, seed: True, metric="test_loss")
    assert len(rounds) == 1 and rounds[0].added == {}


# ----------------------------------------------------------------------------- the table of verdicts
def test_verdict_table_shows_each_claims_numbers(rng):
    base = rng.normal(0.8, 0.03, N)
    a, b = base + 0.05 + rng.normal(0, 0.004, N), base
    c = base + 0.002 + 0.01 * standardized(N, rng)  # undecided against b
    spec, claims = study([compare(), compare(of="C", other="B"), compare("less_than", of="B", other="A"),
                          {"metric": "test_acc", "of": {"variant": "A"}, "at_least": 0.5}])
    verdicts = judge(spec, claims, frame(A=a, B=b.copy(), C=c))
    table = verdict_table(verdicts)
    assert list(table["claim"]) == [1, 2, 3, 4]
    assert list(table["verdict"]) == [v.verdict for v in verdicts] == ["supported", "undecided", "supported",
                                                                      "supported"]
    first = verdicts[0].result
    assert table.loc[0, "effect [interval]"] == f"{first.effect:+.3g} [{first.low:.3g}, {first.high:.3g}]"
    # P(better): the share of (seed of a, seed of b) pairs where a's value is higher, counted directly
    better = np.mean([x > y for x in a for y in b])
    assert table.loc[0, "P(better)"] == f"{better:.2f}"
    assert table.loc[2, "P(better)"] == f"{np.mean([x < y for x in b for y in a]):.2f}"  # less_than: b below a
    assert table.loc[3, "P(better)"] == "-"  # against a number
    assert table.loc[1, "note"] == f"about {verdicts[1].seeds_needed} seeds per variant would decide it"
    assert verdicts[1].seeds_needed > N and table.loc[0, "note"] == ""
    assert set(table["seeds"]) == {str(N)}


def test_a_sentence_tested_by_several_claims_is_quoted_once_with_their_numbers(rng):
    said, other = "A beats B and C", "C is above one half"
    spec, claims = study([compare(quote=said), compare(other="C", quote=said), {**compare(of="C"), "quote": ""},
                          {"metric": "test_acc", "of": {"variant": "C"}, "at_least": 0.5, "quote": other}])
    verdicts = judge(spec, claims, frame(A=rng.normal(0.9, 0.01, N), B=rng.normal(0.8, 0.01, N),
                                         C=rng.normal(0.7, 0.01, N)))
    assert quotes(verdicts) == [([1, 2], said), ([4], other)]
