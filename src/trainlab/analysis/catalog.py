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


def _channel_list(text: str, name: str) -> list[int] | None:
    """``"3,17"`` as ``[3, 17]``, ``""`` as None; ``name`` is the option as the user wrote it."""
    if not text:
        return None
    try:
        return [int(c) for c in text.split(",")]
    except ValueError:
        raise UserError(f"{name} {text!r}: expected comma-separated channel numbers, e.g. 3,17") from None


def _option(default: Any, help: str, metavar: str, parse: Callable[[str, str], Any] | None = None) -> Any:
    """A field of :class:`AnalysisOptions`: default, help and CLI metavar; ``parse`` reads it from text."""
    return field(default=default, metadata={"help": help, "metavar": metavar, "parse": parse})


@dataclass
class AnalysisOptions:
    """Choices shared by the analyses; every field has a default that suits a report."""

    layer: str | None = _option(None, "the layer to look into (default: the activation after the last conv)",
                                "NAME")
    channels: list[int] | None = _option(None, "channels to show (default: the most active)", "I,J",
                                         _channel_list)
    top_k: int = _option(9, "images per channel", "K")
    images: int = _option(8, "test images used", "N")
    target: str | None = _option(None, "a class index or a neuron (default: the true class)",
                                 "CLASS|LAYER:CHANNEL")
    projection: str = _option("tsne", "tsne or pca", "P")
    seed: int = _option(0, "seed of the sample of test images and of the projection", "S")

    @classmethod
    def of(cls, values: Mapping[str, Any], flags: bool = False) -> AnalysisOptions:
        """The options among ``values`` (other keys and None are left out); text is parsed where needed.

        ``flags``: errors name an option as its CLI flag (``--channels``).
        """
        chosen = {}
        for option in fields(cls):
            value = values.get(option.name)
            parse = option.metadata["parse"]
            if parse is not None and isinstance(value, str):
                value = parse(value, flag(option.name) if flags else option.name)
            if value is not None:
                chosen[option.name] = value
        return cls(**chosen)

    def check(self) -> None:
        """UserError for an unknown projection or a count below 1 (layers are checked against the model)."""
        from trainlab.analysis.embeddings import PROJECTIONS

        if self.projection not in PROJECTIONS:
            raise unknown("projection", self.projection, PROJECTIONS)
        for name in ("top_k", "images"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")


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
    each figure it writes, where ``{target}`` names the attribution target.
    """

    name: str
    write: Callable[[Context], None]
    captions: Mapping[str, str]
    options: tuple[str, ...] = ()
    applies: Condition = EVERY_RUN

    def caption(self, figure: str, options: AnalysisOptions) -> str:
        """The report's caption of one of its figures."""
        target = f"target {options.target}" if options.target else "the true class"
        return self.captions.get(figure, figure).format(target=target)


def _filters(ctx: Context) -> None:
    from trainlab.analysis.filters import first_conv, plot_filters

    name, conv = first_conv(ctx.model)
    weight = conv.weight.detach().cpu()
    ctx.save_figure("filters", plot_filters(weight, title=f"{name} filters ({weight.shape[0]})"))
    ctx.save_arrays("filters", weight=weight.numpy())


def _neurons(ctx: Context) -> None:
    from trainlab.analysis.neurons import (
        interesting_channels, last_conv_activation, plot_neurons, top_activations,
    )

    layer = ctx.options.layer or last_conv_activation(ctx.model)
    images = ctx.data.test.x
    table = top_activations(ctx.model, layer, images, ctx.data.mean, ctx.data.std, ctx.options.channels,
                            k=ctx.options.top_k)
    channels = ctx.options.channels or interesting_channels(table, n=NEURON_CHANNELS)
    table = table[table["channel"].isin(channels)].reset_index(drop=True)
    ctx.save_figure("neurons", plot_neurons(images, table, channels))
    ctx.save_table("neurons", table)


def _attribution(ctx: Context, method: str) -> None:
    from trainlab.analysis import attribution

    x, y, inputs = ctx.sample_inputs()
    target = _target(ctx, y)
    values = getattr(attribution, method)(ctx.model, inputs, target)
    what = (f"neuron {ctx.options.target}" if isinstance(target, tuple)
            else f"class {ctx.options.target}" if ctx.options.target else "true class")
    names = ctx.class_labels
    titles = [names[int(c)] for c in y]
    fig = attribution.plot_attributions(x, values.detach().cpu(), titles=titles)
    fig.suptitle(f"{method.replace('_', ' ')} for the {what}")
    ctx.save_figure(method, fig)
    ctx.save_arrays(method, attributions=values.detach().cpu().numpy(), labels=y.cpu().numpy())


def _equivariance(ctx: Context) -> None:
    from trainlab.analysis.equivariance import equivariance, plot_equivariance

    _, _, inputs = ctx.sample_inputs()
    frames = []
    for transform, amount in (("shift", max(1, inputs.shape[-1] // 8)), ("rotate", 1)):
        result = equivariance(ctx.model, inputs, transform=transform, amount=amount)
        ctx.save_figure(f"equivariance_{transform}", plot_equivariance(result))
        frames.append(result.frame)
    ctx.save_table("equivariance", pd.concat(frames, ignore_index=True))


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
    from trainlab.analysis.embeddings import load_embeddings, plot_embeddings, project

    saved = load_embeddings(ctx.run_dir)
    if not saved:
        raise UserError(f"run {ctx.run_id} saved no embeddings; train it with probes.embeddings_at "
                        "(for example --set 'probes.embeddings_at=[0,5,10]')")
    method = ctx.options.projection
    projections = {epoch: project(e["features"], method, ctx.options.seed) for epoch, e in saved.items()}
    labels = next(iter(saved.values()))["labels"]
    layer = ctx.config.probes.embedding_layer or "penultimate layer"
    title = f"{method} of the {layer}"
    fig = plot_embeddings(projections, labels, ctx.class_labels, title=title, method=method)
    ctx.save_figure("embeddings", fig)
    ctx.save_arrays("embeddings", labels=labels, epochs=np.array(list(projections)),
                    projections=np.stack(list(projections.values())))


ANALYSES: dict[str, Analysis] = {a.name: a for a in [
    Analysis("filters", _filters, applies=HAS_CONV,
             captions={"filters": "first convolution layer's filters, raw and each normalised"}),
    Analysis("neurons", _neurons, options=("layer", "channels", "top_k"), applies=PLAIN_CONV_CHAIN,
             captions={"neurons": "test image patches that excite the most active channels most, "
                                  "under each neuron's receptive field"}),
    Analysis("embeddings", _embeddings, options=("projection", "seed"), applies=SAVED_EMBEDDINGS,
             captions={"embeddings": "2-D projection of the saved embeddings of the same test images "
                                     "at each chosen epoch"}),
    Analysis("guided_backprop", lambda ctx: _attribution(ctx, "guided_backprop"),
             options=("images", "target", "seed"),
             captions={"guided_backprop": "guided backpropagation for {target}"}),
    Analysis("saliency", lambda ctx: _attribution(ctx, "saliency"), options=("images", "target", "seed"),
             captions={"saliency": "input-gradient saliency for {target}"}),
    Analysis("equivariance", _equivariance, options=("images", "seed"), applies=HAS_CONV, captions={
        "equivariance_shift": "feature maps of a shifted input vs shifted feature maps, "
                              "and their difference",
        "equivariance_rotate": "feature maps of a rotated input vs rotated feature maps, "
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
) -> pd.DataFrame:
    """Run analyses on a stored run (its id or a unique prefix) and record what they wrote.

    ``what``: names from :data:`ANALYSES` (a list or a comma-separated string); by default
    every analysis that applies to the run's model. One that does not apply is an error, or
    left out with ``skip_inapplicable``. Returns ``analysis, name, path, kind``.
    """
    requested = requested_analyses(what)
    store = store if isinstance(store, RunStore) else RunStore(store)
    ctx = _context(store, store.resolve(run), options or AnalysisOptions())
    chosen = [a for a in requested or ANALYSES.values() if a.applies.holds(ctx)]
    if not skip_inapplicable:
        for analysis in requested:
            if analysis not in chosen:
                raise UserError(f"{analysis.name} does not apply to run {ctx.run_id}: "
                                + analysis.applies.unmet)
    _check_options(ctx)  # every mistake surfaces before anything is written
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


def _context(store: RunStore, run_id: str, options: AnalysisOptions) -> Context:
    """Load the run's config, data and the model of its last checkpoint."""
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
    data = load_data(config.data)
    model = create_model(config.model, data.input_shape, data.num_classes)
    model.load_state_dict(state["model"])
    model.eval()
    out = run_dir / ANALYSIS_DIR
    out.mkdir(parents=True, exist_ok=True)
    return Context(run_id, config, model, data, run_dir, out, options)


def _check_options(ctx: Context) -> None:
    import torch

    from trainlab.capture import check_layers

    ctx.options.check()
    if ctx.options.layer is not None:
        check_layers(ctx.model, [ctx.options.layer])
    _target(ctx, torch.zeros(1, dtype=torch.long))


def _target(ctx: Context, labels: torch.Tensor) -> torch.Tensor | tuple[str, int]:
    """The attribution target: the true classes, a given class, or a ``layer:channel`` neuron."""
    import torch

    from trainlab.capture import check_layers

    target = ctx.options.target
    if target is None:
        return labels
    if ":" in target:
        layer, _, channel = target.partition(":")
        check_layers(ctx.model, [layer], "target layer")
        if not channel.isdigit():
            raise UserError(f"target {target!r}: the channel after ':' must be a number, e.g. conv3:12")
        return layer, int(channel)
    if not target.isdigit() or int(target) >= ctx.data.num_classes:
        raise UserError(f"target {target!r} is neither a class index (0..{ctx.data.num_classes - 1}) "
                        "nor a layer:channel neuron")
    return torch.full_like(labels, int(target))
