"""Per-run measures of a probe frame (:meth:`~trainlab.store.RunStore.probes`): one number per run.

Findings (:mod:`trainlab.report.findings`) and claims (:mod:`trainlab.study.claims`) use them.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def parameterised_layers(probe: pd.DataFrame) -> list[str]:
    """Layers with a weight gradient in first-appearance order: the network from input to output."""
    return list(select(probe, "grad", tensor="weight")["layer"].unique())


def gradient_ratio(probe: pd.DataFrame) -> float:
    """Median over probed steps of mean |weight gradient| of the first parameterised layer / the last's.

    NaN with fewer than two parameterised layers.
    """
    layers = parameterised_layers(probe)
    if len(layers) < 2:
        return math.nan
    grads = select(probe, "grad", "abs_mean", "weight")
    first, last = (grads[grads["layer"] == layer].set_index("step")["value"]
                   for layer in (layers[0], layers[-1]))
    return float((first / last).median())


def gradient_growth(probe: pd.DataFrame) -> float:
    """Gradient norm over all parameters at the last probed step / at the first (NaN with one step)."""
    norms = select(probe, "grad", "norm")
    total = norms.groupby("step")["value"].apply(lambda v: math.sqrt(float(np.sum(v.to_numpy() ** 2))))
    return float(total.iloc[-1] / total.iloc[0]) if len(total) >= 2 else math.nan


def dead_fractions(probe: pd.DataFrame) -> pd.Series:
    """Each activation layer's ``dead_frac`` at the last probed step that has one, in forward order."""
    dead = select(probe, "activation", "dead_frac")
    return dead[dead["step"] == dead["step"].max()].set_index("layer")["value"]


def select(probe: pd.DataFrame, quantity: str, stat: str | None = None,
           tensor: str | None = None) -> pd.DataFrame:
    """A probe frame's rows of one quantity, optionally of one stat and one tensor."""
    keep = probe["quantity"] == quantity
    if stat is not None:
        keep &= probe["stat"] == stat
    if tensor is not None:
        keep &= probe["tensor"] == tensor
    return probe[keep]
