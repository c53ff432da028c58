"""A study's report: sections built from the run store, written as HTML and Markdown.

``build_report("activations.yaml")`` (or ``trainlab report STUDY``) writes
``<store>/reports/<study>/report.html`` (self-contained) and ``report.md`` with a ``figures/``
folder. The sections and their options come from the study file's ``report:`` list, e.g.::

    report: [question, variants, findings, final_metrics, learning_curves,
             {histograms_over_time: {layer: fc1}}, {analyses: {what: [filters, confusion]}}]

Two studies given together are compared side by side: their variants are prefixed with the
study name and share every table and figure.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from trainlab.errors import UserError, unknown
from trainlab.faults import fault_point
from trainlab.probes.stats import TENSOR_STATS
from trainlab.report import figures as figs
from trainlab.report.document import Document, Gallery, Picture, Section, Table, Text, render_html, render_markdown, slug
from trainlab.report.findings import find
from trainlab.stats import DEFAULT_METRICS, MIN_CI_SEEDS, higher_is_better, summarize
from trainlab.store import DEFAULT_STORE, FINISHED, FileLock, RunStore
from trainlab.study.claims import show_value
from trainlab.study.report_sections import SECTIONS, section_options
from trainlab.study.run import StudyResult, load_study
from trainlab.study.verdicts import VERDICTS, quotes, verdict_table


@dataclass
class StudyData:
    """Everything a report shows, read from the store: runs (one row each) and per-run frames by run id."""

    title: str
    question: str
    runs: pd.DataFrame
    histories: dict[str, pd.DataFrame]
    probes: dict[str, pd.DataFrame]
    histograms: dict[str, pd.DataFrame]
    configs: dict[str, dict[str, Any]]
    varied: list[str]
    store: RunStore
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    colours: dict[str, str] = field(default_factory=dict)
    result: StudyResult | None = None  # verdicts and seed rounds (None for studies compared side by side)

    @cached_property
    def inputs(self) -> dict[str, tuple[tuple[int, int, int], int, list[str]]]:
        """Input shape, class count and class names per run, loading each distinct data set once."""
        return {run_id: facts[:3] for run_id, facts in self._data_facts.items()}

    @cached_property
    def steps_per_epoch(self) -> dict[str, int]:
        """Training steps per epoch of each run (its training images over its batch size, rounded up)."""
        return {run_id: math.ceil(facts[3] / self.configs[run_id]["train"]["batch_size"])
                for run_id, facts in self._data_facts.items()}

    @cached_property
    def _data_facts(self) -> dict[str, tuple]:
        """Per run: input shape, class count, class names and training images, loading each data set once."""
        from trainlab.config import load_config
        from trainlab.data import load_data
        from trainlab.study.executors import data_key

        loaded: dict[str, tuple] = {}
        out = {}
        for run_id, config in self.configs.items():
            key = data_key(config["data"])
            if key not in loaded:
                d = load_data(load_config(config).data)
                loaded[key] = (d.input_shape, d.num_classes, d.classes, len(d.train))
            out[run_id] = loaded[key]
        return out

    @property
    def labels(self) -> list[str]:
        return list(dict.fromkeys(self.runs["label"]))

    def by_label(self, frames: dict[str, pd.DataFrame], finished: bool = True) -> dict[str, list[pd.DataFrame]]:
        """Per variant, the frames of its runs (finished runs only by default) that have any rows."""
        out: dict[str, list[pd.DataFrame]] = {}
        for _, run in self.runs.iterrows():
            frame = frames.get(run["run_id"])
            if frame is not None and len(frame) and (not finished or run["status"] == "done"):
                out.setdefault(run["label"], []).append(frame)
        return out


@dataclass
class ReportFiles:
    html: Path
    markdown: Path
    figures: Path


def collect(study: str | Path | dict[str, Any] | StudyResult, scale: str | None = None,
            overrides: list[str] | dict | None = None, store: str | Path | RunStore = DEFAULT_STORE) -> StudyData:
    """Read a study's runs and everything recorded for them; a :class:`StudyResult` (what
    :func:`~trainlab.study.run_study` returns) is taken as it is, not loaded again."""
    store = store if isinstance(store, RunStore) else RunStore(store)
    result = study if isinstance(study, StudyResult) else load_study(study, scale, overrides, store)
    spec, planned = result.spec, result.planned
    options = section_options(spec.name, spec.report)
    if (spec.claims or spec.adaptive) and "claims" not in options:  # verdicts, and where the seeds went
        options = {**dict(list(options.items())[:1]), "claims": {}, **options}
    known = store.status_of([r.run_id for r in planned])
    if not known:
        raise UserError(f"study {spec.name!r} has no runs in store {str(store.root)!r}"
                        + (f" at scale {scale!r}" if scale else "") + "; train it first with `trainlab run`")
    runs = result.runs.copy()
    runs["label"] = runs["label"].replace("", "base")
    runs["diverged_step"] = [store.get_run(r)["diverged_step"] if r in known else None for r in runs["run_id"]]
    finished = runs["status"].isin(FINISHED)
    if not finished.any():
        counts = ", ".join(f"{n} {status}" for status, n in runs["status"].value_counts().items())
        raise UserError(f"no run of study {spec.name!r} has finished ({counts}): a report needs at least "
                        "one; train them with `trainlab run`")
    ids = list(runs.loc[finished, "run_id"])
    varied = [*dict.fromkeys(k for r in planned for k in r.overrides)]
    title = spec.name + (f" ({scale})" if scale else "")
    return StudyData(title, spec.question, runs, result.histories, {r: store.probes(r) for r in ids},
                     {r: store.probe_histograms(r) for r in ids},
                     {r.run_id: r.config.to_dict() for r in planned}, varied, store, options,
                     result=result)


# ----------------------------------------------------------------------------- sections
def _question(data: StudyData, options: dict) -> list:
    counts = data.runs["status"].value_counts()
    status = ", ".join(f"{n} {s}" for s, n in counts.items())
    text = data.question or "(the study file states no question)"
    return [Text(text), Text(f"{len(data.runs)} runs: {status}.")]


def _variants(data: StudyData, options: dict) -> list:
    columns = ["label", *[k for k in data.varied if k in data.runs.columns]]
    table = data.runs.groupby("label", sort=False).agg(
        **{k: (k, "first") for k in columns[1:]},
        seeds=("seed", lambda s: ", ".join(str(v) for v in s)),
        finished=("status", lambda s: f"{int((s == 'done').sum())}/{len(s)}"),
    ).reset_index()
    for key in columns[1:]:
        table[key] = table[key].map(lambda v: "(base)" if v is None or (isinstance(v, float) and pd.isna(v))
                                    else show_value(v))  # as the study file writes it
    return [Table(table.rename(columns={"label": "variant"}), "What varies between the variants, and their seeds; "
                  "(base): the variant leaves the setting at the study's base value.")]


def _summary_table(data: StudyData, metrics: list[str]) -> Table:
    summary = summarize(data.runs, metrics)
    rows, bold = [], set()
    for i, (label, row) in enumerate(summary.iterrows()):
        cells: dict[str, Any] = {"variant": label, "seeds": int(row["n"])}
        for m in metrics:
            if f"{m}_mean" not in summary.columns:
                continue
            mean, ci = row[f"{m}_mean"], row[f"{m}_ci"]
            interval = not pd.isna(ci) and row["n"] >= MIN_CI_SEEDS
            cells[m] = "–" if pd.isna(mean) else (f"{mean:.4f} ± {ci:.4f}" if interval else f"{mean:.4f}")
            if row[f"{m}_best"] and len(summary) > 1:
                bold.add((i, m))
        if row.get("n_failed", 0):
            cells["failed"] = int(row["n_failed"])
        rows.append(cells)
    caption = ("Final-epoch metrics: mean ± half-width of the 95% confidence interval (Student t) over seeds "
               f"(the mean alone for variants with fewer than {MIN_CI_SEEDS} seeds); best mean per column in bold.")
    return Table(pd.DataFrame(rows).fillna(0), caption, bold)


def _final_metrics(data: StudyData, options: dict) -> list:
    metric = options.get("metric", "test_acc")
    metrics = [m for m in options.get("metrics", DEFAULT_METRICS) if m in data.runs.columns]
    if metric not in data.runs.columns:
        return [Text(f"No run has {metric} yet.")]
    blocks: list = [_summary_table(data, metrics)]
    done = data.runs[data.runs["status"] == "done"]
    if done[metric].notna().any():
        blocks.append(_picture("final_metrics", figs.final_metrics(data.runs, data.colours, metric),
                               f"Final {metric} per variant: the mean, each seed, and the 95% confidence "
                               f"interval where a variant has {MIN_CI_SEEDS} or more seeds."))
    return blocks


def _claims(data: StudyData, options: dict) -> list:
    if data.result is None:
        return [Text("Claims are judged within each study: see each study's own report.")]
    verdicts = data.result.verdicts
    if not verdicts:
        return [Text("The study file states no claims.")] + _seed_rounds(data.result)
    spec = data.result.spec
    counts = pd.Series([v.verdict for v in verdicts]).value_counts()
    text = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if v in counts)
    table = verdict_table(verdicts)
    decided = {(i, "verdict") for i, v in enumerate(verdicts) if v.verdict != "undecided"}
    caption = (f"Effect: the difference of means (left side minus right), the mean (against a number; its log10 "
               f"for ratios) or Kendall's tau (trends), with its {spec.statistics.confidence:.0%} bootstrap "
               f"interval. p: two-sided test ({_tests(verdicts)}), Holm-corrected over the study's "
               f"{len(verdicts)} claims; a claim is decided at p < {verdicts[0].level:.3g}"
               + (f" (family-wise {spec.statistics.alpha:g} over {spec.adaptive.looks} looks)" if spec.adaptive
                  else "") + ". Seeds: finished runs per variant used by the test.")
    blocks = [Text(f"{len(verdicts)} claim{'s' if len(verdicts) > 1 else ''}: {text}."), Table(table, caption, decided, ("verdict", "statement", "note"))]
    blocks += [Text(f"Claim{'s' if len(numbers) > 1 else ''} {_numbers(numbers)} test{'' if len(numbers) > 1 else 's'}: "
                    f"“{quote}”") for numbers, quote in quotes(verdicts)]
    return blocks + _seed_rounds(data.result)


def _numbers(numbers: list[int]) -> str:
    return str(numbers[0]) if len(numbers) == 1 else ", ".join(map(str, numbers[:-1])) + f" and {numbers[-1]}"


def _tests(verdicts: list) -> str:
    return ", ".join(sorted({v.result.test for v in verdicts if v.result is not None})) or "none ran"


def _seed_rounds(result: StudyResult) -> list:
    """How an adaptive study spent its seeds: per round, the seeds added to which variants and why."""
    if not result.spec.adaptive:
        return []
    seeds = result.spec.adaptive
    done = result.runs[result.runs["status"] == "done"].groupby("label", sort=False).size()
    lines = [f"Seeds were added until the claims were decided: {seeds.min} per variant first, then "
             f"{seeds.step or seeds.min} at a time to the variants of undecided claims, up to {seeds.max}."]
    for number, seed_round in enumerate(result.rounds[:-1], start=1):
        lines.append(f"After round {number}: " + "; ".join(
            f"{label or 'base'} +{len(added)} ({', '.join(seed_round.why[label])})"
            for label, added in seed_round.added.items()) + ".")
    lines.append("Finished runs per variant: " + ", ".join(f"{label or 'base'} {n}" for label, n in done.items()) + ".")
    return [Text(line) for line in lines]


def _findings(data: StudyData, options: dict) -> list:
    metric = options.get("metric", "test_acc")
    classes = {classes for _, classes, _ in data.inputs.values()}
    spec = data.result.spec if data.result else None
    level = spec.statistics.alpha / (spec.adaptive.looks if spec.adaptive else 1) if spec else 0.05
    found = find(data.runs, data.histories, data.probes, metric=metric, num_classes=max(classes or {10}),
                 alpha=level, method=spec.statistics.test if spec else "t", factors=data.varied)
    if not found:
        return [Text("Nothing stands out: no vanishing or exploding gradients, dead units, flat losses, "
                     "overfitting or divergence were detected.")]
    blocks = []
    for finding in found:
        if finding.figure:
            blocks.append(Text(f"{finding.text} (see figure)", links={finding.figure: "see figure"}))
        else:
            blocks.append(Text(finding.text))
    return blocks


def _learning_curves(data: StudyData, options: dict) -> list:
    histories = data.by_label(data.histories, finished=False)
    if not histories:
        return [Text("No epoch has finished yet.")]
    return [_picture("learning_curves", figs.learning_curves(histories, data.colours),
                     "Loss and accuracy per epoch: mean over seeds, band from the lowest to the highest seed.")]


def _iteration_curves(data: StudyData, options: dict) -> list:
    curves = data.by_label({run_id: data.store.curves(run_id) for run_id in data.histories}, finished=False)
    if not curves:
        return [Text("No run recorded per-iteration curves: set probes.curve_every: N to record the mean "
                     "training loss and accuracy of every N steps.")]
    return [_picture("iteration_curves", figs.iteration_curves(curves, data.colours),
                     "Training loss and accuracy per group of probes.curve_every steps (training mode, "
                     "without the L1/L2 terms), at the group's last step: mean over seeds, band from the "
                     "lowest to the highest seed.")]


def _gradient_distributions(data: StudyData, options: dict) -> list:
    hists = data.by_label(data.histograms)
    if not hists:
        return [Text("No probe histograms were recorded (probes.histograms is off).")]
    layer = options.get("layer")
    return [_picture("gradient_distributions", figs.gradient_distributions(hists, data.colours, layer=layer),
                     f"Weight-gradient distribution of {layer or 'the first layer'} at the last probed step, "
                     "seeds merged.")]


def _layer_means(data: StudyData, options: dict) -> list:
    probes = data.by_label(data.probes)
    if not probes:
        return [Text("No probes were recorded.")]
    stat = options.get("stat", "abs_mean")
    return [
        _picture("layer_grad_means", figs.layer_means(probes, data.colours, "grad", stat),
                 f"Weight gradients' {stat} per layer, input to output, averaged over probed steps and seeds."),
        _picture("layer_weight_means", figs.layer_means(probes, data.colours, "weight", stat),
                 f"Weights' {stat} per layer, input to output, averaged over probed steps and seeds."),
    ]


def _gradient_norms(data: StudyData, options: dict) -> list:
    probes = data.by_label(data.probes)
    if not probes:
        return [Text("No probes were recorded.")]
    layer = options.get("layer") or _first_layer(probes)
    return [_picture("gradient_norms", figs.stat_over_time(probes, data.colours, layer, "grad", "norm"),
                     f"Gradient norm of {layer}'s weights over training, mean over seeds.")]


def _total_gradient_norm(data: StudyData, options: dict) -> list:
    probes = data.by_label(data.probes)
    if not probes:
        return [Text("No probes were recorded: the total gradient norm needs probes.enabled: true.")]
    steps = {label: data.steps_per_epoch[_first_run(data, label)] for label in probes}
    return [_picture("total_gradient_norm", figs.total_gradient_norm(probes, data.colours, steps),
                     "L2 norm of all parameters' gradients together (what clip_grad measures, before clipping) "
                     "at each probed step, averaged over each epoch's probed steps: mean over seeds, band from "
                     "the lowest to the highest seed.")]


def _activation_derivatives(data: StudyData, options: dict) -> list:
    probes = _with_quantity(data.by_label(data.probes), "derivative")
    if not probes:
        return [Text("No activation derivatives were recorded: train with probes.derivatives: true.")]
    layers = list(dict.fromkeys(layer for frames in probes.values() for f in frames
                                for layer in f.loc[f["quantity"] == "derivative", "layer"]))
    if options.get("layer") is not None:
        if options["layer"] not in layers:
            raise unknown("activation layer of report section activation_derivatives:", options["layer"], layers)
        layers = [options["layer"]]
    blocks: list = [Table(_derivative_table(probes, layers),
                          "f'(z) of each activation layer at each run's last probed step: mean over seeds of its "
                          "mean, minimum, maximum and the fraction of inputs where its absolute value is under 0.01 "
                          "(the unit passes back less than 1% of its gradient).")]
    hists = _with_quantity(data.by_label(data.histograms), "derivative")
    if not hists:
        return [*blocks, Text("No derivative histograms were recorded (probes.histograms is off).")]
    return [*blocks, _picture("activation_derivatives", figs.derivative_histograms(hists, data.colours, layers),
                              "Distribution of f'(z) per activation layer (rows) and variant (columns) at the "
                              "last probed step, seeds merged: fraction of inputs per bin.")]


def _output_gradients(data: StudyData, options: dict) -> list:
    probes = _with_quantity(data.by_label(data.probes), "output_grad")
    if not probes:
        return [Text("No gradients with respect to layer outputs were recorded: train with "
                     "probes.output_grads: true.")]
    stat = options.get("stat", "abs_mean")
    if stat not in TENSOR_STATS:
        raise unknown("stat of report section output_gradients:", stat, TENSOR_STATS)
    return [_picture("output_gradients",
                     figs.layer_means(probes, data.colours, "output_grad", stat),
                     f"Gradient of the loss with respect to each layer's output (dL/dh): its {stat} per layer, "
                     "input to output, averaged over probed steps and seeds.")]


def _histograms_over_time(data: StudyData, options: dict) -> list:
    hists = data.by_label(data.histograms)
    if not hists:
        return [Text("No probe histograms were recorded (probes.histograms is off).")]
    layer = options.get("layer") or _first_layer(hists)
    quantity = options.get("quantity", "grad")
    fig = figs.histograms_over_time({label: frames[0] for label, frames in hists.items()}, layer, quantity)
    return [_picture("histograms_over_time", fig, f"Each variant's first seed: the distribution of {layer}'s "
                                                  f"{quantity} at each probed step, one panel per variant.")]


BUSY = 0.25  # a machine whose other processes took this share of its CPU during a run was busy


def _runtime(data: StudyData, options: dict) -> list:
    done = data.runs[data.runs["status"] == "done"]
    timed = [(label, data.histories.get(run_id)) for label, run_id in zip(done["label"], done["run_id"])]
    timed = [(label, h) for label, h in timed if h is not None and "epoch_time" in h and h["epoch_time"].notna().any()]
    if not timed:
        return [Text("No run has finished yet.")]
    runs = pd.DataFrame([{"label": label, "epoch_time": h["epoch_time"].median(),
                          "together": h.get("runs_together", pd.Series(dtype=float)).max(),
                          "elsewhere": h.get("cpu_elsewhere", pd.Series(dtype=float)).mean()} for label, h in timed])
    caption = ("Each run's median epoch time (an epoch slowed by a passing load does not count), the mean over "
               "its variant's seeds, and under each bar the FLOPs of training on one image, in millions (forward and "
               "backward, counted by PyTorch).")
    return [_picture("runtime", figs.runtime(runs, data.colours, _flops_per_sample(data)), caption),
            *_runtime_notes(runs)]


def _flops_per_sample(data: StudyData) -> dict[str, float]:
    """Training FLOPs per image of each variant's network (its first run's), as PyTorch counts them."""
    from trainlab.config import load_config
    from trainlab.train.ensemble import training_flops

    out = {}
    for label, group in data.runs.groupby("label", sort=False):
        run_id = group["run_id"].iloc[0]
        cfg = load_config(data.configs[run_id])
        shape, classes, _ = data.inputs[run_id]
        out[label] = training_flops(cfg, shape, classes) / cfg.train.batch_size
    return out


def _runtime_notes(runs: pd.DataFrame) -> list:
    """What the epoch times must be read with: runs that trained as one ensemble share its time, and runs
    that trained while other processes kept the machine busy were slowed by them."""
    notes = []
    shared = runs[runs["together"] > 1]
    if len(shared):
        sizes = ", ".join(f"{label} ({int(n)})" for label, n in shared.groupby("label", sort=False)["together"].max().items())
        notes.append(Text(f"Runs of these variants trained in vectorised ensembles, with the largest ensemble's "
                          f"number of runs (of any variants) in brackets: {sizes}. Each run's epoch time is its "
                          "equal share of its ensemble's, so it compares with a run trained alone only roughly."))
    busy = runs[runs["elsewhere"] > BUSY].groupby("label", sort=False)["elsewhere"].mean()
    if len(busy):
        shares = ", ".join(f"{label} ({share:.0%})" for label, share in busy.items())
        notes.append(Text(f"Other processes kept the machine busy while runs of these variants trained (their mean "
                          f"share of its CPU, other workers of this study included): {shares}. Their times are "
                          "slower than on a machine of their own; compare variants timed under the same load."))
    return notes


def _model_summary(data: StudyData, options: dict) -> list:
    from trainlab.config import load_config
    from trainlab.models import create_model, summary

    shapes = data.inputs
    rows, first, notes = [], {}, []
    for label, group in data.runs.groupby("label", sort=False):
        run_id = group["run_id"].iloc[0]
        cfg = load_config(data.configs[run_id])
        shape, classes, _ = shapes[run_id]
        table = summary(create_model(cfg.model, shape, classes), shape)
        first.setdefault("table", table)
        notes += [Text(f"{label}: {note}.") for note in table.notes]
        rows.append({"variant": label, "model": cfg.model.display_name, "layers": len(table.frame),
                     "parameters": table.total, "trainable": table.trainable,
                     "in conv layers": table.trainable_of("Conv2d"), "in dense layers": table.trainable_of("Linear"),
                     "units conv / dense": f"{table.units_of('Conv2d'):,} / {table.units_of('Linear'):,}",
                     "outline": table.outline})
    blocks: list = [Table(pd.DataFrame(rows), "Parameters per variant (trainable ones in conv and in dense layers), "
                          "units (neurons: the sizes of the conv and dense layers' outputs), and each variant's "
                          "layers in forward order: convKxK(C) is a K x K convolution to C channels, fcN a dense "
                          "layer of N units.", text=("model", "outline"))]
    if options.get("layers", len({r["parameters"] for r in rows}) == 1):
        frame = first["table"].frame.copy()
        blocks.append(Table(frame, f"Layer table of {rows[0]['variant']}."))
    return blocks + notes


def _analyses(data: StudyData, options: dict) -> list:
    from trainlab.analysis.catalog import ANALYSES, AnalysisOptions, analyze, requested_analyses

    chosen = _analysed_runs(data, options.get("runs", "best"))
    if not chosen:
        return [Text("No finished run to analyse.")]
    what = options.get("what")
    settings = AnalysisOptions.of(options)
    runs = ", ".join(f"{run_id} ({label})" for label, run_id in chosen)
    blocks: list = [Text(f"Analysed: the first seed of {'each variant' if len(chosen) > 1 else 'the best variant'}, "
                         f"run {runs}.")]
    figures: dict[str, list[tuple[str, bytes, str]]] = {}  # figure name -> per variant: label, PNG, caption
    for label, run_id in chosen:
        written = analyze(run_id, what, store=data.store, options=settings, skip_inapplicable=True)
        skipped = sorted({a.name for a in requested_analyses(what)} - set(written["analysis"]))
        if skipped:
            blocks.append(Text(f"Not applicable to {label}: {', '.join(skipped)}."))
        for _, row in written[written["kind"] == "figure"].iterrows():
            caption = ANALYSES[row["analysis"]].caption(row["name"], settings)
            figures.setdefault(row["name"], []).append((label, Path(row["path"]).read_bytes(), caption))
    for name, drawn in figures.items():  # the same analysis of every variant side by side
        if len(drawn) == 1:
            label, png, caption = drawn[0]
            blocks.append(Picture(f"{name}_{label}", png, f"{label}: {caption}"))
        else:
            blocks.append(Gallery([Picture(f"{name}_{label}", png, label) for label, png, _ in drawn], drawn[0][2]))
    return blocks


BUILDERS: dict[str, Callable[[StudyData, dict], list]] = {  # the sections, titles and options: study.report_sections
    "question": _question,
    "variants": _variants,
    "claims": _claims,
    "findings": _findings,
    "final_metrics": _final_metrics,
    "learning_curves": _learning_curves,
    "iteration_curves": _iteration_curves,
    "gradient_distributions": _gradient_distributions,
    "layer_means": _layer_means,
    "gradient_norms": _gradient_norms,
    "total_gradient_norm": _total_gradient_norm,
    "activation_derivatives": _activation_derivatives,
    "output_gradients": _output_gradients,
    "histograms_over_time": _histograms_over_time,
    "runtime": _runtime,
    "model_summary": _model_summary,
    "analyses": _analyses,
}


# ----------------------------------------------------------------------------- building
def report_document(data: StudyData) -> Document:
    """The report of ``data`` as a :class:`Document` (nothing written)."""
    data.colours = figs.palette(data.labels)
    doc = Document(f"Study report: {data.title}", subtitle=_subtitle(data))
    for name, options in data.options.items():
        doc.sections.append(Section(slug(name), SECTIONS[name].title, BUILDERS[name](data, options)))
    return doc


def build_report(
    studies: str | Path | dict | StudyResult | list,
    store: str | Path | RunStore = DEFAULT_STORE,
    out: str | Path | None = None,
    scale: str | None = None,
    overrides: list[str] | dict | None = None,
) -> ReportFiles:
    """Write the report of one study, or the side-by-side comparison of several, into ``out``.

    A study is a name, a YAML path, a dict, or the :class:`StudyResult` that :func:`run_study` returned
    (its runs and verdicts are then not read again, and ``scale`` only names it in the title).
    ``out`` defaults to ``<store>/reports/<name>``. The folder is replaced as a whole
    (:func:`_replace_folder`), so a failure or a kill leaves the previous report intact.
    """
    if out is not None:
        out = _report_folder(Path(out))
    store = store if isinstance(store, RunStore) else RunStore(store)
    studies = studies if isinstance(studies, list) else [studies]
    data = [collect(s, scale, overrides, store) for s in studies]
    merged = data[0] if len(data) == 1 else _merge(data)
    doc = report_document(merged)
    out = out or store.root / "reports" / slug(merged.title)
    _replace_folder(out, lambda folder: _write(doc, folder))
    return ReportFiles(out / "report.html", out / "report.md", out / "figures")


REPORT_FILES = ("report.html", "report.md", "figures")  # what a report folder holds


def _report_folder(out: Path) -> Path:
    """``out`` as an absolute path, if it is new, empty or an earlier report (which the new one replaces).

    Anything else would be deleted with the folder, so a user's own folder or file is refused.
    """
    out = out.resolve()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for the report (a new one, or an earlier report)")
    others = sorted(p.name for p in out.iterdir() if p.name not in REPORT_FILES) if out.is_dir() else []
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise UserError(f"--out {out} holds files that are not a trainlab report ({shown}), which writing the "
                        "report there would delete; give a new or empty folder, or an earlier report's")
    return out


def _write(doc: Document, folder: Path) -> None:
    (folder / "report.html").write_text(render_html(doc), encoding="utf-8")
    fault_point("report.write")
    (folder / "report.md").write_text(render_markdown(doc, folder / "figures", "figures"), encoding="utf-8")


def _replace_folder(out: Path, write: Callable[[Path], None]) -> None:
    """Replace the folder ``out`` by a new one that ``write`` fills, surviving a kill at any instant.

    ``write`` fills a temporary folder ``.NAME.tmp-*``; then ``out`` moves to ``.NAME.old``, the new
    folder to ``out``, and the old one is deleted. A kill between the two renames leaves the old
    folder as ``.NAME.old``: the next call puts it back first, and deletes what killed calls left.
    Calls take turns (a lock on the parent folder), so none deletes another's work in progress.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    old = out.with_name(f".{out.name}.old")
    with FileLock.take(out.parent):
        if old.exists() and not out.exists():
            os.replace(old, out)
        for leftover in out.parent.iterdir():
            if leftover == old or leftover.name.startswith(f".{out.name}.tmp-"):
                shutil.rmtree(leftover)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            write(tmp)
            if out.exists():
                os.replace(out, old)
            fault_point("report.swap")
            os.replace(tmp, out)
        except BaseException:
            if old.exists() and not out.exists():
                os.replace(old, out)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fault_point("report.clean")
        shutil.rmtree(old, ignore_errors=True)  # what is left, the next call deletes


