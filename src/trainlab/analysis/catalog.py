"""Every analysis of a stored run, declared once, and :func:`analyze`, which runs them.

An :class:`Analysis` names its writer, the runs it applies to (and why not the others), the
options it reads and the captions of the figures it writes; :class:`AnalysisOptions` holds each
option's default and help. ``analyze()``, the flags of ``trainlab analyze`` and the report's
``analyses`` section derive from them. A writer puts a PNG and its data into
``<run folder>/analysis/``, and the store records both as artifacts of the run.

torch and matplotlib are imported only where an analysis runs, so the CLI reads this cheaply.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from trainlab.errors import UserError, unknown
from trainlab.store import DEFAULT_STORE, RunStore

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure
    from torch import nn

    from trainlab.config import RunConfig
    from trainlab.data import ImageData

ANALYSIS_DIR = "analysis"
NEURON_CHANNELS = 8  # channels shown when none are chosen: those with the highest mean top-k activation


EQUIVARIANCE_OF = ("run", "shared_conv")  # the run's network, or report 002's fresh shared conv


def _number(text: str) -> int | float:
    """``"3"`` as 3, ``"0.5"`` as 0.5; ValueError for anything else."""
    value = float(text)
    return int(value) if value.is_integer() else value


def _list_of(kind: Callable[[str], Any], what: str, example: str) -> Callable[[str, str], list | None]:
    """A parser of comma-separated ``what``: ``""`` as None; ``name`` is the option as the user wrote it."""

    def parse(text: str, name: str) -> list | None:
        if not text:
            return None
        try:
            return [kind(c.strip()) for c in text.split(",")]
        except ValueError:
            raise UserError(f"{name} {text!r}: expected comma-separated {what}, e.g. {example}") from None

    return parse


def _one_number(text: str, name: str) -> float | None:
    """``"50"`` as 50.0, ``""`` as None."""
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise UserError(f"{name} {text!r}: expected a number, e.g. 30") from None


_channel_list = _list_of(int, "channel numbers", "3,17")


def _option(default: Any, help: str, metavar: str, parse: Callable[[str, str], Any] | None = None) -> Any:
    """A field of :class:`AnalysisOptions`: default, help and CLI metavar; ``parse`` reads it from text."""
    return field(default=default, metadata={"help": help, "metavar": metavar, "parse": parse})


@dataclass
class AnalysisOptions:
    """Choices shared by the analyses; every field has a default that suits a report."""

    layer: str | None = _option(None, "the layer to look into (default: neurons the activation after the "
                                "last conv, equivariance every conv)", "NAME")
    channels: list[int] | None = _option(None, "channels to show (default: the most active)", "I,J",
                                         _channel_list)
    rows: str = _option("channel", "a row per channel, or per class (the channel most selective for the "
                        "class, on the class's own images)", "channel|class")
    top_k: int = _option(9, "images per channel (per neuron of a several-neuron target)", "K")
    images: int = _option(8, "test images used", "N")
    target: str | None = _option(None, "a class index, a neuron, or several neurons, each on its own top-k "
                                 "images (default: the true class)", "CLASS|LAYER:C|LAYER:C,D|LAYER:topN")
    projection: str = _option("tsne", "tsne or pca", "P")
    perplexity: float | None = _option(None, "t-SNE perplexity, below the number of points (default: 30, "
                                       "or (points - 1) / 3 when fewer than 91)", "P", _one_number)
    tsne_iterations: int = _option(1000, "t-SNE iterations (scikit-learn's max_iter, at least 250)", "N")
    shifts: list[int] | None = _option(None, "shifts in pixels, each down and right (default: width // 8, "
                                       "at least 1, raised to a multiple of the smallest layer stride)", "S,S",
                                       _list_of(int, "whole pixel counts", "2,4,8"))
    rotations: list[float] | None = _option(None, "rotations in quarter turns counter-clockwise, 0.5 is 45 "
                                            "degrees (default: 1)", "Q,Q",
                                            _list_of(_number, "quarter turns", "1,0.5"))
    equivariance_of: str = _option("run", "run: the run's network; shared_conv: report 002's probe, one "
                                   "fresh 3x3 conv applied twice", "run|shared_conv")
    seed: int = _option(0, "seed of the sample of test images, of the projection and of the shared conv", "S")

    @classmethod
    def of(cls, values: Mapping[str, Any], flags: bool = False) -> AnalysisOptions:
        """The options among ``values`` (other keys and None are left out); text is parsed where needed.

        ``flags``: errors name an option as its CLI flag (``--channels``).
        """
        chosen = {}
        for option in fields(cls):
            value = values.get(option.name)
            parse = option.metadata["parse"]
            if parse is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
                value = str(value)  # a study's `shifts: 4` reads as "4"
            if parse is not None and isinstance(value, str):
                value = parse(value, flag(option.name) if flags else option.name)
            if value is not None:
                chosen[option.name] = value
        return cls(**chosen)

    def check(self) -> None:
        """UserError for an unknown choice, a count below 1, a shift or rotation that is not a non-zero
        number, or t-SNE settings scikit-learn refuses (layers and targets are checked against the model)."""
        from trainlab.analysis.embeddings import PROJECTIONS, check_tsne
        from trainlab.analysis.neurons import NEURON_ROWS

        for name, choices in (("projection", PROJECTIONS), ("rows", NEURON_ROWS),
                              ("equivariance_of", EQUIVARIANCE_OF)):
            if getattr(self, name) not in choices:
                raise unknown(name, getattr(self, name), choices)
        for name in ("top_k", "images"):
            if not _whole(getattr(self, name), least=1):
                raise UserError(f"{name} must be a whole number of at least 1, got {getattr(self, name)!r}")
        check_tsne(self.perplexity, self.tsne_iterations)
        _check_list("channels", self.channels, lambda c: _whole(c, least=0), "channel numbers, e.g. [3, 17]")
        _check_list("shifts", self.shifts, lambda s: _whole(s, least=1), "whole pixel counts of at least 1, "
                    "e.g. [2, 4, 8]")
        _check_list("rotations", self.rotations, _nonzero, "non-zero quarter turns, e.g. [1, 0.5]")


def _whole(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _nonzero(value: Any) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and math.isfinite(value) and value != 0


def _check_list(name: str, values: list | None, valid: Callable[[Any], bool], expected: str) -> None:
    """UserError unless ``values`` is None or a non-empty list of valid values."""
    if values is not None and not (isinstance(values, list) and values and all(valid(v) for v in values)):
        raise UserError(f"{name} must be a list of {expected}; got {values!r}")


OPTION_NAMES = [option.name for option in fields(AnalysisOptions)]


def flag(name: str) -> str:
    """The CLI flag of an option: ``top_k`` is ``--top-k``."""
    return "--" + name.replace("_", "-")


def described_options() -> Iterator[tuple[str, type, str, str]]:
    """Per option: its name, type (int or str), metavar and help naming the analyses that read it."""
    for option in fields(AnalysisOptions):
        users = ", ".join(a.name for a in ANALYSES.values() if option.name in a.options)
        default = "" if option.default is None else f" (default: {option.default})"
        kind = int if isinstance(option.default, int) else str
        yield option.name, kind, option.metadata["metavar"], f"{users}: {option.metadata['help']}{default}"


@dataclass
class Context:
    """What every analysis gets: the run, its trained model, its data and where to write."""

    run_id: str
    config: RunConfig
    model: nn.Module
    data: ImageData
    run_dir: Path
    out: Path
    options: AnalysisOptions
    written: list[tuple[str, Path, str]] = field(default_factory=list)

    def save_figure(self, name: str, fig: Figure) -> None:
        path = self.out / f"{name}.png"
        fig.savefig(path, dpi=110)
        self.written.append((name, path, "figure"))

    @property
    def class_labels(self) -> list[str]:
        """The class names as figures draw them: as written, ``$`` escaped so matplotlib reads no math."""
        return [str(name).replace("$", r"\$") for name in self.data.classes]

    def save_table(self, name: str, frame: pd.DataFrame) -> None:
        path = self.out / f"{name}.csv"
        frame.to_csv(path, index=False)
        self.written.append((f"{name}.csv", path, "table"))

    def save_arrays(self, name: str, **arrays: np.ndarray) -> None:
        path = self.out / f"{name}.npz"
        np.savez_compressed(path, **arrays)
        self.written.append((f"{name}.npz", path, "data"))

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``options.images`` images of a fixed sample of the test split, and their labels."""
        from trainlab.probes.embeddings import sample_indices

        split = self.data.test
        idx = sample_indices(len(split), self.options.images, self.options.seed)
        return split.take(idx)

    def sample_inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`sample`'s images, labels, and the images as the model sees them (normalised floats)."""
        from trainlab.data import to_float

        x, y = self.sample()
        return x, y, to_float(x, self.data.mean, self.data.std)


