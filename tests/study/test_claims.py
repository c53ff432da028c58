"""Claims at plan time: each user mistake is one line naming the claim and the valid choices; a valid claim
resolves to the variant labels it compares (pairs, pooled labels, a trend's levels in the study's order)."""

import pytest
import yaml

from trainlab.cli import main
from trainlab.errors import UserError
from trainlab.study.claims import FORMS, METRICS
from trainlab.study.spec import expand, read_study, resolve_claims

BASE = {"data": {"name": "digits"}, "model": {"kind": "mlp", "hidden": [16]}, "train": {"epochs": 1}}
STUDY = {  # activation x depth, crossed
    "name": "claims",
    "base": BASE,
    "vary": {"model.activation": ["relu", "sigmoid", "tanh"], "model.hidden": [[16], [16, 16]]},
    "seeds": 2,
}
TWO_ACTIVATIONS = {"model.activation": ["relu", "sigmoid"], "model.hidden": [[16], [16, 16]]}
VARIANTS = [{"label": "plain"}, {"label": "BN", "set": {"model.batch_norm": True}},
            {"label": "wide", "set": {"model.hidden": [32]}}]
WITH_VARIANTS = {"variants": VARIANTS, "vary": {"model.activation": ["relu", "sigmoid"]}}
RELU_GT_SIGMOID = {"metric": "test_acc", "of": {"model.activation": "relu"},
                   "greater_than": {"model.activation": "sigmoid"}}


def resolved(claims, **fields):
    spec = read_study({**STUDY, **fields, "claims": claims})
    runs = expand(spec)
    return resolve_claims(spec, runs), runs


def label_of(runs, **values):
    """The label of the variant whose overrides (dotted keys with '.' written '__') are ``values``."""
    wanted = {key.replace("__", "."): value for key, value in values.items()}
    labels = {r.label for r in runs if all(r.overrides.get(k) == v for k, v in wanted.items())}
    assert len(labels) == 1, labels
    return labels.pop()