def _merge(data: list[StudyData]) -> StudyData:
    """Several studies as one, variants prefixed ``<study>: <variant>``; sections of the first study."""
    runs = []
    for d in data:
        frame = d.runs.copy()
        frame["label"] = d.title + ": " + frame["label"].astype(str)
        runs.append(frame)
    union = lambda attr: {k: v for d in data for k, v in getattr(d, attr).items()}  # noqa: E731
    question = " | ".join(f"{d.title}: {d.question}" for d in data if d.question)
    return StudyData(" vs ".join(d.title for d in data), question, pd.concat(runs, ignore_index=True),
                     union("histories"), union("probes"), union("histograms"), union("configs"),
                     [*dict.fromkeys(k for d in data for k in d.varied)], data[0].store, data[0].options)


# ----------------------------------------------------------------------------- helpers
def _picture(id: str, fig: Figure, caption: str) -> Picture:
    return Picture.of(id, fig, caption)


def _subtitle(data: StudyData) -> str:
    done = int((data.runs["status"] == "done").sum())
    return f"{done} of {len(data.runs)} runs finished · {len(data.labels)} variants · store {data.store.root.name}"


def _first_run(data: StudyData, label: str) -> str:
    return str(data.runs.loc[data.runs["label"] == label, "run_id"].iloc[0])