@dataclass(frozen=True)
class Condition:
    """The runs an analysis applies to: those where ``holds(ctx)``; ``unmet`` says why not the others."""

    holds: Callable[[Context], bool]
    unmet: str


def _has_conv(ctx: Context) -> bool:
    from torch import nn

    return any(isinstance(m, nn.Conv2d) for m in ctx.model.modules())


def _plain_conv_chain(ctx: Context) -> bool:
    """Whether receptive fields can be computed: a Sequential chain of conv/pool/elementwise layers."""
    from trainlab.analysis.neurons import receptive_fields

    if not _has_conv(ctx):
        return False
    try:
        receptive_fields(ctx.model, ctx.data.input_shape)
    except UserError:
        return False
    return True


EVERY_RUN = Condition(lambda ctx: True, "")
HAS_CONV = Condition(_has_conv, "its model has no convolution layer")
PLAIN_CONV_CHAIN = Condition(_plain_conv_chain,
                             "receptive fields need a plain chain of conv, pool and elementwise layers")
SAVED_EMBEDDINGS = Condition(lambda ctx: bool(ctx.config.probes.embeddings_at),
                             "it saved no embeddings (train with probes.embeddings_at)")


@dataclass(frozen=True)
class Analysis:
    """One analysis: ``write(ctx)`` saves its files through ``ctx``.

    ``options``: the :class:`AnalysisOptions` fields it reads. ``captions``: the report's caption of
    each figure it writes, where ``{target}`` names the attribution target, ``{neurons}`` what the
    neurons grid's rows show and ``{network}`` the network measured for equivariance. A figure
    ``NAME_SUFFIX`` not in ``captions`` (one of several amounts) has NAME's caption, suffix added.
    """

    name: str
    write: Callable[[Context], None]
    captions: Mapping[str, str]
    options: tuple[str, ...] = ()
    applies: Condition = EVERY_RUN

    def caption(self, figure: str, options: AnalysisOptions) -> str:
        """The report's caption of one of its figures."""
        base, _, suffix = figure.rpartition("_")
        one_of_several = figure not in self.captions and base in self.captions
        key, suffix = (base, f" ({suffix})") if one_of_several else (figure, "")
        phrases = {
            "target": f"target {options.target}" if options.target else "the true class",
            "neurons": ("each class's most class-selective channel, on test images of that class only"
                        if options.rows == "class" else "the most active channels"),
            "network": ("one fresh 3x3 conv applied twice (shared weights): "
                        if options.equivariance_of == "shared_conv" else ""),
        }
        return self.captions.get(key, figure).format(**phrases) + suffix


