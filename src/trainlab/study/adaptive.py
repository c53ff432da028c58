"""Seeds until decided: ``seeds: {min: 3, max: 16, step: 3}`` in a study file.

Every variant first runs ``min`` seeds. Then, round by round, the variants that an undecided
claim involves (or, in a study without claims, the best variant and each variant it is not yet
distinguishable from on the findings' metric) get the next ``step`` seeds, until nothing is
undecided or they reach ``max``. Seeds are numbered 0, 1, 2, ... per variant, so a variant's
first n seeds are the same runs whichever round added them.

The rounds are a pure function of the stored results (:func:`seed_rounds` replays them), so a
study that is run again, after a kill or to add a report, arrives at the same seeds: finished
runs are skipped, and an interrupted round resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from trainlab.stats import best_versus_rest
from trainlab.study.claims import ResolvedClaim
from trainlab.study.spec import StudySpec
from trainlab.study.verdicts import Verdict, judge, seeds_below


@dataclass
class SeedRound:
    """One look at the claims: the seeds each variant had (``counts``), the verdicts then, and the seeds
    added after it (``added``: variant label -> seeds) with the reasons (``why``: label -> reasons)."""

    counts: dict[str, int]
    verdicts: list[Verdict]
    added: dict[str, list[int]] = field(default_factory=dict)
    why: dict[str, list[str]] = field(default_factory=dict)


def seed_rounds(spec: StudySpec, claims: list[ResolvedClaim], values: pd.DataFrame, labels: list[str],
                ended: Callable[[str, int], bool], metric: str = "test_acc") -> list[SeedRound]:
    """The rounds of an adaptive study as far as its runs have ended (``ended(label, seed)``).

    ``values`` (:func:`~trainlab.study.verdicts.claim_values`) must include ``metric`` for a study
    without claims. The last round's ``added`` are the seeds still to train (empty: the study is done).
    """
    seeds = spec.adaptive
    step = seeds.step or seeds.min
    counts = {label: seeds.min for label in labels}
    rounds = []
    while True:
        verdicts = judge(spec, claims, values, counts)
        why = _undecided(spec, claims, verdicts, values, counts, metric)
        added = {label: list(range(counts[label], min(counts[label] + step, seeds.max)))
                 for label in why if counts[label] < seeds.max}
        rounds.append(SeedRound(dict(counts), verdicts, added, {label: why[label] for label in added}))
        if not added or not all(ended(label, seed) for label, new in added.items() for seed in new):
            return rounds
        for label, new in added.items():
            counts[label] += len(new)


def _undecided(spec: StudySpec, claims: list[ResolvedClaim], verdicts: list[Verdict], values: pd.DataFrame,
               counts: dict[str, int], metric: str) -> dict[str, list[str]]:
    """Variant label -> why it needs more seeds: the undecided claims (or comparisons) it is part of."""
    why: dict[str, list[str]] = {}
    if claims:
        for verdict in verdicts:
            if verdict.verdict == "undecided":
                for label in verdict.involved:
                    why.setdefault(label, []).append(f"claim {verdict.index} undecided")
        return why
    runs = seeds_below(values, counts).assign(status="done")
    if runs.dropna(subset=[metric])["label"].nunique() < 2:
        return why
    for c in best_versus_rest(runs, metric, alpha=spec.statistics.alpha / spec.adaptive.looks,
                              confidence=spec.statistics.confidence, method=spec.statistics.test):
        if not c.decided:
            for label in (c.best, c.other):
                why.setdefault(label, []).append(f"{c.best} vs {c.other} undecided")
    return why