def _with_quantity(frames_by_label: dict[str, list[pd.DataFrame]], quantity: str) -> dict[str, list[pd.DataFrame]]:
    """Each variant's frames that have rows of ``quantity``; variants without any are left out."""
    out = {label: [f for f in frames if (f["quantity"] == quantity).any()] for label, frames in frames_by_label.items()}
    return {label: frames for label, frames in out.items() if frames}


DERIVATIVE_COLUMNS = {"mean": "mean f'(z)", "min": "min", "max": "max", "vanishing_frac": "fraction under 0.01"}


def _derivative_table(probes: dict[str, list[pd.DataFrame]], layers: list[str]) -> pd.DataFrame:
    """Per variant and layer, the mean over seeds of f'(z)'s statistics at each run's last probed step."""
    rows = []
    for label, frames in probes.items():
        last = []
        for frame in frames:
            rows_of = frame[frame["quantity"] == "derivative"]
            last.append(rows_of[rows_of["step"] == rows_of["step"].max()])
        means = pd.concat(last).groupby(["layer", "stat"])["value"].mean()
        for layer in layers:
            if layer in means.index.get_level_values("layer"):
                stats = means[layer]
                rows.append({"variant": label, "layer": layer,
                             **{name: f"{stats[s]:.3g}" for s, name in DERIVATIVE_COLUMNS.items()}})
    return pd.DataFrame(rows)


def _first_layer(frames_by_label: dict[str, list[pd.DataFrame]]) -> str:
    frame = next(iter(frames_by_label.values()))[0]
    return str(frame.loc[frame["quantity"] == "grad", "layer"].iloc[0])


def _analysed_runs(data: StudyData, which: str) -> list[tuple[str, str]]:
    """``(label, run_id)`` of the first finished seed of the best variant, or of every variant."""
    done = data.runs[data.runs["status"] == "done"]
    if done.empty:
        return []
    if which == "all":
        return [(label, group["run_id"].iloc[0]) for label, group in done.groupby("label", sort=False)]
    if which != "best":
        raise UserError(f"report section analyses: runs must be 'best' or 'all', got {which!r}")
    metric = "test_acc" if "test_acc" in done.columns else "train_acc"
    means = done.groupby("label", sort=False)[metric].mean()
    best = means.idxmax() if higher_is_better(metric) else means.idxmin()
    return [(best, done.loc[done["label"] == best, "run_id"].iloc[0])]