def plan(tmp_path, capsys, monkeypatch, claims, **fields):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**STUDY, **fields, "claims": claims}, sort_keys=False))
    code = main(["plan", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------- mistakes, through the CLI
OK = {"metric": "test_acc", "of": {"model.activation": "relu"}, "at_least": 0.5}


@pytest.mark.parametrize("claims, fields, expected", [
    # an unknown metric, with the list
    ([{**OK, "metric": "test_accuracy"}], {},
     ["claims.0", "unknown metric 'test_accuracy'", "did you mean 'test_acc'", *METRICS]),
    # a selector key the study does not vary, in of / greater_than / where / over; the claim is named
    ([OK, {**OK, "of": {"model.activaton": "relu"}}], {},
     ["claim 2", "`of`", "'model.activaton'", "does not vary", "did you mean 'model.activation'",
      "valid keys: model.activation, model.hidden"]),
    ([{**RELU_GT_SIGMOID, "greater_than": {"train.lr": 0.1}}], {},
     ["claim 1", "`greater_than`", "'train.lr'", "valid keys: model.activation, model.hidden"]),
    ([{**OK, "where": {"model.depth": 2}}], {}, ["`where`", "'model.depth'", "valid keys: model.activation, model.hidden"]),
    ([{"metric": "test_acc", "trend": "increasing", "over": "train.lr"}], {},
     ["`over`", "'train.lr'", "valid keys: model.activation, model.hidden"]),
    ([{**OK, "of": {"variant": "BN"}}], {}, ["'variant'", "does not vary", "valid keys: model.activation, model.hidden"]),
    # a value no variant has
    ([{**OK, "of": {"model.activation": "swish"}}], {},
     ["`of`", "model.activation=swish", "no variant has", "valid values: relu, sigmoid, tanh"]),
    ([{**RELU_GT_SIGMOID, "less_than": {"model.hidden": [32]}, "greater_than": None}], {},
     ["`less_than`", "model.hidden=[32]", "valid values: [16], [16,16]"]),
    ([{**OK, "of": {"variant": "big"}}], WITH_VARIANTS,
     ["`of`", "variant=big", "valid values: plain, BN, wide"]),
    # values each used, but by no one variant together
    ([{**OK, "of": {"variant": "plain", "model.batch_norm": True}}], WITH_VARIANTS,
     ["no variant has", "variant=plain", "model.batch_norm=true"]),
    # two forms, or none
    ([{**OK, "at_most": 0.9}], {}, ["claims.0", "exactly one of", *FORMS, "got at_least, at_most"]),
    ([{"metric": "test_acc", "of": {"model.activation": "relu"}}], {}, ["claims.0", "exactly one of", *FORMS, "got none"]),
    ([{**RELU_GT_SIGMOID, "same_as": {"model.activation": "tanh"}, "within": 0.01}], {},
     ["exactly one of", "got greater_than, same_as"]),
    # parts that go together
    ([{"metric": "test_acc", "trend": "increasing"}], {}, ["claims.0", "`trend` and `over`", "varied key"]),
    ([{"metric": "test_acc", "of": {"model.activation": "relu"}, "same_as": {"model.activation": "tanh"}}], {},
     ["claims.0", "`same_as` and `within`"]),
    ([{**OK, "at_least": None, "at_most": 0.5, "margin": 0.1}], {},
     ["claims.0", "`margin`", "greater_than and less_than"]),
    ([{"metric": "test_acc", "greater_than": {"model.activation": "sigmoid"}}], {}, ["claims.0", "give `of`"]),
    ([{**RELU_GT_SIGMOID, "greater_than": None, "same_as": {"model.activation": "tanh"}, "within": 0}], {},
     ["claims.0.within", "greater than 0"]),
    # ambiguous comparisons: relu at one depth has two variants at depth 2 to compare with
    ([{**RELU_GT_SIGMOID, "greater_than": {"model.hidden": [16, 16]}}], {"vary": TWO_ACTIVATIONS},
     ["claim 1", "'activation=relu, hidden=[16]'", "found 2", "activation=relu, hidden=[16,16]",
      "activation=sigmoid, hidden=[16,16]", "`where`"]),
    ([{**RELU_GT_SIGMOID, "greater_than": {"model.hidden": [16, 16]}, "where": {"model.activation": "relu"}}],
     {"vary": TWO_ACTIVATIONS}, ["'activation=relu, hidden=[16,16]'", "on both sides"]),
    ([{**RELU_GT_SIGMOID, "of": {"variant": "BN"}}], WITH_VARIANTS,
     ["'BN, activation=relu'", "found 3", "plain, activation=sigmoid; BN, activation=sigmoid; wide, activation=sigmoid",
      "`where`"]),
    # trends: two variants at one level, or one level only
    ([{"metric": "test_acc", "trend": "decreasing", "over": "model.hidden"}], {},
     ["claim 1", "3 variants have model.hidden=[16]", "activation=relu, hidden=[16]",
      "activation=sigmoid, hidden=[16]", "activation=tanh, hidden=[16]", "`where`"]),
    ([{"metric": "test_acc", "trend": "decreasing", "over": "model.hidden", "where": {"model.hidden": [16]}}], {},
     ["claim 1", "two levels at least", "found 1"]),
    # adaptive seeds: each mistake names its field
    ([OK], {"seeds": {"min": 1, "max": 8}}, ["study.seeds", "min", "greater than or equal to 2"]),
    ([OK], {"seeds": {"min": 3, "max": 2}}, ["study.seeds", "max (2) must be at least min (3)"]),
    ([OK], {"seeds": {"min": 3, "max": 8, "most": 9}}, ["study.seeds", "most", "Extra inputs"]),
    # a claim judged at a scale the study does not have; a scale's own seeds checked like the study's
    ([{**OK, "scales": ["medium"]}], {"scales": {"quick": {}}}, ["claim 1", "unknown scale 'medium'", "full, quick"]),
])
def test_a_claim_mistake_fails_the_plan_with_one_line_naming_it(tmp_path, capsys, monkeypatch, claims, fields,
                                                                  expected):
    claims = [{k: v for k, v in claim.items() if v is not None} for claim in claims]
    code, out, err = plan(tmp_path, capsys, monkeypatch, claims, **fields)
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("trainlab: error:"), err
    for part in expected:
        assert part in lines[0], (part, lines[0])
    assert [p.name for p in tmp_path.iterdir()] == ["study.yaml"]  # nothing written


def test_valid_claims_of_every_form_plan(tmp_path, capsys, monkeypatch):
    claims = [
        {"quote": "ReLU beats sigmoid", **RELU_GT_SIGMOID, "margin": 0.01},
        {"metric": "acc_gap", "of": {"model.activation": "tanh"}, "less_than": {"model.activation": "sigmoid"}},
        {"metric": "loss_gap", "of": {"model.activation": "tanh"}, "same_as": {"model.activation": "relu"},
         "within": 0.1},
        {"metric": "grad_ratio", "of": {"model.activation": "sigmoid"}, "at_most": 0.01},
        {"metric": "test_acc", "trend": "decreasing", "over": "model.hidden", "where": {"model.activation": "sigmoid"}},
    ]
    code, out, err = plan(tmp_path, capsys, monkeypatch, claims)
    assert code == 0 and err == "", err
    assert "12 runs" in out


# ----------------------------------------------------------------------------- what a claim resolves to
def test_a_comparison_pairs_each_variant_with_the_other_side_at_the_same_free_settings():
    (claim,), runs = resolved([RELU_GT_SIGMOID])
    assert claim.index == 1 and claim.labels == []
    assert claim.pairs == [
        (label_of(runs, model__activation="relu", model__hidden=[16]),
         label_of(runs, model__activation="sigmoid", model__hidden=[16])),
        (label_of(runs, model__activation="relu", model__hidden=[16, 16]),
         label_of(runs, model__activation="sigmoid", model__hidden=[16, 16])),
    ]
    assert claim.involved == [label for pair in claim.pairs for label in pair]  # tanh is not involved


@pytest.mark.parametrize("form", ["greater_than", "less_than"])
def test_where_restricts_both_sides(form):
    claim = {"metric": "test_loss", "of": {"model.hidden": [16, 16]}, form: {"model.hidden": [16]},
             "where": {"model.activation": "tanh"}}
    (one, two), runs = resolved([claim, {**RELU_GT_SIGMOID, "where": {"model.hidden": [16, 16]}}])
    assert one.pairs == [(label_of(runs, model__activation="tanh", model__hidden=[16, 16]),
                          label_of(runs, model__activation="tanh", model__hidden=[16]))]
    assert two.index == 2
    assert two.pairs == [(label_of(runs, model__activation="relu", model__hidden=[16, 16]),
                          label_of(runs, model__activation="sigmoid", model__hidden=[16, 16]))]


def test_an_equivalence_claim_pairs_like_a_comparison():
    claim = {"metric": "test_acc", "of": {"model.activation": "tanh"}, "same_as": {"model.activation": "relu"},
             "within": 0.02}
    (claim,), runs = resolved([claim])
    assert claim.pairs == [(label_of(runs, model__activation="tanh", model__hidden=hidden),
                            label_of(runs, model__activation="relu", model__hidden=hidden))
                           for hidden in ([16], [16, 16])]


def test_variant_selectors_use_the_variants_list_labels_and_keys_set_there():
    fields = WITH_VARIANTS
    claims = [
        {"metric": "test_acc", "of": {"variant": "BN"}, "greater_than": {"variant": "plain"}},
        {"metric": "test_acc", "of": {"model.batch_norm": True}, "greater_than": {"variant": "plain"}},
        {"metric": "test_acc", "of": {"model.hidden": [32]}, "at_least": 0.5},
        {"metric": "test_acc", "of": {"variant": "wide"}, "less_than": {"variant": "plain"},
         "where": {"model.activation": "sigmoid"}},
    ]
    (by_label, by_key, wide, wide_sigmoid), runs = resolved(claims, **fields)
    pairs = [(label_of(runs, model__batch_norm=True, model__activation=act),
              next(r.label for r in runs if r.variant == "plain" and r.overrides["model.activation"] == act))
             for act in ("relu", "sigmoid")]
    assert by_label.pairs == pairs and by_key.pairs == pairs
    assert all(label.startswith("BN") for label, _ in pairs) and all(p.startswith("plain") for _, p in pairs)
    assert wide.labels == [label_of(runs, model__hidden=[32], model__activation=act) for act in ("relu", "sigmoid")]
    assert wide_sigmoid.pairs == [(label_of(runs, model__hidden=[32], model__activation="sigmoid"),
                                   next(r.label for r in runs
                                        if r.variant == "plain" and r.overrides["model.activation"] == "sigmoid"))]


def test_zipped_keys_select_together_and_pair_at_the_same_other_settings():
    fields = {"vary": {"model.activation": ["relu", "sigmoid"]},
              "zip": {"train.lr": [0.1, 0.01], "train.batch_size": [64, 16]}}
    claim = {"metric": "test_acc", "of": {"train.lr": 0.1}, "greater_than": {"train.batch_size": 16}}
    (claim,), runs = resolved([claim], **fields)
    assert claim.pairs == [(label_of(runs, train__lr=0.1, model__activation=act),
                            label_of(runs, train__lr=0.01, model__activation=act)) for act in ("relu", "sigmoid")]


def test_a_trend_lists_its_levels_in_the_order_the_study_gives_them():
    depths = [[16, 16], [16], [16, 16, 16]]  # not sorted: the study's order is the trend's
    claim = {"metric": "test_acc", "trend": "increasing", "over": "model.hidden",
             "where": {"model.activation": "sigmoid"}}
    (trend,), runs = resolved([claim], vary={"model.activation": ["relu", "sigmoid"], "model.hidden": depths})
    assert trend.pairs == []
    assert trend.labels == [label_of(runs, model__activation="sigmoid", model__hidden=d) for d in depths]

    # over the variants list: its order, with keys of vary fixed by `where`
    variants = [{"label": "deep", "set": {"model.hidden": [16, 16, 16]}}, {"label": "shallow"},
                {"label": "middle", "set": {"model.hidden": [16, 16]}}]
    claim = {"metric": "test_acc", "trend": "decreasing", "over": "variant", "where": {"model.activation": "relu"}}
    (trend,), runs = resolved([claim], variants=variants, vary={"model.activation": ["relu", "tanh"]})
    assert trend.labels == [next(r.label for r in runs if r.variant == v["label"]
                                 and r.overrides["model.activation"] == "relu") for v in variants]


def test_a_claim_against_a_number_pools_the_variants_it_selects():
    (sigmoid, one, everything), runs = resolved([
        {"metric": "test_acc", "of": {"model.activation": "sigmoid"}, "at_most": 0.2},
        {"metric": "dead_frac", "of": {"model.activation": "relu"}, "where": {"model.hidden": [16, 16]}, "at_least": 0.1},
        {"metric": "test_acc", "at_least": 0.1},
    ])
    assert sigmoid.pairs == [] and sigmoid.labels == [
        label_of(runs, model__activation="sigmoid", model__hidden=h) for h in ([16], [16, 16])]
    assert one.labels == [label_of(runs, model__activation="relu", model__hidden=[16, 16])]
    assert everything.labels == list(dict.fromkeys(r.label for r in runs))  # no selector: every variant
    assert sigmoid.involved == sigmoid.labels


def test_resolve_claims_raises_the_same_user_error_as_the_plan():
    with pytest.raises(UserError, match=r"claim 1: .*model.activation=swish, which no variant has"):
        resolved([{**OK, "of": {"model.activation": "swish"}}])


def test_adaptive_seeds_need_claims_or_two_variants():
    spec = read_study({**STUDY, "vary": {}, "seeds": {"min": 2, "max": 4}})
    with pytest.raises(UserError, match=r"seeds \{min, max\}.*give claims, or a seed count"):
        resolve_claims(spec, expand(spec))
    spec = read_study({**STUDY, "seeds": {"min": 2, "max": 4}})
    assert resolve_claims(spec, expand(spec)) == []  # no claims, but variants to compare


def test_a_scale_sets_its_own_seeds_and_a_claim_may_keep_to_some_scales():
    from trainlab.study import plan_study

    study = {**STUDY, "seeds": {"min": 3, "max": 6}, "claims": [OK, {**OK, "at_least": 0.9, "scales": ["full"]}],
             "scales": {"quick": {"seeds": 2, "train.epochs": 3}}}
    spec, runs = plan_study(study, "quick")
    assert spec.seeds == 2 and spec.adaptive is None and [c.at_least for c in spec.claims] == [0.5]
    assert sorted({r.seed for r in runs}) == [0, 1] and {r.config.train.epochs for r in runs} == {3}
    spec, runs = plan_study(study)
    assert (spec.adaptive.min, spec.adaptive.max) == (3, 6) and [c.at_least for c in spec.claims] == [0.5, 0.9]
    assert sorted({r.seed for r in runs}) == [0, 1, 2] and {r.config.train.epochs for r in runs} == {1}