def _filters(ctx: Context) -> None:
    from trainlab.analysis.filters import first_conv, plot_filters

    name, conv = first_conv(ctx.model)
    weight = conv.weight.detach().cpu()
    ctx.save_figure("filters", plot_filters(weight, title=f"{name} filters ({weight.shape[0]})"))
    ctx.save_arrays("filters", weight=weight.numpy())


def _neurons(ctx: Context) -> None:
    from trainlab.analysis.neurons import (
        class_rows, interesting_channels, last_conv_activation, plot_neurons, top_activations,
        top_activations_per_class,
    )

    layer = ctx.options.layer or last_conv_activation(ctx.model)
    images, options = ctx.data.test.x, ctx.options
    if options.rows == "class":
        table = class_rows(top_activations_per_class(ctx.model, layer, images, ctx.data.test.y, ctx.data.mean,
                                                     ctx.data.std, options.channels, k=options.top_k))
        ctx.save_figure("neurons", plot_neurons(images, table, rows="class", classes=ctx.class_labels))
        ctx.save_table("neurons", table)
        return
    table = top_activations(ctx.model, layer, images, ctx.data.mean, ctx.data.std, options.channels,
                            k=options.top_k)
    channels = options.channels or interesting_channels(table, n=NEURON_CHANNELS)
    table = table[table["channel"].isin(channels)].reset_index(drop=True)
    ctx.save_figure("neurons", plot_neurons(images, table, channels))
    ctx.save_table("neurons", table)


