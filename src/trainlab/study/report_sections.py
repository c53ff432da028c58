"""The sections a study file's ``report:`` list may name, with their titles and options.

Checked when the study is planned, before anything trains; :mod:`trainlab.report.build` builds
each section. An entry is a section name or ``{name: {option: value}}``::

    report: [question, findings, {histograms_over_time: {layer: fc1}}, {analyses: {what: [filters]}}]
"""

from __future__ import annotations

from typing import Any, NamedTuple

from trainlab.analysis.catalog import OPTION_NAMES, AnalysisOptions, requested_analyses
from trainlab.errors import UserError, unknown


class SectionKind(NamedTuple):
    title: str
    options: tuple[str, ...] = ()


SECTIONS: dict[str, SectionKind] = {
    "question": SectionKind("Question"),
    "variants": SectionKind("What varies"),
    "claims": SectionKind("Claims and verdicts"),
    "findings": SectionKind("Findings", ("metric",)),
    "final_metrics": SectionKind("Final metrics", ("metric", "metrics")),
    "learning_curves": SectionKind("Learning curves"),
    "iteration_curves": SectionKind("Per-iteration curves"),
    "gradient_distributions": SectionKind("Gradient distributions", ("layer",)),
    "layer_means": SectionKind("Gradients and weights across depth", ("stat",)),
    "gradient_norms": SectionKind("Gradient norm during training", ("layer",)),
    "total_gradient_norm": SectionKind("Total gradient norm per epoch"),
    "activation_derivatives": SectionKind("Activation derivatives", ("layer",)),
    "output_gradients": SectionKind("Gradients with respect to layer outputs", ("stat",)),
    "histograms_over_time": SectionKind("Histograms over time", ("layer", "quantity")),
    "runtime": SectionKind("Runtime"),
    "model_summary": SectionKind("Models", ("layers",)),
    "analyses": SectionKind("What the networks learned", ("what", "runs", *OPTION_NAMES)),  # + AnalysisOptions
}
DEFAULT_SECTIONS = ["question", "variants", "findings", "final_metrics", "learning_curves",
                    "gradient_distributions", "layer_means", "histograms_over_time", "runtime", "model_summary"]
RANKED_METRICS = [f"{split}_{kind}" for split in ("train", "val", "test") for kind in ("acc", "loss")]


def section_options(study: str, report: list[Any]) -> dict[str, dict[str, Any]]:
    """Study ``study``'s ``report:`` list as ``{section: options}``, in order; the defaults when it is empty.

    A mistake (unknown section, option or metric; a section listed twice) raises UserError naming it.
    """
    if not report:
        return {name: {} for name in DEFAULT_SECTIONS}
    out: dict[str, dict[str, Any]] = {}
    for entry in report:
        name, options = _entry(study, entry)
        if name in out:
            raise UserError(f"study {study!r}: report section {name!r} is listed twice; "
                            "give it once, with the options it should use")
        _check_options(name, options)
        out[name] = options
    return out


def _entry(study: str, entry: Any) -> tuple[str, dict[str, Any]]:
    """A ``report:`` entry as ``(section name, options)``."""
    if isinstance(entry, str):
        name, options = entry, {}
    elif isinstance(entry, dict) and len(entry) == 1:
        name, options = next(iter(entry.items()))
        options = options or {}
    else:
        raise UserError(f"study {study!r}: each report entry is a section name or {{name: {{options}}}}, "
                        f"got {entry!r}")
    if name not in SECTIONS:
        raise unknown(f"report section in study {study!r}:", name, SECTIONS)
    if not isinstance(options, dict):
        raise UserError(f"study {study!r}: options of report section {name!r} must be a mapping, "
                        f"got {options!r}")
    return name, options


def _check_options(name: str, options: dict[str, Any]) -> None:
    allowed = SECTIONS[name].options
    for key, value in options.items():
        if key not in allowed:
            raise unknown(f"option of report section {name}:", key, allowed or ["(none)"])
        if key in ("metric", "metrics"):
            for metric in value if isinstance(value, list) else [value]:
                if metric not in RANKED_METRICS:
                    raise unknown(f"metric in report section {name}:", metric, RANKED_METRICS)
    if name == "analyses":  # the analyses and their option values, checked as trainlab analyze checks them
        requested_analyses(options.get("what"))
        AnalysisOptions.of(options).check()