def _attribution(ctx: Context, method: str) -> None:
    from trainlab.analysis import attribution

    target = _target(ctx)
    if isinstance(target, NeuronSet):
        _neuron_attribution(ctx, method, target)
        return
    x, y, inputs = ctx.sample_inputs()
    values = getattr(attribution, method)(ctx.model, inputs, y if target is None else target)
    what = (f"neuron {ctx.options.target}" if isinstance(target, tuple)
            else f"class {ctx.options.target}" if ctx.options.target else "true class")
    names = ctx.class_labels
    titles = [names[int(c)] for c in y]
    fig = attribution.plot_attributions(x, values.detach().cpu(), titles=titles)
    figure, title = _attribution_names(ctx, method)
    fig.suptitle(f"{title} for the {what}")
    ctx.save_figure(figure, fig)
    ctx.save_arrays(method, attributions=values.detach().cpu().numpy(), labels=y.cpu().numpy())


def _neuron_attribution(ctx: Context, method: str, neurons: NeuronSet) -> None:
    """Several neurons, each on the ``top_k`` test images that excite it most (at its strongest position),
    differentiated there: one row per neuron of (image, attribution) pairs."""
    import torch

    from trainlab.analysis import attribution
    from trainlab.analysis.neurons import peak_activations
    from trainlab.data import to_float

    split, layer = ctx.data.test, neurons.layer
    peaks = peak_activations(ctx.model, layer, split.x, ctx.data.mean, ctx.data.std)
    k = min(ctx.options.top_k, len(split))
    best_values, best_images = peaks.topk(k, dim=0)  # k x channels
    channels = neurons.channels or _most_active_channels(best_values, neurons.top)
    images = best_images[:, channels].T.flatten()  # each neuron's k images, strongest first
    per_image = torch.tensor(channels).repeat_interleave(k)
    x, y = split.x[images], split.y[images]
    values = getattr(attribution, method)(ctx.model, to_float(x, ctx.data.mean, ctx.data.std),
                                          (layer, per_image, "max")).detach().cpu()
    names = ctx.class_labels
    figure, what = _attribution_names(ctx, method)
    title = f"{what} of {len(channels)} neurons of {layer}, each on its top-{k} test images"
    fig = attribution.plot_attributions(x, values, titles=[names[int(c)] for c in y], title=title, per_row=k,
                                        row_titles=[f"{layer} ch {c}" for c in channels])
    ctx.save_figure(figure, fig)
    ctx.save_arrays(method, attributions=values.numpy(), labels=y.cpu().numpy(), images=images.numpy(),
                    channels=per_image.numpy())


def _attribution_names(ctx: Context, method: str) -> tuple[str, str]:
    """The figure name and title of an attribution: guided backprop of a net without ReLUs is the
    plain gradient, and named so."""
    from trainlab.analysis.attribution import guides

    if method == "guided_backprop" and not guides(ctx.model):
        return "guided_backprop_plain", "input gradient (no ReLU to guide)"
    return method, method.replace("_", " ")


def _most_active_channels(best_values: torch.Tensor, n: int) -> list[int]:
    """The ``n`` channels whose top-k peak activations (``best_values``: k x channels) have the highest
    mean, as :func:`~trainlab.analysis.neurons.interesting_channels` ranks them (ties: lower channel)."""
    import torch

    order = torch.sort(best_values.mean(dim=0), descending=True, stable=True).indices
    return [int(c) for c in order[:n]]


def _equivariance(ctx: Context) -> None:
    from trainlab.analysis.equivariance import plot_equivariance

    _, _, inputs = ctx.sample_inputs()
    frames = []
    for name, result in _equivariance_results(ctx, inputs):
        fig = plot_equivariance(result)
        if ctx.options.equivariance_of == "shared_conv":
            fig.suptitle(f"{fig.get_suptitle()}: one fresh 3x3 conv applied twice (shared weights)")
        ctx.save_figure(name, fig)
        frames.append(result.frame)
    ctx.save_table("equivariance", pd.concat(frames, ignore_index=True))


def _equivariance_results(ctx: Context, inputs: torch.Tensor) -> list[tuple[str, Any]]:
    """``(figure name, EquivarianceResult)`` per chosen shift and rotation; UserError when one compares
    no layer (a chosen layer whose stride does not divide a shift, say)."""
    from trainlab.analysis.equivariance import SHARED_CONV_LAYERS, default_shift, equivariance, shared_conv

    options = ctx.options
    if options.equivariance_of == "shared_conv":  # unpadded, stride 1: its maps are only trimmed
        model, layers, stride = shared_conv(inputs.shape[1], options.seed), list(SHARED_CONV_LAYERS), 1
    else:
        model, layers, stride = ctx.model, [options.layer] if options.layer else None, None
    results = []
    shifts = options.shifts or [default_shift(model, inputs, layers)]
    for transform, amounts, unit in (("shift", shifts, "px"),
                                     ("rotate", options.rotations or [1], "deg")):
        for amount in amounts:
            result = equivariance(model, inputs, transform=transform, amount=amount, layers=layers,
                                  stride=stride)
            if result.frame.empty:
                reasons = "; ".join(f"{layer}: {why}" for layer, why in result.skipped.items())
                raise UserError(f"equivariance compares no layer for a {transform} by {amount:g}: {reasons}")
            shown = amount if unit == "px" else 90 * amount
            results.append((f"equivariance_{transform}" + ("" if len(amounts) == 1 else f"_{shown:g}{unit}"),
                            result))
    return results


def equivariance_errors(store: RunStore, run_id: str) -> dict[str, float]:
    """The trained model's relative equivariance error at its first convolution, on the analyses'
    fixed test sample: ``shift`` (by 1/8 of the image width) and ``rotate`` (90 degrees); NaN
    without a convolution. What claims on ``shift_error`` and ``rotation_error`` test."""
    import torch

    from trainlab.analysis.equivariance import equivariance

    ctx = _context(store, run_id, AnalysisOptions())
    first = next((name for name, module in ctx.model.named_modules() if isinstance(module, torch.nn.Conv2d)), None)
    if first is None:
        return {"shift": math.nan, "rotate": math.nan}
    _, _, inputs = ctx.sample_inputs()
    out = {}
    for transform, amount in (("shift", max(1, inputs.shape[-1] // 8)), ("rotate", 1)):
        frame = equivariance(ctx.model, inputs, transform=transform, amount=amount, layers=[first]).frame
        out[transform] = float(frame["relative_error"].iloc[0]) if len(frame) else math.nan
    return out


def _confusion(ctx: Context) -> None:
    from trainlab.analysis.confusion import confusion_matrix, per_class_accuracy, plot_confusion, predict

    split = ctx.data.test
    predicted = predict(ctx.model, split.x, ctx.data.mean, ctx.data.std)
    matrix = confusion_matrix(split.y.cpu(), predicted.cpu(), ctx.data.num_classes)
    title = f"Confusion matrix, run {ctx.run_id}"
    ctx.save_figure("confusion", plot_confusion(matrix, ctx.class_labels, title=title))
    ctx.save_table("confusion", pd.DataFrame(matrix.numpy(), index=ctx.data.classes,
                                             columns=ctx.data.classes).reset_index(names="true"))
    ctx.save_table("per_class_accuracy", per_class_accuracy(matrix, ctx.data.classes))


def _embeddings(ctx: Context) -> None:
    from trainlab.analysis.embeddings import PROJECTION_NAMES, load_embeddings, plot_embeddings, project

    saved = load_embeddings(ctx.run_dir)
    if not saved:
        raise UserError(f"run {ctx.run_id} saved no embeddings; train it with probes.embeddings_at "
                        "(for example --set 'probes.embeddings_at=[0,5,10]')")
    options = ctx.options
    method = options.projection
    projections = {epoch: project(e["features"], method, options.seed, options.perplexity,
                                  options.tsne_iterations) for epoch, e in saved.items()}
    labels = next(iter(saved.values()))["labels"]
    layer = ctx.config.probes.embedding_layer or "the penultimate layer"
    points, dims = np.shape(next(iter(saved.values()))["features"])
    title = f"{PROJECTION_NAMES[method]} of {layer}'s {dims}-dimensional features, {points} test images"
    fig = plot_embeddings(projections, labels, ctx.class_labels, title=title, method=method)
    ctx.save_figure("embeddings", fig)
    ctx.save_arrays("embeddings", labels=labels, epochs=np.array(list(projections)),
                    projections=np.stack(list(projections.values())))


ANALYSES: dict[str, Analysis] = {a.name: a for a in [
    Analysis("filters", _filters, applies=HAS_CONV,
             captions={"filters": "first convolution layer's filters, raw and each normalised; a filter's number "
                                 "is its row's label plus its column's"}),
    Analysis("neurons", _neurons, options=("layer", "channels", "rows", "top_k"), applies=PLAIN_CONV_CHAIN,
             captions={"neurons": "the test image patches (each under its neuron's receptive field) that excite "
                                  "a neuron most; rows: {neurons}"}),
    Analysis("embeddings", _embeddings, options=("projection", "perplexity", "tsne_iterations", "seed"),
             applies=SAVED_EMBEDDINGS,
             captions={"embeddings": "2-D projection of the saved embeddings of the same test images "
                                     "at each chosen epoch"}),
    Analysis("guided_backprop", lambda ctx: _attribution(ctx, "guided_backprop"),
             options=("images", "target", "top_k", "seed"),
             captions={"guided_backprop": "guided backpropagation for {target}",
                       "guided_backprop_plain": "plain input gradient for {target}: the network has no "
                                                "ReLU, so guided backpropagation is the gradient itself"}),
    Analysis("saliency", lambda ctx: _attribution(ctx, "saliency"),
             options=("images", "target", "top_k", "seed"),
             captions={"saliency": "input-gradient saliency for {target}"}),
    Analysis("equivariance", _equivariance,
             options=("images", "layer", "shifts", "rotations", "equivariance_of", "seed"), applies=HAS_CONV,
             captions={
                 "equivariance_shift": "{network}feature maps of a shifted input vs shifted feature maps, "
                                       "and their difference",
                 "equivariance_rotate": "{network}feature maps of a rotated input vs rotated feature maps, "
                                        "and their difference",
             }),
    Analysis("confusion", _confusion, captions={"confusion": "confusion matrix on the test split"}),
]}


def analyze(
    run: str,
    what: list[str] | str | None = None,
    store: str | Path | RunStore = DEFAULT_STORE,
    options: AnalysisOptions | None = None,
    skip_inapplicable: bool = False,
    data_root: str | Path | None = None,
) -> pd.DataFrame:
    """Run analyses on a stored run (its id or a unique prefix) and record what they wrote.

    ``what``: names from :data:`ANALYSES` (a list or a comma-separated string); by default
    every analysis that applies to the run's model. One that does not apply is an error, or
    left out with ``skip_inapplicable``. ``data_root``: where the run's data set is now, if it
    has moved since the run trained. Returns ``analysis, name, path, kind``.
    """
    requested = requested_analyses(what)
    store = store if isinstance(store, RunStore) else RunStore(store)
    ctx = _context(store, store.resolve(run), options or AnalysisOptions(), data_root)
    chosen = [a for a in requested or ANALYSES.values() if a.applies.holds(ctx)]
    if not skip_inapplicable:
        for analysis in requested:
            if analysis not in chosen:
                raise UserError(f"{analysis.name} does not apply to run {ctx.run_id}: "
                                + analysis.applies.unmet)
    _check_options(ctx, chosen)  # every mistake surfaces before anything is written
    rows = []
    for analysis in chosen:
        start = len(ctx.written)
        analysis.write(ctx)
        for artifact, path, kind in ctx.written[start:]:
            store.add_artifact(ctx.run_id, artifact, path, kind)
            rows.append({"analysis": analysis.name, "name": artifact, "path": str(path), "kind": kind})
    (ctx.out / "options.json").write_text(json.dumps(asdict(ctx.options), indent=2))
    return pd.DataFrame(rows, columns=["analysis", "name", "path", "kind"])


def requested_analyses(what: list[str] | str | None) -> list[Analysis]:
    """The analyses named in ``what`` (a list or a comma-separated string), in order; [] for none."""
    names = [w.strip() for w in (what.split(",") if isinstance(what, str) else what or []) if w.strip()]
    for name in names:
        if name not in ANALYSES:
            raise unknown("analysis", name, ANALYSES)
    return [ANALYSES[name] for name in names]


def _context(store: RunStore, run_id: str, options: AnalysisOptions, data_root: str | Path | None = None) -> Context:
    """Load the run's config, data (from ``data_root`` when given) and the model of its last checkpoint."""
    from trainlab.config import load_config
    from trainlab.data import load_data
    from trainlab.models import create_model
    from trainlab.train.checkpoint import load_checkpoint

    record = store.get_run(run_id)
    config = load_config(record["config"])
    run_dir = store.run_dir(run_id)
    state = load_checkpoint(run_dir)
    if state is None:
        raise UserError(f"run {run_id} has no checkpoint yet (status {record['status']}); train it first")
    data = load_data(config.data if data_root is None else load_config(config, {"data.root": str(data_root)}).data)
    model = create_model(config.model, data.input_shape, data.num_classes)
    model.load_state_dict(state["model"])
    model.eval()
    out = run_dir / ANALYSIS_DIR
    out.mkdir(parents=True, exist_ok=True)
    return Context(run_id, config, model, data, run_dir, out, options)


def _check_options(ctx: Context, chosen: list[Analysis]) -> None:
    """Every option against the run before anything is written: the layer, the attribution target's
    layer and channels, the perplexity against the saved embeddings, equivariance on one image."""
    from trainlab.analysis.embeddings import check_tsne, load_embeddings
    from trainlab.capture import check_layers

    options, names = ctx.options, {analysis.name for analysis in chosen}
    options.check()
    if options.layer is not None:
        check_layers(ctx.model, [options.layer])
    target = _target(ctx)
    if isinstance(target, (tuple, NeuronSet)):
        _check_channels(ctx, target)
    if "embeddings" in names and options.projection == "tsne" and options.perplexity is not None:
        saved = load_embeddings(ctx.run_dir)
        if saved:
            check_tsne(options.perplexity, options.tsne_iterations, len(next(iter(saved.values()))["labels"]))
    if "equivariance" in names:
        _equivariance_results(ctx, ctx.sample_inputs()[2][:1])


@dataclass(frozen=True)
class NeuronSet:
    """Several neurons of ``layer``: ``channels``, or (when None) the ``top`` most active ones."""

    layer: str
    channels: list[int] | None
    top: int = 0


def _target(ctx: Context) -> int | tuple[str, int] | NeuronSet | None:
    """The attribution target the options name: None (each image's true class), a class index, a
    ``(layer, channel)`` neuron, or several neurons (``layer:3,17,42``, ``layer:top10``)."""
    from trainlab.capture import check_layers

    target = ctx.options.target
    if target is None:
        return None
    if ":" in target:
        layer, _, spec = target.partition(":")
        check_layers(ctx.model, [layer], "target layer")
        parts = [part.strip() for part in spec.split(",")]
        if spec.isdigit():
            return layer, int(spec)
        if spec.startswith("top") and spec[3:].isdigit() and int(spec[3:]) >= 1:
            return NeuronSet(layer, None, int(spec[3:]))
        if len(parts) > 1 and all(part.isdigit() for part in parts):
            return NeuronSet(layer, list(dict.fromkeys(int(part) for part in parts)))
        raise UserError(f"target {target!r}: the channel after ':' must be a number, several numbers or "
                        "topN, e.g. conv3:12, conv3:3,17,42 or conv3:top10")
    if not target.isdigit() or int(target) >= ctx.data.num_classes:
        raise UserError(f"target {target!r} is neither a class index (0..{ctx.data.num_classes - 1}) "
                        "nor a layer:channel neuron")
    return int(target)


def _check_channels(ctx: Context, target: tuple[str, int] | NeuronSet) -> None:
    """UserError unless the target's channels (or its topN) exist in its layer's output."""
    import torch

    from trainlab.capture import capture

    layer = target[0] if isinstance(target, tuple) else target.layer
    with torch.no_grad(), capture(ctx.model, [layer], stop=True, eval_mode=True) as seen:
        seen.run(ctx.sample_inputs()[2][:1])
    output = seen[layer][0] if seen[layer] else None
    if not isinstance(output, torch.Tensor) or output.ndim < 2:
        raise UserError(f"target {ctx.options.target!r}: layer {layer!r} gives no N x C output "
                        "to take channels of")
    count = output.shape[1]
    wanted = [target[1]] if isinstance(target, tuple) else target.channels or [target.top - 1]
    if max(wanted) >= count:
        raise UserError(f"target {ctx.options.target!r}: layer {layer!r} has {count} channels "
                        f"(0..{count - 1})")
